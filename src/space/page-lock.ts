/**
 * Page holds: who may touch a page's bytes and state right now.
 *
 * Every CPU access, scope, free and protect, and every migration and kernel
 * run, holds the pages it touches for as long as it touches them, through one
 * int32 word per page (bits `LOCK_*` in shared-layout.ts). The rules:
 *
 * - plain reads and plain writes (and CPU atomics) never exclude each other;
 * - a read scope, and a device read (a kernel that only reads), exclude plain
 *   writers, so the bytes under them stay put;
 * - a write scope, and a device hold (a migration, a kernel that writes),
 *   exclude everyone;
 * - a free excludes every CPU holder but admits the device's holds: it unmaps
 *   the page at once and the device's last release finishes it (mapping.ts);
 * - a protect excludes only frees and other protects, and keeps new holders
 *   out for the moment it changes the ptes: it applies to accesses that start
 *   after it.
 *
 * Holds are taken with compare-exchange only; a holder that meets a conflict
 * sets LOCK_WAITERS and waits on the word, and every release that sees
 * LOCK_WAITERS clears it and notifies. A range is held by taking its pages in
 * ascending order and, on a conflict, releasing what it took before waiting,
 * so plain accesses never deadlock, whatever else holds what.
 *
 * No starvation. A waiter also sets the hold-off bits of the kinds that keep
 * it out (LOCK_HOLD_OFF_*): while the page is held, a new CPU holder of such
 * a kind that holds nothing else waits behind it instead of joining the
 * holders it waits for (holding.ts); the bits go when the page is next left
 * with no holder (every waiter is woken then and announces itself again if
 * it must). A CPU call blocked by a holder (not one that only waits behind
 * others) sets LOCK_CPU_WAITING too: no new device hold joins
 * the page, held or not, until that waiter got in or gave up (a CPU access
 * already waiting is ordered before runs asked for after it).
 */
import {
  LOCK_CPU_WAITING,
  LOCK_DEVICE,
  LOCK_DEVICE_READS_MAX,
  LOCK_DEVICE_READS_SHIFT,
  LOCK_EXCLUSIVE,
  LOCK_FREEING,
  LOCK_HOLD_OFF_READERS,
  LOCK_HOLD_OFF_SCOPES,
  LOCK_HOLD_OFF_WRITERS,
  LOCK_PROTECT,
  LOCK_READERS_MAX,
  LOCK_READERS_SHIFT,
  LOCK_SCOPES_MAX,
  LOCK_SCOPES_SHIFT,
  LOCK_WAITERS,
  LOCK_WRITERS_MAX,
  LOCK_WRITERS_SHIFT,
} from './shared-layout.ts';

/**
 * CPU side:
 * - `read`: a plain CPU read;
 * - `write`: a plain CPU write or atomic;
 * - `scope-read`: a read scope (access/acquire 'read');
 * - `scope-write`: a write scope (access/acquire 'write');
 * - `exclusive`: a free: excludes every CPU holder, admits the device's holds;
 * - `protect`: a protection change: excludes frees and other protects.
 *
 * Device side:
 * - `exclusive-long`: a migration, or a kernel run that writes the page;
 * - `device-read`: a kernel run that only reads the page.
 */
export type HoldKind =
  | 'read'
  | 'write'
  | 'scope-read'
  | 'scope-write'
  | 'exclusive'
  | 'protect'
  | 'exclusive-long'
  | 'device-read';

interface Count {
  readonly shift: number;
  readonly max: number;
}

const READERS: Count = { shift: LOCK_READERS_SHIFT, max: LOCK_READERS_MAX };
const WRITERS: Count = { shift: LOCK_WRITERS_SHIFT, max: LOCK_WRITERS_MAX };
const SCOPES: Count = { shift: LOCK_SCOPES_SHIFT, max: LOCK_SCOPES_MAX };
const DEVICE_READS: Count = { shift: LOCK_DEVICE_READS_SHIFT, max: LOCK_DEVICE_READS_MAX };

const COUNTS: Partial<Record<HoldKind, Count>> = {
  read: READERS,
  write: WRITERS,
  'scope-read': SCOPES,
  'device-read': DEVICE_READS,
};

