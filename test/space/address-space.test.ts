import { describe, expect, it } from 'vitest';
import {
  AccessError,
  InvalidArgumentError,
  OutOfMemoryError,
  WouldBlockError,
} from '../../src/errors.ts';
import { AddressSpace, type AddressSpaceOptions } from '../../src/space/address-space.ts';
import { intervalsAt } from '../../src/space/interval-set.ts';
import {
  HEADER_ALLOC_MUTEX,
  PTE_FRAME,
  PTE_GPU,
  PTE_GPU_DIRTY,
  PTE_SHARED,
  PTE_STALE_RANGES,
  PTE_STALE_WHOLE,
  PTE_STATE_MASK,
  STALE_CAPACITY,
  STALE_WORDS,
} from '../../src/space/shared-layout.ts';
import { openSharedState } from '../../src/space/shared-state.ts';

const PAGE = 4096;

function space(options: Partial<AddressSpaceOptions> = {}): AddressSpace {
  return AddressSpace.create({ size: 64 * PAGE, pageSize: PAGE, ...options });
}

/** The space's page table, as the GPU mirror sees it: for putting pages in GPU states by hand. */
function pageTable(s: AddressSpace) {
  return openSharedState(s.handle.meta);
}

/** Makes the page at `va` look as a mirror leaves it: a frame, and `state`. */
function giveFrame(s: AddressSpace, va: number, state: number, extra = 0): void {
  const { pte } = pageTable(s);
  const page = va / s.pageSize;
  Atomics.store(pte, page, (Atomics.load(pte, page) & ~PTE_STATE_MASK) | state | PTE_FRAME | extra);
}

function expectError<E extends Error>(
  fn: () => unknown,
  type: new (...args: never[]) => E,
  fields: Partial<E>,
): E {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(type);
  expect(caught).toMatchObject(fields);
  return caught as E;
}

describe('AddressSpace.create', () => {
  it('rejects page sizes that are not powers of two from 4 KiB to 2 MiB', () => {
    for (const pageSize of [1024, 3 * 4096, 4 << 20]) {
      expectError(() => AddressSpace.create({ size: 16 << 20, pageSize }), InvalidArgumentError, {
        argument: 'pageSize',
        reason: 'bad-value',
      });
    }
  });

  it('rejects sizes that are not whole pages, too small, or over 4 GiB minus a page', () => {
    expectError(() => AddressSpace.create({ size: 5000, pageSize: PAGE }), InvalidArgumentError, {
      reason: 'misaligned',
    });
    expectError(() => AddressSpace.create({ size: PAGE, pageSize: PAGE }), InvalidArgumentError, {
      reason: 'bad-value',
    });
    expectError(
      () => AddressSpace.create({ size: 2 ** 32, pageSize: PAGE }),
      InvalidArgumentError,
      { reason: 'too-large' },
    );
    expectError(() => AddressSpace.create({ size: -PAGE }), InvalidArgumentError, {
      reason: 'negative',
    });
    expectError(() => AddressSpace.create({ size: 1.5 }), InvalidArgumentError, {
      reason: 'not-integer',
    });
  });

  it('defaults to 64 KiB pages', () => {
    expect(AddressSpace.create({ size: 1 << 20 }).pageSize).toBe(64 << 10);
  });
});

