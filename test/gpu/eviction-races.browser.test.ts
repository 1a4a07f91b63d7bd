// Eviction beside other calls, on real WebGPU: frames it freed for one call
// are not lost to another, its waits end within faultTimeoutMs and at a
// device loss, clean victims do not wait for dirty ones' readback, and the
// trace names the pages it took frames from. Each case was a defect a review
// found (the test failed before its fix).
import { afterEach, describe, expect, it } from 'vitest';
import { DeviceLostError, OutOfMemoryError } from '../../src/errors.ts';
import type { TraceEvent } from '../../src/gpu/mirror-stats.ts';
import { GpuMirror } from '../../src/mirror/gpu-mirror.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import { testDevice } from '../support/gpu.ts';
import { testMirror } from '../support/mirror.ts';
import { singleCallThread } from '../support/single-call-thread.ts';

const PAGE = 4096;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function setup(budgetPages: number, faultTimeoutMs?: number) {
  const spaceOptions = {
    size: 8 << 20,
    pageSize: PAGE,
    ...(faultTimeoutMs ? { faultTimeoutMs } : {}),
  };
  return testMirror(spaceOptions, { budget: budgetPages * PAGE }, cleanups);
}

/** `pages` new pages of `byte`, `shared` with their frames (clean: eviction takes them first). */
async function cleanPages(space: AddressSpace, gpu: GpuMirror, pages: number, byte = 1) {
  const va = space.alloc(pages * PAGE);
  space.fill(va, pages * PAGE, byte);
  await gpu.migrate(va, pages * PAGE, 'gpu');
  await gpu.migrate(va, pages * PAGE, 'cpu');
  return va;
}

const outcome = (p: Promise<unknown>) =>
  p.then(
    (v) => ({ ok: v }),
    (e: unknown) => ({ error: `${(e as Error).name}: ${(e as Error).message}` }),
  );

describe('frames eviction freed go to the call that freed them', () => {
  /** The whole budget in clean pages, and two 8-page ranges to bring in. */
  async function full() {
    const { space, gpu } = await setup(16);
    await cleanPages(space, gpu, 16);
    const [a, b] = [space.alloc(8 * PAGE), space.alloc(8 * PAGE)];
    space.fill(a, 8 * PAGE, 2);
    space.fill(b, 8 * PAGE, 3);
    return { gpu, a, b };
  }

  it('two migrations that fit the budget together both succeed by evicting', async () => {
    const { gpu, a, b } = await full();
    const results = await Promise.all([
      outcome(gpu.migrate(a, 8 * PAGE, 'gpu')),
      outcome(gpu.migrate(b, 8 * PAGE, 'gpu')),
    ]);
    expect(results).toEqual([
      { ok: { pages: 8, bytes: 8 * PAGE } },
      { ok: { pages: 8, bytes: 8 * PAGE } },
    ]);
  });

  it('a prefetch beside a migration, which fit the budget together, is neither an error', async () => {
    const { gpu, a, b } = await full();
    const [prefetched, migrated] = await Promise.all([
      outcome(gpu.prefetch(a, 8 * PAGE, 'gpu')),
      outcome(gpu.migrate(b, 8 * PAGE, 'gpu')),
    ]);
    // Past what the budget holds a prefetch is an ignored hint; the migration evicts.
    expect(prefetched).not.toHaveProperty('error');
    expect(migrated).not.toHaveProperty('error');
  });
});

describe('frames eviction freed go to the call that freed them, even when taken meanwhile', () => {
  it('a migration whose clean victims another call took during its dirty readback still gets its frames', async () => {
    const { space, gpu } = await testMirror(
      { size: 8 << 20, pageSize: PAGE },
      { budget: 16 * PAGE, copy: 'buffer' }, // no reserve
      cleanups,
    );
    await cleanPages(space, gpu, 4);
    const dirty = space.alloc(12 * PAGE);
    await gpu.write(dirty, new Uint8Array(12 * PAGE).fill(2)); // the budget full
    const [a, b] = [space.alloc(8 * PAGE), space.alloc(4 * PAGE)];
    space.fill(a, 8 * PAGE, 3);
    space.fill(b, 4 * PAGE, 4);
    // b is called as a's round submits its dirty readback, its clean victims already freed.
    const queue = gpu.device.queue;
    const submit = queue.submit.bind(queue);
    let second: Promise<unknown> | undefined;
    queue.submit = (buffers: Iterable<GPUCommandBuffer>) => {
      submit(buffers);
      second ??= outcome(gpu.migrate(b, 4 * PAGE, 'gpu'));
    };
    let first: unknown;
    try {
      first = await outcome(gpu.migrate(a, 8 * PAGE, 'gpu'));
    } finally {
      queue.submit = submit;
    }
    expect(await second).toEqual({ ok: { pages: 4, bytes: 4 * PAGE } });
    // 8 + 4 frames of 16: unheld dirty pages were left to evict.
    expect(first).toEqual({ ok: { pages: 8, bytes: 8 * PAGE } });
    expect((await space.readAsync(dirty, 12 * PAGE)).every((byte) => byte === 2)).toBe(true);
  });
});

