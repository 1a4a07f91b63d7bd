// Memory advice on real WebGPU (gpu.advise): read-mostly pages stay shared
// and are written through, so CPU reads never fault; pages preferred on the
// CPU are written back at the end of runs and evicted first; pages preferred
// on the GPU stay GPU-owned when CPU reads copy them back, are evicted last
// and are left by prefetch to 'cpu'; advice in snapshots, across protect,
// partial free, free and detach; bad input.
import { afterEach, describe, expect, it } from 'vitest';
import { AccessError, DeviceLostError, InvalidArgumentError } from '../../src/errors.ts';
import type { GpuMirror } from '../../src/mirror/gpu-mirror.ts';
import type { TraceEvent } from '../../src/gpu/mirror-stats.ts';
import type { AddressSpace } from '../../src/space/address-space.ts';
import { testMirror } from '../support/mirror.ts';
import { singleCallThread } from '../support/single-call-thread.ts';

const PAGE = 4096;
const WORDS = PAGE / 4;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function setup(budgetPages = 64) {
  return testMirror({ size: 4 << 20, pageSize: PAGE }, { budget: budgetPages * PAGE }, cleanups);
}

/** Adds k to each of `words` u32 from `va`. */
const ADD = /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x >= hmm_params.words) { return; }
  let va = hmm_params.va + id.x * 4u;
  hmm_store_u32(va, hmm_load_u32(va) + hmm_params.k);
}`;

/** Sums `words` u32 from `va` into the u32 at `out`. */
const SUM = /* wgsl */ `
@compute @workgroup_size(1)
fn main() {
  var sum = 0u;
  for (var i = 0u; i < hmm_params.words; i++) { sum += hmm_load_u32(hmm_params.va + i * 4u); }
  hmm_store_u32(hmm_params.out, sum);
}`;

function kernels(gpu: GpuMirror) {
  const add = gpu.kernel({ code: ADD, params: { va: 'u32', words: 'u32', k: 'u32' } });
  const sum = gpu.kernel({ code: SUM, params: { va: 'u32', words: 'u32', out: 'u32' } });
  return {
    /** Adds k to every word of [va, va + len): with `uses`, or in fault mode. */
    add: (va: number, len: number, k: number, mode: 'uses' | 'fault' = 'uses') =>
      add.run({
        workgroups: Math.ceil(len / 4 / 64),
        params: { va, words: len / 4, k },
        ...(mode === 'uses' ? { uses: [{ va, len, access: 'readwrite' as const }] } : {}),
      }),
    sum: (va: number, len: number, out: number) =>
      sum.run({
        workgroups: 1,
        params: { va, words: len / 4, out },
        uses: [
          { va, len, access: 'read' },
          { va: out, len: 4, access: 'write' },
        ],
      }),
  };
}

async function states(gpu: GpuMirror, va: number, len: number) {
  return (await gpu.snapshot(va, len)).map(({ state, dirty }) => `${state}/${dirty}`);
}

/** `pages` pages, word i of the range holding i. */
function counting(space: AddressSpace, pages: number): number {
  const va = space.alloc(pages * PAGE);
  space.access(va, pages * PAGE, 'write', (lease) => lease.u32.forEach((_, i, a) => (a[i] = i)));
  return va;
}

describe('advice: readMostly', () => {
  it('keeps pages shared across kernel reads and migrations: CPU reads never fault', async () => {
    const { space, gpu } = await setup();
    const worker = await singleCallThread(space, cleanups);
    const len = 8 * PAGE;
    const va = counting(space, 8);
    const out = space.alloc(PAGE);
    gpu.advise(va, len, { readMostly: true });
    await gpu.migrate(va, len, 'gpu');
    expect(new Set(await states(gpu, va, len))).toEqual(new Set(['shared/none']));
    const { sum } = kernels(gpu);
    const expected = ((8 * WORDS - 1) * 8 * WORDS) / 2;
    for (let round = 0; round < 3; round++) {
      await sum(va, len, out);
      expect(new Uint32Array((await gpu.read(out, 4)).buffer)[0]).toBe(expected);
      expect(space.getU32(va + 4 * PAGE)).toBe(4 * WORDS);
      expect(await worker.u32At(va + len - 4)).toBe(8 * WORDS - 1);
    }
    expect(gpu.stats().cpuFaults).toBe(0);
    expect(new Set(await states(gpu, va, len))).toEqual(new Set(['shared/none']));
  });

  it('writes through what runs, fault-mode runs and gpu.write store: the CPU reads them without a fault', async () => {
    const { space, gpu } = await setup();
    const worker = await singleCallThread(space, cleanups);
    const len = 4 * PAGE;
    const va = counting(space, 4);
    gpu.advise(va, len, { readMostly: true });
    const { add } = kernels(gpu);
    await add(va, len, 10);
    expect(new Set(await states(gpu, va, len))).toEqual(new Set(['shared/none']));
    expect(space.getU32(va + 8)).toBe(12);
    expect(await worker.u32At(va + len - 4)).toBe(4 * WORDS - 1 + 10);
    await add(va, len, 5, 'fault');
    expect(new Set(await states(gpu, va, len))).toEqual(new Set(['shared/none']));
    expect(await worker.u32At(va + PAGE)).toBe(WORDS + 15);
    await gpu.write(va + PAGE + 4, new Uint32Array([7]));
    expect(await states(gpu, va, len)).toEqual(Array(4).fill('shared/none'));
    expect(await worker.u32At(va + PAGE + 4)).toBe(7);
    const stats = gpu.stats();
    expect(stats.cpuFaults).toBe(0);
    expect(stats.bytesByCause['write-through']).toBe((4 + 4 + 1) * PAGE);
    // The device copy agrees.
    expect(new Uint32Array((await gpu.read(va + PAGE, 8)).buffer)).toEqual(
      new Uint32Array([WORDS + 15, 7]),
    );
  });
});

describe("advice: preferred 'cpu'", () => {
  it('writes back what a run stored, keeping the frame, and is evicted first', async () => {
    const { space, gpu } = await setup(8);
    const [a, b] = [counting(space, 4), counting(space, 4)];
    gpu.advise(a, 4 * PAGE, { preferred: 'cpu' });
    const { add } = kernels(gpu);
    await add(a, 4 * PAGE, 1);
    await add(b, 4 * PAGE, 1);
    expect(await states(gpu, a, 4 * PAGE)).toEqual(Array(4).fill('shared/none'));
    expect(await states(gpu, b, 4 * PAGE)).toEqual(Array(4).fill('gpu/gpu'));
    expect(gpu.stats().bytesByCause['write-through']).toBe(4 * PAGE);
    // Two more pages on a full budget: the CPU-preferred ones go, before b's clean or dirty ones.
    const c = space.alloc(2 * PAGE);
    await gpu.migrate(c, 2 * PAGE, 'gpu');
    const evicted = (await states(gpu, a, 4 * PAGE)).filter((s) => s === 'cpu/none').length;
    expect(evicted).toBe(2);
    expect(await states(gpu, b, 4 * PAGE)).toEqual(Array(4).fill('gpu/gpu'));
    expect(space.getU32(a + 4)).toBe(2);
  });
});

describe("advice: preferred 'gpu'", () => {
  it('serves CPU reads by copies and keeps the page GPU-owned, so the next kernel moves nothing', async () => {
    const { space, gpu } = await setup();
    const worker = await singleCallThread(space, cleanups);
    const len = 2 * PAGE;
    const va = counting(space, 2);
    gpu.advise(va, len, { preferred: 'gpu' });
    const { add } = kernels(gpu);
    await add(va, len, 100);
    expect(await states(gpu, va, len)).toEqual(['gpu/gpu', 'gpu/gpu']);
    expect(await worker.u32At(va + 8)).toBe(102);
    expect(gpu.stats().cpuFaults).toBe(1);
    // Read back, yet still the GPU's: clean, no ownership change.
    expect(await states(gpu, va, len)).toEqual(['gpu/none', 'gpu/none']);
    expect(await worker.u32At(va + 12)).toBe(103);
    expect(space.getU32(va + 16)).toBe(104); // the main thread reads a clean page in place
    expect(gpu.stats().cpuFaults).toBe(1);
    const before = gpu.stats().bytesToGpu;
    const run = await add(va, len, 1);
    expect(run.bytesToGpu).toBe(0);
    expect(gpu.stats().bytesToGpu).toBe(before);
    expect(await worker.u32At(va + 8)).toBe(103);
    // A CPU write takes the page as always.
    space.setU32(va + 8, 5);
    expect((await states(gpu, va, len))[0]).toBe('cpu/cpu');
  });

  it('is evicted last, and evicting it counts and traces an ignored hint', async () => {
    const { space, gpu } = await setup(8);
    const events: TraceEvent[] = [];
    gpu.trace((event) => events.push(event));
    const [p, q] = [counting(space, 4), counting(space, 4)];
    gpu.advise(p, 4 * PAGE, { preferred: 'gpu' });
    const { add } = kernels(gpu);
    await add(p, 4 * PAGE, 1); // p's pages are the least recently used
    await add(q, 4 * PAGE, 1);
    const c = space.alloc(4 * PAGE);
    await gpu.migrate(c, 4 * PAGE, 'gpu');
    expect(await states(gpu, p, 4 * PAGE)).toEqual(Array(4).fill('gpu/gpu'));
    expect(await states(gpu, q, 4 * PAGE)).toEqual(Array(4).fill('cpu/none'));
    expect(gpu.stats().ignoredHints).toBe(0);
    // c's clean pages go next; then two of p's, against its advice.
    const d = space.alloc(6 * PAGE);
    await gpu.migrate(d, 6 * PAGE, 'gpu');
    expect(gpu.stats().ignoredHints).toBe(1);
    const hint = events.find((event) => event.kind === 'ignored-hint');
    expect(hint).toMatchObject({ cause: 'eviction', evicted: 2 });
    expect(await space.readAsync(p, 4)).toEqual(new Uint8Array([1, 0, 0, 0]));
    expect(await space.readAsync(p + 4 * PAGE - 4, 4)).toEqual(
      new Uint8Array(new Uint32Array([4 * WORDS]).buffer),
    );
  });

  it("is left on the GPU by prefetch(..., 'cpu'), which reports the bytes as ignored", async () => {
    const { space, gpu } = await setup();
    const [p, q] = [space.alloc(2 * PAGE), space.alloc(2 * PAGE)];
    expect(q).toBe(p + 2 * PAGE);
    await gpu.write(p, new Uint32Array(2 * WORDS).fill(3));
    await gpu.write(q, new Uint32Array(2 * WORDS).fill(4));
    gpu.advise(p, 2 * PAGE, { preferred: 'gpu' });
    const result = await gpu.prefetch(p, 4 * PAGE, 'cpu');
    expect(result).toEqual({ pages: 2, bytes: 2 * PAGE, ignored: 2 * PAGE });
    expect(await states(gpu, p, 4 * PAGE)).toEqual([
      'gpu/gpu',
      'gpu/gpu',
      'shared/none',
      'shared/none',
    ]);
    expect(gpu.stats().ignoredHints).toBe(1);
    expect(await space.readAsync(p, 4)).toEqual(new Uint8Array([3, 0, 0, 0]));
  });
});

describe('advice in snapshots and across the mapping', () => {
  it('shows in snapshot entries, survives protect and partial free, and free clears it', async () => {
    const { space, gpu } = await setup();
    const va = space.alloc(4 * PAGE);
    gpu.advise(va, 4 * PAGE, { readMostly: true, preferred: 'gpu' });
    gpu.advise(va + 3 * PAGE, PAGE, { readMostly: false });
    const advice = async () => (await gpu.snapshot(va, 4 * PAGE)).map((entry) => entry.advice);
    const both = { readMostly: true, preferred: 'gpu' };
    expect(await advice()).toEqual([both, both, both, { readMostly: false, preferred: 'gpu' }]);
    space.protect(va, 4 * PAGE, 'r');
    space.free(va + PAGE, PAGE);
    expect(await advice()).toEqual([
      both,
      undefined,
      both,
      { readMostly: false, preferred: 'gpu' },
    ]);
    expect((await gpu.snapshot(va, PAGE))[0]?.prot).toBe('r');
    gpu.advise(va, PAGE, { preferred: 'none', readMostly: false });
    expect((await gpu.snapshot(va, PAGE))[0]).toEqual({ state: 'zero', prot: 'r', dirty: 'none' });
    space.free(va, PAGE);
    space.free(va + 2 * PAGE, 2 * PAGE);
    const again = space.alloc(4 * PAGE);
    expect(again).toBe(va);
    expect(await advice()).toEqual([undefined, undefined, undefined, undefined]);
  });

  it("is the mirror's: detach takes it back", async () => {
    const { space, gpu } = await setup();
    const va = space.alloc(PAGE);
    gpu.advise(va, PAGE, { preferred: 'cpu' });
    expect(space.snapshot(va, PAGE)[0]?.advice).toEqual({ readMostly: false, preferred: 'cpu' });
    await gpu.detach();
    expect(space.snapshot(va, PAGE)[0]?.advice).toBeUndefined();
  });

  it('refuses bad input and changes nothing', async () => {
    const { space, gpu } = await setup();
    const va = space.alloc(2 * PAGE);
    for (const bad of [
      null,
      'readMostly',
      { readMostly: 1 },
      { preferred: 'disk' },
      { readmostly: true },
    ]) {
      expect(() => gpu.advise(va, PAGE, bad as never)).toThrow(InvalidArgumentError);
    }
    // The range runs past the allocation: nothing is advised.
    expect(() => gpu.advise(va, 3 * PAGE, { readMostly: true })).toThrow(AccessError);
    expect((await gpu.snapshot(va, 2 * PAGE)).map((entry) => entry.advice)).toEqual([
      undefined,
      undefined,
    ]);
    expect(() => gpu.advise(va, 0, { readMostly: true })).toThrow(InvalidArgumentError);
    await gpu.detach();
    expect(() => gpu.advise(va, PAGE, { readMostly: true })).toThrow(DeviceLostError);
  });
});
