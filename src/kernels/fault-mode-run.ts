/**
 * Runs without `uses` (fault mode): the GPU fault loop. Each round is
 *
 * 1. collect: a pass with every store and atomic suppressed records, per
 *    page, what needs a change of state (a load of a non-resident page; a
 *    store or atomic to a page not yet GPU-owned, `shared` included) and
 *    what the kernel touched;
 * 2. service, if it faulted: the faulting pages are checked (AccessError
 *    'unmapped', 'freed' or 'protection' naming the lowest one) and must fit
 *    the frames left (OutOfMemoryError 'budget' naming both numbers), then
 *    held for the rest of the run (waiting for other holders) and migrated
 *    (reads -> `shared`, writes -> `gpu`) with density prefetch around them
 *    (density-prefetch.ts), which takes only pages no one holds and only as
 *    many as the frames left allow; then collect again;
 * 3. hold, once a pass faults no more: every other page the kernel touched
 *    is held (written pages exclusively, read pages as device reads) and
 *    checked again; if one changed meanwhile, its device entry is derived
 *    again (so the next pass faults on it), the pass counts as a replay, and
 *    the round starts over;
 * 4. the real pass: fetched pages the kernel only reads become device reads
 *    (CPU readers may join), the pass runs, and what it stored to is dirty
 *    (or written through, where advice asks: gpu/advice.ts).
 *
 * Before every pass the device page table is reconciled with the page table
 * by sequence number (gpu/frame-map.ts), so no pass acts on a view a missed
 * notice left stale. Pages a pass faulted on stay held, exclusively, until
 * the run ends: CPU writers of the same pages cannot undo a round's work, so
 * the rounds converge, and every round that does not end the loop counts as
 * a replay, bounded by MAX_REPLAYS. Pages density prefetch took are held
 * too, but as speculation: when a pass's faulting pages need their frames
 * they are let go of (eviction may take them), so prefetch never makes a
 * run that fits fail for the budget.
 *
 * Fault mode cannot follow addresses that depend on the kernel's own stores
 * or atomics (the collecting passes see none of them): a real pass that
 * still faults fails with InvalidArgumentError, as does a kernel still
 * faulting after MAX_REPLAYS rounds. Partial progress on failure: pages
 * fetched stay fetched, stores that landed stay; holds are released.
 */
import { InvalidArgumentError, OutOfMemoryError } from '../errors.ts';
import { deviceCanRead, deviceCanWrite, deviceResident } from '../gpu/device-access-rules.ts';
import type { MirrorHost } from '../gpu/mirror-host.ts';
import type { InvalidateEvent } from '../space/notifier.ts';
import { WaitBudget } from '../space/waiting.ts';
import type { HoldKind } from '../space/page-lock.ts';
import { runEnd, runsOf } from '../space/page-run.ts';
import type { Hold } from '../space/page-table.ts';
import { assertAccess, isGpuOwned, isMapped, protAllows, type Need } from '../space/pte.ts';
import { dirtyPages, faultBitPages } from './bitmaps.ts';
import { densityPrefetch, type DensityView } from './density-prefetch.ts';
import { assertOutsideScopes } from './declared-run.ts';
import {
  ACCESSED_READ,
  ACCESSED_WRITE,
  FAULT_READ,
  FAULT_WRITE,
  MODE_COLLECT,
  MODE_RUN,
  USES_ALL,
} from './kernel-layout.ts';
import type { RunCounts } from './kernel-options.ts';
import type { Dispatch } from './kernel-runtime.ts';
import type { PassStatus } from './pass-status.ts';
import { passFailed, runError } from './run-error.ts';

/** Rounds that did not end the loop (passes that faulted, or were refused by the re-check) before a run gives up. */
export const MAX_REPLAYS = 4096;

/**
 * A fault-mode run of the kernel `dispatch` passes, to completion.
 * @throws AccessError for a page the kernel may not touch as it does;
 *   OutOfMemoryError 'budget' when one pass's faulting pages do not fit the
 *   frames left; InvalidArgumentError 'bad-value' (argument 'code') for a
 *   kernel fault mode cannot serve
 */
export function runFaultMode(host: MirrorHost, dispatch: Dispatch): Promise<RunCounts> {
  return new FaultModeRun(host, dispatch).run();
}

