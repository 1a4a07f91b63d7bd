/**
 * Migration: pages moving between CPU memory and GPU frames, in batches
 * (collect, copy, finalize, as Linux's migrate_vma), following the page
 * state table in docs/gpu-mirror.md ("Page states").
 *
 * Guarantees:
 * - A batch holds its pages exclusively from collect to finalize: CPU
 *   accesses, scopes and frees of those pages wait, nothing tears.
 * - Transfers are proportional to change (migration-plan.ts): a `zero` page
 *   gets a cleared frame and no upload; a `cpu` page with a frame uploads
 *   only its stale ranges; a clean page changes state with no transfer; only
 *   GPU-dirty pages are read back.
 * - A batch either moves every page or none: bad pages (unmapped, freed,
 *   `prot: 'none'` for explicit migrations) and a range larger than the
 *   frame budget are refused before anything moves.
 * - Frames never exceed the budget and follow their page's generation
 *   (frame-map.ts); when the pool runs out, frames come from pages no one
 *   holds (frame-budget.ts, eviction.ts).
 * - Every migration that takes pages from the CPU bumps their sequence
 *   numbers and announces a 'migrate' notice.
 */
import type { SpaceInternals } from '../space/internals.ts';
import type { InvalidateEvent } from '../space/notifier.ts';
import { runsOf, type PageRun } from '../space/page-run.ts';
import type { Hold } from '../space/page-table.ts';
import { WaitBudget } from '../space/waiting.ts';
import {
  assertAccess,
  assertMapped,
  isGpuDirty,
  isGpuOwned,
  isMapped,
  keepsGpuOwner,
  pteState,
  staysShared,
  withState,
  type Need,
} from '../space/pte.ts';
import { PTE_FRAME, PTE_GPU, PTE_GPU_DIRTY, PTE_SHARED } from '../space/shared-layout.ts';
import type { Segment } from './copy-engine.ts';
import type { ChosenCopyEngine } from './copy-engines.ts';
import type { DevicePageTable } from './device-page-table.ts';
import { Evictor } from './eviction.ts';
import { FrameBudget, type RoomHow } from './frame-budget.ts';
import { FrameMap } from './frame-map.ts';
import { releaseFrames } from './frame-release.ts';
import { HOLD_BATCH_RUNS, inBatches } from './hold-batches.ts';
import { clearAdvice } from './advice.ts';
import { accountMigration } from './migration-accounting.ts';
import { ThrashDetector, type ThrashOptions } from './thrash.ts';
import { WriteThroughs } from './write-through.ts';
import { fetchPlans } from './plan-fetch.ts';
import type { FramePool } from './frame-pool.ts';
import {
  bridgeGaps,
  pagesBecomingGpu,
  pagesGpuOwned,
  pagesToReadBack,
  pagesUploaded,
  runsToHoldForGpu,
  type PagePlan,
  type PlanView,
} from './migration-plan.ts';
import type { MigrationCause, MirrorCounters, TraceEvent } from './mirror-stats.ts';

/** What a migration moved. */
export interface MigrationResult {
  /** Pages whose bytes crossed (cleared frames and state-only changes are not counted). */
  readonly pages: number;
  /** Bytes that crossed, in either direction. */
  readonly bytes: number;
}

/** A run of pages a call asked for, with the byte it asked from (errors name it; default the page start). */
export interface RequestedRun extends PageRun {
  readonly va?: number;
}

/** How `makeResident` goes about it: its `purpose` (see there), and as `withRoom` (frame-budget.ts). */
export interface ResidentHow extends Omit<RoomHow, 'overwrite' | 'prefetch'> {
  readonly purpose?: 'use' | 'run' | 'prefetch';
  /** To 'gpu', pages advised read-mostly become `shared` instead (a migration: nothing will store to them). */
  readonly readMostlyShared?: boolean;
}

