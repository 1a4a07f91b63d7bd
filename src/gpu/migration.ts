/**
 * Migration: pages moving between CPU memory and GPU frames, in batches
 * (collect, copy, finalize, as Linux's migrate_vma), exactly per SPEC §2.
 *
 * Guarantees:
 * - A batch holds its pages exclusively from collect to finalize: CPU
 *   accesses, scopes and frees of those pages wait, nothing tears.
 * - Transfers are proportional to change: a `zero` page gets a cleared frame
 *   and no upload; a `cpu` page with a frame uploads only its stale ranges; a
 *   clean page changes state with no transfer; only GPU-dirty pages are read
 *   back.
 * - A batch either moves every page or none: bad pages (unmapped, freed,
 *   `prot: 'none'` for explicit migrations) and an exceeded frame budget are
 *   refused before anything moves.
 * - Frames never exceed the budget, and a frame follows its page's
 *   generation: a frame whose page was freed returns to the pool before the
 *   VA can be mirrored again.
 * - Every migration that takes pages from the CPU bumps their sequence
 *   numbers and announces a 'migrate' notice.
 */
import { AccessError, OutOfMemoryError } from '../errors.ts';
import type { SpaceInternals } from '../space/internals.ts';
import type { InvalidateEvent } from '../space/notifier.ts';
import type { Hold } from '../space/page-table.ts';
import {
  PROT_NONE,
  PROT_RW,
  PTE_CPU,
  PTE_FRAME,
  PTE_FREED,
  PTE_GPU,
  PTE_GPU_DIRTY,
  PTE_PROT_MASK,
  PTE_PROT_SHIFT,
  PTE_SHARED,
  PTE_STATE_MASK,
  PTE_UNMAPPED,
  PTE_ZERO,
} from '../space/shared-layout.ts';
import { bufferSource } from './buffer-source.ts';
import type { CopyEngine, Segment } from './copy-engine.ts';
import { DPTE_READABLE, DPTE_RESIDENT, DPTE_WRITABLE } from './device-layout.ts';
import type { DevicePageTable } from './device-page-table.ts';
import type { FramePool } from './frame-pool.ts';
import type { MigrationCause, MirrorStats, TraceEvent } from './mirror-stats.ts';

/** A run of pages. */
export interface PageRun {
  readonly first: number;
  readonly count: number;
}

/** What a migration moved. */
export interface MigrationResult {
  /** Pages whose bytes crossed (cleared frames and state-only changes are not counted). */
  readonly pages: number;
  readonly bytes: number;
}

export interface MigrationContext {
  readonly space: SpaceInternals;
  readonly device: GPUDevice;
  readonly frames: GPUBuffer;
  readonly pool: FramePool;
  readonly dpt: DevicePageTable;
  readonly engine: CopyEngine;
  readonly counters: Omit<MirrorStats, 'framesInUse' | 'budget' | 'copyEngine'>;
  readonly emit: (event: TraceEvent) => void;
}

/** Where a page's frame must come from, and what it needs uploaded. */
interface PagePlan {
  readonly page: number;
  /** The page needs a new frame. */
  readonly newFrame: boolean;
  /** Clear the (new) frame: a zero page. */
  readonly clear: boolean;
  /** Page-relative [lo, hi) ranges to upload, 4-byte aligned. */
  readonly upload: readonly (readonly [number, number])[];
}

export class Migrator {
  /** Frame of each page, -1 if none. Mirror-thread state. */
  private readonly frameOf: Int32Array;
  /** The page's generation when it got its frame. */
  private readonly frameGen: Int32Array;
  private readonly pageSize: number;

  constructor(private readonly ctx: MigrationContext) {
    const { pageCount, pageSize } = ctx.space.table;
    this.pageSize = pageSize;
    this.frameOf = new Int32Array(pageCount).fill(-1);
    this.frameGen = new Int32Array(pageCount);
  }

  /** Pages that have a frame now. */
  pagesWithFrames(): number[] {
    const out: number[] = [];
    this.frameOf.forEach((frame, page) => {
      if (frame >= 0) out.push(page);
    });
    return out;
  }

