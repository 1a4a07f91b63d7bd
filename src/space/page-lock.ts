/**
 * Page holds: who may touch a page's bytes and state right now.
 *
 * Every CPU access, scope, free and (later) migration and kernel holds the
 * pages it touches for as long as it touches them, through one int32 word per
 * page (bits `LOCK_*` in shared-layout.ts). The rules:
 *
 * - plain reads and plain writes (and CPU atomics) never exclude each other;
 * - a read scope excludes plain writers, so the bytes under a read lease stay put;
 * - an exclusive hold (write scope, free, migration, kernel write) excludes all.
 *
 * Holds are taken with compare-exchange only; a holder that meets a conflict
 * sets LOCK_WAITERS and waits on the word, and every release that sees
 * LOCK_WAITERS clears it and notifies. A range is held by taking its pages in
 * ascending order and, on a conflict, releasing what it took before waiting,
 * so plain accesses never deadlock, whatever else holds what.
 */
import {
  LOCK_COUNT_MAX,
  LOCK_EXCLUSIVE,
  LOCK_LONG,
  LOCK_READERS_SHIFT,
  LOCK_SCOPES_SHIFT,
  LOCK_WAITERS,
  LOCK_WRITERS_SHIFT,
} from './shared-layout.ts';

/**
 * - `read`: a plain CPU read;
 * - `write`: a plain CPU write or atomic;
 * - `scope-read`: a read scope (access/acquire 'read');
 * - `exclusive`: a short exclusive hold (free);
 * - `exclusive-long`: an exclusive hold that may last (write scope, migration, kernel).
 */
export type HoldKind = 'read' | 'write' | 'scope-read' | 'exclusive' | 'exclusive-long';

const COUNT_SHIFT: Partial<Record<HoldKind, number>> = {
  read: LOCK_READERS_SHIFT,
  write: LOCK_WRITERS_SHIFT,
  'scope-read': LOCK_SCOPES_SHIFT,
};

const count = (word: number, shift: number): number => (word >>> shift) & LOCK_COUNT_MAX;

/** True if a holder of `kind` can join the holders recorded in `word`. */
export function compatible(word: number, kind: HoldKind): boolean {
  if (word & LOCK_EXCLUSIVE) return false;
  switch (kind) {
    case 'read':
      return count(word, LOCK_READERS_SHIFT) < LOCK_COUNT_MAX;
    case 'write':
      return (
        count(word, LOCK_SCOPES_SHIFT) === 0 && count(word, LOCK_WRITERS_SHIFT) < LOCK_COUNT_MAX
      );
    case 'scope-read':
      return (
        count(word, LOCK_WRITERS_SHIFT) === 0 && count(word, LOCK_SCOPES_SHIFT) < LOCK_COUNT_MAX
      );
    case 'exclusive':
    case 'exclusive-long':
      return (word & ~LOCK_WAITERS) === 0;
  }
}

/**
 * True if what blocks `kind` in `word` may last long (a scope, a kernel, a
 * migration), so a thread that may not block should not spin for it.
 */
export function blockerIsLong(word: number, kind: HoldKind): boolean {
  if (word & LOCK_EXCLUSIVE) return (word & LOCK_LONG) !== 0;
  // Read scopes block writers and exclusive holders for as long as the scope lasts.
  return (
    (kind === 'write' || kind === 'exclusive' || kind === 'exclusive-long') &&
    count(word, LOCK_SCOPES_SHIFT) > 0
  );
}

function added(word: number, kind: HoldKind): number {
  const shift = COUNT_SHIFT[kind];
  if (shift !== undefined) return word + (1 << shift);
  return word | LOCK_EXCLUSIVE | (kind === 'exclusive-long' ? LOCK_LONG : 0);
}

function removed(word: number, kind: HoldKind): number {
  const shift = COUNT_SHIFT[kind];
  const next = shift !== undefined ? word - (1 << shift) : word & ~(LOCK_EXCLUSIVE | LOCK_LONG);
  return next & ~LOCK_WAITERS;
}

/** Takes a hold of `kind` on `locks[page]` if compatible; returns whether it did. */
export function tryHold(locks: Int32Array, page: number, kind: HoldKind): boolean {
  let word = Atomics.load(locks, page);
  for (;;) {
    if (!compatible(word, kind)) return false;
    const seen = Atomics.compareExchange(locks, page, word, added(word, kind));
    if (seen === word) return true;
    word = seen;
  }
}

/** Releases a hold of `kind` on `locks[page]`, waking waiters if any. */
export function release(locks: Int32Array, page: number, kind: HoldKind): void {
  let word = Atomics.load(locks, page);
  for (;;) {
    const seen = Atomics.compareExchange(locks, page, word, removed(word, kind));
    if (seen === word) break;
    word = seen;
  }
  if (word & LOCK_WAITERS) Atomics.notify(locks, page);
}

/**
 * Turns an exclusive hold on `locks[page]` into a read-scope hold, with no
 * moment in between when another holder could get in (a kernel's pages are
 * migrated under an exclusive hold, then only read). Wakes waiters: plain
 * readers may join now.
 */
export function downgrade(locks: Int32Array, page: number): void {
  let word = Atomics.load(locks, page);
  for (;;) {
    const next = (word & ~(LOCK_EXCLUSIVE | LOCK_LONG | LOCK_WAITERS)) + (1 << LOCK_SCOPES_SHIFT);
    const seen = Atomics.compareExchange(locks, page, word, next);
    if (seen === word) break;
    word = seen;
  }
  if (word & LOCK_WAITERS) Atomics.notify(locks, page);
}

/**
 * Prepares to wait for `page` to admit `kind`: sets LOCK_WAITERS and returns
 * the word value to wait on, or `undefined` if the page admits `kind` now.
 */
export function announceWaiter(
  locks: Int32Array,
  page: number,
  kind: HoldKind,
): number | undefined {
  let word = Atomics.load(locks, page);
  for (;;) {
    if (compatible(word, kind)) return undefined;
    if (word & LOCK_WAITERS) return word;
    const seen = Atomics.compareExchange(locks, page, word, word | LOCK_WAITERS);
    if (seen === word) return word | LOCK_WAITERS;
    word = seen;
  }
}

/** A page's hold word decoded, for tests and diagnostics. */
export function describeHolds(word: number): {
  readers: number;
  writers: number;
  scopes: number;
  exclusive: boolean;
  long: boolean;
} {
  return {
    readers: count(word, LOCK_READERS_SHIFT),
    writers: count(word, LOCK_WRITERS_SHIFT),
    scopes: count(word, LOCK_SCOPES_SHIFT),
    exclusive: (word & LOCK_EXCLUSIVE) !== 0,
    long: (word & LOCK_LONG) !== 0,
  };
}
