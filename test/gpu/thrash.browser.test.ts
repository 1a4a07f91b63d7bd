// Thrash mitigation on real WebGPU: a CPU/GPU ping-pong (a worker's or the
// main thread's writes, then a kernel's, on the same pages) pins the pages on
// the GPU, after which an iteration moves the bytes written instead of the
// pages; one where the CPU reads words pins them on the GPU too, and a read
// pulls just its bytes; one where the CPU reads whole pages pins them on
// the CPU, after which CPU reads stop faulting; results stay exact; pins are counted, traced, shown by
// snapshot, end after pinMs or are renewed, and a scope or an atomic takes
// them away; `thrash: false` turns it off; bad options throw.
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.ts';
import { GpuMirror } from '../../src/mirror/gpu-mirror.ts';
import type { TraceEvent } from '../../src/gpu/mirror-stats.ts';
import type { ThrashOptions } from '../../src/gpu/thrash.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import { testDevice } from '../support/gpu.ts';
import { testMirror } from '../support/mirror.ts';
import { singleCallThread } from '../support/single-call-thread.ts';
import { ADD_ONE_PER_PAGE, ADD_ONE_PER_PAGE_PARAMS } from '../../src/bench/workloads.ts';

const PAGE = 4096;
const PAGES = 16;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function pingPong(thrash: ThrashOptions | false | undefined) {
  const { space, gpu } = await testMirror(
    { size: 1 << 20, pageSize: PAGE },
    thrash === undefined ? {} : { thrash },
    cleanups,
  );
  const worker = await singleCallThread(space, cleanups);
  const base = space.alloc(PAGES * PAGE);
  const kernel = gpu.kernel({ code: ADD_ONE_PER_PAGE, params: ADD_ONE_PER_PAGE_PARAMS });
  const uses = [{ va: base, len: PAGES * PAGE, access: 'readwrite' as const }];
  const moved = () => gpu.stats().bytesToGpu + gpu.stats().bytesToCpu;
  /** One iteration: the CPU sets word 0 of every page to `value`, a kernel adds 1; bytes it moved. */
  const iteration = async (value: number, writer: 'worker' | 'main') => {
    const before = moved();
    for (let page = 0; page < PAGES; page++) {
      const va = base + page * PAGE;
      if (writer === 'worker') expect((await worker.writeU32(va, value + page)).result).toBe('ok');
      else await space.writeAsync(va, new Uint32Array([value + page]));
    }
    await kernel.run({ workgroups: 1, params: { base, pages: PAGES, stride: PAGE }, uses });
    return moved() - before;
  };
  return { space, gpu, worker, base, iteration };
}

