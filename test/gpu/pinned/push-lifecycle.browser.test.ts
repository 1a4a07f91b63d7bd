import { afterEach, describe, expect, it } from 'vitest';
import { testMirror } from '../../support/mirror.ts';
import { ADD_ONE_AT, gpuWord, pinOnGpu, stressThread } from './support.ts';

const PAGE = 4096;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
const THRASH = { thrash: { threshold: 2, windowMs: 10_000, pinMs: 60_000 } };

describe('pushes and pulls across detach, loss, eviction', () => {
  it('detach while a worker pushes and another pulls: every call ends well and the last write stays', async () => {
    const { space, gpu } = await testMirror({ size: 1 << 20, pageSize: PAGE }, THRASH, cleanups);
    const w1 = await stressThread(space, cleanups);
    const w2 = await stressThread(space, cleanups);
    const va = space.alloc(PAGE);
    await pinOnGpu(gpu, w1, va, va + 64);
    const writes = w1.writeFor(va, 600);
    const reads = w2.readMonotonic(va, 600);
    await new Promise((r) => setTimeout(r, 200));
    await gpu.detach();
    const w = await writes;
    const r = await reads;
    expect(w.errors).toEqual([]);
    expect(r.error).toBe('');
    expect(r.drops).toEqual([]);
    expect(space.getU32(va)).toBe(w.last);
  });

  it('device loss while a worker pushes: each write acknowledged is kept', async () => {
    const { space, gpu, test } = await testMirror(
      { size: 1 << 20, pageSize: PAGE },
      THRASH,
      cleanups,
    );
    const w1 = await stressThread(space, cleanups);
    const w2 = await stressThread(space, cleanups);
    const va = space.alloc(PAGE);
    await pinOnGpu(gpu, w1, va, va + 64);
    const writes = w1.writeFor(va, 600);
    const reads = w2.readMonotonic(va, 600);
    await new Promise((r) => setTimeout(r, 200));
    test.device.destroy();
    await gpu.lost;
    const w = await writes;
    const r = await reads;
    expect(r.drops).toEqual([]);
    expect(space.getU32(va)).toBe(w.last);
  });

  it('eviction under pressure while workers push to and pull from pinned pages', async () => {
    const { space, gpu } = await testMirror(
      { size: 4 << 20, pageSize: PAGE },
      { ...THRASH, budget: 16 * PAGE },
      cleanups,
    );
    const w1 = await stressThread(space, cleanups);
    const w2 = await stressThread(space, cleanups);
    const va = space.alloc(PAGE);
    const other = space.alloc(64 * PAGE);
    await pinOnGpu(gpu, w1, va, va + 64);
    const kernel = gpu.kernel({ code: ADD_ONE_AT, params: { va: 'u32' } });
    const writes = w1.writeFor(va, 1200);
    const reads = w2.readMonotonic(va, 1200);
    let runs = 0;
    const end = performance.now() + 1200;
    for (let i = 0; performance.now() < end; i++) {
      await kernel.run({
        workgroups: 1,
        params: { va: va + 64 },
        uses: [{ va, len: PAGE, access: 'readwrite' }],
      });
      runs++;
      const at = other + (i % 4) * 12 * PAGE;
      await gpu.migrate(at, 12 * PAGE, 'gpu');
    }
    const w = await writes;
    const r = await reads;
    expect(w.errors).toEqual([]);
    expect(r.error).toBe('');
    expect(r.drops).toEqual([]);
    expect(gpu.stats().evictions).toBeGreaterThan(0);
    expect(await gpuWord(gpu, va)).toBe(w.last);
    expect(await w2.u32InRead(va, PAGE)).toBe(w.last);
    expect(await w2.u32InRead(va + 64, 64)).toBe(4 + runs);
  });
});