describe('allocation', () => {
  it('hands out page-aligned, zeroed, never-null memory in state zero', () => {
    const s = space();
    const va = s.alloc(3 * PAGE - 5);
    expect(va).toBeGreaterThan(0);
    expect(va % PAGE).toBe(0);
    expect(s.read(va, 3 * PAGE)).toEqual(new Uint8Array(3 * PAGE));
    expect(s.snapshot(va, 3 * PAGE)).toEqual(
      Array(3).fill({ state: 'zero', prot: 'rw', dirty: 'none' }),
    );
  });

  it('zeroes freed memory before handing it out again', () => {
    const s = space();
    const va = s.alloc(2 * PAGE);
    s.fill(va, 2 * PAGE, 0xab);
    s.free(va);
    const again = s.alloc(2 * PAGE);
    expect(again).toBe(va);
    expect(s.read(again, 2 * PAGE)).toEqual(new Uint8Array(2 * PAGE));
  });

  it('throws OutOfMemoryError naming the largest free run, and allocates nothing', () => {
    const s = space();
    s.alloc(40 * PAGE);
    const error = expectError(() => s.alloc(30 * PAGE), OutOfMemoryError, {
      reason: 'address-space',
      requested: 30 * PAGE,
    });
    expect(error.available).toBe(23 * PAGE);
    expect(s.alloc(23 * PAGE)).toBe(41 * PAGE);
  });

  it('rejects zero, negative and non-integer sizes and unknown protections', () => {
    const s = space();
    expectError(() => s.alloc(0), InvalidArgumentError, { argument: 'bytes', reason: 'zero' });
    expectError(() => s.alloc(-1), InvalidArgumentError, { reason: 'negative' });
    expectError(() => s.alloc(0.5), InvalidArgumentError, { reason: 'not-integer' });
    expectError(() => s.alloc(PAGE, { prot: 'x' as 'rw' }), InvalidArgumentError, {
      argument: 'prot',
      reason: 'bad-value',
    });
  });
});

describe('free', () => {
  it('unmaps the whole allocation at once; later accesses fail as freed', () => {
    const s = space();
    const va = s.alloc(2 * PAGE);
    s.write(va, new Uint8Array([1, 2, 3]));
    s.free(va);
    expect(s.snapshot(va, 2 * PAGE)).toEqual(
      Array(2).fill({ state: 'unmapped', prot: 'none', dirty: 'none' }),
    );
    expectError(() => s.read(va, 1), AccessError, { address: va, reason: 'freed' });
    expectError(() => s.setU32(va + PAGE, 1), AccessError, { address: va + PAGE, reason: 'freed' });
  });

  it('frees whole pages from the middle of an allocation, keeping the rest', () => {
    const s = space();
    const va = s.alloc(4 * PAGE);
    s.fill(va, 4 * PAGE, 7);
    s.free(va + PAGE, PAGE + 1); // rounds up to two pages
    expect(s.snapshot(va, 4 * PAGE).map((p) => p.state)).toEqual([
      'cpu',
      'unmapped',
      'unmapped',
      'cpu',
    ]);
    expect(s.read(va, PAGE)).toEqual(new Uint8Array(PAGE).fill(7));
    expect(s.read(va + 3 * PAGE, PAGE)).toEqual(new Uint8Array(PAGE).fill(7));
    // The tail is an allocation of its own now.
    s.free(va + 3 * PAGE);
    expect(s.snapshot(va + 3 * PAGE, PAGE)[0]!.state).toBe('unmapped');
  });

  it('refuses a double free, a free of never-allocated memory, and a free from inside an allocation', () => {
    const s = space();
    const va = s.alloc(2 * PAGE);
    s.free(va);
    expectError(() => s.free(va), InvalidArgumentError, { reason: 'not-allocated', address: va });
    expectError(() => s.free(va, PAGE), InvalidArgumentError, { reason: 'not-allocated' });
    expectError(() => s.free(0), InvalidArgumentError, { reason: 'not-allocated' });
    const other = s.alloc(3 * PAGE);
    expectError(() => s.free(other + PAGE), InvalidArgumentError, {
      reason: 'not-allocation-start',
    });
    expectError(() => s.free(other + 1), InvalidArgumentError, { reason: 'misaligned' });
    expectError(() => s.free(64 * PAGE), AccessError, { reason: 'out-of-range' });
    expect(s.snapshot(other, 3 * PAGE).map((p) => p.state)).toEqual(['zero', 'zero', 'zero']);
  });

  it('does not free a reused VA through a stale handle of the old allocation', () => {
    const s = space();
    const va = s.alloc(PAGE);
    s.free(va);
    const reused = s.alloc(PAGE);
    expect(reused).toBe(va);
    // A free of the reused VA is legitimate; the second is a double free.
    s.free(reused);
    expectError(() => s.free(reused), InvalidArgumentError, { reason: 'not-allocated' });
  });
});

