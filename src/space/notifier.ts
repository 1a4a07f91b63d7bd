/**
 * Invalidation notices (HMM's mmu_interval_notifier): who learns that a range
 * stopped being what a GPU copy or a cached view believed.
 *
 * Guarantees:
 * - a listener runs on the thread that registered it, never under a page hold;
 * - for its own thread's calls, synchronously before the call returns;
 * - for other threads' calls, on its event loop (Atomics.waitAsync on the
 *   log's head word), coalesced per cause;
 * - if the thread fell more than LOG_CAPACITY (1024) records behind, it gets
 *   one whole-space event with cause 'overflow' instead of the lost records;
 * - no wake-up is missed: a pump that meets a record whose ticket is taken
 *   but not yet published waits on that record's stamp (which its writer
 *   notifies once it publishes), never on the head word, which the
 *   publication does not change;
 * - a listener that throws fails neither the call that triggered it nor the
 *   delivery to the listeners after it (the mirror's own included): the
 *   error goes to the console and to every `onListenerError` subscriber.
 *
 * The full protocol, with the device side's part: docs/threads.md, "The
 * invalidation protocol".
 *
 * The log is a ring in shared memory. A writer takes a ticket (Atomics.add on
 * the head word), fills the slot, then publishes it by storing ticket + 1 in
 * the slot's stamp, notifies the stamp, and, once its records are all
 * published, notifies the head word. A reader trusts a slot only if its
 * stamp reads ticket + 1 both before and after it copies the fields.
 */
import { invariant } from '../errors.ts';
import {
  HEADER_LOG_HEAD,
  LOG_CAPACITY,
  LOG_CAUSES,
  LOG_CAUSE_MASK,
  LOG_LEN,
  LOG_META,
  LOG_ORIGIN_SHIFT,
  LOG_STAMP,
  LOG_VA,
  LOG_WORDS,
  type LogCause,
} from './shared-layout.ts';
import type { SharedState } from './shared-state.ts';

/**
 * Why a range was invalidated:
 * - 'write': a CPU write made a GPU copy stale;
 * - 'free', 'protect': the range was freed or its protection changed;
 * - 'discard': the range's contents were dropped (`discard`): it reads as zeros;
 * - 'migrate': a migration took the pages from the CPU;
 * - 'overflow': this thread missed notices; assume the whole space changed.
 */
export type InvalidateCause = LogCause | 'overflow';

export interface InvalidateEvent {
  /** First byte of the invalidated range (clipped to the listener's range). */
  readonly va: number;
  /** Bytes in the range. */
  readonly len: number;
  /** Why; see InvalidateCause. */
  readonly cause: InvalidateCause;
}

export type InvalidateListener = (event: InvalidateEvent) => void;

/** Told of every error an invalidation listener of this thread threw. */
export type ListenerErrorHandler = (error: unknown, event: InvalidateEvent) => void;

/**
 * How long a pump waits for a record whose ticket was taken but which was
 * never published (its writer was ended mid-append, outside webhmm's thread
 * records) before it gives up on it and delivers an 'overflow' instead, ms.
 */
const STALLED_RECORD_MS = 1000;

interface Registration {
  readonly va: number;
  readonly end: number;
  readonly listener: InvalidateListener;
}

export class InvalidationNotifier {
  private readonly log: Int32Array;
  private readonly header: Int32Array;
  private readonly registrations = new Set<Registration>();
  private readonly errorHandlers = new Set<ListenerErrorHandler>();
  /** Next ticket this thread has not read. */
  private cursor = 0;
  /** The stamp `drain` last found in the unpublished slot at the cursor. */
  private unpublishedStamp = 0;
  private pumping = false;

  constructor(
    state: SharedState,
    private readonly threadId: number,
    private readonly spaceSize: number,
    /** Runs the multi-word log append as one critical section of the thread (thread-record.ts). */
    private readonly critical: <T>(body: () => T) => T = (body) => body(),
  ) {
    this.log = state.log;
    this.header = state.header;
  }

  /** Registers `listener` for [va, va + len); returns its unsubscribe function. */
  listen(va: number, len: number, listener: InvalidateListener): () => void {
    const registration = { va, end: va + len, listener };
    if (this.registrations.size === 0) this.cursor = Atomics.load(this.header, HEADER_LOG_HEAD);
    this.registrations.add(registration);
    if (!this.pumping) void this.pump();
    return () => {
      this.registrations.delete(registration);
      // Wake the pump so it sees there is nobody left to serve and ends.
      if (this.registrations.size === 0) Atomics.notify(this.header, HEADER_LOG_HEAD);
    };
  }

  /** Subscribes `handler` to the errors this thread's listeners throw; returns its unsubscribe function. */
  onListenerError(handler: ListenerErrorHandler): () => void {
    this.errorHandlers.add(handler);
    return () => this.errorHandlers.delete(handler);
  }

  /**
   * Publishes `events` (already coalesced) to the other threads, then runs this
   * thread's listeners for them. Call with no page held.
   */
  announce(events: readonly InvalidateEvent[]): void {
    if (events.length === 0) return;
    this.critical(() => {
      for (const event of events) this.append(event);
    });
    Atomics.notify(this.header, HEADER_LOG_HEAD);
    this.deliver(events);
  }

