/**
 * What a kernel run and the runtime exchange through GPU buffers, with no
 * logic: the status block, the control uniform, the fault bitmap and the
 * declared-uses table. The WGSL prelude (prelude.ts) builds its WGSL from
 * these constants, so the two sides cannot disagree.
 */

// ---- status block: STATUS_WORDS u32, cleared to zero before each pass ----
export const STATUS_WORDS = 8;
/** Non-zero once any invocation recorded a fault (a page that needs a change of state). */
export const STATUS_FAULTED = 0;
/** Non-zero once any invocation stored to (or marked for write) a page. */
export const STATUS_STORED = 1;
/** The lowest VA of an access error, inverted (atomicMax of ~va; 0: none), so a cleared block means no error. */
export const STATUS_ERROR_VA = 2;
/** ERROR_* bits of the access errors seen. */
export const STATUS_ERROR_KINDS = 3;
/**
 * 0, or one more than the frame word index a refused `hmm_frame_store` aimed
 * at (outside the pages of the invocation's last write translations, or
 * through a read translation): any one of them. The runtime names its
 * address, and heeds it only when the pass has no other error or fault (a
 * pass whose write translation gave the sink frame may store there by
 * arithmetic: it fails or is a collecting pass anyway).
 */
export const STATUS_REFUSED_STORE = 4;
/**
 * The lowest `(range << RANGE_BOUNDS_SHIFT) | min(i, RANGE_BOUNDS_INDEX_MASK)`
 * of a named-range access with `i >= len`, inverted (atomicMax; 0: none): the
 * first range in declaration order that was overrun, and its smallest bad index.
 */
export const STATUS_RANGE_BOUNDS = 5;
export const RANGE_BOUNDS_SHIFT = 24;
export const RANGE_BOUNDS_INDEX_MASK = (1 << RANGE_BOUNDS_SHIFT) - 1;

/** An access to a page outside the run's declared `uses`. */
export const ERROR_UNDECLARED = 1 << 0;
/** A store to a declared page that is declared for reading only. */
export const ERROR_STORE_READ_ONLY = 1 << 1;
/** An address beyond the end of the address space. */
export const ERROR_OUT_OF_RANGE = 1 << 2;

// ---- control uniform (hmm_ctl): CONTROL_WORDS u32 ----
export const CONTROL_WORDS = 4;
/** Entries in the uses table, or USES_ALL (fault mode: every page may be touched). */
export const CONTROL_USES = 0;

// ---- pass modes: the pipeline constant `hmm_collecting` (prelude.ts) is true for MODE_COLLECT ----
/** A fault-collecting pass: stores and atomics are suppressed, faults recorded. */
export const MODE_COLLECT = 0;
/** The real pass: stores land. */
export const MODE_RUN = 1;
export const USES_ALL = 0xffff_ffff;

// ---- fault bitmap: four bits per VA page, 8 pages per u32 ----
// Page p's bits are bits [4 * (p % 8), 4 * (p % 8) + 4) of word p / 8.
/** A load found the page not resident. */
export const FAULT_READ = 1;
/** A store or atomic found the page not GPU-owned and writable. */
export const FAULT_WRITE = 2;
/** A collecting pass loaded from the page (faulted or not). */
export const ACCESSED_READ = 4;
/** A collecting pass stored to the page (faulted or not). */
export const ACCESSED_WRITE = 8;
export const FAULT_BITS_PER_PAGE = 4;
/** log2 of FAULT_PAGES_PER_WORD: page p's fault word is `p >> FAULT_WORD_SHIFT`. */
export const FAULT_WORD_SHIFT = 3;
/** 32 bits / FAULT_BITS_PER_PAGE; `p & (FAULT_PAGES_PER_WORD - 1)` is p's slot in its word. */
export const FAULT_PAGES_PER_WORD = 1 << FAULT_WORD_SHIFT;

// ---- dirty bitmap: one bit per VA page, 32 pages per u32 ----
// Kernels mark one u32 per page (dirty-pages.ts); the pack after each real pass fills this bitmap.
// Page p's bit is bit p % 32 of word p / 32.
/** log2 of DIRTY_PAGES_PER_WORD: page p's dirty word is `p >> DIRTY_WORD_SHIFT`. */
export const DIRTY_WORD_SHIFT = 5;
export const DIRTY_PAGES_PER_WORD = 1 << DIRTY_WORD_SHIFT;

// ---- uses: one row per declared run, staged into the page table's entries ----
/** [first page, end page (exclusive), USE_* , 0] */
export const USE_WORDS = 4;
export const USE_READ = 1;
export const USE_WRITE = 2;
/** What `hmm_declared` gives every page in fault mode (CONTROL_USES == USES_ALL). */
export const USE_ALL_ACCESS = USE_READ | USE_WRITE;

// ---- named ranges: one vec4<u32> per range, after the parameters in the params uniform ----
/** [first VA word (va / 4), length in words, 0, 0] */
export const RANGE_WORDS = 4;

// ---- translated word indices ----
/**
 * Set in the word index `hmm_translate(va, false)` returns: loads mask it
 * off, `hmm_frame_store` through it is refused (STATUS_REFUSED_STORE). No frames
 * buffer reaches 2^31 words (4 GiB is 2^30), so the bit is free.
 */
export const READ_TRANSLATION_TAG = 0x8000_0000;
