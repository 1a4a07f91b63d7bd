// Pipelined runs on real WebGPU: runs called in one task submit in call order
// and share one status readback; each settles with its own result or error;
// a CPU access already waiting is ordered before runs called after it.
import { afterEach, describe, expect, it } from 'vitest';
import { AccessError } from '../../src/errors.ts';
import type { GpuMirror } from '../../src/mirror/gpu-mirror.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import { Threads } from '../../src/threads/threads.ts';
import { testMirror } from '../support/mirror.ts';
import type { MirrorThreadApi } from '../threads/mirror-thread.worker.ts';

const PAGE = 4096;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function setup(): Promise<{ space: AddressSpace; gpu: GpuMirror }> {
  return testMirror({ size: 1 << 20, pageSize: PAGE }, { copy: 'buffer' }, cleanups);
}

/** Adds k to every word of r; with `over` set, also loads one word past r's end. */
const ADD = /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x >= r_len()) { return; }
  var extra = 0u;
  if (hmm_params.over != 0u && id.x == 0u) { extra = r_load_u32(r_len()); }
  r_store_u32(id.x, r_load_u32(id.x) + hmm_params.k + extra);
}`;

/** The ADD kernel: named range r, parameters k and over. */
const addKernel = (gpu: GpuMirror) =>
  gpu.kernel({ code: ADD, params: { k: 'u32', over: 'u32' }, ranges: { r: 'readwrite' } });

const words = async (space: AddressSpace, va: number, len: number) =>
  Array.from(new Uint32Array((await space.readAsync(va, len)).buffer));

/** Counts mapAsync calls on every buffer while `body` runs. */
async function countMaps<T>(body: () => Promise<T>): Promise<{ value: T; maps: number }> {
  const prototype = GPUBuffer.prototype;
  const original = Object.getOwnPropertyDescriptor(prototype, 'mapAsync');
  const mapAsync = original?.value as GPUBuffer['mapAsync'];
  let maps = 0;
  Object.defineProperty(prototype, 'mapAsync', {
    ...original,
    value(this: GPUBuffer, ...args: Parameters<GPUBuffer['mapAsync']>) {
      maps++;
      return mapAsync.apply(this, args);
    },
  });
  try {
    return { value: await body(), maps };
  } finally {
    if (original) Object.defineProperty(prototype, 'mapAsync', original);
  }
}

describe('pipelined runs', () => {
  it('submits 20 runs called in one task in order and reads their status back once', async () => {
    const { space, gpu } = await setup();
    const va = space.alloc(PAGE);
    const kernel = addKernel(gpu);
    const uses = [{ name: 'r', va, len: 256 }];
    await kernel.run({ workgroups: 4, params: { k: 0, over: 0 }, uses }); // resident, compiled
    const { value: results, maps } = await countMaps(() =>
      Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          kernel.run({ workgroups: 4, params: { k: i + 1, over: 0 }, uses }),
        ),
      ),
    );
    expect(maps).toBe(1);
    expect(results.map((r) => r.pagesWritten)).toEqual(new Array(20).fill(1));
    expect(await words(space, va, 256)).toEqual(new Array(64).fill(210));
    kernel.destroy();
  });

  it("reports each run's own dirty pages: the marks of one pass do not carry into the next", async () => {
    const { space, gpu } = await setup();
    const va = space.alloc(4 * PAGE);
    const kernel = addKernel(gpu);
    const onPage = (page: number) => [{ name: 'r', va: va + page * PAGE, len: 256 }];
    await kernel.run({ workgroups: 4, params: { k: 0, over: 0 }, uses: onPage(0) }); // compiled
    // In one task: pages 1, 3, 2, then 1 and 2 again (each run one page), in one batch.
    const pages = [1, 3, 2, 1, 2];
    const { value: results, maps } = await countMaps(() =>
      Promise.all(
        pages.map((page) =>
          kernel.run({ workgroups: 4, params: { k: 1, over: 0 }, uses: onPage(page) }),
        ),
      ),
    );
    expect(maps).toBe(1);
    expect(results.map((r) => r.pagesWritten)).toEqual([1, 1, 1, 1, 1]);
    const states = space.snapshot(va, 4 * PAGE).map((page) => page.state);
    expect(states).toEqual(['gpu', 'gpu', 'gpu', 'gpu']);
    expect((await words(space, va + PAGE, 256))[0]).toBe(2);
    expect((await words(space, va + 3 * PAGE, 256))[0]).toBe(1);
    kernel.destroy();
  });

  it('reports dirty pages far apart in a large space, and a range across a pack span boundary, each to its own run', async () => {
    const { space, gpu } = await testMirror(
      { size: 64 << 20, pageSize: PAGE },
      { copy: 'buffer', budget: 1 << 20 },
      cleanups,
    );
    const base = space.alloc(60 << 20);
    const kernel = addKernel(gpu);
    // Pack spans are 2048 pages: pages 2040..2059 straddle the boundary at 2048.
    const at = (page: number, pages = 1) => [
      { name: 'r', va: base + page * PAGE, len: pages * PAGE },
    ];
    const runs = [at(100), at(5000), at(2040, 20), at(14000), at(100)];
    const results = await Promise.all(
      runs.map((uses) =>
        kernel.run({ workgroups: uses[0]!.len / 4 / 64, params: { k: 1, over: 0 }, uses }),
      ),
    );
    expect(results.map((r) => r.pagesWritten)).toEqual([1, 1, 20, 1, 1]);
    expect((await words(space, base + 100 * PAGE, 8))[0]).toBe(2);
    expect((await words(space, base + 2059 * PAGE + PAGE - 4, 4))[0]).toBe(1);
    expect((await words(space, base + 14000 * PAGE, 4))[0]).toBe(1);
    kernel.destroy();
  });

  it('fails only the run with the error in the middle of a chain; the others land', async () => {
    const { space, gpu } = await setup();
    const va = space.alloc(PAGE);
    const kernel = addKernel(gpu);
    const uses = [{ name: 'r', va, len: 256 }];
    const runs = [1, 2, 3, 4, 5].map((k) =>
      kernel.run({ workgroups: 4, params: { k, over: k === 3 ? 1 : 0 }, uses }),
    );
    const settled = await Promise.allSettled(runs);
    expect(settled.map((s) => s.status)).toEqual([
      'fulfilled',
      'fulfilled',
      'rejected',
      'fulfilled',
      'fulfilled',
    ]);
    const failure = (settled[2] as PromiseRejectedResult).reason as AccessError;
    expect(failure).toBeInstanceOf(AccessError);
    expect(failure.reason).toBe('out-of-range');
    // The failed run's in-range stores landed too (its out-of-range load read 0).
    expect(await words(space, va, 256)).toEqual(new Array(64).fill(15));
    kernel.destroy();
  });

  it('orders a CPU write already waiting before runs called after it', async () => {
    const { space, gpu } = await setup();
    const src = space.alloc(PAGE);
    const out = space.alloc(PAGE);
    space.setU32(src, 7);
    const copy = gpu.kernel({
      code: /* wgsl */ `
        @compute @workgroup_size(1)
        fn main() { dst_store_u32(hmm_params.slot, src_load_u32(0u)); }`,
      params: { slot: 'u32' },
      ranges: { src: 'read', dst: 'write' },
    });
    const uses = [
      { name: 'src', va: src, len: 4 },
      { name: 'dst', va: out, len: 8 },
    ];
    await copy.run({ workgroups: 1, params: { slot: 0 }, uses }); // src shared, out GPU-owned
    const first = copy.run({ workgroups: 1, params: { slot: 0 }, uses });
    const write = space.writeAsync(src, new Uint32Array([100])); // waits for the first run
    const second = copy.run({ workgroups: 1, params: { slot: 1 }, uses });
    await Promise.all([first, write, second]);
    expect(await words(space, out, 8)).toEqual([7, 100]);
    copy.destroy();
  });

  it('runs a chain over distinct ranges of different kernels, each with its own result', async () => {
    const { space, gpu } = await setup();
    const a = space.alloc(4 * PAGE);
    const b = space.alloc(4 * PAGE);
    const add = addKernel(gpu);
    const copy = gpu.kernel({
      code: /* wgsl */ `
        @compute @workgroup_size(64)
        fn main(@builtin(global_invocation_id) id: vec3u) {
          if (id.x >= dst_len()) { return; }
          dst_store_u32(id.x, src_load_u32(id.x) * 2u);
        }`,
      ranges: { src: 'read', dst: 'write' },
    });
    const len = 4 * PAGE;
    const n = len / 4;
    const groups = n / 64;
    const chain = [
      add.run({ workgroups: groups, params: { k: 3, over: 0 }, uses: [{ name: 'r', va: a, len }] }),
      copy.run({
        workgroups: groups,
        uses: [
          { name: 'src', va: a, len },
          { name: 'dst', va: b, len },
        ],
      }),
      add.run({ workgroups: groups, params: { k: 1, over: 0 }, uses: [{ name: 'r', va: b, len }] }),
    ];
    const results = await Promise.all(chain);
    expect(results.map((r) => r.pagesWritten)).toEqual([4, 4, 4]);
    expect(await words(space, a, len)).toEqual(new Array(n).fill(3));
    expect(await words(space, b, len)).toEqual(new Array(n).fill(7));
    add.destroy();
    copy.destroy();
  });

  it('gives a fault-mode run after a pipelined run its own control words (found by the model suite)', async () => {
    const { space, gpu } = await setup();
    const rw = space.alloc(PAGE);
    const ro = space.alloc(4 * PAGE, { prot: 'r' });
    const store = gpu.kernel({
      code: /* wgsl */ `
        @compute @workgroup_size(1)
        fn main() { hmm_atomic_add_u32(hmm_params.va, 1u); }`,
      params: { va: 'u32' },
    });
    const named = addKernel(gpu);
    const refusal = (va: number) =>
      store.run({ workgroups: 1, params: { va } }).then(
        () => 'ok',
        (e: unknown) => (e as AccessError).reason,
      );
    expect(await refusal(ro)).toBe('protection');
    await named.run({
      workgroups: 1,
      params: { k: 1, over: 0 },
      uses: [{ name: 'r', va: rw, len: 4 }],
    });
    // Its control words said "every page may be touched"; a stale copy said "one use".
    expect(await refusal(ro)).toBe('protection');
    expect(await refusal(rw)).toBe('ok');
    store.destroy();
    named.destroy();
  });

  it('keeps a later run from changing the device page table under passes encoded before it (found in review)', async () => {
    const { space, gpu } = await setup();
    const z = space.alloc(PAGE);
    const slow = space.alloc(64 * PAGE);
    const store = gpu.kernel({
      code: '@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3u) { hmm_store_u32(hmm_params.va + id.x * 4u, 7u); }',
      params: { va: 'u32' },
    });
    const uses = [{ va: z, len: 256, access: 'readwrite' as const }];
    await store.run({ workgroups: 1, params: { va: z }, uses }); // z GPU-owned
    space.fill(slow, 64 * PAGE, 3); // the next run must upload it
    const touch = gpu.kernel({
      code: '@compute @workgroup_size(1) fn main() { let x = hmm_load_u32(hmm_params.va); }',
      params: { va: 'u32' },
    });
    // z is protected while the second run uploads `slow` (protect waits for
    // no device), so z's device entry loses write access before the first
    // run's pass, encoded before, has run.
    const queue = gpu.device.queue;
    const writeBuffer = queue.writeBuffer.bind(queue);
    let protectedAt = false;
    queue.writeBuffer = (...args: Parameters<GPUQueue['writeBuffer']>) => {
      const size = args[4] ?? 0;
      if (!protectedAt && size >= 64 * PAGE) {
        protectedAt = true;
        space.protect(z, PAGE, 'r');
      }
      writeBuffer(...args);
    };
    let outcomes: PromiseSettledResult<unknown>[];
    try {
      const a = store.run({ workgroups: 1, params: { va: z }, uses });
      const b = touch.run({
        workgroups: 1,
        params: { va: slow },
        uses: [{ va: slow, len: 64 * PAGE, access: 'read' }],
      });
      outcomes = await Promise.allSettled([a, b]);
    } finally {
      queue.writeBuffer = writeBuffer;
    }
    expect(protectedAt).toBe(true);
    // The protect came after the first run was called: that run sees z as it was.
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['fulfilled', 'fulfilled']);
    store.destroy();
    touch.destroy();
  });

  it('runs 33 runs of two holds each called in one task: more holds than one thread journal takes', async () => {
    const { space, gpu } = await setup();
    const pages = Array.from({ length: 66 }, () => space.alloc(PAGE));
    pages.forEach((va, i) => space.setU32(va, 10 * i));
    const copy = gpu.kernel({
      code: '@compute @workgroup_size(1) fn main() { y_store_u32(0u, x_load_u32(0u) + 1u); }',
      ranges: { x: 'read', y: 'write' },
    });
    const runs = Array.from({ length: 33 }, (_, i) =>
      copy.run({
        workgroups: 1,
        uses: [
          { name: 'x', va: pages[2 * i] ?? 0, len: 4 },
          { name: 'y', va: pages[2 * i + 1] ?? 0, len: 4 },
        ],
      }),
    );
    const settled = await Promise.allSettled(runs);
    expect(settled.filter((s) => s.status === 'rejected')).toEqual([]);
    for (let i = 0; i < 33; i++)
      expect(await words(space, pages[2 * i + 1] ?? 0, 4)).toEqual([20 * i + 1]);
    copy.destroy();
  });

  it('runs 33 two-hold runs called in one task on a worker that owns the mirror, past its 64-entry hold journal (found in review)', async () => {
    const space = AddressSpace.create({ size: 1 << 20, pageSize: PAGE });
    const threads = await Threads.spawn<MirrorThreadApi>(
      space,
      new URL('../threads/mirror-thread.worker.ts', import.meta.url),
      1,
    );
    cleanups.push(() => threads.terminate());
    const [worker] = threads.workers;
    if (!worker) throw new Error('no worker');
    await worker.attach();
    const pages = Array.from({ length: 66 }, () => space.alloc(PAGE));
    pages.forEach((va, i) => space.setU32(va, 10 * i));
    const pairs = Array.from(
      { length: 33 },
      (_, i) => [pages[2 * i] ?? 0, pages[2 * i + 1] ?? 0] as const,
    );
    expect(await worker.chainCopies(pairs)).toEqual([]);
    await worker.detach();
    for (let i = 0; i < 33; i++) expect(space.getU32(pages[2 * i + 1] ?? 0)).toBe(20 * i + 1);
  });

  it('leaves no extra GPU buffer once a batch with a run of many separate uses completes (found in review)', async () => {
    const { space, gpu, test } = await testMirror(
      { size: 1 << 20, pageSize: PAGE },
      { copy: 'buffer' },
      cleanups,
    );
    const pages = Array.from({ length: 40 }, () => space.alloc(PAGE));
    const touch = gpu.kernel({
      code: '@compute @workgroup_size(1) fn main() { let x = hmm_load_u32(hmm_params.va); }',
      params: { va: 'u32' },
    });
    const use = (va: number) => ({ va, len: 4, access: 'read' as const });
    const first = pages[0] ?? 0;
    await touch.run({ workgroups: 1, params: { va: first }, uses: [use(first)] });
    const live = test.liveBuffers();
    // The second run declares 20 separate pages (once, that outgrew a uses
    // table the first run's pass, encoded before, still read).
    const spread = pages
      .filter((_, i) => i % 2 === 0)
      .slice(0, 20)
      .map(use);
    await Promise.all([
      touch.run({ workgroups: 1, params: { va: first }, uses: [use(first)] }),
      touch.run({ workgroups: 1, params: { va: first }, uses: spread }),
    ]);
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(test.liveBuffers()).toBe(live);
    touch.destroy();
  });
});

describe('what each pipelined run declared', () => {
  it('a run sees only its own uses: a page an earlier run declared is undeclared to the next', async () => {
    const { space, gpu } = await setup();
    const [p, q] = [space.alloc(PAGE), space.alloc(PAGE)];
    space.setU32(p, 5);
    const copy = gpu.kernel({
      code: /* wgsl */ `
        @compute @workgroup_size(1)
        fn main() { hmm_store_u32(hmm_params.dst, hmm_load_u32(hmm_params.src) + 1u); }`,
      params: { src: 'u32', dst: 'u32' },
    });
    const use = (va: number) => ({ va, len: PAGE, access: 'readwrite' }) as const;
    // One task: the first run declares p; the second declares only q but reads p.
    const first = copy.run({ workgroups: 1, params: { src: p, dst: p + 4 }, uses: [use(p)] });
    const second = copy.run({ workgroups: 1, params: { src: p, dst: q }, uses: [use(q)] });
    await expect(first).resolves.toMatchObject({ pagesWritten: 1 });
    await expect(second).rejects.toMatchObject({ reason: 'undeclared', address: p });
    // And in a later batch too.
    await expect(
      copy.run({ workgroups: 1, params: { src: p, dst: q }, uses: [use(q)] }),
    ).rejects.toMatchObject({ reason: 'undeclared', address: p });
    expect(await words(space, p, 8)).toEqual([5, 6]);
    copy.destroy();
  });
});
