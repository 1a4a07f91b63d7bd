import { describe, expect, it } from 'vitest';
import { runSuite, suiteRows } from '../../src/bench/suite.ts';

describe('the benchmark suite on real WebGPU', () => {
  it('names every canonical row of issues 3, 4, 5, 10 and 11 so far', () => {
    const names = suiteRows.map((row) => row.name);
    for (const name of [
      'migrate.h2d.auto',
      'migrate.d2h.auto',
      'migrate.scattered.auto',
      'update.dirty.1pct',
      'update.scattered.1pct',
      'memcpy.ceiling',
      'kernel.translated',
      'kernel.translated.perelement',
      'kernel.faultmode',
      'kernel.run.overhead',
      'kernel.chain',
      'iterative.webhmm',
      'fault.cpu.p50',
      'fault.cpu.p99',
      'fault.cpu.throughput',
      'oversub.stream',
      'oversub.random',
      'prefetch.stream',
      'oversub.discard',
    ])
      expect(names).toContain(name);
  });

  it('runs the oversubscription rows: data of 1.5x-4x the budget streamed with evictions, random faults beyond it', async () => {
    const report = await runSuite({ quick: true, filter: 'oversub' });
    expect(report.failures).toEqual([]);
    const byName = new Map(report.results.map((result) => [result.name, result]));
    for (const [name, factor] of [
      ['oversub.stream', 2],
      ['oversub.stream.1.5x', 1.5],
      ['oversub.stream.4x', 4],
    ] as const) {
      const result = byName.get(name);
      expect(result).toMatchObject({ unit: 'GB/s', better: 'higher' });
      expect(result?.notes).toMatchObject({ factor, budgetMiB: 16, dataMiB: 16 * factor });
      // Every pass evicts what came before and writes the dirty chunks back.
      expect(Number(result?.notes?.['evictionsPerPass'])).toBeGreaterThan(0);
      expect(Number(result?.notes?.['writtenBackMiBPerPass'])).toBeGreaterThan(0);
      expect(result!.value).toBeGreaterThan(0);
    }
    const random = byName.get('oversub.random');
    expect(random).toMatchObject({ unit: 'ms', better: 'lower' });
    expect(Number(random?.notes?.['evictions'])).toBeGreaterThan(0);
  });

  it('runs prefetch.stream: each chunk prefetched as the run before it is called, its pages then hits', async () => {
    const report = await runSuite({ quick: true, filter: 'prefetch.stream' });
    expect(report.failures).toEqual([]);
    const result = report.results.find((row) => row.name === 'prefetch.stream');
    expect(result).toMatchObject({ unit: 'ms', better: 'lower' });
    expect(result?.notes).toMatchObject({ budgetMiB: 16, dataMiB: 32, ignoredHints: 0 });
    const { hidden, residentMs, prefetchHits, evictions } = result!.notes as Record<string, number>;
    // A share of the transfer time: finite (it may be below 0 or above 1 in a noisy quick run).
    expect(Number.isFinite(hidden)).toBe(true);
    expect(residentMs).toBeGreaterThan(0);
    expect(prefetchHits).toBeGreaterThan(0);
    expect(evictions).toBeGreaterThan(0);
  });

  it('runs oversub.discard: scratch chunks discarded after their runs are never written back', async () => {
    const report = await runSuite({ quick: true, filter: 'oversub.discard' });
    expect(report.failures).toEqual([]);
    const result = report.results.find((row) => row.name === 'oversub.discard');
    expect(result).toMatchObject({ unit: 'ms', better: 'lower' });
    expect(result?.notes).toMatchObject({ budgetMiB: 16, dataMiB: 32, pagesWrittenBackPerPass: 0 });
    expect(Number(result?.notes?.['baselinePagesWrittenBackPerPass'])).toBeGreaterThan(0);
  });

  it('runs the run-overhead rows: a run and a chain of 20, each against plain dispatches', async () => {
    const reports = [
      await runSuite({ quick: true, filter: 'kernel.run.overhead' }),
      await runSuite({ quick: true, filter: 'kernel.chain' }),
    ];
    expect(reports.flatMap((report) => report.failures)).toEqual([]);
    const results = reports.flatMap((report) => report.results);
    const byName = new Map(results.map((result) => [result.name, result]));
    expect(byName.get('kernel.run.overhead')).toMatchObject({ unit: 'ms', better: 'lower' });
    expect(byName.get('kernel.chain')?.notes).toEqual({ runs: 20 });
    for (const name of ['kernel.run.overhead', 'kernel.chain']) {
      expect(byName.get(name)!.value).toBeGreaterThan(0);
      expect(byName.get(name)!.baseline).toBeGreaterThan(0);
    }
  });

  it('runs a quick row and reports it in the SPEC §5 shape with its environment', async () => {
    const report = await runSuite({ quick: true, filter: 'update.dirty.1pct' });
    expect(report.failures).toEqual([]);
    expect(report.env.quick).toBe(true);
    expect(report.env.limits['maxBufferSize']).toBeGreaterThan(0);
    expect(report.results).toHaveLength(1);
    const [result] = report.results;
    expect(result).toMatchObject({
      name: 'update.dirty.1pct',
      unit: 'ms',
      better: 'lower',
      trials: 3,
    });
    expect(result!.value).toBeGreaterThan(0);
    expect(result!.baseline).toBeGreaterThan(0);
    expect(result!.ratio).toBeCloseTo(result!.value / result!.baseline, 10);
  });
});
