// A CPU thread for the thread tests, started by Threads.spawn: what each test
// asks of a worker, run synchronously (a worker may block on faults).
import { AccessError, WebHmmError } from '../../src/errors.ts';
import type { AddressSpace } from '../../src/space/address-space.ts';
import { internalsOf } from '../../src/space/internals.ts';
import { serveThread, type ThreadInfo } from '../../src/threads/serve-thread.ts';
import { seededRandom } from '../support/random.ts';
import { raceOutcome, scatteredValue, stressValue } from './stress.ts';

const createApi = (space: AddressSpace, thread: ThreadInfo) => ({
  index: () => thread.index,

  /** This thread's id in the space (fault slots record it). */
  threadId: () => internalsOf(space).threadId,

  /**
   * Once every thread has arrived at `start` (word 0 counts arrivals up to
   * `threads`), writes word `index` of [va, ...) with `scatteredValue(index)`
   * for each of `indexes`, one `setU32` each: concurrent scattered writers.
   */
  scatteredWrites(va: number, indexes: Uint32Array, start: SharedArrayBuffer, threads: number) {
    const arrived = new Int32Array(start);
    Atomics.add(arrived, 0, 1);
    while (Atomics.load(arrived, 0) < threads)
      Atomics.wait(arrived, 0, Atomics.load(arrived, 0), 5);
    for (const index of indexes) space.setU32(va + 4 * index, scatteredValue(index));
  },

  /** Reads [va, va + len) (faulting GPU-dirty pages back); returns the sum of its bytes. */
  readSum(va: number, len: number): number {
    return space.read(va, len).reduce((sum, byte) => sum + byte, 0);
  },

  /**
   * The stress test's CPU writer `owner`: `pacing.rounds` rounds, spread
   * over the main thread's `pacing.mainOps` operations (word 0 of
   * `pacing.progress` counts those done), each writing `perRound` random chunks of its own
   * (chunk c is `owner`'s when c % owners === owner) with
   * `stressValue(w, round)` and adding 1 to each of `counters` u32 counters
   * at `countersVa`. Returns, per chunk, the last round that wrote it (-1: never).
   */
  stressWrites(
    layout: { dataVa: number; chunks: number; chunkWords: number; owners: number },
    owner: number,
    perRound: number,
    seed: number,
    countersVa: number,
    counters: number,
    pacing: { rounds: number; progress: SharedArrayBuffer; mainOps: number },
  ): number[] {
    const { rounds } = pacing;
    const progress = new Int32Array(pacing.progress);
    const { dataVa, chunks, chunkWords, owners } = layout;
    const random = seededRandom(seed);
    const mine = Array.from(
      { length: Math.ceil((chunks - owner) / owners) },
      (_, i) => owner + i * owners,
    );
    const last = new Array<number>(chunks).fill(-1);
    const words = new Uint32Array(chunkWords);
    for (let round = 0; round < rounds; round++) {
      // Keep pace with the main thread's operations, so that every one of them meets writes.
      const due = Math.floor((round * pacing.mainOps) / rounds);
      for (let seen = Atomics.load(progress, 0); seen < due; seen = Atomics.load(progress, 0))
        Atomics.wait(progress, 0, seen, 100);
      for (let k = 0; k < perRound; k++) {
        const chunk = mine[random.int(mine.length)] ?? owner;
        for (let i = 0; i < chunkWords; i++) words[i] = stressValue(chunk * chunkWords + i, round);
        space.write(dataVa + chunk * chunkWords * 4, words);
        last[chunk] = round;
      }
      for (let i = 0; i < counters; i++) space.atomicAddU32(countersVa + 4 * i, 1);
    }
    return last;
  },

  /**
   * Frees [va, va + len) (whole pages of an allocation), then allocates `len`
   * bytes again and fills them with `byte`: freed pages reused with other data.
   */
  freeAndReuse(va: number, len: number, byte: number): number {
    space.free(va, len);
    const reused = space.alloc(len);
    space.fill(reused, len, byte);
    return reused;
  },

  /** Reads [va, va + len) and names what it saw (see `raceOutcome`), or the AccessError's reason. */
  readOrFault(va: number, len: number, byte: number, reusedByte: number): string {
    try {
      return raceOutcome(space.read(va, len), byte, reusedByte);
    } catch (error) {
      if (error instanceof AccessError) return error.reason;
      throw error;
    }
  },

  /**
   * Takes read leases on `count` pages from `va`, one each, until one is
   * refused; releases them all. Returns how many it got and the refusal.
   */
  async leaseMany(va: number, count: number): Promise<{ held: number; refused?: string }> {
    const leases = [];
    try {
      for (let i = 0; i < count; i++)
        leases.push(await space.acquire(va + i * space.pageSize, 4, 'read'));
      return { held: leases.length };
    } catch (error) {
      return {
        held: leases.length,
        refused: error instanceof WebHmmError ? `${error.code} ${error.reason}` : String(error),
      };
    } finally {
      for (const lease of leases) lease.release();
    }
  },

  fill(va: number, len: number, byte: number): void {
    space.fill(va, len, byte);
  },

  /**
   * Opens a write scope on [va, va + len), says so through word 0 of `flag`,
   * and never leaves it (the thread is to be terminated inside access()).
   */
  holdScopeForever(va: number, len: number, flag: SharedArrayBuffer): void {
    const word = new Int32Array(flag);
    space.access(va, len, 'write', (lease) => {
      lease.bytes.fill(0xaa);
      Atomics.store(word, 0, 1);
      Atomics.notify(word, 0);
      for (;;) Atomics.wait(word, 1, 0);
    });
  },

  /**
   * Reads `pages` pages of `pageSize` bytes from `va`, one page at a time, in
   * order; returns how many u32 words differ from `expected(word index)`:
   * word w of the range holds `seed + w`.
   */
  readPagesInOrder(va: number, pages: number, seed: number): number {
    let wrong = 0;
    for (let page = 0; page < pages; page++) {
      const words = new Uint32Array(space.read(va + page * space.pageSize, space.pageSize).buffer);
      const base = (page * space.pageSize) / 4;
      for (let w = 0; w < words.length; w++) if (words[w] !== (seed + base + w) >>> 0) wrong++;
    }
    return wrong;
  },
});

export type CpuThreadApi = ReturnType<typeof createApi>;

serveThread(createApi);