describe('access checks', () => {
  it('faults on page 0, on unmapped and out-of-range memory, with the first faulting address', () => {
    const s = space();
    expectError(() => s.getU32(0), AccessError, { address: 0, reason: 'unmapped' });
    expectError(() => s.read(8 * PAGE, 4), AccessError, { address: 8 * PAGE, reason: 'unmapped' });
    const va = s.alloc(PAGE);
    expectError(() => s.read(va + PAGE - 8, 16), AccessError, {
      address: va + PAGE,
      reason: 'unmapped',
    });
    expectError(() => s.read(63 * PAGE, 2 * PAGE), AccessError, {
      address: 64 * PAGE,
      reason: 'out-of-range',
    });
  });

  it('refuses misaligned scalars and bad lengths', () => {
    const s = space();
    const va = s.alloc(PAGE);
    expectError(() => s.getU32(va + 2), InvalidArgumentError, {
      reason: 'misaligned',
      address: va + 2,
    });
    expectError(() => s.atomicAddU32(va + 1, 1), InvalidArgumentError, { reason: 'misaligned' });
    expectError(() => s.read(va, 0), InvalidArgumentError, { argument: 'len', reason: 'zero' });
    expectError(() => s.read(va, -4), InvalidArgumentError, { reason: 'negative' });
    expectError(() => s.read(va + 0.5, 4), InvalidArgumentError, {
      argument: 'va',
      reason: 'not-integer',
    });
    expectError(() => s.write(va, new Uint8Array(0)), InvalidArgumentError, { reason: 'zero' });
  });

  it('enforces protections, and a failed write changes nothing', () => {
    const s = space();
    const va = s.alloc(2 * PAGE);
    s.fill(va, 2 * PAGE, 1);
    s.protect(va + PAGE, PAGE, 'r');
    // The write spans a writable and a read-only page: it fails as a whole.
    expectError(() => s.fill(va + PAGE - 4, 8, 9), AccessError, {
      address: va + PAGE,
      reason: 'protection',
    });
    expect(s.read(va + PAGE - 4, 8)).toEqual(new Uint8Array(8).fill(1));
    s.protect(va, PAGE, 'none');
    expectError(() => s.getU32(va), AccessError, { address: va, reason: 'protection' });
    expect(s.snapshot(va, 2 * PAGE).map((p) => p.prot)).toEqual(['none', 'r']);
    s.protect(va, 2 * PAGE, 'rw');
    s.setU32(va + PAGE, 5);
    expect(s.getU32(va + PAGE)).toBe(5);
  });

  it('allocates read-only memory that reads as zeros', () => {
    const s = space();
    const va = s.alloc(PAGE, { prot: 'r' });
    expect(s.getU32(va)).toBe(0);
    expectError(() => s.setU32(va, 1), AccessError, { reason: 'protection' });
  });

  it('refuses protect of unmapped pages and of misaligned addresses, changing nothing', () => {
    const s = space();
    const va = s.alloc(PAGE);
    expectError(() => s.protect(va, 2 * PAGE, 'r'), AccessError, {
      address: va + PAGE,
      reason: 'unmapped',
    });
    expect(s.snapshot(va, PAGE)[0]!.prot).toBe('rw');
    expectError(() => s.protect(va + 4, 4, 'r'), InvalidArgumentError, { reason: 'misaligned' });
  });
});