  private append(event: InvalidateEvent): void {
    const ticket = Atomics.add(this.header, HEADER_LOG_HEAD, 1);
    const slot = (ticket >>> 0) % LOG_CAPACITY;
    const at = slot * LOG_WORDS;
    // Unpublish first, so a reader that raced past the old record sees it change.
    Atomics.store(this.log, at + LOG_STAMP, 0);
    Atomics.store(this.log, at + LOG_VA, event.va | 0);
    Atomics.store(this.log, at + LOG_LEN, event.len | 0);
    const cause = LOG_CAUSES.indexOf(event.cause as LogCause);
    invariant(cause >= 0, `an announced invalidation has a log cause, not '${event.cause}'`);
    Atomics.store(this.log, at + LOG_META, cause | (this.threadId << LOG_ORIGIN_SHIFT));
    Atomics.store(this.log, at + LOG_STAMP, (ticket + 1) | 0);
    // A pump that found this slot unpublished waits on its stamp (see `pump`).
    Atomics.notify(this.log, at + LOG_STAMP);
  }

  /**
   * Delivers now, synchronously, every notice other threads have published
   * since this thread last read the log (the device side applies them before
   * each GPU use rather than waiting for its event loop).
   */
  poll(): void {
    if (this.registrations.size === 0) return;
    const events = this.drain(Atomics.load(this.header, HEADER_LOG_HEAD));
    if (events.length > 0) this.deliver(coalesce(events));
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    let stalledSince = Number.NaN;
    try {
      while (this.registrations.size > 0) {
        const head = Atomics.load(this.header, HEADER_LOG_HEAD);
        const events = this.drain(head);
        if (events.length > 0) this.deliver(coalesce(events));
        if (this.registrations.size === 0) break;
        if (this.cursor === head) {
          stalledSince = Number.NaN;
          const waited = Atomics.waitAsync(this.header, HEADER_LOG_HEAD, head);
          if (waited.async) await waited.value;
          else await Promise.resolve();
          continue;
        }
        // The record at the cursor has its ticket taken but is not published
        // yet. Its publication does not move the head, so waiting on the
        // head could sleep through it: wait on its stamp, which its writer
        // notifies when it publishes.
        if (Number.isNaN(stalledSince)) stalledSince = performance.now();
        if (performance.now() - stalledSince > STALLED_RECORD_MS) {
          this.deliver(this.overflow(Atomics.load(this.header, HEADER_LOG_HEAD)));
          continue;
        }
        const stamp = this.stampIndex(this.cursor);
        const waited = Atomics.waitAsync(this.log, stamp, this.unpublishedStamp, 50);
        if (waited.async) await waited.value;
        else await Promise.resolve();
      }
    } finally {
      this.pumping = false;
    }
  }

  /** The index in the log of the stamp word of `ticket`'s slot. */
  private stampIndex(ticket: number): number {
    return ((ticket >>> 0) % LOG_CAPACITY) * LOG_WORDS + LOG_STAMP;
  }

  /** Reads the published records from the cursor up to `head`, skipping this thread's own. */
  private drain(head: number): InvalidateEvent[] {
    if (((head - this.cursor) | 0) > LOG_CAPACITY) return this.overflow(head);
    const events: InvalidateEvent[] = [];
    while (this.cursor !== head) {
      const at = ((this.cursor >>> 0) % LOG_CAPACITY) * LOG_WORDS;
      const expected = (this.cursor + 1) | 0;
      const stamp = Atomics.load(this.log, at + LOG_STAMP);
      if (stamp !== expected) {
        // Not yet published: stop here; the writer's notify of the stamp wakes us. Otherwise overwritten.
        if (stamp === 0 || ((stamp - expected) | 0) < 0) {
          this.unpublishedStamp = stamp;
          break;
        }
        return this.overflow(head);
      }
      const va = Atomics.load(this.log, at + LOG_VA) >>> 0;
      const len = Atomics.load(this.log, at + LOG_LEN) >>> 0;
      const meta = Atomics.load(this.log, at + LOG_META);
      if (Atomics.load(this.log, at + LOG_STAMP) !== expected) return this.overflow(head);
      const cause = LOG_CAUSES[meta & LOG_CAUSE_MASK];
      if (meta >>> LOG_ORIGIN_SHIFT !== this.threadId && cause !== undefined)
        events.push({ va, len, cause });
      this.cursor = (this.cursor + 1) | 0;
    }
    return events;
  }

  private overflow(head: number): InvalidateEvent[] {
    this.cursor = head;
    return [{ va: 0, len: this.spaceSize, cause: 'overflow' }];
  }

  private deliver(events: readonly InvalidateEvent[]): void {
    for (const registration of [...this.registrations]) {
      for (const event of events) {
        const va = Math.max(event.va, registration.va);
        const end = Math.min(event.va + event.len, registration.end);
        if (va < end) this.call(registration.listener, { va, len: end - va, cause: event.cause });
      }
    }
  }

  /** Runs one listener; what it throws is reported, never passed on (see the module doc). */
  private call(listener: InvalidateListener, event: InvalidateEvent): void {
    try {
      listener(event);
    } catch (error) {
      console.error('webhmm: an onInvalidate listener threw; the other listeners still ran', error);
      for (const handler of [...this.errorHandlers]) {
        try {
          handler(error, event);
        } catch (reportError) {
          console.error('webhmm: an onListenerError handler threw', reportError);
        }
      }
    }
  }
}

/** Merges events of the same cause whose ranges overlap or touch; order: by cause, then address. */
export function coalesce(events: readonly InvalidateEvent[]): InvalidateEvent[] {
  const sorted = [...events].sort((a, b) =>
    a.cause === b.cause ? a.va - b.va : a.cause < b.cause ? -1 : 1,
  );
  const out: InvalidateEvent[] = [];
  for (const event of sorted) {
    const last = out[out.length - 1];
    if (last && last.cause === event.cause && event.va <= last.va + last.len) {
      const end = Math.max(last.va + last.len, event.va + event.len);
      out[out.length - 1] = { va: last.va, len: end - last.va, cause: last.cause };
    } else {
      out.push(event);
    }
  }
  return out;
}
