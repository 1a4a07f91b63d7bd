/**
 * Runs without `uses` (fault mode): the GPU fault loop. Each round is
 *
 * 1. collect: a pass with every store and atomic suppressed records, per
 *    page, what needs a change of state (a load of a non-resident page; a
 *    store or atomic to a page not yet GPU-owned, `shared` included) and
 *    what the kernel touched;
 * 2. service, if it faulted: the faulting pages are checked (AccessError
 *    'unmapped', 'freed' or 'protection' naming the lowest one), then held
 *    for the rest of the run and migrated with fault-around (the aligned
 *    GPU_FAULT_AROUND_BYTES block around each, within its allocation; reads
 *    -> `shared`, writes -> `gpu`); then collect again;
 * 3. hold, once a pass faults no more: every other page the kernel touched
 *    is held (written pages exclusively, read pages as a read scope) and
 *    checked again; if one changed meanwhile, collect again;
 * 4. the real pass: fetched pages the kernel only reads become read scopes
 *    (CPU readers may join), the pass runs, and what it stored to is dirty.
 *
 * Fetched pages stay held, exclusively, until the run ends: CPU writers of
 * the same pages cannot undo a round's work, so the rounds converge.
 *
 * Fault mode cannot follow addresses that depend on the kernel's own stores
 * or atomics (the collecting passes see none of them): a real pass that
 * still faults fails with InvalidArgumentError, as does a kernel still
 * faulting after MAX_REPLAYS collecting passes. Partial progress on failure:
 * pages fetched stay fetched, stores that landed stay; holds are released.
 */
import { InvalidArgumentError } from '../errors.ts';
import { deviceCanRead, deviceCanWrite } from '../gpu/device-access-rules.ts';
import type { MirrorHost } from '../gpu/mirror-host.ts';
import type { InvalidateEvent } from '../space/notifier.ts';
import type { HoldKind } from '../space/page-lock.ts';
import { alignedBlockAround, runEnd, runsOf } from '../space/page-run.ts';
import type { Hold } from '../space/page-table.ts';
import { assertAccess, isMapped, protAllows, type Need } from '../space/pte.ts';
import { dirtyPages, faultBitPages } from './bitmaps.ts';
import {
  ACCESSED_READ,
  ACCESSED_WRITE,
  FAULT_READ,
  FAULT_WRITE,
  MODE_COLLECT,
  MODE_RUN,
  USES_ALL,
} from './kernel-layout.ts';
import type { RunCounts } from './kernel-options.ts';
import type { Dispatch, PassStatus } from './kernel-runtime.ts';
import { runError } from './run-error.ts';

/**
 * How far a GPU fault reaches, in bytes: the aligned block of this size
 * around a faulting page, within its allocation, is migrated with it. CPU
 * faults have their own, smaller CPU_FAULT_AROUND_BYTES (gpu layer).
 */
export const GPU_FAULT_AROUND_BYTES = 2 << 20;
/** Collecting passes that found faults before a run gives up (a kernel whose faults never settle). */
export const MAX_REPLAYS = 4096;

/**
 * A fault-mode run of the kernel `dispatch` passes, to completion.
 * @throws AccessError for a page the kernel may not touch as it does;
 *   InvalidArgumentError 'bad-value' (argument 'code') for a kernel fault
 *   mode cannot serve
 */
export function runFaultMode(host: MirrorHost, dispatch: Dispatch): Promise<RunCounts> {
  return new FaultModeRun(host, dispatch).run();
}

/** The holds of the pages a fault-free collecting pass touched, taken for the real pass. */
interface Touched {
  readonly holds: Hold[];
  readonly written: ReadonlySet<number>;
}

class FaultModeRun {
  private replays = 0;
  private gpuFaults = 0;
  private bytesToGpu = 0;
  private readonly fetched = new FetchedPages();
  private readonly events: InvalidateEvent[] = [];

  constructor(
    private readonly host: MirrorHost,
    private readonly dispatch: Dispatch,
  ) {}

  async run(): Promise<RunCounts> {
    const { table } = this.host.space;
    try {
      for (;;) {
        const status = await this.collect();
        if (status.faulted) {
          await this.service(status.bits);
          continue;
        }
        const touched = await this.hold(status.bits);
        if (!touched) continue;
        try {
          const pagesWritten = await this.realPass(touched.written);
          const { replays, gpuFaults, bytesToGpu } = this;
          return { replays, gpuFaults, bytesToGpu, pagesWritten };
        } finally {
          table.releaseHolds(touched.holds);
        }
      }
    } finally {
      table.releaseHolds(this.fetched.holds);
      this.host.space.announce(this.events);
    }
  }

  /** A collecting pass. @throws AccessError for an access beyond the space */
  private async collect(): Promise<PassStatus> {
    this.host.beforeGpuUse();
    const status = await this.dispatch(MODE_COLLECT, USES_ALL);
    if (status.errorKinds) throw runError(this.host.space.table, status, [], []);
    return status;
  }

