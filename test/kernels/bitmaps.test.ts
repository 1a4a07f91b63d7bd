import { describe, expect, it } from 'vitest';
import { dirtyPages, faultBitPages, pagesOf } from '../../src/kernels/bitmaps.ts';
import {
  ACCESSED_READ,
  ACCESSED_WRITE,
  DIRTY_PAGES_PER_WORD,
  DIRTY_WORD_SHIFT,
  FAULT_BITS_PER_PAGE,
  FAULT_PAGES_PER_WORD,
  FAULT_READ,
  FAULT_WORD_SHIFT,
  FAULT_WRITE,
} from '../../src/kernels/kernel-layout.ts';
import { testRandom } from '../support/random.ts';

/** Sets `bits` of `page` as the prelude's hmm_note does. */
function note(words: Uint32Array, page: number, bits: number): void {
  const word = page >> FAULT_WORD_SHIFT;
  words[word] =
    (words[word] ?? 0) | (bits << ((page & (FAULT_PAGES_PER_WORD - 1)) * FAULT_BITS_PER_PAGE));
}

/** Marks `page` as the prelude's hmm_mark_dirty does. */
function markDirty(words: Uint32Array, page: number): void {
  const word = page >> DIRTY_WORD_SHIFT;
  words[word] = (words[word] ?? 0) | (1 << (page & (DIRTY_PAGES_PER_WORD - 1)));
}

describe('the page bitmaps', () => {
  it('have word shifts that match their pages per word, filling 32-bit words exactly', () => {
    expect(2 ** FAULT_WORD_SHIFT).toBe(FAULT_PAGES_PER_WORD);
    expect(FAULT_PAGES_PER_WORD * FAULT_BITS_PER_PAGE).toBe(32);
    expect(2 ** DIRTY_WORD_SHIFT).toBe(DIRTY_PAGES_PER_WORD);
    expect(DIRTY_PAGES_PER_WORD).toBe(32);
  });

  it('decode, ascending, every fault bit the prelude sets, each bit apart from the others', () => {
    const random = testRandom('fault bitmap');
    const pages = 1000;
    const words = new Uint32Array(Math.ceil(pages / FAULT_PAGES_PER_WORD));
    const expected = new Map<number, number[]>();
    for (const bit of [FAULT_READ, FAULT_WRITE, ACCESSED_READ, ACCESSED_WRITE]) {
      const set = new Set<number>();
      for (let i = 0; i < 200; i++) set.add(random.int(pages));
      set.add(pages - 1);
      for (const page of set) note(words, page, bit);
      expected.set(
        bit,
        [...set].sort((a, b) => a - b),
      );
    }
    for (const [bit, want] of expected) expect(faultBitPages(words, bit)).toEqual(want);
  });

  it('decode, ascending, every page the prelude marks dirty, the last slot of a word included', () => {
    const words = new Uint32Array(4);
    for (const page of [127, 0, 31, 32, 64, 5]) markDirty(words, page);
    expect(dirtyPages(words)).toEqual([0, 5, 31, 32, 64, 127]);
    expect(pagesOf(new Uint32Array(3), 32, 1, 1)).toEqual([]);
  });
});
