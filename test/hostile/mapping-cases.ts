// Hostile input to making and mapping a space: AddressSpace.create and
// .attach, alloc, free, protect.
import { AddressSpace } from '../../src/space/address-space.ts';
import type { Protection } from '../../src/space/pte.ts';
import type { SpaceHandle } from '../../src/space/shared-layout.ts';
import {
  BAD_LEN,
  BAD_VA,
  badChoice,
  family,
  fault,
  insideScope,
  invalid,
  one,
  outOfMemory,
  type Bad,
  type Call,
} from './builders.ts';
import {
  FREED,
  PAGE,
  RW,
  SIZE,
  TWO_32,
  UNMAPPED,
  hostile,
  n,
  type Case,
  type HostileContext,
} from './context.ts';

const CREATE: Call = { call: 'AddressSpace.create', needs: 'space' };
const ATTACH: Call = { call: 'AddressSpace.attach', needs: 'space' };
const ALLOC: Call = { call: 'space.alloc', needs: 'space' };
const FREE: Call = { call: 'space.free', needs: 'space' };
const PROTECT: Call = { call: 'space.protect', needs: 'space' };

/** Bad sizes and page sizes: each would be a valid value if coerced. */
function badBytes(valid: number): Bad[] {
  return [
    { label: 'NaN', value: NaN, reason: 'not-integer' },
    { label: `-${valid}`, value: -valid, reason: 'negative' },
    { label: `${valid + 0.5} (a fraction)`, value: valid + 0.5, reason: 'not-integer' },
    { label: `'${valid}' (a string)`, value: String(valid), reason: 'not-integer' },
    {
      label: `an object (valueOf ${valid})`,
      value: { valueOf: () => valid },
      reason: 'not-integer',
    },
    { label: '0', value: 0, reason: 'zero' },
  ];
}

const BAD_MS: readonly Bad[] = [
  { label: 'NaN', value: NaN, reason: 'not-integer' },
  { label: '-1', value: -1, reason: 'negative' },
  { label: '0.5 (a fraction)', value: 0.5, reason: 'not-integer' },
  { label: "'100' (a string)", value: '100', reason: 'not-integer' },
];

const create = (options: Record<string, unknown>) => () =>
  AddressSpace.create(
    hostile<Parameters<typeof AddressSpace.create>[0]>({ size: SIZE, pageSize: PAGE, ...options }),
  );

function createCases(): Case[] {
  const bad = (
    input: string,
    expect: ReturnType<typeof invalid>,
    options: Record<string, unknown>,
    reading?: string,
  ) => one(CREATE, input, expect, create(options), reading === undefined ? {} : { reading });
  return [
    ...family(
      CREATE,
      'size',
      [...badBytes(SIZE), { label: 'undefined', value: undefined, reason: 'not-integer' }],
      (_, v) => create({ size: v })(),
    ),
    bad('size = 5000 (not a multiple of pageSize)', invalid('misaligned', 'size'), { size: 5000 }),
    bad('size = one page (page 0 only)', invalid('bad-value', 'size'), { size: PAGE }),
    bad('size = 2^32 (over 4 GiB minus one page)', invalid('too-large', 'size'), { size: TWO_32 }),
    bad('size = 2^32 + 65536', invalid('too-large', 'size'), {
      size: TWO_32 + 65536,
      pageSize: 65536,
    }),
    ...family(CREATE, 'pageSize', badBytes(PAGE), (_, v) => create({ pageSize: v })()),
    bad('pageSize = 3000 (not a power of two)', invalid('bad-value', 'pageSize'), {
      pageSize: 3000,
    }),
    bad('pageSize = 2048 (under 4 KiB)', invalid('bad-value', 'pageSize'), { pageSize: 2048 }),
    bad('pageSize = 4 MiB (over 2 MiB)', invalid('bad-value', 'pageSize'), {
      pageSize: 4 << 20,
      size: 8 << 20,
    }),
    bad('pageSize = 2^32', invalid('bad-value', 'pageSize'), { pageSize: TWO_32 }),
    ...family(
      CREATE,
      'faultTimeoutMs',
      [...BAD_MS, { label: '0', value: 0, reason: 'zero' }],
      (_, v) => create({ faultTimeoutMs: v })(),
    ),
    ...family(CREATE, 'spinLimitMs', BAD_MS, (_, v) => create({ spinLimitMs: v })()),
    bad(
      "mayBlock = 'yes' (not a function)",
      invalid('bad-value', 'mayBlock'),
      { mayBlock: 'yes' },
      'mayBlock is documented as a function asked at each call; anything else is an option outside its allowed values',
    ),
    one(
      CREATE,
      'options = undefined',
      invalid('not-integer', 'size'),
      () => AddressSpace.create(hostile(undefined)),
      {
        reading: 'no options is no size: the size check refuses it as it refuses a missing size',
      },
    ),
  ];
}

const handleWith = (ctx: HostileContext, change: Partial<Record<keyof SpaceHandle, unknown>>) =>
  hostile<SpaceHandle>({ ...ctx.space.handle, ...change });

function attachCases(): Case[] {
  const attach = (
    input: string,
    handle: (ctx: HostileContext) => unknown,
    reading?: string,
  ): Case =>
    one(
      ATTACH,
      input,
      invalid('bad-value', 'handle'),
      (x) => AddressSpace.attach(hostile(handle(x))),
      reading === undefined ? {} : { reading },
    );
  const anything =
    "attach's documented refusal is 'handle' 'bad-value' for anything but a handle of this version";
  return [
    attach('handle = undefined', () => undefined, anything),
    attach('handle = null', () => null, anything),
    attach('handle = {} (an object)', () => ({})),
    attach("handle = 'webhmm-space' (a string)", () => 'webhmm-space'),
    attach('a handle of layout version 999', (x) => handleWith(x, { version: 999 })),
    attach('a handle whose memory is another size', (x) =>
      handleWith(x, { memory: new SharedArrayBuffer(2 * SIZE) }),
    ),
    attach('a handle whose meta is not a space', (x) =>
      handleWith(x, { meta: new SharedArrayBuffer(64) }),
    ),
  ];
}

