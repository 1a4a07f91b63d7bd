// prefetch(..., 'cpu') of pages already on the CPU that a worker reads in a
// scope: nothing needs to move, yet it holds them exclusively and waits.
import { afterEach, expect, it } from 'vitest';
import { singleCallThread } from '../support/single-call-thread.ts';
import { testMirror } from '../support/mirror.ts';

const PAGE = 4096;
const TIMEOUT = 1000;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

it("a prefetch to 'cpu' of CPU pages under a worker's read scope resolves at once", async () => {
  const { space, gpu } = await testMirror(
    { size: 4 << 20, pageSize: PAGE, faultTimeoutMs: TIMEOUT },
    { budget: 16 * PAGE },
    cleanups,
  );
  const va = space.alloc(4 * PAGE);
  space.fill(va, 4 * PAGE, 3); // `cpu` pages: nothing is GPU-owned
  const worker = await singleCallThread(space, cleanups);
  await worker.acquireRead(va, PAGE);
  cleanups.push(() => worker.release());
  const started = performance.now();
  const outcome = await gpu.prefetch(va, 4 * PAGE, 'cpu').then(
    (r) => JSON.stringify(r),
    (e: unknown) => String(e),
  );
  const elapsed = performance.now() - started;
  // Nothing to bring back, and CPU readers change no state: no wait, no error.
  expect(outcome).toBe(JSON.stringify({ pages: 0, bytes: 0, ignored: 0 }));
  expect(elapsed).toBeLessThan(TIMEOUT / 2);
});
