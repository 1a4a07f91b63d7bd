import { afterEach, describe, expect, it } from 'vitest';
import type { TraceEvent } from '../../../src/gpu/mirror-stats.ts';
import { testMirror } from '../../support/mirror.ts';
import { ADD_ONE_AT, gpuWord, pinOnGpu, stressThread } from './support.ts';

const PAGE = 4096;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const THRASH = { thrash: { threshold: 2, windowMs: 10_000, pinMs: 60_000 } };

describe('pushes and pulls under concurrency', () => {
  it('worker pushes, worker reads and kernel runs on one pinned page agree at the end', async () => {
    const { space, gpu } = await testMirror({ size: 1 << 20, pageSize: PAGE }, THRASH, cleanups);
    const w1 = await stressThread(space, cleanups);
    const w2 = await stressThread(space, cleanups);
    const va = space.alloc(PAGE);
    const b = va + 256;
    await pinOnGpu(gpu, w1, va, b);
    const kernel = gpu.kernel({ code: ADD_ONE_AT, params: { va: 'u32' } });
    const before = await gpuWord(gpu, b);
    const writes = w1.writeSeq(va, 1, 400);
    const reads = w2.readMonotonic(va, 1500);
    let runs = 0;
    const mainDrops: string[] = [];
    let prev = 0;
    const end = performance.now() + 1500;
    while (performance.now() < end) {
      await kernel.run({
        workgroups: 1,
        params: { va: b },
        uses: [{ va, len: PAGE, access: 'readwrite' }],
      });
      runs++;
      const v = new Uint32Array((await space.readAsync(va, 4)).slice().buffer)[0] ?? 0;
      if (v < prev) mainDrops.push(`${prev}->${v}`);
      prev = Math.max(prev, v);
    }
    const w = await writes;
    const r = await reads;
    expect(w.error).toBe('');
    expect(r.error).toBe('');
    expect(r.drops).toEqual([]);
    expect(mainDrops).toEqual([]);
    expect(await gpuWord(gpu, va)).toBe(400);
    expect(await gpuWord(gpu, b)).toBe(before + runs);
    expect(await w2.u32InRead(va, PAGE)).toBe(400);
    expect(await w2.u32InRead(b, PAGE - 256)).toBe(before + runs);
    expect(gpu.stats().thrashPins).toBe(1);
  });

  it('the trace event of a batch of pushes covers every push', async () => {
    const { space, gpu } = await testMirror({ size: 1 << 20, pageSize: PAGE }, THRASH, cleanups);
    const w1 = await stressThread(space, cleanups);
    const va = space.alloc(2 * PAGE);
    await pinOnGpu(gpu, w1, va + PAGE);
    await pinOnGpu(gpu, w1, va);
    const events: TraceEvent[] = [];
    gpu.trace((event) => events.push(event));
    // Two pushes posted before the mirror's thread takes them: the higher VA first.
    await Promise.all([
      space.writeAsync(va + PAGE, new Uint32Array([7])),
      space.writeAsync(va, new Uint32Array([8])),
    ]);
    const pushes = events.filter((e) => e.kind === 'fault' && e.to === 'gpu');
    const covered = (at: number) => pushes.some((e) => e.va <= at && at + 4 <= e.va + e.len);
    expect(pushes.reduce((s, e) => s + e.bytes, 0)).toBe(8);
    expect({
      low: covered(va),
      high: covered(va + PAGE),
      events: pushes.map((e) => [e.va - va, e.len]),
    }).toMatchObject({ low: true, high: true });
  });
});
