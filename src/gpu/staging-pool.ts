/**
 * Pooled staging buffers of one usage, in power-of-two sizes: steady-state
 * transfers create no GPU buffers. Callers acquire a buffer for one transfer
 * and release it once the GPU (and any mapping) is done with it; a buffer
 * written only through the queue may be released right after submit, since
 * later queue writes are ordered after the work that reads it.
 *
 * Bounded: a pool keeps idle buffers up to STAGING_IDLE_BYTES in all, and
 * always one of each size, and destroys any released beyond that: idle
 * staging stays under STAGING_IDLE_BYTES plus twice the largest transfer,
 * however many transfers once ran at the same time. The bound is above what
 * steady transfers keep in flight (a pipelined readback of a 256 MiB budget
 * has 32 batches of 8 MiB out at once), so those still create nothing; an
 * earlier cap of 4 buffers per size re-created half of a 64 MiB pipelined
 * readback's batches every time (readback.pipelined 1.27 -> 0.73). Detach
 * destroys the rest.
 */
/** Idle staging bytes a pool keeps beyond one buffer of each size. */
export const STAGING_IDLE_BYTES = 256 << 20;

export class StagingPool {
  private readonly free = new Map<number, GPUBuffer[]>();
  private readonly all = new Set<GPUBuffer>();
  private idleBytes = 0;

  constructor(
    private readonly device: GPUDevice,
    private readonly usage: GPUBufferUsageFlags,
    private readonly label: string,
    private readonly maxIdleBytes = STAGING_IDLE_BYTES,
  ) {}

  /** A buffer of at least `size` bytes. */
  acquire(size: number): GPUBuffer {
    const capacity = 2 ** Math.ceil(Math.log2(Math.max(256, size)));
    const reused = this.free.get(capacity)?.pop();
    if (reused) {
      this.idleBytes -= capacity;
      return reused;
    }
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
    if (list.length > 0 && this.idleBytes + buffer.size > this.maxIdleBytes) {
      this.all.delete(buffer);
      buffer.destroy();
      return;
    }
    list.push(buffer);
    this.free.set(buffer.size, list);
    this.idleBytes += buffer.size;
  }

  /** Buffers the pool has created and not destroyed. */
  get created(): number {
    return this.all.size;
  }

  destroy(): void {
    for (const buffer of this.all) buffer.destroy();
    this.all.clear();
    this.free.clear();
    this.idleBytes = 0;
  }
}
