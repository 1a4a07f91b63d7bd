import { describe, expect, it } from 'vitest';
import { AccessError, InvalidArgumentError } from '../../src/errors.ts';
import { PAGE, expectError, space } from './space-fixtures.ts';

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

describe('snapshot', () => {
  it('reports every page of the range, changing nothing, and checks the range as read does', () => {
    const s = space();
    const va = s.alloc(2 * PAGE);
    s.setU32(va, 1);
    s.protect(va + PAGE, PAGE, 'r');
    const before = s.snapshot(va - PAGE, 4 * PAGE);
    expect(before).toEqual([
      { state: 'unmapped', prot: 'none', dirty: 'none' },
      { state: 'cpu', prot: 'rw', dirty: 'none' },
      { state: 'zero', prot: 'r', dirty: 'none' },
      { state: 'unmapped', prot: 'none', dirty: 'none' },
    ]);
    expect(s.snapshot(va - PAGE, 4 * PAGE)).toEqual(before);
    expectError(() => s.snapshot(va, 0), InvalidArgumentError, { argument: 'len', reason: 'zero' });
    expectError(() => s.snapshot(63 * PAGE, 2 * PAGE), AccessError, { reason: 'out-of-range' });
  });
});
