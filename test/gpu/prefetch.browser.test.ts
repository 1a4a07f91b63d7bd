// Prefetch on real WebGPU: gpu.prefetch to either side, what waits for a
// prefetch in flight (and never repeats its transfer), prefetch hits, the
// part beyond the budget reported as an ignored hint, eviction keeping what
// a prefetch brought, and the `prefetch` option of fault-mode runs.
import { afterEach, describe, expect, it } from 'vitest';
import {
  AccessError,
  DeviceLostError,
  InvalidArgumentError,
  OutOfMemoryError,
} from '../../src/errors.ts';
import { GpuMirror } from '../../src/mirror/gpu-mirror.ts';
import type { TraceEvent } from '../../src/gpu/mirror-stats.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import { testDevice } from '../support/gpu.ts';
import { testMirror } from '../support/mirror.ts';
import { singleCallThread } from '../support/single-call-thread.ts';
import { LIST_WALK } from '../../src/bench/workloads.ts';

const KiB = 1024;
const PAGE = 4 * KiB;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function setup(budgetPages: number, prefetch?: 'density' | 'off') {
  return testMirror(
    { size: 8 << 20, pageSize: PAGE },
    { budget: budgetPages * PAGE, ...(prefetch ? { prefetch } : {}) },
    cleanups,
  );
}

/** Sums `words` u32 from `src` into out[0] (one invocation, through the per-VA accessors). */
const SUM = /* wgsl */ `
@compute @workgroup_size(1)
fn main() {
  var sum = 0u;
  for (var i = 0u; i < hmm_params.words; i++) { sum += hmm_load_u32(hmm_params.src + i * 4u); }
  hmm_store_u32(hmm_params.out, sum);
}`;

/** `pages` new pages resident with frames a CPU write then made stale (`cpu`, framed: dense for density prefetch), of `byte`. */
async function staleFramed(space: AddressSpace, gpu: GpuMirror, pages: number, byte: number) {
  const va = space.alloc(pages * PAGE);
  space.fill(va, pages * PAGE, byte === 1 ? 2 : 1);
  await gpu.migrate(va, pages * PAGE, 'gpu');
  space.fill(va, pages * PAGE, byte);
  return va;
}

async function statesOf(gpu: GpuMirror, va: number, len: number): Promise<string[]> {
  return (await gpu.snapshot(va, len)).map((entry) => entry.state);
}

function filled(space: AddressSpace, va: number, len: number): number {
  let sum = 0;
  space.access(va, len, 'write', (lease) =>
    lease.u32.forEach((_, i, a) => {
      a[i] = i & 0xff;
      sum += i & 0xff;
    }),
  );
  return sum;
}

