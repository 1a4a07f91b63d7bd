/**
 * Builds the mirror's copy engine for a `copy` option: 'buffer' or 'kernel'
 * as asked, or 'auto' from the device's calibration.
 */
import { InvalidArgumentError } from '../errors.ts';
import { AutoCopyEngine } from './auto-copy-engine.ts';
import { BufferCopyEngine } from './buffer-copy-engine.ts';
import { UNCALIBRATED_WHOLE_PAGE_SHARE } from './calibrate-blocks.ts';
import { calibrate } from './calibration.ts';
import type { CopyContext, CopyEngine, CopyEngineKind } from './copy-engine.ts';
import { KernelCopyEngine } from './kernel-copy-engine.ts';
import type { CopyEngineChoice } from './mirror-stats.ts';

export type CopyMode = 'auto' | CopyEngineKind;

export type ChosenCopyEngine = CopyEngine & { choice(): CopyEngineChoice };

function everywhere(kind: CopyEngineKind): CopyEngineChoice {
  return {
    h2d: { contiguous: kind, scattered: kind, blocks: kind },
    d2h: { contiguous: kind, scattered: kind },
    pipelinedReadback: false,
    stagedUploads: false,
    wholePageShare: UNCALIBRATED_WHOLE_PAGE_SHARE,
  };
}

/** @param pageSize the space's page size: 'auto' compares the engines on scattered pages of it */
export async function createCopyEngine(
  mode: CopyMode,
  context: CopyContext,
  pageSize: number,
): Promise<ChosenCopyEngine> {
  if (mode !== 'auto' && mode !== 'buffer' && mode !== 'kernel') {
    throw new InvalidArgumentError('copy', mode, 'bad-value', "'auto', 'kernel' or 'buffer'");
  }
  if (mode === 'buffer' || mode === 'kernel') {
    const engine =
      mode === 'buffer' ? new BufferCopyEngine(context) : new KernelCopyEngine(context);
    const choice = everywhere(mode);
    return Object.assign(engine, { choice: () => choice });
  }
  const { choice } = await calibrate(context.device, pageSize);
  const engines = {
    buffer: new BufferCopyEngine(context, {
      pipelinedReadback: choice.pipelinedReadback,
      stagedUploads: choice.stagedUploads,
    }),
    kernel: new KernelCopyEngine(context),
  };
  return new AutoCopyEngine(engines, choice);
}
