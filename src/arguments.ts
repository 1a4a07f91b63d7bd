/**
 * Argument checks shared by every public call, so the same mistake gets the
 * same InvalidArgumentError reason everywhere:
 *
 * - not a number, or a fraction, NaN or infinity: 'not-integer';
 * - below zero: 'negative'; zero where a size is needed, or empty data: 'zero';
 * - not an ArrayBufferView, or an option outside its allowed values: 'bad-value'.
 */
import { InvalidArgumentError } from './errors.ts';

/** @throws InvalidArgumentError 'not-integer' or 'negative' */
export function nonNegativeInteger(name: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value))
    throw new InvalidArgumentError(name, value, 'not-integer');
  if (value < 0) throw new InvalidArgumentError(name, value, 'negative');
}

/** @throws InvalidArgumentError 'not-integer', 'negative' or 'zero' */
export function positiveInteger(name: string, value: unknown): asserts value is number {
  nonNegativeInteger(name, value);
  if (value === 0) throw new InvalidArgumentError(name, value, 'zero');
}

/**
 * The bytes of a non-empty view.
 * @throws InvalidArgumentError 'bad-value' (not an ArrayBufferView) or 'zero' (empty)
 */
export function viewBytes(name: string, data: unknown): Uint8Array {
  if (!ArrayBuffer.isView(data))
    throw new InvalidArgumentError(name, typeof data, 'bad-value', 'an ArrayBufferView');
  if (data.byteLength === 0) throw new InvalidArgumentError(name, 0, 'zero', 'nothing to write');
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * The bytes of `data` to write at `va`, both 4-byte aligned (`what`: who requires it, for the message).
 * @throws InvalidArgumentError as nonNegativeInteger and viewBytes, or 'misaligned'
 */
export function alignedWords(va: unknown, data: unknown, what: string): Uint8Array {
  nonNegativeInteger('va', va);
  const bytes = viewBytes('data', data);
  if (va % 4 !== 0 || bytes.byteLength % 4 !== 0) {
    const detail = `${what} are 4-byte aligned in start and length`;
    throw new InvalidArgumentError('va', va, 'misaligned', detail, { address: va });
  }
  return bytes;
}

/**
 * `value`, if it is one of `allowed`.
 * @throws InvalidArgumentError 'bad-value' naming the allowed values
 */
export function oneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value))
    return value as T;
  throw new InvalidArgumentError(
    name,
    value,
    'bad-value',
    allowed.map((option) => `'${option}'`).join(', '),
  );
}

/**
 * `value` as a u32: an integer from 0 to 2^32 - 1.
 * @throws InvalidArgumentError 'not-integer', 'negative' or 'too-large'
 */
export function u32Value(name: string, value: unknown): asserts value is number {
  nonNegativeInteger(name, value);
  if (value > 0xffff_ffff)
    throw new InvalidArgumentError(name, value, 'too-large', 'a u32: at most 2^32 - 1');
}

/**
 * `value` as an f32 to store: any number (NaN and infinities are f32 values too).
 * @throws InvalidArgumentError 'not-integer' for anything that is not a number
 */
export function numberValue(name: string, value: unknown): asserts value is number {
  if (typeof value !== 'number')
    throw new InvalidArgumentError(name, value, 'not-integer', 'a number');
}

/**
 * `value` as a function to call: a callback passed as anything else would fail
 * later, far from the mistake.
 * @throws InvalidArgumentError 'bad-value'
 */
export function callback(
  name: string,
  value: unknown,
): asserts value is (...args: never[]) => unknown {
  if (typeof value !== 'function')
    throw new InvalidArgumentError(name, typeof value, 'bad-value', 'a function');
}

/**
 * An options bag: omitted (undefined) reads as no options; anything but an
 * object is refused rather than read as one.
 * @throws InvalidArgumentError 'bad-value'
 */
export function optionsBag<T extends object>(name: string, value: T | undefined): Partial<T> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null)
    throw new InvalidArgumentError(name, value, 'bad-value', 'an options object, or nothing');
  return value;
}
