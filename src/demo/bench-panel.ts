// The demo's benchmark panel: runs the suite (quick or full) in this page and
// shows each row as it lands. `npm run bench` drives the same panel headless
// through `window.webhmmBench`.
import type { BenchOptions, BenchReport, BenchResult } from '../bench/bench-types.ts';
import { runSuite } from '../bench/suite.ts';

declare global {
  interface Window {
    webhmmBench?: { run(options: BenchOptions): Promise<BenchReport> };
  }
}

const format = (value: number): string =>
  Math.abs(value) >= 100 ? value.toFixed(0) : value.toPrecision(3);

function row(result: BenchResult): HTMLTableRowElement {
  const tr = document.createElement('tr');
  const cells = [
    result.name,
    `${format(result.value)} ${result.unit}`,
    `${format(result.baseline)} ${result.unit}`,
    format(result.ratio),
    `${(result.spread * 100).toFixed(0)}%`,
    result.notes ? JSON.stringify(result.notes) : '',
  ];
  tr.append(
    ...cells.map((text) => Object.assign(document.createElement('td'), { textContent: text })),
  );
  tr.title = `baseline: ${result.baselineName}; ${result.better} is better`;
  return tr;
}

export function mountBenchPanel(host: Element): void {
  const panel = document.createElement('section');
  panel.innerHTML = `
    <h2>Benchmarks</h2>
    <p>Each row against its baseline, interleaved in this run (A B A B, medians). Ratio = value / baseline.</p>
    <button data-bench="quick">run quick</button>
    <button data-bench="full">run full</button>
    <span id="bench-status"></span>
    <table id="bench-table">
      <thead><tr><th>row</th><th>value</th><th>baseline</th><th>ratio</th><th>spread</th><th>notes</th></tr></thead>
      <tbody></tbody>
    </table>
    <style>
      #bench-table { border-collapse: collapse; margin-top: .5rem; }
      #bench-table td, #bench-table th { padding: .15rem .6rem; text-align: left; font-size: 12px; }
      #bench-table tbody tr:nth-child(odd) { background: #f3f3f3; }
    </style>`;
  host.append(panel);
  const status = panel.querySelector('#bench-status') as HTMLElement;
  const body = panel.querySelector('tbody') as HTMLElement;
  let running: Promise<BenchReport> | undefined;

  const run = (options: BenchOptions): Promise<BenchReport> => {
    if (running) return Promise.reject(new Error('a benchmark run is already going'));
    body.replaceChildren();
    status.textContent = options.quick ? 'running quick...' : 'running full...';
    running = runSuite(options, (result) => {
      body.append(row(result));
      console.log(
        `[bench] ${result.name}: ${format(result.value)} ${result.unit}, baseline ${format(result.baseline)}, ratio ${format(result.ratio)}`,
      );
    })
      .then((report) => {
        const failed = report.failures.map((failure) => `${failure.name}: ${failure.message}`);
        status.textContent = failed.length ? `failed: ${failed.join('; ')}` : 'done';
        return report;
      })
      .finally(() => (running = undefined));
    return running;
  };

  panel.addEventListener('click', (event) => {
    const mode = (event.target as HTMLElement).dataset['bench'];
    if (mode)
      run({ quick: mode === 'quick' }).catch(
        (error: unknown) => (status.textContent = String(error)),
      );
  });
  window.webhmmBench = { run };
}