describe('gpu.prefetch', () => {
  it('makes pages resident for the next run, which moves nothing and counts the hits', async () => {
    const { space, gpu } = await setup(64);
    const len = 16 * PAGE;
    const [src, out] = [space.alloc(len), space.alloc(PAGE)];
    const sum = filled(space, src, len);
    const zeros = space.alloc(4 * PAGE);
    const result = await gpu.prefetch(src, len, 'gpu');
    expect(result).toEqual({ pages: 16, bytes: len, ignored: 0 });
    expect(await gpu.prefetch(zeros, 4 * PAGE, 'gpu')).toEqual({ pages: 0, bytes: 0, ignored: 0 });
    expect(new Set(await statesOf(gpu, src, len))).toEqual(new Set(['shared']));
    expect(new Set(await statesOf(gpu, zeros, 4 * PAGE))).toEqual(new Set(['shared']));
    expect(gpu.stats().bytesByCause.prefetch).toBe(len);
    // The CPU copy stays valid: a main-thread read needs no fault.
    expect(space.getU32(src + 4)).toBe(1);
    const kernel = gpu.kernel({ code: SUM, params: { src: 'u32', out: 'u32', words: 'u32' } });
    const run = await kernel.run({
      workgroups: 1,
      params: { src, out, words: len / 4 },
      uses: [
        { va: src, len, access: 'read' },
        { va: out, len: 4, access: 'write' },
      ],
    });
    expect(run.bytesToGpu).toBe(0);
    expect(gpu.stats().prefetchHits).toBe(16);
    expect(new Uint32Array((await space.readAsync(out, 4)).buffer)[0]).toBe(sum);
    // A second use is no hit: only the first use of a prefetched page counts.
    await gpu.read(src, PAGE);
    expect(gpu.stats().prefetchHits).toBe(16);
    kernel.destroy();
  });

  it('makes a run, gpu.read and migrate called during it wait, and none repeats its transfer', async () => {
    const { space, gpu } = await setup(64);
    const len = 32 * PAGE;
    const src = space.alloc(len);
    const out = space.alloc(PAGE);
    const sum = filled(space, src, len);
    const kernel = gpu.kernel({ code: SUM, params: { src: 'u32', out: 'u32', words: 'u32' } });
    await kernel.ready;
    const prefetched = gpu.prefetch(src, len, 'gpu');
    // Called before the prefetch resolves: CPU reads go on at once.
    expect(space.read(src + PAGE, 8)).toEqual(new Uint8Array([0, 0, 0, 0, 1, 0, 0, 0]));
    const run = kernel.run({
      workgroups: 1,
      params: { src, out, words: len / 4 },
      uses: [
        { va: src, len, access: 'read' },
        { va: out, len: 4, access: 'write' },
      ],
    });
    const read = gpu.read(src, 2 * PAGE);
    const migrated = gpu.migrate(src, 4 * PAGE, 'gpu');
    const [prefetch, counts, bytes, moved] = await Promise.all([prefetched, run, read, migrated]);
    expect(prefetch.bytes).toBe(len);
    expect(counts.bytesToGpu).toBe(0);
    expect(moved).toEqual({ pages: 0, bytes: 0 });
    expect(new Uint32Array(bytes.buffer)[1]).toBe(1);
    expect(gpu.stats().bytesToGpu).toBe(len);
    expect(new Uint32Array((await space.readAsync(out, 4)).buffer)[0]).toBe(sum);
    kernel.destroy();
  });

  it('makes a CPU write during it wait for the upload; the write leaves just its bytes stale', async () => {
    const { space, gpu } = await setup(64);
    const len = 16 * PAGE;
    const va = space.alloc(len);
    filled(space, va, len);
    const prefetched = gpu.prefetch(va, len, 'gpu');
    await space.writeAsync(va + 8, new Uint32Array([77]));
    expect((await prefetched).bytes).toBe(len);
    expect(await statesOf(gpu, va, 2 * PAGE)).toEqual(['cpu', 'shared']);
    expect(new Uint32Array((await gpu.read(va, 16)).buffer)[2]).toBe(77);
    // The page kept the prefetch's frame: only the written block went up again.
    const { bytesToGpu, staleBytesUploaded } = gpu.stats();
    expect(staleBytesUploaded).toBeGreaterThan(0);
    expect(staleBytesUploaded).toBeLessThan(PAGE);
    expect(bytesToGpu).toBe(len + staleBytesUploaded);
  });

  it("to 'cpu' brings GPU-dirty pages back, so CPU reads do not fault", async () => {
    const { space, gpu } = await setup(64);
    const len = 8 * PAGE;
    const va = space.alloc(len);
    await gpu.write(va, new Uint32Array(len / 4).fill(9));
    const other = space.alloc(PAGE);
    expect(await gpu.prefetch(va, len, 'cpu')).toEqual({ pages: 8, bytes: len, ignored: 0 });
    expect(await gpu.prefetch(other, PAGE, 'cpu')).toEqual({ pages: 0, bytes: 0, ignored: 0 });
    expect(new Set(await statesOf(gpu, va, len))).toEqual(new Set(['shared']));
    const faults = gpu.stats().cpuFaults;
    expect(space.read(va, len).every((byte, i) => byte === (i % 4 === 0 ? 9 : 0))).toBe(true);
    expect(gpu.stats()).toMatchObject({ cpuFaults: faults, bytesToCpu: len });
    expect(gpu.stats().bytesByCause.prefetch).toBe(len);
  });

  it('prefetches what the budget can hold and reports the rest as an ignored hint', async () => {
    const { space, gpu } = await setup(16);
    const len = 40 * PAGE;
    const va = space.alloc(len);
    filled(space, va, len);
    const events: TraceEvent[] = [];
    gpu.trace((event) => events.push(event));
    const result = await gpu.prefetch(va, len, 'gpu');
    // A budget of 16 frames keeps no reserve: the first 16 pages, the other 24 ignored.
    expect(result).toEqual({ pages: 16, bytes: 16 * PAGE, ignored: 24 * PAGE });
    expect(gpu.stats()).toMatchObject({ ignoredHints: 1, framesInUse: 16, evictions: 0 });
    expect(new Set(await statesOf(gpu, va, 16 * PAGE))).toEqual(new Set(['shared']));
    expect(new Set(await statesOf(gpu, va + 16 * PAGE, 24 * PAGE))).toEqual(new Set(['cpu']));
    expect(events).toContainEqual(
      expect.objectContaining({
        kind: 'ignored-hint',
        cause: 'prefetch',
        va: va + 16 * PAGE,
        len: 24 * PAGE,
      }),
    );
  });

  it('evicts others to make room, and what it brought goes last', async () => {
    const { space, gpu } = await setup(16);
    const [dirty, ahead, next] = [
      space.alloc(16 * PAGE),
      space.alloc(8 * PAGE),
      space.alloc(8 * PAGE),
    ];
    await gpu.write(dirty, new Uint32Array(16 * 1024).fill(5)); // 16 frames, all dirty
    filled(space, ahead, 8 * PAGE);
    // Room for 8 frames: the dirty pages are written back, none of the prefetch's own.
    expect((await gpu.prefetch(ahead, 8 * PAGE, 'gpu')).ignored).toBe(0);
    expect(gpu.stats()).toMatchObject({ evictions: 8, writebacks: 8 });
    // A migration needing 8 frames takes the dirty pages, not the clean unused prefetch.
    await gpu.migrate(next, 8 * PAGE, 'gpu');
    expect(new Set(await statesOf(gpu, ahead, 8 * PAGE))).toEqual(new Set(['shared']));
    expect(gpu.stats()).toMatchObject({ evictions: 16, writebacks: 16 });
    expect((await space.readAsync(dirty + 8 * PAGE, 4))[0]).toBe(5);
  });

  it('refuses bad input, unmapped, freed and protected ranges, changing nothing', async () => {
    const { space, gpu } = await setup(16);
    const va = space.alloc(4 * PAGE);
    const hidden = space.alloc(PAGE);
    space.protect(hidden, PAGE, 'none');
    const freed = space.alloc(PAGE);
    space.free(freed);
    const refusal = (call: () => Promise<unknown>) =>
      call().then(
        () => undefined,
        (e: unknown) => e,
      );
    const bad = await refusal(() => gpu.prefetch(va, PAGE, 'device' as 'gpu'));
    expect(bad).toBeInstanceOf(InvalidArgumentError);
    expect(await refusal(() => gpu.prefetch(va, 0, 'gpu'))).toBeInstanceOf(InvalidArgumentError);
    for (const [at, len, reason] of [
      [va + 3 * PAGE, 2 * PAGE, 'protection'],
      [freed, PAGE, 'freed'],
      [va + 64 * PAGE, PAGE, 'unmapped'],
    ] as const) {
      const error = await refusal(() => gpu.prefetch(at, len, 'gpu'));
      expect(error).toBeInstanceOf(AccessError);
      expect(error).toMatchObject({ reason });
    }
    expect(await refusal(() => gpu.prefetch(hidden, PAGE, 'cpu'))).toBeInstanceOf(AccessError);
    // The mapped page before the protected one was left as it was.
    expect(new Set(await statesOf(gpu, va, 4 * PAGE))).toEqual(new Set(['zero']));
    expect(gpu.stats()).toMatchObject({ bytesToGpu: 0, framesInUse: 0 });
    const scoped = await new Promise((resolve) =>
      space.access(
        va,
        PAGE,
        'read',
        () => void refusal(() => gpu.prefetch(va, PAGE, 'gpu')).then(resolve),
      ),
    );
    expect(scoped).toMatchObject({ code: 'WOULD_BLOCK', reason: 'reentrant' });
    await gpu.detach();
    expect(await refusal(() => gpu.prefetch(va, PAGE, 'gpu'))).toBeInstanceOf(DeviceLostError);
  });

  it('rejects with DeviceLostError when the device is lost during it', async () => {
    const test = await testDevice();
    const space = AddressSpace.create({ size: 8 << 20, pageSize: PAGE });
    const gpu = await GpuMirror.attach(space, { device: test.device, budget: 256 * PAGE });
    const len = 128 * PAGE;
    const va = space.alloc(len);
    filled(space, va, len);
    const prefetched = gpu.prefetch(va, len, 'gpu').then(
      () => undefined,
      (error: unknown) => error,
    );
    test.device.destroy();
    expect(await prefetched).toBeInstanceOf(DeviceLostError);
    expect((await gpu.lost).unsaved).toEqual([]);
    await gpu.detach();
    expect(space.getU32(va + 4)).toBe(1);
    expect(test.liveBuffers()).toBe(0);
  });
});

