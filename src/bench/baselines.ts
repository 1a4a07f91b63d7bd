/**
 * What webhmm's rows are measured against: the raw operations a program
 * without webhmm would use for the same bytes. Each returns a trial timed
 * until its data is usable.
 */
import { bufferSource } from '../gpu/buffer-source.ts';
import type { Trial } from './bench-types.ts';
import { gbPerSecond } from './statistics.ts';

const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** One GPU buffer for baselines, destroyed by the returned function. */
export function scratchBuffer(device: GPUDevice, size: number, label: string): GPUBuffer {
  return device.createBuffer({ label: `bench ${label}`, size, usage: STORAGE });
}

/** `writeBuffer` of `source` into `target`, until the GPU has it; GB/s. */
export function rawWriteBuffer(device: GPUDevice, target: GPUBuffer, source: Uint8Array): Trial {
  return async () => {
    const started = performance.now();
    device.queue.writeBuffer(target, 0, bufferSource(source));
    await device.queue.onSubmittedWorkDone();
    return gbPerSecond(source.byteLength, performance.now() - started);
  };
}

/** One `writeBuffer` per page of `pages` (page indices), until the GPU has them; GB/s. */
export function rawWriteBufferPerPage(
  device: GPUDevice,
  target: GPUBuffer,
  source: Uint8Array,
  pages: readonly number[],
  pageSize: number,
): Trial {
  return async () => {
    const started = performance.now();
    const view = bufferSource(source);
    for (const page of pages)
      device.queue.writeBuffer(target, page * pageSize, view, page * pageSize, pageSize);
    await device.queue.onSubmittedWorkDone();
    return gbPerSecond(pages.length * pageSize, performance.now() - started);
  };
}

/** `copyBufferToBuffer` into a mapped buffer, `mapAsync`, and a copy out into `target`; GB/s. */
export function rawReadback(
  device: GPUDevice,
  source: GPUBuffer,
  target: Uint8Array,
): Trial & { destroy(): void } {
  const staging = device.createBuffer({
    label: 'bench readback',
    size: target.byteLength,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const trial: Trial = async () => {
    const started = performance.now();
    const encoder = device.createCommandEncoder();
    encoder.copyBufferToBuffer(source, 0, staging, 0, target.byteLength);
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    target.set(new Uint8Array(staging.getMappedRange()));
    staging.unmap();
    return gbPerSecond(target.byteLength, performance.now() - started);
  };
  return Object.assign(trial, { destroy: () => staging.destroy() });
}

/** JS `Uint8Array.set` of `source` into `target`: the machine's own copy limit; GB/s. */
export function jsCopy(source: Uint8Array, target: Uint8Array): Trial {
  return () => {
    const started = performance.now();
    target.set(source);
    return Promise.resolve(gbPerSecond(source.byteLength, performance.now() - started));
  };
}
