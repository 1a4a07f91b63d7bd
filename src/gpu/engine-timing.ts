/** Timing the copy engines against each other for calibration. */
import type { CopyEngine } from './copy-engine.ts';

/** Trials per measurement, after one warm-up: the best counts (a collection pause in one must not decide). */
export const TRIALS = 5;

/** The best of TRIALS (after one warm-up) of `transfer` (which returns its ms) per engine, interleaved. */
export async function bestTimes<Name extends string>(
  engines: Record<Name, CopyEngine>,
  transfer: (engine: CopyEngine) => Promise<number>,
): Promise<Record<Name, number>> {
  const names = Object.keys(engines) as Name[];
  const best = Object.fromEntries(names.map((name) => [name, Infinity])) as Record<Name, number>;
  for (let trial = -1; trial < TRIALS; trial++) {
    for (const name of names) {
      const ms = await transfer(engines[name]);
      if (trial >= 0) best[name] = Math.min(best[name], ms);
    }
  }
  return best;
}

/** The best of TRIALS (after one warm-up) of `transfer`, which returns its ms. */
export async function bestTime(transfer: () => Promise<number>): Promise<number> {
  await transfer();
  let best = Infinity;
  for (let trial = 0; trial < TRIALS; trial++) best = Math.min(best, await transfer());
  return best;
}
