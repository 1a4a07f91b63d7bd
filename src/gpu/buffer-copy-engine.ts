/**
 * The `buffer` copy engine: `writeBuffer` straight from SharedArrayBuffer
 * views into the frames (no CPU-side packing), and `copyBufferToBuffer` from
 * the frames into one pooled mapped staging buffer, unpacked into CPU memory.
 * Software adapters copy buffers fast; on real GPUs many small writeBuffer
 * calls cost more, hence calibration (auto-copy-engine.ts).
 */
import { bufferSource } from './buffer-source.ts';
import type { CopyContext, CopyEngine, Segment } from './copy-engine.ts';
import { coalesceSegments, totalBytes } from './segments.ts';
import { StagingPool } from './staging-pool.ts';

export class BufferCopyEngine implements CopyEngine {
  readonly kind = 'buffer';
  private readonly memoryBytes: Uint8Array;
  private readonly readbacks: StagingPool;

  constructor(private readonly context: CopyContext) {
    this.memoryBytes = new Uint8Array(context.memory);
    this.readbacks = new StagingPool(
      context.device,
      GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      'webhmm buffer-engine readback',
    );
  }

  upload(segments: readonly Segment[]): void {
    const { device, frames } = this.context;
    const source = bufferSource(this.memoryBytes);
    for (const segment of coalesceSegments(segments)) {
      device.queue.writeBuffer(frames, segment.frameOffset, source, segment.va, segment.len);
    }
  }

  async download(segments: readonly Segment[]): Promise<void> {
    const pieces = coalesceSegments(segments);
    await this.withMapped(pieces, (mapped) => {
      let at = 0;
      for (const piece of pieces) {
        this.memoryBytes.set(mapped.subarray(at, at + piece.len), piece.va);
        at += piece.len;
      }
    });
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
      device.queue.submit([encoder.finish()]);
      await staging.mapAsync(GPUMapMode.READ, 0, total);
      use(new Uint8Array(staging.getMappedRange(0, total)));
      staging.unmap();
    } finally {
      this.readbacks.release(staging);
    }
  }
}
