// Kernel runs that must end, fit the budget, keep stores where the run may write,
// and refuse bad parameters: issue 9's reproductions, on real WebGPU.
import { afterEach, describe, expect, it } from 'vitest';
import { AccessError, InvalidArgumentError, OutOfMemoryError } from '../../src/errors.ts';
import type { GpuMirror, GpuMirrorOptions } from '../../src/mirror/gpu-mirror.ts';
import type { AddressSpace, AddressSpaceOptions } from '../../src/space/address-space.ts';
import { endsWithin } from '../support/deadline.ts';
import { testMirror } from '../support/mirror.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function setup(
  space: AddressSpaceOptions,
  mirror: Omit<GpuMirrorOptions, 'device'> = {},
): Promise<{ space: AddressSpace; gpu: GpuMirror }> {
  return testMirror(space, { copy: 'buffer', ...mirror }, cleanups);
}

/** `promise`, or a rejection naming `what` if it has not settled within `ms`. */
const ends = <T>(promise: Promise<T>, what: string, ms = 15_000): Promise<T> =>
  endsWithin(promise, ms, what);

/** The error `promise` rejects with, or a failure if it resolves. */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    (value) => {
      throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
    },
    (error: unknown) => error,
  );
}

const u32At = async (space: AddressSpace, va: number): Promise<number> =>
  new Uint32Array((await space.readAsync(va, 4)).buffer)[0] ?? -1;

const gpuU32At = async (gpu: GpuMirror, va: number): Promise<number> =>
  new Uint32Array((await gpu.read(va, 4)).buffer.slice(0))[0] ?? -1;

const STORE_ONE = /* wgsl */ `
@compute @workgroup_size(1)
fn main() { hmm_store_u32(hmm_params.va, hmm_params.value); }`;

describe('a fault-mode run whose device view went stale without a notice', () => {
  it('ends and lands its store after migrate(gpu) and a plain CPU read made the page shared', async () => {
    const { space, gpu } = await setup({ size: 4 * MiB, pageSize: 4 * KiB });
    const va = space.alloc(4 * KiB);
    space.write(va, new Uint32Array([1]));
    await gpu.migrate(va, 4 * KiB, 'gpu');
    // A clean GPU-owned page comes back at once: `gpu` -> `shared`, no transfer, no notice.
    expect(space.getU32(va)).toBe(1);
    expect(space.snapshot(va, 4 * KiB)[0]).toMatchObject({ state: 'shared' });
    const store = gpu.kernel({ code: STORE_ONE, params: { va: 'u32', value: 'u32' } });
    const result = await ends(
      store.run({ workgroups: 1, params: { va, value: 99 } }),
      'the fault-mode run',
    );
    expect(result.replays).toBeGreaterThanOrEqual(1);
    expect(await u32At(space, va)).toBe(99);
  });

  it('ends after a worker-free sequence of CPU reads of every page a fault-mode kernel writes', async () => {
    const { space, gpu } = await setup({ size: 4 * MiB, pageSize: 4 * KiB });
    const pages = 8;
    const va = space.alloc(pages * 4 * KiB);
    const store = gpu.kernel({
      code: /* wgsl */ `
@compute @workgroup_size(8)
fn main(@builtin(local_invocation_index) i: u32) {
  hmm_store_u32(hmm_params.va + i * ${4 * KiB}u, hmm_params.value + i);
}`,
      params: { va: 'u32', value: 'u32' },
    });
    for (let round = 0; round < 3; round++) {
      await gpu.migrate(va, pages * 4 * KiB, 'gpu');
      await gpu.migrate(va, pages * 4 * KiB, 'cpu');
      await gpu.migrate(va, pages * 4 * KiB, 'gpu');
      for (let page = 0; page < pages; page++) space.getU32(va + page * 4 * KiB);
      await ends(
        store.run({ workgroups: 1, params: { va, value: round * 100 } }),
        `round ${round}`,
      );
      for (let page = 0; page < pages; page++) {
        expect(await u32At(space, va + page * 4 * KiB)).toBe(round * 100 + page);
      }
    }
  });
});

