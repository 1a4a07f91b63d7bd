/**
 * The worker side of `Threads`: `serveThread(create)` waits for the page's
 * init message, attaches the address space as a thread `Threads` may end,
 * builds the thread's API with `create(space, thread)` and exposes it
 * through comlink on the port the page sent.
 */
import { expose } from 'comlink';
import { attachThread, type AddressSpace } from '../space/address-space.ts';
import { internalsOf } from '../space/internals.ts';
import { isThreadInit, type ThreadReady } from './thread-protocol.ts';

/** Which of the spawned threads this is. */
export interface ThreadInfo {
  /** This thread's place in spawn order: 0 to count - 1 inclusive. */
  readonly index: number;
  /** Threads started by the same `Threads.spawn` call (>= 1). */
  readonly count: number;
}

/**
 * Serves this worker as one thread of `Threads.spawn`: on the page's init
 * message it attaches the space, calls `create` once and exposes what it
 * returns through comlink. Call it once, at the top level of the worker's
 * module. A `create` that throws or rejects (or an attach that fails, as when
 * every thread record of the space is taken) makes `Threads.spawn` reject
 * with InvalidArgumentError 'worker-failed', its message carried along.
 *
 * ```ts
 * // sum.worker.ts
 * import { serveThread, type AddressSpace } from 'webhmm';
 * const create = (space: AddressSpace) => ({
 *   sum(va: number, len: number): number {
 *     return new Float32Array(space.read(va, len).buffer).reduce((a, b) => a + b, 0);
 *   },
 * });
 * export type SumApi = ReturnType<typeof create>; // for Threads.spawn<SumApi>
 * serveThread(create);
 * ```
 *
 * In the worker, `space` may block (a worker may wait): sync reads of
 * GPU-dirty pages fault them back and wait.
 */
export function serveThread<Api extends object>(
  create: (space: AddressSpace, thread: ThreadInfo) => Api | Promise<Api>,
): void {
  const scope = globalThis as unknown as {
    addEventListener(type: 'message', listener: (event: MessageEvent) => void): void;
    removeEventListener(type: 'message', listener: (event: MessageEvent) => void): void;
    postMessage(message: ThreadReady): void;
  };
  const onInit = (event: MessageEvent): void => {
    if (!isThreadInit(event.data)) return;
    scope.removeEventListener('message', onInit);
    const { handle, index, count, port, lifeLock } = event.data;
    void (async () => {
      try {
        await holdForLife(lifeLock);
        const space = attachThread(handle);
        const api = await create(space, { index, count });
        expose(api, port);
        scope.postMessage({ type: 'webhmm-thread-ready', threadId: internalsOf(space).threadId });
      } catch (error) {
        scope.postMessage({
          type: 'webhmm-thread-failed',
          message: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
        });
      }
    })();
  };
  scope.addEventListener('message', onInit);
}

/** Acquires the Web Lock `name` and never releases it: the browser does, when this worker ends. */
function holdForLife(name: string): Promise<void> {
  return new Promise((acquired, failed) => {
    navigator.locks
      .request(name, () => {
        acquired();
        return new Promise<never>(() => undefined);
      })
      .catch(failed);
  });
}
