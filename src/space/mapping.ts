/**
 * Mapping: `alloc`, `free` and `protect`, the calls that change what is
 * mapped (Linux's mmap, munmap and mprotect), for one thread's instance of
 * the space.
 *
 * Guarantees:
 * - `alloc` maps pages in state `zero` in the same critical section that takes
 *   them from the allocator, so ending the thread can never leak them.
 * - `free` makes the range unmapped at once for the CPU, under a hold that
 *   excludes every CPU holder: the CPU accesses and other threads' scopes
 *   that began before it finish first (on a thread that may not block it
 *   throws instead, having changed nothing). It never waits for the device
 *   (a kernel run, a migration): a page the device holds is unmapped at once
 *   too (state, generation and sequence move on, the 'free' notice goes out)
 *   and marked pending; the device's last release of it zeroes it and gives
 *   it back to the allocator (`finishDeferred`, called through the page
 *   table). It re-checks under the hold that every page is still mapped and
 *   of the generation it found, so a double free, or a free racing another,
 *   is refused. Pages are zeroed before the allocator can hand them out
 *   again, and a pending page is cut out of its allocation at once, so the
 *   rest of the allocation can be freed meanwhile.
 * - `protect` changes protection only, never state or bytes, under a hold
 *   that excludes frees (so the range it checked is the range it changes);
 *   it applies to accesses that start after it: it waits for no access,
 *   scope or device hold. Every page must be mapped, or nothing changes.
 * - `discard` (its whole pages: `zeroHeldPages`) drops contents under a hold
 *   that excludes every holder, the device's included: runs and migrations
 *   holding the pages finish first. Each page becomes `zero` with its
 *   protection and no frame; the mirror frees the frame on the notice, with
 *   no write-back.
 * - Each call announces its invalidation ('free', 'protect', 'discard') once
 *   its holds are released.
 * - One call waits at most `faultTimeoutMs` in all (one WaitBudget).
 */
import { nonNegativeInteger } from '../arguments.ts';
import { AccessError, InvalidArgumentError, OutOfMemoryError } from '../errors.ts';
import type { PageAllocator } from './allocator.ts';
import type { Access, CpuAccess } from './cpu-access.ts';
import { lockMutex, unlockMutex } from './mutex.ts';
import { freeMayFinish, hasDeviceHolds } from './page-lock.ts';
import { runsOf, type PageRun } from './page-run.ts';
import type { Hold, PageTable } from './page-table.ts';
import {
  FREED_PTE,
  FREE_PENDING_PTE,
  assertAccess,
  isFreePending,
  isFreed,
  isMapped,
  withProt,
} from './pte.ts';
import { HEADER_ALLOC_MUTEX, PTE_ZERO } from './shared-layout.ts';
import { WaitBudget, type WaitLimits } from './waiting.ts';

export interface MappingParts {
  readonly table: PageTable;
  readonly allocator: PageAllocator;
  readonly cpu: CpuAccess;
  readonly limits: WaitLimits;
  /** The space's CPU memory: pending frees zero it. */
  readonly memory: SharedArrayBuffer;
}

export class Mapping {
  private readonly table: PageTable;
  private readonly allocator: PageAllocator;
  private readonly cpu: CpuAccess;
  private readonly limits: WaitLimits;
  private readonly bytes: Uint8Array;
  private readonly pageSize: number;
  /** Bytes in the space. */
  private readonly size: number;

  constructor(parts: MappingParts) {
    this.table = parts.table;
    this.allocator = parts.allocator;
    this.cpu = parts.cpu;
    this.limits = parts.limits;
    this.bytes = new Uint8Array(parts.memory);
    this.pageSize = parts.table.pageSize;
    this.size = parts.table.pageCount * parts.table.pageSize;
  }

