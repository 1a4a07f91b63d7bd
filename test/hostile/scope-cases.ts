// Hostile input to scopes and observation: access, acquire, leases after
// release, onInvalidate, snapshot.
import type { AccessMode, Lease } from '../../src/space/lease.ts';
import type { InvalidateListener } from '../../src/space/notifier.ts';
import {
  BAD_LEN,
  BAD_VA,
  badChoice,
  family,
  fault,
  holdLease,
  insideScope,
  invalid,
  one,
  reentrant,
  type Call,
} from './builders.ts';
import {
  FREED,
  NONE,
  R,
  RW,
  SIZE,
  TWO_32,
  UNMAPPED,
  hostile,
  n,
  type Case,
  type HostileContext,
  type Refusal,
} from './context.ts';

const ACCESS: Call = { call: 'space.access', needs: 'space' };
const ACQUIRE: Call = { call: 'space.acquire', needs: 'space' };
const ON_INVALIDATE: Call = { call: 'space.onInvalidate', needs: 'space' };
const SNAPSHOT: Call = { call: 'space.snapshot', needs: 'space' };

const NOT_A_FUNCTION =
  'a callback that is not a function is an argument outside its allowed values, refused before anything is held or registered';

type Scope = (ctx: HostileContext, va: number, len: number, mode: AccessMode) => unknown;

/** The cases access and acquire share; `scope` opens one. */
function scopeCases(call: Call, scope: Scope): Case[] {
  const at = (input: string, expect: Refusal, va: number, len: number, mode: AccessMode): Case =>
    one(call, input, expect, (x) => scope(x, va, len, mode));
  return [
    ...family(call, 'va', BAD_VA, (x, v) => scope(x, n(v), 4, 'read')),
    ...family(call, 'len', BAD_LEN, (x, v) => scope(x, RW, n(v), 'read')),
    ...family(call, 'mode', badChoice('readwrite'), (x, v) =>
      scope(x, RW, 4, hostile<AccessMode>(v)),
    ),
    at('va = 0 (page 0, null)', fault('unmapped', 0), 0, 4, 'read'),
    at('va in never-allocated pages', fault('unmapped', UNMAPPED), UNMAPPED, 4, 'read'),
    at('va in a freed page', fault('freed', FREED), FREED, 4, 'read'),
    at("mode 'read' of a 'none' page", fault('protection', NONE), NONE, 4, 'read'),
    at("mode 'write' of an 'r' page", fault('protection', R), R, 4, 'write'),
    at(
      "mode 'write' from an 'rw' page into an 'r' page",
      fault('protection', R),
      R - 4,
      8,
      'write',
    ),
    at('va = size (the end of the space)', fault('out-of-range', SIZE), SIZE, 4, 'read'),
    at('len past the end of the space', fault('out-of-range', SIZE), RW, SIZE, 'read'),
  ];
}

const openAccess: Scope = (x, va, len, mode) => x.space.access(va, len, mode, () => 0);
const openAcquire: Scope = (x, va, len, mode) => x.space.acquire(va, len, mode);

const released = (address: number): Refusal => invalid('released', 'lease', address);

/** Acquires [va, va + len) for reading, runs `use` on the lease, releases it whatever happens. */
async function withLease(
  ctx: HostileContext,
  va: number,
  len: number,
  use: (lease: Lease) => unknown,
) {
  const lease = await ctx.space.acquire(va, len, 'read');
  try {
    return use(lease);
  } finally {
    lease.release();
  }
}

async function afterRelease(ctx: HostileContext, view: 'bytes' | 'u32' | 'f32'): Promise<unknown> {
  const lease = await ctx.space.acquire(RW, 8, 'read');
  lease.release();
  return lease[view];
}

