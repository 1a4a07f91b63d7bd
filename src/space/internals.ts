/**
 * What the device side (GpuMirror) needs of an AddressSpace, kept off the
 * space's public surface: a registry from each space to its internals.
 */
import { InvalidArgumentError } from '../errors.ts';
import type { FaultChannel } from './fault-channel.ts';
import type { InvalidateEvent, ListenerErrorHandler } from './notifier.ts';
import type { PageTable } from './page-table.ts';
import type { WaitLimits } from './waiting.ts';

export interface SpaceInternals {
  readonly table: PageTable;
  readonly memory: SharedArrayBuffer;
  readonly faults: FaultChannel;
  /** This instance's thread id (unique among the space's attached instances). */
  readonly threadId: number;
  readonly limits: WaitLimits;
  /** Announces invalidations: to other threads through the log, to this thread's listeners now. Call with no page held. */
  announce(events: readonly InvalidateEvent[]): void;
  /** Delivers to this thread's listeners, now, the notices other threads have published. */
  pollNotices(): void;
  /** Marks this thread as owning (or no longer owning) a GPUDevice: while it does, it may not block. */
  ownDevice(owned: boolean): void;
  /** The allocation (run of allocated pages) that contains `page`, or undefined if it is free. */
  allocationRun(page: number): { first: number; count: number } | undefined;
  /** Stops thread `threadId` at a safe point (thread-record.ts); false if it has no record. */
  stopThread(threadId: number): Promise<boolean>;
  /** After thread `threadId` has ended: releases its holds, takes back its fault slots, frees its record. */
  recoverThread(threadId: number): void;
  /** Validates [va, va + len) as `read` would and returns its pages. */
  pageSpan(va: number, len: number): { first: number; count: number };
  /**
   * Throws if the pages [first, first + count) overlap an access() or
   * acquire() scope of this thread: a mirror call on them from inside one
   * would wait for itself.
   * @throws WouldBlockError 'reentrant' at `va`
   */
  assertNotInScope(first: number, count: number, va: number): void;
  /**
   * Subscribes `handler` to the errors this thread's invalidation listeners
   * throw (each is also logged with console.error; the call that triggered
   * the listener and the other listeners go on). Returns its unsubscribe function.
   */
  onListenerError(handler: ListenerErrorHandler): () => void;
}

const registry = new WeakMap<object, SpaceInternals>();

export function registerInternals(space: object, internals: SpaceInternals): void {
  registry.set(space, internals);
}

/** @throws InvalidArgumentError if `space` is not an AddressSpace */
export function internalsOf(space: object): SpaceInternals {
  const internals = registry.get(space);
  if (!internals) throw new InvalidArgumentError('space', space, 'bad-value', 'an AddressSpace');
  return internals;
}
