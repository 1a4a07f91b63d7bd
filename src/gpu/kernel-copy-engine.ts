/**
 * The `kernel` copy engine: transfers as one packed staging buffer plus one
 * compute dispatch. Uploads pack the segments' bytes on the CPU into one
 * contiguous region (one `writeBuffer`), then a WGSL kernel scatters the
 * words into the frames; downloads gather the frames' words into packed
 * staging with the same kernel, copy that to a mapped buffer, and unpack.
 *
 * Work is cut into chunks of at most CHUNK_WORDS words, one workgroup each,
 * so one 64 MiB segment and thousands of 4 KiB pages both spread over the
 * GPU. Real GPUs often move many scattered pages faster this way than with
 * one writeBuffer per page; software adapters run kernels slowly. Calibration
 * decides (auto-copy-engine.ts).
 */
import {
  BLOCK_SCATTER_WGSL,
  BLOCK_SCATTER_WORKGROUP,
  packBlocks,
  type BlockPacking,
} from './block-scatter.ts';
import { noteCommandUse } from './command-use.ts';
import type { BlockUpload, CopyContext, CopyEngine, Segment } from './copy-engine.ts';
import { coalesceSegments, totalBytes } from './segments.ts';
import { StagingPool } from './staging-pool.ts';

/** Words one workgroup copies at most. */
const CHUNK_WORDS = 16 << 10;
const WORKGROUP_SIZE = 256;
const MAX_GROUPS_PER_DIMENSION = 65535;
/** Stale blocks per submit of the block scatter, about (whole pages each). */
const BLOCK_CHUNK = 8 << 10;

/** Copies `table[c].count` words from `src[table[c].src]` to `dst[table[c].dst]`, chunk c per workgroup. */
const COPY_WGSL = /* wgsl */ `
struct Chunk { dst: u32, src: u32, count: u32, _pad: u32 }
@group(0) @binding(0) var<storage, read> table: array<Chunk>;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size(${WORKGROUP_SIZE})
fn main(
  @builtin(workgroup_id) group: vec3u,
  @builtin(num_workgroups) groups: vec3u,
  @builtin(local_invocation_index) lane: u32,
) {
  let c = group.x + group.y * groups.x;
  if (c >= arrayLength(&table)) { return; }
  let chunk = table[c];
  for (var i = lane; i < chunk.count; i += ${WORKGROUP_SIZE}u) {
    dst[chunk.dst + i] = src[chunk.src + i];
  }
}`;

const pipelines = new Map<string, WeakMap<GPUDevice, GPUComputePipeline>>();

/** The device's pipeline for one of the engine's kernels (made once per device). */
function enginePipeline(device: GPUDevice, label: string, code: string): GPUComputePipeline {
  const perDevice = pipelines.get(label) ?? new WeakMap<GPUDevice, GPUComputePipeline>();
  pipelines.set(label, perDevice);
  let pipeline = perDevice.get(device);
  if (!pipeline) {
    const module = device.createShaderModule({ label, code });
    pipeline = device.createComputePipeline({
      label,
      layout: 'auto',
      compute: { module, entryPoint: 'main' },
    });
    perDevice.set(device, pipeline);
  }
  return pipeline;
}

export class KernelCopyEngine implements CopyEngine {
  readonly kind = 'kernel';
  private readonly memoryBytes: Uint8Array;
  private readonly memoryWords: Int32Array;
  private readonly pipeline: GPUComputePipeline;
  private readonly blockPipeline: GPUComputePipeline;
  /** Packed data on the GPU (scatter source, gather destination). */
  private readonly packed: StagingPool;
  private readonly tables: StagingPool;
  private readonly readbacks: StagingPool;
  /** CPU-side packing space, grown as needed. */
  private packing: Uint8Array<ArrayBuffer> = new Uint8Array(0);
  /** CPU-side block packing, grown as needed. */
  private blockPacking: BlockPacking = { packed: new Int32Array(0), table: new Uint32Array(0) };

  constructor(private readonly context: CopyContext) {
    const { device } = context;
    this.memoryBytes = new Uint8Array(context.memory);
    this.memoryWords = new Int32Array(context.memory);
    this.pipeline = enginePipeline(device, 'webhmm copy kernel', COPY_WGSL);
    this.blockPipeline = enginePipeline(device, 'webhmm block scatter', BLOCK_SCATTER_WGSL);
    const storage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
    this.packed = new StagingPool(device, storage, 'webhmm kernel-engine packed');
    this.tables = new StagingPool(
      device,
      GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
      'webhmm kernel-engine chunks',
    );
    this.readbacks = new StagingPool(
      device,
      GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      'webhmm kernel-engine readback',
    );
  }

  upload(segments: readonly Segment[]): void {
    const pieces = coalesceSegments(segments);
    const total = totalBytes(pieces);
    if (total === 0) return;
    if (this.packing.length < total)
      this.packing = new Uint8Array(2 ** Math.ceil(Math.log2(total)));
    let at = 0;
    for (const piece of pieces) {
      this.packing.set(this.memoryBytes.subarray(piece.va, piece.va + piece.len), at);
      at += piece.len;
    }
    const { device, frames } = this.context;
    const packed = this.packed.acquire(total);
    device.queue.writeBuffer(packed, 0, this.packing, 0, total);
    const chunks = chunkTable(pieces, 'scatter');
    this.dispatch(chunks, packed, frames, undefined);
    // Queue order keeps later writes to these buffers behind this dispatch.
    this.packed.release(packed);
  }

