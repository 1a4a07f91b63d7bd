// Hostile input to the bulk CPU accesses: read, readAsync, write, writeAsync, fill, discard, copy.
import {
  BAD_DATA,
  BAD_LEN,
  BAD_VA,
  BAD_VA_SHORT,
  family,
  fault,
  holdLease,
  insideScope,
  invalid,
  one,
  reentrant,
  type Bad,
  type Call,
} from './builders.ts';
import {
  FREED,
  NONE,
  PAGE,
  R,
  RW,
  SIZE,
  TWO_32,
  UNMAPPED,
  detachedView,
  hostile,
  n,
  type Case,
  type HostileContext,
} from './context.ts';

/** Reading: a range that reaches past the end of the space is refused as a whole, at the end. */
const PAST_END =
  'a range reaching past the end of the space is refused whole, out-of-range at the first byte past the end, before its pages are looked at';

const word = new Uint8Array([1, 2, 3, 4]);
const eight = new Uint8Array(8).fill(0xee);

/** The cases every read-like call (read, readAsync) shares; `read(ctx, va, len)` makes the call. */
function readCases(
  call: Call,
  read: (ctx: HostileContext, va: number, len: number) => unknown,
): Case[] {
  return [
    ...family(call, 'va', BAD_VA, (x, v) => read(x, n(v), 4)),
    ...family(call, 'len', BAD_LEN, (x, v) => read(x, RW, n(v))),
    one(call, 'len = Infinity', invalid('not-integer', 'len'), (x) => read(x, RW, Infinity)),
    one(call, 'va = 0 (page 0, null)', fault('unmapped', 0), (x) => read(x, 0, 4)),
    one(call, 'va in never-allocated pages', fault('unmapped', UNMAPPED), (x) =>
      read(x, UNMAPPED, 4),
    ),
    one(call, 'va in a freed page', fault('freed', FREED), (x) => read(x, FREED, 4)),
    one(call, "va in a 'none' page", fault('protection', NONE), (x) => read(x, NONE, 4)),
    one(call, "a range from 'rw' pages into a 'none' page", fault('protection', NONE), (x) =>
      read(x, RW, 4 * PAGE),
    ),
    one(call, 'va = size (the end of the space)', fault('out-of-range', SIZE), (x) =>
      read(x, SIZE, 4),
    ),
    one(call, 'va = 2^32 + 4096', fault('out-of-range', TWO_32 + PAGE), (x) =>
      read(x, TWO_32 + PAGE, 4),
    ),
    one(
      call,
      'len past the end of the space',
      fault('out-of-range', SIZE),
      (x) => read(x, RW, SIZE),
      { reading: PAST_END },
    ),
    one(call, 'len = 2^32 + 1', fault('out-of-range', SIZE), (x) => read(x, RW, TWO_32 + 1), {
      reading: PAST_END,
    }),
  ];
}

/** The cases every write-like call (write, writeAsync) shares. */
function writeCases(
  call: Call,
  write: (ctx: HostileContext, va: number, data: ArrayBufferView) => unknown,
): Case[] {
  const at = (input: string, expect: ReturnType<typeof fault>, va: number, data = word): Case =>
    one(call, input, expect, (x) => write(x, va, data));
  return [
    ...family(call, 'va', BAD_VA, (x, v) => write(x, n(v), word)),
    ...family(call, 'data', BAD_DATA, (x, v) => write(x, RW, hostile<ArrayBufferView>(v))),
    one(call, 'data = a view of a detached buffer', invalid('zero', 'data'), (x) =>
      write(x, RW, detachedView()),
    ),
    at('va = 0 (page 0, null)', fault('unmapped', 0), 0),
    at('va in never-allocated pages', fault('unmapped', UNMAPPED), UNMAPPED),
    at('va in a freed page', fault('freed', FREED), FREED),
    at("va in an 'r' page", fault('protection', R), R),
    at("va in a 'none' page", fault('protection', NONE), NONE),
    at("a range from an 'rw' page into an 'r' page", fault('protection', R), R - 4, eight),
    at('va = size (the end of the space)', fault('out-of-range', SIZE), SIZE),
    at('va = 2^32 + 4096', fault('out-of-range', TWO_32 + PAGE), TWO_32 + PAGE),
    one(
      call,
      'data past the end of the space',
      fault('out-of-range', SIZE),
      (x) => write(x, SIZE - 4, eight),
      { reading: PAST_END },
    ),
  ];
}

const READ: Call = { call: 'space.read', needs: 'space' };
const READ_ASYNC: Call = { call: 'space.readAsync', needs: 'space' };
const WRITE: Call = { call: 'space.write', needs: 'space' };
const WRITE_ASYNC: Call = { call: 'space.writeAsync', needs: 'space' };
const FILL: Call = { call: 'space.fill', needs: 'space' };
const COPY: Call = { call: 'space.copy', needs: 'space' };
const DISCARD: Call = { call: 'space.discard', needs: 'space' };

const BAD_BYTE: readonly Bad[] = [
  { label: 'NaN', value: NaN, reason: 'not-integer' },
  { label: '-1', value: -1, reason: 'negative' },
  { label: '1.5 (a fraction)', value: 1.5, reason: 'not-integer' },
  { label: '256 (over 255)', value: 256, reason: 'too-large' },
  { label: "'1' (a string)", value: '1', reason: 'not-integer' },
  { label: 'undefined', value: undefined, reason: 'not-integer' },
];

