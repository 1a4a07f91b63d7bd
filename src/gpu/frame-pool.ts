/**
 * The frame pool: which GPU page frames of the frames buffer are free. Frame
 * `f` is bytes [f * pageSize, (f + 1) * pageSize) of the buffer. The pool
 * never hands out more frames than the budget holds: the budget is a hard limit. Owned by
 * the mirror's thread; nothing here is shared.
 */
export class FramePool {
  private readonly free: Int32Array;
  private freeCount: number;

  constructor(readonly capacity: number) {
    // Lowest frames first: small working sets stay at the start of the buffer.
    this.free = Int32Array.from({ length: capacity }, (_, i) => capacity - 1 - i);
    this.freeCount = capacity;
  }

  get available(): number {
    return this.freeCount;
  }

  get inUse(): number {
    return this.capacity - this.freeCount;
  }

  /** A free frame, or -1 when all are in use. */
  take(): number {
    if (this.freeCount === 0) return -1;
    return this.free[--this.freeCount] ?? -1;
  }

  give(frame: number): void {
    this.free[this.freeCount++] = frame;
  }
}