const FLAGS: Partial<Record<HoldKind, number>> = {
  'scope-write': LOCK_EXCLUSIVE,
  exclusive: LOCK_FREEING,
  protect: LOCK_PROTECT,
  'exclusive-long': LOCK_DEVICE,
};

const countMask = (c: Count): number => c.max << c.shift;
const count = (word: number, c: Count): number => (word >>> c.shift) & c.max;

/** Every bit that says someone holds the page. */
const HOLDERS =
  countMask(READERS) |
  countMask(WRITERS) |
  countMask(SCOPES) |
  countMask(DEVICE_READS) |
  LOCK_EXCLUSIVE |
  LOCK_DEVICE |
  LOCK_FREEING |
  LOCK_PROTECT;
/** CPU holders a free must wait for. */
const CPU_HOLDERS = countMask(READERS) | countMask(WRITERS) | countMask(SCOPES) | LOCK_EXCLUSIVE;
/** The device's holds: a free of the page is finished by the last of them. */
const DEVICE_HOLDERS = countMask(DEVICE_READS) | LOCK_DEVICE;
/** Holds that exclude every new shared holder. */
const BARRIERS = LOCK_EXCLUSIVE | LOCK_DEVICE | LOCK_FREEING | LOCK_PROTECT;
const HOLD_OFF = LOCK_HOLD_OFF_READERS | LOCK_HOLD_OFF_WRITERS | LOCK_HOLD_OFF_SCOPES;
/** Bits that say who waits, not who holds. */
const WAITING = LOCK_WAITERS | LOCK_CPU_WAITING | HOLD_OFF;

/**
 * The hold-off bits a waiter for `kind` sets: the new holders that would
 * keep it out of a held page. A waiting free (which the device does not keep
 * out) and a waiting exclusive hold want everyone held off; a waiting writer
 * read scopes (and device reads); a waiting read scope writers; a waiting
 * plain read, or protect, only what nobody joins anyway.
 */
const HOLD_OFF_FOR: Readonly<Record<HoldKind, number>> = {
  read: 0,
  write: LOCK_HOLD_OFF_SCOPES,
  'scope-read': LOCK_HOLD_OFF_WRITERS,
  'device-read': LOCK_HOLD_OFF_WRITERS,
  'scope-write': HOLD_OFF,
  exclusive: HOLD_OFF,
  'exclusive-long': HOLD_OFF,
  protect: 0,
};

/** The hold-off bit that makes a new CPU holder of `kind` wait behind a waiter, if any. */
const HELD_OFF_BY: Partial<Record<HoldKind, number>> = {
  read: LOCK_HOLD_OFF_READERS,
  write: LOCK_HOLD_OFF_WRITERS,
  'scope-read': LOCK_HOLD_OFF_SCOPES,
};

/** Whether `kind` is the device's (a migration or a kernel run) rather than a CPU call's. */
export function isDeviceKind(kind: HoldKind): boolean {
  return kind === 'exclusive-long' || kind === 'device-read';
}

/** True if a holder of `kind` can join the holders recorded in `word`. */
export function compatible(word: number, kind: HoldKind): boolean {
  switch (kind) {
    case 'read':
      return !(word & BARRIERS) && count(word, READERS) < READERS.max;
    case 'write':
      return (
        !(word & BARRIERS) &&
        count(word, SCOPES) === 0 &&
        count(word, DEVICE_READS) === 0 &&
        count(word, WRITERS) < WRITERS.max
      );
    case 'scope-read':
      return !(word & BARRIERS) && count(word, WRITERS) === 0 && count(word, SCOPES) < SCOPES.max;
    case 'device-read':
      // Not while a CPU access waits for the page: it was there first.
      return (
        !(word & (BARRIERS | LOCK_CPU_WAITING)) &&
        count(word, WRITERS) === 0 &&
        count(word, DEVICE_READS) < DEVICE_READS.max
      );
    case 'scope-write':
      return (word & ~WAITING) === 0;
    case 'exclusive':
      return !(word & (CPU_HOLDERS | LOCK_FREEING | LOCK_PROTECT));
    case 'protect':
      return !(word & (LOCK_FREEING | LOCK_PROTECT));
    case 'exclusive-long':
      return (word & ~WAITING) === 0 && !(word & LOCK_CPU_WAITING);
  }
}

