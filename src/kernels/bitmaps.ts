/**
 * Decoding the page bitmaps a pass reads back (layouts in kernel-layout.ts):
 * the fault bitmap of a collecting pass (FAULT_BITS_PER_PAGE bits a page) and
 * the dirty bitmap of a real pass (one bit a page). Pages come out ascending.
 */
import {
  DIRTY_PAGES_PER_WORD,
  FAULT_BITS_PER_PAGE,
  FAULT_PAGES_PER_WORD,
} from './kernel-layout.ts';

/**
 * Pages whose `bit` is set in a bitmap of `perWord` pages a u32 word, of
 * `bitsPerPage` bits each (page p in word `floor(p / perWord)`, at bit
 * `(p % perWord) * bitsPerPage`), ascending.
 */
export function pagesOf(
  words: Uint32Array,
  perWord: number,
  bitsPerPage: number,
  bit: number,
): number[] {
  const pages: number[] = [];
  words.forEach((word, index) => {
    if (word === 0) return;
    for (let slot = 0; slot < perWord; slot++) {
      if ((word >>> (slot * bitsPerPage)) & bit) pages.push(index * perWord + slot);
    }
  });
  return pages;
}

/** Pages with fault bitmap bit `bit` (FAULT_READ, FAULT_WRITE, ACCESSED_READ, ACCESSED_WRITE) set. */
export function faultBitPages(words: Uint32Array, bit: number): number[] {
  return pagesOf(words, FAULT_PAGES_PER_WORD, FAULT_BITS_PER_PAGE, bit);
}

/** Pages marked in a dirty bitmap: the pages a real pass stored to. */
export function dirtyPages(words: Uint32Array): number[] {
  return pagesOf(words, DIRTY_PAGES_PER_WORD, 1, 1);
}
