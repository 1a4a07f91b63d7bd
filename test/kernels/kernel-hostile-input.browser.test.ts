// Hostile input for gpu.kernel() and kernel.run(): every cell of the table in
// docs/kernels.md ("Bad input"), each checked to fail with its typed error and
// to leave the space as it was (bytes, page table, holds, frames, GPU copy).
import { afterEach, describe, expect, it } from 'vitest';
import {
  AccessError,
  DeviceLostError,
  InvalidArgumentError,
  type WebHmmError,
} from '../../src/errors.ts';
import type { Kernel, KernelOptions, RunOptions } from '../../src/kernels/kernel.ts';
import type { GpuMirror } from '../../src/mirror/gpu-mirror.ts';
import type { AddressSpace } from '../../src/space/address-space.ts';
import { internalsOf } from '../../src/space/internals.ts';
import { testMirror } from '../support/mirror.ts';

const PAGE = 4096;
const SIZE = 4 << 20;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A space with a GPU-dirty page, a read-only, a 'none', a freed and an unmapped range. */
interface World {
  readonly space: AddressSpace;
  readonly gpu: GpuMirror;
  readonly kernel: Kernel;
  /** Named ranges: a 'read', b 'readwrite'. */
  readonly named: Kernel;
  /** Two rw pages; the first GPU-dirty after a good run. */
  readonly a: number;
  readonly ro: number;
  readonly none: number;
  readonly freed: number;
  readonly unmapped: number;
  readonly good: RunOptions;
}

const STORE = /* wgsl */ `
@compute @workgroup_size(1)
fn main() { hmm_store_u32(hmm_params.va, hmm_params.n + u32(hmm_params.d) + u32(hmm_params.a)); }`;

async function world(): Promise<World> {
  const { space, gpu } = await testMirror(
    { size: SIZE, pageSize: PAGE },
    { copy: 'buffer' },
    cleanups,
  );
  const a = space.alloc(2 * PAGE);
  space.fill(a, 2 * PAGE, 7);
  const ro = space.alloc(PAGE, { prot: 'r' });
  const none = space.alloc(PAGE, { prot: 'none' });
  const freed = space.alloc(PAGE);
  space.free(freed);
  const unmapped = SIZE - 4 * PAGE;
  const kernel = gpu.kernel({
    code: STORE,
    params: { va: 'u32', n: 'u32', d: 'i32', a: 'f32' },
  });
  const named = gpu.kernel({
    code: '@compute @workgroup_size(1) fn main() { b_store_u32(0u, a_load_u32(0u)); }',
    ranges: { a: 'read', b: 'readwrite' },
  });
  const good: RunOptions = {
    workgroups: 1,
    params: { va: a, n: 1, d: 2, a: 3 },
    uses: [{ va: a, len: 4, access: 'write' }],
  };
  await kernel.run(good); // the first page of `a` is now GPU-dirty
  await gpu.migrate(a + PAGE, PAGE, 'gpu'); // the second GPU-owned, clean
  return { space, gpu, kernel, named, a, ro, none, freed, unmapped, good };
}

/** Everything a failed call must leave as it was. */
async function state(w: World, detached = false): Promise<unknown> {
  const internals = internalsOf(w.space);
  const memory = new Uint8Array(internals.memory);
  let hash = 0x811c9dc5;
  for (let i = 0; i < memory.length; i += 4) {
    hash = Math.imul(
      hash ^ (memory[i]! | (memory[i + 1]! << 8) | (memory[i + 2]! << 16)),
      16777619,
    );
  }
  const held: number[] = [];
  internals.table.shared.lock.forEach((word, page) => {
    if (word !== 0) held.push(page);
  });
  const pages = w.space.snapshot(0, SIZE);
  if (detached) return { hash, held, pages };
  return {
    hash,
    held,
    pages,
    mirror: await w.gpu.snapshot(0, SIZE),
    framesInUse: w.gpu.stats().framesInUse,
    gpuCopy: [...(await w.gpu.read(w.a, 2 * PAGE))],
  };
}

/** The error `act` throws or rejects with; a failure if it succeeds. */
async function failure(act: () => unknown): Promise<unknown> {
  let outcome: unknown;
  try {
    outcome = await act();
  } catch (error) {
    return error;
  }
  throw new Error(`expected a failure, got ${JSON.stringify(outcome)}`);
}

