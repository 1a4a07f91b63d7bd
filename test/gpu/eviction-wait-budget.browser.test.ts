// A migration that first waits for a holder of its own page, then waits for
// frames others hold, waits two faultTimeoutMs budgets: invariant 8 allows one.
import { afterEach, expect, it } from 'vitest';
import { OutOfMemoryError } from '../../src/errors.ts';
import { singleCallThread } from '../support/single-call-thread.ts';
import { testMirror } from '../support/mirror.ts';

const PAGE = 4096;
const TIMEOUT = 1000;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

it('a migration needing frames ends within faultTimeoutMs of waiting on others', async () => {
  const { space, gpu } = await testMirror(
    { size: 4 << 20, pageSize: PAGE, faultTimeoutMs: TIMEOUT },
    { budget: 16 * PAGE },
    cleanups,
  );
  const filler = space.alloc(16 * PAGE);
  space.fill(filler, 16 * PAGE, 1);
  await gpu.migrate(filler, 16 * PAGE, 'gpu');
  await gpu.migrate(filler, 16 * PAGE, 'cpu'); // 16 frames, all clean `shared`
  const target = space.alloc(PAGE);
  space.fill(target, PAGE, 2);
  // Every frame's page is in a read scope: no victim while it lasts.
  const lease = await space.acquire(filler, 16 * PAGE, 'read');
  cleanups.push(() => lease.release());
  // A worker's read scope on the target makes the migration wait for its hold first.
  const worker = await singleCallThread(space, cleanups);
  await worker.acquireRead(target, PAGE);
  const started = performance.now();
  setTimeout(() => void worker.release(), 0.8 * TIMEOUT);
  const error = await gpu.migrate(target, PAGE, 'gpu').then(
    () => undefined,
    (e: unknown) => e,
  );
  const elapsed = performance.now() - started;
  expect(error).toBeInstanceOf(OutOfMemoryError);
  // Every call ends: completes or fails within faultTimeoutMs of waiting on others (some slack).
  expect(elapsed).toBeLessThan(TIMEOUT + 400);
});
