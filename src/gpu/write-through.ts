/**
 * Write-through: the stores a call made to pages whose advice or pin asks
 * for it (read-mostly, preferred or pinned on the CPU: advice.ts,
 * thrash.ts) are read back before the call resolves, and the pages end
 * `shared` (frames kept), so CPU reads of them never fault.
 *
 * - A page such a call stored to is not marked GPU-dirty when the kernel's
 *   status comes back: it is *pending* until its write-through. Its stores
 *   are acknowledged only when the write-through is done, so a device loss
 *   during it rejects the call and does not list the page as unsaved (the
 *   page keeps its last CPU bytes).
 * - If the write-through fails otherwise, the pending pages are marked
 *   GPU-dirty after all: their stores are kept, as a failed run's stores are.
 */
import type { PageTable } from '../space/page-table.ts';
import { isGpuDirty, isGpuOwned, staysShared, writesThrough } from '../space/pte.ts';
import { PTE_GPU_DIRTY } from '../space/shared-layout.ts';
import type { Moved as MigrationResult } from './migration-accounting.ts';
import type { ThrashDetector } from './thrash.ts';

export interface WriteThroughContext {
  readonly table: PageTable;
  readonly thrash: ThrashDetector | undefined;
  /** Reads back the held GPU-owned `pages` that `stored` (or GPU-dirty), making them `shared`. */
  readonly readBack: (
    pages: readonly number[],
    stored: (page: number) => boolean,
  ) => Promise<MigrationResult>;
  /** Counts and traces a write-through of `pages` that moved `moved` since `started`. */
  readonly account: (pages: readonly number[], moved: MigrationResult, started: number) => void;
  /** Whether `error` came of a device loss. */
  readonly lostBy: (error: unknown) => Promise<boolean>;
}

export class WriteThroughs {
  /** Set once advice asked some page for write-through: until then no call looks for such pages. */
  advised = false;
  /** Pages stored to whose write-through has not happened yet (each held by the call that stored). */
  private readonly pending = new Set<number>();

  constructor(private readonly ctx: WriteThroughContext) {}

  /** Whether a store to the held GPU-owned `page` waits for its write-through instead of making it dirty (noted, then). */
  defer(page: number): boolean {
    if (!this.advised && !this.ctx.thrash?.pinning) return false;
    const pte = this.ctx.table.pte(page);
    if (!isGpuOwned(pte) || !writesThrough(pte)) return false;
    this.pending.add(page);
    return true;
  }

  /** Writes through the held pages of `pages` that ask for it (see the module doc). */
  async run(pages: Iterable<number>): Promise<void> {
    if (!this.advised && !this.ctx.thrash?.pinning) return;
    const { table } = this.ctx;
    const through: number[] = [];
    for (const page of pages) {
      const pte = table.pte(page);
      if (!isGpuOwned(pte)) continue;
      const stored = isGpuDirty(pte) || this.pending.has(page);
      if (staysShared(pte) || (writesThrough(pte) && stored)) through.push(page);
    }
    if (through.length === 0) return;
    const started = performance.now();
    const pending = through.filter((page) => this.pending.has(page));
    try {
      const moved = await this.ctx.readBack(through, (page) => this.pending.has(page));
      this.ctx.thrash?.active(through);
      this.ctx.account(through, moved, started);
    } catch (error) {
      if (!(await this.ctx.lostBy(error))) {
        for (const page of pending)
          table.updatePte(page, (pte) => (isGpuOwned(pte) ? pte | PTE_GPU_DIRTY : pte));
      }
      throw error;
    } finally {
      for (const page of pending) this.pending.delete(page);
    }
  }
}
