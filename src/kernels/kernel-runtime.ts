/**
 * The kernel runtime of one mirror: the GPU objects every kernel run shares
 * (status block, dirty and fault bitmaps, control uniform, readback
 * buffers, the bind group layout of group 0), the kernels compiled
 * on it, the order runs submit in, and one dispatch of one pass.
 *
 * - Runs submit one at a time, in call order (`schedule`). A run with `uses`
 *   submits its pass into the open batch (run-batch.ts) and completes with
 *   it; the batch closes, issuing its one readback, once no run waits to
 *   submit, or earlier when a run must wait for it (declared-run.ts). A
 *   fault-mode run waits for every batch to complete and keeps the order
 *   until it completes itself: its passes read back one at a time.
 * - Each pass resets the shared status block and bitmap before it and copies
 *   them out after it, in queue order, so passes in flight never mix.
 * - Lifecycle: `Kernel.compile` registers each kernel here and
 *   `kernel.destroy()` takes it out; `destroy()` destroys every live kernel,
 *   then the runtime's own buffers. Both are idempotent.
 */
import { invariant } from '../errors.ts';
import { DPTE_DECLARED_SHIFT } from '../gpu/device-layout.ts';
import { noteCommandUse } from '../gpu/command-use.ts';
import type { MirrorHost } from '../gpu/mirror-host.ts';
import {
  CONTROL_WORDS,
  DIRTY_PAGES_PER_WORD,
  FAULT_PAGES_PER_WORD,
  MODE_COLLECT,
  STATUS_WORDS,
  USE_WORDS,
  type MODE_RUN,
} from './kernel-layout.ts';
import { DirtyPages } from './dirty-pages.ts';
import { decodeStatus, type PassStatus } from './pass-status.ts';
import { BatchBufferPool, RunBatch } from './run-batch.ts';

/** A dispatch size: workgroups in x, y and z, each 1 to 65535. */
export type Workgroups = readonly [number, number, number];

/** MODE_COLLECT (a fault-collecting pass) or MODE_RUN (the real pass). */
export type PassMode = typeof MODE_COLLECT | typeof MODE_RUN;

/** One pass of a kernel, as `KernelRuntime.pass` dispatches it. */
export interface PassOptions {
  readonly pipeline: GPUComputePipeline;
  readonly group: GPUBindGroup;
  readonly workgroups: Workgroups;
  /**
   * MODE_COLLECT (`pipeline` is the kernel's collecting variant): stores
   * suppressed; the fault bitmap is cleared before and read back after.
   * MODE_RUN: stores land; the dirty bitmap is cleared before and read back
   * after.
   */
  readonly mode: PassMode;
  /** How many use runs the pass declared (their access is in the page table entries), or USES_ALL (fault mode). */
  readonly uses: number;
  /** Labels the command encoder and the compute pass. */
  readonly label: string;
}

/**
 * One pass of one run of a kernel: its pipeline, bind group and workgroups
 * are bound already; the run chooses the mode and uses.
 * @throws InvalidArgumentError 'destroyed' once the kernel is destroyed
 */
export type Dispatch = (mode: PassMode, uses: number) => Promise<PassStatus>;

/** The real pass of a run with `uses`, to encode into a batch. */
export interface BatchDispatch {
  /** The run's parameters (with its named-range descriptors), staged with the pass. */
  readonly params: ArrayBuffer;
  /**
   * Encodes the pass into `batch` with `usesTable` (its status goes to the
   * batch's next slot).
   * @throws InvalidArgumentError 'destroyed' once the kernel is destroyed
   */
  submit(batch: RunBatch, usesTable: Uint32Array<ArrayBuffer>): void;
}

/**
 * Bytes a pass with `params` and `usesTable` stages in its batch at most
 * (16-aligned pieces): its control words, parameters, and its declared
 * pages' page table entries twice (with the declared bits, and plain).
 */
