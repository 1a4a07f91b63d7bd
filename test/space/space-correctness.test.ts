// Correctness of the CPU side under the interleavings a review found broken:
// a free of pages the device holds, re-entrant async calls, throwing
// listeners, protect racing a free, waits that restart their budget or
// starve, and a notice pump that misses a wake-up. A hold taken directly
// through the page table stands for the device (a kernel run, a migration)
// or for another thread caught between two steps.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AccessError, InvalidArgumentError, WouldBlockError } from '../../src/errors.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import { internalsOf } from '../../src/space/internals.ts';
import type { Hold } from '../../src/space/page-table.ts';
import { withState } from '../../src/space/pte.ts';
import {
  HEADER_ALLOC_MUTEX,
  HEADER_LOG_HEAD,
  LOG_CAPACITY,
  LOG_CAUSES,
  LOG_LEN,
  LOG_META,
  LOG_ORIGIN_SHIFT,
  LOG_STAMP,
  LOG_VA,
  LOG_WORDS,
  PTE_FRAME,
  PTE_GPU,
  PTE_GPU_DIRTY,
  PTE_SHARED,
} from '../../src/space/shared-layout.ts';
import type { SharedState } from '../../src/space/shared-state.ts';
import { PAGE, expectError, giveFrame, pageTable, space } from './space-fixtures.ts';

afterEach(() => {
  vi.restoreAllMocks();
});

