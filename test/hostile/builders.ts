// Builders for the hostile-input cases: the refusals the contract names, the
// families of values the shared argument checks refuse (src/arguments.ts),
// and one case per value of a family.
import type { AccessReason, ArgumentReason, OutOfMemoryReason } from '../../src/errors.ts';
import type { Lease } from '../../src/space/lease.ts';
import { RW, type Case, type HostileContext, type Needs, type Refusal } from './context.ts';

/** InvalidArgumentError `reason`, naming `argument` (and `address`, where there is one). */
export function invalid(reason: ArgumentReason, argument?: string, address?: number): Refusal {
  return {
    code: 'INVALID_ARGUMENT',
    reason,
    ...(argument === undefined ? {} : { argument }),
    ...(address === undefined ? {} : { address }),
  };
}

/** AccessError `reason` at the first faulting `address`. */
export function fault(reason: AccessReason, address: number): Refusal {
  return { code: 'ACCESS', reason, address };
}

/** WouldBlockError 'reentrant' at `address`: the range is in a scope of this very thread. */
export function reentrant(address: number): Refusal {
  return { code: 'WOULD_BLOCK', reason: 'reentrant', address };
}

export function outOfMemory(reason: OutOfMemoryReason): Refusal {
  return { code: 'OUT_OF_MEMORY', reason };
}

/** DeviceLostError 'detached': a call on a mirror after detach(). */
export const DETACHED: Refusal = { code: 'DEVICE_LOST', reason: 'detached' };

/** A value the shared checks refuse, with its label in the table and the reason they give. */
export interface Bad {
  readonly label: string;
  readonly value: unknown;
  readonly reason: ArgumentReason;
}

const bad = (label: string, value: unknown, reason: ArgumentReason): Bad => ({
  label,
  value,
  reason,
});

/** An object that a careless `+va` or `va | 0` would turn into the 'rw' allocation's address. */
const OBJECT = bad('an object (valueOf 4096)', { valueOf: () => RW }, 'not-integer');

/** Bad addresses: each would land inside the 'rw' allocation if coerced. */
export const BAD_VA: readonly Bad[] = [
  bad('NaN', NaN, 'not-integer'),
  bad('-4', -4, 'negative'),
  bad('4096.5 (a fraction)', RW + 0.5, 'not-integer'),
  bad("'4096' (a string)", String(RW), 'not-integer'),
  bad('undefined', undefined, 'not-integer'),
  OBJECT,
];

/** Bad addresses for calls with several address parameters (copy): a shorter family. */
export const BAD_VA_SHORT: readonly Bad[] = [
  bad('NaN', NaN, 'not-integer'),
  bad('-4', -4, 'negative'),
  bad('4096.5 (a fraction)', RW + 0.5, 'not-integer'),
  bad("'4096' (a string)", String(RW), 'not-integer'),
];

/** Bad lengths. */
export const BAD_LEN: readonly Bad[] = [
  bad('NaN', NaN, 'not-integer'),
  bad('-4', -4, 'negative'),
  bad('4.5 (a fraction)', 4.5, 'not-integer'),
  bad('0', 0, 'zero'),
  bad("'4' (a string)", '4', 'not-integer'),
];

/** Bad u32 values (setU32's value, the atomics' operands): NaN, negative, fraction, over 2^32 - 1, a string. */
export const BAD_U32: readonly Bad[] = [
  bad('NaN', NaN, 'not-integer'),
  bad('-1', -1, 'negative'),
  bad('1.5 (a fraction)', 1.5, 'not-integer'),
  bad('2^32 (over 2^32 - 1)', 2 ** 32, 'too-large'),
  bad("'1' (a string)", '1', 'not-integer'),
];

/** Bad counts and indices (Threads): NaN, negative, fraction, a string. */
export const BAD_COUNT: readonly Bad[] = [
  bad('NaN', NaN, 'not-integer'),
  bad('-1', -1, 'negative'),
  bad('1.5 (a fraction)', 1.5, 'not-integer'),
  bad("'1' (a string)", '1', 'not-integer'),
];

/** Bad `data`: not an ArrayBufferView, or empty. */
export const BAD_DATA: readonly Bad[] = [
  bad('an empty Uint8Array', new Uint8Array(0), 'zero'),
  bad("'abcd' (a string)", 'abcd', 'bad-value'),
  bad('undefined', undefined, 'bad-value'),
  bad('[1, 2, 3, 4] (a plain array)', [1, 2, 3, 4], 'bad-value'),
  bad('an ArrayBuffer (not a view)', new ArrayBuffer(4), 'bad-value'),
  bad('an object with byteLength 4', { byteLength: 4, buffer: new ArrayBuffer(4) }, 'bad-value'),
];

/** Bad enum values (prot, mode, to, copy): a wrong string, undefined, a number. */
export function badChoice(wrong: string): readonly Bad[] {
  return [
    bad(`'${wrong}'`, wrong, 'bad-value'),
    bad('undefined', undefined, 'bad-value'),
    bad('1 (a number)', 1, 'bad-value'),
  ];
}

/** Describes one call for `family`: which function, what it needs, and how to call it with a value. */
export interface Call {
  readonly call: string;
  readonly needs: Needs;
  readonly reading?: string;
}

/**
 * One case per bad value of `argument`: `make(ctx, value)` makes the call
 * with that value in that argument's place and good values elsewhere.
 */
export function family(
  call: Call,
  argument: string,
  bads: readonly Bad[],
  make: (ctx: HostileContext, value: unknown) => unknown,
): Case[] {
  return bads.map((value) => ({
    ...call,
    input: `${argument} = ${value.label}`,
    expect: invalid(value.reason, argument),
    run: (ctx) => make(ctx, value.value),
  }));
}

/** A case of `call` with bad `input`, expecting `expect`. */
export function one(
  call: Call,
  input: string,
  expect: Refusal,
  run: (ctx: HostileContext) => unknown,
  extra: Partial<Pick<Case, 'prepare' | 'reading'>> = {},
): Case {
  return { ...call, input, expect, run, ...extra };
}

/** Runs `body` inside a sync read scope of the 'rw' allocation's first word (for 'reentrant' cases). */
export function insideScope(ctx: HostileContext, body: () => unknown): unknown {
  return ctx.space.access(RW, 4, 'read', () => body());
}

/** A `prepare` that takes an async lease of the 'rw' allocation's first word in `mode`, released after the check. */
export function holdLease(mode: 'read' | 'write') {
  return async (ctx: HostileContext): Promise<void> => {
    const lease: Lease = await ctx.space.acquire(RW, 4, mode);
    ctx.cleanups.push(() => lease.release());
  };
}
