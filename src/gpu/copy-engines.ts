/**
 * Chooses and builds the mirror's copy engine. TEMPORARY single engine until
 * the calibrated engines land.
 */
import { bufferSource } from './buffer-source.ts';
import type { CopyContext, CopyEngine, CopyEngineKind, Segment } from './copy-engine.ts';
import type { CopyEngineChoice } from './mirror-stats.ts';

export type CopyMode = 'auto' | CopyEngineKind;

class SimpleEngine implements CopyEngine {
  readonly kind = 'buffer';
  constructor(private readonly ctx: CopyContext) {}
  upload(segments: readonly Segment[]): void {
    const view = new Uint8Array(this.ctx.memory);
    for (const s of segments)
      this.ctx.device.queue.writeBuffer(
        this.ctx.frames,
        s.frameOffset,
        bufferSource(view),
        s.va,
        s.len,
      );
  }
  async read(segments: readonly Segment[]): Promise<Uint8Array> {
    const total = segments.reduce((n, s) => n + s.len, 0);
    const staging = this.ctx.device.createBuffer({
      label: 'tmp',
      size: total,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const enc = this.ctx.device.createCommandEncoder();
    let at = 0;
    for (const s of segments) {
      enc.copyBufferToBuffer(this.ctx.frames, s.frameOffset, staging, at, s.len);
      at += s.len;
    }
    this.ctx.device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const out = new Uint8Array(staging.getMappedRange().slice(0));
    staging.destroy();
    return out;
  }
  async download(segments: readonly Segment[]): Promise<void> {
    const packed = await this.read(segments);
    const view = new Uint8Array(this.ctx.memory);
    let at = 0;
    for (const s of segments) {
      view.set(packed.subarray(at, at + s.len), s.va);
      at += s.len;
    }
  }
  destroy(): void {}
}

export function createCopyEngine(
  _mode: CopyMode,
  ctx: CopyContext,
): Promise<CopyEngine & { choice(): CopyEngineChoice }> {
  const engine = new SimpleEngine(ctx);
  const choice: CopyEngineChoice = {
    h2d: { contiguous: 'buffer', scattered: 'buffer' },
    d2h: { contiguous: 'buffer', scattered: 'buffer' },
  };
  return Promise.resolve(Object.assign(engine, { choice: () => choice }));
}
