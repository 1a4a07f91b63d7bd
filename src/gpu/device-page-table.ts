/**
 * The device page table: a GPU buffer with one u32 per VA page (layout in
 * device-layout.ts), and its CPU-side shadow. Entries change in the shadow;
 * `flush` uploads only the runs of entries that changed since the last flush,
 * before each GPU use. The whole table is uploaded once, at creation.
 */
import { runsOf } from '../space/page-run.ts';
import { DPTE_FRAME_MASK } from './device-layout.ts';

export class DevicePageTable {
  readonly buffer: GPUBuffer;
  private readonly shadow: Uint32Array<ArrayBuffer>;
  /** Pages whose entries changed since the last flush, each once (see `marked`). */
  private changed: number[] = [];
  private readonly marked: Uint8Array;

  constructor(
    private readonly device: GPUDevice,
    pageCount: number,
  ) {
    this.shadow = new Uint32Array(pageCount);
    this.marked = new Uint8Array(pageCount);
    this.buffer = device.createBuffer({
      label: 'webhmm device page table',
      size: Math.max(4, pageCount * 4),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
    });
  }

  entry(page: number): number {
    return this.shadow[page] ?? 0;
  }

  frameOf(page: number): number {
    return this.entry(page) & DPTE_FRAME_MASK;
  }

  set(page: number, entry: number): void {
    if (this.shadow[page] === entry >>> 0) return;
    this.shadow[page] = entry;
    if (!this.marked[page]) {
      this.marked[page] = 1;
      this.changed.push(page);
    }
  }

  /** Whether entries changed since the last flush. */
  get changes(): boolean {
    return this.changed.length > 0;
  }

  /** Uploads the changed runs; returns the number of entries uploaded. */
  flush(): number {
    if (this.changed.length === 0) return 0;
    const runs = runsOf(this.changed);
    for (const page of this.changed) this.marked[page] = 0;
    this.changed = [];
    let uploaded = 0;
    for (const run of runs) {
      this.device.queue.writeBuffer(this.buffer, run.first * 4, this.shadow, run.first, run.count);
      uploaded += run.count;
    }
    return uploaded;
  }

  destroy(): void {
    this.buffer.destroy();
  }
}
