// The worker of the hostile Threads cases, started by Threads.spawn: it only
// says it is alive, so a refused terminate() can be shown to have ended nothing.
import type { AddressSpace } from '../../src/space/address-space.ts';
import { serveThread, type ThreadInfo } from '../../src/threads/serve-thread.ts';

const createApi = (space: AddressSpace, thread: ThreadInfo) => ({
  /** This thread's index and the size of its space: proof that it runs, attached. */
  alive: () => ({ index: thread.index, size: space.size }),
});

export type HostileThreadApi = ReturnType<typeof createApi>;

serveThread(createApi);
