/**
 * The page table: every page's state word (pte), hold word, sequence number,
 * generation and stale blocks, with the operations that keep them
 * consistent. AddressSpace (the CPU side) and GpuMirror (the device side)
 * both work through it.
 *
 * Rules:
 * - A page's state changes only while the page is held: CPU-side transitions
 *   under any hold that admits the access (several CPU writers may move a page
 *   to `cpu` at once: each transition is a compare-exchange, idempotent);
 *   migrations under an exclusive hold.
 * - A page's newest bytes are in exactly one place unless both copies are
 *   clean: `cpu` (CPU newer, frame stale in the marked blocks), `gpu` with
 *   GPU_DIRTY (GPU newer), otherwise both valid.
 * - Every change of a page's state, protection or mapping moves the page's
 *   sequence number on, after the change (`updatePte` does it; `discardPage`
 *   too), whoever makes it and whether or not a notice follows: a clean `gpu`
 *   page a CPU read takes back to `shared` included. A device page table
 *   entry remembers the sequence it was derived at, so a device that
 *   compares sequences before each use never acts on a stale view, even when
 *   a notice was missed (gpu/frame-map.ts).
 * - A free bumps the generation, so late device-side work on the old page can
 *   never be mistaken for work on a reused VA.
 */
import { invariant } from '../errors.ts';
import type { InvalidateEvent } from './notifier.ts';
import {
  announceWaiter,
  downgrade,
  hasDeviceHolds,
  isHeldWord,
  release,
  tryHold,
  withdrawHoldOffs,
  type HoldKind,
} from './page-lock.ts';
import type { PageRun } from './page-run.ts';
import { clearBlocks, markBlocks, readBlocks, type StaleBlocks } from './stale-blocks.ts';
import {
  FREED_PTE,
  FREE_PENDING_PTE,
  assertAccess,
  assertMapped,
  changesDeviceView,
  hasFrame,
  hasStaleBlocks,
  isGpuDirty,
  isGpuOwned,
  isPinnedGpu,
  keepsGpuOwner,
  isMapped,
  isStaleWhole,
  pteState,
  withStaleBlocks,
  withStaleWhole,
  withState,
  withoutStale,
  type Need,
} from './pte.ts';
import {
  LOCK_CPU_WAITING,
  PTE_CPU,
  PTE_FRAME,
  PTE_GPU_DIRTY,
  PTE_PINNED_GPU,
  PTE_SHARED,
  PTE_ZERO,
  HEADER_STALE_BYTES_WRITTEN,
  staleWordsPerPage,
} from './shared-layout.ts';
import type { SharedState } from './shared-state.ts';
import type { ThreadRecord } from './thread-record.ts';
import { WaitBudget, type WaitLimits } from './waiting.ts';

/** A run of pages held with one kind of hold. */
export interface Hold extends PageRun {
  readonly kind: HoldKind;
}

/** The stale bytes of a page's frame: none, the whole page, or its marked blocks. */
export type Staleness = 'none' | 'whole' | StaleBlocks;

/** What a discard takes from a page's pte besides its state and staleness. */
const DISCARDED_BITS = PTE_FRAME | PTE_GPU_DIRTY | PTE_PINNED_GPU;

/** What a CPU access does with pages pinned on the GPU (see `checkHeld`). */
export interface PinnedAccess {
  /** A small plain write: pages pinned on the GPU are listed here, to push to. */
  readonly pushes?: number[];
  /** A small plain read: GPU-dirty pages pinned on the GPU are listed here, to pull from. */
  readonly pulls?: number[];
  /** A scope or an atomic: the pin goes. */
  readonly unpin?: boolean;
}

export class PageTable {
  readonly pageSize: number;
  readonly pageShift: number;
  readonly pageCount: number;
  private readonly bytes: Uint8Array;
  /** Words of stale bits per page. */
  private readonly staleWords: number;
  /** Bytes CPU writes marked stale in frames, ever (one int64 of the header). */
  private readonly staleBytesCounter: BigInt64Array;
  /**
   * Called with the pages whose last device hold (or a free's hold) was just
   * released: the space finishes the frees deferred on them (mapping.ts).
   */
  onDeviceReleased?: (pages: readonly number[]) => void;

  constructor(
    readonly shared: SharedState,
    memory: SharedArrayBuffer,
    private readonly limits: WaitLimits,
    /** This thread's record, which journals its holds; none in tests of the table alone. */
    private readonly record?: ThreadRecord,
  ) {
    this.pageShift = shared.pageShift;
    this.pageSize = 2 ** shared.pageShift;
    this.pageCount = shared.pageCount;
    this.bytes = new Uint8Array(memory);
    this.staleWords = staleWordsPerPage(this.pageSize);
    this.staleBytesCounter = new BigInt64Array(shared.meta, HEADER_STALE_BYTES_WRITTEN * 4, 1);
  }

