import { afterEach, describe, expect, it } from 'vitest';
import { testMirror } from '../../support/mirror.ts';
import { ADD_ONE_AT, pinOnGpu, stressThread } from './support.ts';

const PAGE = 4096;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
const THRASH = { thrash: { threshold: 2, windowMs: 10_000, pinMs: 60_000 } };

async function kernelLoop(
  gpu: Awaited<ReturnType<typeof testMirror>>['gpu'],
  va: number,
  at: number,
  ms: number,
): Promise<number> {
  const kernel = gpu.kernel({ code: ADD_ONE_AT, params: { va: 'u32' } });
  let runs = 0;
  const end = performance.now() + ms;
  while (performance.now() < end) {
    await kernel.run({
      workgroups: 1,
      params: { va: at },
      uses: [{ va, len: PAGE, access: 'readwrite' }],
    });
    runs++;
  }
  return runs;
}

describe('mixed CPU accesses on a page pinned on the GPU', () => {
  it('small pushes, large writes and kernel runs: the CPU and GPU copies agree at the end', async () => {
    const { space, gpu } = await testMirror({ size: 1 << 20, pageSize: PAGE }, THRASH, cleanups);
    const w1 = await stressThread(space, cleanups);
    const w2 = await stressThread(space, cleanups);
    const va = space.alloc(PAGE);
    await pinOnGpu(gpu, w1, va, va + 1024);
    const small = w1.writeFor(va + 64, 1500);
    const large = w2.writeBlockFor(va + 64, 128, 1500);
    const before = new Uint32Array((await gpu.read(va + 1024, 4)).slice().buffer)[0] ?? 0;
    const runs = await kernelLoop(gpu, va, va + 1024, 1500);
    const s = await small;
    const l = await large;
    expect(s.errors).toEqual([]);
    expect(l.errors).toEqual([]);
    const onGpu = Array.from(await gpu.read(va, PAGE));
    const onCpu = Array.from(await space.readAsync(va, PAGE));
    expect(onCpu).toEqual(onGpu);
    expect(new Uint32Array(new Uint8Array(onCpu).buffer)[1024 / 4]).toBe(before + runs);
  });

  it('atomics from one worker, pushes from another, kernel runs: counts add up exactly', async () => {
    const { space, gpu } = await testMirror({ size: 1 << 20, pageSize: PAGE }, THRASH, cleanups);
    const w1 = await stressThread(space, cleanups);
    const w2 = await stressThread(space, cleanups);
    const va = space.alloc(PAGE);
    await pinOnGpu(gpu, w1, va, va + 1024);
    const adds = w1.addFor(va + 128, 1500);
    const pushes = w2.writeFor(va + 256, 1500);
    const before = new Uint32Array((await gpu.read(va + 1024, 4)).slice().buffer)[0] ?? 0;
    const runs = await kernelLoop(gpu, va, va + 1024, 1500);
    const a = await adds;
    const p = await pushes;
    expect(a.errors).toEqual([]);
    expect(p.errors).toEqual([]);
    const onGpu = new Uint32Array((await gpu.read(va, PAGE)).slice().buffer);
    const onCpu = new Uint32Array((await space.readAsync(va, PAGE)).slice().buffer);
    expect({ add: onCpu[32], push: onCpu[64], kernel: onCpu[256] }).toEqual({
      add: a.n,
      push: p.last,
      kernel: before + runs,
    });
    expect({ add: onGpu[32], push: onGpu[64], kernel: onGpu[256] }).toEqual({
      add: a.n,
      push: p.last,
      kernel: before + runs,
    });
  });
});
