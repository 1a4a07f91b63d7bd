// A prefetch of a range the budget holds, already wholly resident, reports
// part of it as an ignored hint.
import { afterEach, expect, it } from 'vitest';
import type { TraceEvent } from '../../src/gpu/mirror-stats.ts';
import { testMirror } from '../support/mirror.ts';

const PAGE = 4096;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

it('a prefetch of resident pages that fit the budget ignores nothing', async () => {
  const { space, gpu } = await testMirror(
    { size: 8 << 20, pageSize: PAGE },
    { budget: 64 * PAGE },
    cleanups,
  );
  const len = 64 * PAGE; // exactly the budget: migrate admits it
  const va = space.alloc(len);
  space.fill(va, len, 3);
  await gpu.migrate(va, len, 'gpu');
  await gpu.migrate(va, len, 'cpu'); // every page `shared`, every frame kept
  expect(new Set((await gpu.snapshot(va, len)).map((e) => e.state))).toEqual(new Set(['shared']));
  const events: TraceEvent[] = [];
  gpu.trace((event) => events.push(event));
  const result = await gpu.prefetch(va, len, 'gpu');
  // Every page is resident on the device: the hint was honoured in full.
  expect(result).toEqual({ pages: 0, bytes: 0, ignored: 0 });
  expect(gpu.stats().ignoredHints).toBe(0);
  expect(events.filter((e) => e.kind === 'ignored-hint')).toEqual([]);
});
