/** The statistics of docs/benchmarks.md (medians, spread, rates) and the random picks rows make. */

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2
    ? (sorted[middle] ?? 0)
    : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

/** (max - min) / median. */
export function spread(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  return (Math.max(...values) - Math.min(...values)) / median(values);
}

/** Gigabytes (10^9 bytes) per second for `bytes` moved in `ms`. */
export function gbPerSecond(bytes: number, ms: number): number {
  return bytes / 1e6 / ms;
}

/** `count` distinct random integers below `n`, ascending. */
export function randomDistinct(n: number, count: number): number[] {
  const picked = new Set<number>();
  while (picked.size < count) picked.add(Math.floor(Math.random() * n));
  return [...picked].sort((a, b) => a - b);
}
