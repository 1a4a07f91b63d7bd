// A prefetch that finds only part of its range's frames available now
// prefetches nothing and reports the whole range as ignored.
import { afterEach, expect, it } from 'vitest';
import { testMirror } from '../support/mirror.ts';

const PAGE = 4096;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

it('prefetches what the free frames hold and ignores only the rest', async () => {
  const { space, gpu } = await testMirror(
    { size: 4 << 20, pageSize: PAGE },
    { budget: 16 * PAGE }, // 16 frames: no reserve
    cleanups,
  );
  const held = space.alloc(12 * PAGE);
  space.fill(held, 12 * PAGE, 1);
  await gpu.migrate(held, 12 * PAGE, 'gpu');
  await gpu.migrate(held, 12 * PAGE, 'cpu'); // 12 frames in use, 4 free
  // Pages someone holds are never victims, and a prefetch waits for no holder.
  const lease = await space.acquire(held, 12 * PAGE, 'read');
  cleanups.push(() => lease.release());
  expect(gpu.stats().framesInUse).toBe(12);
  const va = space.alloc(8 * PAGE);
  space.fill(va, 8 * PAGE, 2);
  const result = await gpu.prefetch(va, 8 * PAGE, 'gpu');
  // prefetch: only the part beyond what the budget can hold is ignored.
  expect(result).toEqual({ pages: 4, bytes: 4 * PAGE, ignored: 4 * PAGE });
});