type ErrorClass = new (...args: never[]) => WebHmmError;
type Expected = readonly [ErrorClass, Record<string, unknown>];
/** A row of the table in docs/kernels.md: the bad input, the call, what it must fail with. */
type Cell = readonly [bad: string, call: (w: World) => unknown, expected: Expected];

const arg = (argument: string, reason: string): Expected => [
  InvalidArgumentError,
  { argument, reason },
];
const access = (reason: string): Expected => [AccessError, { reason }];
const WGSL: Expected = [InvalidArgumentError, { reason: 'wgsl' }];

const compile = (options: unknown) => (w: World) => w.gpu.kernel(options as KernelOptions);
const compileThenRun = (options: KernelOptions) => async (w: World) => {
  const kernel = w.gpu.kernel(options);
  const ready = await failure(() => kernel.ready);
  expect(ready).toMatchObject({ reason: 'wgsl' });
  return kernel.run({ workgroups: 1 });
};
const run = (change: (w: World) => unknown) => (w: World) =>
  w.kernel.run({ ...w.good, ...(change(w) as object) });
const params = (change: Record<string, unknown>) =>
  run((w) => ({ params: { ...w.good.params, ...change } }));
const uses = (make: (w: World) => unknown) => run((w) => ({ uses: make(w) }));
const use = (va: (w: World) => number, len: unknown, access: unknown = 'read') =>
  uses((w) => [{ va: va(w), len, access }]);
const withGood = (make: (w: World) => unknown) =>
  uses((w) => [{ va: w.a, len: 4, access: 'write' }, make(w)]);
const faultModeStore = (va: (w: World) => number) => (w: World) =>
  w.kernel.run({ workgroups: 1, params: { ...w.good.params, va: va(w) } });
const size = (workgroupSize: number) => compile({ code: 'x', workgroupSize });

const KERNEL_CELLS: readonly Cell[] = [
  ['options undefined', compile(undefined), arg('options', 'bad-value')],
  ['code empty', compile({ code: '' }), arg('code', 'bad-value')],
  ['code not a string', compile({ code: 42 }), arg('code', 'bad-value')],
  ['code missing', compile({}), arg('code', 'bad-value')],
  [
    'code that does not compile',
    compileThenRun({ code: '@compute @workgroup_size(1)\nfn main() {\n  let x: u32 = ;\n}' }),
    arg('code', 'wgsl'),
  ],
  [
    'entryPoint naming no function',
    compileThenRun({ code: '@compute @workgroup_size(1) fn main() {}', entryPoint: 'nope' }),
    WGSL,
  ],
  [
    'entryPoint not an identifier',
    compile({ code: 'x', entryPoint: '2go' }),
    arg('entryPoint', 'bad-value'),
  ],
  [
    'entryPoint not a string',
    compile({ code: 'x', entryPoint: 5 }),
    arg('entryPoint', 'bad-value'),
  ],
  ['workgroupSize 0', size(0), arg('workgroupSize', 'zero')],
  ['workgroupSize 1.5', size(1.5), arg('workgroupSize', 'not-integer')],
  ['workgroupSize NaN', size(Number.NaN), arg('workgroupSize', 'not-integer')],
  ['workgroupSize -1', size(-1), arg('workgroupSize', 'negative')],
  ['workgroupSize 2^32', size(2 ** 32), arg('workgroupSize', 'too-large')],
  [
    'workgroupSize beyond the device',
    compileThenRun({
      code: '@compute @workgroup_size(HMM_WORKGROUP_SIZE) fn main() {}',
      workgroupSize: 100_000,
    }),
    WGSL,
  ],
  [
    'params name not an identifier',
    compile({ code: 'x', params: { '1x': 'u32' } }),
    arg('params', 'bad-value'),
  ],
  ['params type f64', compile({ code: 'x', params: { x: 'f64' } }), arg('params', 'bad-value')],
  ['params not an object', compile({ code: 'x', params: 5 }), arg('params', 'bad-value')],
  ['ranges not an object', compile({ code: 'x', ranges: 5 }), arg('ranges', 'bad-value')],
  [
    'ranges name not an identifier',
    compile({ code: 'x', ranges: { '1x': 'read' } }),
    arg('ranges', 'bad-value'),
  ],
  [
    'ranges name starting hmm_',
    compile({ code: 'x', ranges: { hmm_x: 'read' } }),
    arg('ranges', 'bad-value'),
  ],
  ['ranges name hmm', compile({ code: 'x', ranges: { hmm: 'read' } }), arg('ranges', 'bad-value')],
  ["ranges access 'rw'", compile({ code: 'x', ranges: { x: 'rw' } }), arg('ranges', 'bad-value')],
  [
    'ranges more than 64',
    compile({
      code: 'x',
      ranges: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`r${i}`, 'read'])),
    }),
    arg('ranges', 'bad-value'),
  ],
];

