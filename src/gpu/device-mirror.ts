/**
 * DeviceMirror: one GPUDevice's view of an AddressSpace (HMM's device with
 * its own MMU), without kernels: GPU page frames (one storage buffer of
 * `budget` bytes), a device page table (VA page -> frame and flags), the
 * copy engine, migration, device-side reads and writes, and the service of
 * CPU faults. The public `GpuMirror` (mirror/gpu-mirror.ts) adds kernels.
 * The thread that attaches it owns the device and never blocks.
 *
 * Guarantees:
 * - Pages follow the page state table in docs/gpu-mirror.md; `migrate`
 *   moves only what changed (migration.ts).
 * - Frames in use never exceed the budget; a migration that would exceed it
 *   fails with OutOfMemoryError 'budget' and moves nothing.
 * - Changes other threads make (frees, protections, writes) reach the device
 *   page table in batches before each GPU use, never by re-uploading it whole.
 * - `detach()` writes every GPU-dirty page back, so waiting CPU faults
 *   complete normally, then destroys every GPU buffer the mirror made.
 *   It is idempotent; any other call after it throws DeviceLostError 'detached'.
 */
import { DeviceLostError, InvalidArgumentError } from '../errors.ts';
import { oneOf, viewBytes } from '../arguments.ts';
import type { AddressSpace } from '../space/address-space.ts';
import type { SpaceInternals } from '../space/internals.ts';
import { describePte, type PageSnapshot } from '../space/pte.ts';
import type { ChosenCopyEngine } from './copy-engines.ts';
import { serveCpuFaults } from './cpu-fault-service.ts';
import type { DevicePageTable } from './device-page-table.ts';
import type { FramePool } from './frame-pool.ts';
import { Migrator, type MigrationResult } from './migration.ts';
import type { MirrorHost } from './mirror-host.ts';
import type { MirrorParts } from './mirror-setup.ts';
import {
  emptyCounters,
  type MirrorStats,
  type TraceEvent,
  type TraceListener,
} from './mirror-stats.ts';

/** A GPU object the mirror destroys when it stops (detach or device loss). */
export interface MirrorResource {
  destroy(): void;
}

export class DeviceMirror {
  /** The device the mirror uses. */
  readonly device: GPUDevice;
  /** Bytes of GPU frames. */
  readonly budget: number;
  private readonly space: AddressSpace;
  private readonly internals: SpaceInternals;
  private readonly ownsDevice: boolean;
  private readonly frames: GPUBuffer;
  private readonly pool: FramePool;
  private readonly dpt: DevicePageTable;
  private readonly engine: ChosenCopyEngine;
  private readonly migrator: Migrator;
  private readonly counters = emptyCounters();
  private readonly listeners = new Set<TraceListener>();
  private readonly resources = new Set<MirrorResource>();
  private readonly stopNotices: () => void;
  private readonly faultService: Promise<void>;
  private detached = false;
  /** Set when the device was lost: the GPU-dirty ranges that could not be saved. */
  private lost:
    { readonly unsaved: { va: number; len: number }[]; readonly message: string } | undefined;
  private detaching: Promise<void> | undefined;

  protected constructor(parts: MirrorParts) {
    ({
      space: this.space,
      internals: this.internals,
      device: this.device,
      ownsDevice: this.ownsDevice,
      frames: this.frames,
      pool: this.pool,
      dpt: this.dpt,
      engine: this.engine,
      budget: this.budget,
    } = parts);
    this.migrator = new Migrator({
      ...parts,
      space: parts.internals,
      counters: this.counters,
      emit: (event) => this.emit(event),
    });
    this.stopNotices = this.space.onInvalidate(0, this.space.size, (event) =>
      this.migrator.applyNotice(event),
    );
    this.internals.ownDevice(true);
    this.faultService = serveCpuFaults({
      space: this.internals,
      migrator: this.migrator,
      counters: this.counters,
      emit: (event) => this.emit(event),
      stopped: () => this.detached,
      lost: () => this.lost !== undefined,
    });
    void this.device.lost.then((info) => this.onDeviceLost(info));
  }

  // ---------------------------------------------------------------- migration