describe('data', () => {
  it('reads back what was written, through every accessor', () => {
    const s = space();
    const va = s.alloc(2 * PAGE);
    const data = new Uint8Array(PAGE + 100).map((_, i) => i * 7);
    s.write(va + 50, data);
    expect(s.read(va + 50, data.length)).toEqual(data);
    s.setU32(va + 8, 0xdeadbeef);
    expect(s.getU32(va + 8)).toBe(0xdeadbeef);
    s.setF32(va + 12, 2.5);
    expect(s.getF32(va + 12)).toBe(2.5);
    expect(s.atomicAddU32(va + 8, 1)).toBe(0xdeadbeef);
    expect(s.atomicCasU32(va + 8, 0xdeadbef0, 7)).toBe(0xdeadbef0);
    expect(s.atomicCasU32(va + 8, 0, 9)).toBe(7);
    expect(s.getU32(va + 8)).toBe(7);
    s.copy(va + PAGE, va + 50, 200);
    expect(s.read(va + PAGE, 200)).toEqual(data.subarray(0, 200));
  });

  it('copies overlapping ranges like memmove', () => {
    const s = space();
    const va = s.alloc(PAGE);
    s.write(va, new Uint8Array([1, 2, 3, 4, 5, 6]));
    s.copy(va + 2, va, 4);
    expect(s.read(va, 6)).toEqual(new Uint8Array([1, 2, 1, 2, 3, 4]));
  });

  it('writes typed arrays by their bytes, whatever their offset', () => {
    const s = space();
    const va = s.alloc(PAGE);
    const words = new Uint32Array([10, 20, 30, 40]).subarray(1, 3);
    s.write(va, words);
    expect(s.getU32(va)).toBe(20);
    expect(s.getU32(va + 4)).toBe(30);
  });
});

describe('page states without a GPU (SPEC §2)', () => {
  it('zero -> cpu on write; a read of zero pages changes nothing', () => {
    const s = space();
    const va = s.alloc(2 * PAGE);
    s.read(va, 2 * PAGE);
    expect(s.snapshot(va, 2 * PAGE).map((p) => p.state)).toEqual(['zero', 'zero']);
    s.setU32(va + PAGE, 1);
    expect(s.snapshot(va, 2 * PAGE)).toEqual([
      { state: 'zero', prot: 'rw', dirty: 'none' },
      { state: 'cpu', prot: 'rw', dirty: 'none' },
    ]);
  });

  it('shared -> cpu on write, stale on the GPU in exactly the written ranges', () => {
    const s = space();
    const va = s.alloc(PAGE);
    giveFrame(s, va, PTE_SHARED);
    s.write(va + 16, new Uint8Array(16));
    s.setU32(va + 100, 1);
    s.write(va + 32, new Uint8Array(8)); // touches the first range: merges
    expect(s.snapshot(va, PAGE)).toEqual([{ state: 'cpu', prot: 'rw', dirty: 'cpu' }]);
    const table = pageTable(s);
    const page = va / PAGE;
    expect(Atomics.load(table.pte, page) & PTE_STALE_RANGES).not.toBe(0);
    expect(intervalsAt(table.stale, page * STALE_WORDS)).toEqual([
      [16, 40],
      [100, 104],
    ]);
  });

  it('marks the whole page stale past the range capacity, or on a whole-page write', () => {
    const s = space();
    const [a, b] = [s.alloc(PAGE), s.alloc(PAGE)];
    giveFrame(s, a, PTE_SHARED);
    giveFrame(s, b, PTE_SHARED);
    for (let i = 0; i <= STALE_CAPACITY; i++) s.setU32(a + i * 64, i);
    s.fill(b, PAGE, 3);
    const table = pageTable(s);
    for (const va of [a, b]) {
      expect(Atomics.load(table.pte, va / PAGE) & (PTE_STALE_WHOLE | PTE_STALE_RANGES)).toBe(
        PTE_STALE_WHOLE,
      );
      expect(intervalsAt(table.stale, (va / PAGE) * STALE_WORDS)).toEqual([]);
    }
  });

  it('a clean GPU-owned page comes back to the CPU at once: read -> shared, write -> cpu', () => {
    const s = space({ mayBlock: () => false });
    const [a, b] = [s.alloc(PAGE), s.alloc(PAGE)];
    s.setU32(a, 11);
    s.setU32(b, 22);
    giveFrame(s, a, PTE_GPU);
    giveFrame(s, b, PTE_GPU);
    expect(s.snapshot(a, PAGE)[0]).toEqual({ state: 'gpu', prot: 'rw', dirty: 'none' });
    expect(s.getU32(a)).toBe(11);
    expect(s.snapshot(a, PAGE)[0]).toEqual({ state: 'shared', prot: 'rw', dirty: 'none' });
    s.setU32(b + 4, 1);
    expect(s.snapshot(b, PAGE)[0]).toEqual({ state: 'cpu', prot: 'rw', dirty: 'cpu' });
    expect(s.getU32(b)).toBe(22);
  });

  it('reports GPU-dirty pages as dirty on the GPU', () => {
    const s = space();
    const va = s.alloc(PAGE);
    giveFrame(s, va, PTE_GPU, PTE_GPU_DIRTY);
    expect(s.snapshot(va, PAGE)[0]).toEqual({ state: 'gpu', prot: 'rw', dirty: 'gpu' });
  });
});

