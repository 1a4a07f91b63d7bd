// An eviction round that writes dirty victims back lets go of its clean
// victims first: a main-thread read of a clean `shared` page chosen as a
// victim goes on while the dirty pages are read back (it once threw
// WouldBlockError, held with them).
import { afterEach, expect, it } from 'vitest';
import { testMirror } from '../support/mirror.ts';

const PAGE = 4096;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

it('a main-thread read of a clean page does not wait for the readback of others', async () => {
  const { space, gpu } = await testMirror(
    { size: 8 << 20, pageSize: PAGE },
    { budget: 64 * PAGE },
    cleanups,
  );
  const clean = space.alloc(40 * PAGE);
  space.fill(clean, 40 * PAGE, 3);
  await gpu.migrate(clean, 40 * PAGE, 'gpu');
  await gpu.migrate(clean, 40 * PAGE, 'cpu'); // 40 clean `shared` pages, least recently used
  const dirty = space.alloc(24 * PAGE);
  await gpu.write(dirty, new Uint8Array(24 * PAGE).fill(4)); // 24 GPU-dirty pages
  const next = space.alloc(62 * PAGE);
  space.fill(next, 62 * PAGE, 5);
  const migrated = gpu.migrate(next, 62 * PAGE, 'gpu'); // evicts all 64 frames' pages
  await new Promise((resolve) => setTimeout(resolve, 0)); // while the dirty pages are read back
  let outcome = 'ok';
  try {
    space.getU32(clean); // a clean page's CPU copy is valid: no transfer needed
  } catch (error) {
    outcome = `${(error as Error).name}: ${(error as Error).message}`;
  }
  await migrated;
  expect(outcome).toBe('ok');
});