  // ---------------------------------------------------------------- notices

  /**
   * Applies another thread's (or this thread's) invalidation to the device
   * side: frames of freed pages go back to the pool, device page table
   * entries follow state and protection changes.
   */
  applyNotice(event: InvalidateEvent): void {
    if (event.cause === 'migrate') return; // our own
    const { table } = this.ctx.space;
    const first = Math.floor(event.va / this.pageSize);
    const end = Math.ceil((event.va + event.len) / this.pageSize);
    for (let page = first; page < end; page++) {
      if (this.frameOf[page] === -1) continue;
      if (event.cause === 'write') this.ctx.counters.invalidations++;
      this.reclaimIfStale(page, table.pte(page));
      this.refreshEntry(page);
    }
  }

  /** Returns the frame of a page that was freed (and maybe reused) since it got it. */
  private reclaimIfStale(page: number, pte: number): void {
    const frame = this.frameOf[page] ?? -1;
    if (frame < 0) return;
    if (pte & PTE_FRAME && this.ctx.space.table.generation(page) === this.frameGen[page]) return;
    this.ctx.pool.give(frame);
    this.frameOf[page] = -1;
    this.ctx.dpt.set(page, 0);
  }

  /**
   * The device page table entry of `page`, from its state. Another thread may
   * change the pte meanwhile: the entry is installed only if the page's
   * sequence number did not move while it was derived (page-table.ts `sequence`).
   */
  private refreshEntry(page: number): void {
    const frame = this.frameOf[page] ?? -1;
    if (frame < 0) {
      this.ctx.dpt.set(page, 0);
      return;
    }
    const { table } = this.ctx.space;
    for (;;) {
      const begin = table.sequence(page);
      const entry = deviceEntry(frame, table.pte(page));
      if (table.sequence(page) === begin) {
        this.ctx.dpt.set(page, entry);
        return;
      }
      this.ctx.counters.entryRetries++;
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
    runs: readonly PageRun[],
    cause: MigrationCause,
    checkProt: boolean,
  ): Promise<MigrationResult> {
    const started = performance.now();
    const holds = await this.holdChecked(runs, checkProt);
    let result: MigrationResult;
    const events: InvalidateEvent[] = [];
    try {
      result = await this.makeResident(runs, 'gpu', events);
    } finally {
      this.ctx.space.table.releaseHolds(holds);
    }
    this.ctx.space.announce(events);
    this.account('gpu', cause, runs, result, started);
    return result;
  }

  /**
   * Makes every page of `runs` resident for the device to read: `zero` and
   * `cpu` pages become `shared` (uploading what their frames lack); `shared`
   * and `gpu` pages stay as they are.
   */
  async toShared(runs: readonly PageRun[], cause: MigrationCause): Promise<MigrationResult> {
    const started = performance.now();
    const holds = await this.holdChecked(runs, true);
    let result: MigrationResult;
    try {
      result = await this.makeResident(runs, 'shared', []);
    } finally {
      this.ctx.space.table.releaseHolds(holds);
    }
    this.account('gpu', cause, runs, result, started);
    return result;
  }

  /**
   * Brings held pages' frames up to date and sets their state: 'shared'
   * leaves `shared` and `gpu` pages as they are and makes `zero` and `cpu`
   * pages `shared`; 'gpu' makes every page GPU-owned (clean), announcing the
   * pages taken from the CPU in `events` (to announce once the holds are
   * released). Pages must be held exclusively.
   * @throws OutOfMemoryError (budget), having moved nothing
   */
  async makeResident(
    runs: readonly PageRun[],
    target: 'shared' | 'gpu',
    events: InvalidateEvent[],
  ): Promise<MigrationResult> {
    const plans = this.plan(runs);
    const fetched = await this.fetch(plans);
    if (target === 'shared') {
      for (const plan of plans) this.settle(plan.page, PTE_SHARED, false);
      return fetched;
    }
    for (const run of runs) {
      for (let page = run.first; page < run.first + run.count; page++) {
        if ((this.ctx.space.table.pte(page) & PTE_STATE_MASK) === PTE_GPU) continue;
        this.settle(page, PTE_GPU, false);
        this.ctx.space.table.invalidate(page);
        events.push({ va: page * this.pageSize, len: this.pageSize, cause: 'migrate' });
      }
    }
    return fetched;
  }

  /** Marks held `gpu` pages GPU-dirty (a kernel stored to them). */
  markDirty(pages: readonly number[]): void {
    const { table } = this.ctx.space;
    for (const page of pages) {
      table.updatePte(page, (pte) =>
        (pte & PTE_STATE_MASK) === PTE_GPU ? pte | PTE_GPU_DIRTY : pte,
      );
    }
  }

  /**
   * Brings `runs` to the CPU: `gpu` pages become `shared`, reading back only
   * the dirty ones (frames stay). Other states are left as they are.
   */
  async toCpu(
    runs: readonly PageRun[],
    cause: MigrationCause,
    checkProt: boolean,
  ): Promise<MigrationResult> {
    const started = performance.now();
    const holds = await this.holdChecked(runs, checkProt);
    let result: MigrationResult = { pages: 0, bytes: 0 };
    try {
      const { table } = this.ctx.space;
      const dirty: number[] = [];
      for (const run of runs) {
        for (let page = run.first; page < run.first + run.count; page++) {
          const pte = table.pte(page);
          if ((pte & PTE_STATE_MASK) === PTE_GPU && pte & PTE_GPU_DIRTY) dirty.push(page);
        }
      }
      if (dirty.length > 0) {
        await this.ctx.engine.download(dirty.map((page) => this.wholePage(page)));
        this.ctx.counters.readbacks++;
        result = { pages: dirty.length, bytes: dirty.length * this.pageSize };
      }
      for (const run of runs) {
        for (let page = run.first; page < run.first + run.count; page++) {
          if ((table.pte(page) & PTE_STATE_MASK) === PTE_GPU) this.settle(page, PTE_SHARED, false);
        }
      }
    } finally {
      this.ctx.space.table.releaseHolds(holds);
    }
    if (cause === 'sync' || cause === 'eviction') this.ctx.counters.writebacks += result.pages;
    this.account('cpu', cause, runs, result, started);
    return result;
  }

  // ---------------------------------------------------------------- device-side access

  /**
   * The device's view of [va, va + len): non-resident pages are fetched
   * (`zero` and `cpu` -> `shared`), then the frames are read.
   */
  async deviceRead(va: number, len: number): Promise<Uint8Array> {
    const started = performance.now();
    const run = this.runOf(va, len);
    const holds = await this.holdChecked([run], true);
    try {
      const plans = this.plan([run]);
      this.countFetch(plans.length, [run], await this.fetch(plans), started);
      for (const plan of plans) this.settle(plan.page, PTE_SHARED, false);
      const end = va + len;
      const segments: Segment[] = [];
      for (let page = run.first; page < run.first + run.count; page++) {
        const base = page * this.pageSize;
        const lo = Math.max(va, base);
        const hi = Math.min(end, base + this.pageSize);
        segments.push(this.frameSegment(page, lo - base, hi - base));
      }
      const bytes = await this.ctx.engine.read(segments);
      const skew = va & 3;
      return bytes.slice(skew, skew + len);
    } finally {
      this.ctx.space.table.releaseHolds(holds);
    }
  }

  /**
   * Writes `data` at `va` on the device: the pages become `gpu` and dirty.
   * Stale ranges the write does not cover are uploaded first; a zero page's
   * frame is cleared unless the write covers it whole.
   * @throws AccessError (protection), OutOfMemoryError (budget); nothing moved
   */
  async deviceWrite(va: number, data: Uint8Array): Promise<void> {
    const started = performance.now();
    const run = this.runOf(va, data.byteLength);
    const holds = await this.holdChecked([run], true, 'write');
    const events: InvalidateEvent[] = [];
    try {
      const plans = this.plan([run], { lo: va, hi: va + data.byteLength });
      this.countFetch(plans.length, [run], await this.fetch(plans), started);
      const end = va + data.byteLength;
      for (let page = run.first; page < run.first + run.count; page++) {
        const base = page * this.pageSize;
        const lo = Math.max(va, base);
        const hi = Math.min(end, base + this.pageSize);
        const frame = this.frameOf[page] ?? 0;
        this.ctx.device.queue.writeBuffer(
          this.ctx.frames,
          frame * this.pageSize + (lo - base),
          bufferSource(data),
          lo - va,
          hi - lo,
        );
        if ((this.ctx.space.table.pte(page) & PTE_STATE_MASK) !== PTE_GPU) {
          this.ctx.space.table.invalidate(page);
          events.push({ va: base, len: this.pageSize, cause: 'migrate' });
        }
        this.settle(page, PTE_GPU, true);
      }
      await this.ctx.device.queue.onSubmittedWorkDone();
    } finally {
      this.ctx.space.table.releaseHolds(holds);
    }
    this.ctx.space.announce(events);
  }

  // ---------------------------------------------------------------- detach

  /**
   * Forgets every frame: pages keep their CPU bytes (the caller wrote dirty
   * ones back first) and lose their frames. Holds each page while it does.
   */
  async releaseAllFrames(): Promise<void> {
    const pages = this.pagesWithFrames();
    const runs = pages.map((page) => ({ first: page, count: 1 }));
    if (runs.length === 0) return;
    const holds: Hold[] = runs.map((run) => ({ ...run, kind: 'exclusive-long' }));
    const { table } = this.ctx.space;
    await table.holdAsync(holds, 0);
    try {
      for (const page of pages) {
        table.updatePte(page, (pte) => {
          const state = pte & PTE_STATE_MASK;
          if (!(pte & PTE_FRAME)) return pte;
          const next = state === PTE_GPU || state === PTE_SHARED ? PTE_CPU : state;
          return (pte & ~(PTE_STATE_MASK | PTE_FRAME | PTE_GPU_DIRTY)) | next;
        });
        table.clearStaleness(page);
        const frame = this.frameOf[page] ?? -1;
        if (frame >= 0) this.ctx.pool.give(frame);
        this.frameOf[page] = -1;
        this.ctx.dpt.set(page, 0);
      }
    } finally {
      table.releaseHolds(holds);
    }
  }

  /** Pages that are GPU-dirty now, as runs. */
  dirtyRuns(): PageRun[] {
    const { table } = this.ctx.space;
    return this.pagesWithFrames()
      .filter((page) => {
        const pte = table.pte(page);
        return (pte & PTE_STATE_MASK) === PTE_GPU && (pte & PTE_GPU_DIRTY) !== 0;
      })
      .map((page) => ({ first: page, count: 1 }));
  }

  // ---------------------------------------------------------------- internals

  private runOf(va: number, len: number): PageRun {
    return this.ctx.space.pageSpan(va, len);
  }

  /**
   * Holds `runs` exclusively, having checked them before and after the hold
   * (a page's state may change while we wait).
   */
  async holdChecked(
    runs: readonly PageRun[],
    checkProt: boolean,
    need: 'read' | 'write' = 'read',
  ): Promise<Hold[]> {
    this.ctx.space.pollNotices();
    for (const run of runs) this.check(run, checkProt, need);
    const holds: Hold[] = runs.map((run) => ({ ...run, kind: 'exclusive-long' }));
    await this.ctx.space.table.holdAsync(holds, (runs[0]?.first ?? 0) * this.pageSize);
    try {
      this.ctx.space.pollNotices();
      for (const run of runs) this.check(run, checkProt, need);
    } catch (error) {
      this.ctx.space.table.releaseHolds(holds);
      throw error;
    }
    return holds;
  }

  private check(run: PageRun, checkProt: boolean, need: 'read' | 'write'): void {
    const { table } = this.ctx.space;
    for (let page = run.first; page < run.first + run.count; page++) {
      const pte = table.pte(page);
      const address = page * this.pageSize;
      if ((pte & PTE_STATE_MASK) === PTE_UNMAPPED) {
        throw new AccessError(address, pte & PTE_FREED ? 'freed' : 'unmapped');
      }
      if (!checkProt) continue;
      const prot = (pte & PTE_PROT_MASK) >>> PTE_PROT_SHIFT;
      if (prot === PROT_NONE || (need === 'write' && prot !== PROT_RW)) {
        throw new AccessError(
          address,
          'protection',
          `a device ${need} of a page protected '${['none', 'r', 'rw'][prot] ?? prot}'`,
        );
      }
    }
  }

  /**
   * Plans bringing the held pages' frames up to date: which need a new frame,
   * which a clear, which ranges an upload. `write` skips stale bytes inside
   * `overwrite` (absolute VAs). Throws OutOfMemoryError if the new frames
   * exceed what the pool has left; plans nothing then.
   */
  private plan(runs: readonly PageRun[], overwrite?: { lo: number; hi: number }): PagePlan[] {
    const { table } = this.ctx.space;
    const plans: PagePlan[] = [];
    for (const run of runs) {
      for (let page = run.first; page < run.first + run.count; page++) {
        const pte = table.pte(page);
        this.reclaimIfStale(page, pte);
        const state = pte & PTE_STATE_MASK;
        if (state === PTE_SHARED || state === PTE_GPU) continue;
        const base = page * this.pageSize;
        const covered = overwrite
          ? ([
              Math.max(overwrite.lo, base) - base,
              Math.min(overwrite.hi, base + this.pageSize) - base,
            ] as const)
          : undefined;
        const hasFrame = (this.frameOf[page] ?? -1) >= 0;
        if (state === PTE_ZERO) {
          const whole = covered !== undefined && covered[0] === 0 && covered[1] === this.pageSize;
          plans.push({ page, newFrame: !hasFrame, clear: !whole, upload: [] });
          continue;
        }
        // PTE_CPU: upload what the frame lacks (all of it without a frame).
        const staleness = hasFrame ? table.staleness(page) : 'whole';
        const stale: (readonly [number, number])[] =
          staleness === 'whole' ? [[0, this.pageSize]] : staleness === 'none' ? [] : [...staleness];
        const upload = stale
          .filter(([lo, hi]) => !(covered && covered[0] <= lo && hi <= covered[1]))
          .map(([lo, hi]) => [lo & ~3, Math.min(this.pageSize, (hi + 3) & ~3)] as const);
        plans.push({ page, newFrame: !hasFrame, clear: false, upload });
      }
    }
    const needed = plans.filter((plan) => plan.newFrame).length;
    if (needed > this.ctx.pool.available) {
      throw new OutOfMemoryError(
        'budget',
        needed * this.pageSize,
        this.ctx.pool.available * this.pageSize,
        `the migration needs ${needed} new frames of ${this.pageSize} bytes; the budget is ${this.ctx.pool.capacity * this.pageSize} bytes with ${this.ctx.pool.inUse} frames in use`,
      );
    }
    return plans;
  }

  /** Assigns frames, clears and uploads per `plans`; resolves once the GPU has them. */
  private async fetch(plans: readonly PagePlan[]): Promise<MigrationResult> {
    const { table } = this.ctx.space;
    const segments: Segment[] = [];
    const clears: number[] = [];
    for (const plan of plans) {
      if (plan.newFrame) {
        const frame = this.ctx.pool.take();
        this.frameOf[plan.page] = frame;
        this.frameGen[plan.page] = table.generation(plan.page);
        // Writers from now on record what the frame lacks.
        table.updatePte(plan.page, (pte) => pte | PTE_FRAME);
      }
      if (plan.clear) clears.push(this.frameOf[plan.page] ?? 0);
      const base = plan.page * this.pageSize;
      for (const [lo, hi] of plan.upload) segments.push(this.frameSegment(plan.page, lo, hi, base));
    }
    if (clears.length > 0) this.clearFrames(clears);
    if (segments.length > 0) this.ctx.engine.upload(segments);
    if (clears.length > 0 || segments.length > 0) await this.ctx.device.queue.onSubmittedWorkDone();
    const bytes = segments.reduce((sum, segment) => sum + segment.len, 0);
    const pages = plans.filter((plan) => plan.upload.length > 0).length;
    return { pages, bytes };
  }

  private clearFrames(frames: number[]): void {
    frames.sort((a, b) => a - b);
    const encoder = this.ctx.device.createCommandEncoder({ label: 'webhmm clear zero frames' });
    for (let i = 0; i < frames.length;) {
      const first = frames[i] ?? 0;
      let count = 1;
      while (frames[i + count] === first + count) count++;
      encoder.clearBuffer(this.ctx.frames, first * this.pageSize, count * this.pageSize);
      i += count;
    }
    this.ctx.device.queue.submit([encoder.finish()]);
  }

  /** Page-relative [lo, hi) of `page`'s frame as a segment (4-byte aligned outward). */
  private frameSegment(page: number, lo: number, hi: number, base = page * this.pageSize): Segment {
    const alignedLo = lo & ~3;
    const alignedHi = Math.min(this.pageSize, (hi + 3) & ~3);
    return {
      va: base + alignedLo,
      frameOffset: (this.frameOf[page] ?? 0) * this.pageSize + alignedLo,
      len: alignedHi - alignedLo,
    };
  }

  private wholePage(page: number): Segment {
    return this.frameSegment(page, 0, this.pageSize);
  }

  /** Sets a held page's state with its frame; its frame is up to date, so no stale ranges remain. */
  private settle(page: number, state: number, dirty: boolean): void {
    const { table } = this.ctx.space;
    table.clearStaleness(page);
    table.updatePte(
      page,
      (pte) =>
        (pte & ~(PTE_STATE_MASK | PTE_GPU_DIRTY)) | state | PTE_FRAME | (dirty ? PTE_GPU_DIRTY : 0),
    );
    this.refreshEntry(page);
  }

  private account(
    to: 'gpu' | 'cpu',
    cause: MigrationCause,
    runs: readonly PageRun[],
    result: MigrationResult,
    started: number,
  ): void {
    const counters = this.ctx.counters;
    if (to === 'gpu') {
      counters.pagesToGpu += result.pages;
      counters.bytesToGpu += result.bytes;
    } else {
      counters.pagesToCpu += result.pages;
      counters.bytesToCpu += result.bytes;
    }
    counters.bytesByCause[cause] += result.bytes;
    const first = runs[0]?.first ?? 0;
    const last = runs[runs.length - 1];
    const end = last ? last.first + last.count : first;
    this.ctx.emit({
      t: started,
      kind: 'migration',
      cause,
      to,
      va: first * this.pageSize,
      len: (end - first) * this.pageSize,
      pages: result.pages,
      bytes: result.bytes,
      ms: performance.now() - started,
    });
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

/**
 * The pages [first, end) widened to whole aligned blocks of `block` pages,
 * clipped to `allocation`: where fault-around may reach.
 */
export function faultAroundRun(
  first: number,
  end: number,
  block: number,
  allocation: PageRun,
): PageRun {
  const lo = Math.max(allocation.first, Math.floor(first / block) * block);
  const hi = Math.min(allocation.first + allocation.count, Math.ceil(end / block) * block);
  return { first: lo, count: hi - lo };
}

/** Whether the device may read a page whose pte is `pte` as it is (resident, not `prot: 'none'`). */
export function deviceCanRead(pte: number): boolean {
  const state = pte & PTE_STATE_MASK;
  return (
    (state === PTE_SHARED || state === PTE_GPU) &&
    (pte & PTE_PROT_MASK) >>> PTE_PROT_SHIFT !== PROT_NONE
  );
}

/** Whether the device may write a page whose pte is `pte` as it is (GPU-owned, read-write). */
export function deviceCanWrite(pte: number): boolean {
  return (pte & PTE_STATE_MASK) === PTE_GPU && (pte & PTE_PROT_MASK) >>> PTE_PROT_SHIFT === PROT_RW;
}

/** A device page table entry for a page in `frame` whose pte is `pte`. */
function deviceEntry(frame: number, pte: number): number {
  const state = pte & PTE_STATE_MASK;
  let entry = frame;
  if (state === PTE_SHARED || state === PTE_GPU) entry |= DPTE_RESIDENT;
  if (deviceCanRead(pte)) entry |= DPTE_READABLE;
  if (deviceCanWrite(pte)) entry |= DPTE_WRITABLE;
  return entry;
}
