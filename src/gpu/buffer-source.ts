/**
 * `queue.writeBuffer` takes views of SharedArrayBuffers (WebGPU's
 * AllowSharedBufferSource; verified in Chromium), but @webgpu/types declares
 * the parameter as views of ArrayBuffer only. This is the one cast that says so.
 */
export function bufferSource(view: ArrayBufferView): GPUAllowSharedBufferSource {
  return view as GPUAllowSharedBufferSource;
}
