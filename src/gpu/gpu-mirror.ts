/**
 * GpuMirror: one GPUDevice's view of an AddressSpace (HMM's device with its
 * own MMU). It owns GPU page frames (one storage buffer of `budget` bytes), a
 * device page table (VA page -> frame and flags), the copy engine, and the
 * service of CPU faults: the thread that attaches it owns the device and
 * never blocks.
 *
 * Guarantees:
 * - Pages follow the state table of SPEC §2; `migrate` moves only what
 *   changed (migration.ts).
 * - Frames in use never exceed the budget; until eviction exists, a
 *   migration that would exceed it fails with OutOfMemoryError and moves
 *   nothing.
 * - Changes other threads make (frees, protections, writes) reach the device
 *   page table in batches before each GPU use, never by re-uploading it whole.
 * - `detach()` writes every GPU-dirty page back, so waiting CPU faults
 *   complete normally, then destroys every GPU buffer the mirror made.
 *   It is idempotent; any other call after it throws DeviceLostError 'detached'.
 */
import { DeviceLostError, InvalidArgumentError, OutOfMemoryError } from '../errors.ts';
import { internalsOf, type SpaceInternals } from '../space/internals.ts';
import { PTE_GPU, PTE_STATE_MASK } from '../space/shared-layout.ts';
import { describePte, type PageSnapshot } from '../space/pte.ts';
import type { AddressSpace } from '../space/address-space.ts';
import type { CopyEngine } from './copy-engine.ts';
import { createCopyEngine, type CopyMode } from './copy-engines.ts';
import { DPTE_MAX_FRAMES } from './device-layout.ts';
import { DevicePageTable } from './device-page-table.ts';
import { FramePool } from './frame-pool.ts';
import { Migrator, faultAroundRun, type MigrationResult, type PageRun } from './migration.ts';
import { Kernel, type KernelOptions } from '../kernels/kernel.ts';
import { KernelRuntime } from '../kernels/kernel-runtime.ts';
import {
  emptyCounters,
  type MirrorStats,
  type TraceEvent,
  type TraceListener,
} from './mirror-stats.ts';

export interface GpuMirrorOptions {
  /** The device to use; default: the default adapter's, with its largest storage binding. */
  readonly device?: GPUDevice;
  /** Bytes of GPU frames; default min(maxStorageBufferBindingSize / 4, 256 MiB), rounded down to pages. */
  readonly budget?: number;
  /** Which copy engine moves pages; default 'auto' (calibrated per device). */
  readonly copy?: CopyMode;
}

const DEFAULT_BUDGET_CAP = 256 << 20;
/** The aligned block a CPU fault brings back GPU-owned neighbours from (bounded fault-around). */
export const FAULT_AROUND_BYTES = 256 << 10;

/** Frames past the budget: the zero frame faulted loads read, and the sink suppressed stores go to. */
const SPECIAL_FRAMES = 2;

export class GpuMirror {
  private detached = false;
  /** Set when the device was lost: the GPU-dirty ranges that could not be saved. */
  private lost:
    { readonly unsaved: { va: number; len: number }[]; readonly message: string } | undefined;
  private detaching: Promise<void> | undefined;
  private readonly counters = emptyCounters();
  private readonly listeners = new Set<TraceListener>();
  private readonly stopNotices: () => void;
  private readonly faultService: Promise<void>;
  private kernels: KernelRuntime | undefined;
  private readonly compiled = new Set<Kernel>();

  private constructor(
    private readonly space: AddressSpace,
    private readonly internals: SpaceInternals,
    /** The device the mirror uses. */
    readonly device: GPUDevice,
    private readonly ownsDevice: boolean,
    private readonly frames: GPUBuffer,
    private readonly pool: FramePool,
    private readonly dpt: DevicePageTable,
    private readonly engine: CopyEngine & { choice(): MirrorStats['copyEngine'] },
    /** Bytes of GPU frames. */
    readonly budget: number,
  ) {
    this.migrator = new Migrator({
      space: internals,
      device,
      frames,
      pool,
      dpt,
      engine,
      counters: this.counters,
      emit: (event) => this.emit(event),
    });
    this.stopNotices = space.onInvalidate(0, space.size, (event) =>
      this.migrator.applyNotice(event),
    );
    internals.ownDevice(true);
    this.faultService = this.serveFaults();
    void device.lost.then((info) => this.onDeviceLost(info));
  }

  private readonly migrator: Migrator;

