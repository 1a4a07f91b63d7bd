/**
 * The page allocator: first-fit over runs of pages, with boundary tags in
 * shared memory (Knuth's), so any attached thread can allocate and free.
 *
 * The pages [0, pageCount) are cut into runs that cover them exactly. A run of
 * `n` pages starting at page `f` carries a tag at both ends: `runHead[f]` and
 * `runTail[f + n - 1]` hold `+n` for a free run and `-n` for an allocated one;
 * every other entry is 0. Free runs are always maximal (freeing coalesces
 * with free neighbours), so first-fit over runs is first-fit over pages, and
 * churn never leaks address space. Page 0 is an allocated run of its own that
 * is never freed: null pointers fault.
 *
 * Callers hold the space's allocator mutex around every method.
 */
import { invariant } from '../errors.ts';
import { HEADER_FREE_PAGES } from './shared-layout.ts';
import type { PageRun } from './page-run.ts';
import type { SharedState } from './shared-state.ts';

export class PageAllocator {
  private readonly head: Int32Array;
  private readonly tail: Int32Array;
  private readonly header: Int32Array;
  private readonly pageCount: number;

  constructor(state: SharedState) {
    this.head = state.runHead;
    this.tail = state.runTail;
    this.header = state.header;
    this.pageCount = state.pageCount;
  }

  /** Lays out a fresh space: page 0 reserved, the rest one free run. */
  initialize(): void {
    this.tag(0, 1, -1);
    this.tag(1, this.pageCount - 1, this.pageCount - 1);
    Atomics.store(this.header, HEADER_FREE_PAGES, this.pageCount - 1);
  }

  /** Takes the first free run of at least `count` pages; returns its first page, or -1 if none fits. */
  take(count: number): number {
    for (let page = 0; page < this.pageCount;) {
      const tag = Atomics.load(this.head, page);
      invariant(tag !== 0, `page ${page} starts no run`);
      if (tag >= count) {
        this.tag(page, count, -count);
        if (tag > count) this.tag(page + count, tag - count, tag - count);
        Atomics.sub(this.header, HEADER_FREE_PAGES, count);
        return page;
      }
      page += Math.abs(tag);
    }
    return -1;
  }

  /** The run that contains `page`, and whether it is allocated. */
  runAt(page: number): PageRun & { allocated: boolean } {
    let first = page;
    while (Atomics.load(this.head, first) === 0) first--;
    const tag = Atomics.load(this.head, first);
    const count = Math.abs(tag);
    invariant(first + count > page, `page ${page} lies in no run`);
    return { first, count, allocated: tag < 0 };
  }

  /**
   * Returns the pages [first, first + count) to the free runs, splitting the
   * allocated runs they lie in and coalescing with free neighbours. Every page
   * must be allocated.
   */
  give(first: number, count: number): void {
    const end = first + count;
    for (let page = first; page < end;) {
      const run = this.runAt(page);
      invariant(run.allocated, `page ${page} is free already`);
      const runEnd = run.first + run.count;
      const pieceEnd = Math.min(end, runEnd);
      if (run.first < page) this.tag(run.first, page - run.first, run.first - page);
      if (pieceEnd < runEnd) this.tag(pieceEnd, runEnd - pieceEnd, pieceEnd - runEnd);
      this.coalesce(page, pieceEnd - page);
      page = pieceEnd;
    }
    Atomics.add(this.header, HEADER_FREE_PAGES, count);
  }

  /**
   * Cuts the pages [first, first + count) out of the allocated runs they lie
   * in, as allocated runs of their own (one per run they lay in), so that
   * what is left of those runs can be freed by its own start while these
   * pages wait to be given back (a free the device delays). Every page must
   * be allocated.
   */
  isolate(first: number, count: number): void {
    const end = first + count;
    for (let page = first; page < end;) {
      const run = this.runAt(page);
      invariant(run.allocated, `page ${page} is free`);
      const runEnd = run.first + run.count;
      const pieceEnd = Math.min(end, runEnd);
      if (run.first < page) this.tag(run.first, page - run.first, run.first - page);
      if (pieceEnd < runEnd) this.tag(pieceEnd, runEnd - pieceEnd, pieceEnd - runEnd);
      this.tag(page, pieceEnd - page, page - pieceEnd);
      page = pieceEnd;
    }
  }

  /** Pages in free runs. */
  freePages(): number {
    return Atomics.load(this.header, HEADER_FREE_PAGES);
  }

  /** The longest free run, in pages. */
  largestFree(): number {
    let largest = 0;
    for (let page = 0; page < this.pageCount;) {
      const tag = Atomics.load(this.head, page);
      largest = Math.max(largest, tag);
      page += Math.abs(tag);
    }
    return largest;
  }

  /** Every run in address order, for tests and diagnostics. */
  runs(): (PageRun & { allocated: boolean })[] {
    const out: (PageRun & { allocated: boolean })[] = [];
    for (let page = 0; page < this.pageCount;) {
      const tag = Atomics.load(this.head, page);
      out.push({ first: page, count: Math.abs(tag), allocated: tag < 0 });
      page += Math.abs(tag);
    }
    return out;
  }

  /** Makes [first, first + count) a free run merged with its free neighbours. */
  private coalesce(first: number, count: number): void {
    let lo = first;
    let hi = first + count;
    Atomics.store(this.head, first, 0);
    Atomics.store(this.tail, hi - 1, 0);
    const left = lo > 0 ? Atomics.load(this.tail, lo - 1) : 0;
    if (left > 0) {
      Atomics.store(this.tail, lo - 1, 0);
      lo -= left;
    }
    const right = hi < this.pageCount ? Atomics.load(this.head, hi) : 0;
    if (right > 0) {
      Atomics.store(this.head, hi, 0);
      hi += right;
    }
    this.tag(lo, hi - lo, hi - lo);
  }

  private tag(first: number, count: number, tag: number): void {
    Atomics.store(this.head, first, tag);
    Atomics.store(this.tail, first + count - 1, tag);
  }
}
