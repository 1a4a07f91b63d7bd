/**
 * The kernel runtime of one mirror: the GPU objects every kernel run shares
 * (status block, dirty and fault bitmaps, control uniform, uses table, a
 * readback buffer, the bind group layout of group 0), the kernels compiled
 * on it, and one dispatch of one pass.
 *
 * - Runs are serialized: one run's status and bitmaps are never mixed with
 *   another's.
 * - Lifecycle: `Kernel.compile` registers each kernel here and
 *   `kernel.destroy()` takes it out; `destroy()` destroys every live kernel,
 *   then the runtime's own buffers. Both are idempotent.
 */
import { invariant } from '../errors.ts';
import type { MirrorHost } from '../gpu/mirror-host.ts';
import {
  CONTROL_WORDS,
  DIRTY_PAGES_PER_WORD,
  FAULT_PAGES_PER_WORD,
  MODE_COLLECT,
  type MODE_RUN,
  NO_ERROR_VA,
  STATUS_ERROR_KINDS,
  STATUS_ERROR_VA,
  STATUS_FAULTED,
  STATUS_STORED,
  STATUS_RANGE_BOUNDS,
  STATUS_REFUSED_STORE,
  STATUS_WORDS,
  USE_WORDS,
} from './kernel-layout.ts';

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
   * MODE_COLLECT: stores suppressed; the fault bitmap is cleared before and
   * read back after. MODE_RUN: stores land; the dirty bitmap is cleared
   * before and read back after.
   */
  readonly mode: PassMode;
  /** Entries of the uses table the pass checks (setUses), or USES_ALL (fault mode). */
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

/** What the runtime keeps of a kernel compiled on it. */
export interface RuntimeKernel {
  /** Frees the kernel's GPU objects and takes it out of the runtime; idempotent. */
  destroy(): void;
}

/** A pass's status block, decoded. */
export interface PassStatus {
  readonly faulted: boolean;
  readonly stored: boolean;
  /** Lowest VA of an access error, or undefined. */
  readonly errorVa: number | undefined;
  readonly errorKinds: number;
  /** The frame word a refused `hmm_frame_store` aimed at (read tag included), or undefined. */
  readonly refusedStore: number | undefined;
  /** STATUS_RANGE_BOUNDS of a pass with an out-of-range named-range access, or undefined. */
  readonly rangeBounds: number | undefined;
  /**
   * The bitmap the pass filled, read back with the status in the same round
   * trip: the fault bitmap of a collecting pass, the dirty bitmap otherwise.
   */
  readonly bits: Uint32Array;
}

const INITIAL_STATUS = new Uint32Array(STATUS_WORDS);
INITIAL_STATUS[STATUS_ERROR_VA] = NO_ERROR_VA;
INITIAL_STATUS[STATUS_RANGE_BOUNDS] = NO_ERROR_VA;

export class KernelRuntime {
  readonly layout: GPUBindGroupLayout;
  readonly pipelineLayout: GPUPipelineLayout;
  private readonly status: GPUBuffer;
  private readonly dirty: GPUBuffer;
  private readonly faults: GPUBuffer;
  private readonly control: GPUBuffer;
  private uses: GPUBuffer;
  private usesCapacity = 16;
  private readonly readback: GPUBuffer;
  private readonly dirtyWords: number;
  private readonly faultWords: number;
  /** Bumped when a shared buffer is replaced, so kernels rebuild their bind groups. */
  generation = 0;
  private tail: Promise<unknown> = Promise.resolve();
  private pending = 0;
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
    this.dirty = device.createBuffer({
      label: 'webhmm dirty bitmap',
      size: this.dirtyWords * 4,
      usage: storage,
    });
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
    this.uses = this.createUses();
    this.readback = this.createReadback(
      (STATUS_WORDS + Math.max(this.dirtyWords, this.faultWords)) * 4,
    );
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

  /** True when no run is in flight or queued. */
  get idle(): boolean {
    return this.pending === 0;
  }

