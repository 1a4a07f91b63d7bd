/**
 * Thread records: what makes a thread safe to end. A worker can be
 * terminated at any instruction, so every run of shared-state changes that
 * must not be cut short (taking a set of page holds, a page's state change,
 * the allocator's critical section, posting a fault) runs as a critical
 * section, and every page hold a thread has is written in its record's
 * journal (Linux's robust futex list plays this part for futexes).
 *
 * - A thread enters a critical section by moving its record RUNNING ->
 *   CRITICAL and leaves it CRITICAL -> RUNNING; sections nest (a depth count
 *   kept by the thread). A blocking wait inside a section is taken outside it
 *   (`pause`/`resume`): when a thread waits, what it holds is journaled and
 *   nothing is half done.
 * - `stop` (the terminator) moves the record RUNNING -> STOPPED, waiting out
 *   a critical section in progress. A stopped thread never enters a critical
 *   section again (a call that would throws WouldBlockError 'stopped'), so
 *   it can be ended at once.
 * - `recover` (after the thread has ended) releases every journaled hold and
 *   takes back the fault slots it owned, then frees the record.
 *
 * Layout: `THREAD_*` in shared-layout.ts.
 */
import { OutOfMemoryError, WouldBlockError } from '../errors.ts';
import type { HoldKind } from './page-lock.ts';
import {
  THREAD_CRITICAL,
  THREAD_ENTRY_WORDS,
  THREAD_FREE,
  THREAD_HOLDS,
  THREAD_ID,
  THREAD_JOURNAL,
  THREAD_JOURNAL_CAPACITY,
  THREAD_RUNNING,
  THREAD_SLOTS,
  THREAD_STATE,
  THREAD_STOPPED,
  THREAD_WORDS,
} from './shared-layout.ts';

/** A run of pages held with one kind. */
export interface JournaledHold {
  readonly first: number;
  readonly count: number;
  readonly kind: HoldKind;
}

/** Journal codes of hold kinds: a kind's index. */
const KINDS: readonly HoldKind[] = [
  'read',
  'write',
  'scope-read',
  'exclusive',
  'exclusive-long',
  'scope-write',
  'device-read',
  'protect',
];

export class ThreadRecord {
  private depth = 0;
  private readonly base: number;

  private constructor(
    private readonly words: Int32Array,
    readonly slot: number,
  ) {
    this.base = slot * THREAD_WORDS;
  }

  /**
   * Claims a free record for thread `threadId`.
   * @throws OutOfMemoryError 'threads' when every record is taken
   */
  static claim(words: Int32Array, threadId: number): ThreadRecord {
    for (let slot = 0; slot < THREAD_SLOTS; slot++) {
      const at = slot * THREAD_WORDS;
      if (
        Atomics.compareExchange(words, at + THREAD_STATE, THREAD_FREE, THREAD_CRITICAL) ===
        THREAD_FREE
      ) {
        Atomics.store(words, at + THREAD_ID, threadId);
        Atomics.store(words, at + THREAD_HOLDS, 0);
        Atomics.store(words, at + THREAD_STATE, THREAD_RUNNING);
        return new ThreadRecord(words, slot);
      }
    }
    throw new OutOfMemoryError('threads', 1, 0);
  }

  // ---------------------------------------------------------------- the thread's side

  /** Runs `body` as a critical section (see the module doc). */
  critical<T>(body: () => T): T {
    if (this.depth === 0) this.enter();
    this.depth++;
    try {
      return body();
    } finally {
      if (--this.depth === 0) this.leave();
    }
  }

  /** Runs a blocking wait outside the critical section the thread may be in. */
  waitOutside(wait: () => void): void {
    if (this.depth === 0) {
      wait();
      return;
    }
    this.leave();
    try {
      wait();
    } finally {
      this.enter();
    }
  }

  /** Journals holds the thread has just taken (check `assertFits` first). */
  journal(holds: readonly JournaledHold[]): void {
    const count = Atomics.load(this.words, this.base + THREAD_HOLDS);
    this.assertFits(holds.length);
    holds.forEach((hold, i) => this.writeEntry(count + i, hold));
    Atomics.store(this.words, this.base + THREAD_HOLDS, count + holds.length);
  }

  /** Whether `extra` more holds (negative: fewer) fit the journal. */
  fits(extra: number): boolean {
    return Atomics.load(this.words, this.base + THREAD_HOLDS) + extra <= THREAD_JOURNAL_CAPACITY;
  }

