/**
 * The frame map: which GPU frame each page has on this mirror, with the
 * page's generation when it got it, and the device page table kept in step.
 * Mirror-thread state: nothing here is shared with other threads.
 *
 * Guarantees:
 * - A frame follows its page's generation: a frame whose page was freed (and
 *   maybe allocated again) since it got it goes back to the pool before the
 *   VA can be mirrored again, so late device work never lands on a reused VA.
 * - A device page table entry is derived from the page's pte and installed
 *   only if the page's sequence number did not move meanwhile (another
 *   thread changed the page): it is derived again instead.
 * - Each entry remembers the sequence it was derived at. `reconcile` (before
 *   every GPU use of the entries) derives again every entry whose page's
 *   sequence has moved since, so the device never acts on a stale view, even
 *   when no notice came: the sequence moves on after every change of a
 *   page's state, protection or mapping (space/page-table.ts), notices are
 *   only a hint. It costs one load per page with a frame (or per page asked
 *   about), none when nothing changed.
 * - A frame whose page was freed while the device held it (a free waits for
 *   no device work: space/mapping.ts) is quarantined, not reused, until the
 *   device lets go of the page: work in flight may still read or write it,
 *   and must not reach another page's bytes.
 * - Frames never exceed the pool's capacity, the budget.
 */
import type { PageRun } from '../space/page-run.ts';
import type { PageTable } from '../space/page-table.ts';
import { AccessError, invariant } from '../errors.ts';
import { hasDeviceHolds } from '../space/page-lock.ts';
import { hasFrame, isMapped } from '../space/pte.ts';
import { PTE_FRAME } from '../space/shared-layout.ts';
import type { Segment } from './copy-engine.ts';
import { deviceEntry } from './device-access-rules.ts';
import type { DevicePageTable } from './device-page-table.ts';
import type { FramePool } from './frame-pool.ts';
import type { MirrorCounters } from './mirror-stats.ts';

export interface FrameMapContext {
  readonly table: PageTable;
  readonly pool: FramePool;
  readonly dpt: DevicePageTable;
  readonly counters: MirrorCounters;
}

export class FrameMap {
  /** Frame of each page, -1 if none. */
  private readonly frames: Int32Array;
  /** The page's generation when it got its frame. */
  private readonly generations: Int32Array;
  /** The page's sequence number when its device entry was last derived. */
  private readonly derivedAt: Int32Array;
  /** The page in each frame of the pool, -1 if the frame is free. */
  private readonly pageOfFrame: Int32Array;
  /** Frames of pages freed while the device held them, with their page (see the module doc). */
  private readonly quarantined: { readonly frame: number; readonly page: number }[] = [];
  readonly pageSize: number;

  constructor(private readonly ctx: FrameMapContext) {
    this.frames = new Int32Array(ctx.table.pageCount).fill(-1);
    this.generations = new Int32Array(ctx.table.pageCount);
    this.derivedAt = new Int32Array(ctx.table.pageCount);
    this.pageOfFrame = new Int32Array(ctx.pool.capacity).fill(-1);
    this.pageSize = ctx.table.pageSize;
  }

  /** The page's frame on this mirror, or -1. */
  frameOf(page: number): number {
    return this.frames[page] ?? -1;
  }

  /** The page whose frame `frame` is, or -1 (a free frame, or one past the pool). */
  pageOf(frame: number): number {
    return this.pageOfFrame[frame] ?? -1;
  }

  has(page: number): boolean {
    return this.frameOf(page) >= 0;
  }

  /** Pages that have a frame now, ascending. */
  pagesWithFrames(): number[] {
    const out: number[] = [];
    this.frames.forEach((frame, page) => {
      if (frame >= 0) out.push(page);
    });
    return out;
  }

  /**
   * Gives `page` a frame from the pool and marks its pte as having one, so
   * CPU writers from now on record what the frame lacks. The caller checked
   * the pool has one (migration-plan.ts) and holds the page exclusively.
   */
  assign(page: number): number {
    const frame = this.ctx.pool.take();
    this.frames[page] = frame;
    this.pageOfFrame[frame] = page;
    this.generations[page] = this.ctx.table.generation(page);
    this.ctx.table.updatePte(page, (pte) => pte | PTE_FRAME);
    return frame;
  }