/** How `promise` settled within `ms`; throws 'did not end' if it did not. */
async function settled<T>(
  promise: Promise<T>,
  ms: number,
): Promise<{ value: T } | { error: unknown }> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`did not end within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([
      promise.then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The error `promise` rejected with within `ms`; fails if it resolved or did not end. */
async function rejection(promise: Promise<unknown>, ms: number): Promise<unknown> {
  const outcome = await settled(promise, ms);
  if ('value' in outcome) throw new Error('resolved, expected a rejection');
  return outcome.error;
}

const tick = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms));

/** A device hold of the pages of [va, va + len), as a kernel run or a migration takes it. */
function deviceHold(s: AddressSpace, va: number, len: number): Hold[] {
  const first = va / s.pageSize;
  return [{ first, count: Math.ceil(len / s.pageSize), kind: 'exclusive-long' }];
}

describe('free of a range the device holds', () => {
  it('unmaps at once on a thread that may not block, and gives the pages back when the device lets go', () => {
    const s = space({ mayBlock: () => false });
    const { table } = internalsOf(s);
    const va = s.alloc(2 * PAGE);
    s.fill(va, 2 * PAGE, 7);
    const first = va / PAGE;
    const [generation, sequence] = [table.generation(first), table.sequence(first)];
    const events: unknown[] = [];
    s.onInvalidate(va, 2 * PAGE, (event) => events.push(event));
    const device = deviceHold(s, va, 2 * PAGE);
    expect(table.tryHoldAll(device)).toBeUndefined();

    s.free(va);
    expect(s.snapshot(va, 2 * PAGE).map((page) => page.state)).toEqual(['unmapped', 'unmapped']);
    expectError(() => s.getU32(va), AccessError, { address: va, reason: 'freed' });
    expect(table.generation(first)).toBe(generation + 1);
    expect(table.sequence(first)).toBeGreaterThan(sequence);
    expect(events).toEqual([{ va, len: 2 * PAGE, cause: 'free' }]);
    expectError(() => s.free(va), InvalidArgumentError, { reason: 'not-allocated' });
    // Not handed out again while the device still holds the pages.
    const elsewhere = s.alloc(2 * PAGE);
    expect(elsewhere).not.toBe(va);
    s.free(elsewhere);

    table.releaseHolds(device);
    expect(s.alloc(2 * PAGE)).toBe(va);
    expect(s.read(va, 2 * PAGE).every((byte) => byte === 0)).toBe(true);
  });

  it('does not wait for a kernel that only reads the pages either', () => {
    const s = space({ mayBlock: () => false });
    const { table } = internalsOf(s);
    const va = s.alloc(PAGE);
    s.setU32(va, 5);
    const device = deviceHold(s, va, PAGE);
    expect(table.tryHoldAll(device)).toBeUndefined();
    const reading = table.downgradeHolds(device); // as a run with a 'read' use holds them
    s.free(va);
    expect(s.snapshot(va, PAGE)[0]!.state).toBe('unmapped');
    table.releaseHolds(reading);
    expect(s.alloc(PAGE)).toBe(va);
    expect(s.getU32(va)).toBe(0);
  });

  it('returns at once on a thread that may block, instead of waiting out faultTimeoutMs', () => {
    const s = space({ faultTimeoutMs: 300 });
    const { table } = internalsOf(s);
    const va = s.alloc(PAGE);
    const device = deviceHold(s, va, PAGE);
    expect(table.tryHoldAll(device)).toBeUndefined();
    const started = performance.now();
    s.free(va);
    expect(performance.now() - started).toBeLessThan(100);
    table.releaseHolds(device);
  });

  it('splits the allocation at once on a partial free, so the rest can be freed meanwhile', () => {
    const s = space({ mayBlock: () => false });
    const { table } = internalsOf(s);
    const va = s.alloc(3 * PAGE);
    const device = deviceHold(s, va + PAGE, PAGE);
    expect(table.tryHoldAll(device)).toBeUndefined();
    s.free(va + PAGE, PAGE);
    s.free(va); // the first page: the allocation now ends where the freed page starts
    s.free(va + 2 * PAGE);
    table.releaseHolds(device);
    expect(s.alloc(3 * PAGE)).toBe(va); // all three pages are one free run again
  });

  it('leaves no page unreachable: a release that cannot have the allocator leaves the pages to the next alloc', () => {
    const s = space({ mayBlock: () => false, spinLimitMs: 5 });
    const { table } = internalsOf(s);
    const va = s.alloc(62 * PAGE); // all but page 0 and one page
    const device = deviceHold(s, va, 62 * PAGE);
    expect(table.tryHoldAll(device)).toBeUndefined();
    s.free(va);
    const header = pageTable(s).header;
    Atomics.store(header, HEADER_ALLOC_MUTEX, 1); // another thread is in the allocator
    table.releaseHolds(device); // cannot give the pages back now
    Atomics.store(header, HEADER_ALLOC_MUTEX, 0);
    expect(s.alloc(63 * PAGE)).toBe(va);
    expect(s.read(va, 63 * PAGE).every((byte) => byte === 0)).toBe(true);
  });

  it('still waits for another thread’s scope: a thread that may not block throws, changing nothing', async () => {
    const s = space({ mayBlock: () => false });
    const other = AddressSpace.attach(s.handle);
    const va = s.alloc(PAGE);
    const lease = await other.acquire(va, PAGE, 'read');
    expectError(() => s.free(va), WouldBlockError, { reason: 'may-not-block' });
    expect(s.snapshot(va, PAGE)[0]!.state).toBe('zero');
    lease.release();
    s.free(va);
  });
});

describe('calls inside an acquire lease of the same thread', () => {
  it('readAsync, writeAsync and acquire on an overlapping range reject at once as reentrant', async () => {
    const s = space({ faultTimeoutMs: 5000 });
    const va = s.alloc(2 * PAGE);
    for (const mode of ['write', 'read'] as const) {
      const lease = await s.acquire(va, PAGE, mode);
      const calls: [() => Promise<unknown>, number][] = [
        [() => s.readAsync(va + 8, 4), va + 8],
        [() => s.writeAsync(va + 8, new Uint8Array(4)), va + 8],
        [() => s.acquire(va + PAGE - 4, 8, 'read'), va + PAGE - 4],
      ];
      for (const [call, address] of calls) {
        const error = await rejection(call(), 1000);
        expect(error).toBeInstanceOf(WouldBlockError);
        expect(error).toMatchObject({ reason: 'reentrant', address });
      }
      expect(await s.readAsync(va + PAGE, 4)).toEqual(new Uint8Array(4)); // another page: fine
      lease.release();
    }
    expect(await s.readAsync(va, 4)).toEqual(new Uint8Array(4));
  });

  it('exposes the check to the device side: assertNotInScope throws while the lease lives', async () => {
    const s = space();
    const va = s.alloc(2 * PAGE);
    const internals = internalsOf(s);
    const lease = await s.acquire(va, PAGE, 'read');
    expectError(() => internals.assertNotInScope(va / PAGE, 2, va), WouldBlockError, {
      reason: 'reentrant',
      address: va,
    });
    internals.assertNotInScope(va / PAGE + 1, 1, va + PAGE);
    lease.release();
    internals.assertNotInScope(va / PAGE, 2, va);
  });
});

describe('a listener that throws', () => {
  it('fails neither the call that triggered it nor the listeners after it, and is reported', () => {
    const s = space();
    const va = s.alloc(PAGE);
    giveFrame(s, va, PTE_SHARED);
    const consoleError = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const reported: unknown[] = [];
    internalsOf(s).onListenerError((error) => reported.push(error));
    const seen: unknown[] = [];
    s.onInvalidate(va, PAGE, () => {
      throw new Error('listener bug');
    });
    s.onInvalidate(va, PAGE, (event) => seen.push(event));
    s.setU32(va, 1);
    expect(s.getU32(va)).toBe(1);
    expect(seen).toEqual([{ va, len: PAGE, cause: 'write' }]);
    expect(reported).toHaveLength(1);
    expect((reported[0] as Error).message).toBe('listener bug');
    expect(consoleError).toHaveBeenCalled();
  });

  it('keeps the pump of another thread’s notices going', async () => {
    const mine = space();
    const theirs = AddressSpace.attach(mine.handle);
    const va = mine.alloc(2 * PAGE);
    vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const reported: unknown[] = [];
    internalsOf(mine).onListenerError((error) => reported.push(error));
    const seen: unknown[] = [];
    mine.onInvalidate(va, 2 * PAGE, () => {
      throw new Error('listener bug');
    });
    mine.onInvalidate(va, 2 * PAGE, (event) => seen.push(event));
    theirs.protect(va, PAGE, 'r');
    await tick(10);
    theirs.protect(va + PAGE, PAGE, 'r');
    await tick(10);
    expect(seen).toEqual([
      { va, len: PAGE, cause: 'protect' },
      { va: va + PAGE, len: PAGE, cause: 'protect' },
    ]);
    expect(reported).toHaveLength(2);
  });
});

describe('protect and a concurrent free', () => {
  it('protect waits for a free in progress on its pages, then refuses the freed page, changing nothing', () => {
    const s = space({ mayBlock: () => false, spinLimitMs: 20 });
    const { table } = internalsOf(s);
    const va = s.alloc(2 * PAGE);
    const page = va / PAGE + 1;
    // Another thread's free holds the second page, between its check and its change.
    const free: Hold[] = [{ first: page, count: 1, kind: 'exclusive' }];
    expect(table.tryHoldAll(free)).toBeUndefined();
    expectError(() => s.protect(va, 2 * PAGE, 'r'), WouldBlockError, { reason: 'may-not-block' });
    expect(s.snapshot(va, 2 * PAGE).map((p) => p.prot)).toEqual(['rw', 'rw']);
    // The free changes the page and lets go: protect now sees it freed.
    table.discardPage(page);
    table.releaseHolds(free);
    expectError(() => s.protect(va, 2 * PAGE, 'r'), AccessError, {
      address: va + PAGE,
      reason: 'freed',
    });
    expect(s.snapshot(va, PAGE)[0]!.prot).toBe('rw');
  });

  it('does not wait for scopes or the device: it applies to accesses that start after it', async () => {
    const s = space({ mayBlock: () => false });
    const other = AddressSpace.attach(s.handle);
    const { table } = internalsOf(s);
    const [a, b] = [s.alloc(PAGE), s.alloc(PAGE)];
    const lease = await other.acquire(a, PAGE, 'write');
    const device = deviceHold(s, b, PAGE);
    expect(table.tryHoldAll(device)).toBeUndefined();
    s.protect(a, PAGE, 'r');
    s.protect(b, PAGE, 'r');
    expect(s.snapshot(a, 2 * PAGE).map((p) => p.prot)).toEqual(['r', 'r']);
    lease.release();
    table.releaseHolds(device);
  });
});

/** Serves CPU faults by completing every request without bringing the page back. */
function lyingServer(s: AddressSpace, delayMs: number): { served: () => number; stop: () => void } {
  const { faults, threadId } = internalsOf(s);
  expect(faults.serve(threadId)).toBe(true);
  let running = true;
  let served = 0;
  void (async () => {
    while (running) {
      const seen = faults.doorbell();
      const taken = faults.take();
      if (taken.length > 0) await tick(delayMs);
      for (const request of taken) {
        faults.complete(request);
        served++;
      }
      await faults.ring(seen, 20);
    }
  })();
  return {
    served: () => served,
    stop: () => {
      running = false;
      faults.stopServing(threadId);
    },
  };
}

describe('the wait of one call', () => {
  it('is bounded by faultTimeoutMs in all, across faults and retries', async () => {
    const s = AddressSpace.create({ size: 64 * PAGE, pageSize: PAGE, faultTimeoutMs: 300 });
    const va = s.alloc(PAGE);
    const { table } = internalsOf(s);
    table.updatePte(va / PAGE, (pte) => withState(pte, PTE_GPU) | PTE_GPU_DIRTY | PTE_FRAME);
    const server = lyingServer(s, 40);
    try {
      const started = performance.now();
      const error = await rejection(s.readAsync(va, 4), 3000);
      expect(error).toBeInstanceOf(WouldBlockError);
      expect(error).toMatchObject({ reason: 'timeout', address: va });
      expect(performance.now() - started).toBeLessThan(1000);
      expect(server.served()).toBeGreaterThan(1); // it did retry
    } finally {
      server.stop();
    }
  });

  for (const writerKind of ['a write scope', 'a plain write'] as const) {
    it(`lets ${writerKind} in although read scopes of other threads keep re-taking the page`, async () => {
      const s = space();
      const readers = [AddressSpace.attach(s.handle), AddressSpace.attach(s.handle)];
      const va = s.alloc(PAGE);
      let held = await readers[0]!.acquire(va, PAGE, 'read');
      let round = 0;
      let gotAt = -1;
      const writer =
        writerKind === 'a write scope'
          ? s.acquire(va, PAGE, 'write').then((lease) => lease.release())
          : s.writeAsync(va, new Uint32Array([1]));
      void writer.then(() => (gotAt = round));
      for (round = 1; round <= 50 && gotAt < 0; round++) {
        const next = readers[round % 2]!.acquire(va, PAGE, 'read');
        await tick(1);
        held.release();
        held = await next;
      }
      held.release();
      await writer;
      expect(gotAt).toBeGreaterThan(0);
      expect(gotAt).toBeLessThanOrEqual(3);
    });
  }

  it('lets plain readers join a read scope while a plain writer waits for it', async () => {
    const s = space();
    const other = AddressSpace.attach(s.handle);
    const va = s.alloc(PAGE);
    const lease = await s.acquire(va, PAGE, 'read');
    const write = other.writeAsync(va, new Uint32Array([1]));
    await tick(1);
    expect(await settled(AddressSpace.attach(s.handle).readAsync(va, 4), 500)).toEqual({
      value: new Uint8Array(4),
    });
    lease.release();
    await write;
  });

  it('orders a CPU access already waiting before a device hold asked for after it', async () => {
    const s = space();
    const { table } = internalsOf(s);
    const va = s.alloc(PAGE);
    const device = deviceHold(s, va, PAGE);
    expect(table.tryHoldAll(device)).toBeUndefined();
    const write = s.writeAsync(va, new Uint32Array([9]));
    await tick(1);
    table.releaseHolds(device);
    // A run called now, while the write is still waiting, comes after it.
    expect(table.tryHoldAll(device)).toBeDefined();
    await write;
    expect(table.tryHoldAll(device)).toBeUndefined();
    table.releaseHolds(device);
    expect(s.getU32(va)).toBe(9);
  });
});

/** Takes a log ticket as another thread's `announce` does; returns it. */
function takeTicket(shared: SharedState): number {
  return Atomics.add(shared.header, HEADER_LOG_HEAD, 1);
}

/** Fills and publishes the log slot of `ticket`, as another thread (`origin`) does. */
function publish(shared: SharedState, ticket: number, va: number, len: number, origin: number) {
  const at = ((ticket >>> 0) % LOG_CAPACITY) * LOG_WORDS;
  Atomics.store(shared.log, at + LOG_VA, va);
  Atomics.store(shared.log, at + LOG_LEN, len);
  const cause = LOG_CAUSES.indexOf('protect');
  Atomics.store(shared.log, at + LOG_META, cause | (origin << LOG_ORIGIN_SHIFT));
  Atomics.store(shared.log, at + LOG_STAMP, (ticket + 1) | 0);
}

describe('the notice pump', () => {
  it('delivers a notice published while it delivers the one before, behind an unpublished ticket', async () => {
    const s = space();
    const shared = pageTable(s);
    const va = s.alloc(2 * PAGE);
    const origin = 99; // another thread
    const seen: unknown[] = [];
    let late: number | undefined;
    s.onInvalidate(va, 2 * PAGE, (event) => {
      seen.push(event);
      if (late === undefined) return;
      // Meanwhile the other thread publishes the record whose ticket it took, and rings.
      publish(shared, late, va + PAGE, PAGE, origin);
      late = undefined;
      Atomics.notify(shared.header, HEADER_LOG_HEAD);
    });
    await tick(1);
    const first = takeTicket(shared);
    publish(shared, first, va, PAGE, origin);
    late = takeTicket(shared); // taken, not yet published
    Atomics.notify(shared.header, HEADER_LOG_HEAD);
    const deadline = performance.now() + 1000;
    while (seen.length < 2 && performance.now() < deadline) await tick(5);
    if (seen.length < 2)
      throw new Error('the second notice did not end up delivered within 1000 ms');
    expect(seen).toEqual([
      { va, len: PAGE, cause: 'protect' },
      { va: va + PAGE, len: PAGE, cause: 'protect' },
    ]);
  });
});
