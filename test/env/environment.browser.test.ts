// The environment webhmm depends on: a cross-origin isolated page, a WebGPU adapter
// that runs compute shaders, and module workers that share memory with the page.
import { releaseProxy, wrap } from 'comlink';
import { describe, expect, it, onTestFinished } from 'vitest';
import { requireAdapter } from '../support/gpu.ts';
import { Slot } from './atomics-slots.ts';
import type { AtomicsWorkerApi } from './atomics.worker.ts';

describe('the test page', () => {
  it('is cross-origin isolated, so SharedArrayBuffer is available', () => {
    expect(crossOriginIsolated).toBe(true);
    expect(typeof SharedArrayBuffer).toBe('function');
  });
});

describe('WebGPU', () => {
  it('provides an adapter and reports which one', async () => {
    const adapter = await requireAdapter();
    const { vendor, architecture, device, description } = adapter.info;
    console.log(
      `WebGPU adapter: ${JSON.stringify({ vendor, architecture, device, description })}` +
        ` fallback=${String(adapter.info.isFallbackAdapter)}` +
        ` maxBufferSize=${adapter.limits.maxBufferSize}` +
        ` maxStorageBufferBindingSize=${adapter.limits.maxStorageBufferBindingSize}`,
    );
    expect(
      vendor.length + architecture.length + device.length + description.length,
    ).toBeGreaterThan(0);
  });

  it('runs a compute shader that doubles 256 u32s and reads the result back', async () => {
    const adapter = await requireAdapter();
    const device = await adapter.requestDevice({ label: 'env-test device' });
    onTestFinished(() => device.destroy());
    const n = 256;
    const input = Uint32Array.from({ length: n }, (_, i) => i * 3 + 1);

    device.pushErrorScope('validation');
    const storage = device.createBuffer({
      label: 'env-test storage',
      size: input.byteLength,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
    onTestFinished(() => storage.destroy());
    const readback = device.createBuffer({
      label: 'env-test readback',
      size: input.byteLength,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    onTestFinished(() => readback.destroy());
    device.queue.writeBuffer(storage, 0, input);

    const module = device.createShaderModule({
      label: 'env-test double',
      code: /* wgsl */ `
        @group(0) @binding(0) var<storage, read_write> data: array<u32>;
        @compute @workgroup_size(64)
        fn main(@builtin(global_invocation_id) id: vec3u) {
          if (id.x < arrayLength(&data)) { data[id.x] = data[id.x] * 2u; }
        }`,
    });
    const pipeline = device.createComputePipeline({
      label: 'env-test double',
      layout: 'auto',
      compute: { module, entryPoint: 'main' },
    });
    const bindGroup = device.createBindGroup({
      label: 'env-test double',
      layout: pipeline.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: storage } }],
    });
    const encoder = device.createCommandEncoder({ label: 'env-test double' });
    const pass = encoder.beginComputePass({ label: 'env-test double' });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(n / 64);
    pass.end();
    encoder.copyBufferToBuffer(storage, 0, readback, 0, input.byteLength);
    device.queue.submit([encoder.finish()]);
    const validationError = await device.popErrorScope();

    await readback.mapAsync(GPUMapMode.READ);
    const output = new Uint32Array(readback.getMappedRange().slice(0));
    readback.unmap();

    expect(validationError?.message ?? null).toBeNull();
    expect(Array.from(output)).toEqual(Array.from(input, (v) => v * 2));
  });
});

describe('a module worker', () => {
  it('blocks in Atomics.wait on shared memory until the page, woken by Atomics.waitAsync, releases it', async () => {
    const worker = new Worker(new URL('./atomics.worker.ts', import.meta.url), {
      type: 'module',
      name: 'env-test atomics',
    });
    const api = wrap<AtomicsWorkerApi>(worker);
    onTestFinished(() => worker.terminate());
    onTestFinished(() => api[releaseProxy]());

    expect(await api.isolated()).toBe(true);

    const shared = new SharedArrayBuffer(8 * Int32Array.BYTES_PER_ELEMENT);
    const i32 = new Int32Array(shared);
    i32[Slot.input] = 21;
    // Registered before the worker can finish, so this wait is truly asynchronous.
    const done = Atomics.waitAsync(i32, Slot.done, 0, 10_000);
    expect(done.async).toBe(true);
    const result = api.blockThenDouble(shared);

    const ready = Atomics.waitAsync(i32, Slot.ready, 0, 10_000);
    expect(await ready.value).not.toBe('timed-out');

    // Wake the worker (without releasing it) until a notify finds it blocked: proof
    // that Atomics.wait really blocked a worker on memory this page shares.
    let woken = 0;
    const deadline = performance.now() + 10_000;
    while (woken === 0 && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      woken = Atomics.notify(i32, Slot.go, 1);
    }
    expect(woken).toBe(1);

    Atomics.store(i32, Slot.go, 1);
    Atomics.notify(i32, Slot.go);
    expect(await done.value).toBe('ok');
    expect(Atomics.load(i32, Slot.output)).toBe(42);
    expect(await result).toContain('ok');
  });
});
