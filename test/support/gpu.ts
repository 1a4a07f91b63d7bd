/**
 * Real WebGPU for browser tests: a device with the adapter's largest storage
 * binding, validation errors asserted absent, and live GPU buffers counted.
 * No adapter is a failure, never a skip.
 */
export async function requireAdapter(): Promise<GPUAdapter> {
  if (!('gpu' in navigator)) {
    throw new Error(
      'navigator.gpu is missing: Chromium must run with --enable-unsafe-webgpu in a secure context',
    );
  }
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) {
    throw new Error(
      'navigator.gpu.requestAdapter() returned null: no WebGPU adapter (expected a GPU or SwiftShader)',
    );
  }
  return adapter;
}

export interface TestDevice {
  readonly device: GPUDevice;
  /** GPU buffers created through this device and not destroyed yet. */
  liveBuffers(): number;
  /** Pops the validation scope opened at creation; returns its error message, if any. */
  validationError(): Promise<string | undefined>;
  destroy(): void;
}

/** A device whose createBuffer/destroy are counted, inside a validation error scope. */
export async function testDevice(): Promise<TestDevice> {
  const adapter = await requireAdapter();
  const device = await adapter.requestDevice({
    label: 'webhmm test device',
    requiredLimits: {
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      maxBufferSize: adapter.limits.maxBufferSize,
    },
  });
  const live = new Set<GPUBuffer>();
  const createBuffer = device.createBuffer.bind(device);
  device.createBuffer = (descriptor: GPUBufferDescriptor): GPUBuffer => {
    const buffer = createBuffer(descriptor);
    live.add(buffer);
    const destroy = buffer.destroy.bind(buffer);
    buffer.destroy = () => {
      live.delete(buffer);
      destroy();
    };
    return buffer;
  };
  device.pushErrorScope('validation');
  return {
    device,
    liveBuffers: () => live.size,
    validationError: async () => (await device.popErrorScope())?.message,
    destroy: () => device.destroy(),
  };
}
