import { describe, expect, it } from 'vitest';
import { runSuite, suiteRows } from '../../src/bench/suite.ts';

describe('the benchmark suite on real WebGPU', () => {
  it('names every canonical row of issues 3, 4 and 5', () => {
    const names = suiteRows.map((row) => row.name);
    for (const name of [
      'migrate.h2d.auto',
      'migrate.d2h.auto',
      'migrate.scattered.auto',
      'update.dirty.1pct',
      'memcpy.ceiling',
      'kernel.translated',
      'kernel.translated.perelement',
      'kernel.faultmode',
      'iterative.webhmm',
      'fault.cpu.p50',
      'fault.cpu.p99',
      'fault.cpu.throughput',
    ])
      expect(names).toContain(name);
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