describe('gpu.prefetch at the limits (cases a review found)', () => {
  it('ignores nothing of a range already resident that fills the budget', async () => {
    const { space, gpu } = await setup(64);
    const len = 64 * PAGE; // exactly the budget
    const va = space.alloc(len);
    space.fill(va, len, 3);
    await gpu.migrate(va, len, 'gpu');
    await gpu.migrate(va, len, 'cpu'); // every page `shared`, every frame kept
    const events: TraceEvent[] = [];
    gpu.trace((event) => events.push(event));
    expect(await gpu.prefetch(va, len, 'gpu')).toEqual({ pages: 0, bytes: 0, ignored: 0 });
    expect(gpu.stats().ignoredHints).toBe(0);
    expect(events.filter((e) => e.kind === 'ignored-hint')).toEqual([]);
  });

  it('prefetches what the free frames hold and ignores only the rest', async () => {
    const { space, gpu } = await setup(16); // no reserve
    const held = space.alloc(12 * PAGE);
    space.fill(held, 12 * PAGE, 1);
    await gpu.migrate(held, 12 * PAGE, 'gpu');
    await gpu.migrate(held, 12 * PAGE, 'cpu'); // 12 frames in use, 4 free
    // Pages someone holds are never victims, and a prefetch waits for no holder of frames.
    const lease = await space.acquire(held, 12 * PAGE, 'read');
    cleanups.push(() => lease.release());
    const va = space.alloc(8 * PAGE);
    space.fill(va, 8 * PAGE, 2);
    const result = await gpu.prefetch(va, 8 * PAGE, 'gpu');
    expect(result).toEqual({ pages: 4, bytes: 4 * PAGE, ignored: 4 * PAGE });
  });

  it("to 'cpu' of CPU pages a worker reads in a scope resolves at once", async () => {
    const { space, gpu } = await setup(16);
    const va = space.alloc(4 * PAGE);
    space.fill(va, 4 * PAGE, 3); // `cpu` pages: nothing is GPU-owned
    const worker = await singleCallThread(space, cleanups);
    await worker.acquireRead(va, PAGE);
    cleanups.push(() => worker.release());
    const started = performance.now();
    expect(await gpu.prefetch(va, 4 * PAGE, 'cpu')).toEqual({ pages: 0, bytes: 0, ignored: 0 });
    expect(performance.now() - started).toBeLessThan(1000);
  });
});