  /** @throws OutOfMemoryError 'threads' if `extra` more holds would overflow the journal */
  assertFits(extra: number): void {
    if (!this.fits(extra)) {
      const count = Atomics.load(this.words, this.base + THREAD_HOLDS);
      throw new OutOfMemoryError('threads', count + extra, THREAD_JOURNAL_CAPACITY);
    }
  }

  /** Removes released holds from the journal (each matching entry once). */
  unjournal(holds: readonly JournaledHold[]): void {
    let count = Atomics.load(this.words, this.base + THREAD_HOLDS);
    for (const hold of holds) {
      for (let i = count - 1; i >= 0; i--) {
        const entry = this.readEntry(i);
        if (entry.first === hold.first && entry.count === hold.count && entry.kind === hold.kind) {
          count--;
          if (i !== count) this.writeEntry(i, this.readEntry(count));
          break;
        }
      }
    }
    Atomics.store(this.words, this.base + THREAD_HOLDS, count);
  }

  private enter(): void {
    const at = this.base + THREAD_STATE;
    const seen = Atomics.compareExchange(this.words, at, THREAD_RUNNING, THREAD_CRITICAL);
    if (seen === THREAD_RUNNING) return;
    // Stopped (or already recovered): this thread is being ended. Unwinding
    // lets it go idle, so it ends at once; what it holds stays journaled.
    throw new WouldBlockError(0, 'stopped', 'this thread is being ended (Threads.terminate)');
  }

  private leave(): void {
    // No notify: `stop` polls, so leaving costs one compare-exchange.
    Atomics.compareExchange(this.words, this.base + THREAD_STATE, THREAD_CRITICAL, THREAD_RUNNING);
  }

  private writeEntry(index: number, hold: JournaledHold): void {
    const at = this.base + THREAD_JOURNAL + index * THREAD_ENTRY_WORDS;
    Atomics.store(this.words, at, hold.first);
    Atomics.store(this.words, at + 1, hold.count);
    Atomics.store(this.words, at + 2, KINDS.indexOf(hold.kind));
  }

  private readEntry(index: number): JournaledHold {
    return readEntry(this.words, this.base, index);
  }

  // ---------------------------------------------------------------- the terminator's side

  /** The record slot of thread `threadId`, or -1. */
  static slotOf(words: Int32Array, threadId: number): number {
    for (let slot = 0; slot < THREAD_SLOTS; slot++) {
      const at = slot * THREAD_WORDS;
      if (
        Atomics.load(words, at + THREAD_STATE) !== THREAD_FREE &&
        Atomics.load(words, at + THREAD_ID) === threadId
      ) {
        return slot;
      }
    }
    return -1;
  }

  /**
   * Stops thread `threadId`: waits until it is outside any critical section
   * and marks it stopped, after which it enters none. Resolves false if the
   * thread has no record (never attached, or already recovered).
   */
  static async stop(words: Int32Array, threadId: number): Promise<boolean> {
    const slot = ThreadRecord.slotOf(words, threadId);
    if (slot < 0) return false;
    const at = slot * THREAD_WORDS + THREAD_STATE;
    for (;;) {
      const seen = Atomics.compareExchange(words, at, THREAD_RUNNING, THREAD_STOPPED);
      if (seen === THREAD_RUNNING || seen === THREAD_STOPPED) return true;
      const waited = Atomics.waitAsync(words, at, seen, 2);
      if (waited.async) await waited.value;
    }
  }

  /**
   * After thread `threadId` has ended: calls `release` with every hold it
   * journaled and `abandonFaults` with its id, then frees its record.
   */
  static recover(
    words: Int32Array,
    threadId: number,
    release: (holds: readonly JournaledHold[]) => void,
    abandonFaults: (threadId: number) => void,
  ): void {
    const slot = ThreadRecord.slotOf(words, threadId);
    if (slot < 0) return;
    const base = slot * THREAD_WORDS;
    const count = Atomics.load(words, base + THREAD_HOLDS);
    const holds = Array.from({ length: count }, (_, i) => readEntry(words, base, i));
    release(holds);
    abandonFaults(threadId);
    Atomics.store(words, base + THREAD_HOLDS, 0);
    Atomics.store(words, base + THREAD_ID, 0);
    Atomics.store(words, base + THREAD_STATE, THREAD_FREE);
  }
}

function readEntry(words: Int32Array, base: number, index: number): JournaledHold {
  const at = base + THREAD_JOURNAL + index * THREAD_ENTRY_WORDS;
  return {
    first: Atomics.load(words, at),
    count: Atomics.load(words, at + 1),
    kind: KINDS[Atomics.load(words, at + 2)] ?? 'read',
  };
}
