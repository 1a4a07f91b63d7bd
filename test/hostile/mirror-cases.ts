// Hostile input to GpuMirror: attach options, migrate, prefetch, advise, read, write, snapshot,
// sync, calls after detach(), and detach() during a call. (Kernels are
// docs/kernels.md's.)
import { GpuMirror, type GpuMirrorOptions } from '../../src/mirror/gpu-mirror.ts';
import type { AddressSpace } from '../../src/space/address-space.ts';
import { testDevice } from '../support/gpu.ts';
import {
  BAD_DATA,
  BAD_LEN,
  BAD_VA,
  DETACHED,
  badChoice,
  family,
  fault,
  holdLease,
  invalid,
  one,
  outOfMemory,
  reentrant,
  type Bad,
  type Call,
} from './builders.ts';
import {
  BUDGET,
  FREED,
  NONE,
  PAGE,
  R,
  RW,
  RW_LEN,
  SIZE,
  TWO_32,
  UNMAPPED,
  detachedView,
  hostile,
  n,
  need,
  type Case,
  type Ends,
  type HostileContext,
  type Refusal,
} from './context.ts';

const gpuOf = (x: HostileContext): GpuMirror => need(x.gpu, 'GpuMirror');
const call = (name: string): Call => ({ call: name, needs: 'mirror' });
const MIGRATE = call('gpu.migrate');
const PREFETCH = call('gpu.prefetch');
const ADVISE = call('gpu.advise');
const READ = call('gpu.read');
const WRITE = call('gpu.write');
const SNAPSHOT = call('gpu.snapshot');
const SYNC = call('gpu.sync');
const ATTACH: Call = { call: 'GpuMirror.attach', needs: 'device' };

const word = new Uint8Array([1, 2, 3, 4]);
const eight = new Uint8Array(8).fill(0xee);
/** What the gpu.write cases during detach write: 64 bytes of 0xa5. */
const written = new Uint8Array(64).fill(0xa5);

/** A `prepare` that detaches the mirror: the case calls it afterwards. */
const detachFirst = (x: HostileContext) => gpuOf(x).detach();

const ENDS: Ends = { code: 'DEVICE_LOST', reason: 'detached', orCompletes: true };

/** Cases every ranged mirror call shares; `op(ctx, va, len)` makes it. */
function rangeCases(
  c: Call,
  op: (x: HostileContext, va: number, len: number) => unknown,
  states: boolean,
): Case[] {
  const at = (input: string, expect: Refusal, va: number, len = 4): Case =>
    one(c, input, expect, (x) => op(x, va, len));
  const argumentCases = [
    ...family(c, 'va', BAD_VA, (x, v) => op(x, n(v), 4)),
    ...family(c, 'len', BAD_LEN, (x, v) => op(x, RW, n(v))),
    at('va = size (the end of the space)', fault('out-of-range', SIZE), SIZE),
    at('va = 2^32', fault('out-of-range', TWO_32), TWO_32),
    at('len past the end of the space', fault('out-of-range', SIZE), RW, SIZE),
    one(c, 'after detach()', DETACHED, (x) => op(x, RW, 4), { prepare: detachFirst }),
  ];
  if (!states) return argumentCases;
  return [
    ...argumentCases,
    at('va = 0 (page 0, null)', fault('unmapped', 0), 0),
    at('va in never-allocated pages', fault('unmapped', UNMAPPED), UNMAPPED),
    at('va in a freed page', fault('freed', FREED), FREED),
    at("va in a 'none' page", fault('protection', NONE), NONE),
    at("a range from 'rw' pages into a 'none' page", fault('protection', NONE), RW, 4 * PAGE),
    one(c, 'inside an acquire lease of the range', reentrant(RW), (x) => op(x, RW, 4), {
      prepare: holdLease('write'),
    }),
  ];
}

function migrateCases(): Case[] {
  const migrate = (x: HostileContext, va: number, len: number, to: unknown) =>
    gpuOf(x).migrate(va, len, hostile<'gpu' | 'cpu'>(to));
  return [
    ...rangeCases(MIGRATE, (x, va, len) => migrate(x, va, len, 'gpu'), true),
    ...family(MIGRATE, 'to', badChoice('disk'), (x, v) => migrate(x, RW, PAGE, v)),
    one(MIGRATE, "to 'cpu' of a 'none' page", fault('protection', NONE), (x) =>
      migrate(x, NONE, 4, 'cpu'),
    ),
    one(
      MIGRATE,
      "to 'gpu' of more pages than the budget (3, budget 2)",
      outOfMemory('budget'),
      (x) => migrate(x, RW, 3 * PAGE, 'gpu'),
    ),
  ];
}

function prefetchCases(): Case[] {
  const prefetch = (x: HostileContext, va: number, len: number, to: unknown) =>
    gpuOf(x).prefetch(va, len, hostile<'gpu' | 'cpu'>(to));
  // More pages than the budget is no error here: the rest is an ignored hint (prefetch.browser.test.ts).
  return [
    ...rangeCases(PREFETCH, (x, va, len) => prefetch(x, va, len, 'gpu'), true),
    ...family(PREFETCH, 'to', badChoice('disk'), (x, v) => prefetch(x, RW, PAGE, v)),
    one(PREFETCH, "to 'cpu' of a 'none' page", fault('protection', NONE), (x) =>
      prefetch(x, NONE, 4, 'cpu'),
    ),
  ];
}

