import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.ts';
import {
  declaredParams,
  encodeParams,
  kernelCode,
  kernelEntryPoint,
  kernelWorkgroupSize,
  paramsSize,
  rangesOffset,
  workgroupDims,
} from '../../src/kernels/kernel-arguments.ts';

describe('kernel arguments', () => {
  it('take workgroups as a count or [x, y?, z?], missing dimensions 1', () => {
    expect(workgroupDims(7)).toEqual([7, 1, 1]);
    expect(workgroupDims([3])).toEqual([3, 1, 1]);
    expect(workgroupDims([3, 4])).toEqual([3, 4, 1]);
    expect(workgroupDims([1, 65535, 2])).toEqual([1, 65535, 2]);
  });

  it('refuse a workgroup dimension outside 1..65535 or not an integer, naming it and why', () => {
    for (const [workgroups, argument, reason] of [
      [0, 'workgroups.x', 'zero'],
      [65536, 'workgroups.x', 'too-large'],
      [[1, 1.5], 'workgroups.y', 'not-integer'],
      [[1, 1, -1], 'workgroups.z', 'negative'],
      [Number.NaN, 'workgroups.x', 'not-integer'],
      [['2'], 'workgroups.x', 'not-integer'],
    ] as const) {
      expect(() => workgroupDims(workgroups as never)).toThrow(InvalidArgumentError);
      expect(() => workgroupDims(workgroups as never)).toThrow(
        expect.objectContaining({ argument, reason }),
      );
    }
  });

  it('refuse workgroups that are neither a count nor [x, y?, z?]', () => {
    for (const workgroups of [undefined, null, '4', [], [1, 1, 1, 1], { x: 1 }]) {
      expect(() => workgroupDims(workgroups as never)).toThrow(
        expect.objectContaining({ argument: 'workgroups', reason: 'bad-value' }),
      );
    }
  });

  it('size the params uniform at 4 bytes a parameter, rounded up to 16, at least 16', () => {
    expect([0, 1, 4, 5, 8, 9].map((n) => paramsSize(n))).toEqual([16, 16, 16, 32, 32, 48]);
  });

  it('place named-range descriptors after the parameters, 16 bytes each, 16-aligned', () => {
    expect([0, 1, 4, 5].map((n) => rangesOffset(n))).toEqual([0, 16, 16, 32]);
    expect(paramsSize(0, 1)).toBe(16);
    expect(paramsSize(1, 2)).toBe(48);
    expect(paramsSize(5, 3)).toBe(80);
    const buffer = encodeParams(declaredParams({ n: 'u32' }), { n: 7 }, 2);
    expect(buffer.byteLength).toBe(48);
    expect(new Uint32Array(buffer)[0]).toBe(7);
  });

  it('refuse parameter names WGSL or the prelude would refuse: keywords, reserved words, hmm_', () => {
    for (const name of ['from', 'let', 'self', 'hmm_ranges', '2n', 'a b']) {
      expect(() => declaredParams({ [name]: 'u32' })).toThrow(
        expect.objectContaining({ argument: 'params', reason: 'bad-value' }),
      );
    }
    expect(declaredParams({ fromage: 'u32', lets: 'f32', hmm: 'i32' })).toHaveLength(3);
  });

  it('encode parameter values little-endian in declaration order', () => {
    const declared = declaredParams({ n: 'u32', a: 'f32', d: 'i32', big: 'u32' });
    const buffer = encodeParams(declared, { big: 2 ** 32 - 1, d: -3, a: 0.1, n: 42 });
    expect(buffer.byteLength).toBe(16);
    const view = new DataView(buffer);
    expect(view.getUint32(0, true)).toBe(42);
    expect(view.getFloat32(4, true)).toBe(Math.fround(0.1));
    expect(view.getInt32(8, true)).toBe(-3);
    expect(view.getUint32(12, true)).toBe(0xffff_ffff);
  });

  it('never coerce: a u32 or i32 value must be an integer of its range, naming the parameter', () => {
    const declared = declaredParams({ u: 'u32', i: 'i32' });
    const good = { u: 1, i: -1 };
    for (const [values, argument, reason] of [
      [{ ...good, u: 1.5 }, 'params.u', 'not-integer'],
      [{ ...good, u: -1 }, 'params.u', 'negative'],
      [{ ...good, u: Number.NaN }, 'params.u', 'not-integer'],
      [{ ...good, u: Number.POSITIVE_INFINITY }, 'params.u', 'not-integer'],
      [{ ...good, u: 2 ** 32 }, 'params.u', 'too-large'],
      [{ ...good, u: '1' }, 'params.u', 'not-integer'],
      [{ ...good, i: 2.75 }, 'params.i', 'not-integer'],
      [{ ...good, i: 2 ** 31 }, 'params.i', 'too-large'],
      [{ ...good, i: -(2 ** 31) - 1 }, 'params.i', 'too-large'],
      [{ ...good, i: 10n }, 'params.i', 'not-integer'],
    ] as const) {
      expect(() => encodeParams(declared, values)).toThrow(
        expect.objectContaining({ argument, reason }),
      );
    }
    const view = new DataView(encodeParams(declared, { u: 0, i: -(2 ** 31) }));
    expect(view.getInt32(4, true)).toBe(-(2 ** 31));
  });

  it('take any f32 but NaN, rounding to float32 (beyond its range: +-Infinity)', () => {
    const declared = declaredParams({ a: 'f32' });
    const f32 = (a: number) => new DataView(encodeParams(declared, { a })).getFloat32(0, true);
    expect(f32(Number.NEGATIVE_INFINITY)).toBe(Number.NEGATIVE_INFINITY);
    expect(f32(1e300)).toBe(Number.POSITIVE_INFINITY);
    expect(f32(-0.1)).toBe(Math.fround(-0.1));
    for (const a of [Number.NaN, '1', undefined]) {
      expect(() => encodeParams(declared, { a })).toThrow(
        expect.objectContaining({ argument: 'params.a', reason: 'bad-value' }),
      );
    }
  });

  it('refuse a missing or undeclared parameter by name, and params that are not an object', () => {
    const declared = declaredParams({ n: 'u32', toString: 'u32' } as Record<string, 'u32'>);
    expect(() => encodeParams(declared, { n: 1 })).toThrow(
      expect.objectContaining({ argument: 'params.toString', reason: 'bad-value' }),
    );
    expect(() => encodeParams(declared, { toString: 1 })).toThrow(
      expect.objectContaining({ argument: 'params.n', value: undefined, reason: 'bad-value' }),
    );
    expect(() => encodeParams(declared, undefined)).toThrow(
      expect.objectContaining({ argument: 'params.n', reason: 'bad-value' }),
    );
    expect(() => encodeParams(declared, { n: 1, toString: 2, m: 1 })).toThrow(
      expect.objectContaining({ argument: 'params.m', value: 1, reason: 'bad-value' }),
    );
    for (const values of [5, 'n', null, [1]]) {
      expect(() => encodeParams(declared, values)).toThrow(
        expect.objectContaining({ argument: 'params', reason: 'bad-value' }),
      );
    }
    expect(encodeParams(declaredParams({}), undefined).byteLength).toBe(16);
  });

  it('refuse a parameter that is not an identifier or not typed u32, i32 or f32', () => {
    expect(declaredParams(undefined)).toEqual([]);
    expect(() => declaredParams({ '1x': 'u32' })).toThrow(
      expect.objectContaining({ argument: 'params', reason: 'bad-value' }),
    );
    expect(() => declaredParams({ x: 'f64' as 'f32' })).toThrow(
      expect.objectContaining({ argument: 'params', value: 'x: f64', reason: 'bad-value' }),
    );
    for (const params of [5, 'n', null, ['u32']]) {
      expect(() => declaredParams(params as never)).toThrow(
        expect.objectContaining({ argument: 'params', reason: 'bad-value' }),
      );
    }
  });

  it('refuse an entry point that is not an identifier and a workgroup size that is not a u32 >= 1', () => {
    expect(kernelEntryPoint({ code: 'x' })).toBe('main');
    expect(kernelEntryPoint({ code: 'x', entryPoint: 'go_2' })).toBe('go_2');
    for (const entryPoint of ['', '2go', 5, 'a b']) {
      expect(() => kernelEntryPoint({ code: 'x', entryPoint: entryPoint as string })).toThrow(
        expect.objectContaining({ argument: 'entryPoint', reason: 'bad-value' }),
      );
    }
    expect(kernelWorkgroupSize({ code: 'x' })).toBeUndefined();
    expect(kernelWorkgroupSize({ code: 'x', workgroupSize: 64 })).toBe(64);
    for (const [workgroupSize, reason] of [
      [0, 'zero'],
      [1.5, 'not-integer'],
      [Number.NaN, 'not-integer'],
      [-1, 'negative'],
      [2 ** 32, 'too-large'],
    ] as const) {
      expect(() => kernelWorkgroupSize({ code: 'x', workgroupSize })).toThrow(
        expect.objectContaining({ argument: 'workgroupSize', reason }),
      );
    }
  });

  it('refuse code that is not a non-empty string', () => {
    expect(kernelCode({ code: 'fn main() {}' })).toBe('fn main() {}');
    expect(() => kernelCode({ code: '' })).toThrow(
      expect.objectContaining({ argument: 'code', reason: 'bad-value' }),
    );
    expect(() => kernelCode({ code: 3 as unknown as string })).toThrow(InvalidArgumentError);
  });
});