export function passStageBytes(params: ArrayBuffer, usesTable: Uint32Array): number {
  const aligned = (bytes: number) => Math.ceil(bytes / 16) * 16;
  let declared = 0;
  for (let row = 0; row < usesTable.length; row += USE_WORDS) {
    declared += 2 * aligned(4 * ((usesTable[row + 1] ?? 0) - (usesTable[row] ?? 0)));
  }
  return CONTROL_WORDS * 4 + aligned(params.byteLength) + declared;
}

/** A run that has submitted: its completion, to await once the order moved on. */
export interface Submitted<T> {
  readonly completion: Promise<T>;
}

/** What the runtime keeps of a kernel compiled on it. */
export interface RuntimeKernel {
  /** Frees the kernel's GPU objects and takes it out of the runtime; idempotent. */
  destroy(): void;
}

export class KernelRuntime {
  readonly layout: GPUBindGroupLayout;
  readonly pipelineLayout: GPUPipelineLayout;
  private readonly status: GPUBuffer;
  private readonly dirty: DirtyPages;
  private readonly faults: GPUBuffer;
  private readonly control: GPUBuffer;
  private readonly readback: GPUBuffer;
  private readonly dirtyWords: number;
  private readonly faultWords: number;
  /** Bumped when a shared buffer is replaced, so kernels rebuild their bind groups. */
  generation = 0;
  /** Settles when the last run scheduled has submitted (or failed to). */
  private submitTail: Promise<unknown> = Promise.resolve();
  /** Runs scheduled that have not submitted yet. */
  private submitting = 0;
  private batch: RunBatch | undefined;
  /** Completions of the batches closed and not yet completed. */
  private readonly completing = new Set<Promise<void>>();
  private readonly batchBuffers: BatchBufferPool;
  /** What the runtime's small buffers hold once the work queued so far ran (see `changes`). */
  private readonly queuedContents = new WeakMap<GPUBuffer, Uint8Array>();
  /** Buffers replaced or freed while passes encoded or in flight may still use them. */
  private retired: GPUBuffer[] = [];
  private readonly kernels = new Set<RuntimeKernel>();
  private destroyed = false;