export interface MigrationContext {
  readonly space: SpaceInternals;
  readonly device: GPUDevice;
  readonly frames: GPUBuffer;
  readonly pool: FramePool;
  readonly dpt: DevicePageTable;
  readonly engine: ChosenCopyEngine;
  readonly counters: MirrorCounters;
  readonly emit: (event: TraceEvent) => void;
  /**
   * @throws DeviceLostError once the mirror's device is lost (device-loss.ts):
   * checked after each wait for the GPU and before pages become GPU-dirty, so
   * no page is made dirty (acknowledged) after the loss is recorded
   */
  readonly assertLive: () => void;
  /** Told the pages a write made GPU-dirty, as it is acknowledged (background write-back: write-back.ts). */
  readonly dirtied?: (pages: readonly number[]) => void;
  /** Thrash mitigation's bounds (the `thrash` option); none: off. */
  readonly thrash?: Required<ThrashOptions> | undefined;
  /** Whether `error` came of the device's loss (device-loss.ts); none: never. */
  readonly lostBy?: (error: unknown) => Promise<boolean>;
}

export class Migrator {
  /** Which frame each page has on this mirror. */
  readonly frameMap: FrameMap;
  /** Frames for held pages, evicting others when the pool runs out (frame-budget.ts). */
  readonly frameBudget: FrameBudget;
  private readonly pageSize: number;
  /** Thrash mitigation (thrash.ts), unless the `thrash` option turned it off. */
  readonly thrash: ThrashDetector | undefined;
  /** Write-through of advised and CPU-pinned pages (write-through.ts). */
  readonly through: WriteThroughs;
  /** The page table and frame map as planning reads them. */
  private readonly view: PlanView;

  /** @param ctx what it works with; device-side access (device-access.ts) uses it too */
  constructor(readonly ctx: MigrationContext) {
    const { table } = ctx.space;
    this.pageSize = table.pageSize;
    this.frameMap = new FrameMap({ table, pool: ctx.pool, dpt: ctx.dpt, counters: ctx.counters });
    this.view = {
      pageSize: table.pageSize,
      pte: (page) => table.pte(page),
      staleness: (page) => table.staleness(page),
      hasFrame: (page) => this.frameMap.has(page),
      wholePageShare: ctx.engine.choice().wholePageShare,
    };
    const evictor = new Evictor({
      ...ctx,
      table,
      frameMap: this.frameMap,
      limits: ctx.space.limits,
    });
    this.frameBudget = new FrameBudget(this.view, this.frameMap, ctx.pool, evictor);
    const uses = { useClock: () => evictor.now, usedSince: evictor.usedSince.bind(evictor) };
    this.thrash = ctx.thrash && new ThrashDetector({ ...ctx, table, ...uses }, ctx.thrash);
    this.through = new WriteThroughs({
      table,
      thrash: this.thrash,
      readBack: (pages, stored) => this.readBackHeld(pages, false, stored),
      account: (pages, moved, started) =>
        this.account('cpu', 'write-through', runsOf(pages), moved, started),
      lostBy: ctx.lostBy ?? (() => Promise.resolve(false)),
    });
  }

  /** Frames free in the pool now, and the pool's capacity (the budget), in frames. */
  get frames(): { readonly free: number; readonly capacity: number } {
    this.frameMap.releaseQuarantined();
    return { free: this.ctx.pool.available, capacity: this.ctx.pool.capacity };
  }

  // ---------------------------------------------------------------- notices

  /**
   * Applies another thread's (or this thread's) invalidation to the device
   * side: frames of freed pages go back to the pool, device page table
   * entries follow state and protection changes.
   */
  applyNotice(event: InvalidateEvent): void {
    if (event.cause === 'migrate') return; // our own
    const first = Math.floor(event.va / this.pageSize);
    const end = Math.ceil((event.va + event.len) / this.pageSize);
    if (event.cause === 'free') this.thrash?.forget(first, end);
    for (let page = first; page < end; page++) {
      if (!this.frameMap.has(page)) continue;
      if (event.cause === 'write') this.ctx.counters.invalidations++;
      this.frameMap.reclaimIfStale(page);
      this.frameMap.refreshEntry(page);
    }
  }

  // ---------------------------------------------------------------- to the GPU

