import { describe, expect, it } from 'vitest';
import { PageAllocator } from '../../src/space/allocator.ts';
import { createSharedState } from '../../src/space/shared-state.ts';
import { testRandom } from '../support/random.ts';

function fresh(pageCount: number): PageAllocator {
  const allocator = new PageAllocator(createSharedState(pageCount, 12));
  allocator.initialize();
  return allocator;
}

/** The model: one flag per page; first fit scans pages. */
class PageModel {
  readonly used: boolean[];
  constructor(pageCount: number) {
    this.used = Array.from({ length: pageCount }, (_, i) => i === 0);
  }
  take(count: number): number {
    let run = 0;
    for (let page = 0; page < this.used.length; page++) {
      run = this.used[page] ? 0 : run + 1;
      if (run === count) {
        const first = page - count + 1;
        for (let p = first; p <= page; p++) this.used[p] = true;
        return first;
      }
    }
    return -1;
  }
  give(first: number, count: number): void {
    for (let p = first; p < first + count; p++) this.used[p] = false;
  }
  /** Maximal runs of equal flags, as the allocator must report them. */
  runs(): { first: number; count: number; allocated: boolean }[] {
    const out: { first: number; count: number; allocated: boolean }[] = [];
    this.used.forEach((used, page) => {
      const last = out[out.length - 1];
      // Allocated runs are not merged by the allocator; compare free runs only.
      if (last && !used && !last.allocated) last.count++;
      else out.push({ first: page, count: 1, allocated: used });
    });
    return out.filter((run) => !run.allocated);
  }
}

describe('PageAllocator', () => {
  it('reserves page 0 and offers the rest as one free run', () => {
    const allocator = fresh(16);
    expect(allocator.runs()).toEqual([
      { first: 0, count: 1, allocated: true },
      { first: 1, count: 15, allocated: false },
    ]);
    expect(allocator.freePages()).toBe(15);
  });

  it('gives the first run that fits, and -1 when none does', () => {
    const allocator = fresh(16);
    expect(allocator.take(4)).toBe(1);
    expect(allocator.take(4)).toBe(5);
    expect(allocator.take(8)).toBe(-1);
    expect(allocator.take(7)).toBe(9);
    expect(allocator.largestFree()).toBe(0);
  });

  it('coalesces a freed run with free neighbours on both sides', () => {
    const allocator = fresh(16);
    const a = allocator.take(3);
    const b = allocator.take(3);
    const c = allocator.take(3);
    allocator.give(a, 3);
    allocator.give(c, 3);
    allocator.give(b, 3);
    expect(allocator.runs()).toEqual([
      { first: 0, count: 1, allocated: true },
      { first: 1, count: 15, allocated: false },
    ]);
  });

  it('frees whole pages from the middle of an allocation, like munmap', () => {
    const allocator = fresh(16);
    const a = allocator.take(10);
    allocator.give(a + 3, 2);
    expect(allocator.runs()).toEqual([
      { first: 0, count: 1, allocated: true },
      { first: 1, count: 3, allocated: true },
      { first: 4, count: 2, allocated: false },
      { first: 6, count: 5, allocated: true },
      { first: 11, count: 5, allocated: false },
    ]);
    expect(allocator.runAt(8)).toEqual({ first: 6, count: 5, allocated: true });
  });

  it('matches a page-by-page first-fit model under random churn, leaking nothing', () => {
    const random = testRandom('allocator churn');
    const pageCount = 512;
    const allocator = fresh(pageCount);
    const model = new PageModel(pageCount);
    const live: { first: number; count: number }[] = [];
    for (let step = 0; step < 20_000; step++) {
      if (live.length > 0 && random.next() < 0.5) {
        const index = random.int(live.length);
        const run = live[index]!;
        if (run.count > 2 && random.next() < 0.3) {
          // Free a piece from the middle; both ends stay allocated.
          const offset = 1 + random.int(run.count - 2);
          const count = 1 + random.int(run.count - offset - 1);
          allocator.give(run.first + offset, count);
          model.give(run.first + offset, count);
          live.splice(
            index,
            1,
            { first: run.first, count: offset },
            { first: run.first + offset + count, count: run.count - offset - count },
          );
        } else {
          allocator.give(run.first, run.count);
          model.give(run.first, run.count);
          live.splice(index, 1);
        }
      } else {
        const count = 1 + random.int(random.next() < 0.9 ? 8 : 64);
        const first = allocator.take(count);
        expect(first, `step ${step}: take(${count})`).toBe(model.take(count));
        if (first >= 0) live.push({ first, count });
      }
      if (step % 997 === 0)
        expect(allocator.runs().filter((r) => !r.allocated)).toEqual(model.runs());
    }
    for (const run of live) allocator.give(run.first, run.count);
    expect(allocator.runs()).toEqual([
      { first: 0, count: 1, allocated: true },
      { first: 1, count: pageCount - 1, allocated: false },
    ]);
    expect(allocator.freePages()).toBe(pageCount - 1);
  });
});