/** The holds of the pages a fault-free collecting pass touched, taken for the real pass. */
interface Touched {
  readonly holds: Hold[];
  readonly written: ReadonlySet<number>;
  readonly readOnly: readonly number[];
}

/** What density prefetch may take: new frames from the free ones, and pages that have frames. */
interface Allowance {
  readonly free: number;
  readonly framed: number;
}

/** Pages density prefetch chose around a pass's faults, by what they are fetched for. */
interface Prefetched {
  readonly write: number[];
  readonly read: number[];
}

class FaultModeRun {
  private replays = 0;
  private gpuFaults = 0;
  private bytesToGpu = 0;
  private readonly fetched = new FetchedPages();
  private readonly events: InvalidateEvent[] = [];
  /** One budget for every wait of the run: it waits at most faultTimeoutMs on others in all (its own passes do not count). */
  private readonly budget: WaitBudget;

  constructor(
    private readonly host: MirrorHost,
    private readonly dispatch: Dispatch,
  ) {
    this.budget = new WaitBudget(host.space.limits, 0, true);
  }

  async run(): Promise<RunCounts> {
    const { table } = this.host.space;
    try {
      for (;;) {
        const status = await this.collect();
        if (status.faulted) {
          this.countReplay();
          await this.service(status.bits);
          continue;
        }
        const touched = await this.hold(status.bits);
        if (!touched) {
          this.countReplay();
          continue;
        }
        try {
          const pagesWritten = await this.realPass(touched);
          const { replays, gpuFaults, bytesToGpu } = this;
          return { replays, gpuFaults, bytesToGpu, pagesWritten };
        } finally {
          table.releaseHolds(touched.holds);
        }
      }
    } finally {
      table.releaseHolds(this.fetched.holds);
      this.host.space.announce(this.events);
    }
  }

  /** Counts a round that did not end the loop. @throws InvalidArgumentError past MAX_REPLAYS */
  private countReplay(): void {
    if (++this.replays > MAX_REPLAYS) {
      throw new InvalidArgumentError(
        'code',
        'kernel',
        'bad-value',
        `still faulting after ${MAX_REPLAYS} collecting passes`,
      );
    }
    this.host.counters.replays++;
  }

  /** The device page table brought up to date (by sequence number, then notices), before a pass. */
  private prepareDevice(): void {
    this.host.migrator.frameMap.reconcile();
    this.host.beforeGpuUse();
  }

  /** A collecting pass. @throws AccessError for an access beyond the space */
  private async collect(): Promise<PassStatus> {
    this.prepareDevice();
    const status = await this.dispatch(MODE_COLLECT, USES_ALL);
    // A collecting pass stores nothing, refused or not: the real pass judges its stores.
    if (status.errorKinds) throw runError(this.host, status, [], []);
    return status;
  }

  /**
   * Checks the faulted pages, holds them for the rest of the run (waiting
   * for other holders), adds what density prefetch finds free and within
   * the frames left, and migrates them all. Pages the run holds already are
   * migrated as they are.
   */
  private async service(bits: Uint32Array): Promise<void> {
    const { migrator } = this.host;
    const writes = faultBitPages(bits, FAULT_WRITE);
    const writeSet = new Set(writes);
    const reads = faultBitPages(bits, FAULT_READ).filter((page) => !writeSet.has(page));
    this.checkFaulted(reads, writes);
    const faulting = new Set([...reads, ...writes]);
    this.fetched.confirm(faulting);
    const frameCost = this.assertFaultingFit(faulting);
    const started = performance.now();
    const [writeRuns, readRuns] = [this.newRuns(writes), this.newRuns(reads)];
    assertOutsideScopes(this.host.space, [...writeRuns, ...readRuns]);
    this.fetched.add(await migrator.holdChecked(writeRuns, true, 'write', this.budget));
    this.fetched.add(await migrator.holdChecked(readRuns, true, 'read', this.budget));
    const extra = this.prefetch(writes, reads, faulting, this.allowance(frameCost));
    const gpuRuns = runsOf([...writes, ...extra.write]);
    const sharedRuns = runsOf([...reads, ...extra.read]);
    const { budget } = this;
    await migrator.frameBudget.makeRoom([...sharedRuns, ...gpuRuns], { budget });
    const shared = await migrator.makeResident(sharedRuns, 'shared', this.events, { budget });
    const owned = await migrator.makeResident(gpuRuns, 'gpu', this.events, { budget });
    const moved = { pages: shared.pages + owned.pages, bytes: shared.bytes + owned.bytes };
    const runs = [...sharedRuns, ...gpuRuns].sort((a, b) => a.first - b.first);
    migrator.countFetch(faulting.size, runs, moved, started);
    this.gpuFaults += faulting.size;
    this.bytesToGpu += moved.bytes;
  }

