// The demo's CPU thread, started by Threads.spawn: it gets the page's address
// space attached and writes to it through webhmm, the way an app's worker would.
import { serveThread, type AddressSpace } from '../index.ts';

const createApi = (space: AddressSpace) => ({
  /** Writes `word` into every page of [va, va + len) and returns the sum the worker reads back. */
  stamp(va: number, len: number, word: number): number {
    let sum = 0;
    for (let at = va; at < va + len; at += space.pageSize) {
      space.setU32(at, word);
      sum += space.getU32(at);
    }
    return sum;
  },
});

export type DemoWorkerApi = ReturnType<typeof createApi>;

serveThread(createApi);
