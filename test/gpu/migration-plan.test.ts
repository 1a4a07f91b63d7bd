// Migration planning, pure: which pages need frames, clears, uploads and readbacks.
import { describe, expect, it } from 'vitest';
import {
  bridgeGaps,
  framesNeeded,
  pagesBecomingGpu,
  pagesGpuOwned,
  pagesToReadBack,
  pagesUploaded,
  planResidency,
  runsToHoldForGpu,
  type PlanView,
} from '../../src/gpu/migration-plan.ts';
import type { Staleness } from '../../src/space/page-table.ts';
import { markBlocks, type StaleBlocks } from '../../src/space/stale-blocks.ts';
import {
  PTE_CPU,
  PTE_FRAME,
  PTE_GPU,
  PTE_GPU_DIRTY,
  PTE_SHARED,
  PTE_STALE_BLOCKS,
  PTE_STALE_WHOLE,
  PTE_UNMAPPED,
  PTE_ZERO,
} from '../../src/space/shared-layout.ts';

const PAGE = 4096;

/** The stale blocks of a page whose bytes `ranges` were written. */
function blocks(...ranges: (readonly [number, number])[]): StaleBlocks {
  const bits = new Int32Array(PAGE / 16 / 32);
  for (const [lo, hi] of ranges) markBlocks(bits, 0, lo, hi);
  return new Uint32Array(bits);
}

/** A page table of `ptes` (page -> pte) with stale blocks and frames as given. */
function view(
  ptes: Record<number, number>,
  stale: Record<number, Staleness> = {},
  framed: readonly number[] = [],
  wholePageShare = 0.5,
): PlanView {
  return {
    pageSize: PAGE,
    pte: (page) => ptes[page] ?? PTE_UNMAPPED,
    staleness: (page) => stale[page] ?? 'none',
    hasFrame: (page) => framed.includes(page),
    wholePageShare,
  };
}

describe('planResidency', () => {
  it('plans nothing for resident pages: shared and gpu pages need no fetch', () => {
    const plans = planResidency(view({ 1: PTE_SHARED, 2: PTE_GPU | PTE_GPU_DIRTY }), [
      { first: 1, count: 2 },
    ]);
    expect(plans).toEqual([]);
  });

  it('gives a zero page a cleared new frame and uploads nothing', () => {
    const plans = planResidency(view({ 3: PTE_ZERO }), [{ first: 3, count: 1 }]);
    expect(plans).toEqual([{ page: 3, newFrame: true, clear: true, upload: [] }]);
    expect(framesNeeded(plans)).toBe(1);
    expect(pagesUploaded(plans)).toBe(0);
  });

  it('skips the clear of a zero page that a device write covers whole', () => {
    const whole = planResidency(view({ 3: PTE_ZERO }), [{ first: 3, count: 1 }], {
      lo: 3 * PAGE,
      hi: 4 * PAGE,
    });
    const part = planResidency(view({ 3: PTE_ZERO }), [{ first: 3, count: 1 }], {
      lo: 3 * PAGE,
      hi: 4 * PAGE - 4,
    });
    expect(whole[0]?.clear).toBe(false);
    expect(part[0]?.clear).toBe(true);
  });

  it('uploads a whole cpu page that has no frame', () => {
    const plans = planResidency(view({ 1: PTE_CPU }), [{ first: 1, count: 1 }]);
    expect(plans).toEqual([{ page: 1, newFrame: true, clear: false, upload: [[0, PAGE]] }]);
  });

  it('uploads only the stale blocks of a cpu page with a frame', () => {
    const ptes = { 1: PTE_CPU | PTE_FRAME | PTE_STALE_BLOCKS };
    const stale = blocks([5, 9], [100, 104]);
    const plans = planResidency(view(ptes, { 1: stale }, [1]), [{ first: 1, count: 1 }]);
    expect(plans).toEqual([
      { page: 1, newFrame: false, clear: false, upload: [], blocks: { bits: stale, count: 2 } },
    ]);
    expect(Array.from(stale)[0]).toBe((1 << 0) | (1 << 6)); // blocks [0, 16) and [96, 112)
    expect(framesNeeded(plans)).toBe(0);
    expect(pagesUploaded(plans)).toBe(1);
  });

  it('uploads a page whole once its stale blocks reach the whole-page share', () => {
    const ptes = {
      1: PTE_CPU | PTE_FRAME | PTE_STALE_BLOCKS,
      2: PTE_CPU | PTE_FRAME | PTE_STALE_BLOCKS,
    };
    const stale = { 1: blocks([0, PAGE / 4]), 2: blocks([0, PAGE / 4 - 16]) };
    const plans = planResidency(view(ptes, stale, [1, 2], 0.25), [{ first: 1, count: 2 }]);
    expect(plans.map((plan) => [plan.upload, plan.blocks !== undefined])).toEqual([
      [[[0, PAGE]], false],
      [[], true],
    ]);
  });

  it('uploads the whole page of a frame that is stale as a whole', () => {
    const ptes = { 1: PTE_CPU | PTE_FRAME | PTE_STALE_WHOLE };
    const plans = planResidency(view(ptes, { 1: 'whole' }, [1]), [{ first: 1, count: 1 }]);
    expect(plans[0]?.upload).toEqual([[0, PAGE]]);
  });

  it('moves no bytes for a cpu page whose frame lacks nothing, but still plans its state change', () => {
    const plans = planResidency(view({ 1: PTE_CPU | PTE_FRAME }, {}, [1]), [
      { first: 1, count: 1 },
    ]);
    expect(plans).toEqual([{ page: 1, newFrame: false, clear: false, upload: [] }]);
    expect(pagesUploaded(plans)).toBe(0);
  });

  it('skips stale blocks that a device write overwrites whole, and keeps those it covers in part', () => {
    const ptes = { 1: PTE_CPU | PTE_FRAME | PTE_STALE_BLOCKS };
    const plans = planResidency(
      view(ptes, { 1: blocks([0, 64], [200, 300]) }, [1]),
      [{ first: 1, count: 1 }],
      { lo: PAGE, hi: PAGE + 250 },
    );
    // Blocks [0, 240) lie inside the write; [240, 256) and on do not.
    expect(plans[0]?.blocks).toEqual({ bits: blocks([240, 304]), count: 4 });
  });

  it('uploads a frameless page less the bytes a device write covers, widened to words', () => {
    const plans = planResidency(view({ 1: PTE_CPU }), [{ first: 1, count: 1 }], {
      lo: PAGE + 6,
      hi: PAGE + 101,
    });
    expect(plans[0]?.upload).toEqual([
      [0, 8],
      [100, PAGE],
    ]);
  });

  it('clips a device write to each page of a multi-page plan', () => {
    const ptes = { 1: PTE_ZERO, 2: PTE_ZERO, 3: PTE_ZERO };
    const plans = planResidency(view(ptes), [{ first: 1, count: 3 }], {
      lo: PAGE + 8,
      hi: 4 * PAGE,
    });
    expect(plans.map((plan) => plan.clear)).toEqual([true, false, false]);
    expect(framesNeeded(plans)).toBe(3);
  });
});

