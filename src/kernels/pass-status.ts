/**
 * A pass's status block as the runtime reads it back (layout in
 * kernel-layout.ts): what it faulted on, whether it stored, its access
 * errors, and the bitmap read back in the same round trip.
 */
import {
  STATUS_ERROR_KINDS,
  STATUS_ERROR_VA,
  STATUS_FAULTED,
  STATUS_RANGE_BOUNDS,
  STATUS_REFUSED_STORE,
  STATUS_STORED,
  STATUS_WORDS,
} from './kernel-layout.ts';

/** A pass's status block, decoded. */
export interface PassStatus {
  readonly faulted: boolean;
  readonly stored: boolean;
  /** Lowest VA of an access error, or undefined. */
  readonly errorVa: number | undefined;
  readonly errorKinds: number;
  /** The frame word a refused `hmm_frame_store` aimed at (read tag included), or undefined. */
  readonly refusedStore: number | undefined;
  /** STATUS_RANGE_BOUNDS of a pass with an out-of-range named-range access, or undefined. */
  readonly rangeBounds: number | undefined;
  /**
   * The bitmap the pass filled, read back with the status in the same round
   * trip: the fault bitmap of a collecting pass, the dirty bitmap otherwise.
   */
  readonly bits: Uint32Array;
}

/**
 * `words`: a status block, then the bitmap the pass filled. Every pass
 * starts from a cleared (zero) block: the minimums are kept inverted.
 */
export function decodeStatus(words: Uint32Array): PassStatus {
  const errorVa = words[STATUS_ERROR_VA] ?? 0;
  const errorKinds = words[STATUS_ERROR_KINDS] ?? 0;
  const rangeBounds = words[STATUS_RANGE_BOUNDS] ?? 0;
  const refused = words[STATUS_REFUSED_STORE] ?? 0;
  return {
    faulted: (words[STATUS_FAULTED] ?? 0) !== 0,
    stored: (words[STATUS_STORED] ?? 0) !== 0,
    // ~0xffffffff is 0: an error at the very last address reads as none but sets a kind.
    errorVa: errorVa !== 0 ? ~errorVa >>> 0 : errorKinds !== 0 ? 0xffff_ffff : undefined,
    errorKinds,
    refusedStore: refused ? refused - 1 : undefined,
    rangeBounds: rangeBounds !== 0 ? ~rangeBounds >>> 0 : undefined,
    bits: words.subarray(STATUS_WORDS),
  };
}