  pte(page: number): number {
    return Atomics.load(this.shared.pte, page);
  }

  /** The first byte of `page`. */
  address(page: number): number {
    return page * this.pageSize;
  }

  /**
   * Applies `change` to the page's pte with a compare-exchange loop; returns
   * the new value. A change of state, protection or mapping then moves the
   * page's sequence number on (see `sequence`).
   */
  updatePte(page: number, change: (pte: number) => number): number {
    const pte = this.shared.pte;
    let word = Atomics.load(pte, page);
    for (;;) {
      const next = change(word);
      if (next === word) return word;
      const seen = Atomics.compareExchange(pte, page, word, next);
      if (seen === word) {
        if (changesDeviceView(word, next)) Atomics.add(this.shared.seq, page, 1);
        return next;
      }
      word = seen;
    }
  }

  // ---------------------------------------------------------------- holds

  /** Whether any holder (a waiter alone does not count) is on `page` right now: a hint, not a hold. */
  isHeld(page: number): boolean {
    return isHeldWord(Atomics.load(this.shared.lock, page));
  }

  /** Whether the device (a migration, a run) holds the page now. */
  isHeldByDevice(page: number): boolean {
    return hasDeviceHolds(Atomics.load(this.shared.lock, page));
  }

  /**
   * Whether a CPU call is waiting for a holder of `page` to leave: then no
   * new device hold may join the page (page-lock.ts, no starvation), not even
   * through holds a batch of kernel runs already has.
   */
  cpuWaiting(page: number): boolean {
    return (Atomics.load(this.shared.lock, page) & LOCK_CPU_WAITING) !== 0;
  }

  /** Whether `extra` more holds fit this thread's hold journal. */
  holdsFit(extra: number): boolean {
    return this.record?.fits(extra) ?? true;
  }

  /**
   * Takes every hold or none; on a conflict returns the page and kind that
   * blocked. Holds taken are journaled in the thread's record.
   * @throws OutOfMemoryError 'threads' if the thread's hold journal is full
   */
  tryHoldAll(holds: readonly Hold[]): { page: number; kind: HoldKind } | undefined {
    return this.critical(() => {
      this.record?.assertFits(holds.length); // before taking anything
      const lock = this.shared.lock;
      for (let h = 0; h < holds.length; h++) {
        const hold = holds[h];
        invariant(hold, 'hold list');
        for (let page = hold.first; page < hold.first + hold.count; page++) {
          if (tryHold(lock, page, hold.kind)) continue;
          for (let back = page - 1; back >= hold.first; back--) release(lock, back, hold.kind);
          this.releaseLocks(holds.slice(0, h));
          return { page, kind: hold.kind };
        }
      }
      this.record?.journal(holds);
      return undefined;
    });
  }

  /** Takes every hold, waiting asynchronously (any thread). @throws WouldBlockError 'timeout' */
  async holdAsync(holds: readonly Hold[], va: number, budget?: WaitBudget): Promise<void> {
    let waited = -1;
    try {
      for (;;) {
        const blocked = this.tryHoldAll(holds);
        if (!blocked) return;
        budget ??= new WaitBudget(this.limits, va);
        budget.at(Math.max(va, this.address(blocked.page)));
        if (waited >= 0 && waited !== blocked.page) withdrawHoldOffs(this.shared.lock, waited);
        waited = blocked.page;
        const observed = announceWaiter(this.shared.lock, blocked.page, blocked.kind);
        if (observed !== undefined)
          await budget.waitAsync(this.shared.lock, blocked.page, observed);
      }
    } catch (error) {
      if (waited >= 0) withdrawHoldOffs(this.shared.lock, waited);
      throw error;
    }
  }

  /** Turns device exclusive holds into device reads (see page-lock.ts `downgrade`); returns the new holds. */
  downgradeHolds(holds: readonly Hold[]): Hold[] {
    return this.critical(() => {
      for (const hold of holds) {
        for (let page = hold.first; page < hold.first + hold.count; page++) {
          downgrade(this.shared.lock, page);
        }
      }
      const downgraded = holds.map((hold): Hold => ({ ...hold, kind: 'device-read' }));
      this.record?.unjournal(holds);
      this.record?.journal(downgraded);
      return downgraded;
    });
  }

