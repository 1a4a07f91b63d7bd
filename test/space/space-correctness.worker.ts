// A CPU thread for the space correctness browser tests: attaches to the space
// the page created and publishes invalidation notices in tight bursts,
// waiting (a worker may block) for the page to acknowledge each burst.
import { expose } from 'comlink';
import { AddressSpace } from '../../src/space/address-space.ts';
import type { SpaceHandle } from '../../src/space/shared-layout.ts';

let space: AddressSpace | undefined;

function attached(): AddressSpace {
  if (!space) throw new Error('attach first');
  return space;
}

const api = {
  attach(handle: SpaceHandle): void {
    space = AddressSpace.attach(handle);
  },

  /**
   * `bursts` bursts of `perBurst` protection changes over the `pages` pages at
   * `va`; burst r ends with a change of its marker page, r % pages. After each
   * burst waits up to `ms` for `ack[0]` to reach r + 1. Returns the first
   * burst not acknowledged in time, or -1.
   */
  publishBursts(
    va: number,
    pages: number,
    bursts: number,
    perBurst: number,
    ack: Int32Array,
    ms: number,
  ): number {
    const s = attached();
    for (let r = 0; r < bursts; r++) {
      const marker = r % pages;
      for (let i = 1; i < perBurst; i++) {
        const page = (marker + i) % pages;
        s.protect(va + page * s.pageSize, s.pageSize, i % 2 ? 'r' : 'rw');
      }
      s.protect(va + marker * s.pageSize, s.pageSize, r % 2 ? 'r' : 'rw');
      if (Atomics.wait(ack, 0, r, ms) === 'timed-out' && Atomics.load(ack, 0) === r) return r;
    }
    return -1;
  },
};

export type SpaceCorrectnessWorkerApi = typeof api;

expose(api);
