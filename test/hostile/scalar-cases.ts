// Hostile input to the scalar accesses: getU32, setU32, getF32, setF32,
// atomicAddU32, atomicCasU32.
import {
  BAD_U32,
  BAD_VA,
  family,
  fault,
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
} from './context.ts';

const U32_VALUE =
  "a u32 operand is checked like every integer argument (as fill's byte is): NaN, fractions and non-numbers 'not-integer', below zero 'negative', over 2^32 - 1 'too-large'; nothing is stored";
const F32_VALUE =
  "an f32 value that is not a number is refused by the shared rule ('not a number ... not-integer'); NaN itself is a valid f32";

type Scalar = (ctx: HostileContext, va: number) => unknown;

/** The cases every scalar access shares; `need` says which protection refuses it. */
function scalarCases(call: Call, op: Scalar, need: 'read' | 'write'): Case[] {
  const refused = need === 'read' ? NONE : R;
  const at = (input: string, expect: ReturnType<typeof fault>, va: number): Case =>
    one(call, input, expect, (x) => op(x, va));
  return [
    ...family(call, 'va', BAD_VA, (x, v) => op(x, n(v))),
    one(call, 'va not 4-byte aligned', invalid('misaligned', 'va', RW + 2), (x) => op(x, RW + 2)),
    at('va = 0 (page 0, null)', fault('unmapped', 0), 0),
    at('va in never-allocated pages', fault('unmapped', UNMAPPED), UNMAPPED),
    at('va in a freed page', fault('freed', FREED), FREED),
    at(
      need === 'read' ? "va in a 'none' page" : "va in an 'r' page",
      fault('protection', refused),
      refused,
    ),
    at('va = size (the end of the space)', fault('out-of-range', SIZE), SIZE),
    at('va = 2^32', fault('out-of-range', TWO_32), TWO_32),
    one(call, 'inside a scope of the word', reentrant(RW), (x) => insideScope(x, () => op(x, RW))),
  ];
}

const call = (name: string): Call => ({ call: name, needs: 'space' });
const u32Family = (name: string, argument: string, op: (x: HostileContext, v: number) => unknown) =>
  family({ ...call(name), reading: U32_VALUE }, argument, BAD_U32, (x, v) => op(x, n(v)));

export const scalarCasesAll: readonly Case[] = [
  ...scalarCases(call('space.getU32'), (x, va) => x.space.getU32(va), 'read'),
  ...scalarCases(call('space.setU32'), (x, va) => x.space.setU32(va, 7), 'write'),
  ...u32Family('space.setU32', 'value', (x, v) => x.space.setU32(RW, v)),
  ...scalarCases(call('space.getF32'), (x, va) => x.space.getF32(va), 'read'),
  ...scalarCases(call('space.setF32'), (x, va) => x.space.setF32(va, 1.5), 'write'),
  one(
    call('space.setF32'),
    "value = '1.5' (a string)",
    invalid('not-integer', 'value'),
    (x) => x.space.setF32(RW, hostile<number>('1.5')),
    { reading: F32_VALUE },
  ),
  one(
    call('space.setF32'),
    'value = undefined',
    invalid('not-integer', 'value'),
    (x) => x.space.setF32(RW, hostile<number>(undefined)),
    { reading: F32_VALUE },
  ),
  ...scalarCases(call('space.atomicAddU32'), (x, va) => x.space.atomicAddU32(va, 1), 'write'),
  ...u32Family('space.atomicAddU32', 'value', (x, v) => x.space.atomicAddU32(RW, v)),
  ...scalarCases(call('space.atomicCasU32'), (x, va) => x.space.atomicCasU32(va, 0, 1), 'write'),
  ...u32Family('space.atomicCasU32', 'expected', (x, v) => x.space.atomicCasU32(RW, v, 1)),
  ...u32Family('space.atomicCasU32', 'value', (x, v) => x.space.atomicCasU32(RW, 0, v)),
];