/** A run of the named kernel with `uses` made from a (its first rw page) and b (the word after). */
const named = (make: (a: number) => unknown) => (w: World) =>
  w.named.run({ workgroups: 1, uses: make(w.a) as NonNullable<RunOptions['uses']> });

const RUN_CELLS: readonly Cell[] = [
  ['options undefined', (w) => w.kernel.run(undefined as never), arg('options', 'bad-value')],
  ['workgroups NaN', run(() => ({ workgroups: Number.NaN })), arg('workgroups.x', 'not-integer')],
  ['workgroups 0', run(() => ({ workgroups: 0 })), arg('workgroups.x', 'zero')],
  ['workgroups 65536', run(() => ({ workgroups: 65536 })), arg('workgroups.x', 'too-large')],
  ['workgroups 1.5', run(() => ({ workgroups: 1.5 })), arg('workgroups.x', 'not-integer')],
  ['workgroups [1, -1]', run(() => ({ workgroups: [1, -1] })), arg('workgroups.y', 'negative')],
  [
    'workgroups [1, 1, 65536]',
    run(() => ({ workgroups: [1, 1, 65536] })),
    arg('workgroups.z', 'too-large'),
  ],
  ['workgroups missing', run(() => ({ workgroups: undefined })), arg('workgroups', 'bad-value')],
  ['workgroups a string', run(() => ({ workgroups: '4' })), arg('workgroups', 'bad-value')],
  [
    'param missing',
    run((w) => ({ params: { va: w.a, d: 2, a: 3 } })),
    arg('params.n', 'bad-value'),
  ],
  ['param unknown', params({ m: 1 }), arg('params.m', 'bad-value')],
  ['u32 param 1.5', params({ n: 1.5 }), arg('params.n', 'not-integer')],
  ['u32 param -1', params({ n: -1 }), arg('params.n', 'negative')],
  ['u32 param NaN', params({ n: Number.NaN }), arg('params.n', 'not-integer')],
  ["u32 param '1'", params({ n: '1' }), arg('params.n', 'not-integer')],
  ['u32 param 2^32', params({ n: 2 ** 32 }), arg('params.n', 'too-large')],
  ['i32 param 0.5', params({ d: 0.5 }), arg('params.d', 'not-integer')],
  ['i32 param 2^31', params({ d: 2 ** 31 }), arg('params.d', 'too-large')],
  ['i32 param -2^31 - 1', params({ d: -(2 ** 31) - 1 }), arg('params.d', 'too-large')],
  ['f32 param NaN', params({ a: Number.NaN }), arg('params.a', 'bad-value')],
  ["f32 param '1'", params({ a: '1' }), arg('params.a', 'bad-value')],
  ['params not an object', run(() => ({ params: 5 })), arg('params', 'bad-value')],
  ['uses not an array', uses(() => 5), arg('uses', 'bad-value')],
  ['a use not an object', uses(() => [null]), arg('uses[0]', 'bad-value')],
  ['use va -4', use(() => -4, 4), arg('uses[0].va', 'negative')],
  ['use va NaN', use(() => Number.NaN, 4), arg('uses[0].va', 'not-integer')],
  ['use va 1.5', use(() => 1.5, 4), arg('uses[0].va', 'not-integer')],
  ['use len 0', use((w) => w.a, 0), arg('uses[0].len', 'zero')],
  ['use len 1.5', use((w) => w.a, 1.5), arg('uses[0].len', 'not-integer')],
  ['use len -1', use((w) => w.a, -1), arg('uses[0].len', 'negative')],
  ["use access 'rw'", use((w) => w.a, 4, 'rw'), arg('uses[0].access', 'bad-value')],
  ['use access missing', uses((w) => [{ va: w.a, len: 4 }]), arg('uses[0].access', 'bad-value')],
  ['use past the end', use(() => SIZE - 4, 8), access('out-of-range')],
  [
    'use of a freed range',
    withGood((w) => ({ va: w.freed, len: 4, access: 'read' })),
    access('freed'),
  ],
  [
    'use of an unmapped range',
    withGood((w) => ({ va: w.unmapped, len: 4, access: 'read' })),
    access('unmapped'),
  ],
  ["write use of an 'r' page", use((w) => w.ro, 4, 'write'), access('protection')],
  ["read use of a 'none' page", use((w) => w.none, 4), access('protection')],
  ['fault mode: a store to a freed page', faultModeStore((w) => w.freed), access('freed')],
  [
    'fault mode: a store to an unmapped page',
    faultModeStore((w) => w.unmapped),
    access('unmapped'),
  ],
  ["fault mode: a store to an 'r' page", faultModeStore((w) => w.ro), access('protection')],
  [
    'named: a range left unbound',
    named((va) => [{ name: 'a', va, len: 4 }]),
    arg('uses', 'bad-value'),
  ],
  ['named: no uses', (w) => w.named.run({ workgroups: 1 }), arg('uses', 'bad-value')],
  [
    'named: an undeclared name',
    named((va) => [
      { name: 'a', va, len: 4 },
      { name: 'b', va: va + 4, len: 4 },
      { name: 'c', va, len: 4 },
    ]),
    arg('uses[2].name', 'bad-value'),
  ],
  [
    'named: a name bound twice',
    named((va) => [
      { name: 'a', va, len: 4 },
      { name: 'a', va, len: 4 },
    ]),
    arg('uses[1].name', 'bad-value'),
  ],
  [
    'named: va 2',
    named((va) => [
      { name: 'a', va: va + 2, len: 4 },
      { name: 'b', va, len: 4 },
    ]),
    arg('uses[0].va', 'misaligned'),
  ],
  [
    'named: len 6',
    named((va) => [
      { name: 'a', va, len: 6 },
      { name: 'b', va, len: 4 },
    ]),
    arg('uses[0].len', 'misaligned'),
  ],
  [
    'named: len 0',
    named((va) => [
      { name: 'a', va, len: 0 },
      { name: 'b', va, len: 4 },
    ]),
    arg('uses[0].len', 'zero'),
  ],
  [
    'named: an access given',
    named((va) => [
      { name: 'a', va, len: 4, access: 'read' },
      { name: 'b', va, len: 4 },
    ]),
    arg('uses[0].access', 'bad-value'),
  ],
  [
    'named: past the end of the space',
    named((va) => [
      { name: 'a', va: SIZE - 4, len: 8 },
      { name: 'b', va, len: 4 },
    ]),
    access('out-of-range'),
  ],
  [
    'run after kernel.destroy()',
    (w) => {
      w.kernel.destroy();
      return w.kernel.run(w.good);
    },
    arg('kernel', 'destroyed'),
  ],
];