describe('scopes', () => {
  it('gives zero-copy views of exactly the range', () => {
    const s = space();
    const va = s.alloc(PAGE);
    s.access(va + 8, 16, 'write', (lease) => {
      expect(lease.bytes.length).toBe(16);
      lease.u32.set([1, 2, 3, 4]);
    });
    expect(s.getU32(va + 8)).toBe(1);
    expect(s.getU32(va + 20)).toBe(4);
    const sum = s.access(va + 8, 16, 'read', (lease) => lease.u32.reduce((x, y) => x + y, 0));
    expect(sum).toBe(10);
  });

  it('refuses word views of a misaligned range and any view after release', async () => {
    const s = space();
    const va = s.alloc(PAGE);
    const lease = await s.acquire(va + 1, 8, 'read');
    expect(() => lease.u32).toThrow(InvalidArgumentError);
    expect(lease.bytes.length).toBe(8);
    lease.release();
    lease.release();
    expectError(() => lease.bytes, InvalidArgumentError, { reason: 'released' });
  });

  it('throws on calls that overlap a scope of the same thread', () => {
    const s = space();
    const va = s.alloc(2 * PAGE);
    s.access(va, PAGE, 'read', () => {
      expectError(() => s.setU32(va, 1), WouldBlockError, { reason: 'reentrant' });
      expectError(() => s.read(va, 4), WouldBlockError, { reason: 'reentrant' });
      expectError(() => s.free(va), WouldBlockError, { reason: 'reentrant' });
      s.setU32(va + PAGE, 1); // another page: fine
    });
    s.setU32(va, 1);
  });

  it('a write scope makes the GPU copy stale in its range', () => {
    const s = space();
    const va = s.alloc(PAGE);
    giveFrame(s, va, PTE_SHARED);
    s.access(va + 64, 64, 'write', () => undefined);
    expect(intervalsAt(pageTable(s).stale, (va / PAGE) * STALE_WORDS)).toEqual([[64, 128]]);
  });
});

