// Stale blocks, pure: marking the blocks a write touches, reading them back as
// runs, what a covering device write leaves, and the packing of the block scatter.
import { describe, expect, it } from 'vitest';
import { packBlocks } from '../../src/gpu/block-scatter.ts';
import {
  blockRuns,
  countBlocks,
  markBlocks,
  withoutCovered,
} from '../../src/space/stale-blocks.ts';

const WORDS = 8; // a 4 KiB page: 256 blocks

function marked(...ranges: (readonly [number, number])[]): Uint32Array {
  const bits = new Int32Array(WORDS + 2);
  for (const [lo, hi] of ranges) markBlocks(bits, 1, lo, hi); // at an offset, like a page's words
  expect(bits[0]).toBe(0);
  expect(bits[WORDS + 1]).toBe(0);
  return new Uint32Array(bits.subarray(1, 1 + WORDS));
}

describe('stale blocks', () => {
  it('marks every block a write touches, rounding out to 16 bytes', () => {
    expect(blockRuns(marked([0, 1]))).toEqual([[0, 16]]);
    expect(blockRuns(marked([15, 17]))).toEqual([[0, 32]]);
    expect(blockRuns(marked([100, 104], [4080, 4096]))).toEqual([
      [96, 112],
      [4080, 4096],
    ]);
  });

  it('marks runs across word boundaries, up to a whole word of blocks', () => {
    // Blocks 30-33 straddle words 0 and 1; blocks 64-95 are all of word 2.
    const blocks = marked([30 * 16, 34 * 16], [64 * 16, 96 * 16]);
    expect(blockRuns(blocks)).toEqual([
      [480, 544],
      [1024, 1536],
    ]);
    expect(blocks[2]).toBe(0xffffffff);
    expect(countBlocks(blocks)).toBe(4 + 32);
  });

  it('merges adjacent writes into one run, each block counted once', () => {
    const blocks = marked([32, 48], [48, 64], [0, 4], [4095, 4096]);
    expect(blockRuns(blocks)).toEqual([
      [0, 16],
      [32, 64],
      [4080, 4096],
    ]);
    expect(countBlocks(blocks)).toBe(4);
  });

  it('drops only the blocks a covering write holds whole', () => {
    const blocks = marked([0, 4096]);
    expect(blockRuns(withoutCovered(blocks, 8, 3999))).toEqual([
      [0, 16],
      [3984, 4096],
    ]);
    expect(countBlocks(blocks)).toBe(256); // the input is left alone
  });
});

describe('block packing', () => {
  it('packs each marked block with its frame block index, in page then block order', () => {
    const memory = Int32Array.from({ length: 2048 }, (_, i) => i); // two 4 KiB pages
    const second = marked([16, 32]);
    const first = marked([0, 4], [4080, 4096]);
    const out = { packed: new Int32Array(12), table: new Uint32Array(3) };
    const count = packBlocks(
      [
        { va: 4096, frameOffset: 0, blocks: second, count: 1 },
        { va: 0, frameOffset: 8192, blocks: first, count: 2 },
      ],
      memory,
      out,
    );
    expect(count).toBe(3);
    expect(Array.from(out.table)).toEqual([1, 512, 512 + 255]);
    expect(Array.from(out.packed)).toEqual([
      ...[1028, 1029, 1030, 1031],
      ...[0, 1, 2, 3],
      ...[1020, 1021, 1022, 1023],
    ]);
  });
});