describe("eviction's waits", () => {
  it('a migration needing frames ends within faultTimeoutMs of waiting on others, in all', async () => {
    const timeout = 1000;
    const { space, gpu } = await setup(16, timeout);
    const filler = await cleanPages(space, gpu, 16);
    const target = space.alloc(PAGE);
    space.fill(target, PAGE, 2);
    // Every frame's page is in a read scope: no victim while it lasts.
    const lease = await space.acquire(filler, 16 * PAGE, 'read');
    cleanups.push(() => lease.release());
    // A worker's read scope on the target makes the migration wait for its hold first.
    const worker = await singleCallThread(space, cleanups);
    await worker.acquireRead(target, PAGE);
    const started = performance.now();
    setTimeout(() => void worker.release(), 0.8 * timeout);
    const error = await gpu.migrate(target, PAGE, 'gpu').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(OutOfMemoryError);
    expect(performance.now() - started).toBeLessThan(timeout + 400);
  });

  it('a migration waiting for frames rejects with DeviceLostError when the device is lost', async () => {
    const timeout = 4000;
    const test = await testDevice();
    const space = AddressSpace.create({ size: 4 << 20, pageSize: PAGE, faultTimeoutMs: timeout });
    const gpu = await GpuMirror.attach(space, { device: test.device, budget: 16 * PAGE });
    cleanups.push(async () => {
      await gpu.detach();
      test.destroy();
    });
    const filler = await cleanPages(space, gpu, 16);
    const lease = await space.acquire(filler, 16 * PAGE, 'read'); // no victim while it lasts
    cleanups.push(() => lease.release());
    const target = space.alloc(PAGE);
    const migrated = gpu.migrate(target, PAGE, 'gpu').then(
      () => undefined,
      (e: unknown) => e,
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    const lostAt = performance.now();
    test.device.destroy();
    await gpu.lost;
    expect(await migrated).toBeInstanceOf(DeviceLostError);
    // The loss ends the wait, not faultTimeoutMs.
    expect(performance.now() - lostAt).toBeLessThan(timeout / 4);
  });

  it("a main-thread read of a clean victim does not wait for the dirty victims' readback", async () => {
    const { space, gpu } = await setup(64);
    const clean = await cleanPages(space, gpu, 40, 3); // least recently used
    const dirty = space.alloc(24 * PAGE);
    await gpu.write(dirty, new Uint8Array(24 * PAGE).fill(4));
    const next = space.alloc(62 * PAGE);
    space.fill(next, 62 * PAGE, 5);
    const migrated = gpu.migrate(next, 62 * PAGE, 'gpu'); // evicts every frame's page
    await new Promise((resolve) => setTimeout(resolve, 0)); // while the dirty pages are read back
    let result = 'ok';
    try {
      space.getU32(clean); // a clean page's CPU copy is valid: no transfer needed
    } catch (error) {
      result = `${(error as Error).name}: ${(error as Error).message}`;
    }
    await migrated;
    expect(result).toBe('ok');
  });
});

it('counts the clean victims it freed when the device is lost during the dirty ones readback', async () => {
  const test = await testDevice();
  const space = AddressSpace.create({ size: 4 << 20, pageSize: PAGE });
  const gpu = await GpuMirror.attach(space, {
    device: test.device,
    budget: 16 * PAGE,
    copy: 'buffer',
  });
  cleanups.push(async () => {
    await gpu.detach();
    test.destroy();
  });
  await cleanPages(space, gpu, 8);
  await gpu.write(space.alloc(8 * PAGE), new Uint8Array(8 * PAGE).fill(2)); // the budget full
  const next = space.alloc(16 * PAGE);
  // The device goes as the round submits its dirty readback, its clean victims already freed.
  const queue = gpu.device.queue;
  const submit = queue.submit.bind(queue);
  queue.submit = (buffers: Iterable<GPUCommandBuffer>) => {
    submit(buffers);
    queue.submit = submit;
    test.device.destroy();
  };
  const error = await gpu.migrate(next, 16 * PAGE, 'gpu').catch((e: unknown) => e);
  queue.submit = submit;
  expect(error).toBeInstanceOf(DeviceLostError);
  expect(gpu.stats().evictions).toBe(8);
});

it('traces an eviction of clean pages with the range it took frames from', async () => {
  const { space, gpu } = await setup(16);
  const clean = await cleanPages(space, gpu, 16);
  const next = space.alloc(8 * PAGE);
  const events: TraceEvent[] = [];
  gpu.trace((event) => events.push(event));
  await gpu.migrate(next, 8 * PAGE, 'gpu');
  const eviction = events.find((event) => event.cause === 'eviction');
  expect(eviction).toMatchObject({ evicted: 8, pages: 0, bytes: 0 });
  expect(eviction?.va).toBeGreaterThanOrEqual(clean);
  expect((eviction?.va ?? 0) + (eviction?.len ?? 0)).toBeLessThanOrEqual(clean + 16 * PAGE);
  expect(eviction?.len).toBeGreaterThan(0);
});