  /**
   * Turns the pages of exclusive `holds` that are not in `exclusive` into
   * read-scope holds; returns the holds as they are then (runs split where the
   * kind changes). Leaves them as they are if the split would not fit this
   * thread's hold journal.
   */
  downgradeHoldsExcept(holds: readonly Hold[], exclusive: ReadonlySet<number>): Hold[] {
    const kept: Hold[] = [];
    const lowered: Hold[] = [];
    for (const hold of holds) {
      let first = hold.first;
      for (let page = hold.first; page <= hold.first + hold.count; page++) {
        const end = page === hold.first + hold.count;
        if (!end && exclusive.has(page) === exclusive.has(first)) continue;
        (exclusive.has(first) ? kept : lowered).push({ ...hold, first, count: page - first });
        first = page;
      }
    }
    if (lowered.length === 0) return [...holds];
    if (this.record && !this.record.fits(kept.length + lowered.length - holds.length)) {
      return [...holds];
    }
    return this.critical(() => {
      this.record?.unjournal(holds);
      this.record?.journal([...kept, ...lowered]);
      return [...kept, ...this.downgradeHolds(lowered)];
    });
  }

  releaseHolds(holds: readonly Hold[]): void {
    this.critical(() => {
      this.releaseLocks(holds);
      this.record?.unjournal(holds);
    });
  }

  /** Releases the page locks of `holds` without touching a journal (also: a terminated thread's holds). */
  releaseLocks(holds: readonly Hold[]): void {
    let settled: number[] | undefined;
    for (const hold of holds) {
      for (let page = hold.first; page < hold.first + hold.count; page++) {
        if (release(this.shared.lock, page, hold.kind)) (settled ??= []).push(page);
      }
    }
    if (settled) this.onDeviceReleased?.(settled);
  }

  /** Runs `body` as a critical section of this thread (thread-record.ts). */
  critical<T>(body: () => T): T {
    return this.record ? this.record.critical(body) : body();
  }

  // ---------------------------------------------------------------- CPU-side checks and transitions

  /**
   * Checks held pages for a CPU access of `need`, and brings clean GPU-owned
   * pages back to the CPU (no transfer: the CPU copy is valid; the device
   * loses write access, so the page's sequence moves on, notice or not),
   * except that reads leave a page preferred or pinned on the GPU GPU-owned.
   * `pinned`: with `pushes`, pages pinned on the GPU (gpu/thrash.ts) are
   * left GPU-owned, dirty or not, and listed there: the caller pushes its
   * bytes to both copies; with `pulls`, GPU-dirty ones are, and the caller
   * pulls its bytes from the frame; with `unpin` (a scope, an atomic, a
   * write a push cannot carry), the pin goes first.
   * Returns the first GPU-dirty page, which needs a CPU fault, or -1.
   * @throws AccessError at the first page that refuses the access
   */
  checkHeld(
    first: number,
    count: number,
    va: number,
    need: Need,
    pinned: PinnedAccess = {},
  ): number {
    for (let page = first; page < first + count; page++) {
      assertAccess(this.pte(page), need, Math.max(va, this.address(page)));
    }
    for (let page = first; page < first + count; page++) {
      if (pinned.unpin) this.updatePte(page, (word) => word & ~PTE_PINNED_GPU);
      const pte = this.pte(page);
      if (!isGpuOwned(pte)) continue;
      if (pinned.pushes && isPinnedGpu(pte)) {
        pinned.pushes.push(page);
        continue;
      }
      if (pinned.pulls && isPinnedGpu(pte) && isGpuDirty(pte)) {
        pinned.pulls.push(page);
        continue;
      }
      if (isGpuDirty(pte)) return page;
      // Preferred or pinned on the GPU: a clean page is read in place and stays GPU-owned.
      if (need === 'read' && keepsGpuOwner(pte)) continue;
      this.updatePte(page, (word) => (isGpuOwned(word) ? withState(word, PTE_SHARED) : word));
    }
    return -1;
  }

  /** The page's pte if mapped; else AccessError 'unmapped' or 'freed'. */
  assertMapped(page: number, va: number): number {
    return assertMapped(this.pte(page), Math.max(va, this.address(page)));
  }

  /**
   * Moves the written pages of [va, va + len) to `cpu`, recording the bytes
   * their GPU frames now lack; a page whose GPU copy was valid until now gets
   * an invalidation notice in `outbox`.
   */
  markWritten(va: number, len: number, outbox: InvalidateEvent[]): void {
    const end = va + len;
    for (let page = Math.floor(va / this.pageSize); this.address(page) < end; page++) {
      const base = this.address(page);
      // The sequence moves before the state does, and after it (see `sequence`).
      if (pteState(this.pte(page)) !== PTE_CPU) Atomics.add(this.shared.seq, page, 1);
      let before = 0;
      const after = this.updatePte(page, (pte) => {
        before = pte;
        return withState(pte, PTE_CPU);
      });
      if (!hasFrame(after)) continue;
      const lo = Math.max(va, base) - base;
      const hi = Math.min(end, base + this.pageSize) - base;
      this.markStale(page, lo, hi);
      if (pteState(before) !== PTE_CPU) {
        outbox.push({ va: base, len: this.pageSize, cause: 'write' });
      }
    }
  }

