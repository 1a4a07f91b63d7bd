// A mirror's lifecycle on real WebGPU: detach racing GPU work, a detach that
// cannot finish, the CPU fault service surviving a failed batch, device loss
// at every stage, and background write-back bounding what a loss can take.
import { afterEach, describe, expect, it } from 'vitest';
import { DeviceLostError, WouldBlockError } from '../../src/errors.ts';
import { GpuMirror } from '../../src/mirror/gpu-mirror.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import {
  FAULT_POSTED,
  FAULT_SLOTS,
  FAULT_STATE,
  FAULT_WORDS,
  HEADER_ALLOC_MUTEX,
} from '../../src/space/shared-layout.ts';
import { internalsOf } from '../../src/space/internals.ts';
import { Threads } from '../../src/threads/threads.ts';
import { endsWithin as ends } from '../support/deadline.ts';
import { testDevice } from '../support/gpu.ts';
import { testMirror } from '../support/mirror.ts';
import type { CpuThreadApi } from '../threads/cpu-thread.worker.ts';
import type { MirrorThreadApi } from '../threads/mirror-thread.worker.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const PAGE = 4 * KiB;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function spawnCpuThreads(space: AddressSpace, count: number): Promise<Threads<CpuThreadApi>> {
  const threads = await Threads.spawn<CpuThreadApi>(
    space,
    new URL('../threads/cpu-thread.worker.ts', import.meta.url),
    count,
  );
  cleanups.push(() => threads.terminate());
  return threads;
}

/** The rejection of `call`, or an Error if it resolved. */
async function rejection(call: Promise<unknown>): Promise<unknown> {
  return call.then(
    () => new Error('expected a rejection'),
    (error: unknown) => error,
  );
}

