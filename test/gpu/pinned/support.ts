import { releaseProxy, wrap, type Remote } from 'comlink';
import { expect } from 'vitest';
import type { AddressSpace } from '../../../src/space/address-space.ts';
import type { GpuMirror } from '../../../src/mirror/gpu-mirror.ts';
import type { StressApi } from './stress.worker.ts';

export async function stressThread(
  space: AddressSpace,
  cleanups: (() => Promise<void> | void)[],
): Promise<Remote<StressApi>> {
  return (await stressThreadAndWorker(space, cleanups)).api;
}

export async function stressThreadAndWorker(
  space: AddressSpace,
  cleanups: (() => Promise<void> | void)[],
): Promise<{ api: Remote<StressApi>; thread: Worker }> {
  const thread = new Worker(new URL('./stress.worker.ts', import.meta.url), { type: 'module' });
  const api = wrap<StressApi>(thread);
  cleanups.push(() => {
    api[releaseProxy]();
    thread.terminate();
  });
  await api.attach(space.handle);
  return { api, thread };
}

export const ADD_ONE_AT = /* wgsl */ `
@compute @workgroup_size(1)
fn main() {
  hmm_store_u32(hmm_params.va, hmm_load_u32(hmm_params.va) + 1u);
}`;

export async function gpuWord(gpu: GpuMirror, va: number): Promise<number> {
  return new Uint32Array((await gpu.read(va, 4)).slice().buffer)[0] ?? -1;
}

/** Pins page `va` on the GPU by a worker-write / kernel ping-pong; leaves it GPU-dirty. */
export async function pinOnGpu(
  gpu: GpuMirror,
  worker: Remote<StressApi>,
  va: number,
  kernelVa = va,
): Promise<void> {
  const kernel = gpu.kernel({ code: ADD_ONE_AT, params: { va: 'u32' } });
  const page = va - (va % 4096);
  for (let i = 0; i < 4; i++) {
    expect((await worker.setU32(va, 100 * i)).result).toBe('ok');
    await kernel.run({
      workgroups: 1,
      params: { va: kernelVa },
      uses: [{ va: page, len: 4096, access: 'readwrite' }],
    });
  }
  expect((await gpu.snapshot(page, 4096))[0]).toMatchObject({ state: 'gpu', pinned: true });
}
