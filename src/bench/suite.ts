/**
 * The benchmark suite: every row, run on a device of its own, with the
 * environment it ran in (docs/benchmarks.md). The demo's benchmark panel and
 * `npm run bench` both run it through `runSuite`.
 */
import type { BenchEnv, BenchOptions, BenchReport, BenchResult, BenchRow } from './bench-types.ts';
import { appRows } from './rows/app-rows.ts';
import { faultRows } from './rows/fault-rows.ts';
import { kernelRows } from './rows/kernel-rows.ts';
import { migrationRows } from './rows/migration-rows.ts';
import { oversubRows } from './rows/oversub-rows.ts';
import { runRows as runOverheadRows } from './rows/run-rows.ts';
import { thrashRows } from './rows/thrash-rows.ts';
import { runRows } from './runner.ts';

export const suiteRows: readonly BenchRow[] = [
  ...migrationRows,
  ...kernelRows,
  ...runOverheadRows,
  ...appRows,
  ...faultRows,
  ...oversubRows,
  ...thrashRows,
];

/** The limits a report records: those that bound what the rows can move. */
const REPORTED_LIMITS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxComputeWorkgroupsPerDimension',
  'maxComputeInvocationsPerWorkgroup',
] as const;

export async function runSuite(
  options: BenchOptions,
  onResult: (result: BenchResult) => void = () => undefined,
): Promise<BenchReport> {
  const adapter = await navigator.gpu?.requestAdapter();
  if (!adapter) throw new Error('no WebGPU adapter: the benchmarks need WebGPU');
  const device = await adapter.requestDevice({
    label: 'webhmm bench',
    requiredLimits: {
      maxBufferSize: adapter.limits.maxBufferSize,
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    },
  });
  const env: BenchEnv = {
    adapter: {
      vendor: adapter.info.vendor,
      architecture: adapter.info.architecture,
      device: adapter.info.device,
      description: adapter.info.description,
    },
    limits: Object.fromEntries(REPORTED_LIMITS.map((name) => [name, device.limits[name]])),
    userAgent: navigator.userAgent,
    date: new Date().toISOString(),
    quick: options.quick,
  };
  try {
    return { env, ...(await runRows(suiteRows, device, options, onResult)) };
  } finally {
    device.destroy();
  }
}
