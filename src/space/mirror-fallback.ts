/**
 * What is left when a mirror's serving thread ended without detaching it
 * (fault-channel.ts `serverEnded`): its frames went with it, as in a device
 * loss, so every page falls back to its CPU copy.
 */
import type { PageRun } from './page-run.ts';
import { hasFrame, isGpuDirty, isGpuOwned, pteState, withoutStale, withState } from './pte.ts';
import { PTE_CPU, PTE_FRAME, PTE_GPU_DIRTY, PTE_POLICY_MASK, PTE_SHARED } from './shared-layout.ts';
import type { SharedState } from './shared-state.ts';

/**
 * A space has one mirror, the ended one, so every page with a frame or owned
 * by the GPU was that mirror's: each becomes a `cpu` page with its CPU bytes
 * and no frame (a GPU-dirty page loses its newer bytes, which were only on
 * that device), and the mirror's advice and pins end with it (gpu/advice.ts).
 * @returns 1 for each page that was GPU-dirty
 */
export function fallBackToCpuCopies(shared: SharedState): Uint8Array {
  const { pte, seq } = shared;
  const lost = new Uint8Array(shared.pageCount);
  for (let page = 0; page < shared.pageCount; page++) {
    if ((Atomics.load(pte, page) & PTE_POLICY_MASK) !== 0) Atomics.and(pte, page, ~PTE_POLICY_MASK);
    let word = Atomics.load(pte, page);
    if (!hasFrame(word) && !isGpuOwned(word)) continue;
    Atomics.add(seq, page, 1);
    for (;;) {
      const state = pteState(word);
      const next = withoutStale(
        withState(
          word & ~(PTE_FRAME | PTE_GPU_DIRTY),
          isGpuOwned(word) || state === PTE_SHARED ? PTE_CPU : state,
        ),
      );
      const seen = Atomics.compareExchange(pte, page, word, next);
      if (seen === word) break;
      word = seen;
    }
    if (isGpuDirty(word)) lost[page] = 1;
    Atomics.add(seq, page, 1);
    Atomics.notify(pte, page);
  }
  return lost;
}

/**
 * The pages of `request` marked in `lost`, as one run from the first to the
 * last (undefined if none): what its requester is told could not be saved.
 */
export function lostSpan(request: PageRun, lost: ArrayLike<number>): PageRun | undefined {
  let first = -1;
  let last = -1;
  for (let page = request.first; page < request.first + request.count; page++) {
    if (!lost[page]) continue;
    if (first < 0) first = page;
    last = page;
  }
  return first < 0 ? undefined : { first, count: last - first + 1 };
}
