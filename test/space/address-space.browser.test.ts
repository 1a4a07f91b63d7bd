// The address space with real threads: the page's main thread (which may not
// block) and module workers (which may), sharing one space.
import { releaseProxy, wrap, type Remote } from 'comlink';
import { afterEach, describe, expect, it } from 'vitest';
import { AddressSpace } from '../../src/space/address-space.ts';
import { testRandom } from '../support/random.ts';
import type { SpaceWorkerApi } from './space.worker';

const PAGE = 4096;
const started: { worker: Worker; api: Remote<SpaceWorkerApi> }[] = [];

afterEach(() => {
  for (const { worker, api } of started.splice(0)) {
    api[releaseProxy]();
    worker.terminate();
  }
});

async function workers(space: AddressSpace, n: number): Promise<Remote<SpaceWorkerApi>[]> {
  const apis: Remote<SpaceWorkerApi>[] = [];
  for (let i = 0; i < n; i++) {
    const worker = new Worker(new URL('./space.worker.ts', import.meta.url), { type: 'module' });
    const api = wrap<SpaceWorkerApi>(worker);
    started.push({ worker, api });
    await api.attach(space.handle);
    apis.push(api);
  }
  return apis;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('an address space shared by the main thread and workers', () => {
  it('lets two workers and the main thread allocate, free and write at once without overlap or leaks', async () => {
    const random = testRandom('concurrent churn');
    const space = AddressSpace.create({ size: 256 * PAGE, pageSize: PAGE });
    const [a, b] = await workers(space, 2);
    const rounds = 300;
    const results = Promise.all([
      a!.churn(random.int(2 ** 31), rounds, 0xa1),
      b!.churn(random.int(2 ** 31), rounds, 0xb2),
    ]);
    let mainCorrupted = 0;
    for (let round = 0; round < rounds; round++) {
      const len = (1 + random.int(4)) * PAGE;
      const va = space.alloc(len);
      space.fill(va, len, 0x33);
      if (space.read(va, len).some((byte) => byte !== 0x33)) mainCorrupted++;
      space.free(va);
      if (round % 16 === 0) await sleep(0); // let the workers' replies in
    }
    expect(await results).toEqual([0, 0]);
    expect(mainCorrupted).toBe(0);
    // Everything was freed: the whole space but page 0 is one free run again.
    const all = space.alloc(255 * PAGE);
    expect(space.read(all, 255 * PAGE).every((byte) => byte === 0)).toBe(true);
  });

  it('adds up 10^6 atomicAddU32 increments from the main thread and two workers exactly, never blocking', async () => {
    const space = AddressSpace.create({ size: 64 * PAGE, pageSize: PAGE });
    const [a, b] = await workers(space, 2);
    const counters = 1500; // spans two pages
    const va = space.alloc(counters * 4);
    const perThread = [333_334, 333_333, 333_333];
    const done = Promise.all([
      a!.increment(va, counters, perThread[1]!),
      b!.increment(va, counters, perThread[2]!),
    ]);
    // The main thread may not block: a WouldBlockError here fails the test.
    for (let i = 0; i < perThread[0]!; i++) space.atomicAddU32(va + 4 * (i % counters), 1);
    await done;
    const totals = new Uint32Array(space.read(va, counters * 4).buffer);
    const expected = new Uint32Array(counters);
    for (const count of perThread) for (let i = 0; i < count; i++) expected[i % counters]!++;
    expect(totals).toEqual(expected);
    expect(totals.reduce((x, y) => x + y, 0)).toBe(1_000_000);
  });

  it('makes each thread’s writes to its own words visible to every other thread', async () => {
    const space = AddressSpace.create({ size: 64 * PAGE, pageSize: PAGE });
    const [a, b] = await workers(space, 2);
    const words = 3000;
    const va = space.alloc(words * 4);
    for (let round = 1; round <= 3; round++) {
      const value = round << 20;
      await Promise.all([
        a!.writeOwnWords(va, words, 1, 3, value),
        b!.writeOwnWords(va, words, 2, 3, value),
      ]);
      for (let w = 0; w < words; w += 3) space.setU32(va + 4 * w, value + w);
      const expected = Uint32Array.from({ length: words }, (_, w) => value + w);
      expect(new Uint32Array(space.read(va, words * 4).buffer)).toEqual(expected);
      expect(await a!.readWords(va, words)).toEqual(expected);
      expect(await b!.readWords(va, words)).toEqual(expected);
    }
  });

  it('holds an overlapping writer off for as long as an acquire lease lasts', async () => {
    const space = AddressSpace.create({ size: 64 * PAGE, pageSize: PAGE });
    const [writer, reader] = await workers(space, 2);
    const va = space.alloc(2 * PAGE);
    for (const mode of ['read', 'write'] as const) {
      const lease = await space.acquire(va, PAGE, mode);
      if (mode === 'write') lease.u32[1] = 7;
      const landed = writer!.setU32At(va + 4, 1234);
      await sleep(100);
      // The worker is blocked: the bytes under the lease are unchanged.
      expect(lease.u32[1]).toBe(mode === 'write' ? 7 : 0);
      // Beside a read lease, readers go on.
      if (mode === 'read') expect(await reader!.getU32At(va + 8)).toBe(0);
      const releasedAt = performance.timeOrigin + performance.now();
      lease.release();
      expect(await landed).toBeGreaterThanOrEqual(releasedAt);
      expect(space.getU32(va + 4)).toBe(1234);
      space.setU32(va + 4, 0);
    }
  });

  it('fires onInvalidate on another thread’s event loop for a free or protect made here', async () => {
    const space = AddressSpace.create({ size: 64 * PAGE, pageSize: PAGE });
    const [worker] = await workers(space, 1);
    const va = space.alloc(4 * PAGE);
    await worker!.listen(va, 4 * PAGE);
    space.protect(va, PAGE, 'r');
    expect(await worker!.notices(1, 5000)).toEqual([{ va, len: PAGE, cause: 'protect' }]);
    space.free(va);
    expect(await worker!.notices(2, 5000)).toEqual([
      { va, len: PAGE, cause: 'protect' },
      { va, len: 4 * PAGE, cause: 'free' },
    ]);
  });
});
