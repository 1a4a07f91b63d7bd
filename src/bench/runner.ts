/**
 * Runs benchmark rows in the page: per row, warm-up, then interleaved trials
 * A B A B (value, baseline), medians, ratio and spread (docs/benchmarks.md).
 */
import type {
  BenchContext,
  BenchOptions,
  BenchReport,
  BenchResult,
  BenchRow,
} from './bench-types.ts';
import { median, spread } from './statistics.ts';

export interface TrialPlan {
  readonly warmup: number;
  readonly trials: number;
}

export function trialPlan(quick: boolean): TrialPlan {
  return quick ? { warmup: 1, trials: 3 } : { warmup: 2, trials: 7 };
}

/** Runs `rows` (filtered) on `device`, one after the other; a row that throws is reported, not fatal. */
export async function runRows(
  rows: readonly BenchRow[],
  device: GPUDevice,
  options: BenchOptions,
  onResult: (result: BenchResult) => void = () => undefined,
): Promise<Omit<BenchReport, 'env'>> {
  const context: BenchContext = { device, quick: options.quick };
  const plan = trialPlan(options.quick);
  const results: BenchResult[] = [];
  const failures: { name: string; message: string }[] = [];
  for (const row of rows) {
    if (options.filter && !row.name.includes(options.filter)) continue;
    try {
      const result = await runRow(row, context, plan);
      results.push(result);
      onResult(result);
    } catch (error) {
      failures.push({
        name: row.name,
        message: error instanceof Error ? error.message : String(error),
      });
    }
  }
  return { results, failures };
}

export async function runRow(
  row: BenchRow,
  context: BenchContext,
  plan: TrialPlan,
): Promise<BenchResult> {
  const trials = await row.setup(context);
  try {
    for (let i = 0; i < plan.warmup; i++) {
      await trials.value();
      await trials.baseline();
    }
    const values: number[] = [];
    const baselines: number[] = [];
    for (let i = 0; i < plan.trials; i++) {
      values.push(await trials.value());
      baselines.push(await trials.baseline());
    }
    const value = median(values);
    const baseline = median(baselines);
    const notes = trials.notes?.();
    return {
      name: row.name,
      unit: row.unit,
      better: row.better,
      value,
      baseline,
      baselineName: row.baselineName,
      ratio: value / baseline,
      spread: spread(values),
      trials: plan.trials,
      ...(notes ? { notes } : {}),
    };
  } finally {
    await trials.teardown();
  }
}