function leaseCases(): Case[] {
  const lease = (view: 'bytes' | 'u32' | 'f32'): Call => ({
    call: `lease.${view}`,
    needs: 'space',
  });
  return [
    one(lease('bytes'), 'after release()', released(RW), (x) => afterRelease(x, 'bytes')),
    one(lease('u32'), 'after release()', released(RW), (x) => afterRelease(x, 'u32')),
    one(lease('f32'), 'after release()', released(RW), (x) => afterRelease(x, 'f32')),
    one(
      lease('bytes'),
      'a lease kept past the end of its access() scope',
      released(RW),
      (x) => x.space.access(RW, 8, 'read', (kept) => kept).bytes,
    ),
    one(lease('u32'), 'a range not 4-byte aligned', invalid('misaligned', 'lease', RW + 1), (x) =>
      withLease(x, RW + 1, 4, (held) => held.u32),
    ),
    one(lease('f32'), 'a length not a multiple of 4', invalid('misaligned', 'lease', RW), (x) =>
      withLease(x, RW, 6, (held) => held.f32),
    ),
  ];
}

const listener: InvalidateListener = () => undefined;

function observationCases(): Case[] {
  const listen = (x: HostileContext, va: number, len: number, l: unknown) =>
    x.space.onInvalidate(va, len, hostile<InvalidateListener>(l));
  const badListener = (input: string, value: unknown): Case =>
    one(ON_INVALIDATE, input, invalid('bad-value', 'listener'), (x) => listen(x, RW, 4, value), {
      reading: NOT_A_FUNCTION,
    });
  return [
    ...family(ON_INVALIDATE, 'va', BAD_VA, (x, v) => listen(x, n(v), 4, listener)),
    ...family(ON_INVALIDATE, 'len', BAD_LEN, (x, v) => listen(x, RW, n(v), listener)),
    badListener('listener = undefined', undefined),
    badListener("listener = 'x' (a string)", 'x'),
    badListener('listener = {} (an object)', {}),
    one(ON_INVALIDATE, 'va = size (the end of the space)', fault('out-of-range', SIZE), (x) =>
      listen(x, SIZE, 4, listener),
    ),
    one(ON_INVALIDATE, 'len past the end of the space', fault('out-of-range', SIZE), (x) =>
      listen(x, RW, SIZE, listener),
    ),
    ...family(SNAPSHOT, 'va', BAD_VA, (x, v) => x.space.snapshot(n(v), 4)),
    ...family(SNAPSHOT, 'len', BAD_LEN, (x, v) => x.space.snapshot(RW, n(v))),
    one(SNAPSHOT, 'va = size (the end of the space)', fault('out-of-range', SIZE), (x) =>
      x.space.snapshot(SIZE, 4),
    ),
    one(SNAPSHOT, 'va = 2^32 + 4096', fault('out-of-range', TWO_32 + 4096), (x) =>
      x.space.snapshot(TWO_32 + 4096, 4),
    ),
    one(SNAPSHOT, 'len past the end of the space', fault('out-of-range', SIZE), (x) =>
      x.space.snapshot(RW, SIZE),
    ),
  ];
}

export const scopeCasesAll: readonly Case[] = [
  ...scopeCases(ACCESS, openAccess),
  one(
    ACCESS,
    'fn = undefined',
    invalid('bad-value', 'fn'),
    (x) => x.space.access(RW, 4, 'write', hostile(undefined)),
    {
      reading: NOT_A_FUNCTION,
    },
  ),
  one(
    ACCESS,
    "fn = 'x' (a string)",
    invalid('bad-value', 'fn'),
    (x) => x.space.access(RW, 4, 'write', hostile('x')),
    {
      reading: NOT_A_FUNCTION,
    },
  ),
  one(ACCESS, 'inside a scope of the range', reentrant(RW), (x) =>
    insideScope(x, () => openAccess(x, RW, 4, 'read')),
  ),
  ...scopeCases(ACQUIRE, openAcquire),
  one(
    ACQUIRE,
    'inside an acquire lease of the range',
    reentrant(RW),
    (x) => openAcquire(x, RW, 4, 'read'),
    {
      prepare: holdLease('read'),
    },
  ),
  ...leaseCases(),
  ...observationCases(),
];
