/**
 * The worker side of `Threads`: `serveThread(create)` waits for the page's
 * init message, attaches the address space, builds the thread's API with
 * `create(space, thread)` and exposes it through comlink.
 *
 * ```ts
 * // worker.ts
 * import { serveThread } from 'webhmm';
 * serveThread((space, thread) => ({
 *   sum(va: number, len: number) { ... space.read(va, len) ... },
 * }));
 * ```
 */
import { expose } from 'comlink';
import { attachThread, type AddressSpace } from '../space/address-space.ts';
import { internalsOf } from '../space/internals.ts';
import { isThreadInit, type ThreadReady } from './thread-protocol.ts';

/** Which of the spawned threads this is. */
export interface ThreadInfo {
  readonly index: number;
  readonly count: number;
}

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
