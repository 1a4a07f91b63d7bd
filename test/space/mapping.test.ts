import { describe, expect, it } from 'vitest';
import {
  AccessError,
  InvalidArgumentError,
  OutOfMemoryError,
  WouldBlockError,
} from '../../src/errors.ts';
import { internalsOf } from '../../src/space/internals.ts';
import { PAGE, expectError, space } from './space-fixtures.ts';

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

  it('allocates read-only memory that reads as zeros', () => {
    const s = space();
    const va = s.alloc(PAGE, { prot: 'r' });
    expect(s.getU32(va)).toBe(0);
    expectError(() => s.setU32(va, 1), AccessError, { reason: 'protection' });
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

describe('protect', () => {
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

  it('changes the protection only, keeping state and bytes, and refuses unknown protections', () => {
    const s = space();
    const va = s.alloc(2 * PAGE);
    s.setU32(va, 9);
    s.protect(va, 2 * PAGE, 'r');
    expect(s.snapshot(va, 2 * PAGE)).toEqual([
      { state: 'cpu', prot: 'r', dirty: 'none' },
      { state: 'zero', prot: 'r', dirty: 'none' },
    ]);
    expect(s.getU32(va)).toBe(9);
    expectError(() => s.protect(va, PAGE, 'x' as 'r'), InvalidArgumentError, {
      argument: 'prot',
      reason: 'bad-value',
    });
    expect(s.snapshot(va, PAGE)[0]!.prot).toBe('r');
  });

  it('refuses a protect inside a scope of the same thread on the range', () => {
    const s = space();
    const va = s.alloc(PAGE);
    s.access(va, PAGE, 'read', () => {
      expectError(() => s.protect(va, PAGE, 'r'), WouldBlockError, {
        reason: 'reentrant',
        address: va,
      });
    });
    expect(s.snapshot(va, PAGE)[0]!.prot).toBe('rw');
  });
});

describe('allocation runs, as the device side sees them', () => {
  it('names the allocation that holds a page, and nothing for a free page', () => {
    const s = space();
    const va = s.alloc(3 * PAGE);
    const internals = internalsOf(s);
    expect(internals.allocationRun(va / PAGE + 2)).toEqual({ first: va / PAGE, count: 3 });
    expect(internals.allocationRun(va / PAGE + 3)).toBeUndefined();
    s.free(va + PAGE, PAGE);
    expect(internals.allocationRun(va / PAGE)).toEqual({ first: va / PAGE, count: 1 });
    expect(internals.allocationRun(va / PAGE + 1)).toBeUndefined();
  });
});