describe('pages that change state', () => {
  const ptes = {
    1: PTE_GPU | PTE_FRAME | PTE_GPU_DIRTY,
    2: PTE_GPU | PTE_FRAME,
    3: PTE_SHARED | PTE_FRAME,
    4: PTE_CPU,
    5: PTE_ZERO,
  };
  const runs = [{ first: 1, count: 5 }];

  it('reads back only GPU-dirty pages', () => {
    expect(pagesToReadBack(view(ptes), runs)).toEqual([1]);
  });

  it('makes GPU-owned pages shared on the way to the CPU, dirty or clean', () => {
    expect(pagesGpuOwned(view(ptes), runs)).toEqual([1, 2]);
  });

  it('takes every page that is not GPU-owned yet from the CPU on the way to the GPU', () => {
    expect(pagesBecomingGpu(view(ptes), runs)).toEqual([3, 4, 5]);
  });
});

describe('planning in proportion to the work', () => {
  const owned = PTE_GPU | PTE_FRAME;
  const ptes = { 1: owned, 2: PTE_CPU, 3: PTE_CPU, 4: owned, 5: PTE_SHARED, 6: owned, 7: PTE_ZERO };

  const unheld = { ...view(ptes), held: () => false };

  it('keeps only the pages not GPU-owned, and the asked-for address where a run starts', () => {
    expect(runsToHoldForGpu(unheld, [{ first: 1, count: 7, va: PAGE + 8 }])).toEqual([
      { first: 2, count: 2 },
      { first: 5, count: 1 },
      { first: 7, count: 1 },
    ]);
    expect(runsToHoldForGpu(unheld, [{ first: 2, count: 2, va: 2 * PAGE + 8 }])).toEqual([
      { first: 2, count: 2, va: 2 * PAGE + 8 },
    ]);
    expect(runsToHoldForGpu(unheld, [{ first: 1, count: 1 }])).toEqual([]);
  });

  it('keeps GPU-owned pages someone holds: the migration waits for them', () => {
    const held = { ...view(ptes), held: (page: number) => page === 4 };
    expect(runsToHoldForGpu(held, [{ first: 1, count: 7 }])).toEqual([
      { first: 2, count: 4 },
      { first: 7, count: 1 },
    ]);
  });

  it('bridges the smallest gaps until the runs fit', () => {
    const runs = [
      { first: 0, count: 1 },
      { first: 10, count: 1 },
      { first: 12, count: 2 },
      { first: 20, count: 1 },
    ];
    expect(bridgeGaps(runs, 4)).toEqual(runs);
    expect(bridgeGaps(runs, 2)).toEqual([
      { first: 0, count: 1 },
      { first: 10, count: 11 },
    ]);
    expect(bridgeGaps(runs, 1)).toEqual([{ first: 0, count: 21 }]);
  });
});
