// The GPU mirror on real WebGPU: ports of the intent of Linux's HMM self-tests
// (tools/testing/selftests/mm/hmm-tests.c), with the main thread owning the
// device and real workers faulting pages back.
import { releaseProxy, wrap } from 'comlink';
import { afterEach, describe, expect, it } from 'vitest';
import { AccessError, DeviceLostError, OutOfMemoryError } from '../../src/errors.ts';
import type { CopyMode } from '../../src/gpu/copy-engines.ts';
import { GpuMirror } from '../../src/mirror/gpu-mirror.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import { testDevice, type TestDevice } from '../support/gpu.ts';
import { testMirror } from '../support/mirror.ts';
import { firstDifference, testRandom } from '../support/random.ts';
import type { SpaceWorkerApi } from '../space/space.worker.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A space, a counted test device and a mirror on it; checks no validation error and no leak at the end. */
function setup(
  options: { size?: number; pageSize?: number; copy?: CopyMode; budget?: number } = {},
): Promise<{ space: AddressSpace; gpu: GpuMirror; test: TestDevice }> {
  return testMirror(
    { size: options.size ?? 16 * MiB, pageSize: options.pageSize ?? 4 * KiB },
    {
      copy: options.copy ?? 'auto',
      ...(options.budget === undefined ? {} : { budget: options.budget }),
    },
    cleanups,
  );
}

const u32 = (bytes: Uint8Array): Uint32Array =>
  new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);

