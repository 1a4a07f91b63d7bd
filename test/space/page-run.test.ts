import { describe, expect, it } from 'vitest';
import { alignedBlockAround, coalesceRuns, runEnd, runsOf } from '../../src/space/page-run.ts';

describe('coalesceRuns', () => {
  it('sorts unsorted runs', () => {
    expect(
      coalesceRuns([
        { first: 20, count: 2 },
        { first: 5, count: 1 },
        { first: 10, count: 3 },
      ]),
    ).toEqual([
      { first: 5, count: 1 },
      { first: 10, count: 3 },
      { first: 20, count: 2 },
    ]);
  });

  it('merges overlapping runs into their union', () => {
    expect(
      coalesceRuns([
        { first: 4, count: 4 },
        { first: 6, count: 5 },
      ]),
    ).toEqual([{ first: 4, count: 7 }]);
  });

  it('merges runs that touch (end of one == first of the next), but not runs one page apart', () => {
    expect(
      coalesceRuns([
        { first: 3, count: 2 },
        { first: 1, count: 2 },
        { first: 5, count: 1 },
        { first: 7, count: 1 },
      ]),
    ).toEqual([
      { first: 1, count: 5 },
      { first: 7, count: 1 },
    ]);
  });

  it('absorbs a run contained in another, and repeats of one run', () => {
    expect(
      coalesceRuns([
        { first: 2, count: 10 },
        { first: 4, count: 2 },
        { first: 2, count: 10 },
        { first: 11, count: 1 },
      ]),
    ).toEqual([{ first: 2, count: 10 }]);
  });

  it('gives nothing for nothing, and drops empty runs', () => {
    expect(coalesceRuns([])).toEqual([]);
    expect(coalesceRuns([{ first: 3, count: 0 }])).toEqual([]);
    expect(
      coalesceRuns([
        { first: 9, count: 0 },
        { first: 1, count: 1 },
      ]),
    ).toEqual([{ first: 1, count: 1 }]);
  });

  it('takes any iterable and leaves its input as it was', () => {
    const input = [
      { first: 8, count: 1 },
      { first: 7, count: 1 },
    ];
    const copy = structuredClone(input);
    expect(coalesceRuns(new Set(input))).toEqual([{ first: 7, count: 2 }]);
    expect(input).toEqual(copy);
  });
});

describe('runsOf', () => {
  it('turns pages in any order, with repeats, into coalesced runs', () => {
    expect(runsOf([9, 3, 4, 3, 5, 12, 9, 11])).toEqual([
      { first: 3, count: 3 },
      { first: 9, count: 1 },
      { first: 11, count: 2 },
    ]);
    expect(runsOf([])).toEqual([]);
    expect(runsOf(new Set([0]))).toEqual([{ first: 0, count: 1 }]);
  });
});

describe('runEnd', () => {
  it('is the page after the last one (exclusive)', () => {
    expect(runEnd({ first: 4, count: 3 })).toBe(7);
  });
});

describe('alignedBlockAround', () => {
  it('widens a range outward to whole aligned blocks', () => {
    expect(alignedBlockAround(5, 6, 4, { first: 0, count: 100 })).toEqual({ first: 4, count: 4 });
    expect(alignedBlockAround(3, 9, 4, { first: 0, count: 100 })).toEqual({ first: 0, count: 12 });
    // Already aligned: unchanged.
    expect(alignedBlockAround(8, 12, 4, { first: 0, count: 100 })).toEqual({ first: 8, count: 4 });
  });

  it('clips the blocks to the allocation at either end', () => {
    const allocation = { first: 6, count: 5 }; // pages 6-10
    expect(alignedBlockAround(7, 8, 4, allocation)).toEqual({ first: 6, count: 2 });
    expect(alignedBlockAround(9, 10, 4, allocation)).toEqual({ first: 8, count: 3 });
    expect(alignedBlockAround(6, 11, 64, allocation)).toEqual(allocation);
  });
});