const BAD_ADVICE: readonly Bad[] = [
  { label: 'null', value: null, reason: 'bad-value' },
  { label: "'readMostly' (a string)", value: 'readMostly', reason: 'bad-value' },
];

function adviseCases(): Case[] {
  const advise = (x: HostileContext, va: number, len: number, advice: unknown) =>
    gpuOf(x).advise(va, len, hostile<{ readMostly?: boolean }>(advice));
  const field = (input: string, argument: string, advice: unknown): Case =>
    one(ADVISE, input, invalid('bad-value', argument), (x) => advise(x, RW, PAGE, advice));
  const mostly = { readMostly: true };
  const at = (input: string, expect: Refusal, va: number, len = 4): Case =>
    one(ADVISE, input, expect, (x) => advise(x, va, len, mostly));
  // Advice is no access: a 'none' page takes it like any mapped page.
  return [
    ...rangeCases(ADVISE, (x, va, len) => advise(x, va, len, mostly), false),
    at('va = 0 (page 0, null)', fault('unmapped', 0), 0),
    at('va in never-allocated pages', fault('unmapped', UNMAPPED), UNMAPPED),
    at('va in a freed page', fault('freed', FREED), FREED),
    ...family(ADVISE, 'advice', BAD_ADVICE, (x, v) => advise(x, RW, PAGE, v)),
    field('advice = { readMostly: 1 }', 'advice.readMostly', { readMostly: 1 }),
    field("advice = { preferred: 'disk' }", 'advice.preferred', { preferred: 'disk' }),
    field('advice = { readmostly: true } (no such field)', 'advice.readmostly', {
      readmostly: true,
    }),
  ];
}

function readCases(): Case[] {
  return [
    ...rangeCases(READ, (x, va, len) => gpuOf(x).read(va, len), true),
    one(READ, 'more pages than the budget (3, budget 2)', outOfMemory('budget'), (x) =>
      gpuOf(x).read(RW, 3 * PAGE),
    ),
  ];
}

function writeCases(): Case[] {
  const write = (x: HostileContext, va: number, data: unknown) =>
    gpuOf(x).write(va, hostile<ArrayBufferView>(data));
  const at = (input: string, expect: Refusal, va: number, data: Uint8Array = word): Case =>
    one(WRITE, input, expect, (x) => write(x, va, data));
  return [
    ...family(WRITE, 'va', BAD_VA, (x, v) => write(x, n(v), word)),
    ...family(WRITE, 'data', BAD_DATA, (x, v) => write(x, RW, v)),
    at('data = a view of a detached buffer', invalid('zero', 'data'), RW, detachedView()),
    at('va not 4-byte aligned', invalid('misaligned', 'va', RW + 2), RW + 2),
    one(
      WRITE,
      'data length not a multiple of 4',
      { code: 'INVALID_ARGUMENT', reason: 'misaligned' },
      (x) => write(x, RW, new Uint8Array(6)),
    ),
    at('va = 0 (page 0, null)', fault('unmapped', 0), 0),
    at('va in never-allocated pages', fault('unmapped', UNMAPPED), UNMAPPED),
    at('va in a freed page', fault('freed', FREED), FREED),
    at("va in an 'r' page", fault('protection', R), R),
    at("va in a 'none' page", fault('protection', NONE), NONE),
    at("a range from an 'rw' page into an 'r' page", fault('protection', R), R - 4, eight),
    at('va = size (the end of the space)', fault('out-of-range', SIZE), SIZE),
    at('data past the end of the space', fault('out-of-range', SIZE), SIZE - 4, eight),
    one(WRITE, 'inside an acquire lease of the range', reentrant(RW), (x) => write(x, RW, word), {
      prepare: holdLease('read'),
    }),
    one(WRITE, 'after detach()', DETACHED, (x) => write(x, RW, word), { prepare: detachFirst }),
  ];
}

/** A `prepare` that makes the first 'rw' page GPU-dirty with `written` (acknowledged: it must survive). */
const dirtyFirst = (x: HostileContext) => gpuOf(x).write(RW, written);

