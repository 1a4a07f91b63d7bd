/**
 * Migration planning, pure: from the pages' ptes and stale ranges, which
 * pages need a frame, a cleared frame, which byte ranges an upload, which
 * pages a readback, and which pages change owner. No GPU, no holds: the
 * migration engine (migration.ts) runs the plan under exclusive holds.
 *
 * The rules (page states as in docs/gpu-mirror.md):
 * - `shared` and `gpu` pages are resident: nothing to fetch.
 * - A `zero` page gets a cleared frame and no upload; a device write that
 *   covers the whole page skips the clear.
 * - A `cpu` page uploads what its frame lacks: its stale blocks, or the
 *   whole page when it has no frame, is stale as a whole, or has so many
 *   stale blocks that the page costs less whole (`wholePageShare`, measured
 *   by the copy engine's calibration); a device write skips the stale bytes
 *   it overwrites whole.
 * - Only GPU-dirty `gpu` pages are read back; other pages move no bytes.
 */
import type { PageRun } from '../space/page-run.ts';
import type { Staleness } from '../space/page-table.ts';
import { isGpuDirty, isGpuOwned, pteState } from '../space/pte.ts';
import {
  PTE_GPU,
  PTE_SHARED,
  PTE_UNMAPPED,
  PTE_ZERO,
  STALE_BLOCK_BYTES,
} from '../space/shared-layout.ts';
import { countBlocks, withoutCovered, type StaleBlocks } from '../space/stale-blocks.ts';

/** What planning reads of the page table and the frame map. */
export interface PlanView {
  readonly pageSize: number;
  pte(page: number): number;
  /** What the page's frame lacks (read only for `cpu` pages that have a frame). */
  staleness(page: number): Staleness;
  /** Whether the page has a (current-generation) frame on this mirror. */
  hasFrame(page: number): boolean;
  /**
   * The share of a page's bytes (0-1) at which uploading its stale blocks
   * costs as much as uploading the whole page: pages staler than that go whole.
   */
  readonly wholePageShare: number;
}

/** How one page's frame is brought up to date. */
export interface PagePlan {
  readonly page: number;
  /** The page needs a new frame. */
  readonly newFrame: boolean;
  /** Clear the frame: a zero page. */
  readonly clear: boolean;
  /** Page-relative [lo, hi) byte ranges to upload, 4-byte aligned, hi <= pageSize. */
  readonly upload: readonly (readonly [number, number])[];
  /**
   * The plan leaves bytes of the frame for the device write that covers
   * them (a skipped clear, an upload trimmed): until that write lands, the
   * frame is stale as a whole, so a write that fails leaves nothing stale
   * unmarked.
   */
  readonly awaitsWrite?: true;
  /** Stale blocks to upload besides `upload` (a page with a frame, a few blocks stale), and how many. */
  readonly blocks?: { readonly bits: StaleBlocks; readonly count: number };
}

/** A device write's byte range [lo, hi), absolute VAs: stale bytes inside it need no upload. */
export interface Overwrite {
  readonly lo: number;
  readonly hi: number;
}

/** The plan for making every page of `runs` resident; resident pages need none. */
export function planResidency(
  view: PlanView,
  runs: readonly PageRun[],
  overwrite?: Overwrite,
): PagePlan[] {
  const plans: PagePlan[] = [];
  for (const run of runs) {
    for (let page = run.first; page < run.first + run.count; page++) {
      const plan = planPage(view, page, overwrite);
      if (plan) plans.push(plan);
    }
  }
  return plans;
}

function planPage(view: PlanView, page: number, overwrite?: Overwrite): PagePlan | undefined {
  const { pageSize } = view;
  const state = pteState(view.pte(page));
  // Nothing to bring up to date: resident already, or freed by another
  // thread since the caller checked it under its hold (a free waits for no
  // device hold), which then finds it has no frame.
  if (state === PTE_SHARED || state === PTE_GPU || state === PTE_UNMAPPED) return undefined;
  const covered = overwrite && coveredBytes(overwrite, page * pageSize, pageSize);
  const framed = view.hasFrame(page);
  if (state === PTE_ZERO) {
    const whole = covered !== undefined && covered.lo === 0 && covered.hi === pageSize;
    const plan = { page, newFrame: !framed, clear: !whole, upload: [] };
    return whole ? { ...plan, awaitsWrite: true } : plan;
  }
  // A `cpu` page: upload what the frame lacks (all of it without a frame).
  const staleness = framed ? view.staleness(page) : 'whole';
  if (staleness === 'none') return { page, newFrame: false, clear: false, upload: [] };
  if (staleness !== 'whole') {
    const blocks = covered ? withoutCovered(staleness, covered.lo, covered.hi) : staleness;
    const count = countBlocks(blocks);
    if (count * STALE_BLOCK_BYTES < view.wholePageShare * pageSize) {
      const upload: PagePlan['upload'] = [];
      if (count === 0) return { page, newFrame: false, clear: false, upload };
      return { page, newFrame: false, clear: false, upload, blocks: { bits: blocks, count } };
    }
  }
  // The whole page, less what the device write covers (widened to words).
  const pieces: (readonly [number, number])[] = covered
    ? [
        [0, covered.lo],
        [covered.hi, pageSize],
      ]
    : [[0, pageSize]];
  const upload = pieces
    .map(([lo, hi]) => [lo & ~3, Math.min(pageSize, (hi + 3) & ~3)] as const)
    .filter(([lo, hi]) => lo < hi);
  const plan = { page, newFrame: !framed, clear: false, upload };
  return covered ? { ...plan, awaitsWrite: true } : plan;
}

