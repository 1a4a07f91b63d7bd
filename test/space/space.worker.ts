// A CPU thread for the address-space browser tests: attaches to the space the
// page created and runs the operations the tests ask for, synchronously (a
// worker may block), reporting back through comlink.
import { expose } from 'comlink';
import { AddressSpace } from '../../src/space/address-space.ts';
import type { InvalidateEvent } from '../../src/space/notifier.ts';
import type { SpaceHandle } from '../../src/space/shared-layout.ts';
import { seededRandom } from '../support/random.ts';

let space: AddressSpace | undefined;
const events: InvalidateEvent[] = [];

function attached(): AddressSpace {
  if (!space) throw new Error('attach first');
  return space;
}

const api = {
  attach(handle: SpaceHandle): void {
    space = AddressSpace.attach(handle);
  },

  /**
   * Rounds of alloc, fill with `tag`, check, free, with sizes from `seed`.
   * Returns the number of rounds in which another thread's bytes showed up (must be 0).
   */
  churn(seed: number, rounds: number, tag: number): number {
    const s = attached();
    const random = seededRandom(seed);
    let corrupted = 0;
    for (let round = 0; round < rounds; round++) {
      const len = (1 + random.int(4)) * s.pageSize - random.int(64);
      const va = s.alloc(len);
      if (s.read(va, len).some((b) => b !== 0)) corrupted++;
      s.fill(va, len, tag);
      if (s.read(va, len).some((b) => b !== tag)) corrupted++;
      s.free(va);
    }
    return corrupted;
  },

  /** `count` atomic increments, round robin over `counters` u32s at `va`. */
  increment(va: number, counters: number, count: number): void {
    const s = attached();
    for (let i = 0; i < count; i++) s.atomicAddU32(va + 4 * (i % counters), 1);
  },

  /** Writes `value` to each word `index`, `index + stride`, ... below `words`. */
  writeOwnWords(va: number, words: number, index: number, stride: number, value: number): void {
    const s = attached();
    for (let w = index; w < words; w += stride) s.setU32(va + 4 * w, value + w);
  },

  readWords(va: number, words: number): Uint32Array {
    return new Uint32Array(attached().read(va, 4 * words).buffer);
  },

  /** A blocking write; returns when it landed (performance.timeOrigin-based ms). */
  setU32At(va: number, value: number): number {
    attached().setU32(va, value);
    return performance.timeOrigin + performance.now();
  },

  /** A blocking discard; returns when it is done (performance.timeOrigin-based ms). */
  discardAt(va: number, len: number): number {
    attached().discard(va, len);
    return performance.timeOrigin + performance.now();
  },

  getU32At(va: number): number {
    return attached().getU32(va);
  },

  listen(va: number, len: number): void {
    attached().onInvalidate(va, len, (event) => events.push(event));
  },

  /** The notices received so far, waiting up to `ms` for at least `atLeast`. */
  async notices(atLeast: number, ms: number): Promise<InvalidateEvent[]> {
    const deadline = performance.now() + ms;
    while (events.length < atLeast && performance.now() < deadline)
      await new Promise((r) => setTimeout(r, 5));
    return [...events];
  },
};

export type SpaceWorkerApi = typeof api;

expose(api);
