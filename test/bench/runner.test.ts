import { describe, expect, it } from 'vitest';
import type { BenchContext, BenchRow } from '../../src/bench/bench-types.ts';
import { runRow, runRows } from '../../src/bench/runner.ts';
import { gbPerSecond, median, randomDistinct, spread } from '../../src/bench/statistics.ts';

const context = { device: undefined as unknown as GPUDevice, quick: true } as BenchContext;

/** A row whose trials return the next of `values` / `baselines` and log their order. */
function scriptedRow(
  name: string,
  values: number[],
  baselines: number[],
  order: string[],
): BenchRow {
  return {
    name,
    unit: 'ms',
    better: 'lower',
    baselineName: 'scripted',
    setup: () =>
      Promise.resolve({
        value: () => (order.push('A'), Promise.resolve(values.shift() ?? Number.NaN)),
        baseline: () => (order.push('B'), Promise.resolve(baselines.shift() ?? Number.NaN)),
        notes: () => ({ seen: order.length }),
        teardown: () => void order.push('teardown'),
      }),
  };
}

describe('bench statistics', () => {
  it('takes medians of odd and even counts, spread over the median, GB/s', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
    expect(spread([1, 2, 3])).toBe(1);
    expect(gbPerSecond(2e9, 1000)).toBe(2);
    const picks = randomDistinct(50, 20);
    expect(new Set(picks).size).toBe(20);
    expect(picks).toEqual([...picks].sort((a, b) => a - b));
    expect(Math.max(...picks)).toBeLessThan(50);
  });
});

describe('bench runner', () => {
  it('warms up, interleaves A B A B, and reports medians, ratio, spread and notes', async () => {
    const order: string[] = [];
    const row = scriptedRow('r', [99, 10, 30, 20], [99, 5, 5, 10], order);
    const result = await runRow(row, context, { warmup: 1, trials: 3 });
    expect(order).toEqual(['A', 'B', 'A', 'B', 'A', 'B', 'A', 'B', 'teardown']);
    expect(result).toMatchObject({
      name: 'r',
      value: 20,
      baseline: 5,
      ratio: 4,
      spread: 1,
      trials: 3,
      notes: { seen: 8 },
    });
  });

  it('filters rows by name and reports a row that throws without stopping the others', async () => {
    const broken: BenchRow = {
      ...scriptedRow('x.broken', [], [], []),
      setup: () => Promise.reject(new Error('no device')),
    };
    const seen: string[] = [];
    const report = await runRows(
      [broken, scriptedRow('x.ok', [1, 1, 1, 1], [2, 2, 2, 2], []), scriptedRow('y', [], [], [])],
      context.device,
      { quick: true, filter: 'x.' },
      (result) => seen.push(result.name),
    );
    expect(seen).toEqual(['x.ok']);
    expect(report.results.map((r) => r.ratio)).toEqual([0.5]);
    expect(report.failures).toEqual([{ name: 'x.broken', message: 'no device' }]);
  });
});
