// Threads that own a GpuMirror, on real workers and real WebGPU: a thread
// ended with its mirror attached gives everything back (the fault service
// included), and a mirror in a worker syncs and detaches any number of pages.
import { afterEach, describe, expect, it } from 'vitest';
import { DeviceLostError } from '../../src/errors.ts';
import { GpuMirror } from '../../src/mirror/gpu-mirror.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import { THREAD_JOURNAL_CAPACITY } from '../../src/space/shared-layout.ts';
import { Threads } from '../../src/threads/threads.ts';
import { endsWithin as ends } from '../support/deadline.ts';
import { testDevice } from '../support/gpu.ts';
import type { MirrorThreadApi } from './mirror-thread.worker.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const PAGE = 4 * KiB;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function spawnMirrorThread(space: AddressSpace): Promise<{
  threads: Threads<MirrorThreadApi>;
  worker: Threads<MirrorThreadApi>['workers'][number];
}> {
  const threads = await Threads.spawn<MirrorThreadApi>(
    space,
    new URL('./mirror-thread.worker.ts', import.meta.url),
    1,
  );
  cleanups.push(() => threads.terminate());
  const worker = threads.workers[0];
  if (!worker) throw new Error('no worker');
  return { threads, worker };
}

/** Resolves once word 0 of `flag` is 1. */
async function raised(flag: SharedArrayBuffer): Promise<void> {
  const word = new Int32Array(flag);
  while (Atomics.load(word, 0) === 0) {
    const waited = Atomics.waitAsync(word, 0, 0, 1000);
    if (waited.async) await waited.value;
  }
}

describe('a thread that owns a GpuMirror', () => {
  it('ended with its mirror attached, gives the fault service back: a waiting read of its GPU-dirty page fails with DeviceLostError and a new mirror attaches', async () => {
    const space = AddressSpace.create({ size: 4 * MiB, pageSize: PAGE, faultTimeoutMs: 6000 });
    const { threads, worker } = await spawnMirrorThread(space);
    await worker.attach();
    const va = space.alloc(2 * PAGE);
    space.fill(va, 2 * PAGE, 1);
    await worker.write(va, new Uint32Array([42])); // page 0: GPU-dirty, only on that device
    await worker.migrate(va + PAGE, PAGE, 'gpu'); // page 1: GPU-owned, clean
    const flag = new SharedArrayBuffer(8);
    void worker.block(flag).catch(() => undefined);
    await raised(flag);
    // A read that must wait for the worker's mirror, which serves nothing now.
    const pending = space.readAsync(va, 8).then(
      (bytes) => bytes,
      (error: unknown) => error,
    );
    await threads.terminate();
    const outcome = await ends(pending, 3000, 'the read of the lost page');
    expect(outcome).toBeInstanceOf(DeviceLostError);
    expect(outcome).toMatchObject({ code: 'DEVICE_LOST', unsaved: [{ va, len: PAGE }] });
    // Its pages fell back to their CPU copies: the GPU-only word is gone, the rest kept.
    expect(space.snapshot(va, 2 * PAGE).map((page) => page.state)).toEqual(['cpu', 'cpu']);
    expect(space.getU32(va)).toBe(0x01010101);
    expect(space.getU32(va + PAGE)).toBe(0x01010101);
    const test = await testDevice();
    const gpu = await GpuMirror.attach(space, { device: test.device });
    await gpu.write(va, new Uint32Array([7]));
    expect(space.getU32(va + PAGE + 4)).toBe(0x01010101);
    expect(new Uint32Array((await space.readAsync(va, 4)).buffer)[0]).toBe(7);
    await gpu.detach();
    expect(test.liveBuffers()).toBe(0);
    test.destroy();
  });

  it(`syncs and detaches more scattered GPU-dirty pages than its hold journal takes (${THREAD_JOURNAL_CAPACITY})`, async () => {
    const space = AddressSpace.create({ size: 8 * MiB, pageSize: PAGE });
    const { worker } = await spawnMirrorThread(space);
    await worker.attach();
    const count = 200;
    const va = space.alloc(2 * count * PAGE);
    await worker.dirtyPages(va, count, 2 * PAGE, 5);
    expect(await ends<unknown>(worker.sync(), 20_000, 'sync')).toEqual({ pages: count });
    await worker.dirtyPages(va, count, 2 * PAGE, 9);
    expect(await ends<unknown>(worker.detach(), 20_000, 'detach')).toBeUndefined();
    let wrong = 0;
    for (let i = 0; i < count; i++) {
      const words = new Uint32Array(space.read(va + i * 2 * PAGE, PAGE).buffer);
      words.forEach((word, w) => {
        if (word !== 9 + i * 1000 + w) wrong++;
      });
    }
    expect(wrong).toBe(0);
    expect(new Set(space.snapshot(va, 2 * count * PAGE).map((page) => page.state))).toEqual(
      new Set(['cpu', 'zero']),
    );
  });
});