  /**
   * Makes every page of `runs` GPU-owned (`gpu`, clean): zero pages get a
   * cleared frame, `cpu` pages upload their stale ranges (or the page),
   * `shared` pages change state with no transfer.
   * @throws AccessError (unmapped, freed, or with `checkProt`, `prot: 'none'`), OutOfMemoryError (budget); nothing moved
   */
  async toGpu(
    runs: readonly RequestedRun[],
    cause: MigrationCause,
    checkProt: boolean,
  ): Promise<MigrationResult> {
    const started = performance.now();
    // Checked over the whole range (a bad page anywhere fails the call), then
    // held and planned only where there is work: pages already GPU-owned and
    // held by no one are left alone (as if migrated the moment they were seen).
    this.precheck(runs, checkProt);
    this.frameBudget.admit(runs);
    const { table } = this.ctx.space;
    const needed = runsToHoldForGpu({ ...this.view, held: (page) => table.isHeld(page) }, runs);
    const work = this.journaled ? bridgeGaps(needed, HOLD_BATCH_RUNS) : needed;
    const precheck = (): void => this.precheck(work, checkProt);
    // One wait budget for the whole call: its holds and its waits for frames.
    const budget = new WaitBudget(this.ctx.space.limits, (runs[0]?.first ?? 0) * this.pageSize);
    const result = await inBatches(work, this.journaled, precheck, async (batch) => {
      const holds = await this.holdChecked(batch, checkProt, 'read', budget);
      const events: InvalidateEvent[] = [];
      try {
        return await this.makeResident(batch, 'gpu', events, { budget, readMostlyShared: true });
      } finally {
        this.ctx.space.table.releaseHolds(holds);
        this.ctx.space.announce(events);
      }
    });
    this.account('gpu', cause, runs, result, started);
    return result;
  }

  /**
   * Brings held pages' frames up to date and sets their state: 'shared'
   * leaves `shared` and `gpu` pages as they are and makes `zero` and `cpu`
   * pages `shared`; 'gpu' makes every page GPU-owned (clean), announcing the
   * pages taken from the CPU in `events` (to announce once the holds are
   * released). Pages must be held against writers and other device holders
   * (exclusively, or for 'shared' as a prefetch's device reads). Frames come
   * from eviction when the pool has too few (`withRoom`; a 'prefetch' waits
   * for no holder, and eviction leaves `how.own`). A 'use'
   * settles the pages once the GPU has their bytes; a 'run' (a kernel run,
   * which submits its pass after this and holds the pages until the pass
   * completes) and a 'prefetch' once their bytes are submitted
   * (plan-fetch.ts): what uses the frames later is ordered after the upload
   * on the queue.
   * @throws OutOfMemoryError (budget), having moved nothing
   */
  async makeResident(
    runs: readonly PageRun[],
    target: 'shared' | 'gpu',
    events: InvalidateEvent[],
    { purpose = 'use', readMostlyShared = false, ...how }: ResidentHow = {},
  ): Promise<MigrationResult> {
    const prefetch = purpose === 'prefetch';
    const submitted = purpose !== 'use';
    // A prefetch waits for no holder of frames: what finds none is an ignored hint.
    const room = prefetch ? { ...how, wait: false, prefetch } : how;
    const { plans, fetched } = await this.fetchWithRoom(runs, { ...room, submitted });
    if (target === 'shared') {
      for (const plan of plans) this.settle(plan.page, PTE_SHARED, false);
      return fetched;
    }
    const { table } = this.ctx.space;
    const taken: number[] = [];
    for (const page of pagesBecomingGpu(this.view, runs)) {
      if (readMostlyShared && staysShared(table.pte(page))) {
        if (pteState(table.pte(page)) !== PTE_SHARED) this.settle(page, PTE_SHARED, false);
        continue;
      }
      taken.push(page);
      this.settle(page, PTE_GPU, false);
      table.invalidate(page);
      events.push({ va: page * this.pageSize, len: this.pageSize, cause: 'migrate' });
    }
    this.thrash?.moved(taken, 'fault-gpu');
    return fetched;
  }

  /**
   * Marks held `gpu` pages GPU-dirty (a kernel or a device write stored to
   * them), but for those whose write-through will acknowledge them (write-through.ts).
   * @throws DeviceLostError once the device is lost: the run is not acknowledged
   */
  markDirty(pages: readonly number[]): void {
    this.ctx.assertLive();
    const { table } = this.ctx.space;
    const marked: number[] = [];
    for (const page of pages) {
      if (this.through.defer(page)) continue; // acknowledged by its write-through
      table.updatePte(page, (pte) => (isGpuOwned(pte) ? pte | PTE_GPU_DIRTY : pte));
      marked.push(page);
    }
    if (marked.length > 0) this.ctx.dirtied?.(marked);
  }

