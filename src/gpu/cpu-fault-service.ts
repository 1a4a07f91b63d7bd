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
 * - A batch that fails completes its requests all the same, and the service
 *   goes on, whatever the failure: a page freed meanwhile completes them
 *   normally (the requesters retry and see the truth); a device loss fails
 *   them with DeviceLostError naming their pages that could not be saved;
 *   anything else (a spin on a short critical section that ran out, a bug)
 *   fails them with WouldBlockError 'unserved' and is logged.
 */
import { AccessError } from '../errors.ts';
import type { FaultRequest, FaultResult } from '../space/fault-channel.ts';
import type { SpaceInternals } from '../space/internals.ts';
import { alignedBlockAround, coalesceRuns, runEnd, type PageRun } from '../space/page-run.ts';
import { isGpuOwned } from '../space/pte.ts';
import type { MigrationResult, Migrator } from './migration.ts';
import { pagesOfRuns } from './migration-plan.ts';
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
  /** Whether `error` (a failed batch's) came of a device loss: then its requests fail with DeviceLostError. */
  readonly lostBy: (error: unknown) => Promise<boolean>;
  /** After a device loss: the run of `request`'s pages whose GPU copy was lost (see FaultChannel.complete). */
  readonly unsavedIn: (request: PageRun) => PageRun | undefined;
}

/**
 * Serves CPU faults until `stopped()`; resolves then, with every request it
 * took completed. Never rejects. Pushes are served as they are taken, pulls
 * start as they are taken; fetches go in batches, one at a time, while the
 * taking goes on (a push's or pull's requester holds its page, which a
 * fetch of it waits for).
 */
export async function serveCpuFaults(ctx: CpuFaultServiceContext): Promise<void> {
  const { faults } = ctx.space;
  const fetches = new FetchBatches(ctx);
  const pulls = new Set<Promise<void>>();
  while (!ctx.stopped()) {
    try {
      const seen = faults.doorbell();
      const requests = faults.take();
      if (requests.length === 0) {
        await faults.ring(seen, IDLE_WAIT_MS);
        continue;
      }
      servePushes(
        ctx,
        requests.filter((request) => request.kind === 'push'),
      );
      for (const pull of requests.filter((request) => request.kind === 'pull')) {
        const serving = servePull(ctx, pull).finally(() => pulls.delete(serving));
        pulls.add(serving);
      }
      fetches.add(requests.filter((request) => request.kind === 'fetch'));
    } catch (error) {
      reportFailure(error);
      await nextTask();
    }
  }
  await fetches.drained();
  await Promise.all(pulls);
}

/** Fetch requests served in batches, one batch at a time, each with the requests pending when it starts. */
class FetchBatches {
  private readonly pending: FaultRequest[] = [];
  private running: Promise<void> | undefined;

  constructor(private readonly ctx: CpuFaultServiceContext) {}

  add(requests: readonly FaultRequest[]): void {
    if (requests.length === 0) return;
    this.pending.push(...requests);
    this.running ??= this.run();
  }

  /** Resolves once every request added so far is completed. */
  async drained(): Promise<void> {
    while (this.running) await this.running;
  }

  private async run(): Promise<void> {
    try {
      while (this.pending.length > 0) {
        const requests = this.pending.splice(0);
        try {
          completeAll(this.ctx, requests, await serveBatch(this.ctx, requests));
        } catch (error) {
          // Whatever threw (a spin on a short critical section that ran out, a
          // bug), this batch's requesters are told and the service goes on.
          reportFailure(error);
          completeAll(this.ctx, requests, 'failed');
          await nextTask();
        }
      }
    } finally {
      this.running = undefined;
    }
  }
}

/**
 * Writes pushed bytes (plain CPU writes to pages pinned on the GPU, held by
 * their writers) into CPU memory and the page's frame, in the order they
 * were taken, so both copies end alike whatever the writers' order; the
 * writers go on once the frame's copy is queued: every later GPU use of the
 * frame comes after it on the queue. A page without a frame here (detach
 * took it) has its bytes in CPU memory alone, which is all it needs.
 */
