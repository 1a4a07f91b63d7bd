// The CPU thread of the fault benchmark rows: reads pages and times them.
import type { AddressSpace } from '../space/address-space.ts';
import { serveThread } from '../threads/serve-thread.ts';

const createApi = (space: AddressSpace) => ({
  /** Reads one page at each of `vas` in turn; returns each read's time, ms. */
  timeReads(vas: readonly number[]): number[] {
    return vas.map((va) => {
      const started = performance.now();
      space.read(va, space.pageSize);
      return performance.now() - started;
    });
  },

  /** Reads `pages` pages from `va` one at a time, in order; returns the elapsed time, ms. */
  readInOrder(va: number, pages: number): number {
    const started = performance.now();
    for (let page = 0; page < pages; page++) space.read(va + page * space.pageSize, space.pageSize);
    return performance.now() - started;
  },
});

export type FaultThreadApi = ReturnType<typeof createApi>;

serveThread(createApi);
