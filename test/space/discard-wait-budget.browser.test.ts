// space.discard on a worker waits for its partial end pages and its whole
// pages within one wait budget: it fails within faultTimeoutMs of waiting on
// others in all (it once took a second budget for the whole pages).
import { releaseProxy, wrap } from 'comlink';
import { afterEach, expect, it } from 'vitest';
import { AddressSpace } from '../../src/space/address-space.ts';
import type { DiscardApi } from './discard.worker.ts';

const PAGE = 4096;
const TIMEOUT = 1000;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

it('a discard ends within faultTimeoutMs of waiting on others', async () => {
  const space = AddressSpace.create({ size: 4 << 20, pageSize: PAGE, faultTimeoutMs: TIMEOUT });
  const thread = new Worker(new URL('./discard.worker.ts', import.meta.url), { type: 'module' });
  const worker = wrap<DiscardApi>(thread);
  cleanups.push(() => {
    worker[releaseProxy]();
    thread.terminate();
  });
  await worker.attach(space.handle);
  const va = space.alloc(2 * PAGE);
  space.fill(va, 2 * PAGE, 7);
  const head = await space.acquire(va, PAGE, 'read'); // the partial head page, let go of at 0.8 T
  const whole = await space.acquire(va + PAGE, PAGE, 'read'); // the whole page, kept
  cleanups.push(() => whole.release());
  setTimeout(() => head.release(), 0.8 * TIMEOUT);
  const outcome = await worker.discard(va + PAGE / 2, PAGE + PAGE / 2);
  expect(outcome.result).toBe('WOULD_BLOCK:timeout');
  expect(outcome.ms).toBeLessThan(TIMEOUT + 300);
});