function servePushes(ctx: CpuFaultServiceContext, pushes: readonly FaultRequest[]): void {
  if (pushes.length === 0) return;
  const started = performance.now();
  const { migrator } = ctx;
  const { device, frames, space } = migrator.ctx;
  const memory = new Int32Array(space.memory);
  const { pageSize } = space.table;
  let bytes = 0;
  for (const push of pushes) {
    try {
      const data = push.data ?? new Uint8Array(0);
      const words = new Int32Array(data.slice().buffer);
      words.forEach((word, i) => Atomics.store(memory, (push.first >>> 2) + i, word));
      const page = Math.floor(push.first / pageSize);
      if (migrator.frameMap.has(page)) {
        const at = migrator.frameMap.frameOf(page) * pageSize + (push.first - page * pageSize);
        device.queue.writeBuffer(frames, at, words);
        bytes += data.byteLength;
        migrator.thrash?.active([page]);
      }
      space.faults.complete(push, 'ok');
    } catch (error) {
      reportFailure(error);
      space.faults.complete(push, 'failed');
    }
  }
  ctx.counters.bytesToGpu += bytes;
  ctx.counters.bytesByCause['fault-cpu'] += bytes;
  const first = Math.min(...pushes.map((push) => push.first));
  const len = Math.max(...pushes.map((push) => push.first + push.count)) - first;
  const ms = performance.now() - started;
  ctx.emit({
    t: started,
    kind: 'fault',
    cause: 'fault-cpu',
    to: 'gpu',
    va: first,
    len,
    pages: 0,
    bytes,
    ms,
  });
}

/**
 * Reads a pull's bytes (a small CPU read of a page pinned on the GPU and
 * GPU-dirty, held by its reader) from the page's frame into the slot,
 * leaving CPU memory alone: the page stays GPU-owned and dirty. A page
 * without a frame here (detach took it) is read again by its reader.
 */
async function servePull(ctx: CpuFaultServiceContext, pull: FaultRequest): Promise<void> {
  const started = performance.now();
  const { migrator } = ctx;
  const { pageSize } = migrator.ctx.space.table;
  const page = Math.floor(pull.first / pageSize);
  const { faults } = ctx.space;
  if (!migrator.frameMap.has(page)) {
    faults.complete(pull, 'retry');
    return;
  }
  let bytes: Uint8Array;
  try {
    const lo = pull.first - page * pageSize;
    const segment = migrator.frameMap.segment(page, lo, lo + pull.count);
    bytes = await migrator.ctx.engine.read([segment]);
  } catch (error) {
    const lost = await ctx.lostBy(error);
    if (!lost) reportFailure(error);
    const unsaved = lost ? ctx.unsavedIn({ first: page, count: 1 }) : undefined;
    faults.complete(pull, lost ? 'device-lost' : 'failed', unsaved);
    return;
  }
  ctx.counters.cpuFaults++;
  ctx.counters.readbacks++;
  ctx.counters.bytesToCpu += bytes.byteLength;
  ctx.counters.bytesByCause['fault-cpu'] += bytes.byteLength;
  migrator.thrash?.active([page]);
  faults.complete(pull, 'ok', undefined, bytes);
  const ms = performance.now() - started;
  const event = { t: started, kind: 'fault', cause: 'fault-cpu', to: 'cpu' } as const;
  ctx.emit({ ...event, va: pull.first, len: pull.count, pages: 0, bytes: bytes.byteLength, ms });
}

/**
 * Brings one batch of requests back.
 * @returns 'ok' when served, or when a page was freed meanwhile (the
 *   requester retries and sees the truth); 'device-lost' when the device was lost
 * @throws anything else that went wrong (the caller fails the batch)
 */
async function serveBatch(
  ctx: CpuFaultServiceContext,
  requests: readonly FaultRequest[],
): Promise<FaultResult> {
  const started = performance.now();
  const runs = requests.map((request) => faultAround(ctx.space, request));
  runs.forEach((run, i) =>
    ctx.migrator.thrash?.cpuFaulted(pagesOfRuns([run]), requests[i]?.small ?? false),
  );
  let moved: MigrationResult;
  try {
    moved = await ctx.migrator.toCpu(coalesceRuns(runs), 'fault-cpu', false);
  } catch (error) {
    if (await ctx.lostBy(error)) return 'device-lost';
    if (error instanceof AccessError) return 'ok';
    throw error;
  }
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
  return 'ok';
}

/** Completes every request of a batch with `result`; one that cannot be completed does not stop the others. */
function completeAll(
  ctx: CpuFaultServiceContext,
  requests: readonly FaultRequest[],
  result: FaultResult,
): void {
  for (const request of requests) {
    try {
      ctx.space.faults.complete(
        request,
        result,
        result === 'device-lost' ? ctx.unsavedIn(request) : undefined,
      );
    } catch (error) {
      reportFailure(error);
    }
  }
}

function reportFailure(error: unknown): void {
  console.error('webhmm: a batch of CPU fault requests failed; its requesters were told', error);
}

/** Yields to the event loop: a failure that repeats at once never starves it. */
function nextTask(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
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
