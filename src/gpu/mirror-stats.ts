/**
 * What a GpuMirror reports about itself: counters (monotonic unless noted)
 * and trace events, one per migration batch and per fault, so users can see
 * why memory moved.
 */
import type { CopyEngineKind } from './copy-engine.ts';

/**
 * Why memory moved: 'fault-cpu' (a CPU access to a GPU-dirty page),
 * 'fault-gpu' (a kernel run or gpu.read/write fetched pages), 'sync'
 * (sync() and detach() writing back), 'writeback' (background write-back
 * under the `writeBack` option: write-back.ts), 'eviction' (dirty pages
 * written back so their frames could go to others: eviction.ts),
 * 'prefetch' (prefetch(): prefetch.ts), 'write-through' (stores to pages
 * advised read-mostly or preferred on the CPU, written back before the call
 * that made them resolves: advice.ts), 'explicit' (migrate()).
 */
export type MigrationCause =
  | 'fault-cpu'
  | 'fault-gpu'
  | 'sync'
  | 'writeback'
  | 'eviction'
  | 'prefetch'
  | 'write-through'
  | 'explicit';

export const MIGRATION_CAUSES: readonly MigrationCause[] = [
  'fault-cpu',
  'fault-gpu',
  'sync',
  'writeback',
  'eviction',
  'prefetch',
  'write-through',
  'explicit',
];

/** Which engine carries each transfer shape, per direction. */
export interface CopyEngineChoice {
  readonly h2d: {
    readonly contiguous: CopyEngineKind;
    readonly scattered: CopyEngineKind;
    /** Stale blocks of pages (16-byte pieces a CPU write changed). */
    readonly blocks: CopyEngineKind;
  };
  readonly d2h: { readonly contiguous: CopyEngineKind; readonly scattered: CopyEngineKind };
  /** Whether the buffer engine cuts large readbacks into overlapped batches. */
  readonly pipelinedReadback: boolean;
  /** Whether the buffer engine sends large uploads through mapped staging instead of `writeBuffer`. */
  readonly stagedUploads: boolean;
  /**
   * The share of a page's bytes (0-1) at which uploading its stale blocks
   * costs as much as uploading the page whole: staler pages go whole.
   */
  readonly wholePageShare: number;
}

export interface MirrorStats {
  /** Pages whose bytes were uploaded (a zero page's cleared frame moves no bytes and is not counted). */
  pagesToGpu: number;
  /** Pages whose bytes were read back. */
  pagesToCpu: number;
  bytesToGpu: number;
  bytesToCpu: number;
  /**
   * Bytes uploaded into frames the pages already had, to bring their stale
   * bytes up to date (part of `bytesToGpu`). Against `staleBytesWritten`
   * it shows write amplification: 1 when uploads move just what the CPU
   * wrote (rounded to 16-byte blocks), more when pages go whole.
   */
  staleBytesUploaded: number;
  /** GPU -> CPU round trips (each waits for a mapAsync). */
  readbacks: number;
  /** CPU fault requests serviced. */
  cpuFaults: number;
  /** Pages the device side had to fetch (for kernels or gpu.read/gpu.write). */
  gpuFaults: number;
  /** Kernel fault-collecting passes that found faults. */
  replays: number;
  /** Pages written back to the CPU by sync, detach, background write-back or eviction. */
  writebacks: number;
  /** Pages that lost their frame so that others could have it (eviction.ts); dirty ones were written back first. */
  evictions: number;
  /**
   * Pages a prefetch to the GPU made resident that were still resident at
   * their first device-side use (a kernel run, gpu.read or gpu.write): the
   * fetches it saved.
   */
  prefetchHits: number;
  /**
   * Hints the mirror could not honour in whole (each traced): prefetches of
   * more than the budget can hold, advice that eviction or a prefetch to the
   * CPU had to overrule.
   */
  ignoredHints: number;
  /** Pages thrash mitigation pinned on the GPU (the `thrash` option: thrash.ts), each traced. */
  thrashPins: number;
  /** Pages whose GPU copy another thread's notice invalidated. */
  invalidations: number;
  /** Device page table entries derived again because the page changed while they were (a race with another thread, retried). */
  entryRetries: number;
  /** Bytes moved (both directions) by cause. */
  bytesByCause: Record<MigrationCause, number>;
  /** Not a counter: frames holding pages now. */
  framesInUse: number;
  /** Not a counter: the frame budget, bytes. */
  budget: number;
  /** Not a counter: the current engine per transfer shape. */
  copyEngine: CopyEngineChoice;
  /**
   * Not a counter of this mirror: bytes CPU writes (any thread, since the
   * space was made) made stale in GPU frames; overlapping writes count again.
   */
  staleBytesWritten: number;
}

export interface TraceEvent {
  /** performance.now() at the start. */
  readonly t: number;
  /**
   * 'ignored-hint': the part of a hint (`va`, `len`) that was not honoured;
   * 'thrash-pin': pages pinned on the GPU (`pages` of them, from `va`), with
   * the `reason`; nothing moved for either.
   */
  readonly kind: 'migration' | 'fault' | 'ignored-hint' | 'thrash-pin';
  readonly cause: MigrationCause;
  readonly va: number;
  readonly len: number;
  /** Pages whose bytes moved. */
  readonly pages: number;
  readonly bytes: number;
  readonly ms: number;
  /** Direction of a migration: 'gpu' (to the device) or 'cpu'. */
  readonly to: 'gpu' | 'cpu';
  /** For an 'eviction': pages that lost their frame (`pages` of them were written back). */
  readonly evicted?: number;
  /** For a 'thrash-pin': why the pages were pinned. */
  readonly reason?: string;
}

export type TraceListener = (event: TraceEvent) => void;

/**
 * Delivers `event` to every listener; one that throws fails nothing (not the
 * call or service that emitted, not the other listeners): it is reported.
 */
export function emitTo(listeners: Iterable<TraceListener>, event: TraceEvent): void {
  for (const listener of [...listeners]) {
    try {
      listener(event);
    } catch (error) {
      console.error('webhmm: a trace listener threw; the event went on to the others', error);
    }
  }
}

/** The counters of MirrorStats, without the fields that are not counters. */
export type MirrorCounters = Omit<
  MirrorStats,
  'framesInUse' | 'budget' | 'copyEngine' | 'staleBytesWritten'
>;

export function emptyCounters(): MirrorCounters {
  return {
    pagesToGpu: 0,
    pagesToCpu: 0,
    bytesToGpu: 0,
    bytesToCpu: 0,
    staleBytesUploaded: 0,
    readbacks: 0,
    cpuFaults: 0,
    gpuFaults: 0,
    replays: 0,
    writebacks: 0,
    evictions: 0,
    prefetchHits: 0,
    ignoredHints: 0,
    thrashPins: 0,
    invalidations: 0,
    entryRetries: 0,
    bytesByCause: Object.fromEntries(MIGRATION_CAUSES.map((cause) => [cause, 0])) as Record<
      MigrationCause,
      number
    >,
  };
}