describe('a thread that may not block', () => {
  it('throws WouldBlockError at once when a scope of another thread holds the page', () => {
    const owner = space();
    const other = AddressSpace.attach(owner.handle, { mayBlock: () => false });
    const va = owner.alloc(PAGE);
    owner.access(va, PAGE, 'read', () => {
      const started = performance.now();
      expectError(() => other.setU32(va, 1), WouldBlockError, {
        reason: 'may-not-block',
        address: va,
      });
      expect(performance.now() - started).toBeLessThan(100);
      expect(other.getU32(va)).toBe(0); // reads go on beside a read scope
    });
    other.setU32(va, 1);
    expect(owner.getU32(va)).toBe(1);
  });

  it('spins at most spinLimitMs on a short critical section, then throws', () => {
    const s = space({ mayBlock: () => false, spinLimitMs: 30 });
    const header = pageTable(s).header;
    Atomics.store(header, HEADER_ALLOC_MUTEX, 1); // another thread is in the allocator
    const started = performance.now();
    expectError(() => s.alloc(PAGE), WouldBlockError, { reason: 'may-not-block' });
    expect(performance.now() - started).toBeGreaterThanOrEqual(29);
    Atomics.store(header, HEADER_ALLOC_MUTEX, 0);
    expect(s.alloc(PAGE)).toBeGreaterThan(0);
  });

  it('a thread that may block waits up to faultTimeoutMs, then throws timeout', () => {
    const owner = space();
    const blocked = AddressSpace.attach(
      { ...owner.handle, faultTimeoutMs: 40 },
      { mayBlock: () => true },
    );
    const va = owner.alloc(PAGE);
    owner.access(va, PAGE, 'write', () => {
      const started = performance.now();
      expectError(() => blocked.getU32(va), WouldBlockError, { reason: 'timeout' });
      expect(performance.now() - started).toBeGreaterThanOrEqual(39);
    });
  });

  it('the async variants wait for the scope instead', async () => {
    const owner = space();
    const other = AddressSpace.attach(owner.handle, { mayBlock: () => false });
    const va = owner.alloc(PAGE);
    const lease = await owner.acquire(va, PAGE, 'write');
    lease.u32[0] = 42;
    let done = false;
    const read = other.readAsync(va, 4).then((bytes) => {
      done = true;
      return new Uint32Array(bytes.buffer)[0];
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(done).toBe(false);
    lease.release();
    expect(await read).toBe(42);
  });
});

describe('onInvalidate', () => {
  it('reports this thread’s frees and protection changes synchronously, clipped to the listener', () => {
    const s = space();
    const va = s.alloc(4 * PAGE);
    const events: unknown[] = [];
    const stop = s.onInvalidate(va + PAGE, 2 * PAGE, (event) => events.push(event));
    s.protect(va, 4 * PAGE, 'r');
    expect(events).toEqual([{ va: va + PAGE, len: 2 * PAGE, cause: 'protect' }]);
    s.free(va + 2 * PAGE, PAGE);
    expect(events[1]).toEqual({ va: va + 2 * PAGE, len: PAGE, cause: 'free' });
    stop();
    s.free(va);
    expect(events).toHaveLength(2);
  });

  it('reports a CPU write that makes a GPU copy stale, once per page', () => {
    const s = space();
    const va = s.alloc(2 * PAGE);
    giveFrame(s, va, PTE_SHARED);
    const events: unknown[] = [];
    s.onInvalidate(va, 2 * PAGE, (event) => events.push(event));
    s.setU32(va + 4, 1);
    s.setU32(va + 8, 1); // already stale: no new notice
    s.setU32(va + PAGE, 1); // no frame: nothing to invalidate
    expect(events).toEqual([{ va, len: PAGE, cause: 'write' }]);
  });

  it('delivers another thread’s notices on this thread’s event loop, coalesced', async () => {
    const mine = space();
    const theirs = AddressSpace.attach(mine.handle);
    const va = mine.alloc(4 * PAGE);
    const events: unknown[] = [];
    mine.onInvalidate(va, 4 * PAGE, (event) => events.push(event));
    theirs.protect(va, PAGE, 'r');
    theirs.protect(va + PAGE, PAGE, 'r');
    expect(events).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(events).toEqual([{ va, len: 2 * PAGE, cause: 'protect' }]);
  });

  it('delivers one whole-space notice when a thread falls behind the log', async () => {
    const mine = space();
    const theirs = AddressSpace.attach(mine.handle);
    const va = mine.alloc(PAGE);
    const events: { cause: string; va: number; len: number }[] = [];
    mine.onInvalidate(va, PAGE, (event) => events.push(event));
    for (let i = 0; i < 1500; i++) theirs.protect(va, PAGE, i % 2 ? 'r' : 'rw');
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(events).toEqual([{ va, len: PAGE, cause: 'overflow' }]);
  });
});
