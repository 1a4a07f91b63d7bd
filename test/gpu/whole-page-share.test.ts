// When a page's stale blocks go up whole: the calibrated share, and its fallback.
import { describe, expect, it } from 'vitest';
import { UNCALIBRATED_WHOLE_PAGE_SHARE, wholePageShare } from '../../src/gpu/calibrate-blocks.ts';

const rates = (marginalGbPerSecond: number) => ({
  gbPerSecond: { buffer: 0.01, kernel: 0.05 },
  marginalGbPerSecond,
});

describe('wholePageShare', () => {
  it('is the marginal block rate over the scattered-page rate, at most 1', () => {
    expect(wholePageShare(rates(0.2), 0.8)).toBe(0.25);
    expect(wholePageShare(rates(3), 0.8)).toBe(1);
  });

  it('falls back to half a page when a trial gave no finite positive share', () => {
    for (const [marginal, scattered] of [
      [Infinity, Infinity], // both trials under the timer's resolution
      [1, Infinity],
      [0, 1],
      [Number.NaN, 1],
    ]) {
      expect(wholePageShare(rates(marginal!), scattered!)).toBe(UNCALIBRATED_WHOLE_PAGE_SHARE);
    }
  });
});