describe('thrash mitigation', () => {
  it('pins ping-pong pages on the GPU, after which an iteration moves the bytes written, not the pages', async () => {
    const { space, gpu, worker, base, iteration } = await pingPong(undefined);
    const events: TraceEvent[] = [];
    gpu.trace((event) => events.push(event));
    const first = await iteration(100, 'worker');
    const costs: number[] = [];
    for (let i = 1; i < 8; i++) costs.push(await iteration(100 * i, i % 2 ? 'worker' : 'main'));
    expect(gpu.stats().thrashPins).toBe(PAGES);
    const pins = events.filter((event) => event.kind === 'thrash-pin');
    expect(pins.reduce((sum, event) => sum + event.pages, 0)).toBe(PAGES);
    expect(pins[0]?.reason).toMatch(/more than 4 moves/);
    const snapshot = await gpu.snapshot(base, PAGES * PAGE);
    expect(snapshot.every((entry) => entry.pinned === true && entry.state === 'gpu')).toBe(true);
    // Pinned: each iteration pushes 4 bytes a page and reads nothing back.
    expect(first).toBeGreaterThanOrEqual(PAGES * PAGE);
    expect(costs.slice(-3)).toEqual([PAGES * 4, PAGES * 4, PAGES * 4]);
    // Exact: the last iteration wrote 700 + page, the kernel added 1.
    for (let page = 0; page < PAGES; page++)
      expect(await worker.u32At(base + page * PAGE)).toBe(701 + page);
    expect(new Uint32Array((await gpu.read(base + 3 * PAGE, 4)).buffer)[0]).toBe(704);
    expect(space.snapshot(base, PAGE)[0]?.pinned).toBe(true);
  });

  it('pins pages the CPU reads word by word between kernel writes on the GPU: a read pulls just its bytes', async () => {
    const { gpu, worker, base } = await pingPong(undefined);
    const kernel = gpu.kernel({ code: ADD_ONE_PER_PAGE, params: ADD_ONE_PER_PAGE_PARAMS });
    const uses = [{ va: base, len: PAGES * PAGE, access: 'readwrite' as const }];
    const moved = () => gpu.stats().bytesToGpu + gpu.stats().bytesToCpu;
    const costs: number[] = [];
    for (let i = 0; i < 8; i++) {
      const before = moved();
      await kernel.run({ workgroups: 1, params: { base, pages: PAGES, stride: PAGE }, uses });
      for (let page = 0; page < PAGES; page++)
        expect(await worker.u32At(base + page * PAGE)).toBe(i + 1);
      costs.push(moved() - before);
    }
    expect(gpu.stats().thrashPins).toBe(PAGES);
    const snapshot = await gpu.snapshot(base, PAGES * PAGE);
    expect(snapshot.every((entry) => entry.pinned && entry.state === 'gpu')).toBe(true);
    expect(snapshot.every((entry) => entry.dirty === 'gpu')).toBe(true);
    // Pinned on the GPU: each read pulls its 4 bytes; the kernel moves nothing.
    expect(costs.slice(-3)).toEqual([PAGES * 4, PAGES * 4, PAGES * 4]);
  });

  it('pins pages the CPU reads whole between kernel writes on the CPU: runs write them through, CPU reads stop faulting', async () => {
    const { gpu, worker, base } = await pingPong(undefined);
    const kernel = gpu.kernel({ code: ADD_ONE_PER_PAGE, params: ADD_ONE_PER_PAGE_PARAMS });
    const uses = [{ va: base, len: PAGES * PAGE, access: 'readwrite' as const }];
    const faults: number[] = [];
    for (let i = 0; i < 8; i++) {
      await kernel.run({ workgroups: 1, params: { base, pages: PAGES, stride: PAGE }, uses });
      for (let page = 0; page < PAGES; page++)
        expect(await worker.u32InRead(base + page * PAGE, PAGE)).toBe(i + 1);
      faults.push(gpu.stats().cpuFaults);
    }
    expect(gpu.stats().thrashPins).toBe(PAGES);
    const snapshot = await gpu.snapshot(base, PAGES * PAGE);
    expect(snapshot.every((entry) => entry.pinned === true && entry.state === 'shared')).toBe(true);
    // Pinned on the CPU: each run writes its pages back; the worker's reads fault no more.
    expect(faults.at(-1)).toBe(faults.at(-4));
    expect(gpu.stats().bytesByCause['write-through']).toBeGreaterThanOrEqual(3 * PAGES * PAGE);
  });

  it('is off with thrash: false: every iteration moves the pages', async () => {
    const { gpu, iteration } = await pingPong(false);
    const costs: number[] = [];
    for (let i = 0; i < 8; i++) costs.push(await iteration(i, 'worker'));
    expect(gpu.stats().thrashPins).toBe(0);
    expect(Math.min(...costs)).toBeGreaterThanOrEqual(PAGES * PAGE);
  });

  it('ends a pin after pinMs, and a scope or an atomic takes it away at once', async () => {
    const { space, gpu, worker, base, iteration } = await pingPong({ threshold: 2, pinMs: 300 });
    for (let i = 0; i < 3; i++) await iteration(i, 'worker');
    const pinned = async () =>
      (await gpu.snapshot(base, PAGES * PAGE)).map((entry) => entry.pinned === true);
    expect(await pinned()).toEqual(Array(PAGES).fill(true));
    // A read scope of page 0 takes its pin and the page (it faults it back).
    const lease = await space.acquire(base, 4, 'read');
    expect(lease.u32[0]).toBe(3);
    lease.release();
    // An atomic on page 1 (clean first: a worker's read copies it back, pinned).
    expect(await worker.u32At(base + PAGE)).toBe(4);
    expect((await gpu.snapshot(base + PAGE, PAGE))[0]).toMatchObject({
      state: 'gpu',
      dirty: 'none',
    });
    expect(space.atomicAddU32(base + PAGE, 10)).toBe(4);
    expect((await pinned()).slice(0, 3)).toEqual([false, false, true]);
    expect((await gpu.snapshot(base + PAGE, PAGE))[0]?.state).toBe('cpu');
    // Pushed and used under the pin, it was renewed once; not since, it ends the next time.
    await new Promise((resolve) => setTimeout(resolve, 750));
    expect(await pinned()).toEqual(Array(PAGES).fill(false));
    expect(space.getU32(base + PAGE)).toBe(14);
  });

  it('lets a pin on the GPU go with the frame: a discarded page is not pinned', async () => {
    const { space, gpu, base, iteration } = await pingPong({ threshold: 2 });
    for (let i = 0; i < 3; i++) await iteration(i, 'worker');
    expect((await gpu.snapshot(base, PAGE))[0]?.pinned).toBe(true);
    space.discard(base, PAGE);
    expect(
      (await gpu.snapshot(base, 2 * PAGE)).map((entry) => [entry.state, entry.pinned]),
    ).toEqual([
      ['zero', undefined],
      ['gpu', true],
    ]);
  });

  it('renews a pin while the ping-pong goes on under it', async () => {
    const { gpu, iteration } = await pingPong({ pinMs: 60 });
    const started = performance.now();
    for (let i = 0; performance.now() - started < 400; i++) await iteration(i, 'worker');
    // Pinned once, by the third iteration, and kept: no page bounced again.
    expect(gpu.stats().thrashPins).toBe(PAGES);
    const late = await iteration(9, 'worker');
    expect(late).toBe(PAGES * 4);
  });

  it('takes the page back for a write of part of a word: the other bytes of the word stay', async () => {
    const { space, gpu, base, iteration } = await pingPong({ threshold: 2 });
    for (let i = 0; i < 3; i++) await iteration(0x0a0b0c00, 'worker');
    expect((await gpu.snapshot(base, PAGE))[0]).toMatchObject({ pinned: true, dirty: 'gpu' });
    // Word 0 of page 0 is 0x0a0b0c01 on the GPU only; a byte written to it must not tear it.
    await space.writeAsync(base + 1, new Uint8Array([0xee]));
    expect(Array.from(await space.readAsync(base, 4))).toEqual([0x01, 0xee, 0x0b, 0x0a]);
    expect((await gpu.snapshot(base, PAGE))[0]?.pinned).toBeUndefined();
  });

  it('refuses bad options', async () => {
    const test = await testDevice();
    cleanups.push(() => test.destroy());
    const space = AddressSpace.create({ size: 1 << 20, pageSize: PAGE });
    for (const thrash of ['always', null, { threshold: 0 }, { pinMs: 1.5 }, { windowMs: -1 }]) {
      await expect(
        GpuMirror.attach(space, { device: test.device, thrash: thrash as never }),
      ).rejects.toThrow(InvalidArgumentError);
    }
  });
});