describe.each(['buffer', 'kernel'] as const)('GpuMirror with the %s copy engine', (copy) => {
  it('device read of a CPU-written buffer sees the CPU bytes', async () => {
    const { space, gpu } = await setup({ copy });
    const va = space.alloc(64 * KiB);
    const data = testRandom('device read').fill(new Uint8Array(64 * KiB));
    space.write(va, data);
    expect(firstDifference(await gpu.read(va, 64 * KiB), data)).toBe(-1);
    expect((await gpu.snapshot(va, 64 * KiB)).every((page) => page.state === 'shared')).toBe(true);
    expect(gpu.stats().gpuFaults).toBe(16);
  });

  it('device write then CPU read gives the device bytes', async () => {
    const { space, gpu } = await setup({ copy });
    const va = space.alloc(3 * 4 * KiB);
    space.fill(va, 3 * 4 * KiB, 1);
    const data = Uint32Array.from({ length: 1024 }, (_, i) => i * 3);
    await gpu.write(va + 4 * KiB, data);
    expect(
      (await gpu.snapshot(va, 3 * 4 * KiB)).map((page) => `${page.state}/${page.dirty}`),
    ).toEqual(['cpu/none', 'gpu/gpu', 'cpu/none']);
    // The main thread may not block: the async read faults the page back.
    expect(u32(await space.readAsync(va + 4 * KiB, 4 * KiB))).toEqual(data);
    expect((await gpu.snapshot(va + 4 * KiB, 4 * KiB))[0]).toEqual({
      state: 'shared',
      prot: 'rw',
      dirty: 'none',
    });
    expect(space.read(va, 4)).toEqual(new Uint8Array(4).fill(1));
  });

  it('migrate to the GPU, then read back through the mirror', async () => {
    const { space, gpu } = await setup({ copy });
    const va = space.alloc(1 * MiB);
    const data = testRandom('migrate then read').fill(new Uint8Array(1 * MiB));
    space.write(va, data);
    expect(await gpu.migrate(va, 1 * MiB, 'gpu')).toEqual({ pages: 256, bytes: 1 * MiB });
    expect(
      (await gpu.snapshot(va, 1 * MiB)).every((p) => p.state === 'gpu' && p.dirty === 'none'),
    ).toBe(true);
    const before = gpu.stats();
    expect(firstDifference(await gpu.read(va, 1 * MiB), data)).toBe(-1);
    expect(gpu.stats().bytesToGpu).toBe(before.bytesToGpu);
  });

  it('migrate, the CPU writes half, migrate again: exactly that half moves', async () => {
    const { space, gpu } = await setup({ copy });
    const pages = 64;
    const va = space.alloc(pages * 4 * KiB);
    space.fill(va, pages * 4 * KiB, 7);
    await gpu.migrate(va, pages * 4 * KiB, 'gpu');
    for (let page = 0; page < pages; page += 2) space.fill(va + page * 4 * KiB, 4 * KiB, page);
    expect(await gpu.migrate(va, pages * 4 * KiB, 'gpu')).toEqual({
      pages: pages / 2,
      bytes: (pages / 2) * 4 * KiB,
    });
    const expected = new Uint8Array(pages * 4 * KiB).fill(7);
    for (let page = 0; page < pages; page += 2)
      expected.fill(page, page * 4 * KiB, (page + 1) * 4 * KiB);
    expect(firstDifference(await gpu.read(va, pages * 4 * KiB), expected)).toBe(-1);
  });

  it('ten rounds of migrate and fault back with changing data stay coherent', async () => {
    const { space, gpu } = await setup({ copy });
    const random = testRandom('ten rounds');
    const len = 128 * KiB;
    const va = space.alloc(len);
    const expected = new Uint8Array(len);
    for (let round = 0; round < 10; round++) {
      random.fill(expected.subarray(0, len / 2));
      space.write(va, expected.subarray(0, len / 2));
      await gpu.migrate(va, len, 'gpu');
      const deviceBytes = random.fill(new Uint8Array(len / 4));
      const at = 4 * random.int(len / 4 / 4);
      expected.set(deviceBytes, at);
      await gpu.write(va + at, deviceBytes);
      expect(firstDifference(await space.readAsync(va, len), expected)).toBe(-1);
    }
  });

  it('snapshot of a seven-page layout reports every page truthfully', async () => {
    const { space, gpu } = await setup({ copy });
    const page = 4 * KiB;
    const va = space.alloc(7 * page);
    space.protect(va, page, 'none'); // 0: prot none
    space.free(va + page, page); // 1: unmapped
    // 2: zero
    space.setU32(va + 3 * page, 1);
    space.protect(va + 3 * page, page, 'r'); // 3: read-only, written
    space.setU32(va + 4 * page, 1); // 4: written
    space.setU32(va + 5 * page, 1);
    await gpu.migrate(va + 5 * page, page, 'gpu'); // 5: on the GPU
    await gpu.write(va + 6 * page, new Uint32Array([9])); // 6: dirty on the GPU
    expect(await gpu.snapshot(va, 7 * page)).toEqual([
      { state: 'zero', prot: 'none', dirty: 'none' },
      { state: 'unmapped', prot: 'none', dirty: 'none' },
      { state: 'zero', prot: 'rw', dirty: 'none' },
      { state: 'cpu', prot: 'r', dirty: 'none' },
      { state: 'cpu', prot: 'rw', dirty: 'none' },
      { state: 'gpu', prot: 'rw', dirty: 'none' },
      { state: 'gpu', prot: 'rw', dirty: 'gpu' },
    ]);
  });

  it('a migration of a range with an unmapped page fails and moves nothing', async () => {
    const { space, gpu } = await setup({ copy });
    const va = space.alloc(4 * 4 * KiB);
    space.fill(va, 4 * 4 * KiB, 3);
    space.free(va + 2 * 4 * KiB, 4 * KiB);
    const before = gpu.stats();
    await expect(gpu.migrate(va, 4 * 4 * KiB, 'gpu')).rejects.toMatchObject({
      code: 'ACCESS',
      reason: 'freed',
      address: va + 2 * 4 * KiB,
    });
    await expect(gpu.migrate(va, 4 * 4 * KiB, 'gpu')).rejects.toBeInstanceOf(AccessError);
    expect(gpu.stats()).toEqual(before);
    expect((await gpu.snapshot(va, 4 * 4 * KiB)).map((p) => p.state)).toEqual([
      'cpu',
      'cpu',
      'unmapped',
      'cpu',
    ]);
  });

  it('a clean GPU-owned page comes back to the CPU with zero bytes moved', async () => {
    const { space, gpu } = await setup({ copy });
    const va = space.alloc(16 * KiB);
    space.fill(va, 16 * KiB, 5);
    await gpu.migrate(va, 16 * KiB, 'gpu');
    const before = gpu.stats();
    expect(firstDifference(space.read(va, 16 * KiB), new Uint8Array(16 * KiB).fill(5))).toBe(-1);
    expect(await gpu.migrate(va, 16 * KiB, 'cpu')).toEqual({ pages: 0, bytes: 0 });
    const after = gpu.stats();
    expect([after.bytesToCpu, after.readbacks]).toEqual([before.bytesToCpu, before.readbacks]);
    expect((await gpu.snapshot(va, 16 * KiB)).every((p) => p.state === 'shared')).toBe(true);
  });

  it('after the CPU overwrites 1% of 64 MiB on the GPU, only those pages are uploaded', async () => {
    const { space, gpu } = await setup({
      copy,
      size: 80 * MiB,
      pageSize: 4 * KiB,
      budget: 72 * MiB,
    });
    const random = testRandom('one percent');
    const len = 64 * MiB;
    const pages = len / (4 * KiB);
    const va = space.alloc(len);
    space.fill(va, len, 1);
    await gpu.migrate(va, len, 'gpu');
    const touched = new Set<number>();
    while (touched.size < pages / 100) touched.add(random.int(pages));
    for (const page of touched) space.fill(va + page * 4 * KiB, 4 * KiB, 2);
    const before = gpu.stats().bytesToGpu;
    await gpu.migrate(va, len, 'gpu');
    expect(gpu.stats().bytesToGpu - before).toBe(touched.size * 4 * KiB);
    const sample = [...touched][0] ?? 0;
    expect(await gpu.read(va + sample * 4 * KiB, 8)).toEqual(new Uint8Array(8).fill(2));
  });

  it('a worker’s blocking read of a GPU-dirty page returns the GPU’s bytes', async () => {
    const { space, gpu } = await setup({ copy });
    const worker = new Worker(new URL('../space/space.worker.ts', import.meta.url), {
      type: 'module',
    });
    const api = wrap<SpaceWorkerApi>(worker);
    cleanups.push(() => {
      api[releaseProxy]();
      worker.terminate();
    });
    await api.attach(space.handle);
    const va = space.alloc(8 * KiB);
    const data = Uint32Array.from({ length: 2048 }, (_, i) => i ^ 0x5a5a);
    await gpu.write(va, data);
    expect(await api.readWords(va, 2048)).toEqual(data);
    expect(gpu.stats().cpuFaults).toBeGreaterThanOrEqual(1);
    expect((await gpu.snapshot(va, 8 * KiB)).map((p) => p.state)).toEqual(['shared', 'shared']);
  });
});

