/**
 * Density prefetch for fault-mode runs, as UVM's tree prefetcher: around each
 * faulting page, the largest aligned block of up to GPU_PREFETCH_BYTES (a
 * power of two of pages), clipped to the page's allocation, of which more
 * than half the pages are resident (have a frame on this mirror, valid or
 * stale) or faulting in this pass. A lone fault in an empty region fetches
 * just its page; a fault beside mostly resident pages brings their block in
 * whole.
 *
 * This module only chooses pages; it holds and moves nothing. What a run
 * takes of the choice (within the budget, never pages other threads hold) is
 * fault-mode-run.ts's business.
 */
import { alignedBlockAround, runEnd, type PageRun } from '../space/page-run.ts';

/**
 * The largest block density prefetch considers, in bytes (2 MiB, UVM's VA
 * block): at most this much around a faulting page is fetched with it.
 */
export const GPU_PREFETCH_BYTES = 2 << 20;

/** What density prefetch reads of the space and the mirror. */
export interface DensityView {
  readonly pageSize: number;
  /** Whether the page has a frame on this mirror (valid or stale). */
  resident(page: number): boolean;
  /** The allocation holding `page`, or undefined if it is free. */
  allocationRun(page: number): PageRun | undefined;
}

/**
 * The pages density prefetch adds around `anchors` (faulting pages), each
 * with its distance in pages to the nearest anchor whose block brought it;
 * `faulting` (every page faulting in the pass, anchors included) count as
 * dense and are never in the result.
 */
export function densityPrefetch(
  view: DensityView,
  anchors: readonly number[],
  faulting: ReadonlySet<number>,
): Map<number, number> {
  const maxBlock = Math.max(1, Math.floor(GPU_PREFETCH_BYTES / view.pageSize));
  const out = new Map<number, number>();
  const regions = new Map<string, DenseRegion>();
  for (const anchor of anchors) {
    const allocation = view.allocationRun(anchor);
    if (!allocation) continue;
    const top = alignedBlockAround(anchor, anchor + 1, maxBlock, allocation);
    const key = `${top.first}:${top.count}`;
    let region = regions.get(key);
    if (!region) regions.set(key, (region = new DenseRegion(view, top, faulting)));
    const block = region.densestBlock(anchor, maxBlock, allocation);
    for (let page = block.first; page < runEnd(block); page++) {
      if (faulting.has(page)) continue;
      const distance = Math.abs(page - anchor);
      const known = out.get(page);
      if (known === undefined || distance < known) out.set(page, distance);
    }
  }
  return out;
}

/** One top-level block's occupancy (resident or faulting), as prefix sums. */
class DenseRegion {
  /** dense[i] = dense pages among the region's first i pages. */
  private readonly dense: Int32Array;

  constructor(
    view: DensityView,
    private readonly region: PageRun,
    faulting: ReadonlySet<number>,
  ) {
    this.dense = new Int32Array(region.count + 1);
    for (let i = 0; i < region.count; i++) {
      const page = region.first + i;
      const isDense = faulting.has(page) || view.resident(page);
      this.dense[i + 1] = (this.dense[i] ?? 0) + (isDense ? 1 : 0);
    }
  }

  /** The largest aligned block around `page`, within `allocation`, more than half dense; at least the page. */
  densestBlock(page: number, maxBlock: number, allocation: PageRun): PageRun {
    for (let size = maxBlock; size >= 2; size /= 2) {
      const block = alignedBlockAround(page, page + 1, size, allocation);
      if (this.count(block) * 2 > block.count) return block;
    }
    return { first: page, count: 1 };
  }

  private count(block: PageRun): number {
    const lo = block.first - this.region.first;
    return (this.dense[lo + block.count] ?? 0) - (this.dense[lo] ?? 0);
  }
}
