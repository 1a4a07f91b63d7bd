/**
 * The stale bits of pages' frames: one bit per STALE_BLOCK_BYTES block of a
 * page, set when a CPU write makes the block's bytes newer than the frame's.
 * Writers set bits with `Atomics.or` and never wait, so writers on many
 * threads mark the same page at once without a lock; bits are read and
 * cleared only under an exclusive hold of the page (no writer then), when
 * an upload brings the frame up to date.
 */
import { STALE_BLOCK_BYTES, STALE_BLOCK_SHIFT } from './shared-layout.ts';

/** A page's stale blocks: bit b of word w set = block 32w + b is stale. */
export type StaleBlocks = Uint32Array;

/** Marks the blocks that bytes [lo, hi) of a page touch (lo < hi), in the page's words from `base`. */
export function markBlocks(bits: Int32Array, base: number, lo: number, hi: number): void {
  const first = lo >>> STALE_BLOCK_SHIFT;
  const last = (hi - 1) >>> STALE_BLOCK_SHIFT;
  for (let word = first >>> 5; word <= last >>> 5; word++) {
    const from = Math.max(first, word << 5) & 31;
    const to = Math.min(last, (word << 5) + 31) & 31;
    const mask = (((2 ** (to - from + 1) - 1) >>> 0) << from) | 0;
    // Most writes land in blocks already marked: a load is cheaper than a locked or.
    if ((Atomics.load(bits, base + word) & mask) !== mask) Atomics.or(bits, base + word, mask);
  }
}

/** A copy of the page's `count` words from `base`. Under an exclusive hold. */
export function readBlocks(bits: Int32Array, base: number, count: number): StaleBlocks {
  return new Uint32Array(bits.subarray(base, base + count));
}

/** Clears the page's `count` words from `base`. Under an exclusive hold. */
export function clearBlocks(bits: Int32Array, base: number, count: number): void {
  // Plain stores: the hold's release (an atomic) publishes them.
  bits.fill(0, base, base + count);
}

/** Blocks marked in `blocks`. */
export function countBlocks(blocks: StaleBlocks): number {
  let count = 0;
  for (let word = 0; word < blocks.length; word++) {
    const bits = blocks[word]!;
    if (bits !== 0) count += popcount(bits);
  }
  return count;
}

/** Clears the blocks that lie wholly inside page-relative bytes [lo, hi) (a write that covers them). */
export function withoutCovered(blocks: StaleBlocks, lo: number, hi: number): StaleBlocks {
  const first = Math.ceil(lo / STALE_BLOCK_BYTES);
  const end = Math.floor(hi / STALE_BLOCK_BYTES);
  const out = blocks.slice();
  for (let block = first; block < end; block++) out[block >>> 5]! &= ~(1 << (block & 31));
  return out;
}

/** The runs of consecutive marked blocks, as page-relative byte ranges [lo, hi), ascending. */
export function blockRuns(blocks: StaleBlocks): [number, number][] {
  const runs: [number, number][] = [];
  forEachRun(blocks, (lo, hi) => runs.push([lo, hi]));
  return runs;
}

/** Calls `visit(lo, hi)` for each run of consecutive marked blocks (page-relative bytes), ascending. */
export function forEachRun(blocks: StaleBlocks, visit: (lo: number, hi: number) => void): void {
  let start = -1;
  const total = blocks.length * 32;
  for (let block = 0; block <= total; block++) {
    const word = blocks[block >>> 5] ?? 0;
    if (word === 0 && (block & 31) === 0 && start < 0) {
      block += 31; // a clear word: skip it whole
      continue;
    }
    const marked = block < total && (word & (1 << (block & 31))) !== 0;
    if (marked && start < 0) start = block;
    else if (!marked && start >= 0) {
      visit(start * STALE_BLOCK_BYTES, block * STALE_BLOCK_BYTES);
      start = -1;
    }
  }
}

function popcount(word: number): number {
  let v = word - ((word >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (((v + (v >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}
