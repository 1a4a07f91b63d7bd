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
 * - Every public call registers while in flight (kernel runs too, through
 *   the Kernel objects GpuMirror hands out). `detach()` refuses new calls
 *   (DeviceLostError 'detached'), waits for those in flight, writes every
 *   GPU-dirty page back, so waiting CPU faults complete normally, takes every
 *   frame back and destroys every GPU buffer the mirror made. It always
 *   ends: a page held past faultTimeoutMs is released without its hold
 *   (frame-release.ts) and named in its error. It is idempotent.
 * - Device loss (device-loss.ts): `lost` resolves once with the exact
 *   unsaved ranges; pending and later calls reject with DeviceLostError
 *   carrying them; the pages fall back to their CPU copies.
 * - With the `writeBack` option, acknowledged dirty pages are written back
 *   in the background past an age or a byte bound (write-back.ts).
 */
import { DeviceLostError } from '../errors.ts';
import { alignedWords, oneOf } from '../arguments.ts';
import type { AddressSpace } from '../space/address-space.ts';
import type { SpaceInternals } from '../space/internals.ts';
import { describePte, isGpuDirty, type PageSnapshot } from '../space/pte.ts';
import { applyAdvice, checkAdvice, type Advice } from './advice.ts';
import type { ChosenCopyEngine } from './copy-engines.ts';
import { serveCpuFaults } from './cpu-fault-service.ts';
import { readOnDevice, writeOnDevice } from './device-access.ts';
import type { DevicePageTable } from './device-page-table.ts';
import type { FramePool } from './frame-pool.ts';
import { heldPastTimeout } from './frame-release.ts';
import { LossWatch, type DeviceLoss } from './device-loss.ts';
import { Migrator, type MigrationResult } from './migration.ts';
import { prefetch, type PrefetchResult } from './prefetch.ts';
import { BackgroundWriteBack, type WriteBackOptions } from './write-back.ts';
import type { MirrorHost } from './mirror-host.ts';
import type { FaultPrefetch, MirrorParts } from './mirror-setup.ts';
import {
  emitTo,
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
  /**
   * Resolves once, only if the device is lost (never on detach), with what
   * the loss took: `unsaved`, the GPU-dirty byte ranges acknowledged writes
   * left that could not be read back (coalesced; runs in flight are rejected,
   * not listed). Every pending and later call then rejects with
   * DeviceLostError carrying the same list; `stats()` still works and
   * `detach()` resolves.
   */
  readonly lost: Promise<DeviceLoss>;
  /** Bytes of GPU frames. */
  readonly budget: number;
  private readonly faultPrefetch: FaultPrefetch;
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
  /** Calls in flight (migrations, device reads and writes, syncs, kernel runs): detach waits for them. */
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Set when detach began (or the device was lost): new calls are refused. */
  private closing = false;
  /** Set once the mirror stops serving: its GPU objects go next. */
  private stopped = false;
  /** The device's loss, once it happens (device-loss.ts). */
  private readonly loss: LossWatch;
  /** Background write-back, with the `writeBack` option (write-back.ts). */
  private readonly background: BackgroundWriteBack | undefined;
  private detaching: Promise<void> | undefined;
  /** Taking the frames back and stopping the services: once, for detach and loss alike. */
  private finishing: Promise<number[]> | undefined;

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
    this.faultPrefetch = parts.prefetch;
    this.loss = new LossWatch(this.device, this.space.pageSize);
    this.lost = this.loss.lost;
    this.migrator = new Migrator({
      ...parts,
      space: parts.internals,
      counters: this.counters,
      emit: (event) => this.emit(event),
      assertLive: () => this.loss.assertLive(),
      lostBy: (error) => this.loss.causedBy(error),
      dirtied: (pages) => this.background?.dirtied(pages),
    });
    this.background = parts.writeBack && this.backgroundWriteBack(parts.writeBack);
    this.stopNotices = this.space.onInvalidate(0, this.space.size, (event) =>
      this.migrator.applyNotice(event),
    );
    this.internals.ownDevice(true);
    this.faultService = serveCpuFaults({
      space: this.internals,
      migrator: this.migrator,
      counters: this.counters,
      emit: (event) => this.emit(event),
      stopped: () => this.stopped,
      lostBy: (error) => this.loss.causedBy(error),
      unsavedIn: (request) => this.loss.unsavedIn(request),
    });
    // Registered before any call can wait on device.lost: the loss is recorded first.
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
   * @throws WouldBlockError 'reentrant' inside an access() or acquire() scope of the range
   */
  migrate(va: number, len: number, to: 'gpu' | 'cpu'): Promise<MigrationResult> {
    // Tracked, so that a detach waits for it before it takes the frames back.
    return this.track(() => {
      const target = oneOf('to', to, ['gpu', 'cpu']);
      const run = { ...this.internals.pageSpan(va, len), va };
      this.internals.assertNotInScope(run.first, run.count, va);
      return target === 'gpu'
        ? this.migrator.toGpu([run], 'explicit', true)
        : this.migrator.toCpu([run], 'explicit', true);
    });
  }

  /**
   * A hint that [va, va + len) is about to be used on `to`'s side, acted on
   * at once (prefetch.ts): to 'gpu' pages become resident (`zero`/`cpu` ->
   * `shared`), to 'cpu' GPU-owned pages come back (-> `shared`). Accesses
   * that would change a page's state meanwhile wait for it; it holds
   * nothing once it resolves. The part beyond what the budget can hold is
   * ignored (`ignored` bytes, counted in `ignoredHints`, traced).
   * @throws AccessError (an unmapped, freed or `prot: 'none'` page: nothing moves)
   * @throws WouldBlockError 'reentrant' inside an access() or acquire() scope of the range
   */
  prefetch(va: number, len: number, to: 'gpu' | 'cpu'): Promise<PrefetchResult> {
    return this.track(() => {
      const target = oneOf('to', to, ['gpu', 'cpu']);
      const run = { ...this.internals.pageSpan(va, len), va };
      this.internals.assertNotInScope(run.first, run.count, va);
      const { internals: space, migrator, counters } = this;
      const emit = (event: TraceEvent): void => this.emit(event);
      const assertLive = (): void => this.loss.assertLive();
      const { device } = this;
      return prefetch({ device, space, migrator, counters, emit, assertLive }, run, target);
    });
  }

  /**
   * Advice for the pages of [va, va + len) on this mirror (advice.ts): where
   * they rest and what eviction and prefetch do, never what reads return.
   * Omitted fields stay as they were; `snapshot` shows it (`advice`).
   * @throws AccessError (an unmapped or freed page: nothing changes)
   * @throws InvalidArgumentError 'bad-value' for advice other than `{ readMostly?, preferred? }`
   */
  advise(va: number, len: number, advice: Advice): void {
    this.assertAttached();
    const checked = checkAdvice(advice);
    const run = { ...this.internals.pageSpan(va, len), va };
    this.migrator.precheck([run], false);
    applyAdvice(this.internals.table, run, checked);
    if (checked.readMostly || checked.preferred === 'cpu') this.migrator.through.advised = true;
  }

  /**
   * The state of each page of [va, va + len), changing nothing (a promise:
   * with several mirrors the answer may have to come from another thread's).
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
   * @throws WouldBlockError 'reentrant' inside an access() or acquire() scope of the range
   */
  read(va: number, len: number): Promise<Uint8Array> {
    return this.track(() => {
      this.assertOutsideScopes(va, len);
      return readOnDevice(this.migrator, va, len);
    });
  }

  /**
   * Writes `data` at `va` on the device (4-byte aligned start and length):
   * the pages become `gpu` and dirty.
   * @throws InvalidArgumentError 'bad-value' (not a view), 'zero' (empty), 'misaligned'
   * @throws AccessError for unmapped, freed or non-writable pages; OutOfMemoryError 'budget'
   * @throws WouldBlockError 'reentrant' inside an access() or acquire() scope of the range
   */
  write(va: number, data: ArrayBufferView): Promise<void> {
    return this.track(() => {
      const bytes = alignedWords(va, data, 'device writes');
      this.assertOutsideScopes(va, bytes.byteLength);
      return writeOnDevice(this.migrator, va, bytes);
    });
  }

  /** Writes every GPU-dirty page back to the CPU (only those); they become `shared`. */
  sync(): Promise<MigrationResult> {
    return this.track(() => this.writeBack());
  }

  // ---------------------------------------------------------------- observation

  /** The mirror's counters (monotonic) and, not counters, its frames in use, budget and engine choice. */
  stats(): MirrorStats {
    this.migrator.frameMap.releaseQuarantined(); // frames the device has let go of are free
    return {
      ...this.counters,
      bytesByCause: { ...this.counters.bytesByCause },
      framesInUse: this.pool.inUse,
      budget: this.budget,
      copyEngine: this.engine.choice(),
      staleBytesWritten: this.internals.table.staleBytesWritten,
    };
  }

  /** Calls `listener` with one event per migration batch and per fault; returns the unsubscribe function. */
  trace(listener: TraceListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * Waits for the calls in flight (migrations, device reads and writes,
   * syncs, kernel runs; calls made from now on reject with DeviceLostError
   * 'detached'), writes back every GPU-dirty page, lets waiting CPU faults
   * complete from them, takes every frame back (pages become `cpu` with
   * their CPU bytes), and destroys every GPU buffer the mirror made (and the
   * device, if the mirror requested it). Idempotent. After a device loss it
   * resolves.
   * @throws DeviceLostError if the device was lost while it wrote back, listing what was not saved
   * @throws WouldBlockError 'timeout' if pages were held by others past
   *   faultTimeoutMs: it names them; they lost their frames without the hold
   *   (their CPU copies are current: a CPU hold never rests on a GPU-dirty
   *   page) and are readable `cpu` pages; the mirror is detached all the same
   */
  detach(): Promise<void> {
    // After a loss, detach resolves (a detach in progress at the loss rejects with it).
    if (this.loss.current) return this.finish().then(() => undefined);
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
      pageTableEntry: (page) => this.dpt.entry(page),
      migrator: this.migrator,
      faultPrefetch: this.faultPrefetch,
      counters: this.counters,
      beforeGpuUse: (beforeTableWrite) => {
        this.internals.pollNotices();
        if (this.dpt.changes) beforeTableWrite?.();
        this.dpt.flush();
      },
      // A run called before detach began goes on while detach waits for it.
      assertAttached: () => this.assertUsable(),
    };
  }

  /**
   * Runs a public call as one in flight: refused (DeviceLostError) once detach
   * began or the device was lost; detach waits for it to end. A call that
   * fails because of a device loss rejects with the loss's DeviceLostError.
   */
  protected track<T>(call: () => Promise<T>): Promise<T> {
    let started: Promise<T>;
    try {
      this.assertAttached();
      started = call();
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    const promise = started.catch(async (error: unknown) => {
      if (await this.loss.causedBy(error)) throw this.loss.error();
      throw error;
    });
    this.inFlight.add(promise);
    const forget = (): void => void this.inFlight.delete(promise);
    promise.then(forget, forget);
    return promise;
  }

  /**
   * A device access of a range this thread holds in an access() or acquire()
   * scope would wait for the scope, which waits for it.
   * @throws WouldBlockError 'reentrant'; as `pageSpan`
   */
  private assertOutsideScopes(va: number, len: number): void {
    const { first, count } = this.internals.pageSpan(va, len);
    this.internals.assertNotInScope(first, count, va);
  }

  /** Destroys `resource` when the mirror stops (detach or device loss). */
  protected own(resource: MirrorResource): void {
    this.resources.add(resource);
  }

  /** @throws DeviceLostError once detach began or the device was lost: for new calls */
  protected assertAttached(): void {
    this.loss.assertLive();
    if (this.closing) throw new DeviceLostError([], 'the mirror was detached', 'detached');
  }

  /** @throws DeviceLostError once the device was lost or the mirror stopped: for calls in flight */
  private assertUsable(): void {
    this.loss.assertLive();
    if (this.stopped) throw new DeviceLostError([], 'the mirror was detached', 'detached');
  }

  /** Background write-back over this mirror's pages; its passes are in flight like calls (detach waits). */
  private backgroundWriteBack(options: WriteBackOptions): BackgroundWriteBack {
    const { table } = this.internals;
    return new BackgroundWriteBack(options, {
      pageSize: this.space.pageSize,
      isDirty: (page) => isGpuDirty(table.pte(page)),
      isHeld: (page) => table.isHeld(page),
      writeBack: (runs) => {
        if (this.closing) return Promise.resolve();
        const pass = this.migrator.toCpu(runs, 'writeback', false).then(() => undefined);
        this.inFlight.add(pass);
        const forget = (): void => void this.inFlight.delete(pass);
        pass.then(forget, forget);
        return pass;
      },
    });
  }

  /** Resolves once no call is in flight (calls are refused by then, so none starts). */
  private async settled(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private async teardown(): Promise<void> {
    this.closing = true;
    this.background?.stop();
    await this.settled();
    let failure: unknown;
    let dirty: { va: number; len: number }[] = [];
    try {
      if (!this.loss.current) await this.writeBack();
    } catch (error) {
      if (!(await this.loss.causedBy(error))) {
        failure = error;
        dirty = this.unsavedRanges();
      }
    }
    // Frames go whatever happened: the CPU copies are all that is left.
    const forced = await this.finish();
    if (this.loss.current) throw this.loss.error();
    if (failure !== undefined) {
      throw new DeviceLostError(
        dirty,
        `writing back GPU-dirty pages failed: ${failure instanceof Error ? failure.message : typeof failure}`,
      );
    }
    if (forced.length > 0) {
      const { pageSize } = this.space;
      throw heldPastTimeout(forced, pageSize, this.internals.limits.faultTimeoutMs);
    }
  }

  /** Takes every frame back and stops the services, once; resolves with the pages released without their hold. */
  private finish(): Promise<number[]> {
    this.finishing ??= (async () => {
      try {
        return await this.migrator.releaseAllFrames();
      } finally {
        await this.stopServices();
        if (this.ownsDevice) this.device.destroy();
      }
    })();
    return this.finishing;
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
   * Records the loss first, synchronously (device-loss.ts: what is dirty now
   * is exactly what acknowledged writes left), then waits for the calls in
   * flight to fail, falls the pages back to their CPU copies (waiting faults
   * fail with DeviceLostError) and stops. Writes acknowledged on the CPU side
   * are all kept.
   */
  private async onDeviceLost(info: GPUDeviceLostInfo): Promise<void> {
    if (this.stopped) return;
    this.closing = true;
    this.background?.stop();
    const dirty: number[] = [];
    for (const run of this.migrator.dirtyRuns()) {
      for (let page = run.first; page < run.first + run.count; page++) dirty.push(page);
    }
    this.loss.record(info, dirty, this.internals.table.pageCount);
    this.internals.faults.wakeServer();
    await this.settled();
    await this.finish();
  }

  /** Ends fault service (completing what is left) and frees the mirror's GPU objects. */
  private async stopServices(): Promise<void> {
    this.stopped = true;
    const { faults } = this.internals;
    faults.wakeServer();
    await this.faultService;
    // Requests that came after the last service: their pages are on the CPU now.
    const lost = this.loss.current !== undefined;
    for (const request of faults.take()) {
      const result =
        lost && request.kind !== 'push' ? 'device-lost' : request.kind === 'fetch' ? 'ok' : 'retry';
      faults.complete(request, result, this.loss.unsavedIn(faults.pagesOf(request)));
    }
    faults.stopServing(this.internals.threadId);
    this.migrator.forgetPolicy(); // advice and pins are the mirror's
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
    emitTo(this.listeners, event);
  }
}
