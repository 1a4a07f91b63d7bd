// Oversubscription on real WebGPU: working sets larger than the budget
// streamed through kernels, eviction's order and write-backs, held pages
// kept, and the calls that can never fit refused before anything moves.
// Ports the intent of Linux HMM's self-tests "migrate under memory pressure"
// and "device read of evicted pages".
import { afterEach, describe, expect, it } from 'vitest';
import { OutOfMemoryError } from '../../src/errors.ts';
import type { GpuMirror } from '../../src/mirror/gpu-mirror.ts';
import type { AddressSpace } from '../../src/space/address-space.ts';
import { testMirror } from '../support/mirror.ts';

const KiB = 1024;
const PAGE = 4 * KiB;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function setup(budgetPages: number): Promise<{ space: AddressSpace; gpu: GpuMirror }> {
  return testMirror({ size: 8 << 20, pageSize: PAGE }, { budget: budgetPages * PAGE }, cleanups);
}

/** out[i] = in[i] * 2 + k over `words` words (through the per-VA accessors). */
const SCALE = /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x >= hmm_params.words) { return; }
  let v = hmm_load_u32(hmm_params.src + id.x * 4u);
  hmm_store_u32(hmm_params.dst + id.x * 4u, v * 2u + hmm_params.k);
}`;
const SCALE_PARAMS = { src: 'u32', dst: 'u32', words: 'u32', k: 'u32' } as const;

/** Runs SCALE from `src` to `dst` in chunks of `chunk` bytes, declaring each chunk's pages. */
async function scaleInChunks(
  gpu: GpuMirror,
  src: number,
  dst: number,
  len: number,
  chunk: number,
  k: number,
  onRun: () => void = () => {},
): Promise<void> {
  const kernel = gpu.kernel({ code: SCALE, params: SCALE_PARAMS });
  for (let at = 0; at < len; at += chunk) {
    const words = chunk / 4;
    await kernel.run({
      workgroups: Math.ceil(words / 64),
      params: { src: src + at, dst: dst + at, words, k },
      uses: [
        { va: src + at, len: chunk, access: 'read' },
        { va: dst + at, len: chunk, access: 'write' },
      ],
    });
    onRun();
  }
  kernel.destroy();
}

/** The CPU's words of [va, va + len) (faulting GPU-dirty pages back: async on the main thread). */
async function u32s(space: AddressSpace, va: number, len: number): Promise<Uint32Array> {
  const bytes = await space.readAsync(va, len);
  return new Uint32Array(bytes.buffer, bytes.byteOffset, len / 4);
}

async function statesOf(gpu: GpuMirror, va: number, len: number): Promise<Set<string>> {
  return new Set((await gpu.snapshot(va, len)).map((entry) => entry.state));
}

describe('eviction', () => {
  it('streams a working set of 4x the budget through a kernel, within the budget, exactly', async () => {
    const budgetPages = 64;
    const { space, gpu } = await setup(budgetPages);
    const len = 128 * PAGE; // x and y together: 4x the budget
    const [x, y] = [space.alloc(len), space.alloc(len)];
    space.access(x, len, 'write', (lease) => lease.u32.forEach((_, i, a) => (a[i] = i)));
    let most = 0;
    const sample = () => (most = Math.max(most, gpu.stats().framesInUse));
    const sampler = setInterval(sample, 0);
    try {
      await scaleInChunks(gpu, x, y, len, (budgetPages / 4) * PAGE, 1, sample);
    } finally {
      clearInterval(sampler);
    }
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(budgetPages);
    const stats = gpu.stats();
    expect(stats.evictions).toBeGreaterThan(0);
    // Only y was ever dirty: each of its pages was written back once by eviction or is dirty still.
    const dirtyNow = (await gpu.snapshot(y, len)).filter((entry) => entry.dirty === 'gpu').length;
    expect(stats.writebacks + dirtyNow).toBe(len / PAGE);
    expect(stats.bytesByCause.eviction).toBe(stats.writebacks * PAGE);
    expect(stats.bytesToCpu).toBe(stats.writebacks * PAGE);
    const out = await u32s(space, y, len);
    expect(out.every((v, i) => v === i * 2 + 1)).toBe(true);
  });

  it('gives later kernels and gpu.read the bytes of evicted pages', async () => {
    const budgetPages = 32;
    const { space, gpu } = await setup(budgetPages);
    const len = 64 * PAGE;
    const [x, y, z] = [space.alloc(len), space.alloc(len), space.alloc(len)];
    space.access(x, len, 'write', (lease) => lease.u32.forEach((_, i, a) => (a[i] = i)));
    await scaleInChunks(gpu, x, y, len, 8 * PAGE, 3);
    // y's first pages were evicted (dirty, written back); a kernel reading them sees their bytes.
    expect(await statesOf(gpu, y, 8 * PAGE)).toEqual(new Set(['cpu']));
    await scaleInChunks(gpu, y, z, len, 8 * PAGE, 0);
    const out = await u32s(space, z, len);
    expect(out.every((v, i) => v === (i * 2 + 3) * 2)).toBe(true);
    const device = new Uint32Array((await gpu.read(y, 8 * PAGE)).buffer);
    expect(device.every((v, i) => v === i * 2 + 3)).toBe(true);
  });

  it('evicts clean pages before dirty ones, then the least recently used', async () => {
    const { space, gpu } = await setup(16);
    const [a, b, c] = [space.alloc(8 * PAGE), space.alloc(8 * PAGE), space.alloc(8 * PAGE)];
    await gpu.write(a, new Uint32Array(8 * 1024).fill(1)); // dirty, used first
    space.fill(b, 8 * PAGE, 2);
    await gpu.migrate(b, 8 * PAGE, 'gpu'); // clean, used later
    await gpu.migrate(c, 8 * PAGE, 'gpu'); // 8 frames: b's go, with no transfer
    expect(await statesOf(gpu, a, 8 * PAGE)).toEqual(new Set(['gpu']));
    expect(await statesOf(gpu, b, 8 * PAGE)).toEqual(new Set(['cpu']));
    expect(gpu.stats()).toMatchObject({ evictions: 8, writebacks: 0, bytesToCpu: 0 });
    // Now both a and c are dirty; a was used since c, so c goes.
    await gpu.write(c, new Uint32Array(8 * 1024).fill(3));
    await gpu.read(a, 8 * PAGE);
    await gpu.migrate(b, 8 * PAGE, 'gpu');
    expect(await statesOf(gpu, a, 8 * PAGE)).toEqual(new Set(['gpu']));
    expect(await statesOf(gpu, c, 8 * PAGE)).toEqual(new Set(['cpu']));
    expect(gpu.stats()).toMatchObject({ evictions: 16, writebacks: 8, bytesToCpu: 8 * PAGE });
    expect((await u32s(space, c, 8 * PAGE)).every((v) => v === 3)).toBe(true);
    expect(space.read(b, 8 * PAGE).every((v) => v === 2)).toBe(true);
  });

  it('reports each eviction batch in the trace with its cause', async () => {
    const { space, gpu } = await setup(16);
    const [a, b] = [space.alloc(16 * PAGE), space.alloc(8 * PAGE)];
    await gpu.write(a, new Uint32Array(16 * 1024).fill(7));
    const events: unknown[] = [];
    gpu.trace((event) => events.push(event));
    await gpu.migrate(b, 8 * PAGE, 'gpu');
    expect(events).toContainEqual(
      expect.objectContaining({ kind: 'migration', cause: 'eviction', to: 'cpu', va: a }),
    );
    const eviction = events.find((event) => (event as { cause: string }).cause === 'eviction') as {
      pages: number;
      bytes: number;
      evicted: number;
    };
    // The need (8 frames; a budget of 16 frames keeps no reserve), written back in one readback.
    expect(eviction.evicted).toBe(8);
    expect(eviction.bytes).toBe(eviction.pages * PAGE);
    expect(gpu.stats().readbacks).toBe(1);
  });

  it("writes a round's dirty victims back in one readback, past a hold journal's batch", async () => {
    const { space, gpu } = await setup(64);
    const [a, b] = [space.alloc(64 * PAGE), space.alloc(32 * PAGE)];
    await gpu.write(a, new Uint32Array(64 * 1024).fill(4));
    const events: { cause: string; evicted?: number }[] = [];
    gpu.trace((event) => events.push(event));
    await gpu.migrate(b, 32 * PAGE, 'gpu');
    // The need (32 frames) and the reserve (2 of 64 frames), from the main thread: one round, one readback.
    expect(events.filter((event) => event.cause === 'eviction')).toEqual([
      expect.objectContaining({ evicted: 34, pages: 34 }),
    ]);
    expect(gpu.stats()).toMatchObject({ readbacks: 1, writebacks: 34, evictions: 34 });
    expect((await space.readAsync(a + 33 * PAGE, 4))[0]).toBe(4);
  });

  it('never evicts a page a run in flight holds: a competing migration waits for the run', async () => {
    const { space, gpu } = await setup(8);
    const [p, q] = [space.alloc(6 * PAGE), space.alloc(4 * PAGE)];
    const slow = gpu.kernel({
      code: /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  var acc = id.x;
  for (var i = 0u; i < hmm_params.spin; i++) { acc = acc * 1664525u + 1013904223u; }
  let words = ${(6 * PAGE) / 4}u;
  for (var w = id.x; w < words; w += 64u) { hmm_store_u32(hmm_params.va + w * 4u, w + (acc & 0u) + 5u); }
}`,
      params: { va: 'u32', spin: 'u32' },
    });
    await slow.ready;
    await gpu.migrate(p, 6 * PAGE, 'gpu'); // the run needs no new frame: it holds its pages from the call
    const order: string[] = [];
    const run = slow
      .run({
        workgroups: 1,
        params: { va: p, spin: 2_000_000 },
        uses: [{ va: p, len: 6 * PAGE, access: 'write' }],
      })
      .then(() => order.push('run'));
    const migrate = gpu.migrate(q, 4 * PAGE, 'gpu').then(() => order.push('migrate'));
    await Promise.all([run, migrate]);
    expect(order).toEqual(['run', 'migrate']);
    expect(await statesOf(gpu, q, 4 * PAGE)).toEqual(new Set(['gpu']));
    const out = await u32s(space, p, 6 * PAGE);
    expect(out.every((v, w) => v === w + 5)).toBe(true);
  });
});

