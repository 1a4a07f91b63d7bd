/**
 * Decoding a failed pass: the status block's lowest error address and error
 * kinds, or the word of a refused `hmm_frame_store`, become the AccessError
 * the run rejects with. The offending accesses were suppressed (loads read
 * zeros, stores went to the sink frame or nowhere); the run's other stores
 * landed, and the error's `touched` lists their pages.
 */
import { AccessError, invariant } from '../errors.ts';
import type { MirrorHost } from '../gpu/mirror-host.ts';
import type { PageRun } from '../space/page-run.ts';
import { protAllows } from '../space/pte.ts';
import {
  ERROR_OUT_OF_RANGE,
  ERROR_STORE_READ_ONLY,
  ERROR_UNDECLARED,
  READ_TRANSLATION_TAG,
} from './kernel-layout.ts';
import type { PassStatus } from './pass-status.ts';
import { decodeRangeBounds, type BoundRange } from './named-ranges.ts';
import { STORE_PAGES } from './prelude.ts';

/**
 * Whether a real pass failed: an access error, a named-range access out of
 * bounds, or a refused `hmm_frame_store`.
 */
export function passFailed(status: PassStatus): boolean {
  return (
    status.errorKinds !== 0 || status.rangeBounds !== undefined || status.refusedStore !== undefined
  );
}

/**
 * The AccessError of a failed pass (see `passFailed`), at its lowest error
 * address:
 * - 'out-of-range' for an address beyond the space;
 * - for a store to a page declared for reading only: 'undeclared' if the
 *   page is writable (the declaration was wrong), else 'protection';
 * - 'undeclared' for any other access outside the declared runs;
 * - with no access error, 'undeclared' for the refused `hmm_frame_store`, at
 *   the address it aimed at (0 when that word is in no page's frame).
 * Before all of these, 'out-of-range' for a named-range access past its
 * length, naming the first such range, its index and that index's address.
 * @param declared the run's declared page runs (none in fault mode)
 * @param dirty the pages the pass stored to, for the error's `touched`
 * @param bound the run's named ranges, in declaration order
 */
export function runError(
  host: MirrorHost,
  status: PassStatus,
  declared: readonly PageRun[],
  dirty: readonly number[],
  bound: readonly BoundRange[] = [],
): AccessError {
  const { table } = host.space;
  const touched = dirty.map((p) => table.address(p));
  if (status.rangeBounds !== undefined) {
    return rangeBoundsError(status.rangeBounds, bound, touched);
  }
  if (status.errorKinds === 0 && status.refusedStore !== undefined) {
    return refusedStoreError(host, status.refusedStore, touched);
  }
  const va = status.errorVa ?? 0;
  const page = Math.floor(va / table.pageSize);
  if (status.errorKinds & ERROR_OUT_OF_RANGE && page >= table.pageCount) {
    return new AccessError(va, 'out-of-range', 'a kernel access beyond the space', touched);
  }
  const inDeclared = declared.some((run) => page >= run.first && page < run.first + run.count);
  if (inDeclared && status.errorKinds & ERROR_STORE_READ_ONLY) {
    return protAllows(table.pte(page), 'write')
      ? new AccessError(
          va,
          'undeclared',
          'a kernel stored to a range declared for reading',
          touched,
        )
      : new AccessError(va, 'protection', 'a kernel stored to a read-only page', touched);
  }
  invariant(
    status.errorKinds & (ERROR_UNDECLARED | ERROR_STORE_READ_ONLY | ERROR_OUT_OF_RANGE),
    'error kind',
  );
  return new AccessError(
    va,
    'undeclared',
    'a kernel touched a page outside its declared uses',
    touched,
  );
}

/** The AccessError of a named-range access at an index past the range's length. */
function rangeBoundsError(
  word: number,
  bound: readonly BoundRange[],
  touched: readonly number[],
): AccessError {
  const { range, index, saturated } = decodeRangeBounds(word);
  const named = bound[range];
  invariant(named, 'a bounds failure of a range the run did not bind');
  const words = named.len / 4;
  const at = saturated ? `an index of ${index} or more` : `index ${index}`;
  return new AccessError(
    named.va + index * 4,
    'out-of-range',
    `a kernel accessed named range '${named.name}' at ${at}, past ${named.name}_len() = ${words}; it was suppressed`,
    touched,
  );
}

/** The AccessError of a refused `hmm_frame_store` to frame word `w` (read tag included). */
function refusedStoreError(host: MirrorHost, w: number, touched: readonly number[]): AccessError {
  const { pageSize } = host.space.table;
  const pageWords = pageSize / 4;
  const word = (w & ~READ_TRANSLATION_TAG) >>> 0;
  const page = host.migrator.frameMap.pageOf(Math.floor(word / pageWords));
  const address = page >= 0 ? page * pageSize + (word % pageWords) * 4 : 0;
  const how =
    w >= READ_TRANSLATION_TAG
      ? 'a kernel stored through a read translation (hmm_translate(va, false))'
      : `a kernel's hmm_frame_store aimed outside the pages of its last ${STORE_PAGES} write translations (index arithmetic past the translated page, or a page translated longer ago)`;
  const where = page >= 0 ? '' : '; the word is in no page’s frame';
  return new AccessError(address, 'undeclared', `${how}; it was suppressed${where}`, touched);
}