  // ---------------------------------------------------------------- to the CPU

  /**
   * Brings `runs` to the CPU: `gpu` pages become `shared`, reading back only
   * the dirty ones (frames stay). Other states are left as they are.
   */
  async toCpu(
    runs: readonly RequestedRun[],
    cause: MigrationCause,
    checkProt: boolean,
  ): Promise<MigrationResult> {
    const started = performance.now();
    const precheck = (): void => this.precheck(runs, checkProt);
    const result = await inBatches(runs, this.journaled, precheck, async (batch) => {
      const holds = await this.holdChecked(batch, checkProt);
      try {
        // A CPU read of a page preferred or pinned on the GPU copies it back and leaves it GPU-owned.
        const keepOwner = cause === 'fault-cpu';
        const owned = pagesGpuOwned(this.view, batch);
        if (keepOwner) this.thrash?.moved(owned, cause);
        return await this.readBackHeld(owned, keepOwner);
      } finally {
        this.ctx.space.table.releaseHolds(holds);
      }
    });
    if (cause === 'sync' || cause === 'writeback') this.ctx.counters.writebacks += result.pages;
    this.account('cpu', cause, runs, result, started);
    return result;
  }

  /**
   * Writes back, before the caller lets go of them, the held pages of
   * `pages` whose advice or pin asks for it (write-through.ts).
   */
  writeThrough(pages: Iterable<number>): Promise<void> {
    return this.through.run(pages);
  }

  /**
   * Reads back the GPU-dirty pages of held GPU-owned `pages` (and those
   * `stored` says a call stored to) and makes them `shared` (frames kept);
   * with `keepOwner`, those preferred or pinned on the GPU stay GPU-owned, clean.
   */
  private async readBackHeld(
    pages: readonly number[],
    keepOwner: boolean,
    stored: (page: number) => boolean = () => false,
  ): Promise<MigrationResult> {
    const { table } = this.ctx.space;
    const dirty = pages.filter((page) => isGpuDirty(table.pte(page)) || stored(page));
    if (dirty.length > 0) {
      await this.ctx.engine.download(dirty.map((page) => this.wholePage(page)));
      this.ctx.counters.readbacks++;
    }
    for (const page of pages) {
      const stays = keepOwner && keepsGpuOwner(table.pte(page));
      this.settle(page, stays ? PTE_GPU : PTE_SHARED, false);
    }
    return { pages: dirty.length, bytes: dirty.length * this.pageSize };
  }

  // ---------------------------------------------------------------- detach

  /**
   * Forgets every frame: pages keep their CPU bytes (the caller wrote dirty
   * ones back first) and lose their frames, each under its hold; a page still
   * held by a CPU scope after faultTimeoutMs loses it without (frame-release.ts).
   * @returns the pages whose frames were taken without their hold
   */
  releaseAllFrames(): Promise<number[]> {
    return releaseFrames({
      table: this.ctx.space.table,
      frameMap: this.frameMap,
      journaled: this.journaled,
    });
  }

  /** The mirror ends: its advice and thrash pins go (advice.ts, thrash.ts). */
  forgetPolicy(): void {
    this.thrash?.stop();
    clearAdvice(this.ctx.space.table);
  }

  /** The mirror's thread journals its holds (a `Threads` worker), so migrations hold in batches. */
  private get journaled(): boolean {
    return this.ctx.space.limits.record !== undefined;
  }

  /** Pages that are GPU-dirty now, as runs. */
  dirtyRuns(): PageRun[] {
    return runsOf(pagesToReadBack(this.view, runsOf(this.frameMap.pagesWithFrames())));
  }

  // ---------------------------------------------------------------- internals

