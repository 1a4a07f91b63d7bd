/**
 * The device page table's word layout: what kernels (through the WGSL
 * prelude) and the runtime agree on, with no logic. One u32 per VA page.
 *
 * | bits  | field                                                            |
 * |-------|------------------------------------------------------------------|
 * | 0-23  | frame index (valid when DPTE_RESIDENT)                           |
 * | 24    | DPTE_RESIDENT: the frame holds the page's current bytes          |
 * | 25    | DPTE_WRITABLE: the page is GPU-owned and `rw`: stores go direct  |
 * | 26    | DPTE_READABLE: the page's protection allows reads                |
 * | 27-28 | DPTE_DECLARED_*: the running pass declared the page (USE_READ,   |
 * |       | USE_WRITE), set only while that pass runs (kernel-runtime.ts)     |
 *
 * A page that is not resident (zero, or `cpu` with a stale frame), or not
 * writable for a store, is a GPU fault: the runtime changes its state and
 * replays.
 */
export const DPTE_FRAME_MASK = 0x00ff_ffff;
export const DPTE_RESIDENT = 1 << 24;
export const DPTE_WRITABLE = 1 << 25;
export const DPTE_READABLE = 1 << 26;
/** Where a pass's declared access of the page (its USE_* bits) sits while the pass runs. */
export const DPTE_DECLARED_SHIFT = 27;
/** Frames addressable by an entry. */
export const DPTE_MAX_FRAMES = DPTE_FRAME_MASK + 1;