describe('admission', () => {
  it('refuses a run whose uses need more frames than the budget, before anything moves', async () => {
    const { space, gpu } = await setup(16);
    const [x, y] = [space.alloc(16 * PAGE), space.alloc(16 * PAGE)];
    const kernel = gpu.kernel({ code: SCALE, params: SCALE_PARAMS });
    const error = await kernel
      .run({
        workgroups: 1,
        params: { src: x, dst: y, words: 64, k: 0 },
        uses: [
          { va: x, len: 16 * PAGE, access: 'read' },
          { va: y, len: 16 * PAGE, access: 'write' },
        ],
      })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OutOfMemoryError);
    expect(error).toMatchObject({ reason: 'budget', requested: 32 * PAGE, available: 16 * PAGE });
    expect((error as Error).message).toMatch(/chunks/);
    expect(gpu.stats()).toMatchObject({ framesInUse: 0, bytesToGpu: 0, evictions: 0 });
    kernel.destroy();
  });

  it('fails a fault-mode run whose footprint exceeds the budget; the same work in runs of half the budget completes', async () => {
    const budgetPages = 32;
    const { space, gpu } = await setup(budgetPages);
    const len = 4 * budgetPages * PAGE;
    const va = space.alloc(len);
    space.access(va, len, 'write', (lease) => lease.u32.forEach((_, i, a) => (a[i] = i)));
    const add = gpu.kernel({
      code: /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x >= hmm_params.words) { return; }
  let at = hmm_params.va + id.x * 4u;
  hmm_store_u32(at, hmm_load_u32(at) + 1u);
}`,
      params: { va: 'u32', words: 'u32' },
    });
    const words = len / 4;
    const error = await add
      .run({ workgroups: words / 64, params: { va, words } })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OutOfMemoryError);
    expect(error).toMatchObject({ reason: 'budget', available: budgetPages * PAGE });
    expect((error as OutOfMemoryError).requested).toBeGreaterThan(budgetPages * PAGE);
    expect((error as Error).message).toMatch(/split the work/);
    // The failed run changed no byte: its collecting passes store nothing.
    expect((await u32s(space, va, len)).every((v, i) => v === i)).toBe(true);
    const chunk = (budgetPages / 2) * PAGE;
    for (let at = 0; at < len; at += chunk) {
      await add.run({ workgroups: chunk / 4 / 64, params: { va: va + at, words: chunk / 4 } });
    }
    expect((await u32s(space, va, len)).every((v, i) => v === i + 1)).toBe(true);
    expect(gpu.stats().evictions).toBeGreaterThan(0);
    expect(gpu.stats().framesInUse).toBeLessThanOrEqual(budgetPages);
  });
});
