// Hostile input to Threads: spawn's count and space, terminate's index. A
// refused terminate() ends no thread: the runner asks the worker after it.
import type { AddressSpace } from '../../src/space/address-space.ts';
import { Threads } from '../../src/threads/threads.ts';
import { BAD_COUNT, family, invalid, one, type Call } from './builders.ts';
import { TWO_32, hostile, need, type Case, type HostileContext } from './context.ts';
import type { HostileThreadApi } from './hostile-thread.worker.ts';

const SPAWN: Call = { call: 'Threads.spawn', needs: 'threads' };
const TERMINATE: Call = { call: 'threads.terminate', needs: 'threads' };

/** Spawns `count` workers on the context's space, or with `target`, on `target.space` (a hostile one). */
const spawn = (
  x: HostileContext,
  count: unknown,
  target: { readonly space: unknown } = { space: x.space },
) =>
  Threads.spawn<HostileThreadApi>(
    hostile<AddressSpace>(target.space),
    need(x.workerSource, 'worker source'),
    hostile<number>(count),
  );

const terminate = (x: HostileContext, index: unknown) =>
  need(x.threads, 'threads').terminate(hostile<number>(index));

export const threadCases: readonly Case[] = [
  ...family(SPAWN, 'count', [...BAD_COUNT, { label: '0', value: 0, reason: 'zero' }], spawn),
  one(SPAWN, 'count = 2^32', invalid('too-large', 'count'), (x) => spawn(x, TWO_32), {
    reading:
      "a count no space can hold (a space has 128 thread records) is beyond what the type can hold: 'too-large', refused before a worker starts",
  }),
  one(
    SPAWN,
    'space = {} (not an AddressSpace)',
    invalid('bad-value', 'space'),
    (x) => spawn(x, 1, { space: {} }),
    {
      reading:
        "a space that is not an AddressSpace is refused at once ('space' 'bad-value', as GpuMirror.attach does), before a worker starts",
    },
  ),
  ...family(TERMINATE, 'index', BAD_COUNT, terminate),
  one(TERMINATE, 'index = 1 (the size of a pool of 1)', invalid('too-large', 'index'), (x) =>
    terminate(x, 1),
  ),
  one(TERMINATE, 'index = 2^32', invalid('too-large', 'index'), (x) => terminate(x, TWO_32)),
];
