/**
 * The CPU fault service: on the thread that owns a mirror's device, it
 * drains the space's fault channel (a ring in shared memory plus a doorbell;
 * space/fault-channel.ts), brings the requested GPU-dirty pages back, and
 * completes the requests, so that blocked threads go on.
 *
 * Guarantees:
 * - Every request pending at a wake-up is served in one batch: one readback
 *   for all of them (Linux's migrate_to_ram, batched).
 * - Fault-around: a request grows over its idle GPU-owned neighbours within
 *   the aligned CPU_FAULT_AROUND_BYTES block and its allocation, so a thread
 *   reading sequentially faults once per block, not once per page.
 *   Neighbours held by anyone (a kernel, a scope) are left alone: they must
 *   not delay the fault.
 * - A batch that fails (a page freed meanwhile) completes its requests all
 *   the same: the requesters retry and see the truth; after a device loss
 *   they are told so (DeviceLostError).
 */
import type { SpaceInternals } from '../space/internals.ts';
import { alignedBlockAround, coalesceRuns, runEnd, type PageRun } from '../space/page-run.ts';
import { isGpuOwned } from '../space/pte.ts';
import type { Migrator } from './migration.ts';
import type { MirrorCounters, TraceEvent } from './mirror-stats.ts';

/** The aligned block a CPU fault brings idle GPU-owned neighbours back from, bytes. */
export const CPU_FAULT_AROUND_BYTES = 256 << 10;

/** How long the service sleeps between doorbell checks when nothing rings, ms. */
const IDLE_WAIT_MS = 60_000;

export interface CpuFaultServiceContext {
  readonly space: SpaceInternals;
  readonly migrator: Migrator;
  readonly counters: MirrorCounters;
  readonly emit: (event: TraceEvent) => void;
  /** True once the mirror stops serving (detach or device loss). */
  readonly stopped: () => boolean;
  /** True once the device was lost: failed batches then report DeviceLostError. */
  readonly lost: () => boolean;
}

/** Serves CPU faults until `stopped()`; resolves then. Never rejects. */
export async function serveCpuFaults(ctx: CpuFaultServiceContext): Promise<void> {
  const { faults } = ctx.space;
  while (!ctx.stopped()) {
    const seen = faults.doorbell();
    const requests = faults.take();
    if (requests.length === 0) {
      await faults.ring(seen, IDLE_WAIT_MS);
      continue;
    }
    const lost = await serveBatch(ctx, requests);
    for (const request of requests) faults.complete(request, lost);
  }
}

/** Brings one batch of requests back; returns whether it failed for a lost device. */
async function serveBatch(
  ctx: CpuFaultServiceContext,
  requests: readonly PageRun[],
): Promise<boolean> {
  const started = performance.now();
  const runs = requests.map((request) => faultAround(ctx.space, request));
  try {
    const moved = await ctx.migrator.toCpu(coalesceRuns(runs), 'fault-cpu', false);
    ctx.counters.cpuFaults += requests.length;
    const { pageSize } = ctx.space.table;
    ctx.emit({
      t: started,
      kind: 'fault',
      cause: 'fault-cpu',
      to: 'cpu',
      va: (runs[0]?.first ?? 0) * pageSize,
      len: runs.reduce((sum, run) => sum + run.count, 0) * pageSize,
      pages: moved.pages,
      bytes: moved.bytes,
      ms: performance.now() - started,
    });
    return false;
  } catch {
    // A page freed meanwhile: the requester retries and sees the truth. A lost device: it is told.
    return ctx.lost();
  }
}

/** A faulting request grown over its idle GPU-owned neighbours (see the module doc). */
function faultAround(space: SpaceInternals, request: PageRun): PageRun {
  const { table } = space;
  const allocation = space.allocationRun(request.first);
  if (!allocation) return { first: request.first, count: request.count };
  const block = Math.max(1, CPU_FAULT_AROUND_BYTES / table.pageSize);
  const around = alignedBlockAround(request.first, runEnd(request), block, allocation);
  const idleOnGpu = (page: number): boolean => isGpuOwned(table.pte(page)) && !table.isHeld(page);
  let first = request.first;
  while (first > around.first && idleOnGpu(first - 1)) first--;
  let end = runEnd(request);
  while (end < runEnd(around) && idleOnGpu(end)) end++;
  return { first, count: end - first };
}
