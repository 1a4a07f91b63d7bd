import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.ts';
import {
  declaredParams,
  encodeParams,
  kernelCode,
  paramsSize,
  workgroupDims,
} from '../../src/kernels/kernel-arguments.ts';

describe('kernel arguments', () => {
  it('take workgroups as a count or [x, y?, z?], missing dimensions 1', () => {
    expect(workgroupDims(7)).toEqual([7, 1, 1]);
    expect(workgroupDims([3])).toEqual([3, 1, 1]);
    expect(workgroupDims([3, 4])).toEqual([3, 4, 1]);
    expect(workgroupDims([1, 65535, 2])).toEqual([1, 65535, 2]);
  });

  it('refuse a workgroup dimension outside 1..65535 or not an integer, naming it', () => {
    for (const [workgroups, argument] of [
      [0, 'workgroups.x'],
      [65536, 'workgroups.x'],
      [[1, 1.5], 'workgroups.y'],
      [[1, 1, -1], 'workgroups.z'],
      [Number.NaN, 'workgroups.x'],
    ] as const) {
      expect(() => workgroupDims(workgroups)).toThrow(InvalidArgumentError);
      expect(() => workgroupDims(workgroups)).toThrow(
        expect.objectContaining({ argument, reason: 'bad-value' }),
      );
    }
  });

  it('size the params uniform at 4 bytes a parameter, rounded up to 16, at least 16', () => {
    expect([0, 1, 4, 5, 8, 9].map(paramsSize)).toEqual([16, 16, 16, 32, 32, 48]);
  });

  it('encode parameter values little-endian in declaration order, a missing one as 0', () => {
    const declared = declaredParams({ n: 'u32', a: 'f32', d: 'i32', skipped: 'u32', big: 'u32' });
    const buffer = encodeParams(declared, { big: 2 ** 32 + 5, d: -3, a: 0.1, n: 42 });
    expect(buffer.byteLength).toBe(32);
    const view = new DataView(buffer);
    expect(view.getUint32(0, true)).toBe(42);
    expect(view.getFloat32(4, true)).toBe(Math.fround(0.1));
    expect(view.getInt32(8, true)).toBe(-3);
    expect(view.getUint32(12, true)).toBe(0);
    expect(view.getUint32(16, true)).toBe(5);
  });

  it('keep coercing u32 and i32 values by wrapping them (a negative u32, a fractional i32)', () => {
    const view = new DataView(
      encodeParams(declaredParams({ u: 'u32', i: 'i32' }), { u: -1, i: 2.75 }),
    );
    expect(view.getUint32(0, true)).toBe(0xffff_ffff);
    expect(view.getInt32(4, true)).toBe(2);
  });

  it('refuse an undeclared parameter name, or a value that is NaN or not a number', () => {
    const declared = declaredParams({ n: 'u32' });
    expect(() => encodeParams(declared, { m: 1 })).toThrow(
      expect.objectContaining({ argument: 'params', value: 'm', reason: 'bad-value' }),
    );
    expect(() => encodeParams(declared, { n: Number.NaN })).toThrow(
      expect.objectContaining({ argument: 'params.n', reason: 'bad-value' }),
    );
    expect(() => encodeParams(declared, { n: '1' as unknown as number })).toThrow(
      expect.objectContaining({ argument: 'params.n', reason: 'bad-value' }),
    );
  });

  it('refuse a parameter that is not an identifier or not typed u32, i32 or f32', () => {
    expect(declaredParams(undefined)).toEqual([]);
    expect(() => declaredParams({ '1x': 'u32' })).toThrow(
      expect.objectContaining({ argument: 'params', reason: 'bad-value' }),
    );
    expect(() => declaredParams({ x: 'f64' as 'f32' })).toThrow(
      expect.objectContaining({ argument: 'params', value: 'x: f64', reason: 'bad-value' }),
    );
  });

  it('refuse code that is not a non-empty string', () => {
    expect(kernelCode({ code: 'fn main() {}' })).toBe('fn main() {}');
    expect(() => kernelCode({ code: '' })).toThrow(
      expect.objectContaining({ argument: 'code', reason: 'bad-value' }),
    );
    expect(() => kernelCode({ code: 3 as unknown as string })).toThrow(InvalidArgumentError);
  });
});
