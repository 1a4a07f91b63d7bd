import { describe, expect, it } from 'vitest';
import { densityPrefetch, GPU_PREFETCH_BYTES } from '../../src/kernels/density-prefetch.ts';

const PAGE = 64 << 10; // 32 pages a 2 MiB block

/** A view with `resident` pages and one allocation [first, first + count). */
function view(resident: Iterable<number>, first = 0, count = 1024) {
  const set = new Set(resident);
  return {
    pageSize: PAGE,
    resident: (page: number) => set.has(page),
    allocationRun: (page: number) =>
      page >= first && page < first + count ? { first, count } : undefined,
  };
}

const pages = (map: Map<number, number>) => [...map.keys()].sort((a, b) => a - b);
const range = (lo: number, hi: number) => Array.from({ length: hi - lo }, (_, i) => lo + i);

describe('density prefetch', () => {
  it('fetches nothing more for a lone fault in an empty region', () => {
    expect(GPU_PREFETCH_BYTES / PAGE).toBe(32);
    expect(densityPrefetch(view([]), [40], new Set([40])).size).toBe(0);
  });

  it('takes the largest aligned block more than half of which is resident or faulting', () => {
    // Block [32, 40): 40 faults, 32..35 resident: 5 of 8. Block [32, 48): 5 of 16, not enough.
    const around = densityPrefetch(view(range(32, 36)), [36], new Set([36]));
    expect(pages(around)).toEqual([32, 33, 34, 35, 37, 38, 39]);
    expect(around.get(37)).toBe(1);
    expect(around.get(32)).toBe(4);
    // Faulting pages count as dense too, and are not in the result.
    const faulting = new Set([36, 37, 38]);
    expect(pages(densityPrefetch(view([32, 33]), [...faulting], faulting))).toEqual([
      32, 33, 34, 35, 39,
    ]);
  });

  it('reaches at most 2 MiB, within the allocation', () => {
    const all = densityPrefetch(view(range(0, 1024)), [70], new Set([70]));
    expect(pages(all)).toEqual(range(64, 96).filter((page) => page !== 70));
    // The allocation [66, 80) clips the 2 MiB block to its 14 pages, all dense.
    const clipped = densityPrefetch(view(range(66, 80), 66, 14), [70], new Set([70]));
    expect(pages(clipped)).toEqual(range(66, 80).filter((page) => page !== 70));
  });

  it('ignores a fault outside every allocation', () => {
    expect(densityPrefetch(view(range(0, 32), 100, 10), [3], new Set([3])).size).toBe(0);
  });
});