describe('GpuMirror', () => {
  it('re-uploads at most 256 bytes after a 16-byte CPU write to a page with a frame (buffer engine)', async () => {
    const { space, gpu } = await setup({ copy: 'buffer', pageSize: 64 * KiB });
    const va = space.alloc(64 * KiB);
    space.fill(va, 64 * KiB, 1);
    await gpu.migrate(va, 64 * KiB, 'gpu');
    space.write(va + 1000, new Uint8Array(16).fill(9));
    expect((await gpu.snapshot(va, 64 * KiB))[0]).toEqual({
      state: 'cpu',
      prot: 'rw',
      dirty: 'cpu',
    });
    const result = await gpu.migrate(va, 64 * KiB, 'gpu');
    expect(result.bytes).toBeGreaterThan(0);
    expect(result.bytes).toBeLessThanOrEqual(256);
    const seen = await gpu.read(va + 992, 32);
    expect([...seen.subarray(8, 24)]).toEqual(Array(16).fill(9));
    expect([...seen.subarray(0, 8), ...seen.subarray(24)]).toEqual(Array(16).fill(1));
  });

  it('refuses a migration beyond the budget with OutOfMemoryError, moving nothing', async () => {
    const { space, gpu } = await setup({ budget: 64 * KiB });
    const va = space.alloc(128 * KiB);
    space.fill(va, 128 * KiB, 1);
    const error = await gpu.migrate(va, 128 * KiB, 'gpu').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OutOfMemoryError);
    expect(error).toMatchObject({ reason: 'budget', requested: 128 * KiB, available: 64 * KiB });
    expect(gpu.stats()).toMatchObject({ framesInUse: 0, bytesToGpu: 0, budget: 64 * KiB });
    expect(await gpu.migrate(va, 64 * KiB, 'gpu')).toEqual({ pages: 16, bytes: 64 * KiB });
    expect(gpu.stats().framesInUse).toBe(16);
  });

  it('zero pages get cleared frames, with no upload', async () => {
    const { space, gpu } = await setup();
    const va = space.alloc(32 * KiB);
    expect(await gpu.migrate(va, 32 * KiB, 'gpu')).toEqual({ pages: 0, bytes: 0 });
    expect(firstDifference(await gpu.read(va, 32 * KiB), new Uint8Array(32 * KiB))).toBe(-1);
    expect(gpu.stats().bytesToGpu).toBe(0);
  });

  it('sync writes back every GPU-dirty page and only those', async () => {
    const { space, gpu } = await setup();
    const va = space.alloc(64 * KiB);
    await gpu.migrate(va, 64 * KiB, 'gpu');
    await gpu.write(va + 8 * KiB, new Uint32Array(1024).fill(4));
    await gpu.write(va + 40 * KiB, new Uint32Array(1).fill(5));
    expect(await gpu.sync()).toEqual({ pages: 2, bytes: 8 * KiB });
    expect(gpu.stats()).toMatchObject({ writebacks: 2, bytesToCpu: 8 * KiB });
    expect(space.getU32(va + 40 * KiB)).toBe(5);
    expect(await gpu.sync()).toEqual({ pages: 0, bytes: 0 });
  });

  it('frees frames of pages freed on the CPU, and never lets them leak into a reused VA', async () => {
    const { space, gpu } = await setup({ budget: 64 * KiB });
    const va = space.alloc(64 * KiB);
    await gpu.write(va, new Uint32Array(16 * 1024).fill(0xabcdef));
    space.free(va);
    const again = space.alloc(64 * KiB);
    expect(again).toBe(va);
    expect(space.read(again, 16)).toEqual(new Uint8Array(16));
    expect(await gpu.migrate(again, 64 * KiB, 'gpu')).toEqual({ pages: 0, bytes: 0 });
    expect(firstDifference(await gpu.read(again, 64 * KiB), new Uint8Array(64 * KiB))).toBe(-1);
  });

  it('reports every migration in stats and trace', async () => {
    const { space, gpu } = await setup();
    const events: unknown[] = [];
    gpu.trace((event) => events.push(event));
    const va = space.alloc(16 * KiB);
    space.fill(va, 16 * KiB, 1);
    await gpu.migrate(va, 16 * KiB, 'gpu');
    expect(events).toEqual([
      expect.objectContaining({
        kind: 'migration',
        cause: 'explicit',
        to: 'gpu',
        va,
        pages: 4,
        bytes: 16 * KiB,
      }),
    ]);
    expect(gpu.stats()).toMatchObject({ pagesToGpu: 4, bytesToGpu: 16 * KiB, framesInUse: 4 });
    expect(gpu.stats().bytesByCause.explicit).toBe(16 * KiB);
  });

  it('detach writes back dirty pages, and use after detach throws', async () => {
    const test = await testDevice();
    const space = AddressSpace.create({ size: 4 * MiB, pageSize: 4 * KiB });
    const gpu = await GpuMirror.attach(space, { device: test.device });
    const va = space.alloc(8 * KiB);
    await gpu.write(va, new Uint32Array([1, 2, 3]));
    await gpu.detach();
    await gpu.detach();
    expect(space.getU32(va + 8)).toBe(3);
    expect(space.snapshot(va, 8 * KiB).map((p) => p.state)).toEqual(['cpu', 'zero']);
    await expect(gpu.migrate(va, 4, 'gpu')).rejects.toBeInstanceOf(DeviceLostError);
    expect(test.liveBuffers()).toBe(0);
    expect(await test.validationError()).toBeUndefined();
    test.destroy();
  });

  it('on device loss, keeps every CPU write and reports the GPU-dirty bytes it could not save', async () => {
    const test = await testDevice();
    const space = AddressSpace.create({ size: 4 * MiB, pageSize: 4 * KiB });
    const gpu = await GpuMirror.attach(space, { device: test.device, budget: 1 * MiB });
    const va = space.alloc(3 * 4 * KiB);
    space.fill(va, 3 * 4 * KiB, 1);
    await gpu.migrate(va, 3 * 4 * KiB, 'gpu');
    space.setU32(va + 2 * 4 * KiB, 77); // acknowledged on the CPU side
    await gpu.write(va + 4 * KiB, new Uint32Array([5])); // only on the GPU
    const lost = new Promise((resolve) => void test.device.lost.then(resolve));
    test.device.destroy();
    await lost;
    const error = await gpu.migrate(va, 4, 'gpu').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(DeviceLostError);
    expect(error).toMatchObject({
      reason: 'device-lost',
      unsaved: [{ va: va + 4 * KiB, len: 4 * KiB }],
    });
    await gpu.detach();
    expect(space.getU32(va + 2 * 4 * KiB)).toBe(77);
    expect(space.getU32(va + 4 * KiB)).toBe(0x01010101); // the CPU copy: the GPU's write is lost
    expect(space.snapshot(va, 3 * 4 * KiB).map((p) => p.state)).toEqual(['cpu', 'cpu', 'cpu']);
    expect(test.liveBuffers()).toBe(0);
  });

  it('uploads large stale ranges exactly after a kernel run, and frees its staging at detach', async () => {
    const random = testRandom('staged after run');
    const bytes = 80 * MiB; // more than the 64 MiB of staging chunks: the rest goes by writeBuffer
    const { space, gpu, test } = await setup({
      size: 128 * MiB,
      pageSize: 64 * KiB,
      budget: bytes,
    });
    const va = space.alloc(bytes);
    const readOne = gpu.kernel({
      code: '@compute @workgroup_size(1) fn main() { _ = x_load_u32(0u); }',
      ranges: { x: 'read' },
    });
    await readOne.run({ workgroups: 1, uses: [{ name: 'x', va, len: bytes }] }); // the frames used by a run
    for (let round = 0; round < 3; round++) {
      const data = random.fill(new Uint8Array(bytes));
      space.write(va, data);
      const moved = await gpu.migrate(va, bytes, 'gpu');
      expect(moved.bytes).toBe(bytes);
      expect(firstDifference(await gpu.read(va, bytes), data), `round ${round}`).toBe(-1);
    }
    expect(typeof gpu.stats().copyEngine.stagedUploads).toBe('boolean');
    await gpu.detach();
    expect(test.liveBuffers()).toBe(0);
  });

  it('frees its staging when the device is lost during a large upload after a run', async () => {
    const test = await testDevice();
    cleanups.push(() => test.destroy());
    const space = AddressSpace.create({ size: 64 * MiB, pageSize: 64 * KiB });
    const gpu = await GpuMirror.attach(space, { device: test.device, budget: 32 * MiB });
    const va = space.alloc(32 * MiB);
    const readOne = gpu.kernel({
      code: '@compute @workgroup_size(1) fn main() { _ = x_load_u32(0u); }',
      ranges: { x: 'read' },
    });
    await readOne.run({ workgroups: 1, uses: [{ name: 'x', va, len: 32 * MiB }] });
    space.fill(va, 32 * MiB, 3);
    const moving = gpu.migrate(va, 32 * MiB, 'gpu').catch((error: unknown) => error);
    test.device.destroy();
    await moving;
    await gpu.detach();
    await new Promise((resolve) => setTimeout(resolve, 100)); // the chunks' mapAsync settles
    expect(test.liveBuffers()).toBe(0);
    expect(space.getU32(va + 32 * MiB - 4)).toBe(0x03030303); // the CPU copy stands
  });

  it('attaches with defaults on this adapter', async () => {
    const space = AddressSpace.create({ size: 4 * MiB });
    const gpu = await GpuMirror.attach(space);
    try {
      const stats = gpu.stats();
      expect(stats.budget).toBeGreaterThan(0);
      expect(stats.budget % space.pageSize).toBe(0);
      // min(binding limit / 4, 256 MiB), and no more than the space's 63 mappable pages.
      expect(stats.budget).toBe(Math.min(256 * MiB, 63 * space.pageSize));
      expect(stats.copyEngine.h2d.contiguous).toMatch(/^(kernel|buffer)$/);
      const va = space.alloc(64 * KiB);
      space.setU32(va, 42);
      await gpu.migrate(va, 64 * KiB, 'gpu');
      expect(u32(await gpu.read(va, 4))[0]).toBe(42);
    } finally {
      await gpu.detach();
    }
  });
});
