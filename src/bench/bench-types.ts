/**
 * The benchmark suite's shapes: a row, its result, and the report that
 * `npm run bench` writes (format in docs/benchmarks.md). Logic-free: this is what crosses from the
 * bench page to the runner script.
 */

export interface BenchEnv {
  readonly adapter: { vendor: string; architecture: string; device: string; description: string };
  readonly limits: Record<string, number>;
  readonly userAgent: string;
  readonly date: string;
  readonly quick: boolean;
}

export interface BenchResult {
  readonly name: string;
  readonly unit: string;
  readonly better: 'higher' | 'lower';
  /** Median of the row's trials. */
  readonly value: number;
  /** Median of the baseline's trials, interleaved with the row's. */
  readonly baseline: number;
  readonly baselineName: string;
  /** value / baseline. */
  readonly ratio: number;
  /** (max - min) / median of the row's trials. */
  readonly spread: number;
  readonly trials: number;
  /** What else the row measured (a choice it made, a count), for reading the result. */
  readonly notes?: Record<string, string | number>;
}

export interface BenchReport {
  readonly env: BenchEnv;
  readonly results: readonly BenchResult[];
  /** Rows that threw: name and message. */
  readonly failures: readonly { name: string; message: string }[];
}

export interface BenchOptions {
  readonly quick: boolean;
  /** Only rows whose name contains this. */
  readonly filter?: string;
}

/** One timed trial: returns the measured quantity (GB/s, ms, bytes, ...). */
export type Trial = () => Promise<number>;

/**
 * A benchmark row. `setup` prepares both sides (sizes come from `quick`) and
 * returns the two trials, which the runner interleaves A B A B after warm-up.
 * Each trial times its work until its data is usable.
 */
export interface BenchRow {
  readonly name: string;
  readonly unit: string;
  readonly better: 'higher' | 'lower';
  readonly baselineName: string;
  setup(context: BenchContext): Promise<RowTrials>;
}

export interface RowTrials {
  readonly value: Trial;
  readonly baseline: Trial;
  /** Called once after the trials; frees what setup made. */
  teardown(): Promise<void> | void;
  /** Read after the trials: what the row chose or counted. */
  notes?(): Record<string, string | number>;
}

export interface BenchContext {
  readonly device: GPUDevice;
  readonly quick: boolean;
}