function check(cells: readonly Cell[]): void {
  for (const [bad, call, [error, fields]] of cells) {
    it(`${bad}: ${error.name} ${JSON.stringify(fields)}, the space unchanged`, async () => {
      const w = await world();
      const before = await state(w);
      const caught = await failure(() => call(w));
      expect(caught).toBeInstanceOf(error);
      expect(caught).toMatchObject(fields);
      expect(await state(w)).toEqual(before);
    });
  }
}

describe('gpu.kernel() with bad input', () => {
  check(KERNEL_CELLS);

  it('after detach: DeviceLostError detached, the space unchanged', async () => {
    const w = await world();
    await w.gpu.detach();
    const before = await state(w, true);
    const error = await failure(() => w.gpu.kernel({ code: STORE }));
    expect(error).toBeInstanceOf(DeviceLostError);
    expect(error).toMatchObject({ reason: 'detached' });
    expect(await state(w, true)).toEqual(before);
  });
});

describe('kernel.run() with bad input', () => {
  check(RUN_CELLS);

  it('after detach: DeviceLostError detached, the space unchanged', async () => {
    const w = await world();
    await w.gpu.detach();
    const before = await state(w, true);
    const faultMode: RunOptions = { workgroups: 1, params: { va: w.a, n: 1, d: 2, a: 3 } };
    for (const options of [w.good, faultMode]) {
      const error = await failure(() => w.kernel.run(options));
      expect(error).toBeInstanceOf(DeviceLostError);
      expect(error).toMatchObject({ reason: 'detached' });
    }
    expect(await state(w, true)).toEqual(before);
  });
});
