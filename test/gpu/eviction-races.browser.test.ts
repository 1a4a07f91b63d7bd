// Frames eviction freed for one call are taken by another call before the
// first plans: the first fails with OutOfMemoryError 'budget'.
import { afterEach, expect, it } from 'vitest';
import { testMirror } from '../support/mirror.ts';

const PAGE = 4096;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup() {
  const { space, gpu } = await testMirror(
    { size: 8 << 20, pageSize: PAGE },
    { budget: 16 * PAGE },
    cleanups,
  );
  // The whole budget held by clean, unheld `shared` pages: every call can evict them.
  const filler = space.alloc(16 * PAGE);
  space.fill(filler, 16 * PAGE, 1);
  await gpu.migrate(filler, 16 * PAGE, 'gpu');
  await gpu.migrate(filler, 16 * PAGE, 'cpu');
  const a = space.alloc(8 * PAGE);
  const b = space.alloc(8 * PAGE);
  space.fill(a, 8 * PAGE, 2);
  space.fill(b, 8 * PAGE, 3);
  return { space, gpu, a, b };
}

const outcome = (p: Promise<unknown>) =>
  p.then(
    (v) => ({ ok: v }),
    (e: unknown) => ({ error: `${(e as Error).name}: ${(e as Error).message}` }),
  );

it('a prefetch beside a migration, which fit the budget together, is neither an error', async () => {
  const { gpu, a, b } = await setup();
  const [prefetched, migrated] = await Promise.all([
    outcome(gpu.prefetch(a, 8 * PAGE, 'gpu')),
    outcome(gpu.migrate(b, 8 * PAGE, 'gpu')),
  ]);
  // prefetch: the part beyond the budget is an ignored hint, not an error.
  expect(prefetched).not.toHaveProperty('error');
  // eviction: the migration needs 8 of 16 frames; it succeeds by evicting.
  expect(migrated).not.toHaveProperty('error');
});

it('two migrations that fit the budget together both succeed by evicting', async () => {
  const { gpu, a, b } = await setup();
  const results = await Promise.all([
    outcome(gpu.migrate(a, 8 * PAGE, 'gpu')),
    outcome(gpu.migrate(b, 8 * PAGE, 'gpu')),
  ]);
  expect(results).toEqual([
    { ok: { pages: 8, bytes: 8 * PAGE } },
    { ok: { pages: 8, bytes: 8 * PAGE } },
  ]);
});