  /**
   * Mirrors `space` onto a GPU device. Only one mirror per space.
   * @throws InvalidArgumentError (a budget out of bounds, or the space is mirrored already)
   * @throws OutOfMemoryError when the device refuses the frames buffer
   * @throws DeviceLostError when no WebGPU adapter is available
   */
  static async attach(space: AddressSpace, options: GpuMirrorOptions = {}): Promise<GpuMirror> {
    const internals = internalsOf(space);
    const { pageSize } = space;
    const ownsDevice = options.device === undefined;
    const device = options.device ?? (await requestDevice());
    try {
      const limit = Math.min(
        device.limits.maxStorageBufferBindingSize,
        device.limits.maxBufferSize,
      );
      const budget = chooseBudget(options.budget, limit, pageSize, space.size);
      if (!internals.faults.serve(internals.threadId)) {
        throw new InvalidArgumentError(
          'space',
          'mirrored',
          'bad-value',
          'the space has a GpuMirror already; detach it first',
        );
      }
      try {
        const frames = await createGpuBuffer(device, {
          label: 'webhmm frames',
          size: budget + SPECIAL_FRAMES * pageSize,
          usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
        });
        const dpt = new DevicePageTable(device, internals.table.pageCount);
        const engine = await createCopyEngine(options.copy ?? 'auto', {
          device,
          frames,
          memory: internals.memory,
        });
        return new GpuMirror(
          space,
          internals,
          device,
          ownsDevice,
          frames,
          new FramePool(budget / pageSize),
          dpt,
          engine,
          budget,
        );
      } catch (error) {
        internals.faults.stopServing(internals.threadId);
        throw error;
      }
    } catch (error) {
      if (ownsDevice) device.destroy();
      throw error;
    }
  }

  // ---------------------------------------------------------------- migration

  /**
   * Migrates the pages of [va, va + len): to 'gpu' makes them GPU-owned
   * (uploading only stale bytes), to 'cpu' makes GPU-owned pages `shared`
   * (reading back only dirty ones). Resolves when the transfer is complete.
   * @returns the pages and bytes actually moved
   * @throws AccessError (an unmapped, freed or `prot: 'none'` page: nothing moves)
   * @throws OutOfMemoryError (the budget cannot hold the pages: nothing moves)
   */
  async migrate(va: number, len: number, to: 'gpu' | 'cpu'): Promise<MigrationResult> {
    this.assertAttached();
    if (to !== 'gpu' && to !== 'cpu')
      throw new InvalidArgumentError('to', to, 'bad-value', "'gpu' or 'cpu'");
    const run = this.internals.pageSpan(va, len);
    return to === 'gpu'
      ? this.migrator.toGpu([run], 'explicit', true)
      : this.migrator.toCpu([run], 'explicit', true);
  }

  /** The state of each page of [va, va + len), changing nothing. */
  snapshot(va: number, len: number): Promise<PageSnapshot[]> {
    this.assertAttached();
    this.internals.pollNotices();
    const { first, count } = this.internals.pageSpan(va, len);
    const out: PageSnapshot[] = [];
    for (let page = first; page < first + count; page++)
      out.push(describePte(this.internals.table.pte(page)));
    return Promise.resolve(out);
  }

  // ---------------------------------------------------------------- kernels

  /**
   * A kernel over the shared address space: `code` is WGSL using the prelude
   * (`hmm_load_u32`, `hmm_store_u32`, `hmm_translate`, ...; see
   * docs/kernels.md). Compilation starts now; `kernel.ready` and every
   * `run` report WGSL errors with the user's line numbers.
   */
  kernel(options: KernelOptions): Kernel {
    this.assertAttached();
    const kernel = Kernel.compile(this.kernelRuntime(), options);
    this.compiled.add(kernel);
    return kernel;
  }

  private kernelRuntime(): KernelRuntime {
    this.kernels ??= new KernelRuntime({
      device: this.device,
      space: this.internals,
      frames: this.frames,
      zeroFrame: this.pool.capacity,
      sinkFrame: this.pool.capacity + 1,
      pageTable: this.dpt.buffer,
      migrator: this.migrator,
      counters: this.counters,
      beforeGpuUse: () => {
        this.internals.pollNotices();
        this.dpt.flush();
      },
      assertAttached: () => this.assertAttached(),
    });
    return this.kernels;
  }

  // ---------------------------------------------------------------- device-side access

  /**
   * The device's bytes of [va, va + len): non-resident pages are fetched
   * first (`zero` and `cpu` become `shared`; counted in `gpuFaults`).
   * @throws AccessError for unmapped, freed or `prot: 'none'` pages
   */
  async read(va: number, len: number): Promise<Uint8Array> {
    this.assertAttached();
    return this.migrator.deviceRead(va, len);
  }

