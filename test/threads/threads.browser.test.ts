// CPU threads through Threads.spawn, on real workers and real WebGPU:
// concurrent faults, fault-around, termination.
import type { Remote } from 'comlink';
import { afterEach, describe, expect, it } from 'vitest';
import { AccessError, InvalidArgumentError } from '../../src/errors.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import { Threads } from '../../src/threads/threads.ts';
import { internalsOf } from '../../src/space/internals.ts';
import {
  FAULT_OWNER,
  FAULT_SLOTS,
  FAULT_STATE,
  FAULT_WORDS,
  LOCK_WAITERS,
} from '../../src/space/shared-layout.ts';
import { testMirror } from '../support/mirror.ts';
import type { CpuThreadApi as CpuThread } from './cpu-thread.worker.ts';
import { raceOutcome } from './stress.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function setup(size: number, pageSize: number) {
  return testMirror({ size, pageSize }, {}, cleanups);
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
      reason: 'zero',
    });
    const missing = new URL('./missing.worker.ts', import.meta.url);
    const failed = await rejection(Threads.spawn(space, missing, 1));
    expect(failed).toBeInstanceOf(InvalidArgumentError);
    expect(failed).toMatchObject({
      code: 'INVALID_ARGUMENT',
      argument: 'source',
      value: missing.href,
      reason: 'worker-failed',
    });
    expect(failed.message).toMatch(/did not start/);
    expect(failed.message).toContain('webhmm thread 0');
    expect(typeof failed.cause).toBe('string');
    expect(failed.message).toContain(String(failed.cause));
  });

  it('rejects a worker whose serveThread fails, carrying its message as the cause', async () => {
    const space = AddressSpace.create({ size: 1 * MiB });
    // Answers the init message as a serveThread whose `create` threw would.
    const code = `addEventListener('message', (event) => {
      if (event.data?.type === 'webhmm-thread-init')
        postMessage({ type: 'webhmm-thread-failed', message: 'Error: no api today' });
    });`;
    const url = URL.createObjectURL(new Blob([code], { type: 'text/javascript' }));
    try {
      const failed = await rejection(Threads.spawn(space, url, 1));
      expect(failed).toBeInstanceOf(InvalidArgumentError);
      expect(failed).toMatchObject({
        argument: 'source',
        value: url,
        reason: 'worker-failed',
        cause: 'Error: no api today',
      });
      expect(failed.message).toMatch(/webhmm thread 0 did not start: Error: no api today/);
      const fromFunction = await rejection(
        Threads.spawn(space, () => new Worker(url, { type: 'module' }), 1),
      );
      expect(fromFunction).toMatchObject({
        argument: 'source',
        value: 'a worker function',
        reason: 'worker-failed',
      });
    } finally {
      URL.revokeObjectURL(url);
    }
  });

  it('refuses to terminate an index that is not one of its threads, with the integer reasons', async () => {
    const space = AddressSpace.create({ size: 1 * MiB });
    const threads = await spawn(space, 2);
    const cases: [number, string][] = [
      [1.5, 'not-integer'],
      [-1, 'negative'],
      [2, 'too-large'],
    ];
    for (const [index, reason] of cases) {
      const refused = await rejection(threads.terminate(index));
      expect(refused).toBeInstanceOf(InvalidArgumentError);
      expect(refused).toMatchObject({ argument: 'index', value: index, reason });
    }
    // Nothing was ended: both threads still answer.
    expect(await threads.map((thread) => thread.index())).toEqual([0, 1]);
  });
});

/** The error `promise` rejects with (fails the test if it resolves). */
async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(Error);
    return error as Error;
  }
  throw new Error('expected a rejection');
}

/** Fault slots in use and pages with a hold: both 0 when nothing is left behind. */
function leftovers(space: AddressSpace): { faultSlots: number; heldPages: number } {
  const { shared } = internalsOf(space).table;
  let faultSlots = 0;
  for (let slot = 0; slot < FAULT_SLOTS; slot++) {
    if (Atomics.load(shared.faults, slot * FAULT_WORDS + FAULT_STATE) !== 0) faultSlots++;
  }
  let heldPages = 0;
  for (let page = 0; page < shared.pageCount; page++) {
    if (Atomics.load(shared.lock, page) & ~LOCK_WAITERS) heldPages++;
  }
  return { faultSlots, heldPages };
}

/** Resolves once `check()` is true, polling on the event loop. */
async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

