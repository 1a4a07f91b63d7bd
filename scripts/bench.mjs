// npm run bench [-- --quick] [--filter SUBSTRING] [--out FILE]
//
// Serves the demo with Vite, opens it in headless Chromium (real WebGPU),
// runs the benchmark panel's suite there, prints the table and writes the
// JSON described in docs/benchmarks.md. Exits non-zero when a row fails to run.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright';
import { createServer } from 'vite';
import { chromiumArgs, chromiumPath, requireChromium } from './chromium.mjs';

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    filter: { type: 'string' },
    out: { type: 'string', default: 'bench-results.json' },
  },
});

/**
 * The report's shape (src/bench/bench-types.ts, which needs the WebGPU types).
 * @typedef {{ name: string, unit: string, value: number, baseline: number, ratio: number,
 *   spread: number, notes?: Record<string, string | number> }} Result
 * @typedef {{ env: { adapter: object, userAgent: string }, results: Result[],
 *   failures: { name: string, message: string }[] }} Report
 * @typedef {{ webhmmBench: { run(options: object): Promise<Report> } }} BenchPage
 */

/** The issues' targets: a ratio bound per row, checked and printed, never enforced here.
 * @type {Record<string, ['>=' | '<=', number]>} */
const TARGETS = {
  'migrate.h2d.auto': ['>=', 0.85],
  'migrate.d2h.auto': ['>=', 0.85],
  'update.dirty.1pct': ['<=', 0.1],
  'kernel.translated': ['<=', 1.5],
  'iterative.webhmm': ['<=', 0.4],
  'fault.cpu.p50': ['<=', 2],
  'fault.cpu.throughput': ['>=', 4],
  'oversub.stream': ['>=', 0.5],
  'prefetch.stream': ['<=', 0.9],
  'thrash.pingpong': ['<=', 0.5],
};

/** Timing an operation against itself gives ratios in this band (docs/benchmarks.md). */
const NOISE_HIGH = 1.16;

requireChromium();
const server = await createServer({
  logLevel: 'warn',
  // No watcher and no HMR: an edit made during a run must not reload the page under it.
  server: { host: '127.0.0.1', port: 5190, watch: null, hmr: false },
});
let browser;
let exitCode = 0;
try {
  await server.listen();
  const url = server.resolvedUrls?.local[0];
  if (!url) throw new Error('Vite did not report a local URL');
  browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
  const page = await browser.newPage();
  page.on('console', (message) => {
    const text = message.text();
    if (text.startsWith('[bench]')) console.log(text);
  });
  page.on('pageerror', (error) => console.error(`page error: ${error.message}`));
  await page.goto(url);
  await page.waitForFunction(() => 'webhmmBench' in globalThis);
  const options = { quick: flags.quick, ...(flags.filter ? { filter: flags.filter } : {}) };
  console.log(`bench: ${options.quick ? 'quick' : 'full'} run at ${url}`);
  const report = await page.evaluate(
    (o) => /** @type {BenchPage} */ (/** @type {unknown} */ (globalThis)).webhmmBench.run(o),
    options,
  );
  writeFileSync(flags.out, `${JSON.stringify(report, null, 2)}\n`);

  console.log(`\nadapter: ${JSON.stringify(report.env.adapter)}`);
  console.log(`user agent: ${report.env.userAgent}\n`);
  console.table(
    report.results.map((r) => ({
      name: r.name,
      value: `${r.value.toPrecision(4)} ${r.unit}`,
      baseline: `${r.baseline.toPrecision(4)} ${r.unit}`,
      ratio: Number(r.ratio.toFixed(3)),
      spread: `${(r.spread * 100).toFixed(0)}%`,
      target: targetVerdict(r),
      notes: r.notes ? JSON.stringify(r.notes) : '',
    })),
  );
  for (const line of autoChoices(report.results)) console.log(line);
  for (const failure of report.failures) {
    console.error(`FAILED ${failure.name}: ${failure.message}`);
    exitCode = 1;
  }
  console.log(`\nwrote ${flags.out}`);
} catch (error) {
  console.error(error);
  exitCode = 1;
} finally {
  await browser?.close();
  await server.close();
}
process.exit(exitCode);

/** @param {Result} result */
function targetVerdict(result) {
  const target = TARGETS[result.name];
  if (!target) return '';
  const [op, bound] = target;
  const met = op === '>=' ? result.ratio >= bound : result.ratio <= bound;
  return `${op} ${bound} ${met ? 'met' : 'MISSED'}`;
}

/** For each shape, whether `auto` chose the engine that won it in this run (or the two tied within noise). */
/** @param {Result[]} results */
function autoChoices(results) {
  const byName = new Map(results.map((r) => [r.name, r]));
  const lines = [];
  for (const shape of ['migrate.h2d', 'migrate.d2h', 'migrate.scattered']) {
    const kernel = byName.get(`${shape}.kernel`);
    const buffer = byName.get(`${shape}.buffer`);
    const auto = byName.get(`${shape}.auto`);
    if (!kernel || !buffer || !auto) continue;
    const winner = kernel.value > buffer.value ? 'kernel' : 'buffer';
    const edge = Math.max(kernel.value, buffer.value) / Math.min(kernel.value, buffer.value);
    const chose = auto.notes?.engine;
    const best = Math.max(kernel.value, buffer.value);
    // auto must have chosen the winner and also moved data at the winner's speed.
    const fast = auto.value * NOISE_HIGH >= best;
    const verdict =
      (chose === winner || edge < NOISE_HIGH) && fast
        ? chose === winner
          ? 'chose the winner'
          : 'a tie within noise'
        : 'MISSED';
    lines.push(
      `${shape}.auto chose ${chose} at ${auto.value.toPrecision(3)} GB/s; ${winner} won by ${edge.toFixed(2)}x: ${verdict}`,
    );
  }
  return lines;
}