  /**
   * The packed block scatter (block-scatter.ts), in chunks of about
   * BLOCK_CHUNK whole pages' blocks, each submitted as soon as it is
   * packed: the device copies one chunk while the CPU packs the next (on
   * random blocks, packing waits on memory about as long as the copy takes).
   */
  uploadBlocks(pages: readonly BlockUpload[]): void {
    let start = 0;
    while (start < pages.length) {
      let end = start;
      let count = 0;
      while (end < pages.length && count < BLOCK_CHUNK) count += pages[end++]!.count;
      if (count > 0) this.scatterBlocks(pages.slice(start, end), count);
      start = end;
    }
  }

  async download(segments: readonly Segment[]): Promise<void> {
    const pieces = coalesceSegments(segments);
    await this.withGathered(pieces, (mapped) => {
      let at = 0;
      for (const piece of pieces) {
        this.memoryBytes.set(mapped.subarray(at, at + piece.len), piece.va);
        at += piece.len;
      }
    });
  }

  async read(segments: readonly Segment[]): Promise<Uint8Array> {
    let out = new Uint8Array(0);
    await this.withGathered(segments, (mapped) => {
      out = mapped.slice(0, totalBytes(segments));
    });
    return out;
  }

  destroy(): void {
    this.packed.destroy();
    this.tables.destroy();
    this.readbacks.destroy();
  }

  /** Packs `count` blocks of `pages`, uploads them with their table, and dispatches the scatter. */
  private scatterBlocks(pages: readonly BlockUpload[], count: number): void {
    if (this.blockPacking.table.length < count) {
      const capacity = 2 ** Math.ceil(Math.log2(count));
      this.blockPacking = {
        packed: new Int32Array(capacity * 4),
        table: new Uint32Array(capacity),
      };
    }
    packBlocks(pages, this.memoryWords, this.blockPacking);
    const { device, frames } = this.context;
    const packed = this.packed.acquire(count * 16);
    const table = this.tables.acquire(count * 4);
    device.queue.writeBuffer(packed, 0, this.blockPacking.packed, 0, count * 4);
    device.queue.writeBuffer(table, 0, this.blockPacking.table, 0, count);
    this.submitKernel(
      this.blockPipeline,
      [
        { buffer: table, size: count * 4 },
        { buffer: packed, size: count * 16 },
        { buffer: frames },
      ],
      Math.ceil(count / BLOCK_SCATTER_WORKGROUP),
    );
    // Queue order keeps later writes to these buffers behind this dispatch.
    this.packed.release(packed);
    this.tables.release(table);
  }

  private async withGathered(
    segments: readonly Segment[],
    use: (mapped: Uint8Array) => void,
  ): Promise<void> {
    const { frames } = this.context;
    const total = totalBytes(segments);
    if (total === 0) return;
    const packed = this.packed.acquire(total);
    const readback = this.readbacks.acquire(total);
    try {
      this.dispatch(chunkTable(segments, 'gather'), frames, packed, (encoder) =>
        encoder.copyBufferToBuffer(packed, 0, readback, 0, total),
      );
      await readback.mapAsync(GPUMapMode.READ, 0, total);
      use(new Uint8Array(readback.getMappedRange(0, total)));
      readback.unmap();
    } finally {
      this.packed.release(packed);
      this.readbacks.release(readback);
    }
  }

  /** One dispatch of the copy kernel over `chunks` (4 words each), then `after` in the same submit. */
  private dispatch(
    chunks: Uint32Array<ArrayBuffer>,
    src: GPUBuffer,
    dst: GPUBuffer,
    after: ((encoder: GPUCommandEncoder) => void) | undefined,
  ): void {
    const { device } = this.context;
    const count = chunks.length / 4;
    const table = this.tables.acquire(chunks.byteLength);
    device.queue.writeBuffer(table, 0, chunks);
    this.submitKernel(
      this.pipeline,
      [{ buffer: table, size: chunks.byteLength }, { buffer: src }, { buffer: dst }],
      count,
      after,
    );
    this.tables.release(table);
  }

  /**
   * One submit of `pipeline` over `groups` workgroups (spread over two
   * dimensions past the per-dimension limit), `bindings` in group 0 in
   * binding order (table, source, destination), then `after`.
   */
  private submitKernel(
    pipeline: GPUComputePipeline,
    bindings: readonly GPUBufferBinding[],
    groups: number,
    after?: (encoder: GPUCommandEncoder) => void,
  ): void {
    const { device } = this.context;
    const label = pipeline.label;
    const group = device.createBindGroup({
      label,
      layout: pipeline.getBindGroupLayout(0),
      entries: bindings.map((resource, binding) => ({ binding, resource })),
    });
    const encoder = device.createCommandEncoder({ label });
    const pass = encoder.beginComputePass({ label });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    const x = Math.min(groups, MAX_GROUPS_PER_DIMENSION);
    pass.dispatchWorkgroups(x, Math.ceil(groups / x));
    pass.end();
    after?.(encoder);
    noteCommandUse(this.context.frames);
    device.queue.submit([encoder.finish()]);
  }
}

/**
 * The chunk table of a transfer: [dst word, src word, words, 0] per chunk.
 * Scatter: packed -> frames; gather: frames -> packed.
 */
export function chunkTable(
  segments: readonly Segment[],
  direction: 'scatter' | 'gather',
): Uint32Array<ArrayBuffer> {
  const rows: number[] = [];
  let packedWord = 0;
  for (const segment of segments) {
    const frameWord = segment.frameOffset / 4;
    const words = segment.len / 4;
    for (let done = 0; done < words; done += CHUNK_WORDS) {
      const count = Math.min(CHUNK_WORDS, words - done);
      const [dst, src] =
        direction === 'scatter'
          ? [frameWord + done, packedWord + done]
          : [packedWord + done, frameWord + done];
      rows.push(dst, src, count, 0);
    }
    packedWord += words;
  }
  return Uint32Array.from(rows);
}
