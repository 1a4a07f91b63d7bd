/**
 * Calibration of stale-block uploads: which engine uploads many scattered
 * 16-byte blocks faster, and what one more block costs on that engine (the
 * marginal rate: a dispatch's fixed cost is paid once per upload, however
 * many pages it takes), so that planning can tell when a page's stale
 * blocks cost more than the page whole.
 */
import { STALE_BLOCK_BYTES } from '../space/shared-layout.ts';
import { countBlocks } from '../space/stale-blocks.ts';
import { bestTime } from './engine-timing.ts';
import type { BlockUpload, CopyEngine, CopyEngineKind } from './copy-engine.ts';

/** One block in this many is stale in the sparse shape (1% of words written at random dirties ~4% of blocks). */
const SPARSE_SPACING = 32;
/** ... and in the dense shape, which the marginal rate compares it with. */
const DENSE_SPACING = 4;

/** Without a usable calibration: a page goes whole once half its bytes are stale. */
export const UNCALIBRATED_WHOLE_PAGE_SHARE = 0.5;

/**
 * The share of a page's bytes at which its stale blocks cost as much as the
 * whole page: one more block costs 16 bytes at the marginal rate, one more
 * page its bytes at the scattered-page rate. A measurement that gives no
 * finite positive share (a timer too coarse for a trial) falls back.
 */
export function wholePageShare(blocks: BlockRates, scatteredGbPerSecond: number): number {
  const share = blocks.marginalGbPerSecond / scatteredGbPerSecond;
  return Number.isFinite(share) && share > 0 ? Math.min(1, share) : UNCALIBRATED_WHOLE_PAGE_SHARE;
}

export interface BlockRates {
  /** GB/s of block bytes uploaded in the sparse shape, per engine. */
  readonly gbPerSecond: Record<CopyEngineKind, number>;
  /** GB/s of the faster engine for block bytes added to an upload (sparse to dense). */
  readonly marginalGbPerSecond: number;
}

/** Both engines on the sparse shape, then the faster one on the dense shape too. */
export async function measureBlocks(
  device: GPUDevice,
  engines: Record<CopyEngineKind, CopyEngine>,
  size: number,
  pageSize: number,
): Promise<BlockRates> {
  const sparse = stalePages(size, pageSize, SPARSE_SPACING);
  const dense = stalePages(size, pageSize, DENSE_SPACING);
  const upload = (pages: readonly BlockUpload[]) => async (engine: CopyEngine) => {
    const started = performance.now();
    engine.uploadBlocks(pages);
    await device.queue.onSubmittedWorkDone();
    return performance.now() - started;
  };
  // One engine after the other, not interleaved: the buffer engine's
  // thousands of small writes leave the queue busy for a while after they
  // are done, which would be charged to the kernel engine's trial.
  const sparseMs = {
    buffer: await bestTime(() => upload(sparse)(engines.buffer)),
    kernel: await bestTime(() => upload(sparse)(engines.kernel)),
  };
  const sparseBytes = blockBytes(sparse);
  const gbPerSecond = {
    buffer: sparseBytes / 1e6 / sparseMs.buffer,
    kernel: sparseBytes / 1e6 / sparseMs.kernel,
  };
  const faster: CopyEngineKind = gbPerSecond.kernel > gbPerSecond.buffer ? 'kernel' : 'buffer';
  const denseMs = await bestTime(() => upload(dense)(engines[faster]));
  const added = blockBytes(dense) - sparseBytes;
  const extraMs = denseMs - sparseMs[faster];
  // Noise can hide the difference: then the dense shape's own rate stands in.
  const marginalGbPerSecond =
    extraMs > 0 ? added / 1e6 / extraMs : blockBytes(dense) / 1e6 / denseMs;
  return { gbPerSecond, marginalGbPerSecond };
}

/**
 * Pages of `pageSize` bytes filling `size`, frames shuffled, each with about
 * one block in `spacing` stale at pseudo-random places (as scattered CPU
 * writes leave them).
 */
function stalePages(size: number, pageSize: number, spacing: number): BlockUpload[] {
  const slots = size / pageSize;
  const blocksPerPage = pageSize / STALE_BLOCK_BYTES;
  const pages: BlockUpload[] = [];
  for (let page = 0; page < slots; page++) {
    const blocks = new Uint32Array(blocksPerPage / 32);
    for (let block = 0; block < blocksPerPage; block++) {
      // Knuth's multiplicative hash of the block's index: spread, repeatable.
      const hash = Math.imul(page * blocksPerPage + block, 2654435761) >>> 0;
      if (hash < 2 ** 32 / spacing) blocks[block >>> 5]! |= 1 << (block & 31);
    }
    const frame = (page * 7 + 3) % slots;
    pages.push({
      va: page * pageSize,
      frameOffset: frame * pageSize,
      blocks,
      count: countBlocks(blocks),
    });
  }
  return pages;
}

function blockBytes(pages: readonly BlockUpload[]): number {
  return pages.reduce((sum, page) => sum + page.count, 0) * STALE_BLOCK_BYTES;
}
