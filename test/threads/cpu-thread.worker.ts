// A CPU thread for the thread tests, started by Threads.spawn: what each test
// asks of a worker, run synchronously (a worker may block on faults).
import type { AddressSpace } from '../../src/space/address-space.ts';
import { serveThread, type ThreadInfo } from '../../src/threads/serve-thread.ts';

const createApi = (space: AddressSpace, thread: ThreadInfo) => ({
  index: () => thread.index,

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