  /**
   * Maps `bytes` (a positive integer, checked by the caller) rounded up to
   * whole pages, first fit, with protection `prot` (a PROT_* code); returns the VA.
   * @throws OutOfMemoryError 'address-space' naming `bytes` and the largest free run
   */
  alloc(bytes: number, prot: number): number {
    const count = Math.ceil(bytes / this.pageSize);
    let taken = this.take(count, prot);
    // Frees the device delayed whose last release could not finish them: finish them now.
    if (taken.first < 0 && this.reapDeferred()) taken = this.take(count, prot);
    if (taken.first < 0) {
      throw new OutOfMemoryError(
        'address-space',
        bytes,
        taken.largest * this.pageSize,
        'free memory or create a larger space',
      );
    }
    return taken.first * this.pageSize;
  }

  /** First fit of `count` pages, mapped `zero` with `prot`; first -1 and the largest free run if none fits. */
  private take(count: number, prot: number): { first: number; largest: number } {
    const pte = withProt(PTE_ZERO, prot);
    const shared = this.table.shared;
    let first = -1;
    let largest = 0;
    // One critical section: pages taken from the allocator are mapped before this thread could be ended.
    this.table.critical(() => {
      this.withAllocator(new WaitBudget(this.limits, 0), () => {
        first = count < shared.pageCount ? this.allocator.take(count) : -1;
        if (first < 0) largest = this.allocator.largestFree();
      });
      for (let page = first; page >= 0 && page < first + count; page++) {
        Atomics.store(shared.pte, page, pte);
      }
    });
    return { first, largest };
  }

  /** See `AddressSpace.free`. */
  free(va: number, len?: number): void {
    nonNegativeInteger('va', va);
    this.assertPageAligned('free', va);
    if (va >= this.size)
      throw new AccessError(va, 'out-of-range', `the space ends at 0x${this.size.toString(16)}`);
    const first = va / this.pageSize;
    let count: number;
    let generations: Int32Array | undefined;
    if (len === undefined) {
      count = this.allocationAt(first, va);
      generations = this.table.shared.gen.slice(first, first + count);
    } else {
      count = this.cpu.span(va, len).count;
    }
    const hold: Hold = { first, count, kind: 'exclusive' };
    this.cpu.assertNotInScope(hold, va);
    const budget = new WaitBudget(this.limits, va);
    this.table.critical(() => this.freeHeld(hold, va, generations, budget));
    this.cpu.announce();
  }

  /** See `AddressSpace.protect`; `prot` is a PROT_* code, checked by the caller. */
  protect(va: number, len: number, prot: number): void {
    const span = this.cpu.span(va, len);
    this.assertPageAligned('protect', va);
    this.cpu.assertNotInScope(span, va);
    const hold: Hold = { ...span, kind: 'protect' };
    this.table.critical(() => {
      // Held against frees: every page checked is the page changed.
      const mapped = () => this.assertMapped(span, va);
      this.cpu.holdPagesSync([hold], va, new WaitBudget(this.limits, va), false, mapped);
      try {
        this.assertMapped(span, va);
        for (let page = span.first; page < span.first + span.count; page++) {
          this.table.invalidate(page);
          this.table.updatePte(page, (pte) => withProt(pte, prot));
        }
      } finally {
        this.table.releaseHolds([hold]);
      }
    });
    this.cpu.invalidated({ va, len: span.count * this.pageSize, cause: 'protect' });
    this.cpu.announce();
  }

  /**
   * `AddressSpace.discard`: the partial ends (GPU-dirty ones brought back
   * first) and the whole pages (held against every holder, CPU and device,
   * never brought back) are held together, all or none, within one wait
   * budget, so a call that fails waiting changes nothing; then the whole
   * pages become `zero` and the ends are zeroed in place.
   */
  discard(va: number, len: number): void {
    const span = this.cpu.span(va, len);
    const ps = this.pageSize;
    const [lo, hi] = [Math.ceil(va / ps), Math.floor((va + len) / ps)];
    this.cpu.assertNotInScope(span, va);
    this.assertWritable(span, va); // the whole range first: a refusal changes nothing
    const ends: Access[] = [];
    if (lo > hi)
      ends.push(this.cpu.plain(va, len, 'write')); // inside one page
    else {
      if (va < lo * ps) ends.push(this.cpu.plain(va, lo * ps - va, 'write'));
      if (va + len > hi * ps) ends.push(this.cpu.plain(hi * ps, va + len - hi * ps, 'write'));
    }
    const whole = { first: lo, count: Math.max(0, hi - lo) };
    const holds: Hold[] = whole.count > 0 ? [{ ...whole, kind: 'scope-write' }] : [];
    const check = () => this.assertWritable(whole, va);
    const zero = () => {
      this.zeroHeldPages(whole);
      for (const end of ends) this.bytes.fill(0, end.va, end.va + end.len);
    };
    this.cpu.runSync(ends, zero, { holds, check });
  }