describe('terminate', () => {
  it('refuses a 65th hold at once in a thread it may end, changing nothing', async () => {
    const space = AddressSpace.create({ size: 4 * MiB, pageSize: 4 * KiB });
    const va = space.alloc(1 * MiB);
    const [thread] = (await spawn(space, 1)).workers;
    expect(await thread!.leaseMany(va, 64)).toEqual({ held: 64 });
    expect(await thread!.leaseMany(va, 65)).toEqual({
      held: 64,
      refused: 'OUT_OF_MEMORY threads',
    });
    expect(leftovers(space)).toEqual({ faultSlots: 0, heldPages: 0 });
  });

  it('ends a worker inside access(): its scope is released and the others go on', async () => {
    const space = AddressSpace.create({ size: 4 * MiB, pageSize: 4 * KiB });
    const va = space.alloc(64 * KiB);
    const threads = await spawn(space, 2);
    const [holder, other] = threads.workers;
    const flag = new SharedArrayBuffer(8);
    void holder!.holdScopeForever(va, 64 * KiB, flag).catch(() => undefined);
    await until(() => Atomics.load(new Int32Array(flag), 0) === 1, 'the scope to open');
    expect(leftovers(space).heldPages).toBe(16);
    const blocked = other!.fill(va, 64 * KiB, 7); // waits for the scope
    await threads.terminate(0);
    await blocked;
    expect(await other!.readSum(va, 64 * KiB)).toBe(7 * 64 * KiB);
    expect(leftovers(space)).toEqual({ faultSlots: 0, heldPages: 0 });
    space.free(va);
    expect(space.alloc(64 * KiB)).toBe(va);
  });

  it('ends a worker waiting for a CPU fault: its request is given back and the others go on', async () => {
    const { space, gpu } = await setup(80 * MiB, 4 * KiB);
    const len = 64 * MiB;
    const va = space.alloc(len);
    await gpu.write(va, new Uint8Array(len).fill(3)); // every page GPU-dirty
    const threads = await spawn(space, 2);
    const [faulting, other] = threads.workers;
    const faultingId = await faulting!.threadId();
    void faulting!.readSum(va, len).catch(() => undefined);
    const { shared } = internalsOf(space).table;
    const posted = (): boolean => {
      for (let slot = 0; slot < FAULT_SLOTS; slot++) {
        const at = slot * FAULT_WORDS;
        if (
          Atomics.load(shared.faults, at + FAULT_OWNER) === faultingId &&
          Atomics.load(shared.faults, at + FAULT_STATE) !== 0
        )
          return true;
      }
      return false;
    };
    await until(posted, 'the worker to post its fault');
    await threads.terminate(0);
    expect(await other!.readSum(va, 256 * KiB)).toBe(3 * 256 * KiB);
    await until(() => leftovers(space).faultSlots === 0, 'the fault slot to be given back');
    expect(leftovers(space)).toEqual({ faultSlots: 0, heldPages: 0 });
    expect(new Set(space.read(va, len))).toEqual(new Set([3]));
  });
});

describe('free during use (HMM anon_teardown, ported)', () => {
  const len = 2 * MiB;
  const moments = ['old', 'reused', 'reused-zero', 'freed', 'unmapped'];

  /**
   * 10 rounds: fill a fresh range, start `read` of it, have `freer` free its
   * second half and allocate it again; returns what each read saw.
   */
  async function race(
    space: AddressSpace,
    freer: Remote<CpuThread>,
    read: (va: number, round: number) => Promise<string>,
  ): Promise<string[]> {
    const seen: string[] = [];
    for (let round = 0; round < 10; round++) {
      const va = space.alloc(len);
      space.fill(va, len, 1 + round);
      const reading = read(va, round);
      const reused = await freer.freeAndReuse(va + len / 2, len / 2, 0xee);
      seen.push(await reading);
      space.free(va, len / 2);
      space.free(reused);
    }
    return seen;
  }

  it('a device read racing a free of half its range sees one moment (old, or after reuse) or AccessError, 10 rounds', async () => {
    const { space, gpu } = await setup(16 * MiB, 4 * KiB);
    const [freer] = (await spawn(space, 1)).workers;
    const seen = await race(space, freer!, (va, round) => {
      // The free may win the race against the migration as well as the read.
      const migrated: Promise<unknown> =
        round % 2 ? gpu.migrate(va, len, 'gpu') : Promise.resolve();
      return migrated
        .then(() => gpu.read(va, len))
        .then(
          (bytes) => raceOutcome(bytes, 1 + round, 0xee),
          (error: unknown) => (error instanceof AccessError ? error.reason : String(error)),
        );
    });
    console.log(`device reads racing frees: ${seen.join(', ')}`);
    expect(seen.filter((result) => !moments.includes(result))).toEqual([]);
  });

  it('a worker read racing a free of half its range sees one moment (old, or after reuse) or AccessError, 10 rounds', async () => {
    const space = AddressSpace.create({ size: 16 * MiB, pageSize: 4 * KiB });
    const [reader, freer] = (await spawn(space, 2)).workers;
    const seen = await race(space, freer!, (va, round) =>
      reader!.readOrFault(va, len, 1 + round, 0xee),
    );
    console.log(`worker reads racing frees: ${seen.join(', ')}`);
    // A plain read that starts after the reuse may overlap the new owner's
    // fill (plain reads and writes never exclude each other): it sees part of
    // it, never bytes of the old allocation in the reused half.
    const plainMoments = [...moments, 'reused-filling'];
    expect(seen.filter((result) => !plainMoments.includes(result))).toEqual([]);
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
