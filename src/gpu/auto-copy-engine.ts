/**
 * The `auto` copy engine: both engines, and per transfer the one the
 * calibration found faster for the transfer's direction and shape.
 */
import type { BlockUpload, CopyEngine, Segment } from './copy-engine.ts';
import type { CopyEngineChoice } from './mirror-stats.ts';
import { transferShape } from './segments.ts';

export class AutoCopyEngine implements CopyEngine {
  readonly kind = 'auto';

  constructor(
    private readonly engines: { readonly buffer: CopyEngine; readonly kernel: CopyEngine },
    private readonly chosen: CopyEngineChoice,
  ) {}

  upload(segments: readonly Segment[]): void {
    this.engines[this.chosen.h2d[transferShape(segments)]].upload(segments);
  }

  uploadBlocks(pages: readonly BlockUpload[]): void {
    this.engines[this.chosen.h2d.blocks].uploadBlocks(pages);
  }

  download(segments: readonly Segment[]): Promise<void> {
    return this.engines[this.chosen.d2h[transferShape(segments)]].download(segments);
  }

  read(segments: readonly Segment[]): Promise<Uint8Array> {
    return this.engines[this.chosen.d2h[transferShape(segments)]].read(segments);
  }

  /** The engine per direction and shape. */
  choice(): CopyEngineChoice {
    return this.chosen;
  }

  destroy(): void {
    this.engines.buffer.destroy();
    this.engines.kernel.destroy();
  }
}
