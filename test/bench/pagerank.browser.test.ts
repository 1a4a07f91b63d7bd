// The app.pagerank workload on real WebGPU and real workers, at a tenth of
// the row's size: ranks within 1e-4 relative of a float64 reference after
// the in-place update, every pass of both rankings run pipelined.
import { afterEach, expect, it } from 'vitest';
import { SpaceApp, updatedReference } from '../../src/bench/rows/app-rows.ts';
import { maxRelativeError } from '../../src/bench/pagerank.ts';
import type { PageRankThreadApi } from '../../src/bench/pagerank-thread.worker.ts';
import { Threads } from '../../src/threads/threads.ts';
import { testMirror } from '../support/mirror.ts';

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

it('ranks a 20 000-node graph built by two workers within 1e-4 of float64, after a 1% in-place update', async () => {
  const nodes = 20_000;
  const { space, gpu } = await testMirror(
    { size: 8 << 20, pageSize: 64 << 10 },
    { copy: 'buffer' },
    cleanups,
  );
  const workers = await Threads.spawn<PageRankThreadApi>(
    space,
    new URL('../../src/bench/pagerank-thread.worker.ts', import.meta.url),
    2,
  );
  cleanups.push(() => workers.terminate());
  const app = new SpaceApp(space, gpu, workers, nodes);
  await app.trial();
  expect(app.ranks).toHaveLength(nodes);
  expect(maxRelativeError(app.ranks, updatedReference(nodes))).toBeLessThan(1e-4);
  // The update uploaded something, and no more than the CSR and both rank arrays.
  expect(app.updateBytes).toBeGreaterThan(0);
  expect(app.updateBytes).toBeLessThanOrEqual(
    (nodes + 1 + nodes * 5 + 2 * nodes) * 4 + 2 * (64 << 10),
  );
  // A second trial over fresh allocations gives the same ranks.
  const first = app.ranks;
  await app.trial();
  expect(maxRelativeError(app.ranks, Float64Array.from(first))).toBeLessThan(1e-5);
});