  /** The whole pages of a discard, held: each becomes `zero`; the caller announces the notice. */
  private zeroHeldPages(span: PageRun): void {
    if (span.count === 0) return;
    for (let page = span.first; page < span.first + span.count; page++) this.table.zeroPage(page);
    const start = span.first * this.pageSize;
    this.cpu.invalidated({ va: start, len: span.count * this.pageSize, cause: 'discard' });
  }

  /** @throws AccessError at the first byte from `va` of the pages of `span` a CPU write may not touch */
  assertWritable(span: PageRun, va: number): void {
    for (let page = span.first; page < span.first + span.count; page++) {
      assertAccess(this.table.pte(page), 'write', Math.max(va, page * this.pageSize));
    }
  }

  /** The allocation (run of allocated pages) that contains `page`, or undefined if it is free. */
  allocationRun(page: number): PageRun | undefined {
    let run: (PageRun & { allocated: boolean }) | undefined;
    const budget = new WaitBudget(this.limits, page * this.pageSize);
    this.withAllocator(budget, () => (run = this.allocator.runAt(page)));
    return run?.allocated ? { first: run.first, count: run.count } : undefined;
  }

  /**
   * Finishes the frees deferred on `pages` (those still pending; the page
   * table calls this when the device's last hold of a page is released):
   * zeroes them and gives them back to the allocator. Where the allocator
   * cannot be had now, they stay pending for `alloc` to finish.
   */
  finishDeferred(pages: readonly number[]): void {
    const claimed = pages.filter((page) => this.claimPending(page));
    if (claimed.length === 0) return;
    for (const page of claimed) {
      this.bytes.fill(0, page * this.pageSize, (page + 1) * this.pageSize);
    }
    // Spin only: this runs inside the releaser's critical section, which a
    // wait would leave with its journal not yet updated (thread-record.ts).
    const budget = new WaitBudget(this.limits, (claimed[0] ?? 0) * this.pageSize);
    this.giveBack(claimed, budget, false);
  }

  /** Clears the page's pending mark, if it has one, and makes it freed; whether it did. */
  private claimPending(page: number): boolean {
    let claimed = false;
    this.table.updatePte(page, (pte) => {
      claimed = isFreePending(pte);
      // Whatever the device left in the word, the page is freed.
      return claimed ? FREED_PTE : pte;
    });
    return claimed;
  }

  /** Finishes every deferred free the device no longer holds; whether there was one. */
  private reapDeferred(): boolean {
    const lock = this.table.shared.lock;
    const pages: number[] = [];
    for (let page = 1; page < this.table.pageCount; page++) {
      if (isFreePending(this.table.pte(page)) && freeMayFinish(Atomics.load(lock, page))) {
        pages.push(page);
      }
    }
    this.finishDeferred(pages);
    return pages.length > 0;
  }

  /**
   * Holds the pages of `hold` against every CPU holder, discards them, and
   * returns them to the allocator (one critical section); pages the device
   * holds are discarded but left pending (see the module doc).
   */
  private freeHeld(
    hold: Hold,
    va: number,
    generations: Int32Array | undefined,
    budget: WaitBudget,
  ): void {
    const { first, count } = hold;
    const allocated = () => this.assertStillAllocated(hold, va, generations);
    this.cpu.holdPagesSync([hold], va, budget, false, allocated);
    const now: number[] = [];
    try {
      allocated();
      // No device hold can join while this one is held: they can only go.
      const lock = this.table.shared.lock;
      const pending = new Set<number>();
      for (let page = first; page < first + count; page++) {
        if (hasDeviceHolds(Atomics.load(lock, page))) pending.add(page);
      }
      if (pending.size > 0) {
        // Before anything changes: if the allocator cannot be had, nothing has.
        this.withAllocator(budget, () => {
          for (const run of runsOf([...pending])) this.allocator.isolate(run.first, run.count);
        });
      }
      for (let page = first; page < first + count; page++) {
        this.table.discardPage(page, pending.has(page));
        if (!pending.has(page)) now.push(page);
      }
      this.cpu.invalidated({ va, len: count * this.pageSize, cause: 'free' });
    } finally {
      // Pending pages the device has let go of meanwhile are finished here (`finishDeferred`).
      this.table.releaseHolds([hold]);
    }
    this.giveBack(now, budget);
  }