  /**
   * What density prefetch may take beside faulting pages that need
   * `frameCost` new frames: `free`, frames free beyond them; `framed`, pages
   * with frames no one holds (their frames stay out of eviction's reach once
   * the run holds them), as many as leave eviction what the faulting pages
   * need. So speculation never evicts, nor keeps eviction from a fit.
   */
  private allowance(frameCost: number): Allowance {
    const { migrator } = this.host;
    const { free } = migrator.frames;
    if (frameCost <= free) return { free: free - frameCost, framed: Infinity };
    const framed = migrator.frameBudget.evictor.unheldFrames() - (frameCost - free);
    return { free: 0, framed: Math.max(0, framed) };
  }

  /** @throws AccessError 'unmapped', 'freed' or 'protection' at the lowest faulted page the kernel may not touch so */
  private checkFaulted(reads: readonly number[], writes: readonly number[]): void {
    const { table } = this.host.space;
    const writeSet = new Set(writes);
    for (const page of [...reads, ...writes].sort((a, b) => a - b)) {
      const need: Need = writeSet.has(page) ? 'write' : 'read';
      assertAccess(table.pte(page), need, table.address(page), 'a kernel');
    }
  }

  /**
   * The new frames the faulting pages need, which eviction can free
   * (frame-budget.ts) unless the run's own pages leave too few.
   * @throws OutOfMemoryError 'budget' naming the run's footprint so far and the budget, when they do not fit
   */
  private assertFaultingFit(faulting: ReadonlySet<number>): number {
    const { migrator } = this.host;
    const { pageSize } = this.host.space.table;
    let needed = 0;
    for (const page of faulting) if (!migrator.frameMap.has(page)) needed++;
    let held = 0;
    for (const page of this.fetched.pages()) if (migrator.frameMap.has(page)) held++;
    const { capacity } = migrator.frames;
    if (needed <= capacity - held) return needed;
    // What density prefetch holds is no part of the run's footprint: let eviction have it.
    const speculative = this.fetched.speculativeFrames((page) => migrator.frameMap.has(page));
    held -= speculative;
    if (needed <= capacity - held) {
      this.fetched.releaseSpeculative(this.host.space.table);
      return needed;
    }
    throw new OutOfMemoryError(
      'budget',
      (held + needed) * pageSize,
      capacity * pageSize,
      `a fault-mode run holding ${held} pages faulted on ${needed} more pages of ${pageSize} bytes; the budget is ${capacity} frames; split the work into runs whose pages fit the budget, or declare uses`,
    );
  }