describe('fault-mode runs fetch by density, within the budget, around what others hold', () => {
  it('stores one word with a budget of 4 pages into a 64-page allocation, fetching few pages', async () => {
    const page = 64 * KiB;
    const { space, gpu } = await setup({ size: 8 * MiB, pageSize: page }, { budget: 4 * page });
    const va = space.alloc(64 * page);
    const store = gpu.kernel({ code: STORE_ONE, params: { va: 'u32', value: 'u32' } });
    const target = va + 10 * page + 8;
    const result = await store.run({ workgroups: 1, params: { va: target, value: 7 } });
    expect(result.gpuFaults).toBeLessThanOrEqual(4);
    expect(gpu.stats().framesInUse).toBeLessThanOrEqual(4);
    expect(await u32At(space, target)).toBe(7);
  });

  it('neither waits for nor holds a neighbouring page a CPU lease holds', async () => {
    const page = 4 * KiB;
    const { space, gpu } = await setup({ size: 4 * MiB, pageSize: page, faultTimeoutMs: 60_000 });
    const va = space.alloc(16 * page);
    // An aligned group of 4 pages inside the allocation: 2 resident, 1 faulting, 1 leased.
    const base = Math.ceil(va / (4 * page)) * 4 * page;
    await gpu.migrate(base, 2 * page, 'gpu');
    const lease = await space.acquire(base + 3 * page, page, 'write');
    const leased = space.snapshot(base + 3 * page, page);
    try {
      const store = gpu.kernel({ code: STORE_ONE, params: { va: 'u32', value: 'u32' } });
      await ends(
        store.run({ workgroups: 1, params: { va: base + 2 * page, value: 5 } }),
        'the run beside a leased page',
      );
      lease.u32[0] = 11; // the lease's holder still has its page, untouched by the run
      expect(space.snapshot(base + 3 * page, page)).toEqual(leased);
      expect(gpu.stats().framesInUse).toBe(3);
    } finally {
      lease.release();
    }
    expect(await u32At(space, base + 2 * page)).toBe(5);
    expect(await u32At(space, base + 3 * page)).toBe(11);
  });

  it('prefetches the rest of an aligned block more than half of which is resident', async () => {
    const page = 4 * KiB;
    const { space, gpu } = await setup({ size: 4 * MiB, pageSize: page });
    const va = space.alloc(32 * page);
    const base = Math.ceil(va / (8 * page)) * 8 * page;
    await gpu.migrate(base, 4 * page, 'gpu');
    const load = gpu.kernel({
      code: /* wgsl */ `
@compute @workgroup_size(1)
fn main() { hmm_store_u32(hmm_params.out, hmm_load_u32(hmm_params.va)); }`,
      params: { va: 'u32', out: 'u32' },
    });
    // 4 resident + 1 faulting of 8: more than half, so the whole aligned 8 come.
    await load.run({ workgroups: 1, params: { va: base + 4 * page, out: base } });
    const states = space.snapshot(base, 8 * page).map((entry) => entry.state);
    expect(states.every((state) => state === 'shared' || state === 'gpu')).toBe(true);
  });

  it('fails with OutOfMemoryError budget naming both numbers when its faulting pages alone exceed it', async () => {
    const page = 64 * KiB;
    const { space, gpu } = await setup({ size: 8 * MiB, pageSize: page }, { budget: 2 * page });
    const va = space.alloc(16 * page);
    const store = gpu.kernel({
      code: /* wgsl */ `
@compute @workgroup_size(3)
fn main(@builtin(local_invocation_index) i: u32) {
  hmm_store_u32(hmm_params.va + i * ${4 * page}u, 1u);
}`,
      params: { va: 'u32' },
    });
    const error = await rejection(store.run({ workgroups: 1, params: { va } }));
    expect(error).toBeInstanceOf(OutOfMemoryError);
    expect(error).toMatchObject({ reason: 'budget', requested: 3 * page, available: 2 * page });
    expect(gpu.stats().framesInUse).toBe(0);
    expect(space.snapshot(va, 16 * page).every((entry) => entry.state === 'zero')).toBe(true);
  });
});

