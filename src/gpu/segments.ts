/** Pure logic over transfer segments: coalescing and shape, and a byte range's pieces per page. */
import type { Segment } from './copy-engine.ts';

/** Merges segments adjacent in both CPU address and frame offset (in the given order). */
export function coalesceSegments(segments: readonly Segment[]): Segment[] {
  const out: Segment[] = [];
  for (const segment of segments) {
    const last = out[out.length - 1];
    if (
      last &&
      last.va + last.len === segment.va &&
      last.frameOffset + last.len === segment.frameOffset
    ) {
      out[out.length - 1] = {
        va: last.va,
        frameOffset: last.frameOffset,
        len: last.len + segment.len,
      };
    } else {
      out.push(segment);
    }
  }
  return out;
}

export type TransferShape = 'contiguous' | 'scattered';

/** Mean segment size at or above which a transfer counts as few large runs. */
export const CONTIGUOUS_MEAN_BYTES = 256 << 10;

/**
 * 'contiguous' for a few large runs, 'scattered' for many small pieces, after
 * coalescing: a run of pages with consecutive frames is one large run.
 */
export function transferShape(segments: readonly Segment[]): TransferShape {
  const pieces = coalesceSegments(segments);
  if (pieces.length <= 4) return 'contiguous';
  return totalBytes(pieces) / pieces.length >= CONTIGUOUS_MEAN_BYTES ? 'contiguous' : 'scattered';
}

export function totalBytes(segments: readonly Segment[]): number {
  return segments.reduce((sum, segment) => sum + segment.len, 0);
}

/**
 * Cuts `segments` (in order) into `parts` batches of about equal bytes,
 * splitting a segment where a batch ends (at 4-byte boundaries).
 */
export function splitSegments(segments: readonly Segment[], parts: number): Segment[][] {
  const total = totalBytes(segments);
  const target = Math.ceil(total / parts / 4) * 4;
  const batches: Segment[][] = [];
  let batch: Segment[] = [];
  let room = target;
  for (const segment of segments) {
    let { va, frameOffset, len } = segment;
    while (len > 0) {
      const take = Math.min(len, room);
      batch.push({ va, frameOffset, len: take });
      va += take;
      frameOffset += take;
      len -= take;
      room -= take;
      if (room === 0) {
        batches.push(batch);
        batch = [];
        room = target;
      }
    }
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}

/** The pieces of [va, va + len) per page of `pageSize` bytes: absolute [lo, hi) within each page. */
export function pagePieces(
  va: number,
  len: number,
  pageSize: number,
): { page: number; lo: number; hi: number }[] {
  const out: { page: number; lo: number; hi: number }[] = [];
  const end = va + len;
  for (let page = Math.floor(va / pageSize); page * pageSize < end; page++) {
    const base = page * pageSize;
    out.push({ page, lo: Math.max(va, base) - base, hi: Math.min(end, base + pageSize) - base });
  }
  return out;
}
