/**
 * Pooled staging buffers of one usage, in power-of-two sizes: steady-state
 * transfers create no GPU buffers. Callers acquire a buffer for one transfer
 * and release it once the GPU (and any mapping) is done with it; a buffer
 * written only through the queue may be released right after submit, since
 * later queue writes are ordered after the work that reads it.
 *
 * Bounded: a pool keeps at most STAGING_IDLE_PER_SIZE idle buffers of each
 * power-of-two size and destroys any released beyond them, so idle staging
 * stays under 2 x STAGING_IDLE_PER_SIZE x the largest transfer, however many
 * transfers once ran at the same time. Detach destroys the rest.
 */
/** Idle buffers a pool keeps per size: more than the transfers one mirror has in flight at once. */
export const STAGING_IDLE_PER_SIZE = 4;

export class StagingPool {
  private readonly free = new Map<number, GPUBuffer[]>();
  private readonly all = new Set<GPUBuffer>();

  constructor(
    private readonly device: GPUDevice,
    private readonly usage: GPUBufferUsageFlags,
    private readonly label: string,
  ) {}

  /** A buffer of at least `size` bytes. */
  acquire(size: number): GPUBuffer {
    const capacity = 2 ** Math.ceil(Math.log2(Math.max(256, size)));
    const reused = this.free.get(capacity)?.pop();
    if (reused) return reused;
    const buffer = this.device.createBuffer({
      label: `${this.label} ${capacity}`,
      size: capacity,
      usage: this.usage,
    });
    this.all.add(buffer);
    return buffer;
  }

  release(buffer: GPUBuffer): void {
    const list = this.free.get(buffer.size) ?? [];
    if (list.length >= STAGING_IDLE_PER_SIZE) {
      this.all.delete(buffer);
      buffer.destroy();
      return;
    }
    list.push(buffer);
    this.free.set(buffer.size, list);
  }

  /** Buffers the pool has created and not destroyed. */
  get created(): number {
    return this.all.size;
  }

  destroy(): void {
    for (const buffer of this.all) buffer.destroy();
    this.all.clear();
    this.free.clear();
  }
}
