/** Timing the copy engines against each other for calibration. */
import type { CopyEngine, CopyEngineKind } from './copy-engine.ts';

/** Trials per measurement, after one warm-up: the best counts (a collection pause in one must not decide). */
export const TRIALS = 5;

/** The best of TRIALS (after one warm-up) of `transfer` (which returns its ms) per engine, interleaved. */
export async function bestTimes(
  engines: Record<CopyEngineKind, CopyEngine>,
  transfer: (engine: CopyEngine) => Promise<number>,
): Promise<Record<CopyEngineKind, number>> {
  const times: Record<CopyEngineKind, number[]> = { buffer: [], kernel: [] };
  for (let trial = -1; trial < TRIALS; trial++) {
    for (const kind of ['buffer', 'kernel'] as const) {
      const ms = await transfer(engines[kind]);
      if (trial >= 0) times[kind].push(ms);
    }
  }
  return { buffer: Math.min(...times.buffer), kernel: Math.min(...times.kernel) };
}

/** The best of TRIALS (after one warm-up) of `transfer`, which returns its ms. */
export async function bestTime(transfer: () => Promise<number>): Promise<number> {
  await transfer();
  let best = Infinity;
  for (let trial = 0; trial < TRIALS; trial++) best = Math.min(best, await transfer());
  return best;
}