  /**
   * Density prefetch around the faulting pages (density-prefetch.ts; none
   * with the `prefetch` option 'off'), of the pages the run may take now and that need a change of state: not held by
   * anyone (the hold word is clear), mapped, allowing the access, not
   * resident as the access needs, within `allowance` (new frames, and
   * pages with frames), nearest first. Held (exclusively, for the rest of the
   * run) without waiting; a run someone took meanwhile is left out.
   */
  private prefetch(
    writes: readonly number[],
    reads: readonly number[],
    faulting: ReadonlySet<number>,
    allowance: Allowance,
  ): Prefetched {
    const { space, migrator, faultPrefetch } = this.host;
    if (faultPrefetch === 'off') return { write: [], read: [] };
    const { table } = space;
    const view: DensityView = {
      pageSize: table.pageSize,
      resident: (page) => migrator.frameMap.has(page),
      allocationRun: (page) => space.allocationRun(page),
    };
    const aroundWrites = densityPrefetch(view, writes, faulting);
    const aroundReads = densityPrefetch(view, reads, faulting);
    const candidates: { page: number; need: Need; cost: number; distance: number }[] = [];
    const consider = (page: number, need: Need, distance: number) => {
      if (this.fetched.has(page) || table.isHeld(page) || !this.mayFetch(page, need)) return;
      if (!needsChange(table.pte(page), need)) return; // resident as the access needs: nothing to do
      candidates.push({ page, need, cost: migrator.frameMap.has(page) ? 0 : 1, distance });
    };
    for (const [page, distance] of aroundWrites) consider(page, 'write', distance);
    for (const [page, distance] of aroundReads) {
      if (!aroundWrites.has(page)) consider(page, 'read', distance);
    }
    candidates.sort((a, b) => a.cost - b.cost || a.distance - b.distance || a.page - b.page);
    const chosen: Prefetched = { write: [], read: [] };
    let { free, framed } = allowance;
    for (const { page, need, cost } of candidates) {
      if (cost > 0 ? cost > free : framed <= 0) continue;
      if (cost > 0) free -= cost;
      else framed--;
      chosen[need].push(page);
    }
    return {
      write: this.holdFree(chosen.write, 'write'),
      read: this.holdFree(chosen.read, 'read'),
    };
  }

  /** Whether a prefetch may fetch the page for `need`: mapped, and its protection allows it. */
  private mayFetch(page: number, need: Need): boolean {
    const pte = this.host.space.table.pte(page);
    return isMapped(pte) && protAllows(pte, need);
  }

  /** Holds the runs of `pages` no one holds, without waiting; returns the pages held. */
  private holdFree(pages: readonly number[], need: Need): number[] {
    const { table } = this.host.space;
    const held: number[] = [];
    for (const run of runsOf(pages)) {
      const hold: Hold = { ...run, kind: 'exclusive-long' };
      if (table.tryHoldAll([hold]) !== undefined) continue;
      const pagesOfRun = Array.from({ length: run.count }, (_, i) => run.first + i);
      if (!pagesOfRun.every((page) => this.mayFetch(page, need))) {
        table.releaseHolds([hold]);
        continue;
      }
      this.fetched.add([hold], true);
      held.push(...pagesOfRun);
    }
    return held;
  }

  /** The runs of `pages` the run has not fetched. */
  private newRuns(pages: readonly number[]): { first: number; count: number }[] {
    return runsOf(pages.filter((page) => !this.fetched.has(page)));
  }

  /**
   * Holds every page the fault-free pass touched that the run does not hold
   * yet (written: exclusively; only read: as device reads), then checks that
   * the device may still use them all as the pass did. A page that changed
   * has its device entry derived again, so the next pass faults on it.
   * @returns the holds, or undefined (none held) if a page changed meanwhile
   */
  private async hold(bits: Uint32Array): Promise<Touched | undefined> {
    const { table } = this.host.space;
    const written = faultBitPages(bits, ACCESSED_WRITE);
    const writtenSet = new Set(written);
    const readOnly = faultBitPages(bits, ACCESSED_READ).filter((page) => !writtenSet.has(page));
    this.host.migrator.frameBudget.touch([...written, ...readOnly]);
    const holds = [
      ...this.newHolds(written, 'exclusive-long'),
      ...this.newHolds(readOnly, 'device-read'),
    ];
    assertOutsideScopes(this.host.space, holds);
    await table.holdAsync(holds, 0, this.budget);
    let changed: number[] = [];
    try {
      this.host.space.pollNotices();
      changed = [
        ...written.filter((page) => !deviceCanWrite(table.pte(page))),
        ...readOnly.filter((page) => !deviceCanRead(table.pte(page))),
      ];
      for (const page of changed) this.host.migrator.frameMap.refreshEntry(page);
    } finally {
      if (changed.length > 0) table.releaseHolds(holds);
    }
    return changed.length === 0 ? { holds, written: writtenSet, readOnly } : undefined;
  }

  /** Holds of the runs of `pages` the run has not fetched. */
  private newHolds(pages: readonly number[], kind: HoldKind): Hold[] {
    return this.newRuns(pages).map((run) => ({ ...run, kind }));
  }

