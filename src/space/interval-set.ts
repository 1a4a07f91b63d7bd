/**
 * A fixed-capacity set of disjoint byte ranges, stored in shared memory: the
 * stale ranges of one page (the bytes its GPU frame lacks). Word `base` holds
 * the count (bits 0-7; bit 31 belongs to the caller's mutex), then `capacity`
 * pairs [start, end) follow, sorted, disjoint and never adjacent (adjacent
 * ranges merge, so one upload covers them).
 */
import { STALE_COUNT_MASK } from './shared-layout.ts';

export type ByteRange = readonly [start: number, end: number];

/** The ranges recorded at `base`, in ascending order. */
export function intervalsAt(words: Int32Array, base: number): ByteRange[] {
  const n = Atomics.load(words, base) & STALE_COUNT_MASK;
  const out: ByteRange[] = [];
  for (let i = 0; i < n; i++)
    out.push([Atomics.load(words, base + 1 + 2 * i), Atomics.load(words, base + 2 + 2 * i)]);
  return out;
}

/**
 * Adds [start, end) to the set at `base`, merging what overlaps or touches it.
 * Returns false, changing nothing, if the result would need more than
 * `capacity` ranges (the caller then treats the whole page as stale).
 */
export function insertInterval(
  words: Int32Array,
  base: number,
  capacity: number,
  start: number,
  end: number,
): boolean {
  const merged: [number, number][] = [];
  let lo = start;
  let hi = end;
  let placed = false;
  for (const [s, e] of intervalsAt(words, base)) {
    if (e < lo) merged.push([s, e]);
    else if (s > hi) {
      if (!placed) merged.push([lo, hi]);
      placed = true;
      merged.push([s, e]);
    } else {
      lo = Math.min(lo, s);
      hi = Math.max(hi, e);
    }
  }
  if (!placed) merged.push([lo, hi]);
  if (merged.length > capacity) return false;
  merged.forEach(([s, e], i) => {
    Atomics.store(words, base + 1 + 2 * i, s);
    Atomics.store(words, base + 2 + 2 * i, e);
  });
  const countWord = Atomics.load(words, base);
  Atomics.store(words, base, (countWord & ~STALE_COUNT_MASK) | merged.length);
  return true;
}

/** Empties the set at `base`, keeping the caller's mutex bit. */
export function clearIntervals(words: Int32Array, base: number): void {
  Atomics.store(words, base, Atomics.load(words, base) & ~STALE_COUNT_MASK);
}
