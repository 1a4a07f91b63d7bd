/**
 * What a mirror lends the layers above it (kernel runs): its device, frames,
 * device page table and migration engine, through this interface, so that
 * the GPU layer never imports them. The public GpuMirror (mirror/) wires a
 * kernel runtime to a DeviceMirror through it.
 */
import type { SpaceInternals } from '../space/internals.ts';
import type { Migrator } from './migration.ts';
import type { FaultPrefetch } from './mirror-setup.ts';
import type { MirrorCounters } from './mirror-stats.ts';

export interface MirrorHost {
  readonly device: GPUDevice;
  readonly space: SpaceInternals;
  /** The frames buffer: `budget` bytes of frames, then the zero frame, then the sink frame. */
  readonly frames: GPUBuffer;
  /** Frame index of the frame of zeros that faulted loads read. */
  readonly zeroFrame: number;
  /** Frame index of the frame suppressed stores go to. */
  readonly sinkFrame: number;
  /** The device page table's GPU buffer (one u32 per VA page, gpu/device-layout.ts). */
  readonly pageTable: GPUBuffer;
  /** A page's device page table entry, as the GPU has it once `beforeGpuUse` has run. */
  pageTableEntry(page: number): number;
  readonly migrator: Migrator;
  /** What fault-mode runs fetch beside their faulting pages (the `prefetch` option). */
  readonly faultPrefetch: FaultPrefetch;
  readonly counters: MirrorCounters;
  /**
   * Applies pending invalidation notices and uploads changed device page
   * table entries, calling `beforeTableWrite` first when there are any (a
   * batch of kernel passes encoded but not submitted must go first: they
   * read the table as it was).
   */
  beforeGpuUse(beforeTableWrite?: () => void): void;
  /** @throws DeviceLostError once the mirror is detached or its device lost */
  assertAttached(): void;
}
