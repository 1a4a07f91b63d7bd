/**
 * The `buffer` copy engine: `writeBuffer` straight from SharedArrayBuffer
 * views into the frames (no CPU-side packing), and `copyBufferToBuffer` from
 * the frames into one pooled mapped staging buffer, unpacked into CPU memory.
 * Software adapters copy buffers fast; on real GPUs many small writeBuffer
 * calls cost more, hence calibration (auto-copy-engine.ts).
 *
 * A pipelined readback cuts a large download into batches, all submitted at
 * once, and unpacks each as soon as it is mapped: the CPU copy of one batch
 * overlaps the device copy and mapping of the next. Calibration decides
 * whether this device gains from it.
 */
import { bufferSource } from './buffer-source.ts';
import { forEachRun } from '../space/stale-blocks.ts';
import type { BlockUpload, CopyContext, CopyEngine, Segment } from './copy-engine.ts';
import { coalesceSegments, splitSegments, totalBytes } from './segments.ts';
import { isUsedByCommand, noteCommandUse } from './command-use.ts';
import { MappedStaging, STAGED_MIN_BYTES } from './mapped-staging.ts';
import { StagingPool } from './staging-pool.ts';

/** Bytes per batch of a pipelined readback; a download of two batches or more is cut. */
export const PIPELINE_BATCH_BYTES = 8 << 20;

export interface BufferCopyOptions {
  /** Cut downloads into overlapped batches of about PIPELINE_BATCH_BYTES. */
  readonly pipelinedReadback?: boolean;
  /**
   * Upload STAGED_MIN_BYTES or more through mapped staging and buffer copies
   * instead of `writeBuffer`, once a command has used the frames (mapped-staging.ts).
   */
  readonly stagedUploads?: boolean;
}

export class BufferCopyEngine implements CopyEngine {
  readonly kind = 'buffer';
  readonly pipelinedReadback: boolean;
  private readonly memoryBytes: Uint8Array;
  private readonly readbacks: StagingPool;
  private readonly staged: MappedStaging | undefined;

  constructor(
    private readonly context: CopyContext,
    options: BufferCopyOptions = {},
  ) {
    this.pipelinedReadback = options.pipelinedReadback ?? false;
    this.memoryBytes = new Uint8Array(context.memory);
    this.staged = options.stagedUploads
      ? new MappedStaging(context.device, context.frames, this.memoryBytes)
      : undefined;
    this.readbacks = new StagingPool(
      context.device,
      GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      'webhmm buffer-engine readback',
    );
  }

  upload(segments: readonly Segment[]): void {
    let pieces = coalesceSegments(segments);
    if (
      this.staged &&
      isUsedByCommand(this.context.frames) &&
      totalBytes(pieces) >= STAGED_MIN_BYTES
    ) {
      pieces = this.staged.upload(pieces);
    }
    const { device, frames } = this.context;
    const source = bufferSource(this.memoryBytes);
    for (const segment of pieces) {
      device.queue.writeBuffer(frames, segment.frameOffset, source, segment.va, segment.len);
    }
  }

  /** One `writeBuffer` per run of adjacent blocks. */
  uploadBlocks(pages: readonly BlockUpload[]): void {
    const { device, frames } = this.context;
    const source = bufferSource(this.memoryBytes);
    for (const { va, frameOffset, blocks } of pages) {
      forEachRun(blocks, (lo, hi) =>
        device.queue.writeBuffer(frames, frameOffset + lo, source, va + lo, hi - lo),
      );
    }
  }

  async download(segments: readonly Segment[]): Promise<void> {
    const pieces = coalesceSegments(segments);
    const total = totalBytes(pieces);
    const batches =
      this.pipelinedReadback && total >= 2 * PIPELINE_BATCH_BYTES
        ? splitSegments(pieces, Math.round(total / PIPELINE_BATCH_BYTES))
        : [pieces];
    const unpack = (batch: readonly Segment[]) => (mapped: Uint8Array) => {
      let at = 0;
      for (const piece of batch) {
        this.memoryBytes.set(mapped.subarray(at, at + piece.len), piece.va);
        at += piece.len;
      }
    };
    // Every batch is submitted before the first is unpacked; each unpacks when mapped.
    const settled = await Promise.allSettled(
      batches.map((batch) => this.withMapped(batch, unpack(batch))),
    );
    const failed = settled.find((outcome) => outcome.status === 'rejected');
    if (failed) throw failed.reason;
  }

  async read(segments: readonly Segment[]): Promise<Uint8Array> {
    let out = new Uint8Array(0);
    await this.withMapped(segments, (mapped) => {
      out = mapped.slice(0, totalBytes(segments));
    });
    return out;
  }

  destroy(): void {
    this.readbacks.destroy();
    this.staged?.destroy();
  }

  /** Upload staging buffers made and not destroyed (none without `stagedUploads`). */
  get stagingCreated(): number {
    return this.staged?.created ?? 0;
  }

  /** Copies the segments, packed, into a mapped staging buffer and hands its bytes to `use`. */
  private async withMapped(
    segments: readonly Segment[],
    use: (mapped: Uint8Array) => void,
  ): Promise<void> {
    const { device, frames } = this.context;
    const total = totalBytes(segments);
    const staging = this.readbacks.acquire(total);
    try {
      const encoder = device.createCommandEncoder({ label: 'webhmm buffer-engine download' });
      let at = 0;
      for (const segment of segments) {
        encoder.copyBufferToBuffer(frames, segment.frameOffset, staging, at, segment.len);
        at += segment.len;
      }
      noteCommandUse(frames);
      device.queue.submit([encoder.finish()]);
      await staging.mapAsync(GPUMapMode.READ, 0, total);
      use(new Uint8Array(staging.getMappedRange(0, total)));
      staging.unmap();
    } finally {
      this.readbacks.release(staging);
    }
  }
}
