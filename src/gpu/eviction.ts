/**
 * Eviction: when a migration, a kernel run or a device-side access needs
 * more frames than the pool has free, the mirror takes frames from pages no
 * one holds (docs/gpu-mirror.md, "Eviction").
 *
 * Victims, in order:
 * 1. pages whose CPU copy is valid (`shared`, clean `gpu`, `cpu` with a stale
 *    frame): they lose their frame with no transfer;
 * 2. GPU-dirty pages, least recently used first: written back in one
 *    readback per round (the need plus the reserve, so a round under
 *    pressure writes back up to the reserve's 2 MiB at once), then they
 *    lose their frame;
 * 3. pages a prefetch brought that nothing has used yet, so that a
 *    prefetch ahead of a run is not undone by the run before it (prefetch.ts);
 * and advice comes before all of that (advice.ts): pages preferred on the
 * CPU go first, pages preferred on the GPU last (taking one counts and
 * traces an ignored hint).
 * Every victim ends `cpu` with no frame (other states stay as they are).
 * "Used" is a clock the mirror ticks per call that makes pages resident or
 * reads or writes them on the device: kernel runs (declared uses, the pages
 * a fault-mode run fetched or touched), migrations, gpu.read and gpu.write.
 * UVM orders by when a block was made resident (its code admits it does
 * not track access); this orders by use, so a page a kernel keeps reading
 * stays while a page fetched once and left goes.
 *
 * Guarantees:
 * - A page held by anyone (a run in flight, a migration, a CPU scope, a
 *   fault being served) is never a victim: each victim is held exclusively,
 *   without waiting, before anything changes, and its state read again under
 *   the hold. So a page a run in flight holds keeps its frame.
 * - No byte is lost: a dirty victim's frame is read back into CPU memory
 *   before it is dropped.
 * - Eviction evicts a reserve beyond the need (at most min(2 MiB, budget /
 *   32), the reserve below which pressure starts), so the next call that
 *   needs a frame rarely waits for a write-back.
 * - Liveness: when too few frames are free of holds now, it waits for
 *   holders to let go (bounded by faultTimeoutMs), then fails with
 *   OutOfMemoryError 'budget'; it fails at once when the pages it may not
 *   take (the caller's own) leave too few frames however long it waits.
 */
import { OutOfMemoryError } from '../errors.ts';
import type { PageRun } from '../space/page-run.ts';
import type { Hold, PageTable } from '../space/page-table.ts';
import {
  isGpuDirty,
  isGpuOwned,
  isMapped,
  keepsGpuOwner,
  prefersCpu,
  prefersGpu,
} from '../space/pte.ts';
import { WaitBudget, type WaitLimits } from '../space/waiting.ts';
import type { ChosenCopyEngine } from './copy-engines.ts';
import type { FrameMap } from './frame-map.ts';
import type { FramePool } from './frame-pool.ts';
import { dropFrame } from './frame-release.ts';
import { HOLD_BATCH_RUNS } from './hold-batches.ts';
import type { MirrorCounters, TraceEvent } from './mirror-stats.ts';

/** The reserve's upper bound in bytes: the reserve is min(this, budget / 32), whole frames. */
export const RESERVE_MAX_BYTES = 2 << 20;

/** Rounds a call evicts again, with no pause, when others took the frames it freed. */
const STOLEN_ROUNDS = 8;

/** Longest pause between looks for frames while holders keep them, ms. */
const MAX_PAUSE_MS = 16;

export interface EvictionContext {
  readonly table: PageTable;
  readonly frameMap: FrameMap;
  readonly pool: FramePool;
  readonly engine: ChosenCopyEngine;
  readonly counters: MirrorCounters;
  readonly emit: (event: TraceEvent) => void;
  readonly limits: WaitLimits;
  /** @throws DeviceLostError once the device is lost (before any victim is dropped) */
  readonly assertLive: () => void;
}

