// Hold-offs (a waiter's claim that keeps new holders behind it) leave with
// the waiter: after a write scope waiting beside a long read scope gives up,
// plain reads of the page go on at once. (The hold-off bits outlived the
// waiter while the page stayed held, and every new plain reader waited out
// faultTimeoutMs behind a waiter that was gone.)
import { afterEach, describe, expect, it } from 'vitest';
import { AddressSpace } from '../../src/space/address-space.ts';
import { singleCallThread } from '../support/single-call-thread.ts';

const PAGE = 64 * 1024;
const FAULT_TIMEOUT_MS = 1500;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const worker = (space: AddressSpace) => singleCallThread(space, cleanups);

describe('a waiter that timed out', () => {
  it('leaves no hold-off behind: plain reads beside a read scope go on at once', async () => {
    const space = AddressSpace.create({
      size: 16 * PAGE,
      pageSize: PAGE,
      faultTimeoutMs: FAULT_TIMEOUT_MS,
    });
    const va = space.alloc(PAGE);
    space.setU32(va, 42);
    const writer = await worker(space);
    const reader = await worker(space);

    // A long read scope (main thread).
    const lease = await space.acquire(va, PAGE, 'read');
    cleanups.push(() => lease.release());

    // Sanity: before anyone waited, a worker's plain read beside the scope is immediate.
    const before = await reader.readU32(va);
    expect(before.result).toBe('ok');

    // A worker's write scope waits for the read scope and gives up after faultTimeoutMs.
    const gaveUp = await writer.writeScope(va, PAGE);
    expect(gaveUp.result).toBe('WOULD_BLOCK:timeout');

    // Now nobody waits. A plain read beside the read scope must not wait.
    // Today it yields to the departed waiter and waits out the whole
    // faultTimeoutMs (its Atomics.wait times out, then it gets in).
    const workerRead = await reader.readU32(va);
    expect({
      worker: workerRead.result,
      workerMs: workerRead.ms < 300 ? 'fast' : Math.round(workerRead.ms),
    }).toEqual({ worker: 'ok', workerMs: 'fast' });
  });
});