/** The page-relative bytes [lo, hi) of the page at `base` that `overwrite` covers, if any. */
function coveredBytes(overwrite: Overwrite, base: number, pageSize: number) {
  const lo = Math.max(overwrite.lo, base) - base;
  const hi = Math.min(overwrite.hi, base + pageSize) - base;
  return lo < hi ? { lo, hi } : undefined;
}

/** New frames a plan takes from the pool. */
export function framesNeeded(plans: readonly PagePlan[]): number {
  return plans.reduce((sum, plan) => sum + (plan.newFrame ? 1 : 0), 0);
}

/** Pages whose bytes a plan uploads (cleared frames move no bytes). */
export function pagesUploaded(plans: readonly PagePlan[]): number {
  return plans.reduce((sum, plan) => sum + (plan.upload.length > 0 || plan.blocks ? 1 : 0), 0);
}

/** The GPU-dirty pages of `runs`: the only ones a migration to the CPU reads back. */
export function pagesToReadBack(view: Pick<PlanView, 'pte'>, runs: readonly PageRun[]): number[] {
  return pagesOfRuns(runs).filter((page) => isGpuDirty(view.pte(page)));
}

/** The pages of `runs` that a migration to 'gpu' takes from the CPU (those not GPU-owned yet). */
export function pagesBecomingGpu(view: Pick<PlanView, 'pte'>, runs: readonly PageRun[]): number[] {
  return pagesOfRuns(runs).filter((page) => !isGpuOwned(view.pte(page)));
}

/**
 * The pages of `runs` a migration to 'gpu' must hold, as runs (each keeping
 * the requested `va` where it starts on the requested run's first page):
 * those not GPU-owned, and those someone holds now (a migration to the CPU
 * in progress, say), which it waits for as before. Others are left alone,
 * so that it holds and plans in proportion to the work, not to the range.
 */
export function runsToHoldForGpu<R extends PageRun & { readonly va?: number }>(
  view: Pick<PlanView, 'pte'> & { held(page: number): boolean },
  runs: readonly R[],
): (PageRun & { readonly va?: number })[] {
  const out: (PageRun & { va?: number })[] = [];
  for (const run of runs) {
    let start = -1;
    for (let page = run.first; page <= run.first + run.count; page++) {
      const work = page < run.first + run.count && (!isGpuOwned(view.pte(page)) || view.held(page));
      if (work && start < 0) start = page;
      if (!work && start >= 0) {
        const part = { first: start, count: page - start };
        out.push(start === run.first && run.va !== undefined ? { ...part, va: run.va } : part);
        start = -1;
      }
    }
  }
  return out;
}

/**
 * `runs` (sorted, disjoint) merged across their smallest gaps until at most
 * `max` remain: fewer holds to journal, at the cost of holding the pages in
 * the gaps too.
 */
export function bridgeGaps<R extends PageRun & { readonly va?: number }>(
  runs: readonly R[],
  max: number,
): (PageRun & { readonly va?: number })[] {
  if (runs.length <= max) return [...runs];
  const gaps = runs
    .slice(1)
    .map((run, i) => ({
      at: i + 1,
      size: run.first - ((runs[i]?.first ?? 0) + (runs[i]?.count ?? 0)),
    }))
    .sort((a, b) => a.size - b.size || a.at - b.at)
    .slice(0, runs.length - max);
  const bridged = new Set(gaps.map((gap) => gap.at));
  const out: (PageRun & { va?: number })[] = [];
  runs.forEach((run, i) => {
    const last = out[out.length - 1];
    if (last && bridged.has(i))
      out[out.length - 1] = { ...last, count: run.first + run.count - last.first };
    else out.push(run);
  });
  return out;
}

/** The GPU-owned pages of `runs`: those a migration to the CPU makes `shared`. */
export function pagesGpuOwned(view: Pick<PlanView, 'pte'>, runs: readonly PageRun[]): number[] {
  return pagesOfRuns(runs).filter((page) => isGpuOwned(view.pte(page)));
}

/** Every page of `runs`, in order. */
export function pagesOfRuns(runs: readonly PageRun[]): number[] {
  const pages: number[] = [];
  for (const run of runs)
    for (let page = run.first; page < run.first + run.count; page++) pages.push(page);
  return pages;
}
