/**
 * Checking and encoding what callers pass to kernels: the options, code,
 * entry point, workgroup size and parameter declarations of `kernel()`, and
 * the options, workgroups and parameter values of `run()`. Every refusal is
 * an InvalidArgumentError naming the argument (`params.n`, `workgroups.y`,
 * ...), with the shared reasons of arguments.ts where they fit
 * ('not-integer', 'negative', 'zero', 'too-large') and 'bad-value' for the
 * rest (a missing, unknown or mistyped option). Nothing here touches the GPU
 * or the space: a refused call has changed nothing.
 */
import { nonNegativeInteger, positiveInteger } from '../arguments.ts';
import { InvalidArgumentError } from '../errors.ts';
import { isWgslWord } from './wgsl-source.ts';
import { RANGE_WORDS } from './kernel-layout.ts';
import type { KernelOptions, RunOptions } from './kernel-options.ts';
import type { Workgroups } from './kernel-runtime.ts';
import type { ParamType } from './prelude.ts';

/** A kernel's parameters in declaration order, as the prelude and the params buffer lay them out. */
export type ParamList = readonly (readonly [name: string, type: ParamType])[];

/** The most workgroups a dispatch may have in each dimension (WebGPU's default limit). */
const MAX_WORKGROUPS_PER_DIMENSION = 65535;
const IDENTIFIER = /^[A-Za-z][A-Za-z0-9_]*$/;
const U32_MAX = 0xffff_ffff;
const I32_MIN = -(2 ** 31);
const I32_MAX = 2 ** 31 - 1;

/** Whether `value` is a non-null object that is not an array (an options bag). */
function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * `options` as an options object.
 * @throws InvalidArgumentError 'bad-value' (argument `name`) for anything but an object
 */
export function optionsObject<T extends object>(name: string, options: unknown): T {
  if (!isRecord(options)) throw new InvalidArgumentError(name, options, 'bad-value', 'an object');
  return options as T;
}

/**
 * `options.code`, if it is WGSL source to compile.
 * @throws InvalidArgumentError 'bad-value' for anything but a non-empty string
 */
export function kernelCode(options: KernelOptions): string {
  if (typeof options.code !== 'string' || options.code.length === 0) {
    throw new InvalidArgumentError('code', options.code, 'bad-value', 'WGSL source');
  }
  return options.code;
}

/**
 * `options.entryPoint`, default 'main'. Whether the code has such a
 * `@compute` function is for compilation to say ('wgsl').
 * @throws InvalidArgumentError 'bad-value' for anything but a WGSL identifier
 */
export function kernelEntryPoint(options: KernelOptions): string {
  const entryPoint: unknown = options.entryPoint ?? 'main';
  if (typeof entryPoint !== 'string' || !IDENTIFIER.test(entryPoint)) {
    throw new InvalidArgumentError(
      'entryPoint',
      entryPoint,
      'bad-value',
      'the name of a @compute function',
    );
  }
  return entryPoint;
}

/**
 * `options.workgroupSize`, if given. Whether the device allows that many
 * invocations is for compilation to say ('wgsl').
 * @throws InvalidArgumentError 'not-integer', 'negative', 'zero' or 'too-large' (above 2^32 - 1)
 */
export function kernelWorkgroupSize(options: KernelOptions): number | undefined {
  const size: unknown = options.workgroupSize;
  if (size === undefined) return undefined;
  positiveInteger('workgroupSize', size);
  if (size > U32_MAX) throw new InvalidArgumentError('workgroupSize', size, 'too-large', 'a u32');
  return size;
}

/**
 * The declared parameters, in declaration order.
 * @throws InvalidArgumentError 'bad-value' (argument 'params') for params
 *   that are not an object, a name that is not an identifier (a WGSL
 *   keyword or reserved word, or one starting with `hmm_`, the prelude's,
 *   included) or a type other than 'u32', 'i32', 'f32'
 */
export function declaredParams(params: KernelOptions['params']): ParamList {
  if (params === undefined) return [];
  const list = Object.entries(optionsObject<Record<string, ParamType>>('params', params));
  for (const [name, type] of list) {
    const identifier = IDENTIFIER.test(name) && !isWgslWord(name) && !name.startsWith('hmm_');
    if (!identifier || !['u32', 'i32', 'f32'].includes(type)) {
      throw new InvalidArgumentError(
        'params',
        `${name}: ${String(type)}`,
        'bad-value',
        "a WGSL identifier (not a keyword or reserved word, not starting with hmm_) typed 'u32', 'i32' or 'f32'",
      );
    }
  }
  return list;
}

/** Byte offset of the named-range descriptors in the params uniform: after the parameters, 16-aligned. */
export function rangesOffset(count: number): number {
  return Math.ceil((count * 4) / 16) * 16;
}

