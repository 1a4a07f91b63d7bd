/**
 * The kernel runtime of one mirror: the GPU objects every kernel run shares
 * (status block, dirty and fault bitmaps, control uniform, uses table, a
 * readback buffer, the bind group layout of group 0) and one dispatch of one
 * pass. Runs are serialized: one run's status and bitmaps are never mixed
 * with another's.
 */
import type { SpaceInternals } from '../space/internals.ts';
import type { Migrator } from '../gpu/migration.ts';
import type { MirrorStats } from '../gpu/mirror-stats.ts';
import {
  CONTROL_WORDS,
  DIRTY_PAGES_PER_WORD,
  FAULT_PAGES_PER_WORD,
  NO_ERROR_VA,
  STATUS_ERROR_VA,
  STATUS_WORDS,
  USE_WORDS,
} from './kernel-layout.ts';

/** What the runtime needs of its mirror. */
export interface KernelHost {
  readonly device: GPUDevice;
  readonly space: SpaceInternals;
  /** Frames, then the zero frame, then the sink frame. */
  readonly frames: GPUBuffer;
  readonly zeroFrame: number;
  readonly sinkFrame: number;
  readonly pageTable: GPUBuffer;
  readonly migrator: Migrator;
  readonly counters: Omit<MirrorStats, 'framesInUse' | 'budget' | 'copyEngine'>;
  /** Applies pending invalidation notices and uploads changed page table entries. */
  beforeGpuUse(): void;
  /** @throws DeviceLostError once detached or lost */
  assertAttached(): void;
}

export type Workgroups = readonly [number, number, number];

/** A pass's status block, decoded. */
export interface PassStatus {
  readonly faulted: boolean;
  readonly stored: boolean;
  /** Lowest VA of an access error, or undefined. */
  readonly errorVa: number | undefined;
  readonly errorKinds: number;
  /**
   * The bitmap the pass filled, read back with the status in the same round
   * trip: the fault bitmap of a collecting pass, the dirty bitmap otherwise.
   */
  readonly bits: Uint32Array;
}

const INITIAL_STATUS = new Uint32Array(STATUS_WORDS);
INITIAL_STATUS[STATUS_ERROR_VA] = NO_ERROR_VA;

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

  constructor(readonly host: KernelHost) {
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
    const entry = (binding: number, type: GPUBufferBindingType): GPUBindGroupLayoutEntry => ({
      binding,
      visibility: GPUShaderStage.COMPUTE,
      buffer: { type },
    });
    this.layout = device.createBindGroupLayout({
      label: 'webhmm prelude group 0',
      entries: [
        entry(0, 'storage'),
        entry(1, 'read-only-storage'),
        entry(2, 'storage'),
        entry(3, 'storage'),
        entry(4, 'storage'),
        entry(5, 'uniform'),
        entry(6, 'read-only-storage'),
        entry(7, 'uniform'),
      ],
    });
    this.pipelineLayout = device.createPipelineLayout({
      label: 'webhmm kernel layout',
      bindGroupLayouts: [this.layout],
    });
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
  async pass(
    pipeline: GPUComputePipeline,
    group: GPUBindGroup,
    workgroups: Workgroups,
    mode: number,
    uses: number,
    resetFaults: boolean,
    label: string,
  ): Promise<PassStatus> {
    const { device } = this.host;
    device.queue.writeBuffer(this.status, 0, INITIAL_STATUS);
    device.queue.writeBuffer(this.control, 0, new Uint32Array([mode, uses, 0, 0]));
    const encoder = device.createCommandEncoder({ label });
    if (resetFaults) encoder.clearBuffer(this.faults);
    else encoder.clearBuffer(this.dirty);
    const compute = encoder.beginComputePass({ label });
    compute.setPipeline(pipeline);
    compute.setBindGroup(0, group);
    compute.dispatchWorkgroups(...workgroups);
    compute.end();
    const [bitmap, bitmapWords] = resetFaults
      ? [this.faults, this.faultWords]
      : [this.dirty, this.dirtyWords];
    encoder.copyBufferToBuffer(this.status, 0, this.readback, 0, STATUS_WORDS * 4);
    encoder.copyBufferToBuffer(bitmap, 0, this.readback, STATUS_WORDS * 4, bitmapWords * 4);
    device.queue.submit([encoder.finish()]);
    const words = await this.read(STATUS_WORDS + bitmapWords);
    const errorVa = words[STATUS_ERROR_VA] ?? NO_ERROR_VA;
    return {
      faulted: (words[0] ?? 0) !== 0,
      stored: (words[1] ?? 0) !== 0,
      errorVa: errorVa === NO_ERROR_VA ? undefined : errorVa,
      errorKinds: words[3] ?? 0,
      bits: words.subarray(STATUS_WORDS),
    };
  }

  destroy(): void {
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
