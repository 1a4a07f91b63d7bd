/**
 * Runs of pages: the unit in which pages are held, migrated, declared by
 * kernels and reported. Bounds: a run covers pages [first, first + count),
 * `first` inclusive, the end exclusive, and `count` >= 1 wherever a run is
 * produced here.
 */

/** Pages [first, first + count): page indices (VA / pageSize), end exclusive. */
export interface PageRun {
  /** The first page (inclusive). */
  readonly first: number;
  /** Pages in the run (>= 1). */
  readonly count: number;
}

/** The end of `run`: its last page + 1 (exclusive). */
export function runEnd(run: PageRun): number {
  return run.first + run.count;
}

/**
 * Sorts `runs` and merges those that overlap or touch: the one run-coalescing
 * function (pages, frames and declared ranges are all coalesced through it).
 * Indices may be pages or frames; the result is sorted, disjoint and not
 * adjacent.
 */
export function coalesceRuns(runs: Iterable<PageRun>): PageRun[] {
  const sorted = [...runs].sort((a, b) => a.first - b.first);
  const out: { first: number; count: number }[] = [];
  for (const run of sorted) {
    const last = out[out.length - 1];
    if (last && run.first <= last.first + last.count) {
      last.count = Math.max(last.count, run.first + run.count - last.first);
    } else if (run.count > 0) {
      out.push({ first: run.first, count: run.count });
    }
  }
  return out;
}

/** Page (or frame) indices, in any order and with repeats, as coalesced runs. */
export function runsOf(pages: Iterable<number>): PageRun[] {
  const single: PageRun[] = [];
  for (const page of pages) single.push({ first: page, count: 1 });
  return coalesceRuns(single);
}

/**
 * The pages [first, end) widened outward to whole aligned blocks of `block`
 * pages, then clipped to `within` (an allocation): how far fault-around may
 * reach from a faulting range.
 */
export function alignedBlockAround(
  first: number,
  end: number,
  block: number,
  within: PageRun,
): PageRun {
  const lo = Math.max(within.first, Math.floor(first / block) * block);
  const hi = Math.min(runEnd(within), Math.ceil(end / block) * block);
  return { first: lo, count: hi - lo };
}
