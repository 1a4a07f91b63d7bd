/**
 * Mapping: `alloc`, `free` and `protect`, the calls that change what is
 * mapped (Linux's mmap, munmap and mprotect), for one thread's instance of
 * the space.
 *
 * Guarantees:
 * - `alloc` maps pages in state `zero` in the same critical section that takes
 *   them from the allocator, so ending the thread can never leak them.
 * - `free` makes the range unmapped at once for the CPU, but only after an
 *   exclusive hold on every page: the accesses that began before it finish
 *   first (on a thread that may not block it throws instead, having changed
 *   nothing). It re-checks under the hold that every page is still mapped and
 *   of the generation it found, so a double free, or a free racing another,
 *   is refused. Pages are zeroed before the allocator can hand them out again.
 * - `protect` changes protection only, never state or bytes; it applies to
 *   accesses that start after it. Every page must be mapped, or nothing changes.
 * - Each call announces its invalidation ('free', 'protect') once its holds
 *   are released.
 */
import { nonNegativeInteger } from '../arguments.ts';
import { AccessError, InvalidArgumentError, OutOfMemoryError } from '../errors.ts';
import type { PageAllocator } from './allocator.ts';
import type { CpuAccess } from './cpu-access.ts';
import { lockMutex, unlockMutex } from './mutex.ts';
import type { PageRun } from './page-run.ts';
import type { Hold, PageTable } from './page-table.ts';
import { isFreed, isMapped, withProt } from './pte.ts';
import { HEADER_ALLOC_MUTEX, PTE_ZERO } from './shared-layout.ts';
import { WaitBudget, type WaitLimits } from './waiting.ts';

export interface MappingParts {
  readonly table: PageTable;
  readonly allocator: PageAllocator;
  readonly cpu: CpuAccess;
  readonly limits: WaitLimits;
}

export class Mapping {
  private readonly table: PageTable;
  private readonly allocator: PageAllocator;
  private readonly cpu: CpuAccess;
  private readonly limits: WaitLimits;
  private readonly pageSize: number;
  /** Bytes in the space. */
  private readonly size: number;

  constructor(parts: MappingParts) {
    this.table = parts.table;
    this.allocator = parts.allocator;
    this.cpu = parts.cpu;
    this.limits = parts.limits;
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
    const pte = withProt(PTE_ZERO, prot);
    const shared = this.table.shared;
    let first = -1;
    let largest = 0;
    // One critical section: pages taken from the allocator are mapped before this thread could be ended.
    this.table.critical(() => {
      this.withAllocator(0, () => {
        first = count < shared.pageCount ? this.allocator.take(count) : -1;
        if (first < 0) largest = this.allocator.largestFree();
      });
      for (let page = first; page >= 0 && page < first + count; page++) {
        Atomics.store(shared.pte, page, pte);
      }
    });
    if (first < 0) {
      throw new OutOfMemoryError(
        'address-space',
        bytes,
        largest * this.pageSize,
        'free memory or create a larger space',
      );
    }
    return first * this.pageSize;
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
    this.table.critical(() => this.freeHeld(hold, va, generations));
    this.cpu.announce();
  }

  /** See `AddressSpace.protect`; `prot` is a PROT_* code, checked by the caller. */
  protect(va: number, len: number, prot: number): void {
    const span = this.cpu.span(va, len);
    this.assertPageAligned('protect', va);
    this.cpu.assertNotInScope(span, va);
    for (let page = span.first; page < span.first + span.count; page++) {
      this.table.assertMapped(page, va);
    }
    this.table.critical(() => {
      for (let page = span.first; page < span.first + span.count; page++) {
        this.table.invalidate(page);
        this.table.updatePte(page, (pte) => (isMapped(pte) ? withProt(pte, prot) : pte));
      }
    });
    this.cpu.invalidated({ va, len: span.count * this.pageSize, cause: 'protect' });
    this.cpu.announce();
  }

  /** The allocation (run of allocated pages) that contains `page`, or undefined if it is free. */
  allocationRun(page: number): PageRun | undefined {
    let run: (PageRun & { allocated: boolean }) | undefined;
    this.withAllocator(page * this.pageSize, () => (run = this.allocator.runAt(page)));
    return run?.allocated ? { first: run.first, count: run.count } : undefined;
  }

  /** Holds, discards and returns to the allocator the pages of `hold` (one critical section). */
  private freeHeld(hold: Hold, va: number, generations: Int32Array | undefined): void {
    const { first, count } = hold;
    this.table.holdSync([hold], va, this.cpu.mayBlock);
    try {
      for (let page = first; page < first + count; page++) {
        const reused =
          generations !== undefined && generations[page - first] !== this.table.generation(page);
        if (!isMapped(this.table.pte(page)) || reused) {
          throw new InvalidArgumentError(
            'va',
            va,
            'not-allocated',
            `page at 0x${(page * this.pageSize).toString(16)} is not allocated: a double free?`,
            { address: va },
          );
        }
      }
      for (let page = first; page < first + count; page++) this.table.discardPage(page);
      this.cpu.invalidated({ va, len: count * this.pageSize, cause: 'free' });
    } finally {
      this.table.releaseHolds([hold]);
    }
    this.withAllocator(va, () => this.allocator.give(first, count));
  }

  /** Pages in the allocation that starts at `first`, read under the allocator mutex. */
  private allocationAt(first: number, va: number): number {
    let count = 0;
    let pageIsFreed = false;
    let inside = false;
    this.withAllocator(va, () => {
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

  /** Runs `fn` under the allocator mutex, in a critical section; `va` names the wait if it fails. */
  private withAllocator(va: number, fn: () => void): void {
    this.table.critical(() => {
      const header = this.table.shared.header;
      lockMutex(header, HEADER_ALLOC_MUTEX, this.cpu.mayBlock(), new WaitBudget(this.limits, va));
      try {
        fn();
      } finally {
        unlockMutex(header, HEADER_ALLOC_MUTEX);
      }
    });
  }
}