  /**
   * Writes `data` at `va` on the device (4-byte aligned start and length):
   * the pages become `gpu` and dirty.
   * @throws AccessError for unmapped, freed or non-writable pages; OutOfMemoryError (budget)
   */
  async write(va: number, data: ArrayBufferView): Promise<void> {
    this.assertAttached();
    if (!ArrayBuffer.isView(data) || data.byteLength === 0) {
      throw new InvalidArgumentError('data', data, 'bad-value', 'a non-empty ArrayBufferView');
    }
    if (va % 4 !== 0 || data.byteLength % 4 !== 0) {
      throw new InvalidArgumentError(
        'va',
        va,
        'misaligned',
        'device writes are 4-byte aligned in start and length',
        { address: va },
      );
    }
    return this.migrator.deviceWrite(
      va,
      new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    );
  }

  /** Writes every GPU-dirty page back to the CPU (only those); they become `shared`. */
  async sync(): Promise<MigrationResult> {
    this.assertAttached();
    return this.writeBack();
  }

  // ---------------------------------------------------------------- observation

  stats(): MirrorStats {
    return {
      ...this.counters,
      bytesByCause: { ...this.counters.bytesByCause },
      framesInUse: this.pool.inUse,
      budget: this.budget,
      copyEngine: this.engine.choice(),
    };
  }

