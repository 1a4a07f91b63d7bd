/**
 * Migration holds cut to what the mirror's thread can journal. A thread that
 * `Threads` may end (a worker from `Threads.spawn`) writes every page hold it
 * takes in its record's journal (space/thread-record.ts), which has room for
 * THREAD_JOURNAL_CAPACITY runs; a migration holds one run per hold, so one
 * over many scattered pages (a `sync`, a `detach`, a batch of CPU faults)
 * goes in batches of at most HOLD_BATCH_RUNS runs, one after the other.
 * A thread without a record (the main thread) journals nothing: one batch.
 */
import type { PageRun } from '../space/page-run.ts';
import { THREAD_JOURNAL_CAPACITY } from '../space/shared-layout.ts';

/**
 * Runs one migration batch holds at most on a journaled thread: a quarter of
 * the journal, so that a kernel run's holds, a fault batch and a sync of the
 * same thread fit beside each other.
 */
export const HOLD_BATCH_RUNS = THREAD_JOURNAL_CAPACITY / 4;

/** `runs` in batches a thread's journal can take (one batch when `journaled` is false). */
export function holdBatches(runs: readonly PageRun[], journaled: boolean): PageRun[][] {
  if (!journaled || runs.length <= HOLD_BATCH_RUNS) return runs.length > 0 ? [[...runs]] : [];
  const batches: PageRun[][] = [];
  for (let at = 0; at < runs.length; at += HOLD_BATCH_RUNS) {
    batches.push(runs.slice(at, at + HOLD_BATCH_RUNS));
  }
  return batches;
}

/** Pages and bytes a batch moved (migration.ts's MigrationResult). */
interface Moved {
  readonly pages: number;
  readonly bytes: number;
}

/**
 * Runs `move` over `runs` in batches (`holdBatches`), one after the other,
 * and sums what they moved. With more than one batch, `precheck` runs first
 * over all of them, so that what would refuse the whole migration (a bad
 * page, the budget) refuses it before anything moves; a batch can still fail
 * on a change made meanwhile (a page freed), and then the batches before it
 * have moved their pages.
 */
export async function inBatches(
  runs: readonly PageRun[],
  journaled: boolean,
  precheck: () => void,
  move: (batch: readonly PageRun[]) => Promise<Moved>,
): Promise<Moved> {
  const batches = holdBatches(runs, journaled);
  if (batches.length > 1) precheck();
  let pages = 0;
  let bytes = 0;
  for (const batch of batches) {
    const moved = await move(batch);
    pages += moved.pages;
    bytes += moved.bytes;
  }
  return { pages, bytes };
}
