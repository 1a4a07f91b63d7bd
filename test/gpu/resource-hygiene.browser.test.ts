// Resource hygiene, counted on real WebGPU and real workers: attaching and
// detaching, compiling and destroying kernels, spawning and terminating
// workers, over and over, leave no GPU buffer, worker, thread record or
// registry entry behind; the pipeline cache and staging pools stay bounded.
import { afterEach, describe, expect, it } from 'vitest';
import { StagingPool, STAGING_IDLE_BYTES } from '../../src/gpu/staging-pool.ts';
import { cachedPipelineCount, PIPELINE_CACHE_ENTRIES } from '../../src/kernels/pipeline-cache.ts';
import { GpuMirror, kernelRuntimeOf } from '../../src/mirror/gpu-mirror.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import { internalsOf } from '../../src/space/internals.ts';
import { THREAD_FREE, THREAD_SLOTS, THREAD_WORDS } from '../../src/space/shared-layout.ts';
import { Threads } from '../../src/threads/threads.ts';
import { testDevice } from '../support/gpu.ts';
import type { CpuThreadApi } from '../threads/cpu-thread.worker.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Thread records of `space` in use: one per attached worker (the creating thread has none). */
function threadRecordsInUse(space: AddressSpace): number {
  const words = internalsOf(space).table.shared.threads;
  let inUse = 0;
  for (let slot = 0; slot < THREAD_SLOTS; slot++) {
    if (Atomics.load(words, slot * THREAD_WORDS) !== THREAD_FREE) inUse++;
  }
  return inUse;
}

/** Counts the Workers this page constructs and terminates while `body` runs. */
async function countingWorkers(
  body: () => Promise<void>,
): Promise<{ started: number; terminated: number }> {
  const counts = { started: 0, terminated: 0 };
  const Original = globalThis.Worker;
  class CountedWorker extends Original {
    constructor(url: string | URL, options?: WorkerOptions) {
      super(url, options);
      counts.started++;
    }
    override terminate(): void {
      counts.terminated++;
      super.terminate();
    }
  }
  globalThis.Worker = CountedWorker;
  try {
    await body();
  } finally {
    globalThis.Worker = Original;
  }
  return counts;
}

const ADD = (k: number): string => `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x < 16u) { hmm_store_u32(hmm_params.va + id.x * 4u, hmm_load_u32(hmm_params.va + id.x * 4u) + ${k}u); }
}`;

describe('resource hygiene', () => {
  it('attach and detach 100 times leave no GPU buffer alive and the fault service free', async () => {
    const test = await testDevice();
    cleanups.push(() => test.destroy());
    const space = AddressSpace.create({ size: 4 * MiB, pageSize: 4 * KiB });
    const va = space.alloc(64 * KiB);
    for (let round = 0; round < 100; round++) {
      const gpu = await GpuMirror.attach(space, {
        device: test.device,
        copy: round % 2 ? 'kernel' : 'buffer',
        budget: 1 * MiB,
      });
      await gpu.write(va, new Uint32Array([round]));
      await gpu.detach();
      expect(test.liveBuffers()).toBe(0);
    }
    // Each detach wrote the word back; each attach found the fault-server word free.
    expect(space.getU32(va)).toBe(99);
    expect(threadRecordsInUse(space)).toBe(0);
    expect(await test.validationError()).toBeUndefined();
  });

  it(`1000 kernels compiled, run and destroyed leave no kernel or GPU buffer, and at most ${PIPELINE_CACHE_ENTRIES} cached pipelines`, async () => {
    const test = await testDevice();
    cleanups.push(() => test.destroy());
    const space = AddressSpace.create({ size: 4 * MiB, pageSize: 4 * KiB });
    const gpu = await GpuMirror.attach(space, { device: test.device, budget: 1 * MiB });
    const va = space.alloc(4 * KiB);
    // The mirror's buffers and its kernel runtime's (made with the first kernel).
    let buffersOfMirror = 0;
    let expected = 0;
    // 100 distinct sources (ten kernels each in a row), more than the cache
    // keeps; every tenth kernel runs.
    for (let i = 0; i < 1000; i++) {
      const k = 1 + Math.floor(i / 10);
      const kernel = gpu.kernel({ code: ADD(k), params: { va: 'u32' } });
      if (i % 10 === 0) {
        await kernel.run({
          workgroups: 1,
          params: { va },
          uses: [{ va, len: 64, access: 'readwrite' }],
        });
        expected += k;
      } else {
        await kernel.ready;
      }
      kernel.destroy();
      expect(kernelRuntimeOf(gpu)?.liveKernels).toBe(0);
      if (i === 0) buffersOfMirror = test.liveBuffers();
    }
    expect(test.liveBuffers()).toBe(buffersOfMirror);
    expect(cachedPipelineCount(test.device)).toBe(PIPELINE_CACHE_ENTRIES);
    const word = new Uint32Array((await space.readAsync(va, 4)).buffer);
    expect(word[0]).toBe(expected);
    await gpu.detach();
    expect(test.liveBuffers()).toBe(0);
    expect(await test.validationError()).toBeUndefined();
  });

  it('50 workers spawned and terminated leave no worker or thread record behind', async () => {
    const space = AddressSpace.create({ size: 4 * MiB, pageSize: 4 * KiB });
    const va = space.alloc(4 * KiB);
    const counts = await countingWorkers(async () => {
      for (let round = 0; round < 50; round++) {
        const threads = await Threads.spawn<CpuThreadApi>(
          space,
          new URL('../threads/cpu-thread.worker.ts', import.meta.url),
          1,
        );
        const [worker] = threads.workers;
        await worker?.fill(va + round, 1, round + 1);
        expect(threadRecordsInUse(space)).toBe(1);
        await threads.terminate();
        expect(threadRecordsInUse(space)).toBe(0);
      }
    });
    expect(counts).toEqual({ started: 50, terminated: 50 });
    const written = await space.readAsync(va, 50);
    expect([...written]).toEqual(Array.from({ length: 50 }, (_, round) => round + 1));
  });

  it('a staging pool keeps idle buffers up to its byte bound, and one of each size', async () => {
    const test = await testDevice();
    cleanups.push(() => test.destroy());
    const usage = GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST;
    // The default bound is STAGING_IDLE_BYTES; a small one shows the rule.
    expect(STAGING_IDLE_BYTES).toBe(256 * MiB);
    const pool = new StagingPool(test.device, usage, 'test staging', 16 * KiB);
    const held = Array.from({ length: 10 }, () => pool.acquire(4 * KiB));
    expect(pool.created).toBe(10);
    for (const buffer of held) pool.release(buffer);
    expect(pool.created).toBe(4); // 16 KiB of 4 KiB buffers
    // One buffer of a size is kept whatever its size.
    pool.release(pool.acquire(64 * KiB));
    expect(pool.created).toBe(5);
    // Reuse: steady transfers create nothing.
    for (let i = 0; i < 20; i++) {
      const four = Array.from({ length: 4 }, () => pool.acquire(4 * KiB));
      const large = pool.acquire(64 * KiB);
      for (const buffer of [...four, large]) pool.release(buffer);
    }
    expect(pool.created).toBe(5);
    expect(test.liveBuffers()).toBe(5);
    pool.destroy();
    expect(test.liveBuffers()).toBe(0);
    expect(await test.validationError()).toBeUndefined();
  });
});
