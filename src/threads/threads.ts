/**
 * CPU threads for apps: `Threads.spawn(space, worker, n)` starts n workers,
 * each with the space attached (see `serveThread`), and gives their APIs as
 * comlink proxies. `terminate()` ends them.
 *
 * ```ts
 * const threads = await Threads.spawn<SumApi>(space, new URL('./sum.worker.ts', import.meta.url), 4);
 * const sums = await threads.map((thread, i) => thread.sum(va + i * part, part));
 * await threads.terminate();
 * ```
 */
import { releaseProxy, wrap, type Remote } from 'comlink';
import { InvalidArgumentError } from '../errors.ts';
import type { AddressSpace } from '../space/address-space.ts';
import { isThreadReady, type ThreadInit } from './thread-protocol.ts';

/** A module worker's URL, or a function that starts one (for bundlers that need `new Worker(new URL(...))` in app code). */
export type WorkerSource = URL | string | (() => Worker);

interface Spawned<Api> {
  readonly worker: Worker;
  readonly api: Remote<Api>;
  readonly threadId: number;
}

export class Threads<Api> {
  private ended = false;

  private constructor(private readonly spawned: readonly Spawned<Api>[]) {}

  /**
   * Starts `count` workers from `source`, each running `serveThread`, and
   * resolves once every one has attached `space`.
   * @throws InvalidArgumentError for a bad count; the worker's error if one fails to start
   */
  static async spawn<Api>(
    space: AddressSpace,
    source: WorkerSource,
    count: number,
  ): Promise<Threads<Api>> {
    if (!Number.isInteger(count) || count < 1) {
      throw new InvalidArgumentError('count', count, 'bad-value', 'an integer of at least 1');
    }
    const starting = Array.from({ length: count }, (_, index) =>
      start<Api>(space, source, index, count),
    );
    const settled = await Promise.allSettled(starting);
    const failed = settled.find((outcome) => outcome.status === 'rejected');
    if (failed) {
      for (const outcome of settled) {
        if (outcome.status === 'fulfilled') outcome.value.worker.terminate();
      }
      throw failed.reason;
    }
    return new Threads(
      settled.map((outcome) => (outcome as PromiseFulfilledResult<Spawned<Api>>).value),
    );
  }

  /** The threads' APIs, in spawn order. */
  get workers(): readonly Remote<Api>[] {
    return this.spawned.map((thread) => thread.api);
  }

  get size(): number {
    return this.spawned.length;
  }

  /** Runs `work` on every thread at once; resolves with the results in order. */
  map<T>(work: (thread: Remote<Api>, index: number) => Promise<T>): Promise<T[]> {
    return Promise.all(this.spawned.map((thread, index) => work(thread.api, index)));
  }

  /** Ends every thread. Idempotent. */
  terminate(): Promise<void> {
    if (this.ended) return Promise.resolve();
    this.ended = true;
    for (const thread of this.spawned) {
      thread.api[releaseProxy]();
      thread.worker.terminate();
    }
    return Promise.resolve();
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
  return new Promise<Spawned<Api>>((resolve, reject) => {
    const fail = (message: string): void => {
      worker.terminate();
      reject(new Error(`webhmm thread ${index} did not start: ${message}`));
    };
    worker.addEventListener('error', (event) => fail(event.message || 'the worker failed to load'));
    worker.addEventListener('message', function onReady(event: MessageEvent) {
      if (!isThreadReady(event.data)) return;
      worker.removeEventListener('message', onReady);
      if (event.data.type === 'webhmm-thread-failed') {
        fail(event.data.message);
        return;
      }
      resolve({ worker, api: wrap<Api>(channel.port1), threadId: event.data.threadId });
    });
    const init: ThreadInit = {
      type: 'webhmm-thread-init',
      handle: space.handle,
      index,
      count,
      port: channel.port2,
    };
    worker.postMessage(init, [channel.port2]);
  });
}