function detachDuringCases(): Case[] {
  const during = (
    c: Call,
    run: (x: HostileContext) => unknown,
    extra: Partial<Case> = {},
  ): Case => ({
    ...c,
    input: 'detach() called while it runs',
    expect: ENDS,
    run,
    ...extra,
  });
  return [
    during(READ, (x) => gpuOf(x).read(RW, RW_LEN)),
    during(WRITE, (x) => gpuOf(x).write(RW, written), {
      lands: [{ va: RW, data: written, when: 'completed' }],
    }),
    during(MIGRATE, (x) => gpuOf(x).migrate(RW, RW_LEN, 'gpu')),
    during(PREFETCH, (x) => gpuOf(x).prefetch(RW, RW_LEN, 'gpu')),
    {
      ...during(MIGRATE, (x) => gpuOf(x).migrate(RW, PAGE, 'cpu')),
      input: "detach() called while it runs, to 'cpu' of a GPU-dirty page",
      prepare: dirtyFirst,
      lands: [{ va: RW, data: written, when: 'always' }],
    },
    {
      ...during(SYNC, (x) => gpuOf(x).sync()),
      input: 'detach() called while it writes a GPU-dirty page back',
      prepare: dirtyFirst,
      lands: [{ va: RW, data: written, when: 'always' }],
    },
  ];
}

/** Attaches a mirror to the context's space, or with `target`, to `target.space` (a hostile one). */
const attach = (
  x: HostileContext,
  options: Record<string, unknown>,
  target: { readonly space: unknown } = { space: x.space },
) =>
  GpuMirror.attach(
    hostile<AddressSpace>(target.space),
    hostile<GpuMirrorOptions>({ device: need(x.device, 'device'), copy: 'buffer', ...options }),
  );

const BAD_BUDGET: readonly Bad[] = [
  { label: 'NaN', value: NaN, reason: 'not-integer' },
  { label: `-${BUDGET}`, value: -BUDGET, reason: 'negative' },
  { label: `${BUDGET + 0.5} (a fraction)`, value: BUDGET + 0.5, reason: 'not-integer' },
  { label: `'${BUDGET}' (a string)`, value: String(BUDGET), reason: 'not-integer' },
  {
    label: `an object (valueOf ${BUDGET})`,
    value: { valueOf: () => BUDGET },
    reason: 'not-integer',
  },
  { label: '0', value: 0, reason: 'zero' },
];

const NOT_A_DEVICE =
  "a device that is not a GPUDevice is an option outside its allowed values ('device' 'bad-value'), refused before anything is made";

function attachCases(): Case[] {
  const refused = (
    input: string,
    expect: Refusal,
    options: Record<string, unknown>,
    reading?: string,
  ): Case =>
    one(ATTACH, input, expect, (x) => attach(x, options), reading === undefined ? {} : { reading });
  return [
    ...family(ATTACH, 'budget', BAD_BUDGET, (x, v) => attach(x, { budget: v })),
    refused('budget = 100 (under one page)', invalid('bad-value', 'budget'), { budget: 100 }),
    refused('budget = 2^40 (over the binding limit)', invalid('too-large', 'budget'), {
      budget: 2 ** 40,
    }),
    refused("copy = 'fast'", invalid('bad-value', 'copy'), { copy: 'fast' }),
    refused('copy = 1 (a number)', invalid('bad-value', 'copy'), { copy: 1 }),
    refused("prefetch = 'always'", invalid('bad-value', 'prefetch'), { prefetch: 'always' }),
    refused("thrash = 'always'", invalid('bad-value', 'thrash'), { thrash: 'always' }),
    refused('thrash = { threshold: 0 }', invalid('zero', 'thrash.threshold'), {
      thrash: { threshold: 0 },
    }),
    refused('thrash = { pinMs: 1.5 }', invalid('not-integer', 'thrash.pinMs'), {
      thrash: { pinMs: 1.5 },
    }),
    refused(
      'device = {} (an object)',
      invalid('bad-value', 'device'),
      { device: {} },
      NOT_A_DEVICE,
    ),
    refused(
      "device = 'gpu' (a string)",
      invalid('bad-value', 'device'),
      { device: 'gpu' },
      NOT_A_DEVICE,
    ),
    one(
      ATTACH,
      'device = a destroyed GPUDevice',
      { code: 'DEVICE_LOST', reason: 'device-lost' },
      async (x) => {
        const lost = await testDevice();
        lost.destroy();
        return attach(x, { device: lost.device });
      },
      {
        reading:
          'a device that is already lost cannot hold a mirror: attach rejects as every call on a lost mirror does',
      },
    ),
    one(ATTACH, 'space = {} (not an AddressSpace)', invalid('bad-value', 'space'), (x) =>
      attach(x, {}, { space: {} }),
    ),
    one(ATTACH, 'space = undefined', invalid('bad-value', 'space'), (x) =>
      attach(x, {}, { space: undefined }),
    ),
    one(
      ATTACH,
      'a space that has a mirror already',
      invalid('bad-value', 'space'),
      (x) => attach(x, {}),
      {
        prepare: async (x) => {
          const first = await attach(x, {});
          x.cleanups.push(() => first.detach());
        },
      },
    ),
  ];
}

export const mirrorCases: readonly Case[] = [
  ...attachCases(),
  ...migrateCases(),
  ...prefetchCases(),
  ...adviseCases(),
  ...readCases(),
  ...writeCases(),
  ...rangeCases(SNAPSHOT, (x, va, len) => gpuOf(x).snapshot(va, len), false),
  one(SYNC, 'after detach()', DETACHED, (x) => gpuOf(x).sync(), { prepare: detachFirst }),
  ...detachDuringCases(),
];
