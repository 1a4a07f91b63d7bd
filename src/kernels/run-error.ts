/**
 * Decoding a failed pass: the status block's lowest error address and error
 * kinds become the AccessError the run rejects with. The offending accesses
 * were suppressed (loads read zeros, stores went to the sink frame); the
 * run's other stores landed, and the error's `touched` lists their pages.
 */
import { AccessError, invariant } from '../errors.ts';
import type { PageRun } from '../space/page-run.ts';
import type { PageTable } from '../space/page-table.ts';
import { protAllows } from '../space/pte.ts';
import { ERROR_OUT_OF_RANGE, ERROR_STORE_READ_ONLY, ERROR_UNDECLARED } from './kernel-layout.ts';
import type { PassStatus } from './kernel-runtime.ts';

/**
 * The AccessError of a pass whose status has error kinds, at its lowest
 * error address:
 * - 'out-of-range' for an address beyond the space;
 * - for a store to a page declared for reading only: 'undeclared' if the
 *   page is writable (the declaration was wrong), else 'protection';
 * - 'undeclared' for any other access outside the declared runs.
 * @param declared the run's declared page runs (none in fault mode)
 * @param dirty the pages the pass stored to, for the error's `touched`
 */
export function runError(
  table: PageTable,
  status: PassStatus,
  declared: readonly PageRun[],
  dirty: readonly number[],
): AccessError {
  const va = status.errorVa ?? 0;
  const page = Math.floor(va / table.pageSize);
  const touched = dirty.map((p) => table.address(p));
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
