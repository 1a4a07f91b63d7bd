// Kernels over the shared address space on real WebGPU: the prelude, uses,
// fault mode with replay, atomics shared with the CPU, protection, compile errors.
import { releaseProxy, wrap, type Remote } from 'comlink';
import { afterEach, describe, expect, it } from 'vitest';
import { LIST_WALK, SAXPY_PER_ELEMENT } from '../../src/bench/workloads.ts';
import { AccessError, InvalidArgumentError } from '../../src/errors.ts';
import type { GpuMirror } from '../../src/mirror/gpu-mirror.ts';
import type { AddressSpace } from '../../src/space/address-space.ts';
import { testMirror } from '../support/mirror.ts';
import { testRandom } from '../support/random.ts';
import type { CpuThreadApi } from './cpu-thread.worker.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function setup(
  size: number,
  pageSize = 64 * KiB,
): Promise<{ space: AddressSpace; gpu: GpuMirror }> {
  return testMirror({ size, pageSize }, { copy: 'buffer' }, cleanups);
}

async function worker(space: AddressSpace): Promise<Remote<CpuThreadApi>> {
  const thread = new Worker(new URL('./cpu-thread.worker.ts', import.meta.url), { type: 'module' });
  const api = wrap<CpuThreadApi>(thread);
  cleanups.push(() => {
    api[releaseProxy]();
    thread.terminate();
  });
  await api.attach(space.handle);
  return api;
}

