/**
 * CPU threads for apps: `Threads.spawn(space, worker, n)` starts n workers,
 * each with the space attached (see `serveThread`), and gives their APIs as
 * comlink proxies. `terminate()` ends them, safely at any moment: what a
 * thread held in the space is taken back (docs/threads.md, "Ending a thread").
 */
import { releaseProxy, wrap, type Remote } from 'comlink';
import { nonNegativeInteger, positiveInteger } from '../arguments.ts';
import { InvalidArgumentError } from '../errors.ts';
import type { AddressSpace } from '../space/address-space.ts';
import { internalsOf } from '../space/internals.ts';
import { THREAD_SLOTS } from '../space/shared-layout.ts';
import { isThreadReady, type ThreadInit } from './thread-protocol.ts';

/**
 * A module worker's URL (a `URL`, or a string resolved as `new Worker` does),
 * or a function that starts one (for bundlers that need
 * `new Worker(new URL(...))` in app code). The worker's module calls `serveThread`.
 */
export type WorkerSource = URL | string | (() => Worker);

interface Spawned<Api> {
  readonly worker: Worker;
  readonly api: Remote<Api>;
  readonly threadId: number;
  /** The Web Lock the worker holds while it lives (thread-protocol.ts). */
  readonly lifeLock: string;
}

/**
 * A pool of CPU threads (module workers) with one AddressSpace attached,
 * each serving the API its module builds with `serveThread`. Calls go
 * through comlink; the space's bytes, faults and coherence never do: they
 * are the SharedArrayBuffer and Atomics.
 *
 * ```ts
 * import type { SumApi } from './sum.worker.ts'; // the worker calls serveThread: see there
 * const threads = await Threads.spawn<SumApi>(space, new URL('./sum.worker.ts', import.meta.url), 4);
 * const part = len / threads.size;
 * const sums = await threads.map((thread, i) => thread.sum(va + i * part, part));
 * await threads.terminate();
 * ```
 */
export class Threads<Api> {
  private readonly ended = new Set<Spawned<Api>>();

  private constructor(
    private readonly space: AddressSpace,
    private readonly spawned: readonly Spawned<Api>[],
  ) {}

  /**
   * Starts `count` workers from `source`, each running `serveThread`, and
   * resolves once every one has attached `space`. All or none: if one fails
   * to start, the others are ended (and what they held taken back) before
   * the promise rejects.
   * @param count workers to start: a positive integer
   * @throws InvalidArgumentError 'space' 'bad-value' (not an AddressSpace); 'count':
   *   'not-integer', 'negative', 'zero' or 'too-large' (more than a space has thread records)
   * @throws InvalidArgumentError 'source' 'worker-failed' if a worker fails to load, or
   *   its `serveThread` fails to attach or build its API: `value` names the source,
   *   the message the thread and why, `cause` is the worker's own error message
   */
  static async spawn<Api>(
    space: AddressSpace,
    source: WorkerSource,
    count: number,
  ): Promise<Threads<Api>> {
    internalsOf(space);
    positiveInteger('count', count);
    if (count > THREAD_SLOTS) {
      throw new InvalidArgumentError(
        'count',
        count,
        'too-large',
        `a space has ${THREAD_SLOTS} thread records, the main thread's included`,
      );
    }
    const starting = Array.from({ length: count }, (_, index) =>
      start<Api>(space, source, index, count),
    );
    const settled = await Promise.allSettled(starting);
    const failed = settled.find((outcome) => outcome.status === 'rejected');
    if (failed) {
      await Promise.all(
        settled.map(async (outcome) => {
          if (outcome.status !== 'fulfilled') return;
          outcome.value.worker.terminate();
          await ended(outcome.value.lifeLock);
          internalsOf(space).recoverThread(outcome.value.threadId);
        }),
      );
      throw failed.reason;
    }
    return new Threads(
      space,
      settled.map((outcome) => (outcome as PromiseFulfilledResult<Spawned<Api>>).value),
    );
  }

  /** The threads' APIs, in spawn order (index 0 first). */
  get workers(): readonly Remote<Api>[] {
    return this.spawned.map((thread) => thread.api);
  }

  /** Threads spawned (ended ones included): valid indices are 0 to size - 1. */
  get size(): number {
    return this.spawned.length;
  }

  /** Runs `work` on every thread at once; resolves with the results in order. */
  map<T>(work: (thread: Remote<Api>, index: number) => Promise<T>): Promise<T[]> {
    return Promise.all(this.spawned.map((thread, index) => work(thread.api, index)));
  }

  /**
   * Ends every thread, or the one at `index`: each is stopped at a safe
   * point (outside any critical section of webhmm; it may be waiting, or
   * running its own code), then ended, and the page holds and fault requests
   * it had are taken back, so the other threads go on. Idempotent.
   * @param index the thread to end, 0 to size - 1 inclusive; all of them if omitted
   * @throws InvalidArgumentError 'index': 'not-integer', 'negative', or 'too-large' (size or more)
   */
  async terminate(index?: number): Promise<void> {
    if (index !== undefined) {
      nonNegativeInteger('index', index);
      if (index >= this.size) {
        throw new InvalidArgumentError('index', index, 'too-large', `0 to ${this.size - 1}`);
      }
    }
    const ending = (index === undefined ? this.spawned : [this.spawned[index]]).filter(
      (thread): thread is Spawned<Api> => thread !== undefined && !this.ended.has(thread),
    );
    for (const thread of ending) this.ended.add(thread);
    const internals = internalsOf(this.space);
    await Promise.all(ending.map((thread) => internals.stopThread(thread.threadId)));
    await Promise.all(
      ending.map(async (thread) => {
        thread.api[releaseProxy]();
        thread.worker.terminate();
        await ended(thread.lifeLock);
        internals.recoverThread(thread.threadId);
      }),
    );
  }
}

function start<Api>(
  space: AddressSpace,
  source: WorkerSource,
  index: number,
  count: number,
): Promise<Spawned<Api>> {
  const worker =
    typeof source === 'function'
      ? source()
      : new Worker(source, { type: 'module', name: `webhmm thread ${index}` });
  const channel = new MessageChannel();
  const lifeLock = `webhmm-thread-${crypto.randomUUID()}`;
  return new Promise<Spawned<Api>>((resolve, reject) => {
    const fail = (message: string): void => {
      worker.terminate();
      reject(
        new InvalidArgumentError(
          'source',
          sourceName(source),
          'worker-failed',
          `webhmm thread ${index} did not start: ${message}`,
          { cause: message },
        ),
      );
    };
    worker.addEventListener('error', (event) => fail(event.message || 'the worker failed to load'));
    worker.addEventListener('message', function onReady(event: MessageEvent) {
      if (!isThreadReady(event.data)) return;
      worker.removeEventListener('message', onReady);
      if (event.data.type === 'webhmm-thread-failed') {
        fail(event.data.message);
        return;
      }
      resolve({
        worker,
        api: wrap<Api>(channel.port1),
        threadId: event.data.threadId,
        lifeLock,
      });
    });
    const init: ThreadInit = {
      type: 'webhmm-thread-init',
      handle: space.handle,
      index,
      count,
      port: channel.port2,
      lifeLock,
    };
    worker.postMessage(init, [channel.port2]);
  });
}

/** How `source` is named in an error: the URL, or 'a worker function'. */
function sourceName(source: WorkerSource): string {
  return typeof source === 'function' ? 'a worker function' : String(source);
}

/** Resolves once the worker holding Web Lock `lifeLock` has ended (the browser released the lock). */
async function ended(lifeLock: string): Promise<void> {
  await navigator.locks.request(lifeLock, () => undefined);
}