  /**
   * Migrates the pages of [va, va + len): to 'gpu' makes them GPU-owned
   * (uploading only stale bytes), to 'cpu' makes GPU-owned pages `shared`
   * (reading back only dirty ones). Resolves when the transfer is complete.
   * @returns the pages and bytes actually moved
   * @throws AccessError (an unmapped, freed or `prot: 'none'` page: nothing moves)
   * @throws OutOfMemoryError 'budget' (the budget cannot hold the pages: nothing moves)
   */
  async migrate(va: number, len: number, to: 'gpu' | 'cpu'): Promise<MigrationResult> {
    this.assertAttached();
    const target = oneOf('to', to, ['gpu', 'cpu']);
    const run = this.internals.pageSpan(va, len);
    return target === 'gpu'
      ? this.migrator.toGpu([run], 'explicit', true)
      : this.migrator.toCpu([run], 'explicit', true);
  }

  /**
   * The state of each page of [va, va + len), changing nothing. It does no
   * asynchronous work today; it returns a promise because the answer may
   * have to come from another thread's mirror once a space has several.
   */
  snapshot(va: number, len: number): Promise<PageSnapshot[]> {
    this.assertAttached();
    this.internals.pollNotices();
    const { first, count } = this.internals.pageSpan(va, len);
    const out: PageSnapshot[] = [];
    for (let page = first; page < first + count; page++)
      out.push(describePte(this.internals.table.pte(page)));
    return Promise.resolve(out);
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
   * @throws InvalidArgumentError 'bad-value' (not a view), 'zero' (empty), 'misaligned'
   * @throws AccessError for unmapped, freed or non-writable pages; OutOfMemoryError 'budget'
   */
  async write(va: number, data: ArrayBufferView): Promise<void> {
    this.assertAttached();
    const bytes = viewBytes('data', data);
    if (va % 4 !== 0 || bytes.byteLength % 4 !== 0) {
      throw new InvalidArgumentError(
        'va',
        va,
        'misaligned',
        'device writes are 4-byte aligned in start and length',
        { address: va },
      );
    }
    return this.migrator.deviceWrite(va, bytes);
  }

  /** Writes every GPU-dirty page back to the CPU (only those); they become `shared`. */
  async sync(): Promise<MigrationResult> {
    this.assertAttached();
    return this.writeBack();
  }

  // ---------------------------------------------------------------- observation

  /** The mirror's counters (monotonic) and, not counters, its frames in use, budget and engine choice. */
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
   * @throws DeviceLostError if writing back failed, listing the pages that were not saved
   */
  detach(): Promise<void> {
    this.detaching ??= this.teardown();
    return this.detaching;
  }

  /** What the layers above (kernel runs) use of this mirror. */
  protected host(): MirrorHost {
    return {
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
    };
  }

  /** Destroys `resource` when the mirror stops (detach or device loss). */
  protected own(resource: MirrorResource): void {
    this.resources.add(resource);
  }

  /** @throws DeviceLostError once the mirror is detached or its device lost */
  protected assertAttached(): void {
    if (this.lost) throw new DeviceLostError(this.lost.unsaved, this.lost.message);
    if (this.detached) throw new DeviceLostError([], 'the mirror was detached', 'detached');
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
    const { pageSize } = this.space;
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
    const { faults } = this.internals;
    faults.wakeServer();
    await this.faultService;
    // Requests that arrived after the last service: their pages are on the CPU now.
    for (const request of faults.take()) faults.complete(request, this.lost !== undefined);
    faults.stopServing(this.internals.threadId);
    this.stopNotices();
    this.internals.ownDevice(false);
    this.engine.destroy();
    for (const resource of this.resources) resource.destroy();
    this.resources.clear();
    this.dpt.destroy();
    this.frames.destroy();
  }

  private async writeBack(): Promise<MigrationResult> {
    const runs = this.migrator.dirtyRuns();
    if (runs.length === 0) return { pages: 0, bytes: 0 };
    return this.migrator.toCpu(runs, 'sync', false);
  }

  private emit(event: TraceEvent): void {
    for (const listener of [...this.listeners]) listener(event);
  }
}
