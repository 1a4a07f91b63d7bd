/**
 * The messages between `Threads` (the page) and `serveThread` (a worker):
 * logic-free, so both sides agree on one shape.
 */
import type { SpaceHandle } from '../space/shared-layout.ts';

/** Page -> worker, first message: attach to `handle` and expose the API on `port`. */
export interface ThreadInit {
  readonly type: 'webhmm-thread-init';
  readonly handle: SpaceHandle;
  readonly index: number;
  readonly count: number;
  readonly port: MessagePort;
  /**
   * A Web Lock the worker holds for as long as it lives: the browser releases
   * it only once the worker has really ended, which is when its page holds
   * may be taken back (`terminate()` returns before the worker stops running).
   */
  readonly lifeLock: string;
}

/** Worker -> page: attached and serving, as thread `threadId` of the space; or failed. */
export type ThreadReady =
  | { readonly type: 'webhmm-thread-ready'; readonly threadId: number }
  | { readonly type: 'webhmm-thread-failed'; readonly message: string };

export function isThreadInit(data: unknown): data is ThreadInit {
  return (
    typeof data === 'object' &&
    data !== null &&
    (data as { type?: unknown }).type === 'webhmm-thread-init'
  );
}

export function isThreadReady(data: unknown): data is ThreadReady {
  const type = typeof data === 'object' && data !== null && (data as { type?: unknown }).type;
  return type === 'webhmm-thread-ready' || type === 'webhmm-thread-failed';
}
