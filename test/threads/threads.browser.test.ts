// CPU threads through Threads.spawn, on real workers and real WebGPU:
// concurrent faults, fault-around, termination.
import { afterEach, describe, expect, it } from 'vitest';
import { GpuMirror } from '../../src/gpu/gpu-mirror.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import { Threads } from '../../src/threads/threads.ts';
import { testDevice } from '../support/gpu.ts';
import type { CpuThreadApi as CpuThread } from './cpu-thread.worker.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(size: number, pageSize: number) {
  const test = await testDevice();
  const space = AddressSpace.create({ size, pageSize });
  const gpu = await GpuMirror.attach(space, { device: test.device });
  cleanups.push(async () => {
    await gpu.detach();
    expect(await test.validationError()).toBeUndefined();
    expect(test.liveBuffers()).toBe(0);
    test.destroy();
  });
  return { space, gpu };
}

async function spawn(space: AddressSpace, count: number): Promise<Threads<CpuThread>> {
  const threads = await Threads.spawn<CpuThread>(
    space,
    new URL('./cpu-thread.worker.ts', import.meta.url),
    count,
  );
  cleanups.push(() => threads.terminate());
  return threads;
}

describe('Threads', () => {
  it('spawns workers with the space attached and numbered', async () => {
    const space = AddressSpace.create({ size: 1 * MiB });
    const threads = await spawn(space, 3);
    expect(threads.size).toBe(3);
    expect(await threads.map((thread) => thread.index())).toEqual([0, 1, 2]);
  });

  it('rejects a bad count and a worker that fails to start', async () => {
    const space = AddressSpace.create({ size: 1 * MiB });
    await expect(Threads.spawn(space, 'data:text/javascript,', 0)).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      argument: 'count',
    });
    await expect(
      Threads.spawn(space, new URL('./missing.worker.ts', import.meta.url), 1),
    ).rejects.toThrow(/did not start/);
  });
});

describe('concurrent CPU faults', () => {
  it('8 workers reading their own 512 GPU-dirty pages in order need at most 1/8 as many readbacks', async () => {
    const pages = 512;
    const pageSize = 4 * KiB;
    const bytes = 8 * pages * pageSize;
    const { space, gpu } = await setup(bytes + 1 * MiB, pageSize);
    const va = space.alloc(bytes);
    const seed = 0x1234;
    await gpu.write(
      va,
      Uint32Array.from({ length: bytes / 4 }, (_, w) => seed + w),
    );
    const before = gpu.stats();
    const threads = await spawn(space, 8);
    const wrong = await threads.map((thread, i) =>
      thread.readPagesInOrder(va + i * pages * pageSize, pages, seed + (i * pages * pageSize) / 4),
    );
    expect(wrong).toEqual(new Array(8).fill(0));
    const after = gpu.stats();
    const readbacks = after.readbacks - before.readbacks;
    console.log(
      `8 x ${pages} pages read in order: ${readbacks} readbacks, ${after.cpuFaults - before.cpuFaults} faults`,
    );
    expect(after.pagesToCpu - before.pagesToCpu).toBe(8 * pages);
    expect(readbacks).toBeLessThanOrEqual((8 * pages) / 8);
  });
});
