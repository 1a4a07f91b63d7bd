/**
 * The frame pool: which GPU page frames of the frames buffer are free. Frame
 * `f` is bytes [f * pageSize, (f + 1) * pageSize) of the buffer. The pool
 * never hands out more frames than the budget holds: the budget is a hard limit. Owned by
 * the mirror's thread; nothing here is shared.
 *
 * It always hands out the lowest free frame. So pages given frames one
 * after another, in page order (a migration plans in page order), get
 * consecutive frames where the lowest free frames are consecutive, whatever
 * order frames came back in: a named range in consecutive frames is reached as base + i,
 * with no page table load (named-ranges.ts). A stack of free frames handed
 * them out in reverse after a free, and half of a repeated app's runs lost
 * that path. Small working sets also stay at the start of the buffer.
 */
import { invariant } from '../errors.ts';

export class FramePool {
  /** Bit f % 32 of word f / 32 is set while frame f is free. */
  private readonly freeBits: Uint32Array;
  private freeCount: number;
  /** No word below this one has a free frame. */
  private lowestWord = 0;

  constructor(readonly capacity: number) {
    this.freeBits = new Uint32Array(Math.ceil(capacity / 32));
    for (let frame = 0; frame < capacity; frame++) {
      this.freeBits[frame >>> 5]! |= 1 << (frame & 31);
    }
    this.freeCount = capacity;
  }

  get available(): number {
    return this.freeCount;
  }

  get inUse(): number {
    return this.capacity - this.freeCount;
  }

  /** The lowest free frame, or -1 when all are in use. */
  take(): number {
    if (this.freeCount === 0) return -1;
    while (this.freeBits[this.lowestWord] === 0) this.lowestWord++;
    const word = this.freeBits[this.lowestWord] ?? 0;
    const bit = 31 - Math.clz32(word & -word);
    this.freeBits[this.lowestWord] = word & ~(1 << bit);
    this.freeCount--;
    return (this.lowestWord << 5) | bit;
  }

  /** Gives a frame taken from this pool back. */
  give(frame: number): void {
    const word = frame >>> 5;
    const bit = 1 << (frame & 31);
    // Messages built only on failure: give() runs once per page freed.
    if (!(frame >= 0 && frame < this.capacity))
      invariant(false, `frame ${frame} is not one of the pool's`);
    if (((this.freeBits[word] ?? 0) & bit) !== 0)
      invariant(false, `frame ${frame} given back twice`);
    this.freeBits[word]! |= bit;
    this.freeCount++;
    if (word < this.lowestWord) this.lowestWord = word;
  }
}