export class Evictor {
  /** The clock: ticks once per call that uses pages. */
  private clock = 0;
  /** The clock when each page was last used on this mirror. */
  private readonly lastUse: Float64Array;
  /** 1 for a page a prefetch brought that no device-side access has used since (prefetchHits). */
  private readonly fetchedAhead: Uint8Array;
  /** Pages marked in `fetchedAhead`: with none, a use has no hit to look for. */
  private aheadCount = 0;
  /** Frames kept free beyond a need (see the module doc). */
  readonly reserve: number;

  constructor(private readonly ctx: EvictionContext) {
    this.lastUse = new Float64Array(ctx.table.pageCount);
    this.fetchedAhead = new Uint8Array(ctx.table.pageCount);
    const { pageSize } = ctx.table;
    this.reserve = Math.floor(
      Math.min(RESERVE_MAX_BYTES, (ctx.pool.capacity * pageSize) / 32) / pageSize,
    );
  }

  /**
   * Records a use of every page of `runs` (one tick for the call): a
   * device-side use counts a prefetch hit for a page a prefetch brought that
   * still has its frame; a prefetch's own (`used` false) does not.
   */
  touch(runs: readonly PageRun[], used = true): void {
    const now = ++this.clock;
    for (const run of runs) {
      this.lastUse.fill(now, run.first, run.first + run.count);
      if (!used || this.aheadCount === 0) continue;
      for (let page = run.first; page < run.first + run.count; page++) this.used(page);
    }
  }

  /** The use clock now (see `touch`). */
  get now(): number {
    return this.clock;
  }

  /** Whether a use of `page` came after `tick` of the use clock. */
  usedSince(page: number, tick: number): boolean {
    return (this.lastUse[page] ?? 0) > tick;
  }

  /** `touch` for single pages. */
  touchPages(pages: Iterable<number>): void {
    const now = ++this.clock;
    for (const page of pages) {
      this.lastUse[page] = now;
      if (this.aheadCount > 0) this.used(page);
    }
  }

  /** Marks pages a prefetch brought: evicted last until used, and their first use is a hit. */
  fetchedByPrefetch(pages: Iterable<number>): void {
    for (const page of pages) this.mark(page, 1);
  }

  private used(page: number): void {
    if (!this.fetchedAhead[page]) return;
    this.mark(page, 0);
    if (this.ctx.frameMap.has(page)) this.ctx.counters.prefetchHits++;
  }

  private mark(page: number, ahead: 0 | 1): void {
    this.aheadCount += ahead - (this.fetchedAhead[page] ?? 0);
    this.fetchedAhead[page] = ahead;
  }

  /**
   * Makes `needed` frames free, evicting (see the module doc), with the
   * reserve beyond them where there are victims for it. `own` are the pages
   * the caller holds (never victims; their frames count as taken).
   * @param wait whether to wait for other holders to let go of frames (false: fail at once)
   * @param budget the calling call's wait budget, which its other waits share
   *   (a call waits at most faultTimeoutMs on others in all); default its own
   * @throws OutOfMemoryError 'budget' naming the need and the frames free,
   *   having evicted what it could; DeviceLostError, also while it waits
   */
  async makeRoom(
    needed: number,
    own: readonly PageRun[],
    wait = true,
    budget = new WaitBudget(this.ctx.limits, 0),
  ): Promise<void> {
    const { pool, frameMap } = this.ctx;
    let rounds = 0;
    for (let pause = 1; ; pause = Math.min(MAX_PAUSE_MS, pause * 2)) {
      frameMap.releaseQuarantined();
      if (pool.available >= needed) return;
      const ownFrames = this.framesOf(own);
      if (needed > pool.capacity - ownFrames) throw this.refusal(needed, ownFrames);
      const { blocked, freed } = await this.evict(needed + this.reserve - pool.available, own);
      if (pool.available >= needed) return;
      // Frames it freed that another call took while it read dirty victims
      // back: there may be more victims, so evict again (a few times) first.
      if (freed > 0 && ++rounds < STOLEN_ROUNDS) continue;
      if (!wait || !blocked || !(await budget.pause(pause))) throw this.refusal(needed, ownFrames);
      this.ctx.assertLive(); // a loss ends the wait, not the budget
    }
  }