  /** Calls `listener` with one event per migration batch and per fault; returns the unsubscribe function. */
  trace(listener: TraceListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * Writes back every GPU-dirty page, lets waiting CPU faults complete from
   * them, and destroys every GPU buffer the mirror made (and the device, if
   * the mirror requested it). Idempotent.
   */
  detach(): Promise<void> {
    this.detaching ??= this.teardown();
    return this.detaching;
  }

  private async teardown(): Promise<void> {
    this.detached = true;
    const dirty = this.unsavedRanges();
    let failure: unknown;
    try {
      await this.writeBack();
    } catch (error) {
      failure = error;
    }
    try {
      // Frames go whatever happened: the CPU copies are all that is left.
      await this.migrator.releaseAllFrames();
    } finally {
      await this.stopServices();
      if (this.ownsDevice) this.device.destroy();
    }
    if (failure !== undefined) {
      throw new DeviceLostError(
        dirty,
        `writing back GPU-dirty pages failed: ${failure instanceof Error ? failure.message : typeof failure}`,
      );
    }
  }

  /** The GPU-dirty ranges now, as DeviceLostError reports them. */
  private unsavedRanges(): { va: number; len: number }[] {
    const pageSize = this.space.pageSize;
    return this.migrator
      .dirtyRuns()
      .map((run) => ({ va: run.first * pageSize, len: run.count * pageSize }));
  }

  /**
   * The device is gone (not by detach): the GPU-dirty bytes are lost with it.
   * Pages fall back to their CPU copies, waiting faults fail with
   * DeviceLostError, and every later call throws it, listing what could not
   * be saved. Writes acknowledged on the CPU side are all kept.
   */
  private async onDeviceLost(info: GPUDeviceLostInfo): Promise<void> {
    if (this.detached) return;
    this.detached = true;
    this.lost = { unsaved: this.unsavedRanges(), message: `${info.reason}: ${info.message}` };
    this.detaching = (async () => {
      try {
        await this.migrator.releaseAllFrames();
      } finally {
        await this.stopServices();
      }
    })();
    await this.detaching;
  }

  /** Ends fault service (completing what is left) and frees the mirror's GPU objects. */
  private async stopServices(): Promise<void> {
    const faults = this.internals.faults;
    faults.wakeServer();
    await this.faultService;
    // Requests that arrived after the last service: their pages are on the CPU now.
    for (const request of faults.take()) faults.complete(request, this.lost !== undefined);
    faults.stopServing(this.internals.threadId);
    this.stopNotices();
    this.internals.ownDevice(false);
    this.engine.destroy();
    for (const kernel of this.compiled) kernel.destroy();
    this.kernels?.destroy();
    this.dpt.destroy();
    this.frames.destroy();
  }

  private async writeBack(): Promise<MigrationResult> {
    const runs = this.migrator.dirtyRuns();
    if (runs.length === 0) return { pages: 0, bytes: 0 };
    return this.migrator.toCpu(runs, 'sync', false);
  }

  /** Services CPU faults until detach: every request pending at a wake-up in one batch. */
  private async serveFaults(): Promise<void> {
    const faults = this.internals.faults;
    while (!this.detached) {
      const seen = faults.doorbell();
      const requests = faults.take();
      if (requests.length === 0) {
        await faults.ring(seen, 60_000);
        continue;
      }
      const started = performance.now();
      const runs: PageRun[] = requests.map((request) => this.faultAround(request));
      let lost = false;
      try {
        const moved = await this.migrator.toCpu(mergeRuns(runs), 'fault-cpu', false);
        this.counters.cpuFaults += requests.length;
        this.emit({
          t: started,
          kind: 'fault',
          cause: 'fault-cpu',
          to: 'cpu',
          va: (runs[0]?.first ?? 0) * this.space.pageSize,
          len: runs.reduce((sum, run) => sum + run.count, 0) * this.space.pageSize,
          pages: moved.pages,
          bytes: moved.bytes,
          ms: performance.now() - started,
        });
      } catch {
        // A page freed meanwhile: the requester retries and sees the truth. A lost device: it is told.
        lost = this.lost !== undefined;
      }
      for (const request of requests) faults.complete(request, lost);
    }
  }

  /**
   * A faulting request grown over its GPU-owned neighbours (CPU fault-around):
   * outward from the request, within its aligned FAULT_AROUND_BYTES block and
   * its allocation, while the neighbour is on the GPU and nobody holds it (a
   * neighbour in use by a kernel must not delay the fault).
   */
  private faultAround(request: PageRun): PageRun {
    const { table } = this.internals;
    const allocation = this.internals.allocationRun(request.first);
    if (!allocation) return { first: request.first, count: request.count };
    const block = Math.max(1, FAULT_AROUND_BYTES / this.space.pageSize);
    const around = faultAroundRun(request.first, request.first + request.count, block, allocation);
    const [lo, hi] = [around.first, around.first + around.count];
    const idleOnGpu = (page: number): boolean =>
      (table.pte(page) & PTE_STATE_MASK) === PTE_GPU && !table.isHeld(page);
    let first = request.first;
    while (first > lo && idleOnGpu(first - 1)) first--;
    let end = request.first + request.count;
    while (end < hi && idleOnGpu(end)) end++;
    return { first, count: end - first };
  }

  private emit(event: TraceEvent): void {
    for (const listener of [...this.listeners]) listener(event);
  }

  private assertAttached(): void {
    if (this.lost) throw new DeviceLostError(this.lost.unsaved, this.lost.message);
    if (this.detached) throw new DeviceLostError([], 'the mirror was detached', 'detached');
  }
}

/** Sorted, merged runs: overlapping or touching runs become one. */
function mergeRuns(runs: readonly PageRun[]): PageRun[] {
  const sorted = [...runs].sort((a, b) => a.first - b.first);
  const out: { first: number; count: number }[] = [];
  for (const run of sorted) {
    const last = out[out.length - 1];
    if (last && run.first <= last.first + last.count) {
      last.count = Math.max(last.count, run.first + run.count - last.first);
    } else {
      out.push({ ...run });
    }
  }
  return out;
}

/**
 * The frame budget: `limit` is the device's binding limit, which must also
 * hold the special frames. The default never exceeds the space's own pages
 * (page 0 is never mapped): more frames could never be used.
 */
function chooseBudget(
  requested: number | undefined,
  limit: number,
  pageSize: number,
  spaceSize: number,
): number {
  const maxFrames = Math.min(Math.floor(limit / pageSize) - SPECIAL_FRAMES, DPTE_MAX_FRAMES);
  if (requested === undefined) {
    const spacePages = Math.floor(spaceSize / pageSize) - 1;
    return (
      Math.max(
        1,
        Math.min(
          Math.floor(limit / 4 / pageSize),
          DEFAULT_BUDGET_CAP / pageSize,
          maxFrames,
          spacePages,
        ),
      ) * pageSize
    );
  }
  if (!Number.isInteger(requested) || requested < pageSize) {
    throw new InvalidArgumentError(
      'budget',
      requested,
      'bad-value',
      `an integer of at least one page (${pageSize} bytes)`,
    );
  }
  if (requested > maxFrames * pageSize) {
    throw new InvalidArgumentError(
      'budget',
      requested,
      'too-large',
      `at most the device's storage binding limit, ${maxFrames * pageSize} bytes`,
    );
  }
  return Math.floor(requested / pageSize) * pageSize;
}

async function requestDevice(): Promise<GPUDevice> {
  const gpu = typeof navigator !== 'undefined' ? navigator.gpu : undefined;
  const adapter = await gpu?.requestAdapter();
  if (!adapter)
    throw new DeviceLostError([], 'no WebGPU adapter: navigator.gpu is missing or found none');
  return adapter.requestDevice({
    label: 'webhmm device',
    requiredLimits: {
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      maxBufferSize: adapter.limits.maxBufferSize,
    },
  });
}

/** createBuffer, with a refusal by the device turned into OutOfMemoryError. */
async function createGpuBuffer(
  device: GPUDevice,
  descriptor: GPUBufferDescriptor,
): Promise<GPUBuffer> {
  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('internal');
  const buffer = device.createBuffer(descriptor);
  const internal = await device.popErrorScope();
  const oom = await device.popErrorScope();
  const error = oom ?? internal;
  if (error) {
    buffer.destroy();
    throw new OutOfMemoryError(
      'device',
      descriptor.size,
      0,
      `the device refused ${descriptor.label ?? 'a buffer'}: ${error.message}`,
    );
  }
  return buffer;
}