  /**
   * A protect or free of a touched page since `hold()` (neither waits for the
   * device) would make the real pass fault on it: the run fails with the
   * page's AccessError instead.
   */
  private assertTouchedUsable(touched: Touched): void {
    const { table } = this.host.space;
    const check = (page: number, need: Need): void =>
      void assertAccess(table.pte(page), need, table.address(page), 'a kernel');
    for (const page of touched.written) check(page, 'write');
    for (const page of touched.readOnly) check(page, 'read');
  }

  /**
   * The real pass, every page it touches held; it may store only to the
   * pages the collecting passes saw it write. Marks dirty what it stored to.
   * @returns the number of pages it stored to
   * @throws AccessError (an access error in the pass); InvalidArgumentError
   *   if it touched a page the collecting passes did not
   */
  private async realPass(touched: Touched): Promise<number> {
    const { host } = this;
    const { table } = host.space;
    // Fetched pages the kernel only reads: CPU readers may join while it runs.
    this.fetched.holds = table.downgradeHoldsExcept(this.fetched.holds, touched.written);
    this.prepareDevice();
    this.assertTouchedUsable(touched);
    const real = await this.dispatch(MODE_RUN, USES_ALL);
    let dirty: number[] = [];
    if (real.stored) {
      dirty = dirtyPages(real.bits);
      host.migrator.markDirty(dirty);
    }
    // Advised pages it may have stored to go back before the run resolves (gpu/advice.ts).
    await host.migrator.writeThrough(touched.written);
    if (real.errorKinds) throw runError(host, real, [], dirty);
    if (real.faulted) {
      this.assertTouchedUsable(touched);
      throw new InvalidArgumentError(
        'code',
        'kernel',
        'bad-value',
        'the real pass touched pages the collecting passes did not: its addresses depend on its own stores or atomics; declare uses',
      );
    }
    if (passFailed(real)) throw runError(host, real, [], dirty); // a refused hmm_frame_store
    return dirty.length;
  }
}

/** Whether a page must change state for the device to `need` it: not resident, or (writes) not GPU-owned. */
function needsChange(pte: number, need: Need): boolean {
  return need === 'write' ? !isGpuOwned(pte) : !deviceResident(pte);
}

/** The pages a fault-mode run has brought in and holds (exclusively) until it ends. */
class FetchedPages {
  holds: Hold[] = [];
  private readonly held = new Set<number>();
  /** Holds density prefetch took, until a pass faults on one of their pages. */
  private speculative: Hold[] = [];

  has(page: number): boolean {
    return this.held.has(page);
  }

  pages(): Iterable<number> {
    return this.held;
  }

  add(holds: readonly Hold[], speculative = false): void {
    for (const hold of holds) {
      this.holds.push(hold);
      for (let page = hold.first; page < runEnd(hold); page++) this.held.add(page);
    }
    if (speculative) this.speculative.push(...holds);
  }

  /** Pages a pass faulted on: the speculative holds they are in become the run's own. */
  confirm(pages: ReadonlySet<number>): void {
    const touches = (hold: Hold) => {
      for (let page = hold.first; page < runEnd(hold); page++) if (pages.has(page)) return true;
      return false;
    };
    this.speculative = this.speculative.filter((hold) => !touches(hold));
  }

  /** Pages of speculative holds that `hasFrame`. */
  speculativeFrames(hasFrame: (page: number) => boolean): number {
    let frames = 0;
    for (const hold of this.speculative) {
      for (let page = hold.first; page < runEnd(hold); page++) if (hasFrame(page)) frames++;
    }
    return frames;
  }

  /**
   * Lets go of every speculative hold, so eviction may take those pages: a
   * later pass that touches one faults on it again (or holds it, once a pass
   * faults no more).
   */
  releaseSpeculative(table: { releaseHolds(holds: readonly Hold[]): void }): void {
    if (this.speculative.length === 0) return;
    table.releaseHolds(this.speculative);
    const released = new Set(this.speculative);
    this.holds = this.holds.filter((hold) => !released.has(hold));
    for (const hold of this.speculative) {
      for (let page = hold.first; page < runEnd(hold); page++) this.held.delete(page);
    }
    this.speculative = [];
  }
}
