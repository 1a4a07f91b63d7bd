/**
 * The copy engine contract: how page bytes cross between CPU memory (the
 * space's SharedArrayBuffer) and GPU frames (one storage buffer). Two real
 * implementations stand behind it, `kernel` (WGSL scatter/gather over packed
 * staging) and `buffer` (writeBuffer and copyBufferToBuffer), and `auto`
 * picks between them per transfer shape from a calibration made on the device.
 *
 * Every engine moves exactly the bytes of the segments it is given, never
 * more, and leaves every other byte of the frames buffer and of CPU memory
 * untouched.
 */

import type { StaleBlocks } from '../space/stale-blocks.ts';

/** One contiguous piece of a transfer. All three fields are multiples of 4. */
export interface Segment {
  /** Byte address in CPU memory (the space's SharedArrayBuffer; VA == offset). */
  readonly va: number;
  /** Byte offset in the frames buffer. */
  readonly frameOffset: number;
  /** Bytes to move. */
  readonly len: number;
}

/** The stale blocks of one page to upload (STALE_BLOCK_BYTES each, at the same offsets in the frame). */
export interface BlockUpload {
  /** The page's first byte in CPU memory. */
  readonly va: number;
  /** The first byte of the page's frame in the frames buffer. */
  readonly frameOffset: number;
  /** Which blocks: bit b of word w marks block 32w + b. */
  readonly blocks: StaleBlocks;
  /** How many blocks `blocks` marks. */
  readonly count: number;
}

export type CopyEngineKind = 'kernel' | 'buffer';

export interface CopyEngine {
  /** 'auto' delegates per transfer to one of the others. */
  readonly kind: CopyEngineKind | 'auto';
  /**
   * Enqueues the copy of each segment from CPU memory into the frames buffer.
   * The bytes are captured before this returns (as `writeBuffer` captures its
   * data), so the CPU may change them afterwards; GPU work submitted later
   * sees them. Creates no GPU buffer in steady state (staging is pooled).
   */
  upload(segments: readonly Segment[]): void;
  /** `upload` of the marked blocks of each page: many tiny pieces, captured the same way. */
  uploadBlocks(pages: readonly BlockUpload[]): void;
  /**
   * Copies each segment from the frames buffer into CPU memory; resolves once
   * the bytes are there. The caller keeps the CPU pages held meanwhile.
   */
  download(segments: readonly Segment[]): Promise<void>;
  /**
   * Reads each segment from the frames buffer into a new array, packed in
   * segment order (segment i at the sum of the lengths before it), leaving
   * CPU memory alone (`gpu.read` returns the device's bytes this way).
   * The segments' `va` is ignored.
   */
  read(segments: readonly Segment[]): Promise<Uint8Array>;
  /** Frees the engine's GPU objects (not the frames buffer). Idempotent. */
  destroy(): void;
}

/** What every engine works with. The frames buffer and memory belong to the caller. */
export interface CopyContext {
  readonly device: GPUDevice;
  /** STORAGE | COPY_SRC | COPY_DST. */
  readonly frames: GPUBuffer;
  /** CPU memory; fixed-length (writeBuffer rejects views of growable buffers). */
  readonly memory: SharedArrayBuffer;
}
