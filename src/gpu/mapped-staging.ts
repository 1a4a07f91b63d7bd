/**
 * Uploads through mapped staging: the CPU packs the bytes straight into
 * buffers it holds mapped (MAP_WRITE | COPY_SRC), unmaps them, and one
 * command copies each piece into the frames. The chunks are mapped again
 * once the copy is done and wait, mapped, for the next upload: steady
 * uploads create no buffers and never wait on the GPU.
 *
 * Why not `writeBuffer`: in Chromium (Dawn) a `writeBuffer` into a buffer
 * that any command has used is about twice as slow as into one no command
 * has touched (measured: 4096 scattered 4 KiB pages 18-24 ms against
 * 8.6-11 ms), and a mirror's frames are used from its first kernel run on.
 * Packing into mapped memory and copying costs the same whatever the
 * frames' history (about 15 ms for those pages), so it wins only on used
 * frames: the buffer engine stages only into frames a command has used
 * (command-use.ts), and only where calibration found staging faster (calibration.ts).
 */
import { noteCommandUse } from './command-use.ts';
import type { Segment } from './copy-engine.ts';

/** Bytes of one staging chunk; a larger upload uses several. */
export const STAGED_CHUNK_BYTES = 4 << 20;
/**
 * Uploads smaller than this go by `writeBuffer` even where staging is
 * chosen. On used frames (SwiftShader) `writeBuffer` wins below it (1 MiB:
 * 0.6 ms against 0.8-2.9 staged), the two are even at it (8 MiB: 5.8 ms
 * against 4.3 contiguous, 6.7 against 7.6 in 4 KiB pages), and staging wins
 * by 1.5-2.5x above it (16 MiB: 17 ms against 7).
 */
export const STAGED_MIN_BYTES = 2 * STAGED_CHUNK_BYTES;
/** Chunks made at most: an upload that finds none mapped leaves its rest to `writeBuffer`. */
export const STAGED_CHUNKS = 16;

export class MappedStaging {
  /** Mapped, unused. */
  private readonly idle: GPUBuffer[] = [];
  private readonly all = new Set<GPUBuffer>();
  private destroyed = false;

  constructor(
    private readonly device: GPUDevice,
    private readonly frames: GPUBuffer,
    private readonly memoryBytes: Uint8Array,
  ) {}

  /**
   * Copies the segments from CPU memory into the frames, in order, as far
   * as mapped chunks (or new ones, up to STAGED_CHUNKS) hold them: packed
   * before this returns (the CPU may change the bytes afterwards), copied by
   * one submit that later GPU work is ordered after. Returns what did not
   * fit, for the caller to send another way.
   */
  upload(segments: readonly Segment[]): Segment[] {
    const encoder = this.device.createCommandEncoder({ label: 'webhmm staged upload' });
    const used: GPUBuffer[] = [];
    let chunk: GPUBuffer | undefined;
    let mapped = new Uint8Array(0);
    let at = STAGED_CHUNK_BYTES;
    let rest: Segment[] = [];
    for (const [index, segment] of segments.entries()) {
      let { va, frameOffset, len } = segment;
      while (len > 0) {
        if (at === STAGED_CHUNK_BYTES) {
          chunk?.unmap();
          chunk = this.acquire();
          if (!chunk) break;
          used.push(chunk);
          mapped = new Uint8Array(chunk.getMappedRange());
          at = 0;
        }
        // Lengths and offsets are multiples of 4, as copyBufferToBuffer needs.
        const take = Math.min(len, STAGED_CHUNK_BYTES - at);
        mapped.set(this.memoryBytes.subarray(va, va + take), at);
        encoder.copyBufferToBuffer(chunk!, at, this.frames, frameOffset, take);
        at += take;
        va += take;
        frameOffset += take;
        len -= take;
      }
      if (len > 0) {
        rest = [{ va, frameOffset, len }, ...segments.slice(index + 1)];
        break;
      }
    }
    chunk?.unmap();
    if (used.length > 0) {
      noteCommandUse(this.frames);
      this.device.queue.submit([encoder.finish()]);
    }
    for (const buffer of used) this.recycle(buffer);
    return rest;
  }

  /** Staging buffers made and not destroyed (idle or in flight). */
  get created(): number {
    return this.all.size;
  }

  destroy(): void {
    this.destroyed = true;
    for (const buffer of this.all) buffer.destroy();
    this.all.clear();
    this.idle.length = 0;
  }

  /** A mapped chunk: an idle one, or a new one while fewer than STAGED_CHUNKS exist. */
  private acquire(): GPUBuffer | undefined {
    const reused = this.idle.pop();
    if (reused || this.all.size >= STAGED_CHUNKS) return reused;
    let buffer: GPUBuffer;
    try {
      buffer = this.device.createBuffer({
        label: 'webhmm upload staging',
        size: STAGED_CHUNK_BYTES,
        usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC,
        mappedAtCreation: true,
      });
    } catch {
      return undefined; // no memory to map it (RangeError): the rest goes by writeBuffer
    }
    this.all.add(buffer);
    return buffer;
  }

  /** Maps `buffer` again once its copy is done, for the next upload. */
  private recycle(buffer: GPUBuffer): void {
    buffer.mapAsync(GPUMapMode.WRITE).then(
      () => {
        if (this.destroyed || !this.all.has(buffer)) return;
        this.idle.push(buffer);
      },
      () => {
        // Destroyed or the device lost: never reused, and freed here, since
        // destroy() frees only what `all` still holds.
        this.all.delete(buffer);
        buffer.destroy();
      },
    );
  }
}
