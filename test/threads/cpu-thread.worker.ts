// A CPU thread for the thread tests, started by Threads.spawn: what each test
// asks of a worker, run synchronously (a worker may block on faults).
import type { AddressSpace } from '../../src/space/address-space.ts';
import { internalsOf } from '../../src/space/internals.ts';
import { serveThread, type ThreadInfo } from '../../src/threads/serve-thread.ts';

const createApi = (space: AddressSpace, thread: ThreadInfo) => ({
  index: () => thread.index,

  /** This thread's id in the space (fault slots record it). */
  threadId: () => internalsOf(space).threadId,

  /** Reads [va, va + len) (faulting GPU-dirty pages back); returns the sum of its bytes. */
  readSum(va: number, len: number): number {
    return space.read(va, len).reduce((sum, byte) => sum + byte, 0);
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