  /** Frames whose pages no one holds now: what eviction could free at most. */
  unheldFrames(): number {
    const { table, frameMap, pool } = this.ctx;
    let frames = 0;
    for (let frame = 0; frame < pool.capacity; frame++) {
      const page = frameMap.pageOf(frame);
      if (page >= 0 && !table.isHeld(page)) frames++;
    }
    return frames;
  }

  /** Frames the pages of `runs` have. */
  private framesOf(runs: readonly PageRun[]): number {
    let frames = 0;
    for (const run of runs) {
      for (let page = run.first; page < run.first + run.count; page++) {
        if (this.ctx.frameMap.has(page)) frames++;
      }
    }
    return frames;
  }

  /**
   * Evicts up to `count` frames from pages no one holds, clean ones first.
   * @returns the frames it freed, and whether a frame stayed out of reach because another holder had its page
   */
  private async evict(
    count: number,
    own: readonly PageRun[],
  ): Promise<{ blocked: boolean; freed: number }> {
    const { victims, blocked } = this.victims(count, own);
    let frames = 0;
    // Held in runs a thread's hold journal can take (hold-batches.ts); a
    // thread without a journal holds them at once, so one readback, submitted
    // within the call, carries every dirty victim.
    const batch = this.ctx.limits.record ? HOLD_BATCH_RUNS : Math.max(1, victims.length);
    for (let at = 0; at < victims.length; at += batch) {
      frames += await this.evictHeld(victims.slice(at, at + batch));
    }
    return { blocked: blocked || frames < victims.length, freed: frames };
  }

  /**
   * Up to `count` pages to evict, best first: clean before dirty, then least
   * recently used. `blocked` when a page another holder has was passed over.
   */
  private victims(count: number, own: readonly PageRun[]): { victims: number[]; blocked: boolean } {
    const { table, frameMap, pool } = this.ctx;
    const first: number[] = []; // preferred on the CPU
    const clean: number[] = [];
    const dirty: number[] = [];
    const ahead: number[] = [];
    const last: number[] = []; // preferred or pinned on the GPU
    let blocked = false;
    const isOwn = (page: number) =>
      own.some((run) => page >= run.first && page < run.first + run.count);
    for (let frame = 0; frame < pool.capacity; frame++) {
      const page = frameMap.pageOf(frame);
      if (page < 0) continue;
      if (table.isHeld(page)) {
        blocked ||= !isOwn(page);
        continue;
      }
      const pte = table.pte(page);
      if (prefersCpu(pte)) first.push(page);
      else if (keepsGpuOwner(pte)) last.push(page);
      else if (isGpuOwned(pte) && isGpuDirty(pte)) dirty.push(page);
      else (this.fetchedAhead[page] ? ahead : clean).push(page);
    }
    const byUse = (a: number, b: number) => (this.lastUse[a] ?? 0) - (this.lastUse[b] ?? 0);
    const victims: number[] = [];
    for (const kind of [first, clean, dirty, ahead, last]) {
      if (victims.length >= count) break;
      kind.sort(byUse);
      victims.push(...kind.slice(0, count - victims.length));
    }
    return { victims, blocked };
  }