/**
 * Bytes of the params uniform for `count` parameters (4 each) and `ranges`
 * named-range descriptors (16 each, from rangesOffset), at least 16.
 */
export function paramsSize(count: number, ranges = 0): number {
  return Math.max(16, rangesOffset(count) + ranges * RANGE_WORDS * 4);
}

/**
 * `values` laid out as the prelude's `HmmParams` struct (little-endian, 4
 * bytes per parameter in declaration order), then room for `ranges`
 * named-range descriptors at rangesOffset (named-ranges.ts fills them in). Every declared parameter needs
 * a value and nothing else may be given; nothing is coerced:
 * - 'u32': an integer from 0 to 2^32 - 1;
 * - 'i32': an integer from -2^31 to 2^31 - 1;
 * - 'f32': any number but NaN, rounded to float32 (Math.fround: beyond
 *   float32's range, and +-Infinity, become +-Infinity).
 * @throws InvalidArgumentError naming the parameter (argument 'params.<name>'):
 *   'bad-value' for a missing or undeclared one or an f32 that is not a
 *   number or is NaN; 'not-integer' (also: not a number), 'negative' (u32)
 *   or 'too-large' (out of the type's range) for u32 and i32. 'bad-value'
 *   (argument 'params') when `values` is not an object.
 */
export function encodeParams(declared: ParamList, values: unknown, ranges = 0): ArrayBuffer {
  const given =
    values === undefined ? {} : optionsObject<Record<string, unknown>>('params', values);
  const buffer = new ArrayBuffer(paramsSize(declared.length, ranges));
  const view = new DataView(buffer);
  for (const name of Object.keys(given)) {
    if (!declared.some(([known]) => known === name)) {
      throw new InvalidArgumentError(
        `params.${name}`,
        given[name],
        'bad-value',
        `not a parameter declared at kernel() (declared: ${declared.map(([known]) => known).join(', ') || 'none'})`,
      );
    }
  }
  declared.forEach(([name, type], i) => {
    const value = paramValue(
      `params.${name}`,
      type,
      Object.hasOwn(given, name) ? given[name] : undefined,
    );
    if (type === 'f32') view.setFloat32(i * 4, value, true);
    else if (type === 'i32') view.setInt32(i * 4, value, true);
    else view.setUint32(i * 4, value, true);
  });
  return buffer;
}

/** `value` if it is a value of `type` (see encodeParams). */
function paramValue(argument: string, type: ParamType, value: unknown): number {
  if (value === undefined) {
    throw new InvalidArgumentError(argument, value, 'bad-value', `missing: a ${type} is declared`);
  }
  if (type === 'f32') {
    if (typeof value !== 'number' || Number.isNaN(value)) {
      throw new InvalidArgumentError(argument, value, 'bad-value', 'an f32: a number, not NaN');
    }
    return value;
  }
  if (type === 'u32') {
    nonNegativeInteger(argument, value);
    if (value > U32_MAX) throw new InvalidArgumentError(argument, value, 'too-large', 'a u32');
    return value;
  }
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new InvalidArgumentError(argument, value, 'not-integer', 'an i32');
  }
  if (value < I32_MIN || value > I32_MAX) {
    throw new InvalidArgumentError(argument, value, 'too-large', 'an i32: -2^31 to 2^31 - 1');
  }
  return value;
}

/**
 * The dispatch size `[x, y, z]` of `workgroups` (missing dimensions are 1).
 * @throws InvalidArgumentError 'bad-value' (argument 'workgroups') for
 *   anything but a number or an array of one to three; for a dimension
 *   (argument 'workgroups.x', '.y' or '.z'): 'not-integer', 'negative',
 *   'zero', or 'too-large' above 65535
 */
export function workgroupDims(workgroups: RunOptions['workgroups']): Workgroups {
  const given: unknown = workgroups;
  let dims: unknown[];
  if (typeof given === 'number') dims = [given];
  else if (Array.isArray(given) && given.length >= 1 && given.length <= 3) {
    dims = (given as unknown[]).slice();
  } else {
    throw new InvalidArgumentError(
      'workgroups',
      given,
      'bad-value',
      'a count, or [x, y?, z?] of counts',
    );
  }
  const [x = 1, y = 1, z = 1] = dims;
  for (const [name, value] of [
    ['x', x],
    ['y', y],
    ['z', z],
  ] as const) {
    const argument = `workgroups.${name}`;
    positiveInteger(argument, value);
    if (value > MAX_WORKGROUPS_PER_DIMENSION) {
      throw new InvalidArgumentError(
        argument,
        value,
        'too-large',
        `at most ${MAX_WORKGROUPS_PER_DIMENSION} workgroups a dimension`,
      );
    }
  }
  return [x as number, y as number, z as number];
}
