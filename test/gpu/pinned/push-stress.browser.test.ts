import { afterEach, describe, expect, it } from 'vitest';
import type { TraceEvent } from '../../../src/gpu/mirror-stats.ts';
import { testMirror } from '../../support/mirror.ts';
import { pinOnGpu, stressThread } from './support.ts';

const PAGE = 4096;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const THRASH = { thrash: { threshold: 2, windowMs: 10_000, pinMs: 60_000 } };

describe('a batch of pushes', () => {
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