  /** Runs `work` after every run queued before it: one run at a time. */
  serialize<T>(work: () => Promise<T>): Promise<T> {
    this.pending++;
    const result = this.tail.then(work).finally(() => this.pending--);
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** Group 0 for a kernel whose parameters live in `params`. */
  bindGroup(params: GPUBuffer, label: string): GPUBindGroup {
    const resource = (buffer: GPUBuffer): GPUBindingResource => ({ buffer });
    return this.host.device.createBindGroup({
      label: `${label} group 0`,
      layout: this.layout,
      entries: [
        { binding: 0, resource: resource(this.host.frames) },
        { binding: 1, resource: resource(this.host.pageTable) },
        { binding: 2, resource: resource(this.dirty) },
        { binding: 3, resource: resource(this.faults) },
        { binding: 4, resource: resource(this.status) },
        { binding: 5, resource: resource(this.control) },
        { binding: 6, resource: resource(this.uses) },
        { binding: 7, resource: resource(params) },
      ],
    });
  }

  /** Uploads the uses table (USE_WORDS u32 per range); may replace the buffer (bumping `generation`). */
  setUses(table: Uint32Array<ArrayBuffer>): void {
    const ranges = table.length / USE_WORDS;
    if (ranges > this.usesCapacity) {
      this.uses.destroy();
      this.usesCapacity = 2 ** Math.ceil(Math.log2(ranges));
      this.uses = this.createUses();
      this.generation++;
    }
    if (table.length > 0) this.host.device.queue.writeBuffer(this.uses, 0, table);
  }

  /**
   * One pass: resets the status (and the bitmap the pass fills), dispatches,
   * and reads back the status block and that bitmap in one round trip.
   */
  async pass(options: PassOptions): Promise<PassStatus> {
    const { pipeline, group, workgroups, mode, uses, label } = options;
    const { device } = this.host;
    const collecting = mode === MODE_COLLECT;
    device.queue.writeBuffer(this.status, 0, INITIAL_STATUS);
    device.queue.writeBuffer(this.control, 0, new Uint32Array([mode, uses, 0, 0]));
    const encoder = device.createCommandEncoder({ label });
    if (collecting) encoder.clearBuffer(this.faults);
    else encoder.clearBuffer(this.dirty);
    const compute = encoder.beginComputePass({ label });
    compute.setPipeline(pipeline);
    compute.setBindGroup(0, group);
    compute.dispatchWorkgroups(...workgroups);
    compute.end();
    const [bitmap, bitmapWords] = collecting
      ? [this.faults, this.faultWords]
      : [this.dirty, this.dirtyWords];
    encoder.copyBufferToBuffer(this.status, 0, this.readback, 0, STATUS_WORDS * 4);
    encoder.copyBufferToBuffer(bitmap, 0, this.readback, STATUS_WORDS * 4, bitmapWords * 4);
    device.queue.submit([encoder.finish()]);
    const words = await this.read(STATUS_WORDS + bitmapWords);
    const errorVa = words[STATUS_ERROR_VA] ?? NO_ERROR_VA;
    const rangeBounds = words[STATUS_RANGE_BOUNDS] ?? NO_ERROR_VA;
    return {
      faulted: (words[STATUS_FAULTED] ?? 0) !== 0,
      stored: (words[STATUS_STORED] ?? 0) !== 0,
      errorVa: errorVa === NO_ERROR_VA ? undefined : errorVa,
      errorKinds: words[STATUS_ERROR_KINDS] ?? 0,
      refusedStore: words[STATUS_REFUSED_STORE]
        ? (words[STATUS_REFUSED_STORE] ?? 1) - 1
        : undefined,
      rangeBounds: rangeBounds === NO_ERROR_VA ? undefined : rangeBounds,
      bits: words.subarray(STATUS_WORDS),
    };
  }

  /** Destroys every live kernel, then the runtime's own buffers. Idempotent. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const kernel of [...this.kernels]) kernel.destroy();
    this.kernels.clear();
    for (const buffer of [
      this.status,
      this.dirty,
      this.faults,
      this.control,
      this.uses,
      this.readback,
    ]) {
      buffer.destroy();
    }
  }

  private async read(words: number): Promise<Uint32Array> {
    await this.readback.mapAsync(GPUMapMode.READ, 0, words * 4);
    const out = new Uint32Array(this.readback.getMappedRange(0, words * 4).slice(0));
    this.readback.unmap();
    return out;
  }

  private createUses(): GPUBuffer {
    return this.host.device.createBuffer({
      label: 'webhmm kernel uses',
      size: this.usesCapacity * USE_WORDS * 4,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
  }

  private createReadback(size: number): GPUBuffer {
    return this.host.device.createBuffer({
      label: 'webhmm kernel readback',
      size,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
  }
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
      entry(2, 'storage'), // dirty bitmap
      entry(3, 'storage'), // fault bitmap
      entry(4, 'storage'), // status block
      entry(5, 'uniform'), // control
      entry(6, 'read-only-storage'), // uses table
      entry(7, 'uniform'), // params
    ],
  });
}