describe('stores land only in pages the run may write', () => {
  const STORE_THROUGH_READ = /* wgsl */ `
@compute @workgroup_size(1)
fn main() { hmm_frame_store(hmm_translate(hmm_params.va, false), 99u); }`;

  it('fails a store through a read translation of a read-declared page, in both modes, leaving both copies', async () => {
    const { space, gpu } = await setup({ size: 4 * MiB, pageSize: 4 * KiB });
    const va = space.alloc(4 * KiB);
    space.write(va, new Uint32Array([1]));
    const store = gpu.kernel({ code: STORE_THROUGH_READ, params: { va: 'u32' } });
    const uses = [{ va, len: 4 * KiB, access: 'read' as const }];
    const declared = await rejection(store.run({ workgroups: 1, params: { va }, uses }));
    expect(declared).toBeInstanceOf(AccessError);
    expect(declared).toMatchObject({ reason: 'undeclared', address: va });
    expect(await gpuU32At(gpu, va)).toBe(1);
    expect(await u32At(space, va)).toBe(1);
    expect(space.snapshot(va, 4 * KiB)[0]).toMatchObject({ state: 'shared', dirty: 'none' });
    const faulting = await rejection(store.run({ workgroups: 1, params: { va } }));
    expect(faulting).toBeInstanceOf(AccessError);
    expect(faulting).toMatchObject({ reason: 'undeclared', address: va });
    expect(await gpuU32At(gpu, va)).toBe(1);
    expect(await u32At(space, va)).toBe(1);
  });

  it('suppresses and fails index arithmetic from a write translation into any frame the run may not write', async () => {
    const page = 4 * KiB;
    const { space, gpu } = await setup({ size: 4 * MiB, pageSize: page });
    const [a, b, c] = [space.alloc(page), space.alloc(page), space.alloc(page)];
    for (const va of [a, b, c]) space.write(va, new Uint32Array([1]));
    await gpu.migrate(c, page, 'gpu'); // a frame no declared page has
    const jump = gpu.kernel({
      code: /* wgsl */ `
@compute @workgroup_size(1)
fn main() {
  let w = hmm_translate(hmm_params.a, true);
  hmm_frame_store(u32(i32(w) + hmm_params.delta * i32(HMM_PAGE_WORDS)), 99u);
}`,
      params: { a: 'u32', delta: 'i32' },
    });
    const uses = [
      { va: a, len: page, access: 'write' as const },
      { va: b, len: page, access: 'read' as const },
    ];
    for (const delta of [-2, -1, 1, 2, 5]) {
      const error = await rejection(jump.run({ workgroups: 1, params: { a, delta }, uses }));
      expect(error, `delta ${delta}`).toBeInstanceOf(AccessError);
      expect(error, `delta ${delta}`).toMatchObject({ reason: 'undeclared' });
      for (const va of [b, c]) {
        expect(await gpuU32At(gpu, va), `delta ${delta}`).toBe(1);
        expect(await u32At(space, va), `delta ${delta}`).toBe(1);
      }
    }
  });

  it('refuses index arithmetic past the translated page even into a writable page, naming the address', async () => {
    const page = 4 * KiB;
    const { space, gpu } = await setup({ size: 4 * MiB, pageSize: page });
    const va = space.alloc(2 * page);
    const store = gpu.kernel({
      code: /* wgsl */ `
@compute @workgroup_size(1)
fn main() {
  let w = hmm_translate(hmm_params.va, true);
  hmm_frame_store(w, 1u);
  hmm_frame_store(w + HMM_PAGE_WORDS, 42u);
}`,
      params: { va: 'u32' },
    });
    // Fresh frames come in page order: the second page's frame follows the first's.
    const error = await rejection(
      store.run({ workgroups: 1, params: { va }, uses: [{ va, len: 2 * page, access: 'write' }] }),
    );
    expect(error).toBeInstanceOf(AccessError);
    expect(error).toMatchObject({ reason: 'undeclared', address: va + page, touched: [va] });
    expect(space.snapshot(va, 2 * page).map((entry) => entry.dirty)).toEqual(['gpu', 'none']);
    expect(await gpuU32At(gpu, va + page)).toBe(0);
    expect(await u32At(space, va + page)).toBe(0);
    expect(await u32At(space, va)).toBe(1);
  });

  it('stores through several write translations interleaved, each page marked dirty', async () => {
    const page = 4 * KiB;
    const { space, gpu } = await setup({ size: 4 * MiB, pageSize: page });
    const va = space.alloc(4 * page);
    const store = gpu.kernel({
      code: /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) i: u32) {
  var w: array<u32, 4>;
  for (var p = 0u; p < 4u; p++) { w[p] = hmm_translate(hmm_params.va + p * ${page}u, true); }
  for (var k = i; k < HMM_PAGE_WORDS; k += 64u) {
    for (var p = 0u; p < 4u; p++) { hmm_frame_store(w[p] + k, p * 100000u + k); }
  }
}`,
      params: { va: 'u32' },
    });
    const result = await store.run({
      workgroups: 1,
      params: { va },
      uses: [{ va, len: 4 * page, access: 'write' }],
    });
    expect(result.pagesWritten).toBe(4);
    const words = new Uint32Array((await space.readAsync(va, 4 * page)).buffer);
    const wrong = words.findIndex(
      (value, i) => value !== Math.floor(i / 1024) * 100000 + (i % 1024),
    );
    expect(wrong).toBe(-1);
  });
});

describe('kernel parameters are checked, never coerced', () => {
  it('fails run() naming a missing, unknown or mistyped parameter, holding and moving nothing', async () => {
    const { space, gpu } = await setup({ size: 4 * MiB, pageSize: 4 * KiB });
    const va = space.alloc(4 * KiB);
    space.write(va, new Uint32Array([3]));
    const kernel = gpu.kernel({
      code: /* wgsl */ `
@compute @workgroup_size(1)
fn main() { hmm_store_u32(hmm_params.va, hmm_params.n + u32(hmm_params.d) + u32(hmm_params.a)); }`,
      params: { va: 'u32', n: 'u32', d: 'i32', a: 'f32' },
    });
    const uses = [{ va, len: 4, access: 'readwrite' as const }];
    const good = { va, n: 1, d: 2, a: 3 };
    const cases: [Record<string, unknown>, string, string][] = [
      [{ ...good, n: 1.5 }, 'params.n', 'not-integer'],
      [{ ...good, n: -1 }, 'params.n', 'negative'],
      [{ ...good, n: Number.NaN }, 'params.n', 'not-integer'],
      [{ ...good, n: 2 ** 32 }, 'params.n', 'too-large'],
      [{ ...good, n: '1' }, 'params.n', 'not-integer'],
      [{ ...good, d: 2 ** 31 }, 'params.d', 'too-large'],
      [{ ...good, d: -(2 ** 31) - 1 }, 'params.d', 'too-large'],
      [{ ...good, d: 0.5 }, 'params.d', 'not-integer'],
      [{ ...good, a: Number.NaN }, 'params.a', 'bad-value'],
      [{ va, d: 2, a: 3 }, 'params.n', 'bad-value'],
      [{ ...good, m: 1 }, 'params.m', 'bad-value'],
    ];
    const before = space.snapshot(va, 4 * KiB);
    for (const [params, argument, reason] of cases) {
      const run = kernel.run({
        workgroups: 1,
        params: params as Record<string, number>,
        uses,
      });
      const error = await rejection(run);
      expect(error, argument).toBeInstanceOf(InvalidArgumentError);
      expect(error, JSON.stringify(params)).toMatchObject({ argument, reason });
    }
    expect(space.snapshot(va, 4 * KiB)).toEqual(before);
    // Nothing is held: this thread may not wait, so a held page would throw.
    space.write(va, new Uint32Array([4]));
    await kernel.run({ workgroups: 1, params: { ...good, a: Number.POSITIVE_INFINITY }, uses });
    await kernel.run({ workgroups: 1, params: good, uses });
    expect(await u32At(space, va)).toBe(6);
  });
});

describe('hmm_translate for writing', () => {
  it('marks dirty only the translated pages a store landed in, also those that left the last four', async () => {
    const { space, gpu } = await setup({ size: 4 * MiB, pageSize: 4 * KiB });
    const base = space.alloc(6 * 4 * KiB);
    const kernel = gpu.kernel({
      code: /* wgsl */ `
@compute @workgroup_size(1)
fn main() {
  for (var p = 0u; p < 6u; p++) {
    let w = hmm_translate(hmm_params.base + p * ${4 * KiB}u, true);
    if (p == 1u || p == 2u || p == 5u) { hmm_frame_store(w + 3u, p + 100u); }
  }
}`,
      params: { base: 'u32' },
    });
    // Page 1 leaves the last four write translations (at page 5) after its store; 0, 3 and 4 see none.
    const result = await kernel.run({
      workgroups: 1,
      params: { base },
      uses: [{ va: base, len: 6 * 4 * KiB, access: 'readwrite' }],
    });
    expect(result.pagesWritten).toBe(3);
    for (const page of [1, 2, 5])
      expect(await u32At(space, base + page * 4 * KiB + 12)).toBe(page + 100);
    expect(await u32At(space, base + 12)).toBe(0);
  });
});