function fillCases(): Case[] {
  const fill = (va: number, len: number, input: string, expect: ReturnType<typeof fault>): Case =>
    one(FILL, input, expect, (x) => x.space.fill(va, len, 9));
  return [
    ...family(FILL, 'va', BAD_VA, (x, v) => x.space.fill(n(v), 4, 9)),
    ...family(FILL, 'len', BAD_LEN, (x, v) => x.space.fill(RW, n(v), 9)),
    ...family(FILL, 'byte', BAD_BYTE, (x, v) => x.space.fill(RW, 4, n(v))),
    fill(0, 4, 'va = 0 (page 0, null)', fault('unmapped', 0)),
    fill(UNMAPPED, 4, 'va in never-allocated pages', fault('unmapped', UNMAPPED)),
    fill(FREED, 4, 'va in a freed page', fault('freed', FREED)),
    fill(R, 4, "va in an 'r' page", fault('protection', R)),
    fill(NONE, 4, "va in a 'none' page", fault('protection', NONE)),
    fill(R - 4, 8, "a range from an 'rw' page into an 'r' page", fault('protection', R)),
    fill(SIZE, 4, 'va = size (the end of the space)', fault('out-of-range', SIZE)),
    one(FILL, 'len past the end of the space', fault('out-of-range', SIZE), (x) =>
      x.space.fill(RW, SIZE, 9),
    ),
    one(FILL, 'inside a scope of the range', reentrant(RW), (x) =>
      insideScope(x, () => x.space.fill(RW, 4, 9)),
    ),
  ];
}

function discardCases(): Case[] {
  const discard = (va: number, len: number, input: string, expect: ReturnType<typeof fault>) =>
    one(DISCARD, input, expect, (x) => x.space.discard(va, len));
  return [
    ...family(DISCARD, 'va', BAD_VA, (x, v) => x.space.discard(n(v), 4)),
    ...family(DISCARD, 'len', BAD_LEN, (x, v) => x.space.discard(RW, n(v))),
    discard(0, 4, 'va = 0 (page 0, null)', fault('unmapped', 0)),
    discard(UNMAPPED, 4, 'va in never-allocated pages', fault('unmapped', UNMAPPED)),
    discard(FREED, 4, 'va in a freed page', fault('freed', FREED)),
    discard(R, 4, "va in an 'r' page", fault('protection', R)),
    discard(NONE, 4, "va in a 'none' page", fault('protection', NONE)),
    discard(R - 4, 8, "a range from an 'rw' page into an 'r' page", fault('protection', R)),
    discard(SIZE, 4, 'va = size (the end of the space)', fault('out-of-range', SIZE)),
    one(DISCARD, 'len past the end of the space', fault('out-of-range', SIZE), (x) =>
      x.space.discard(RW, SIZE),
    ),
    one(DISCARD, 'inside a scope of the range', reentrant(RW), (x) =>
      insideScope(x, () => x.space.discard(RW, 4)),
    ),
  ];
}

function copyCases(): Case[] {
  const copy = (
    dst: number,
    src: number,
    len: number,
    input: string,
    expect: ReturnType<typeof fault>,
  ) => one(COPY, input, expect, (x) => x.space.copy(dst, src, len));
  return [
    ...family(COPY, 'dstVa', BAD_VA_SHORT, (x, v) => x.space.copy(n(v), RW, 4)),
    ...family(COPY, 'srcVa', BAD_VA_SHORT, (x, v) => x.space.copy(RW, n(v), 4)),
    ...family(COPY, 'len', BAD_LEN, (x, v) => x.space.copy(RW + 8, RW, n(v))),
    copy(0, RW, 4, 'dstVa = 0 (page 0, null)', fault('unmapped', 0)),
    copy(RW, 0, 4, 'srcVa = 0 (page 0, null)', fault('unmapped', 0)),
    copy(UNMAPPED, RW, 4, 'dstVa in never-allocated pages', fault('unmapped', UNMAPPED)),
    copy(RW, FREED, 4, 'srcVa in a freed page', fault('freed', FREED)),
    copy(R, RW, 4, "dstVa in an 'r' page", fault('protection', R)),
    copy(RW, NONE, 4, "srcVa in a 'none' page", fault('protection', NONE)),
    copy(R - 4, RW, 8, "a destination from an 'rw' page into an 'r' page", fault('protection', R)),
    copy(SIZE, RW, 4, 'dstVa = size (the end of the space)', fault('out-of-range', SIZE)),
    copy(RW, TWO_32, 4, 'srcVa = 2^32', fault('out-of-range', TWO_32)),
    one(COPY, 'len past the end of the space', fault('out-of-range', SIZE), (x) =>
      x.space.copy(RW, RW + 4, SIZE),
    ),
    one(COPY, 'the destination inside a scope', reentrant(RW), (x) =>
      insideScope(x, () => x.space.copy(RW, RW + PAGE, 4)),
    ),
  ];
}

export const accessCases: readonly Case[] = [
  ...readCases(READ, (x, va, len) => x.space.read(va, len)),
  one(READ, 'inside a scope of the range', reentrant(RW), (x) =>
    insideScope(x, () => x.space.read(RW, 4)),
  ),
  ...readCases(READ_ASYNC, (x, va, len) => x.space.readAsync(va, len)),
  one(
    READ_ASYNC,
    'inside an acquire lease of the range',
    reentrant(RW),
    (x) => x.space.readAsync(RW, 4),
    { prepare: holdLease('write') },
  ),
  ...writeCases(WRITE, (x, va, data) => x.space.write(va, data)),
  one(WRITE, 'inside a scope of the range', reentrant(RW), (x) =>
    insideScope(x, () => x.space.write(RW, word)),
  ),
  ...writeCases(WRITE_ASYNC, (x, va, data) => x.space.writeAsync(va, data)),
  one(
    WRITE_ASYNC,
    'inside an acquire lease of the range',
    reentrant(RW),
    (x) => x.space.writeAsync(RW, word),
    { prepare: holdLease('read') },
  ),
  ...fillCases(),
  ...discardCases(),
  ...copyCases(),
];