  /** Holds what it can of `pages` (one hold each, no waiting), writes dirty ones back and drops their frames. @returns frames freed */
  private async evictHeld(pages: readonly number[]): Promise<number> {
    const { table, frameMap } = this.ctx;
    let holds: Hold[] = [];
    for (const page of pages) {
      const hold: Hold = { first: page, count: 1, kind: 'exclusive-long' };
      if (table.holdsFit(1) && table.tryHoldAll([hold]) === undefined) holds.push(hold);
    }
    try {
      // Read again under the hold: a page may have been freed or changed since it was chosen.
      const held = holds.map((hold) => hold.first).filter((page) => frameMap.has(page));
      const [dirty, clean] = partition(held, (page) => {
        const pte = table.pte(page);
        return isMapped(pte) && isGpuOwned(pte) && isGpuDirty(pte);
      });
      const started = performance.now();
      this.ctx.assertLive();
      // Clean victims go at once: CPU readers of them need not wait for the others' readback.
      for (const page of clean) this.drop(page);
      const dirtySet = new Set(dirty);
      const [keep, done] = partition(holds, (hold) => dirtySet.has(hold.first));
      table.releaseHolds(done);
      holds = keep;
      if (dirty.length > 0) {
        const { pageSize } = table;
        try {
          await this.ctx.engine.download(dirty.map((page) => frameMap.segment(page, 0, pageSize)));
          this.ctx.assertLive();
        } catch (error) {
          this.account(clean, [], started); // they lost their frames all the same
          throw error;
        }
        for (const page of dirty) this.drop(page);
      }
      this.account(held, dirty, started);
      return held.length;
    } finally {
      table.releaseHolds(holds);
      frameMap.releaseQuarantined();
    }
  }

  private drop(page: number): void {
    dropFrame(this.ctx.table, this.ctx.frameMap, page);
    this.mark(page, 0);
  }

  /** Counts a round: `evicted` lost their frames, `dirty` of them were written back first. */
  private account(evicted: readonly number[], dirty: readonly number[], started: number): void {
    if (evicted.length === 0) return;
    const { counters, table } = this.ctx;
    this.preferenceOverruled(evicted, started);
    const bytes = dirty.length * table.pageSize;
    counters.evictions += evicted.length;
    counters.writebacks += dirty.length;
    counters.pagesToCpu += dirty.length;
    counters.bytesToCpu += bytes;
    counters.bytesByCause.eviction += bytes;
    if (dirty.length > 0) counters.readbacks++;
    // The range the round took frames from (written back or not).
    const first = evicted.reduce((a, b) => Math.min(a, b));
    const end = evicted.reduce((a, b) => Math.max(a, b)) + 1;
    this.ctx.emit({
      t: started,
      kind: 'migration',
      cause: 'eviction',
      to: 'cpu',
      va: first * table.pageSize,
      len: (end - first) * table.pageSize,
      pages: dirty.length,
      bytes,
      ms: performance.now() - started,
      evicted: evicted.length,
    });
  }

  /**
   * Advice to keep pages on the GPU that this round could not honour: the
   * pressure left no other victim. Counted as one ignored hint, traced with
   * the pages (their frames are gone, so the event says `evicted`).
   */
  private preferenceOverruled(evicted: readonly number[], started: number): void {
    const overruled = evicted.filter((page) => prefersGpu(this.ctx.table.pte(page)));
    if (overruled.length === 0) return;
    const { pageSize } = this.ctx.table;
    const first = Math.min(...overruled);
    const len = (Math.max(...overruled) + 1 - first) * pageSize;
    this.ctx.counters.ignoredHints++;
    this.ctx.emit({
      t: started,
      kind: 'ignored-hint',
      cause: 'eviction',
      to: 'cpu',
      va: first * pageSize,
      len,
      pages: 0,
      bytes: 0,
      ms: performance.now() - started,
      evicted: overruled.length,
    });
  }

  private refusal(needed: number, ownFrames: number): OutOfMemoryError {
    const { pool, table } = this.ctx;
    const { pageSize } = table;
    const why =
      needed > pool.capacity - ownFrames
        ? `this call holds ${ownFrames} of them`
        : 'pages others hold have the rest';
    return new OutOfMemoryError(
      'budget',
      needed * pageSize,
      pool.available * pageSize,
      `${needed} new frames of ${pageSize} bytes are needed and ${pool.available} are free: the budget is ${pool.capacity} frames (${pool.capacity * pageSize} bytes) and ${why}; use smaller ranges per call`,
    );
  }
}

/** `items` split by `test`: those it holds for, then the rest. */
function partition<T>(items: readonly T[], test: (item: T) => boolean): [T[], T[]] {
  const yes: T[] = [];
  const no: T[] = [];
  for (const item of items) (test(item) ? yes : no).push(item);
  return [yes, no];
}
