// SPEC §3/§2 inv. 8: listener exceptions never fail the call that triggered
// them and every call ends; a throwing trace listener on the mirror's
// thread must not break CPU pulls/pushes.
import { afterEach, describe, expect, it } from 'vitest';
import { testMirror } from '../../support/mirror.ts';
import { pinOnGpu, stressThread } from './support.ts';

const PAGE = 4096;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
const THRASH = { thrash: { threshold: 2, windowMs: 10_000, pinMs: 60_000 } };

describe('a trace listener that throws', () => {
  it('once, on a pull: later pulls of the same worker still succeed', async () => {
    const { space, gpu } = await testMirror({ size: 1 << 20, pageSize: PAGE }, THRASH, cleanups);
    const worker = await stressThread(space, cleanups);
    const va = space.alloc(PAGE);
    await pinOnGpu(gpu, worker, va);
    let armed = true;
    gpu.trace((event) => {
      if (armed && event.kind === 'fault' && event.to === 'cpu' && event.pages === 0) {
        armed = false;
        throw new Error('listener bug');
      }
    });
    expect(await worker.u32(va)).toBe(301);
    const reads = await worker.readMonotonic(va, 3000);
    expect(reads.error).toBe('');
    expect(reads.reads).toBeGreaterThan(0);
  });

  it('on a push: a pull taken in the same batch is still served', async () => {
    const { space, gpu } = await testMirror(
      { size: 1 << 20, pageSize: PAGE, faultTimeoutMs: 1500 },
      THRASH,
      cleanups,
    );
    const worker = await stressThread(space, cleanups);
    const va = space.alloc(2 * PAGE);
    await pinOnGpu(gpu, worker, va);
    await pinOnGpu(gpu, worker, va + PAGE);
    gpu.trace((event) => {
      if (event.kind === 'fault' && event.to === 'gpu' && event.pages === 0)
        throw new Error('listener bug');
    });
    const started = performance.now();
    const [, read] = await Promise.allSettled([
      space.writeAsync(va, new Uint32Array([5])),
      space.readAsync(va + PAGE, 4),
    ]);
    const ms = performance.now() - started;
    expect(read.status === 'fulfilled' ? Array.from(read.value) : String(read.reason)).toEqual([
      45, 1, 0, 0,
    ]);
    expect(ms).toBeLessThan(1000);
  });
});