/**
 * True if what blocks `kind` in `word` may last long (a scope, a kernel, a
 * migration), so a thread that may not block should not spin for it.
 */
export function blockerIsLong(word: number, kind: HoldKind): boolean {
  if (word & (LOCK_EXCLUSIVE | LOCK_DEVICE)) return true;
  // Read scopes block writers and write scopes for as long as the scope
  // lasts, device reads for as long as the kernel runs; a free waits for scopes.
  const scopesBlock = kind === 'write' || kind === 'scope-write' || kind === 'exclusive';
  const deviceReadsBlock = kind === 'write' || kind === 'scope-write';
  return (
    (scopesBlock && count(word, SCOPES) > 0) || (deviceReadsBlock && count(word, DEVICE_READS) > 0)
  );
}

/** True if some holder holds the page (a waiter alone does not count). */
export function isHeldWord(word: number): boolean {
  return (word & HOLDERS) !== 0;
}

/**
 * True if a new CPU holder of `kind` that holds nothing else should wait
 * rather than join: a waiter that such a holder would keep out waits for
 * the page while it is held (no starvation).
 */
export function yieldsToWaiter(word: number, kind: HoldKind): boolean {
  return ((HELD_OFF_BY[kind] ?? 0) & word) !== 0 && isHeldWord(word);
}

function added(word: number, kind: HoldKind): number {
  const c = COUNTS[kind];
  return c ? word + (1 << c.shift) : word | (FLAGS[kind] ?? 0);
}