  constructor(readonly host: MirrorHost) {
    const { device } = host;
    const pageCount = host.space.table.pageCount;
    this.dirtyWords = Math.ceil(pageCount / DIRTY_PAGES_PER_WORD);
    this.faultWords = Math.ceil(pageCount / FAULT_PAGES_PER_WORD);
    const storage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    this.status = device.createBuffer({
      label: 'webhmm kernel status',
      size: STATUS_WORDS * 4,
      usage: storage,
    });
    this.dirty = new DirtyPages(device, this.dirtyWords);
    this.faults = device.createBuffer({
      label: 'webhmm fault bitmap',
      size: this.faultWords * 4,
      usage: storage,
    });
    this.control = device.createBuffer({
      label: 'webhmm kernel control',
      size: CONTROL_WORDS * 4,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    this.readback = this.createReadback(
      (STATUS_WORDS + Math.max(this.dirtyWords, this.faultWords)) * 4,
    );
    this.batchBuffers = new BatchBufferPool(device, (STATUS_WORDS + this.dirtyWords) * 4);
    this.layout = groupZeroLayout(device);
    this.pipelineLayout = device.createPipelineLayout({
      label: 'webhmm kernel layout',
      bindGroupLayouts: [this.layout],
    });
  }

  /** Kernels compiled on this runtime and not destroyed yet (for tests; not public API). */
  get liveKernels(): number {
    return this.kernels.size;
  }

  /** Records a kernel compiled on this runtime, to be destroyed with it. */
  register(kernel: RuntimeKernel): void {
    invariant(!this.destroyed, 'a kernel compiled on a destroyed runtime');
    this.kernels.add(kernel);
  }

  /** Forgets a kernel (it was destroyed). */
  unregister(kernel: RuntimeKernel): void {
    this.kernels.delete(kernel);
  }

  /** True when no run waits to submit: a run called now is next. */
  get idle(): boolean {
    return this.submitting === 0;
  }

  /**
   * Runs `submit` once every run scheduled before it has submitted (call
   * order), and resolves with its completion. When no run waits to submit
   * any more, the open batch closes.
   */
  schedule<T>(submit: () => Promise<Submitted<T>>): Promise<T> {
    this.submitting++;
    const submitted = this.submitTail.then(submit).finally(() => {
      if (--this.submitting === 0) void this.closeBatch();
    });
    this.submitTail = submitted.catch(() => undefined);
    return submitted.then((run) => run.completion);
  }

  /**
   * The open batch if it takes a pass staging `stageBytes` more, else a new
   * one (closing the open one).
   */
  openBatch(stageBytes: number): RunBatch {
    if (this.batch?.open && this.batch.fits(stageBytes)) return this.batch;
    void this.closeBatch();
    this.batch = new RunBatch(
      this.host,
      this.batchBuffers.take(stageBytes),
      STATUS_WORDS + this.dirtyWords,
      (buffers, reusable) => this.batchBuffers.give(buffers, reusable),
    );
    return this.batch;
  }

  /** Closes the open batch, if it has runs, submitting it and issuing its readback; resolves once it completed. */
  closeBatch(): Promise<void> {
    const batch = this.batch;
    this.batch = undefined;
    if (!batch || batch.size === 0) {
      if (batch) {
        batch.discard();
        this.batchBuffers.give(batch.buffers, true);
      }
      return Promise.resolve();
    }
    const completion = batch.complete();
    this.completing.add(completion);
    void completion.finally(() => {
      this.completing.delete(completion);
      this.destroyRetired();
    });
    return completion;
  }

  /**
   * Destroys `buffer` once no pass encoded or in flight may use it: now, or
   * when the batches open or in flight completed.
   */
  retire(buffer: GPUBuffer): void {
    this.retired.push(buffer);
    this.destroyRetired();
  }

  /** Closes the open batch and waits until every batch closed has completed. */
  async drain(): Promise<void> {
    await this.closeBatch();
    await Promise.all([...this.completing]);
  }

  /** Group 0 for a kernel whose parameters live in `params`. */
  bindGroup(params: GPUBuffer, label: string): GPUBindGroup {
    const resource = (buffer: GPUBuffer): GPUBindingResource => ({ buffer });
    noteCommandUse(this.host.frames); // the runs it is made for use the frames
    return this.host.device.createBindGroup({
      label: `${label} group 0`,
      layout: this.layout,
      entries: [
        { binding: 0, resource: resource(this.host.frames) },
        { binding: 1, resource: resource(this.host.pageTable) },
        { binding: 2, resource: resource(this.dirty.pageWords) },
        { binding: 3, resource: resource(this.faults) },
        { binding: 4, resource: resource(this.status) },
        { binding: 5, resource: resource(this.control) },
        { binding: 7, resource: resource(params) },
      ],
    });
  }

  /**
   * Writes `data` to the start of a uniform or table buffer only the runtime
   * writes, now, in queue order.
   */
  write(buffer: GPUBuffer, data: Uint32Array<ArrayBuffer> | ArrayBuffer): void {
    if (this.changes(buffer, data)) this.host.device.queue.writeBuffer(buffer, 0, data);
  }

  /**
   * Whether `data` differs from what `buffer` holds once the work queued so
   * far ran; records `data` as what it will hold. So a chain of runs with the
   * same parameters and uses copies them once.
   */
  private changes(buffer: GPUBuffer, data: Uint32Array<ArrayBuffer> | ArrayBuffer): boolean {
    const bytes = new Uint8Array(
      data instanceof ArrayBuffer ? data : data.buffer,
      data instanceof ArrayBuffer ? 0 : data.byteOffset,
      data.byteLength,
    );
    const queued = this.queuedContents.get(buffer);
    if (queued?.length === bytes.length && queued.every((byte, i) => byte === bytes[i]))
      return false;
    this.queuedContents.set(buffer, bytes.slice());
    return true;
  }

  /**
   * One pass on its own (fault mode): resets the status (and the bitmap the
   * pass fills), dispatches, and reads back the status block and that bitmap
   * in one round trip.
   */
  async pass(options: PassOptions): Promise<PassStatus> {
    const { device } = this.host;
    const collecting = options.mode === MODE_COLLECT;
    this.write(this.control, new Uint32Array([options.uses, 0, 0, 0]));
    const encoder = device.createCommandEncoder({ label: options.label });
    this.encodePass(encoder, options, collecting, [this.readback, 0]);
    device.queue.submit([encoder.finish()]);
    return decodeStatus(
      await this.read(STATUS_WORDS + (collecting ? this.faultWords : this.dirtyWords)),
    );
  }

  /**
   * The real pass of a run with `uses`, encoded into `batch`: its control
   * words and `params` (into `params.buffer`) are staged and copied in
   * right before it where they change, and its declared pages' entries
   * (declarePages); its status and dirty
   * bitmap go to the batch's next slot right after.
   */
  submitPass(
    batch: RunBatch,
    options: Omit<PassOptions, 'mode'>,
    params: { readonly buffer: GPUBuffer; readonly data: ArrayBuffer },
    usesTable: Uint32Array<ArrayBuffer>,
  ): void {
    const { encoder } = batch;
    const copyIn = (data: Uint32Array<ArrayBuffer> | ArrayBuffer, to: GPUBuffer): void => {
      const bytes = data.byteLength;
      if (bytes === 0 || !this.changes(to, data)) return;
      encoder.copyBufferToBuffer(batch.buffers.staging, batch.stage(data), to, 0, bytes);
    };
    copyIn(new Uint32Array([options.uses, 0, 0, 0]), this.control);
    copyIn(params.data, params.buffer);
    const restore = this.declarePages(batch, usesTable);
    this.encodePass(
      encoder,
      options,
      false,
      [batch.readback, batch.nextSlotOffset],
      declaredSpan(usesTable),
    );
    restore();
  }

  /**
   * Copies into the device page table, right before the pass, the entries of
   * the pages the pass declared with their USE_* bits at DPTE_DECLARED_SHIFT
   * (one load tells a translation the frame and what the run declared: no
   * search of the uses table); returns what copies the plain entries back
   * right after it, so the next pass sees only its own.
   */
  private declarePages(batch: RunBatch, usesTable: Uint32Array): () => void {
    const { encoder } = batch;
    const { host } = this;
    const plain: { first: number; offset: number; bytes: number }[] = [];
    for (let row = 0; row < usesTable.length; row += USE_WORDS) {
      const first = usesTable[row] ?? 0;
      const count = (usesTable[row + 1] ?? 0) - first;
      const access = (usesTable[row + 2] ?? 0) << DPTE_DECLARED_SHIFT;
      const entries = new Uint32Array(count);
      for (let i = 0; i < count; i++) entries[i] = host.pageTableEntry(first + i);
      plain.push({ first, offset: batch.stage(entries), bytes: count * 4 });
      for (let i = 0; i < count; i++) entries[i] = (entries[i] ?? 0) | access;
      const staged = batch.stage(entries);
      encoder.copyBufferToBuffer(
        batch.buffers.staging,
        staged,
        host.pageTable,
        first * 4,
        count * 4,
      );
    }
    return () => {
      for (const { first, offset, bytes } of plain) {
        encoder.copyBufferToBuffer(batch.buffers.staging, offset, host.pageTable, first * 4, bytes);
      }
    };
  }

  /** Destroys every live kernel, then the runtime's own buffers. Idempotent. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const kernel of [...this.kernels]) kernel.destroy();
    this.kernels.clear();
    this.dirty.destroy();
    for (const buffer of [this.status, this.faults, this.control, this.readback, ...this.retired]) {
      buffer.destroy();
    }
    this.batchBuffers.destroy();
    this.retired = [];
  }

  /**
   * Encodes one pass: clears the status block and the bitmap it fills,
   * dispatches, packs a real pass's dirty page words of the pages it may
   * mark (`markable`) into the dirty bitmap (dirty-pages.ts), and copies the status and the bitmap to
   * the readback buffer at its offset. Queue order keeps passes in flight apart: the
   * next pass's clear comes after this pass's copy.
   */
  private encodePass(
    encoder: GPUCommandEncoder,
    options: Omit<PassOptions, 'mode' | 'uses'>,
    collecting: boolean,
    [readback, offset]: readonly [GPUBuffer, number],
    markable: readonly [firstPage: number, endPage: number] = [0, Infinity],
  ): void {
    const { pipeline, group, workgroups, label } = options;
    const [bitmap, bitmapWords] = collecting
      ? [this.faults, this.faultWords]
      : [this.dirty.bitmap, this.dirtyWords];
    // A cleared status block means no fault, store or error (kernel-layout.ts).
    encoder.clearBuffer(this.status);
    encoder.clearBuffer(bitmap);
    const compute = encoder.beginComputePass({ label });
    compute.setPipeline(pipeline);
    compute.setBindGroup(0, group);
    compute.dispatchWorkgroups(...workgroups);
    if (!collecting) this.dirty.encodePack(compute, ...markable);
    compute.end();
    encoder.copyBufferToBuffer(this.status, 0, readback, offset, STATUS_WORDS * 4);
    encoder.copyBufferToBuffer(bitmap, 0, readback, offset + STATUS_WORDS * 4, bitmapWords * 4);
  }

  /** Destroys the retired buffers once no batch is open with passes or in flight. */
  private destroyRetired(): void {
    if ((this.batch && this.batch.size > 0) || this.completing.size > 0) return;
    for (const buffer of this.retired) buffer.destroy();
    this.retired = [];
  }

  private async read(words: number): Promise<Uint32Array> {
    await this.readback.mapAsync(GPUMapMode.READ, 0, words * 4);
    const out = new Uint32Array(this.readback.getMappedRange(0, words * 4).slice(0));
    this.readback.unmap();
    return out;
  }

  private createReadback(size: number): GPUBuffer {
    return this.host.device.createBuffer({
      label: 'webhmm kernel readback',
      size,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
  }
}

/** The pages a declared pass may store to lie in [first, end): the span of its uses table's rows. */
function declaredSpan(usesTable: Uint32Array): readonly [number, number] {
  let first = Infinity;
  let end = 0;
  for (let row = 0; row < usesTable.length; row += USE_WORDS) {
    first = Math.min(first, usesTable[row] ?? 0);
    end = Math.max(end, usesTable[row + 1] ?? 0);
  }
  return end > 0 ? [first, end] : [0, 0];
}

/**
 * The bind group layout of group 0, the prelude's bindings in order. Every
 * runtime builds it from this same descriptor, so layouts of different
 * runtimes on one device are group-equivalent (pipeline-cache.ts relies on it).
 */
function groupZeroLayout(device: GPUDevice): GPUBindGroupLayout {
  const entry = (binding: number, type: GPUBufferBindingType): GPUBindGroupLayoutEntry => ({
    binding,
    visibility: GPUShaderStage.COMPUTE,
    buffer: { type },
  });
  return device.createBindGroupLayout({
    label: 'webhmm prelude group 0',
    entries: [
      entry(0, 'storage'), // frames
      entry(1, 'read-only-storage'), // device page table
      entry(2, 'storage'), // dirty page words (dirty-pages.ts)
      entry(3, 'storage'), // fault bitmap
      entry(4, 'storage'), // status block
      entry(5, 'uniform'), // control
      entry(7, 'uniform'), // params
    ],
  });
}
