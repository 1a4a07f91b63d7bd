/**
 * Checking and encoding what callers pass to kernels: the code and parameter
 * declarations of `kernel()`, and the workgroups and parameter values of
 * `run()`. Every refusal is an InvalidArgumentError 'bad-value' naming the
 * argument; nothing here touches the GPU.
 */
import { InvalidArgumentError } from '../errors.ts';
import type { KernelOptions, RunOptions } from './kernel-options.ts';
import type { Workgroups } from './kernel-runtime.ts';
import type { ParamType } from './prelude.ts';

/** A kernel's parameters in declaration order, as the prelude and the params buffer lay them out. */
export type ParamList = readonly (readonly [name: string, type: ParamType])[];

/** The most workgroups a dispatch may have in each dimension (WebGPU's default limit). */
const MAX_WORKGROUPS_PER_DIMENSION = 65535;

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
 * The declared parameters, in declaration order.
 * @throws InvalidArgumentError 'bad-value' for a name that is not an
 *   identifier or a type other than 'u32', 'i32', 'f32'
 */
export function declaredParams(params: KernelOptions['params']): ParamList {
  const list = Object.entries(params ?? {});
  for (const [name, type] of list) {
    if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(name) || !['u32', 'i32', 'f32'].includes(type)) {
      throw new InvalidArgumentError(
        'params',
        `${name}: ${type}`,
        'bad-value',
        "an identifier typed 'u32', 'i32' or 'f32'",
      );
    }
  }
  return list;
}

/** Bytes of the params uniform for `count` parameters: 4 each, rounded up to 16, at least 16. */
export function paramsSize(count: number): number {
  return Math.max(16, Math.ceil((count * 4) / 16) * 16);
}

/**
 * `values` laid out as the prelude's `HmmParams` struct (little-endian, 4
 * bytes per parameter in declaration order; a missing value is 0).
 * Coercion: 'u32' is `value >>> 0`, 'i32' DataView's setInt32, 'f32' setFloat32.
 * @throws InvalidArgumentError 'bad-value' for an undeclared name (argument
 *   'params') or a value that is not a number or is NaN (argument 'params.<name>')
 */
export function encodeParams(
  declared: ParamList,
  values: Readonly<Record<string, number>>,
): ArrayBuffer {
  const buffer = new ArrayBuffer(paramsSize(declared.length));
  const view = new DataView(buffer);
  for (const name of Object.keys(values)) {
    if (!declared.some(([known]) => known === name)) {
      throw new InvalidArgumentError(
        'params',
        name,
        'bad-value',
        'not a parameter declared at kernel()',
      );
    }
  }
  declared.forEach(([name, type], i) => {
    const value = values[name] ?? 0;
    if (typeof value !== 'number' || Number.isNaN(value)) {
      throw new InvalidArgumentError(`params.${name}`, value, 'bad-value', `a ${type}`);
    }
    if (type === 'f32') view.setFloat32(i * 4, value, true);
    else if (type === 'i32') view.setInt32(i * 4, value, true);
    else view.setUint32(i * 4, value >>> 0, true);
  });
  return buffer;
}

/**
 * The dispatch size `[x, y, z]` of `workgroups` (missing dimensions are 1).
 * @throws InvalidArgumentError 'bad-value' (argument 'workgroups.x', '.y' or
 *   '.z') for a dimension that is not an integer from 1 to 65535
 */
export function workgroupDims(workgroups: RunOptions['workgroups']): Workgroups {
  const dims = typeof workgroups === 'number' ? [workgroups] : [...workgroups];
  const [x = 1, y = 1, z = 1] = dims;
  for (const [name, value] of [
    ['x', x],
    ['y', y],
    ['z', z],
  ] as const) {
    if (!Number.isInteger(value) || value < 1 || value > MAX_WORKGROUPS_PER_DIMENSION) {
      throw new InvalidArgumentError(
        `workgroups.${name}`,
        value,
        'bad-value',
        `an integer from 1 to ${MAX_WORKGROUPS_PER_DIMENSION}`,
      );
    }
  }
  return [x, y, z];
}
