/**
 * Carrying out a residency plan (migration-plan.ts) under the caller's
 * exclusive holds: new frames assigned, zero pages' frames cleared, stale
 * bytes uploaded (whole ranges through `upload`, stale blocks through
 * `uploadBlocks`), all in one wait for the GPU.
 */
import { runsOf } from '../space/page-run.ts';
import { STALE_BLOCK_BYTES } from '../space/shared-layout.ts';
import type { PageTable } from '../space/page-table.ts';
import { withStaleWhole } from '../space/pte.ts';
import { noteCommandUse } from './command-use.ts';
import type { BlockUpload, CopyEngine, Segment } from './copy-engine.ts';
import type { FrameMap } from './frame-map.ts';
import type { PagePlan } from './migration-plan.ts';

export interface FetchContext {
  readonly device: GPUDevice;
  readonly frames: GPUBuffer;
  readonly engine: CopyEngine;
  readonly frameMap: FrameMap;
  readonly table: PageTable;
  /** @throws DeviceLostError once the device is lost (checked after the wait) */
  readonly assertLive: () => void;
}

export interface FetchResult {
  /** Bytes uploaded. */
  readonly bytes: number;
  /** Of those, bytes uploaded into frames the pages already had (stale bytes brought up to date). */
  readonly refreshed: number;
}

/**
 * Does what `plans` say; resolves once the GPU has the bytes, or with
 * `submitted`, once they are submitted: every later use of the frames (a
 * kernel, a readback, another upload) is ordered after them on the queue,
 * and the bytes were taken at the call.
 */
export async function fetchPlans(
  ctx: FetchContext,
  plans: readonly PagePlan[],
  submitted = false,
): Promise<FetchResult> {
  const { frameMap } = ctx;
  const segments: Segment[] = [];
  const blocks: BlockUpload[] = [];
  const clears: number[] = [];
  let bytes = 0;
  let refreshed = 0;
  for (const plan of plans) {
    if (plan.newFrame) frameMap.assign(plan.page);
    // Settling clears this once the device write has landed.
    if (plan.awaitsWrite) ctx.table.updatePte(plan.page, withStaleWhole);
    if (plan.clear) clears.push(frameMap.frameOf(plan.page));
    let planBytes = 0;
    for (const [lo, hi] of plan.upload) {
      const segment = frameMap.segment(plan.page, lo, hi);
      segments.push(segment);
      planBytes += segment.len;
    }
    if (plan.blocks) {
      const { pageSize } = frameMap;
      blocks.push({
        va: plan.page * pageSize,
        frameOffset: frameMap.frameOf(plan.page) * pageSize,
        blocks: plan.blocks.bits,
        count: plan.blocks.count,
      });
      planBytes += plan.blocks.count * STALE_BLOCK_BYTES;
    }
    bytes += planBytes;
    if (!plan.newFrame) refreshed += planBytes;
  }
  if (clears.length > 0) clearFrames(ctx, clears);
  if (segments.length > 0) ctx.engine.upload(segments);
  if (blocks.length > 0) ctx.engine.uploadBlocks(blocks);
  if (!submitted && (clears.length > 0 || bytes > 0)) await ctx.device.queue.onSubmittedWorkDone();
  ctx.assertLive();
  return { bytes, refreshed };
}

function clearFrames(ctx: FetchContext, frames: readonly number[]): void {
  const { device, frameMap } = ctx;
  const pageSize = frameMap.pageSize;
  const encoder = device.createCommandEncoder({ label: 'webhmm clear zero frames' });
  for (const run of runsOf(frames)) {
    encoder.clearBuffer(ctx.frames, run.first * pageSize, run.count * pageSize);
  }
  noteCommandUse(ctx.frames);
  device.queue.submit([encoder.finish()]);
}