  /**
   * Counts a replay, checks the faulted pages, then holds (for the rest of
   * the run) and migrates them with fault-around. Pages the run holds
   * already are migrated as they are.
   */
  private async service(bits: Uint32Array): Promise<void> {
    if (++this.replays > MAX_REPLAYS) {
      throw new InvalidArgumentError(
        'code',
        'kernel',
        'bad-value',
        `still faulting after ${MAX_REPLAYS} collecting passes`,
      );
    }
    const { migrator, counters } = this.host;
    const reads = faultBitPages(bits, FAULT_READ);
    const writes = faultBitPages(bits, FAULT_WRITE);
    this.checkFaulted(reads, writes);
    const toGpu = [...this.faultAround(writes, 'write')];
    const toGpuSet = new Set(toGpu);
    const toShared = [...this.faultAround(reads, 'read')].filter((page) => !toGpuSet.has(page));
    const started = performance.now();
    const newRuns = (pages: readonly number[]) =>
      runsOf(pages.filter((page) => !this.fetched.has(page)));
    this.fetched.add(await migrator.holdChecked(newRuns(toGpu), true, 'write'));
    this.fetched.add(await migrator.holdChecked(newRuns(toShared), true, 'read'));
    const [sharedRuns, gpuRuns] = [runsOf(toShared), runsOf(toGpu)];
    const shared = await migrator.makeResident(sharedRuns, 'shared', this.events);
    const owned = await migrator.makeResident(gpuRuns, 'gpu', this.events);
    const moved = { pages: shared.pages + owned.pages, bytes: shared.bytes + owned.bytes };
    const runs = [...sharedRuns, ...gpuRuns].sort((a, b) => a.first - b.first);
    const faulted = reads.length + writes.length;
    migrator.countFetch(faulted, runs, moved, started);
    counters.replays++;
    this.gpuFaults += faulted;
    this.bytesToGpu += moved.bytes;
  }

  /** @throws AccessError 'unmapped', 'freed' or 'protection' at the lowest faulted page the kernel may not touch so */
  private checkFaulted(reads: readonly number[], writes: readonly number[]): void {
    const { table } = this.host.space;
    const writeSet = new Set(writes);
    for (const page of [...reads, ...writes].sort((a, b) => a - b)) {
      const need: Need = writeSet.has(page) ? 'write' : 'read';
      assertAccess(table.pte(page), need, table.address(page), 'a kernel');
    }
  }

  /**
   * `pages` plus the mapped pages of their aligned GPU_FAULT_AROUND_BYTES
   * blocks, within their allocations, whose protection allows `need`.
   */
  private faultAround(pages: readonly number[], need: Need): Set<number> {
    const { space } = this.host;
    const { table } = space;
    const block = Math.max(1, GPU_FAULT_AROUND_BYTES / table.pageSize);
    const out = new Set<number>(pages);
    const anchors = new Map<number, number>(); // block index -> a faulted page in it
    for (const page of pages)
      if (!anchors.has(Math.floor(page / block))) anchors.set(Math.floor(page / block), page);
    for (const anchor of anchors.values()) {
      const allocation = space.allocationRun(anchor);
      if (!allocation) continue;
      const around = alignedBlockAround(anchor, anchor + 1, block, allocation);
      for (let page = around.first; page < runEnd(around); page++) {
        const pte = table.pte(page);
        if (isMapped(pte) && protAllows(pte, need)) out.add(page);
      }
    }
    return out;
  }

  /**
   * Holds every page the fault-free pass touched that the run does not hold
   * yet (written: exclusively; only read: as a read scope), then checks that
   * the device may still use them all as the pass did.
   * @returns the holds, or undefined (none held) if a page changed meanwhile
   */
  private async hold(bits: Uint32Array): Promise<Touched | undefined> {
    const { table } = this.host.space;
    const written = faultBitPages(bits, ACCESSED_WRITE);
    const writtenSet = new Set(written);
    const readOnly = faultBitPages(bits, ACCESSED_READ).filter((page) => !writtenSet.has(page));
    const holds = [
      ...this.newHolds(written, 'exclusive-long'),
      ...this.newHolds(readOnly, 'scope-read'),
    ];
    await table.holdAsync(holds, 0);
    let stillGood = false;
    try {
      this.host.space.pollNotices();
      stillGood =
        written.every((page) => deviceCanWrite(table.pte(page))) &&
        readOnly.every((page) => deviceCanRead(table.pte(page)));
    } finally {
      if (!stillGood) table.releaseHolds(holds);
    }
    return stillGood ? { holds, written: writtenSet } : undefined;
  }

  /** Holds of the runs of `pages` the run has not fetched. */
  private newHolds(pages: readonly number[], kind: HoldKind): Hold[] {
    return runsOf(pages.filter((page) => !this.fetched.has(page))).map((run) => ({
      ...run,
      kind,
    }));
  }

  /**
   * The real pass, every page it touches held. Marks dirty what it stored to.
   * @returns the number of pages it stored to
   * @throws AccessError (an access error in the pass); InvalidArgumentError
   *   if it touched a page the collecting passes did not
   */
  private async realPass(written: ReadonlySet<number>): Promise<number> {
    const { host } = this;
    const { table } = host.space;
    // Fetched pages the kernel only reads: CPU readers may join while it runs.
    this.fetched.holds = table.downgradeHoldsExcept(this.fetched.holds, written);
    host.beforeGpuUse();
    const real = await this.dispatch(MODE_RUN, USES_ALL);
    let dirty: number[] = [];
    if (real.stored) {
      dirty = dirtyPages(real.bits);
      host.migrator.markDirty(dirty);
    }
    if (real.errorKinds) throw runError(table, real, [], dirty);
    if (real.faulted) {
      throw new InvalidArgumentError(
        'code',
        'kernel',
        'bad-value',
        'the real pass touched pages the collecting passes did not: its addresses depend on its own stores or atomics; declare uses',
      );
    }
    return dirty.length;
  }
}

/** The pages a fault-mode run has brought in and holds (exclusively) until it ends. */
class FetchedPages {
  holds: Hold[] = [];
  private readonly pages = new Set<number>();

  has(page: number): boolean {
    return this.pages.has(page);
  }

  add(holds: readonly Hold[]): void {
    for (const hold of holds) {
      this.holds.push(hold);
      for (let page = hold.first; page < runEnd(hold); page++) this.pages.add(page);
    }
  }
}
