import { describe, expect, it } from 'vitest';
import { chunkTable } from '../../src/gpu/kernel-copy-engine.ts';
import { coalesceSegments, splitSegments, transferShape } from '../../src/gpu/segments.ts';

describe('transfer segments', () => {
  it('coalesce only what is adjacent in both CPU address and frame', () => {
    expect(
      coalesceSegments([
        { va: 0, frameOffset: 100, len: 4 },
        { va: 4, frameOffset: 104, len: 8 },
        { va: 12, frameOffset: 200, len: 4 },
        { va: 20, frameOffset: 204, len: 4 },
      ]),
    ).toEqual([
      { va: 0, frameOffset: 100, len: 12 },
      { va: 12, frameOffset: 200, len: 4 },
      { va: 20, frameOffset: 204, len: 4 },
    ]);
  });

  it('split into batches of about equal bytes, cutting segments where a batch ends', () => {
    const batches = splitSegments(
      [
        { va: 0, frameOffset: 1000, len: 40 },
        { va: 100, frameOffset: 2000, len: 24 },
      ],
      4,
    );
    expect(batches).toEqual([
      [{ va: 0, frameOffset: 1000, len: 16 }],
      [{ va: 16, frameOffset: 1016, len: 16 }],
      [
        { va: 32, frameOffset: 1032, len: 8 },
        { va: 100, frameOffset: 2000, len: 8 },
      ],
      [{ va: 108, frameOffset: 2008, len: 16 }],
    ]);
    expect(splitSegments([{ va: 0, frameOffset: 0, len: 8 }], 4)).toEqual([
      [{ va: 0, frameOffset: 0, len: 4 }],
      [{ va: 4, frameOffset: 4, len: 4 }],
    ]);
  });

  it('tell few large runs from many scattered pieces', () => {
    const page = (i: number) => ({ va: i * 8192, frameOffset: i * 4096, len: 4096 });
    expect(transferShape([{ va: 0, frameOffset: 0, len: 64 << 20 }])).toBe('contiguous');
    expect(transferShape([page(0), page(1)])).toBe('contiguous');
    expect(transferShape(Array.from({ length: 100 }, (_, i) => page(i)))).toBe('scattered');
    // 1024 pages of 64 KiB with consecutive frames: one 64 MiB run.
    const adjacent = (i: number) => ({ va: i << 16, frameOffset: (i + 3) << 16, len: 1 << 16 });
    expect(transferShape(Array.from({ length: 1024 }, (_, i) => adjacent(i)))).toBe('contiguous');
    expect(transferShape(Array.from({ length: 8 }, (_, i) => ({ ...page(i), len: 1 << 20 })))).toBe(
      'contiguous',
    );
  });

  it('cut segments into chunk rows of at most 16 Ki words, packed in order', () => {
    const table = chunkTable(
      [
        { va: 0, frameOffset: 4096, len: 8 },
        { va: 64, frameOffset: 0, len: 4 * 40_000 },
      ],
      'scatter',
    );
    expect([...table]).toEqual([
      1024,
      0,
      2,
      0,
      0,
      2,
      16384,
      0,
      16384,
      16386,
      16384,
      0,
      32768,
      32770,
      40_000 - 32768,
      0,
    ]);
    const gather = chunkTable([{ va: 0, frameOffset: 4096, len: 8 }], 'gather');
    expect([...gather]).toEqual([0, 1024, 2, 0]);
  });
});