function allocCases(): Case[] {
  const oom = (input: string, bytes: number, reading?: string): Case =>
    one(
      ALLOC,
      input,
      outOfMemory('address-space'),
      (x) => x.space.alloc(bytes),
      reading === undefined ? {} : { reading },
    );
  return [
    ...family(
      ALLOC,
      'bytes',
      [...badBytes(PAGE), { label: 'undefined', value: undefined, reason: 'not-integer' }],
      (x, v) => x.space.alloc(n(v)),
    ),
    oom('bytes = 12 pages (more than the 11 free)', 12 * PAGE),
    oom('bytes = size + 1 (beyond the space)', SIZE + 1),
    oom(
      'bytes = 2^32 + 1',
      TWO_32 + 1,
      'alloc documents OutOfMemoryError for a size no free run can hold, whatever the size',
    ),
    // prot undefined is prot omitted: 'rw'.
    ...family(
      ALLOC,
      'prot',
      badChoice('rwx').filter((b) => b.value !== undefined),
      (x, v) => x.space.alloc(PAGE, { prot: hostile<Protection>(v) }),
    ),
    one(
      ALLOC,
      'options = null',
      invalid('bad-value', 'options'),
      (x) => x.space.alloc(PAGE, hostile(null)),
      {
        reading: 'options is an object or omitted; null is an option outside its allowed values',
      },
    ),
  ];
}

const FAULTING_ADDRESS =
  "the error carries the faulting address: for a range, the first page that is not allocated, not the range's start";

function freeCases(): Case[] {
  const notAllocated = (
    input: string,
    va: number,
    len?: number,
    address = va,
    reading?: string,
  ): Case =>
    one(
      FREE,
      input,
      invalid('not-allocated', 'va', address),
      (x) => x.space.free(va, len),
      reading === undefined ? {} : { reading },
    );
  return [
    ...family(FREE, 'va', BAD_VA, (x, v) => x.space.free(n(v))),
    one(FREE, 'va not page-aligned', invalid('misaligned', 'va', RW + 4), (x) =>
      x.space.free(RW + 4),
    ),
    ...family(FREE, 'len', BAD_LEN, (x, v) => x.space.free(RW, n(v))),
    notAllocated('va = 0 (page 0, null)', 0),
    notAllocated('va in never-allocated pages', UNMAPPED),
    notAllocated('va in a freed page (double free)', FREED),
    one(
      FREE,
      'va inside an allocation, no len',
      invalid('not-allocation-start', 'va', RW + PAGE),
      (x) => x.space.free(RW + PAGE),
    ),
    notAllocated(
      'a range from allocated pages into a freed page',
      RW,
      5 * PAGE,
      FREED,
      FAULTING_ADDRESS,
    ),
    one(FREE, 'va = size (the end of the space)', fault('out-of-range', SIZE), (x) =>
      x.space.free(SIZE),
    ),
    one(FREE, 'va = 2^32', fault('out-of-range', TWO_32), (x) => x.space.free(TWO_32)),
    one(FREE, 'len past the end of the space', fault('out-of-range', SIZE), (x) =>
      x.space.free(RW, SIZE),
    ),
    one(FREE, 'len = 2^32', fault('out-of-range', SIZE), (x) => x.space.free(RW, TWO_32)),
    one(
      FREE,
      'inside a scope of the range',
      { code: 'WOULD_BLOCK', reason: 'reentrant', address: RW },
      (x) => insideScope(x, () => x.space.free(RW)),
    ),
  ];
}

function protectCases(): Case[] {
  const at = (input: string, expect: ReturnType<typeof fault>, va: number, len = PAGE): Case =>
    one(PROTECT, input, expect, (x) => x.space.protect(va, len, 'r'));
  return [
    ...family(PROTECT, 'va', BAD_VA, (x, v) => x.space.protect(n(v), PAGE, 'r')),
    one(PROTECT, 'va not page-aligned', invalid('misaligned', 'va', RW + 4), (x) =>
      x.space.protect(RW + 4, PAGE, 'r'),
    ),
    ...family(PROTECT, 'len', BAD_LEN, (x, v) => x.space.protect(RW, n(v), 'r')),
    ...family(PROTECT, 'prot', badChoice('rwx'), (x, v) =>
      x.space.protect(RW, PAGE, hostile<Protection>(v)),
    ),
    at('va = 0 (page 0, null)', fault('unmapped', 0), 0),
    at('va in never-allocated pages', fault('unmapped', UNMAPPED), UNMAPPED),
    at('va in a freed page', fault('freed', FREED), FREED),
    at("a range from 'rw' pages into a freed page", fault('freed', FREED), RW, 5 * PAGE),
    at('va = size (the end of the space)', fault('out-of-range', SIZE), SIZE),
    at('len past the end of the space', fault('out-of-range', SIZE), RW, SIZE),
    one(
      PROTECT,
      'inside a scope of the range',
      { code: 'WOULD_BLOCK', reason: 'reentrant', address: RW },
      (x) => insideScope(x, () => x.space.protect(RW, PAGE, 'r')),
    ),
  ];
}

export const mappingCases: readonly Case[] = [
  ...createCases(),
  ...attachCases(),
  ...allocCases(),
  ...freeCases(),
  ...protectCases(),
];
