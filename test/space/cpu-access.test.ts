import { describe, expect, it } from 'vitest';
import { AccessError, InvalidArgumentError, WouldBlockError } from '../../src/errors.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import {
  HEADER_ALLOC_MUTEX,
  PTE_GPU,
  PTE_GPU_DIRTY,
  PTE_SHARED,
  PTE_STALE_BLOCKS,
  PTE_STALE_WHOLE,
} from '../../src/space/shared-layout.ts';
import {
  PAGE,
  expectError,
  giveFrame,
  pageTable,
  space,
  staleBytesWritten,
  staleRuns,
} from './space-fixtures.ts';

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

  it('refuses a fill byte that is not an integer 0-255, with the integer reasons', () => {
    const s = space();
    const va = s.alloc(PAGE);
    expectError(() => s.fill(va, 4, 1.5), InvalidArgumentError, {
      argument: 'byte',
      reason: 'not-integer',
    });
    expectError(() => s.fill(va, 4, -1), InvalidArgumentError, {
      argument: 'byte',
      reason: 'negative',
    });
    expectError(() => s.fill(va, 4, 256), InvalidArgumentError, {
      argument: 'byte',
      reason: 'too-large',
    });
    s.fill(va, 4, 255);
    expect(s.getU32(va)).toBe(0xffffffff);
    expect(s.snapshot(va, PAGE)[0]!.state).toBe('cpu');
  });
});

describe('page states without a GPU', () => {
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

  it('shared -> cpu on write, stale on the GPU in exactly the 16-byte blocks written', () => {
    const s = space();
    const va = s.alloc(PAGE);
    giveFrame(s, va, PTE_SHARED);
    s.write(va + 16, new Uint8Array(16));
    s.setU32(va + 100, 1);
    s.write(va + 32, new Uint8Array(8)); // touches the first range: merges
    expect(s.snapshot(va, PAGE)).toEqual([{ state: 'cpu', prot: 'rw', dirty: 'cpu' }]);
    const table = pageTable(s);
    const page = va / PAGE;
    expect(Atomics.load(table.pte, page) & PTE_STALE_BLOCKS).not.toBe(0);
    expect(staleRuns(s, va)).toEqual([
      [16, 48],
      [96, 112],
    ]);
  });

  it('keeps every scattered write at block granularity, with no per-page limit', () => {
    const s = space();
    const va = s.alloc(PAGE);
    giveFrame(s, va, PTE_SHARED);
    for (let i = 0; i < PAGE / 64; i++) s.setU32(va + i * 64 + 4, i);
    expect(staleRuns(s, va)).toEqual(
      Array.from({ length: PAGE / 64 }, (_, i) => [i * 64, i * 64 + 16]),
    );
    expect(Atomics.load(pageTable(s).pte, va / PAGE) & PTE_STALE_WHOLE).toBe(0);
  });

  it('marks the whole page stale on a whole-page write, with no block bits', () => {
    const s = space();
    const va = s.alloc(PAGE);
    giveFrame(s, va, PTE_SHARED);
    s.fill(va, PAGE, 3);
    const table = pageTable(s);
    expect(Atomics.load(table.pte, va / PAGE) & (PTE_STALE_WHOLE | PTE_STALE_BLOCKS)).toBe(
      PTE_STALE_WHOLE,
    );
    expect(staleRuns(s, va)).toEqual([]);
  });

  it('counts the bytes writes mark stale in frames, and none for pages without one', () => {
    const s = space();
    const [framed, bare] = [s.alloc(PAGE), s.alloc(PAGE)];
    giveFrame(s, framed, PTE_SHARED);
    s.setU32(framed, 1);
    s.write(framed + 100, new Uint8Array(30));
    s.setU32(bare, 1);
    expect(staleBytesWritten(s)).toBe(34);
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
  it('refuses a mode other than read or write', async () => {
    const s = space();
    const va = s.alloc(PAGE);
    expectError(() => s.access(va, 4, 'x' as 'read', () => 0), InvalidArgumentError, {
      argument: 'mode',
      reason: 'bad-value',
    });
    await expect(s.acquire(va, 4, 'x' as 'read')).rejects.toMatchObject({
      argument: 'mode',
      reason: 'bad-value',
    });
  });

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
    expect(staleRuns(s, va)).toEqual([[64, 128]]);
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

describe('a GPU-dirty page with no GpuMirror to serve the fault', () => {
  it('a thread that may block gets WouldBlockError unserved at once, not timeout, and nothing changes', () => {
    const s = space({ mayBlock: () => true, faultTimeoutMs: 5000 });
    const va = s.alloc(2 * PAGE);
    giveFrame(s, va + PAGE, PTE_GPU, PTE_GPU_DIRTY);
    const started = performance.now();
    expectError(() => s.read(va, 2 * PAGE), WouldBlockError, {
      reason: 'unserved',
      address: va + PAGE,
    });
    expect(performance.now() - started).toBeLessThan(1000);
    expect(s.snapshot(va + PAGE, PAGE)[0]).toEqual({ state: 'gpu', prot: 'rw', dirty: 'gpu' });
    expect(s.getU32(va)).toBe(0); // the holds were released
  });

  it('the async variants reject with unserved too', async () => {
    const s = space({ mayBlock: () => false });
    const va = s.alloc(PAGE);
    giveFrame(s, va, PTE_GPU, PTE_GPU_DIRTY);
    await expect(s.readAsync(va, 4)).rejects.toBeInstanceOf(WouldBlockError);
    await expect(s.writeAsync(va, new Uint8Array(4))).rejects.toMatchObject({
      reason: 'unserved',
      address: va,
    });
    await expect(s.acquire(va, 4, 'read')).rejects.toMatchObject({ reason: 'unserved' });
    expect(s.snapshot(va, PAGE)[0]).toEqual({ state: 'gpu', prot: 'rw', dirty: 'gpu' });
  });
});
