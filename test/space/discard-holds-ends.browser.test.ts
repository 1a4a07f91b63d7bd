// space.discard on a worker, waiting for a scope on one of its whole pages,
// holds nothing meanwhile: the scope's holder can still open a scope on the
// tail page, end both, and the discard then goes through. (It once held the
// partial end pages while it waited for the whole ones: a deadlock until
// faultTimeoutMs.)
import { releaseProxy, wrap } from 'comlink';
import { afterEach, expect, it } from 'vitest';
import { AddressSpace } from '../../src/space/address-space.ts';
import type { DiscardApi } from './discard.worker.ts';

const PAGE = 4096;
const TIMEOUT = 1500;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

it('a discard waiting for a scope on its whole page lets the scope write the tail page', async () => {
  const space = AddressSpace.create({ size: 4 << 20, pageSize: PAGE, faultTimeoutMs: TIMEOUT });
  const thread = new Worker(new URL('./discard.worker.ts', import.meta.url), { type: 'module' });
  const worker = wrap<DiscardApi>(thread);
  cleanups.push(() => {
    worker[releaseProxy]();
    thread.terminate();
  });
  await worker.attach(space.handle);
  const va = space.alloc(3 * PAGE);
  space.fill(va, 3 * PAGE, 7);
  // The main thread's scope on the whole page 1.
  const lease = await space.acquire(va + PAGE, PAGE, 'read');
  // The worker discards half of page 0, page 1, half of page 2: it waits for the scope.
  const discarded = worker.discard(va + PAGE / 2, 2 * PAGE);
  await new Promise((resolve) => setTimeout(resolve, 200));
  // Inside the scope, the scope's holder opens a write scope on the tail page's second half, then ends the scope.
  const started = performance.now();
  const tail = await space.acquire(va + 2 * PAGE + PAGE / 2, PAGE / 2, 'write');
  tail.bytes.fill(9);
  tail.release();
  const writeMs = performance.now() - started;
  lease.release();
  const outcome = await discarded;
  expect({ result: outcome.result, writeStalled: writeMs > TIMEOUT / 2 }).toEqual({
    result: 'ok',
    writeStalled: false,
  });
  const bytes = space.read(va, 3 * PAGE);
  expect(bytes.subarray(PAGE / 2, 2 * PAGE + PAGE / 2).every((b) => b === 0)).toBe(true);
});