function removed(word: number, kind: HoldKind): number {
  const c = COUNTS[kind];
  const next = (c ? word - (1 << c.shift) : word & ~(FLAGS[kind] ?? 0)) & ~LOCK_WAITERS;
  // Hold-offs only matter while the page is held; every waiter is woken now.
  return isHeldWord(next) ? next : next & ~HOLD_OFF;
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

/**
 * Releases a hold of `kind` on `locks[page]`, waking waiters if any. Returns
 * true if it was a device hold or a free's, and neither remains on the page:
 * a free deferred on the page may be finished now (mapping.ts).
 */
export function release(locks: Int32Array, page: number, kind: HoldKind): boolean {
  let word = Atomics.load(locks, page);
  let next: number;
  for (;;) {
    next = removed(word, kind);
    const seen = Atomics.compareExchange(locks, page, word, next);
    if (seen === word) break;
    word = seen;
  }
  if (word & LOCK_WAITERS) Atomics.notify(locks, page);
  const settles = isDeviceKind(kind) || kind === 'exclusive';
  return settles && (next & (DEVICE_HOLDERS | LOCK_FREEING)) === 0;
}

/**
 * Turns a device's exclusive hold on `locks[page]` into a device read, with
 * no moment in between when another holder could get in (a kernel's pages
 * are migrated under an exclusive hold, then only read). Wakes waiters:
 * plain readers may join now.
 */
export function downgrade(locks: Int32Array, page: number): void {
  let word = Atomics.load(locks, page);
  for (;;) {
    const next = (word & ~(LOCK_DEVICE | LOCK_WAITERS)) + (1 << DEVICE_READS.shift);
    const seen = Atomics.compareExchange(locks, page, word, next);
    if (seen === word) break;
    word = seen;
  }
  if (word & LOCK_WAITERS) Atomics.notify(locks, page);
}

/**
 * Prepares to wait for `page` to admit `kind`: sets LOCK_WAITERS and the
 * hold-off bits of `kind`, and returns the word value to wait on, or
 * `undefined` if the page admits `kind` now. For the device side's waits
 * (the page table's hold loops), which need withdraw nothing: hold-offs go
 * by themselves when the page is next left unheld.
 */
export function announceWaiter(
  locks: Int32Array,
  page: number,
  kind: HoldKind,
): number | undefined {
  return announce(locks, page, LOCK_WAITERS | HOLD_OFF_FOR[kind], (w) => compatible(w, kind));
}

/**
 * `announceWaiter` for a CPU call (holding.ts): sets LOCK_CPU_WAITING too,
 * which keeps new device holds out even from a page no one holds, so the
 * call must withdraw it (`withdrawCpuWaiter`) once it got in, gave up, or
 * waits on another page.
 */
export function announceCpuWaiter(
  locks: Int32Array,
  page: number,
  kind: HoldKind,
): number | undefined {
  const bits = LOCK_WAITERS | LOCK_CPU_WAITING | HOLD_OFF_FOR[kind];
  return announce(locks, page, bits, (w) => compatible(w, kind));
}

/**
 * Prepares a new CPU holder of `kind` that holds nothing else to wait behind
 * the waiters of `page` (see `yieldsToWaiter`): sets LOCK_WAITERS only (it
 * defers to the waiters, it claims nothing before them, the device's
 * included), and returns the word to wait on, or `undefined` if it need not wait.
 */
export function announceYield(locks: Int32Array, page: number, kind: HoldKind): number | undefined {
  return announce(locks, page, LOCK_WAITERS, (w) => !yieldsToWaiter(w, kind));
}

function announce(
  locks: Int32Array,
  page: number,
  bits: number,
  admits: (word: number) => boolean,
): number | undefined {
  let word = Atomics.load(locks, page);
  for (;;) {
    if (admits(word)) return undefined;
    if ((word & bits) === bits) return word;
    const seen = Atomics.compareExchange(locks, page, word, word | bits);
    if (seen === word) return word | bits;
    word = seen;
  }
}

/**
 * Withdraws a CPU waiter's LOCK_CPU_WAITING from `page` (it got in, gave
 * up, or now waits on another page), waking the page's other waiters so that
 * those still waiting announce themselves again. A waiter that did not get
 * in withdraws the hold-offs too (`withdrawHoldOffs`).
 */
export function withdrawCpuWaiter(locks: Int32Array, page: number, gotIn: boolean): void {
  const bits = gotIn ? LOCK_CPU_WAITING : LOCK_CPU_WAITING | HOLD_OFF;
  const word = Atomics.and(locks, page, ~bits);
  if (word & bits && word & LOCK_WAITERS) Atomics.notify(locks, page);
}

/**
 * Clears `page`'s hold-offs for a waiter that gave up (a timeout, a thrown
 * check) or moved on: left set while the page stays held (a long read scope,
 * say), they would keep new holders waiting for a waiter that is gone. The
 * page's waiters are woken, and those still waiting set theirs again.
 */
export function withdrawHoldOffs(locks: Int32Array, page: number): void {
  const word = Atomics.and(locks, page, ~HOLD_OFF);
  if (word & HOLD_OFF && word & LOCK_WAITERS) Atomics.notify(locks, page);
}

/** True if the device holds the page (a migration, or a kernel run reading or writing it). */
export function hasDeviceHolds(word: number): boolean {
  return (word & DEVICE_HOLDERS) !== 0;
}

/** True if neither the device nor a free holds the page: a free deferred on it may be finished. */
export function freeMayFinish(word: number): boolean {
  return (word & (DEVICE_HOLDERS | LOCK_FREEING)) === 0;
}

/**
 * Clears every page's LOCK_CPU_WAITING and hold-offs, waking the waiters so
 * that the live ones announce themselves again: after a thread ended while
 * it waited, its claims would otherwise keep others off the page for good.
 */
export function forgetCpuWaiters(locks: Int32Array): void {
  for (let page = 0; page < locks.length; page++) {
    if (!(Atomics.load(locks, page) & (LOCK_CPU_WAITING | HOLD_OFF))) continue;
    const word = Atomics.and(locks, page, ~(LOCK_CPU_WAITING | HOLD_OFF));
    if (word & LOCK_WAITERS) Atomics.notify(locks, page);
  }
}

/** A page's hold word decoded, for tests and diagnostics. */
export function describeHolds(word: number): {
  readers: number;
  writers: number;
  scopes: number;
  deviceReads: number;
  exclusive: boolean;
  device: boolean;
  freeing: boolean;
  protecting: boolean;
} {
  return {
    readers: count(word, READERS),
    writers: count(word, WRITERS),
    scopes: count(word, SCOPES),
    deviceReads: count(word, DEVICE_READS),
    exclusive: (word & LOCK_EXCLUSIVE) !== 0,
    device: (word & LOCK_DEVICE) !== 0,
    freeing: (word & LOCK_FREEING) !== 0,
    protecting: (word & LOCK_PROTECT) !== 0,
  };
}