describe('kernels over the shared address space', () => {
  it('computes z = a*x + y over 16 M floats with uses; z ends GPU-dirty, x and y shared', async () => {
    const n = 16 * MiB;
    const { space, gpu } = await setup(200 * MiB);
    const [x, y, z] = [space.alloc(n * 4), space.alloc(n * 4), space.alloc(n * 4)];
    space.access(x, n * 4, 'write', (lease) => lease.f32.forEach((_, i, a) => (a[i] = i % 1000)));
    space.access(y, n * 4, 'write', (lease) => lease.f32.fill(0.5));
    const kernel = gpu.kernel({
      code: SAXPY_PER_ELEMENT,
      params: { n: 'u32', a: 'f32', x: 'u32', y: 'u32', z: 'u32' },
    });
    const result = await kernel.run({
      workgroups: [4096, n / 64 / 4096],
      params: { n, a: 2, x, y, z },
      uses: [
        { va: x, len: n * 4, access: 'read' },
        { va: y, len: n * 4, access: 'read' },
        { va: z, len: n * 4, access: 'write' },
      ],
    });
    expect(result).toMatchObject({
      replays: 0,
      pagesWritten: (n * 4) / (64 * KiB),
      bytesToGpu: 2 * n * 4,
    });
    const states = async (va: number) =>
      new Set((await gpu.snapshot(va, n * 4)).map((page) => `${page.state}/${page.dirty}`));
    expect(await states(z)).toEqual(new Set(['gpu/gpu']));
    expect(await states(x)).toEqual(new Set(['shared/none']));
    expect(await states(y)).toEqual(new Set(['shared/none']));
    const out = new Float32Array((await space.readAsync(z, n * 4)).buffer);
    const wrong = out.findIndex((value, i) => value !== 2 * (i % 1000) + 0.5);
    expect(wrong).toBe(-1);
  });

  it('follows a worker-built linked list of 100 000 nodes over 64 MiB in fault mode, again after a rewrite', async () => {
    const { space, gpu } = await setup(80 * MiB);
    const random = testRandom('linked list');
    const list = space.alloc(64 * MiB);
    const out = space.alloc(8);
    const builder = await worker(space);
    const seed = random.int(2 ** 31);
    const { head, sum } = await builder.buildList(list, 64 * MiB, 100_000, seed);
    const walk = gpu.kernel({
      code: LIST_WALK,
      params: { head: 'u32', out: 'u32' },
    });
    const found = async () => new Uint32Array((await space.readAsync(out, 8)).buffer);
    // Cold: one fault a pass, and density prefetch has little resident to go on.
    const cold = await walk.run({ workgroups: 1, params: { head, out } });
    expect(await found()).toEqual(new Uint32Array([sum, 100_000]));
    expect(cold.replays).toBeGreaterThan(0);
    expect(cold.replays).toBeLessThanOrEqual((64 * MiB) / (64 * KiB));
    expect(cold.bytesToGpu).toBeGreaterThan(0);
    // Rewritten by the CPU: every page keeps its (stale) frame, so each fault
    // brings its whole 2 MiB block.
    await builder.buildList(list, 64 * MiB, 100_000, seed);
    const warm = await walk.run({ workgroups: 1, params: { head, out } });
    expect(await found()).toEqual(new Uint32Array([sum, 100_000]));
    expect(warm.replays).toBeGreaterThan(0);
    expect(warm.replays).toBeLessThanOrEqual(40);
    console.log(`linked list: cold ${JSON.stringify(cold)}, warm ${JSON.stringify(warm)}`);
  });

  it('adds GPU and CPU atomic increments of the same counters up exactly', async () => {
    const { space, gpu } = await setup(16 * MiB, 4 * KiB);
    const random = testRandom('histogram');
    const bins = 1500;
    const n = 1 << 18;
    const data = space.alloc(n * 4);
    const hist = space.alloc(bins * 4);
    const values = Uint32Array.from({ length: n }, () => random.int(bins));
    space.write(data, values);
    const histogram = gpu.kernel({
      code: /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x >= hmm_params.n) { return; }
  let bin = hmm_load_u32(hmm_params.data + id.x * 4u);
  hmm_atomic_add_u32(hmm_params.hist + bin * 4u, 1u);
}`,
      params: { n: 'u32', data: 'u32', hist: 'u32' },
    });
    const uses = [
      { va: data, len: n * 4, access: 'read' as const },
      { va: hist, len: bins * 4, access: 'readwrite' as const },
    ];
    const expected = new Uint32Array(bins);
    for (const value of values) expected[value]!++;
    await histogram.run({ workgroups: n / 64, params: { n, data, hist }, uses });
    expect(new Uint32Array((await space.readAsync(hist, bins * 4)).buffer)).toEqual(expected);
    // A worker adds 3 to every counter: its atomics fault the GPU-owned pages back.
    await histogram.run({ workgroups: n / 64, params: { n, data, hist }, uses });
    await (await worker(space)).addToCounters(hist, bins, 3);
    await histogram.run({ workgroups: n / 64, params: { n, data, hist } }); // fault mode
    const total = expected.map((count) => 3 * count + 3);
    expect(new Uint32Array((await space.readAsync(hist, bins * 4)).buffer)).toEqual(total);
  });

  it('adds f32 atomically (a compare-exchange loop), exact for integer sums below 2^24, in both modes', async () => {
    const { space, gpu } = await setup(4 * MiB, 4 * KiB);
    const bins = 16;
    const n = 1 << 14;
    const sums = space.alloc(bins * 4);
    const old = space.alloc(n * 4);
    for (let bin = 0; bin < bins; bin++) space.setF32(sums + bin * 4, 0.5 * bin);
    const add = gpu.kernel({
      code: /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x >= hmm_params.n) { return; }
  let before = hmm_atomic_add_f32(hmm_params.sums + (id.x % 16u) * 4u, 1.0);
  hmm_store_f32(hmm_params.old + id.x * 4u, before);
}`,
      params: { n: 'u32', sums: 'u32', old: 'u32' },
    });
    const uses = [
      { va: sums, len: bins * 4, access: 'readwrite' as const },
      { va: old, len: n * 4, access: 'write' as const },
    ];
    await add.run({ workgroups: n / 64, params: { n, sums, old }, uses });
    await add.run({ workgroups: n / 64, params: { n, sums, old } }); // fault mode
    const perBin = (2 * n) / bins;
    const got = new Float32Array((await space.readAsync(sums, bins * 4)).buffer);
    expect([...got]).toEqual(Array.from({ length: bins }, (_, bin) => 0.5 * bin + perBin));
    // Each add returned the value it replaced: per bin, the second run saw every
    // value from n / bins to 2n / bins - 1 above the start exactly once.
    const olds = new Float32Array((await space.readAsync(old, n * 4)).buffer);
    for (let bin = 0; bin < bins; bin++) {
      const seen = olds.filter((_, i) => i % bins === bin).map((v) => v - 0.5 * bin);
      seen.sort((a, b) => a - b);
      expect([...seen]).toEqual(Array.from({ length: n / bins }, (_, k) => n / bins + k));
    }
  });

  it('fails a store to a read-only page with its address, in both modes, leaving the page unchanged', async () => {
    const { space, gpu } = await setup(4 * MiB, 4 * KiB);
    const va = space.alloc(2 * 4 * KiB);
    space.fill(va, 2 * 4 * KiB, 1);
    space.protect(va + 4 * KiB, 4 * KiB, 'r');
    const store = gpu.kernel({
      code: /* wgsl */ `
@compute @workgroup_size(1)
fn main() {
  hmm_store_u32(hmm_params.ok, 7u);
  hmm_store_u32(hmm_params.bad, 9u);
}`,
      params: { ok: 'u32', bad: 'u32' },
    });
    const params = { ok: va + 8, bad: va + 4 * KiB + 16 };
    const declared = await store
      .run({
        workgroups: 1,
        params,
        uses: [
          { va, len: 4 * KiB, access: 'write' },
          { va: va + 4 * KiB, len: 4 * KiB, access: 'read' },
        ],
      })
      .catch((error: unknown) => error);
    expect(declared).toBeInstanceOf(AccessError);
    expect(declared).toMatchObject({
      reason: 'protection',
      address: va + 4 * KiB + 16,
      touched: [va],
    });
    // Its other store landed.
    expect(new Uint32Array((await space.readAsync(va + 8, 4)).buffer)[0]).toBe(7);
    const faulting = await store.run({ workgroups: 1, params }).catch((error: unknown) => error);
    expect(faulting).toBeInstanceOf(AccessError);
    expect(faulting).toMatchObject({ reason: 'protection', address: va + 4 * KiB });
    expect(await space.readAsync(va + 4 * KiB, 4 * KiB)).toEqual(new Uint8Array(4 * KiB).fill(1));
  });

  it('fails an access outside the declared uses as undeclared', async () => {
    const { space, gpu } = await setup(4 * MiB, 4 * KiB);
    const [a, b] = [space.alloc(4 * KiB), space.alloc(4 * KiB)];
    const copy = gpu.kernel({
      code: `@compute @workgroup_size(1) fn main() { hmm_store_u32(hmm_params.dst, hmm_load_u32(hmm_params.src)); }`,
      params: { src: 'u32', dst: 'u32' },
    });
    const error = await copy
      .run({
        workgroups: 1,
        params: { src: b, dst: a },
        uses: [{ va: a, len: 4, access: 'write' }],
      })
      .catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'ACCESS', reason: 'undeclared', address: b });
  });

  it('orders a CPU write made after run() was called after the kernel, in 100 random trials', async () => {
    const { space, gpu } = await setup(4 * MiB, 4 * KiB);
    const random = testRandom('ordering');
    const thread = await worker(space);
    const words = 1024;
    const va = space.alloc(words * 4);
    const fill = gpu.kernel({
      code: /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  hmm_store_u32(hmm_params.va + id.x * 4u, hmm_params.tag + id.x);
}`,
      params: { va: 'u32', tag: 'u32' },
    });
    await fill.ready;
    for (let trial = 0; trial < 100; trial++) {
      const tag = (trial + 1) << 16;
      const lo = random.int(words);
      const hi = lo + 1 + random.int(words - lo);
      const mine = Uint32Array.from({ length: hi - lo }, (_, i) => 0xffff0000 - trial * 1000 - i);
      const flag = new Int32Array(new SharedArrayBuffer(4));
      const written = thread.writeAfterFlag(flag.buffer, va + lo * 4, mine);
      const run = fill.run({
        workgroups: words / 64,
        params: { va, tag },
        uses: [{ va, len: words * 4, access: 'write' }],
      });
      Atomics.store(flag, 0, 1);
      Atomics.notify(flag, 0);
      await Promise.all([run, written]);
      const expected = Uint32Array.from({ length: words }, (_, i) =>
        i >= lo && i < hi ? (mine[i - lo] ?? 0) : tag + i,
      );
      const seen = new Uint32Array((await space.readAsync(va, words * 4)).buffer);
      const wrong = seen.findIndex((value, i) => value !== expected[i]);
      expect(wrong, `trial ${trial}: [${lo}, ${hi})`).toBe(-1);
    }
  });

  it('reports a WGSL error with the user’s own line number', async () => {
    const { gpu } = await setup(4 * MiB);
    const broken = gpu.kernel({
      code: '@compute @workgroup_size(1)\nfn main() {\n  let x: u32 = ;\n}',
    });
    const error = await broken.ready.catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect(error).toMatchObject({ reason: 'wgsl' });
    expect((error as Error).message).toMatch(/line 3:/);
    await expect(broken.run({ workgroups: 1 })).rejects.toMatchObject({ reason: 'wgsl' });
  });

  it('rejects a run after kernel.destroy() as destroyed, and destroy() again changes nothing', async () => {
    const { space, gpu } = await setup(4 * MiB, 4 * KiB);
    const va = space.alloc(4 * KiB);
    const store = gpu.kernel({
      code: `@compute @workgroup_size(1) fn main() { hmm_store_u32(hmm_params.va, 7u); }`,
      params: { va: 'u32' },
    });
    const uses = [{ va, len: 4, access: 'write' as const }];
    await store.run({ workgroups: 1, params: { va }, uses });
    store.destroy();
    store.destroy();
    const error = await store
      .run({ workgroups: 1, params: { va }, uses })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect(error).toMatchObject({ argument: 'kernel', reason: 'destroyed' });
    await expect(store.run({ workgroups: 1, params: { va } })).rejects.toMatchObject({
      reason: 'destroyed',
    });
    expect(new Uint32Array((await space.readAsync(va, 4)).buffer)[0]).toBe(7);
    // Other kernels of the mirror run on.
    const other = gpu.kernel({
      code: `@compute @workgroup_size(1) fn main() { hmm_store_u32(hmm_params.va, 9u); }`,
      params: { va: 'u32' },
    });
    await other.run({ workgroups: 1, params: { va }, uses });
    expect(new Uint32Array((await space.readAsync(va, 4)).buffer)[0]).toBe(9);
  });

  it('rejects a run queued before destroy() as destroyed, releasing the pages it held', async () => {
    const { space, gpu } = await setup(4 * MiB, 4 * KiB);
    const va = space.alloc(4 * KiB);
    space.fill(va, 4 * KiB, 1);
    const store = gpu.kernel({
      code: `@compute @workgroup_size(1) fn main() { hmm_store_u32(hmm_params.va, 7u); }`,
      params: { va: 'u32' },
    });
    const queued = store.run({
      workgroups: 1,
      params: { va },
      uses: [{ va, len: 4 * KiB, access: 'write' }],
    });
    store.destroy();
    await expect(queued).rejects.toMatchObject({ argument: 'kernel', reason: 'destroyed' });
    // The page the run held from the call is free again: this thread may not wait, so a
    // write to a held page would throw.
    space.write(va, new Uint32Array([5]));
    expect(new Uint32Array((await space.readAsync(va, 8)).buffer)).toEqual(
      new Uint32Array([5, 0x01010101]),
    );
  });
});
