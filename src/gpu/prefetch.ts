/**
 * Prefetch (`gpu.prefetch(va, len, to)`, cudaMemPrefetchAsync's role): a
 * hint that a range is about to be used on one side, acted on at once.
 *
 * To 'gpu', pages become resident as a kernel read makes them (`zero` and
 * `cpu` -> `shared`; `shared` and `gpu` stay), so the run that uses them
 * next moves nothing. To 'cpu', GPU-owned pages come back (-> `shared`,
 * reading back only dirty ones), so CPU reads do not fault.
 *
 * Guarantees:
 * - It checks the whole range first (unmapped, freed or 'none' pages throw
 *   AccessError as migrate does) and changes nothing then.
 * - Only accesses that would change a page's state wait for it: to 'gpu' it
 *   holds the pages it moves as device reads, so CPU readers go on, while
 *   CPU writers, migrations and runs of the same pages wait and then find
 *   them resident (they never repeat its transfer). It lets go of them once
 *   their bytes are submitted: every later use of the frames is ordered
 *   after the upload on the queue, and the CPU copy stays valid, so a run
 *   called meanwhile starts at once; it resolves when the GPU has them.
 * - It never takes more of the budget than the budget can hold beside its
 *   reserve: the pages past that (and past what eviction could free at once
 *   from pages no one holds) are an ignored hint, reported in `ignored`,
 *   counted in `ignoredHints` and traced; never an error. It waits for no
 *   holder of other pages' frames, and evicts none of the range's pages.
 * - Pages it brought are evicted last until something uses them, and the
 *   first device-side use of one still resident counts a prefetch hit.
 * - To 'cpu' it leaves GPU-owned pages advised preferred on the GPU where
 *   they are (advice.ts): an ignored hint per run of them, in `ignored`.
 */
import { OutOfMemoryError } from '../errors.ts';
import type { SpaceInternals } from '../space/internals.ts';
import { runEnd, runsOf, type PageRun } from '../space/page-run.ts';
import type { Hold } from '../space/page-table.ts';
import { isGpuOwned, prefersGpu } from '../space/pte.ts';
import { deviceResident } from './device-access-rules.ts';
import { holdBatches } from './hold-batches.ts';
import { pagesOfRuns } from './migration-plan.ts';
import type { MigrationContext, MigrationResult, Migrator, RequestedRun } from './migration.ts';

/** What a prefetch did. */
export interface PrefetchResult {
  /** Pages whose bytes crossed (cleared frames and state-only changes are not counted). */
  readonly pages: number;
  /** Bytes that crossed. */
  readonly bytes: number;
  /**
   * Bytes of the range it left off: to 'gpu', more than the budget could
   * hold then (from the end of the range back) that are not resident on the
   * device; to 'cpu', GPU-owned pages advised to stay on the GPU.
   */
  readonly ignored: number;
}

/** What a prefetch uses of the mirror: the migration context's parts, and the migrator. */
export interface PrefetchContext extends Pick<
  MigrationContext,
  'device' | 'space' | 'counters' | 'emit' | 'assertLive'
> {
  readonly migrator: Migrator;
}

/**
 * Prefetches `run` to `to`; see the module doc.
 * @throws AccessError (an unmapped, freed or 'none' page: nothing moves); DeviceLostError
 */
export async function prefetch(
  ctx: PrefetchContext,
  run: RequestedRun,
  to: 'gpu' | 'cpu',
): Promise<PrefetchResult> {
  ctx.migrator.precheck([run], true);
  if (to === 'gpu') return prefetchToGpu(ctx, run);
  const started = performance.now();
  const { table } = ctx.space;
  // GPU-owned pages, and those the device holds (they may be by the time it holds them);
  // a CPU holder of a CPU page has nothing to wait for.
  const candidates = pagesOfRuns([run]).filter(
    (page) => isGpuOwned(table.pte(page)) || table.isHeldByDevice(page),
  );
  // Pages advised to stay on the GPU stay there: an ignored hint (advice.ts).
  const stays = (page: number) => isGpuOwned(table.pte(page)) && prefersGpu(table.pte(page));
  const owned = candidates.filter((page) => !stays(page));
  const kept = candidates.filter(stays);
  const ignored = kept.length * table.pageSize;
  for (const part of runsOf(kept)) ignoreHint(ctx, part, 'cpu', started);
  if (owned.length === 0) return { pages: 0, bytes: 0, ignored };
  // Only these are held (exclusively, as any migration): CPU reads of the rest go on.
  const moved = await ctx.migrator.toCpu(runsOf(owned), 'prefetch', true);
  return { ...moved, ignored };
}

/** What part of a prefetch did: bytes moved, and where it stopped (the first page it left off), if it did. */
interface Done extends MigrationResult {
  readonly stop?: number;
}

