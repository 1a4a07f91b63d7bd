/**
 * Taking every frame back from a mirror's pages, at detach and after a
 * device loss: each page keeps its CPU bytes and loses its frame; `shared`
 * and `gpu` pages become `cpu`, other states stay as they are.
 *
 * Guarantees:
 * - Each page changes under an exclusive hold, taken in batches the thread's
 *   hold journal can take (hold-batches.ts).
 * - Liveness: a page someone else still holds after `faultTimeoutMs` (a CPU
 *   scope held that long) loses its frame without the hold, by one atomic pte
 *   change. A CPU hold never rests on a GPU-dirty page (an access faults such
 *   a page back before it keeps its hold), so that page's CPU copy is current
 *   and its holder, which only touches CPU bytes, cannot tell. Those pages are
 *   returned, so the caller can say which pages it could not release in order.
 * - A GPU-dirty page loses its newer bytes here: callers write dirty pages
 *   back first, or (device loss) report them as unsaved.
 */
import { WouldBlockError } from '../errors.ts';
import { runEnd, runsOf, type PageRun } from '../space/page-run.ts';
import type { Hold, PageTable } from '../space/page-table.ts';
import { hasFrame, pteState, withoutStale, withState } from '../space/pte.ts';
import {
  PTE_CPU,
  PTE_FRAME,
  PTE_GPU,
  PTE_GPU_DIRTY,
  PTE_PINNED_GPU,
  PTE_SHARED,
} from '../space/shared-layout.ts';
import type { FrameMap } from './frame-map.ts';
import { holdBatches } from './hold-batches.ts';

export interface FrameReleaseContext {
  readonly table: PageTable;
  readonly frameMap: FrameMap;
  /** The mirror's thread journals its holds (a `Threads` worker): hold in batches. */
  readonly journaled: boolean;
}

/**
 * Takes every frame of the frame map back (see the module doc).
 * @returns the pages whose frames were taken without their hold, ascending
 */
export async function releaseFrames(ctx: FrameReleaseContext): Promise<number[]> {
  const { table } = ctx;
  const forced: number[] = [];
  let patient = true;
  for (const batch of holdBatches(runsOf(ctx.frameMap.pagesWithFrames()), ctx.journaled)) {
    if (patient) {
      const holds = exclusive(batch);
      try {
        await table.holdAsync(holds, table.address(batch[0]?.first ?? 0));
      } catch (error) {
        if (!(error instanceof WouldBlockError)) throw error;
        // Waited faultTimeoutMs: from here on, take what is free and force the rest.
        patient = false;
      }
      if (patient) {
        try {
          for (const run of batch)
            for (let page = run.first; page < runEnd(run); page++)
              dropFrame(table, ctx.frameMap, page);
        } finally {
          table.releaseHolds(holds);
        }
        continue;
      }
    }
    for (const run of batch) {
      for (let page = run.first; page < runEnd(run); page++) {
        const hold = exclusive([{ first: page, count: 1 }]);
        if (table.tryHoldAll(hold) !== undefined) {
          forceDrop(ctx, page);
          forced.push(page);
          continue;
        }
        try {
          dropFrame(table, ctx.frameMap, page);
        } finally {
          table.releaseHolds(hold);
        }
      }
    }
  }
  // Frames dropped under the holds just released are in no one's use now.
  ctx.frameMap.releaseQuarantined();
  return forced;
}

function exclusive(runs: readonly PageRun[]): Hold[] {
  return runs.map((run) => ({ first: run.first, count: run.count, kind: 'exclusive-long' }));
}

/** The pte of a page losing its frame: `shared` and `gpu` become `cpu`; not GPU-dirty. */
function withoutFrame(pte: number): number {
  if (!hasFrame(pte)) return pte; // freed since, maybe reused: not this frame's page any more
  const state = pteState(pte);
  const next = state === PTE_GPU || state === PTE_SHARED ? PTE_CPU : state;
  // A pin on the GPU goes with the frame (thrash.ts).
  return withState(pte & ~(PTE_FRAME | PTE_GPU_DIRTY | PTE_PINNED_GPU), next);
}

/**
 * A held page loses its frame (at detach, and to eviction: eviction.ts):
 * `shared` and `gpu` become `cpu`, not GPU-dirty. Its CPU copy must be
 * current: the caller wrote a dirty page back first.
 */
export function dropFrame(table: PageTable, frameMap: FrameMap, page: number): void {
  if (hasFrame(table.pte(page))) {
    table.updatePte(page, withoutFrame);
    table.clearStaleness(page);
  }
  frameMap.drop(page);
}

/**
 * A page someone else holds loses its frame, in one atomic pte change. Its
 * stale ranges stay recorded but unflagged: with no frame they are never read,
 * and the next frame it gets clears them under its hold.
 */
function forceDrop(ctx: FrameReleaseContext, page: number): void {
  const { table } = ctx;
  table.invalidate(page);
  table.updatePte(page, (pte) => (hasFrame(pte) ? withoutStale(withoutFrame(pte)) : pte));
  ctx.frameMap.drop(page);
}

/** The error of a detach that found `pages` held past faultTimeoutMs (see `releaseFrames`). */
export function heldPastTimeout(
  pages: readonly number[],
  pageSize: number,
  faultTimeoutMs: number,
): WouldBlockError {
  const ranges = runsOf(pages)
    .map(({ first, count }) => `0x${(first * pageSize).toString(16)}+${count * pageSize}`)
    .join(', ');
  return new WouldBlockError(
    (pages[0] ?? 0) * pageSize,
    'timeout',
    `detach waited ${faultTimeoutMs} ms (faultTimeoutMs) for pages another holder kept and could not release them in order: ${ranges}; they lost their frames without the hold and are \`cpu\` pages with their CPU bytes, readable; the mirror is detached`,
  );
}