const ADD_ONE = /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  let va = hmm_params.va + id.x * 4u;
  hmm_store_u32(va, hmm_load_u32(va) + 1u);
}`;

describe('detach racing GPU work', () => {
  it('a detach called while a gpu.write is in flight waits for it and writes the page back', async () => {
    const { space, gpu } = await testMirror({ size: 4 * MiB, pageSize: PAGE }, {}, cleanups);
    const va = space.alloc(2 * PAGE);
    const write = gpu.write(va + PAGE, new Uint32Array([7, 8, 9]));
    const detach = gpu.detach();
    await Promise.all([write, detach]);
    const words = new Uint32Array(
      (await ends(space.readAsync(va + PAGE, 12), 3000, 'read')).buffer,
    );
    expect([...words]).toEqual([7, 8, 9]);
    expect(space.snapshot(va, 2 * PAGE).map((p) => p.state)).toEqual(['zero', 'cpu']);
  });

  it('a detach called while a kernel runs waits for the run and writes its stores back', async () => {
    const { space, gpu } = await testMirror({ size: 4 * MiB, pageSize: PAGE }, {}, cleanups);
    const va = space.alloc(PAGE);
    space.fill(va, PAGE, 1);
    const kernel = gpu.kernel({ code: ADD_ONE, params: { va: 'u32' } });
    await kernel.ready;
    const run = kernel.run({
      workgroups: 16,
      params: { va },
      uses: [{ va, len: PAGE, access: 'readwrite' }],
    });
    const detach = gpu.detach();
    await Promise.all([run, detach]);
    const bytes = await ends(space.readAsync(va, PAGE), 3000, 'read');
    expect(new Uint32Array(bytes.buffer).every((word) => word === 0x01010102)).toBe(true);
    expect(space.snapshot(va, PAGE)[0]?.state).toBe('cpu');
  });

  it('a detach called while a migration is in flight waits for it and leaves no page GPU-owned', async () => {
    const { space, gpu } = await testMirror({ size: 4 * MiB, pageSize: PAGE }, {}, cleanups);
    const va = space.alloc(8 * PAGE);
    space.fill(va, 8 * PAGE, 3);
    const migrate = gpu.migrate(va, 8 * PAGE, 'gpu');
    const detach = gpu.detach();
    await Promise.all([migrate, detach]);
    expect(new Set(space.snapshot(va, 8 * PAGE).map((p) => p.state))).toEqual(new Set(['cpu']));
    expect(space.read(va, 8 * PAGE).every((byte) => byte === 3)).toBe(true);
  });

  it('calls made after detach began reject with DeviceLostError detached', async () => {
    const { space, gpu } = await testMirror({ size: 4 * MiB, pageSize: PAGE }, {}, cleanups);
    const va = space.alloc(PAGE);
    const kernel = gpu.kernel({ code: ADD_ONE, params: { va: 'u32' } });
    await gpu.write(va, new Uint32Array([1]));
    const detach = gpu.detach();
    const calls = [
      gpu.write(va, new Uint32Array([2])),
      gpu.read(va, 4),
      gpu.migrate(va, PAGE, 'gpu'),
      gpu.sync(),
      kernel.run({ workgroups: 1, params: { va }, uses: [{ va, len: PAGE, access: 'readwrite' }] }),
    ];
    for (const call of calls) {
      expect(await rejection(call)).toMatchObject({ code: 'DEVICE_LOST', reason: 'detached' });
    }
    await detach;
    expect(space.getU32(va)).toBe(1);
  });

  it('a detach that cannot take a leased page back ends after faultTimeoutMs, says which page, and leaves it readable', async () => {
    const test = await testDevice();
    const space = AddressSpace.create({ size: 4 * MiB, pageSize: PAGE, faultTimeoutMs: 300 });
    const gpu = await GpuMirror.attach(space, { device: test.device });
    const va = space.alloc(3 * PAGE);
    space.fill(va, 3 * PAGE, 5);
    await gpu.write(va, new Uint32Array([11]));
    await gpu.migrate(va + PAGE, 2 * PAGE, 'gpu');
    // A read lease on page 1 (it becomes `shared`), held past the timeout.
    const lease = await space.acquire(va + PAGE, 4, 'read');
    const error = await ends(rejection(gpu.detach()), 5000, 'detach');
    expect(error).toBeInstanceOf(WouldBlockError);
    expect(error).toMatchObject({ reason: 'timeout', address: va + PAGE });
    expect((error as Error).message).toContain(`0x${(va + PAGE).toString(16)}`);
    expect(lease.bytes[0]).toBe(5);
    lease.release();
    expect(space.snapshot(va, 3 * PAGE).map((p) => p.state)).toEqual(['cpu', 'cpu', 'cpu']);
    expect(space.getU32(va)).toBe(11);
    expect(space.getU32(va + PAGE)).toBe(0x05050505);
    expect(test.liveBuffers()).toBe(0);
    // A new mirror sees the page's CPU bytes, not a frame the old one left behind.
    const next = await GpuMirror.attach(space, { device: test.device });
    expect([...(await next.read(va + PAGE, 8))]).toEqual(new Array(8).fill(5));
    await next.detach();
    expect(test.liveBuffers()).toBe(0);
    test.destroy();
  });
});

describe('the CPU fault service', () => {
  it('survives a batch that throws (the allocator mutex held past spinLimitMs): those requests fail typed, the next is served', async () => {
    const { space, gpu } = await testMirror(
      { size: 4 * MiB, pageSize: PAGE, spinLimitMs: 50, faultTimeoutMs: 4000 },
      {},
      cleanups,
    );
    const threads = await spawnCpuThreads(space, 1);
    const worker = threads.workers[0];
    if (!worker) throw new Error('no worker');
    const a = space.alloc(PAGE);
    const b = space.alloc(PAGE);
    await gpu.write(a, new Uint8Array(PAGE).fill(2));
    await gpu.write(b, new Uint8Array(PAGE).fill(3));
    // Another thread stuck in the allocator's critical section: fault-around
    // (which asks the allocator for the page's allocation) spins, then throws.
    const header = new Int32Array(space.handle.meta);
    Atomics.store(header, HEADER_ALLOC_MUTEX, 1);
    const first = worker.readSum(a, PAGE).then(
      (sum) => sum,
      (error: unknown) => error,
    );
    await sleep(400);
    Atomics.store(header, HEADER_ALLOC_MUTEX, 0);
    Atomics.notify(header, HEADER_ALLOC_MUTEX);
    const outcome = await ends(first, 3000, 'the read whose batch failed');
    expect(outcome).toBeInstanceOf(Error);
    expect((outcome as Error).message).toMatch(/fault service/);
    expect(await ends(worker.readSum(b, PAGE), 3000, 'the next read')).toBe(3 * PAGE);
    expect(await ends(worker.readSum(a, PAGE), 3000, 'the retried read')).toBe(2 * PAGE);
  });
});

/** A mirror on its own counted test device, for tests that lose the device; cleanup detaches (which resolves after a loss). */
async function lossSetup(options: { size?: number } = {}) {
  const test = await testDevice();
  const space = AddressSpace.create({ size: options.size ?? 4 * MiB, pageSize: PAGE });
  const gpu = await GpuMirror.attach(space, { device: test.device });
  cleanups.push(async () => {
    await gpu.detach();
    test.destroy();
  });
  return { test, space, gpu };
}

/** `call`'s outcome: its value, or the error it rejected with. */
function outcome(call: Promise<unknown>): Promise<unknown> {
  return call.then(
    (value) => value,
    (error: unknown) => error,
  );
}

/** A page-filled range: page i of `pages` holds byte `fill + i` on the CPU. */
function fillPages(space: AddressSpace, va: number, pages: number, fill: number): void {
  for (let i = 0; i < pages; i++) space.fill(va + i * PAGE, PAGE, fill + i);
}

function everyByte(bytes: Uint8Array, value: number): boolean {
  return bytes.every((byte) => byte === value);
}

/** After the loss: a new mirror on a new device attaches and carries on. */
async function reattach(space: AddressSpace, va: number): Promise<void> {
  const test = await testDevice();
  const next = await GpuMirror.attach(space, { device: test.device });
  await next.write(va, new Uint32Array([0xabcd]));
  expect(new Uint32Array((await space.readAsync(va, 4)).buffer)[0]).toBe(0xabcd);
  await next.detach();
  expect(test.liveBuffers()).toBe(0);
  test.destroy();
}

describe('device loss', () => {
  it('idle: gpu.lost names exactly the acknowledged GPU-dirty pages, later calls reject with that list, CPU bytes are kept', async () => {
    const { test, space, gpu } = await lossSetup();
    const va = space.alloc(6 * PAGE);
    fillPages(space, va, 6, 1);
    await gpu.migrate(va, 6 * PAGE, 'gpu');
    space.setU32(va, 77); // acknowledged on the CPU side: page 0 is `cpu` again
    await gpu.write(va + PAGE, new Uint32Array([5])); // only on the GPU
    await gpu.write(va + 2 * PAGE, new Uint32Array([6]));
    await gpu.write(va + 4 * PAGE, new Uint32Array([8]));
    const kernel = gpu.kernel({ code: ADD_ONE, params: { va: 'u32' } });
    await kernel.ready;
    test.device.destroy();
    // A write acknowledged after the destroy, before the loss is known, is listed if it resolves.
    const late = await outcome(gpu.write(va + 5 * PAGE, new Uint32Array([9])));
    const loss = await ends(gpu.lost, 5000, 'gpu.lost');
    const expected = [
      { va: va + PAGE, len: 2 * PAGE },
      { va: va + 4 * PAGE, len: late instanceof Error ? PAGE : 2 * PAGE },
    ];
    if (late instanceof Error)
      expect(late).toMatchObject({ code: 'DEVICE_LOST', unsaved: expected });
    expect(loss).toMatchObject({ reason: 'destroyed', unsaved: expected });
    for (const call of [
      gpu.migrate(va, PAGE, 'gpu'),
      gpu.write(va, new Uint32Array([1])),
      gpu.read(va, 4),
      gpu.sync(),
      kernel.run({ workgroups: 1, params: { va }, uses: [{ va, len: PAGE, access: 'readwrite' }] }),
    ]) {
      const error = await rejection(call);
      expect(error).toBeInstanceOf(DeviceLostError);
      expect(error).toMatchObject({ reason: 'device-lost', unsaved: expected });
    }
    expect(() => gpu.kernel({ code: ADD_ONE, params: { va: 'u32' } })).toThrow(DeviceLostError);
    await ends(gpu.detach(), 5000, 'detach after the loss');
    expect(gpu.stats().framesInUse).toBe(0);
    expect(space.getU32(va)).toBe(77);
    for (let i = 1; i < 6; i++) {
      expect(everyByte(space.read(va + i * PAGE, PAGE), 1 + i), `page ${i}`).toBe(true);
    }
    expect(new Set(space.snapshot(va, 6 * PAGE).map((p) => p.state))).toEqual(new Set(['cpu']));
    await reattach(space, va);
  });

  it('during an upload: the migration ends typed or done, nothing was dirty, every CPU byte is kept', async () => {
    const { test, space, gpu } = await lossSetup({ size: 16 * MiB });
    const va = space.alloc(256 * PAGE);
    fillPages(space, va, 256, 0);
    const migrate = outcome(gpu.migrate(va, 256 * PAGE, 'gpu'));
    test.device.destroy();
    const result = await ends(migrate, 5000, 'the migration');
    const loss = await ends(gpu.lost, 5000, 'gpu.lost');
    expect(loss.unsaved).toEqual([]);
    if (result instanceof Error) expect(result).toMatchObject({ code: 'DEVICE_LOST', unsaved: [] });
    await gpu.detach();
    for (let i = 0; i < 256; i++) {
      expect(everyByte(space.read(va + i * PAGE, PAGE), i & 0xff), `page ${i}`).toBe(true);
    }
    await reattach(space, va);
  });

  it('during a kernel run: the run rejects and is not listed; earlier acknowledged writes are', async () => {
    const { test, space, gpu } = await lossSetup();
    const va = space.alloc(4 * PAGE);
    fillPages(space, va, 4, 1);
    await gpu.write(va, new Uint32Array([3])); // acknowledged: page 0 is GPU-dirty
    const kernel = gpu.kernel({ code: ADD_ONE, params: { va: 'u32' } });
    await kernel.ready;
    const at = va + 2 * PAGE;
    const run = outcome(
      kernel.run({
        workgroups: 16,
        params: { va: at },
        uses: [{ va: at, len: PAGE, access: 'readwrite' }],
      }),
    );
    test.device.destroy();
    const error = await ends(run, 5000, 'the run');
    const expected = [{ va, len: PAGE }];
    expect(error).toBeInstanceOf(DeviceLostError);
    expect(error).toMatchObject({ unsaved: expected });
    expect((await ends(gpu.lost, 5000, 'gpu.lost')).unsaved).toEqual(expected);
    await gpu.detach();
    for (let i = 0; i < 4; i++) {
      expect(everyByte(space.read(va + i * PAGE, PAGE), 1 + i), `page ${i}`).toBe(true);
    }
    await reattach(space, va);
  });

  it('during a readback (sync): the sync rejects, listing the pages it could not read back', async () => {
    const { test, space, gpu } = await lossSetup();
    const va = space.alloc(5 * PAGE);
    fillPages(space, va, 5, 1);
    await gpu.write(va + PAGE, new Uint8Array(2 * PAGE).fill(0xee));
    await gpu.write(va + 4 * PAGE, new Uint32Array([4]));
    const sync = outcome(gpu.sync());
    test.device.destroy();
    const error = await ends(sync, 5000, 'the sync');
    const expected = [
      { va: va + PAGE, len: 2 * PAGE },
      { va: va + 4 * PAGE, len: PAGE },
    ];
    expect(error).toBeInstanceOf(DeviceLostError);
    expect(error).toMatchObject({ unsaved: expected });
    expect((await ends(gpu.lost, 5000, 'gpu.lost')).unsaved).toEqual(expected);
    await gpu.detach();
    for (let i = 0; i < 5; i++) {
      expect(everyByte(space.read(va + i * PAGE, PAGE), 1 + i), `page ${i}`).toBe(true);
    }
    await reattach(space, va);
  });

  it('during CPU fault service: the worker reading a GPU-dirty page gets DeviceLostError naming it, not a hang', async () => {
    const { test, space, gpu } = await lossSetup();
    const threads = await Threads.spawn<MirrorThreadApi>(
      space,
      new URL('../threads/mirror-thread.worker.ts', import.meta.url),
      1,
    );
    cleanups.push(() => threads.terminate());
    const worker = threads.workers[0];
    if (!worker) throw new Error('no worker');
    const va = space.alloc(3 * PAGE);
    fillPages(space, va, 3, 1);
    await gpu.write(va + PAGE, new Uint8Array(PAGE).fill(0x55));
    const read: Promise<unknown> = worker.readOutcome(va + PAGE, PAGE);
    // Lose the device once the fault is posted to the service. The service
    // runs on this thread, so a synchronous wait here keeps it from taking
    // the request first: it is served (taken, read back) on a lost device.
    const { faults } = internalsOf(space).table.shared;
    const posted = (): boolean =>
      Array.from({ length: FAULT_SLOTS }, (_, slot) => slot).some(
        (slot) => Atomics.load(faults, FAULT_WORDS * slot + FAULT_STATE) === FAULT_POSTED,
      );
    const deadline = performance.now() + 3000;
    while (!posted()) {
      if (performance.now() > deadline)
        throw new Error('the worker fault was not posted: did not end');
    }
    test.device.destroy();
    const result = await ends(read, 5000, 'the worker read');
    expect(result).toEqual({
      code: 'DEVICE_LOST',
      reason: 'device-lost',
      unsaved: [{ va: va + PAGE, len: PAGE }],
    });
    expect((await ends(gpu.lost, 5000, 'gpu.lost')).unsaved).toEqual([
      { va: va + PAGE, len: PAGE },
    ]);
    await gpu.detach();
    // The page keeps its last CPU bytes; the worker reads them now.
    expect(await ends<unknown>(worker.readOutcome(va + PAGE, PAGE), 3000, 'the next read')).toEqual(
      {
        sum: 2 * PAGE,
      },
    );
    for (let i = 0; i < 3; i++) {
      expect(everyByte(space.read(va + i * PAGE, PAGE), 1 + i), `page ${i}`).toBe(true);
    }
    await reattach(space, va);
  });

  it('during detach: the detach rejects with the unsaved list, a later detach resolves', async () => {
    const { test, space, gpu } = await lossSetup();
    const va = space.alloc(3 * PAGE);
    fillPages(space, va, 3, 1);
    await gpu.write(va + 2 * PAGE, new Uint32Array([1, 2]));
    await gpu.migrate(va, PAGE, 'gpu');
    const detach = outcome(gpu.detach());
    test.device.destroy();
    const error = await ends(detach, 5000, 'the detach');
    const expected = [{ va: va + 2 * PAGE, len: PAGE }];
    expect(error).toBeInstanceOf(DeviceLostError);
    expect(error).toMatchObject({ unsaved: expected });
    expect((await ends(gpu.lost, 5000, 'gpu.lost')).unsaved).toEqual(expected);
    await ends(gpu.detach(), 3000, 'a later detach');
    for (let i = 0; i < 3; i++) {
      expect(everyByte(space.read(va + i * PAGE, PAGE), 1 + i), `page ${i}`).toBe(true);
    }
    expect(new Set(space.snapshot(va, 3 * PAGE).map((p) => p.state))).toEqual(new Set(['cpu']));
    await reattach(space, va);
  });
});

describe('background write-back (the writeBack option)', () => {
  /** Pages of [va, va + pages * PAGE) the mirror reports GPU-dirty. */
  async function dirtyPages(gpu: GpuMirror, va: number, pages: number): Promise<number> {
    return (await gpu.snapshot(va, pages * PAGE)).filter((page) => page.dirty === 'gpu').length;
  }

  it('maxDirtyBytes of 4 pages: after 20 gpu.write of distinct pages at most 4 stay dirty, and a loss takes at most those', async () => {
    const test = await testDevice();
    const space = AddressSpace.create({ size: 4 * MiB, pageSize: PAGE });
    const gpu = await GpuMirror.attach(space, {
      device: test.device,
      writeBack: { maxDirtyBytes: 4 * PAGE },
    });
    cleanups.push(async () => {
      await gpu.detach();
      test.destroy();
    });
    const va = space.alloc(20 * PAGE);
    fillPages(space, va, 20, 1);
    for (let i = 0; i < 20; i++) await gpu.write(va + i * PAGE, new Uint8Array(PAGE).fill(100 + i));
    await sleep(200);
    expect(await dirtyPages(gpu, va, 20)).toBeLessThanOrEqual(4);
    expect(gpu.stats().bytesByCause.writeback).toBeGreaterThanOrEqual(16 * PAGE);
    test.device.destroy();
    const loss = await ends(gpu.lost, 5000, 'gpu.lost');
    const lostBytes = loss.unsaved.reduce((sum, range) => sum + range.len, 0);
    expect(lostBytes).toBeLessThanOrEqual(4 * PAGE);
    await gpu.detach();
    // Every page written back has the GPU's bytes; the unsaved ones their last CPU bytes.
    const unsaved = (i: number): boolean =>
      loss.unsaved.some(({ va: at, len }) => va + i * PAGE >= at && va + i * PAGE < at + len);
    for (let i = 0; i < 20; i++) {
      const expected = unsaved(i) ? 1 + i : 100 + i;
      expect(everyByte(space.read(va + i * PAGE, PAGE), expected), `page ${i}`).toBe(true);
    }
  });

  it('maxDirtyAgeMs: acknowledged dirty pages are written back once they are that old', async () => {
    const { space, gpu } = await testMirror(
      { size: 4 * MiB, pageSize: PAGE },
      { writeBack: { maxDirtyAgeMs: 50 } },
      cleanups,
    );
    const va = space.alloc(3 * PAGE);
    await gpu.write(va, new Uint8Array(3 * PAGE).fill(9));
    expect(await dirtyPages(gpu, va, 3)).toBe(3);
    await sleep(300);
    expect(await dirtyPages(gpu, va, 3)).toBe(0);
    expect(gpu.stats().writebacks).toBe(3);
    expect(everyByte(space.read(va, 3 * PAGE), 9)).toBe(true);
  });

  it('leaves pages alone without the option, and refuses a bad bound', async () => {
    const { space, gpu } = await testMirror({ size: 4 * MiB, pageSize: PAGE }, {}, cleanups);
    const va = space.alloc(2 * PAGE);
    await gpu.write(va, new Uint8Array(2 * PAGE).fill(9));
    await sleep(100);
    expect(await dirtyPages(gpu, va, 2)).toBe(2);
    const other = AddressSpace.create({ size: 1 * MiB, pageSize: PAGE });
    await expect(
      GpuMirror.attach(other, { writeBack: { maxDirtyAgeMs: -1 } }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', argument: 'writeBack.maxDirtyAgeMs' });
    await expect(
      GpuMirror.attach(other, { writeBack: { maxDirtyBytes: 1.5 } }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', argument: 'writeBack.maxDirtyBytes' });
  });
});