  /** Returns the page's frame to the pool and clears its device entry. */
  drop(page: number): void {
    const frame = this.frameOf(page);
    if (frame >= 0) {
      if (this.inDeviceUse(page)) this.quarantined.push({ frame, page });
      else this.ctx.pool.give(frame);
      this.pageOfFrame[frame] = -1;
    }
    this.frames[page] = -1;
    this.ctx.dpt.set(page, 0);
  }

  /**
   * After an await under a hold: a page freed meanwhile (a free waits for no
   * device work) lost its frame, and the call fails rather than reach another's.
   * @throws AccessError 'freed' at the first such page
   */
  assertFramesKept(pieces: readonly { readonly page: number }[]): void {
    const freed = pieces.find(({ page }) => !this.has(page));
    if (freed) {
      const address = freed.page * this.pageSize;
      throw new AccessError(address, 'freed', 'freed while the device accessed it');
    }
  }

  /** Gives the pool back every quarantined frame whose page the device no longer holds. */
  releaseQuarantined(): void {
    for (let i = this.quarantined.length - 1; i >= 0; i--) {
      const entry = this.quarantined[i];
      if (!entry || this.inDeviceUse(entry.page)) continue;
      this.ctx.pool.give(entry.frame);
      this.quarantined.splice(i, 1);
    }
  }

  /** A freed page the device still holds: work in flight may still use its old frame. */
  private inDeviceUse(page: number): boolean {
    const lock = Atomics.load(this.ctx.table.shared.lock, page);
    return !isMapped(this.ctx.table.pte(page)) && hasDeviceHolds(lock);
  }

  /** Drops the frame of a page that was freed (and maybe reused) since it got it. */
  reclaimIfStale(page: number): void {
    if (!this.has(page)) return;
    const pte = this.ctx.table.pte(page);
    if (hasFrame(pte) && this.ctx.table.generation(page) === this.generations[page]) return;
    this.drop(page);
  }

  /** Derives the page's device page table entry from its pte again (see the module doc). */
  refreshEntry(page: number): void {
    const frame = this.frameOf(page);
    if (frame < 0) {
      this.ctx.dpt.set(page, 0);
      return;
    }
    const { table } = this.ctx;
    for (;;) {
      const begin = table.sequence(page);
      const entry = deviceEntry(frame, table.pte(page));
      if (table.sequence(page) === begin) {
        this.ctx.dpt.set(page, entry);
        this.derivedAt[page] = begin;
        return;
      }
      this.ctx.counters.entryRetries++;
    }
  }

  /**
   * Derives again the device entry of every page with a frame whose sequence
   * moved since its entry was derived, first reclaiming frames of pages
   * freed since (see the module doc). Call before every GPU use of the
   * device page table. @returns the entries derived again
   */
  reconcile(): number {
    let derived = 0;
    for (let frame = 0; frame < this.pageOfFrame.length; frame++) {
      const page = this.pageOfFrame[frame] ?? -1;
      if (page >= 0 && this.reconcilePage(page)) derived++;
    }
    return derived;
  }

  /** `reconcile` for the pages of `runs` only (the only pages a run can reach). @returns the entries derived again */
  reconcileRuns(runs: readonly PageRun[]): number {
    let derived = 0;
    for (const run of runs) {
      for (let page = run.first; page < run.first + run.count; page++) {
        if (this.has(page) && this.reconcilePage(page)) derived++;
      }
    }
    return derived;
  }

  /** Derives the entry of a page with a frame again if its sequence moved; true if it did. */
  private reconcilePage(page: number): boolean {
    if (this.ctx.table.sequence(page) === this.derivedAt[page]) return false;
    this.reclaimIfStale(page);
    this.refreshEntry(page);
    return true;
  }

  /** Page-relative bytes [lo, hi) of the page's frame as a segment, widened to 4-byte alignment. */
  segment(page: number, lo: number, hi: number): Segment {
    const frame = this.frameOf(page);
    invariant(frame >= 0, `a segment of page ${page}, which has no frame`);
    const alignedLo = lo & ~3;
    const alignedHi = Math.min(this.pageSize, (hi + 3) & ~3);
    return {
      va: page * this.pageSize + alignedLo,
      frameOffset: frame * this.pageSize + alignedLo,
      len: alignedHi - alignedLo,
    };
  }
}