  /**
   * Returns freed, zeroed pages to the allocator; if it cannot be had now,
   * leaves them pending for `alloc` to finish (the free itself is done).
   */
  private giveBack(
    pages: readonly number[],
    budget: WaitBudget,
    mayBlock = this.cpu.mayBlock(),
  ): void {
    if (pages.length === 0) return;
    try {
      const give = () => {
        for (const run of runsOf(pages)) this.allocator.give(run.first, run.count);
      };
      this.withAllocator(budget, give, mayBlock);
    } catch {
      for (const page of pages) {
        this.table.updatePte(page, (pte) => (pte === FREED_PTE ? FREE_PENDING_PTE : pte));
      }
    }
  }

  /** @throws AccessError 'unmapped' or 'freed' at the first page of `run` that is not mapped */
  private assertMapped(run: PageRun, va: number): void {
    for (let page = run.first; page < run.first + run.count; page++) {
      this.table.assertMapped(page, va);
    }
  }

  /** @throws InvalidArgumentError 'not-allocated' unless every page of `hold` is mapped, of the generation seen */
  private assertStillAllocated(hold: Hold, va: number, generations: Int32Array | undefined): void {
    for (let page = hold.first; page < hold.first + hold.count; page++) {
      const reused =
        generations !== undefined && generations[page - hold.first] !== this.table.generation(page);
      if (!isMapped(this.table.pte(page)) || reused) {
        throw new InvalidArgumentError(
          'va',
          va,
          'not-allocated',
          `page at 0x${(page * this.pageSize).toString(16)} is not allocated: a double free?`,
          { address: page * this.pageSize },
        );
      }
    }
  }

  /** Pages in the allocation that starts at `first`, read under the allocator mutex. */
  private allocationAt(first: number, va: number): number {
    let count = 0;
    let pageIsFreed = false;
    let inside = false;
    this.withAllocator(new WaitBudget(this.limits, va), () => {
      const run = this.allocator.runAt(first);
      if (run.allocated && run.first === first) count = run.count;
      inside = run.allocated;
      pageIsFreed = isFreed(this.table.pte(first));
    });
    if (count > 0) return count;
    if (inside && !pageIsFreed) {
      throw new InvalidArgumentError(
        'va',
        va,
        'not-allocation-start',
        'free(va) takes the start of an allocation; pass len to free part of one',
        { address: va },
      );
    }
    throw new InvalidArgumentError(
      'va',
      va,
      'not-allocated',
      pageIsFreed ? 'freed already: a double free' : 'never allocated',
      { address: va },
    );
  }

  /** @throws InvalidArgumentError 'misaligned' unless `va` is page-aligned */
  private assertPageAligned(call: 'free' | 'protect', va: number): void {
    if (va % this.pageSize !== 0) {
      throw new InvalidArgumentError(
        'va',
        va,
        'misaligned',
        `${call} takes page-aligned addresses (pageSize ${this.pageSize})`,
        { address: va },
      );
    }
  }

  /** Runs `fn` under the allocator mutex, in a critical section, waiting within `budget`. */
  private withAllocator(budget: WaitBudget, fn: () => void, mayBlock = this.cpu.mayBlock()): void {
    this.table.critical(() => {
      const header = this.table.shared.header;
      lockMutex(header, HEADER_ALLOC_MUTEX, mayBlock, budget);
      try {
        fn();
      } finally {
        unlockMutex(header, HEADER_ALLOC_MUTEX);
      }
    });
  }
}