describe('the prefetch option', () => {
  /** A 64-node list over 64 pages, one node per page, walked in fault mode. */
  async function walk(prefetch: 'density' | 'off') {
    const { space, gpu } = await setup(128, prefetch);
    const len = 64 * PAGE;
    const list = space.alloc(len);
    const out = space.alloc(PAGE);
    space.access(list, len, 'write', (lease) => {
      for (let node = 0; node < 64; node++) {
        lease.u32[(node * PAGE) / 4] = node + 1 < 64 ? list + (node + 1) * PAGE : 0;
        lease.u32[(node * PAGE) / 4 + 1] = node;
      }
    });
    // Resident, then stale: density prefetch sees the whole list resident.
    await gpu.migrate(list, len, 'gpu');
    await gpu.migrate(list, len, 'cpu');
    space.access(list, len, 'write', (lease) => {
      for (let node = 0; node < 64; node++) lease.u32[(node * PAGE) / 4 + 1] = node * 2;
    });
    const kernel = gpu.kernel({ code: LIST_WALK, params: { head: 'u32', out: 'u32' } });
    const result = await kernel.run({ workgroups: 1, params: { head: list, out } });
    const found = new Uint32Array((await space.readAsync(out, 8)).buffer);
    expect([found[0], found[1]]).toEqual([64 * 63, 64]);
    kernel.destroy();
    return result.replays;
  }

  it("'density' fetches the stale list around each fault; 'off' only the faulting pages", async () => {
    const dense = await walk('density');
    const plain = await walk('off');
    expect(dense).toBeLessThan(8);
    expect(plain).toBeGreaterThanOrEqual(64);
  });

  it('never evicts for density prefetch: under pressure it takes only what needs no new frame', async () => {
    const { space, gpu } = await setup(16);
    const list = space.alloc(8 * PAGE);
    const link = (round: number) =>
      space.access(list, 8 * PAGE, 'write', (lease) => {
        for (let node = 0; node < 8; node++) {
          lease.u32[(node * PAGE) / 4] = node + 1 < 8 ? list + (node + 1) * PAGE : 0;
          lease.u32[(node * PAGE) / 4 + 1] = node * round;
        }
      });
    link(1);
    await gpu.migrate(list, 5 * PAGE, 'gpu');
    await gpu.migrate(list, 5 * PAGE, 'cpu');
    link(3); // pages 0-4 stale with frames (dense), 5-7 without
    const other = space.alloc(11 * PAGE);
    await gpu.write(other, new Uint32Array((11 * PAGE) / 4).fill(1)); // every frame in use, dirty
    expect(gpu.stats()).toMatchObject({ framesInUse: 16, evictions: 0 });
    const out = space.alloc(PAGE);
    const kernel = gpu.kernel({ code: LIST_WALK, params: { head: 'u32', out: 'u32' } });
    const result = await kernel.run({ workgroups: 1, params: { head: list, out } });
    const found = new Uint32Array((await space.readAsync(out, 8)).buffer);
    expect([found[0], found[1]]).toEqual([3 * 28, 8]);
    // Only the pages that faulted for a new frame evicted (5-7, and out): the
    // dense block's stale pages came along in the first round, with no frame
    // taken from others (they once did not, and eviction took them instead).
    expect(gpu.stats()).toMatchObject({ evictions: 4, writebacks: 4 });
    expect(result.replays).toBe(4);
    kernel.destroy();
  });

  it('never makes a fault-mode run that fits fail for the budget by what it keeps from eviction', async () => {
    const run = async (prefetch: 'density' | 'off') => {
      const { space, gpu } = await setup(16, prefetch);
      // 16 pages fill the budget with frames a CPU write made stale (`cpu`, framed).
      const x = await staleFramed(space, gpu, 16, 2);
      const f = space.alloc(4 * PAGE); // no frames
      space.fill(f, 4 * PAGE, 3);
      const kernel = gpu.kernel({
        code: /* wgsl */ `
@compute @workgroup_size(1) fn main() {
  let s = hmm_load_u32(hmm_params.x) + hmm_load_u32(hmm_params.f + ${PAGE}u)
    + hmm_load_u32(hmm_params.f + ${2 * PAGE}u) + hmm_load_u32(hmm_params.f + ${3 * PAGE}u);
  hmm_store_u32(hmm_params.f, s);
}`,
        params: { x: 'u32', f: 'u32' },
      });
      // The 5 faulting pages need 4 new frames; eviction must keep enough of x's to give them.
      await kernel.run({ workgroups: 1, params: { x, f } });
      kernel.destroy();
      return (await space.readAsync(f, 4))[0];
    };
    expect(await run('off')).toBe(0x0b); // 0x02020202 + 3 * 0x03030303, low byte
    expect(await run('density')).toBe(0x0b);
  });

  it('lets go of what it holds by speculation when a later pass needs the frames', async () => {
    const run = async (prefetch: 'density' | 'off') => {
      const { space, gpu } = await setup(16, prefetch);
      const x = await staleFramed(space, gpu, 16, 2); // fills the budget: a dense block
      const f = space.alloc(PAGE); // no frame
      space.setU32(x, f);
      space.setU32(f, 41);
      const kernel = gpu.kernel({
        code: /* wgsl */ `
@compute @workgroup_size(1) fn main() {
  let p = hmm_load_u32(hmm_params.x);
  if (!hmm_faulted()) { hmm_store_u32(p + 4u, hmm_load_u32(p) + 1u); }
}`,
        params: { x: 'u32' },
      });
      // Its footprint is 2 pages of 16: x's first page, then f in a later pass.
      await kernel.run({ workgroups: 1, params: { x } });
      kernel.destroy();
      return new Uint32Array((await space.readAsync(f + 4, 4)).slice().buffer)[0];
    };
    expect(await run('off')).toBe(42);
    expect(await run('density')).toBe(42);
  });

  for (const more of [13, 15]) {
    it(`after letting speculation go, reads right what eviction took meanwhile (${more} more pages)`, async () => {
      const { space, gpu } = await setup(16, 'density');
      // Density prefetch takes x's other 15 pages.
      const x = await staleFramed(space, gpu, 16, 0);
      const [f, out] = [space.alloc(PAGE), space.alloc(PAGE)];
      let expected = 41;
      for (let i = 0; i < 16; i++) {
        space.setU32(x + i * PAGE + 8, i + 100);
        if (i >= 1 && i <= more) expected += i + 100;
      }
      space.setU32(x, f);
      space.setU32(f, 41);
      const kernel = gpu.kernel({
        code: /* wgsl */ `
@compute @workgroup_size(1) fn main() {
  let p = hmm_load_u32(hmm_params.x);
  if (hmm_faulted()) { return; }
  var sum = hmm_load_u32(p);
  for (var i = 1u; i <= hmm_params.more; i++) { sum += hmm_load_u32(hmm_params.x + i * ${PAGE}u + 8u); }
  hmm_store_u32(hmm_params.out, sum);
}`,
        params: { x: 'u32', more: 'u32', out: 'u32' },
      });
      const run = kernel.run({ workgroups: 1, params: { x, more, out } });
      if (more === 15) {
        // x's 16 pages, f and out: 18 pages of 16 frames, a footprint that does not fit.
        await expect(run).rejects.toBeInstanceOf(OutOfMemoryError);
      } else {
        await run; // f needs the frames prefetch held: they go, and come back as later passes fault
        expect(new Uint32Array((await space.readAsync(out, 4)).slice().buffer)[0]).toBe(expected);
      }
      kernel.destroy();
    });
  }

  it('refuses an unknown prefetch option', async () => {
    const space = AddressSpace.create({ size: 1 << 20, pageSize: PAGE });
    const error = await GpuMirror.attach(space, { prefetch: 'always' as 'off' }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect(error).toMatchObject({ argument: 'prefetch', reason: 'bad-value' });
  });
});