  /**
   * Marks bytes [lo, hi) (page-relative) stale in the page's frame: the
   * blocks they touch, or the whole page for a whole-page write. Lock-free:
   * writers on other threads mark the same page at once (stale-blocks.ts).
   */
  private markStale(page: number, lo: number, hi: number): void {
    Atomics.add(this.staleBytesCounter, 0, BigInt(hi - lo));
    const pte = this.pte(page);
    if (isStaleWhole(pte)) return;
    if (lo === 0 && hi === this.pageSize) {
      this.updatePte(page, withStaleWhole);
      return;
    }
    markBlocks(this.shared.stale, page * this.staleWords, lo, hi);
    // The flag follows the bits, so whoever sees it finds them set.
    if (!hasStaleBlocks(pte)) this.updatePte(page, withStaleBlocks);
  }

  /** Bytes CPU writes have marked stale in GPU frames since the space was made (all threads). */
  get staleBytesWritten(): number {
    return Number(Atomics.load(this.staleBytesCounter, 0));
  }

  // ---------------------------------------------------------------- device-side helpers

  /** What the page's frame lacks (a copy). Read under an exclusive hold (no writer can add to it). */
  staleness(page: number): Staleness {
    const pte = this.pte(page);
    if (isStaleWhole(pte)) return 'whole';
    if (hasStaleBlocks(pte)) {
      return readBlocks(this.shared.stale, page * this.staleWords, this.staleWords);
    }
    return 'none';
  }

  /** Forgets the page's stale blocks (its frame was brought up to date). Under an exclusive hold. */
  clearStaleness(page: number): void {
    clearBlocks(this.shared.stale, page * this.staleWords, this.staleWords);
    this.updatePte(page, withoutStale);
  }

  /** Records an invalidation of the page (its sequence number moves on): call before changing it. */
  invalidate(page: number): void {
    Atomics.add(this.shared.seq, page, 1);
  }

  /**
   * The page's sequence number (int32, wraps). It moves on after every change
   * of the page's state, protection or mapping (`updatePte`, `discardPage`),
   * by any thread, notice or not; some invalidations also move it before
   * (`invalidate`, `markWritten`). So a reader that derives something from
   * the pte (a device page table entry) reads the sequence, then the pte,
   * then the sequence again, retries if it moved, and remembers the
   * sequence: once the sequence is no longer the one remembered, what it
   * derived may be stale and must be derived again.
   */
  sequence(page: number): number {
    return Atomics.load(this.shared.seq, page);
  }

  /** Wakes threads waiting for the page's pte to change (CPU faults wait on it). */
  notifyPte(page: number): void {
    Atomics.notify(this.shared.pte, page);
  }

  generation(page: number): number {
    return Atomics.load(this.shared.gen, page);
  }

  /**
   * Drops a held, mapped page's contents (`discard`): it becomes `zero` with
   * its protection, no frame (the mirror drops it on the notice, with no
   * write-back) and nothing stale; its CPU bytes are zeroed.
   */
  zeroPage(page: number): void {
    this.invalidate(page);
    if (pteState(this.pte(page)) !== PTE_ZERO) {
      this.bytes.fill(0, this.address(page), this.address(page + 1));
    }
    clearBlocks(this.shared.stale, page * this.staleWords, this.staleWords);
    this.updatePte(page, (pte) =>
      // A pin on the GPU goes with the frame (gpu/thrash.ts); advice stays.
      isMapped(pte) ? withState(withoutStale(pte & ~DISCARDED_BITS), PTE_ZERO) : pte,
    );
  }

  /**
   * Discards a page's contents under a free's hold: zeroes it, unmaps it,
   * bumps its generation. With `pending` (the device holds the page) the
   * zeroing is left to whoever finishes the free once the device lets go,
   * and the page is marked so (FREE_PENDING_PTE, mapping.ts).
   */
  discardPage(page: number, pending = false): void {
    if (!pending && pteState(this.pte(page)) !== PTE_ZERO) {
      this.bytes.fill(0, this.address(page), this.address(page + 1));
    }
    clearBlocks(this.shared.stale, page * this.staleWords, this.staleWords);
    Atomics.add(this.shared.seq, page, 1);
    Atomics.store(this.shared.pte, page, pending ? FREE_PENDING_PTE : FREED_PTE);
    Atomics.add(this.shared.gen, page, 1);
    Atomics.add(this.shared.seq, page, 1); // after the change too (see `sequence`)
  }
}