  /**
   * Holds `runs` exclusively, having checked them before and after the hold
   * (a page's state may change while we wait): mapped, and with `checkProt`,
   * protected to allow `need`.
   */
  async holdChecked(
    runs: readonly RequestedRun[],
    checkProt: boolean,
    need: Need = 'read',
    budget?: WaitBudget,
  ): Promise<Hold[]> {
    this.ctx.space.pollNotices();
    for (const run of runs) this.check(run, checkProt, need);
    const holds: Hold[] = runs.map((run) => ({ ...run, kind: 'exclusive-long' }));
    await this.ctx.space.table.holdAsync(holds, (runs[0]?.first ?? 0) * this.pageSize, budget);
    try {
      this.ctx.assertLive();
      this.ctx.space.pollNotices();
      for (const run of runs) this.check(run, checkProt, need);
    } catch (error) {
      this.ctx.space.table.releaseHolds(holds);
      throw error;
    }
    return holds;
  }

  /** As `holdChecked` checks (for reads), holding nothing; throws AccessError at the first refused byte. */
  precheck(runs: readonly RequestedRun[], checkProt: boolean): void {
    this.ctx.space.pollNotices();
    for (const run of runs) this.check(run, checkProt, 'read');
  }

  private check(run: RequestedRun, checkProt: boolean, need: Need): void {
    const { table } = this.ctx.space;
    for (let page = run.first; page < run.first + run.count; page++) {
      const address = Math.max(run.va ?? 0, page * this.pageSize);
      if (checkProt) assertAccess(table.pte(page), need, address, 'the device');
      else assertMapped(table.pte(page), address);
    }
  }

  /** The plan for held `runs`, room made for it, fetched at once (frame-budget.ts `withRoom`). */
  fetchWithRoom(runs: readonly PageRun[], how: RoomHow & { readonly submitted?: boolean }) {
    const fetch = (plans: PagePlan[]) => this.fetchPlanned(plans, how.submitted);
    return this.frameBudget.withRoom(runs, how, fetch);
  }

  /** `fetch`, with the plan: it takes the plan's frames before it awaits anything. */
  private async fetchPlanned(plans: PagePlan[], submitted = false) {
    return { plans, fetched: await this.fetch(plans, submitted) };
  }

  /** Assigns frames, clears and uploads per `plans`; resolves once the GPU has them. */
  private async fetch(plans: readonly PagePlan[], submitted = false): Promise<MigrationResult> {
    const { table } = this.ctx.space;
    const context = { ...this.ctx, frameMap: this.frameMap, table };
    const result = await fetchPlans(context, plans, submitted);
    this.ctx.counters.staleBytesUploaded += result.refreshed;
    return { pages: pagesUploaded(plans), bytes: result.bytes };
  }

  private wholePage(page: number): Segment {
    return this.frameMap.segment(page, 0, this.pageSize);
  }

  /** Sets a held page's state with its frame; its frame is up to date, so no stale ranges remain. */
  settle(page: number, state: number, dirty: boolean): void {
    const { table } = this.ctx.space;
    table.clearStaleness(page);
    const bits = PTE_FRAME | (dirty ? PTE_GPU_DIRTY : 0);
    // A page freed under this hold stays freed: its give-back waits for the release.
    table.updatePte(page, (pte) =>
      isMapped(pte) ? withState(pte & ~PTE_GPU_DIRTY, state) | bits : pte,
    );
    this.frameMap.refreshEntry(page);
  }

  /** Counts a migration that moved `result` for `runs` since `started`, and traces it. */
  account(
    to: 'gpu' | 'cpu',
    cause: MigrationCause,
    runs: readonly PageRun[],
    result: MigrationResult,
    started: number,
  ): void {
    const record = { to, cause, runs, moved: result, started };
    accountMigration({ ...this.ctx, pageSize: this.pageSize }, record);
  }

  /**
   * Accounts what device-side access (a kernel run, gpu.read/write) had to
   * fetch for `runs` since `started`: GPU faults, pages and bytes, and a
   * 'fault-gpu' migration in the trace when anything moved.
   */
  countFetch(
    faultedPages: number,
    runs: readonly PageRun[],
    fetched: MigrationResult,
    started: number,
  ): void {
    this.ctx.counters.gpuFaults += faultedPages;
    if (faultedPages > 0) this.account('gpu', 'fault-gpu', runs, fetched, started);
  }
}
