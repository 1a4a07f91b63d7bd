// A round that evicts only clean pages traces va 0, len 0: not the pages it took.
import { afterEach, expect, it } from 'vitest';
import type { TraceEvent } from '../../src/gpu/mirror-stats.ts';
import { testMirror } from '../support/mirror.ts';

const PAGE = 4096;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

it('the eviction trace event names the range whose frames it freed', async () => {
  const { space, gpu } = await testMirror(
    { size: 4 << 20, pageSize: PAGE },
    { budget: 16 * PAGE },
    cleanups,
  );
  const clean = space.alloc(16 * PAGE);
  space.fill(clean, 16 * PAGE, 1);
  await gpu.migrate(clean, 16 * PAGE, 'gpu');
  await gpu.migrate(clean, 16 * PAGE, 'cpu'); // 16 clean `shared` frames
  const next = space.alloc(8 * PAGE);
  const events: TraceEvent[] = [];
  gpu.trace((event) => events.push(event));
  await gpu.migrate(next, 8 * PAGE, 'gpu');
  const eviction = events.find((event) => event.cause === 'eviction');
  expect(eviction).toMatchObject({ evicted: 8, pages: 0, bytes: 0 });
  // the trace: trace says why memory moved, with the range: the evicted pages lie in [clean, clean + 16 pages).
  expect(eviction?.va).toBeGreaterThanOrEqual(clean);
  expect(eviction?.len).toBeGreaterThan(0);
});