async function prefetchToGpu(ctx: PrefetchContext, run: RequestedRun): Promise<PrefetchResult> {
  const started = performance.now();
  const { space, migrator } = ctx;
  const { table } = space;
  const { capacity } = migrator.frames;
  // The budget beside the reserve eviction keeps free: more would evict the range's own pages.
  const room = Math.max(1, capacity - migrator.frameBudget.evictor.reserve);
  const kept: PageRun = { first: run.first, count: Math.min(run.count, room) };
  const work = runsOf(pagesOfRuns([kept]).filter((page) => mayChange(space, page)));
  const journaled = space.limits.record !== undefined;
  let [pages, bytes, stop] = [0, 0, runEnd(kept)];
  for (const batch of holdBatches(work, journaled)) {
    const done = await prefetchBatch(ctx, batch, kept);
    pages += done.pages;
    bytes += done.bytes;
    if (done.stop !== undefined) {
      stop = done.stop;
      break;
    }
  }
  if (work.length > 0) {
    // The pages were let go of once their bytes were submitted; it resolves once the GPU has them.
    await ctx.device.queue.onSubmittedWorkDone();
    ctx.assertLive();
    migrator.account('gpu', 'prefetch', [kept], { pages, bytes }, started);
  }
  // What it left off and is not resident on the device (pages resident already were honoured).
  const left = pagesOfRuns([{ first: stop, count: runEnd(run) - stop }]);
  const missing = left.filter((page) => !deviceResident(table.pte(page)));
  const ignored = missing.length * table.pageSize;
  if (missing[0] !== undefined) {
    const part = { first: missing[0], count: runEnd(run) - missing[0] };
    ignoreHint(ctx, part, 'gpu', started);
  }
  return { pages, bytes, ignored };
}

/**
 * Holds a batch's pages as device reads (waiting for their holders), and
 * makes those still needing it `shared`: all of them, or when eviction can
 * free only some frames now (others hold the rest, or take what it freed),
 * the first ones that fit.
 */
async function prefetchBatch(
  ctx: PrefetchContext,
  batch: readonly PageRun[],
  kept: PageRun,
): Promise<Done> {
  const { space, migrator } = ctx;
  const { table } = space;
  const holds: Hold[] = batch.map((run) => ({ ...run, kind: 'device-read' }));
  // Held at once where it can be: then what it must evict is submitted
  // within the call, ahead of a run called after it, and the eviction's
  // readback does not wait for that run.
  if (table.tryHoldAll(holds)) await table.holdAsync(holds, table.address(batch[0]?.first ?? 0));
  try {
    ctx.assertLive();
    migrator.precheck(batch, true); // freed or protected while it waited
    let needed = pagesOfRuns(batch).filter((page) => !deviceResident(table.pte(page)));
    let stop: number | undefined;
    // Never evicting the range's own pages (`kept`); `withRoom` retries frames others took.
    const how = { purpose: 'prefetch', own: [kept] } as const;
    for (;;) {
      try {
        const moved = await migrator.makeResident(runsOf(needed), 'shared', [], how);
        migrator.frameBudget.evictor.fetchedByPrefetch(needed);
        return stop === undefined ? moved : { ...moved, stop };
      } catch (error) {
        if (!(error instanceof OutOfMemoryError && error.reason === 'budget')) throw error;
        // Frames for only some of them now (others hold the rest): the first that fit, once.
        const fit = stop === undefined ? fittingPrefix(needed, migrator) : [];
        if (fit.length === 0 || fit.length === needed.length) {
          return { pages: 0, bytes: 0, stop: needed[0] ?? kept.first };
        }
        stop = needed[fit.length];
        needed = fit;
      }
    }
  } finally {
    table.releaseHolds(holds);
  }
}

/** The first of `pages` whose new frames the pool has free now. */
function fittingPrefix(pages: readonly number[], migrator: Migrator): number[] {
  let free = migrator.frames.free;
  const out: number[] = [];
  for (const page of pages) {
    if (!migrator.frameMap.has(page) && free-- <= 0) break;
    out.push(page);
  }
  return out;
}

/** Whether the page may need a prefetch: not resident on the device, or held (its state may change). */
function mayChange(space: SpaceInternals, page: number): boolean {
  return !deviceResident(space.table.pte(page)) || space.table.isHeld(page);
}

/** Counts and traces a part of a prefetch to `to` it left off. */
function ignoreHint(ctx: PrefetchContext, part: PageRun, to: 'gpu' | 'cpu', started: number): void {
  const { table } = ctx.space;
  ctx.counters.ignoredHints++;
  ctx.emit({
    t: started,
    kind: 'ignored-hint',
    cause: 'prefetch',
    to,
    va: table.address(part.first),
    len: part.count * table.pageSize,
    pages: 0,
    bytes: 0,
    ms: performance.now() - started,
  });
}
