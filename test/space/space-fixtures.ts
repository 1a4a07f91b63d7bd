// Fixtures for the address-space unit tests: a small space, its page table as
// the GPU mirror sees it, pages put in GPU states by hand, and typed-error checks.
import { expect } from 'vitest';
import { AddressSpace, type AddressSpaceOptions } from '../../src/space/address-space.ts';
import { withState } from '../../src/space/pte.ts';
import {
  HEADER_STALE_BYTES_WRITTEN,
  PTE_FRAME,
  staleWordsPerPage,
} from '../../src/space/shared-layout.ts';
import { openSharedState, type SharedState } from '../../src/space/shared-state.ts';
import { blockRuns, readBlocks } from '../../src/space/stale-blocks.ts';

export const PAGE = 4096;

/** A space of 64 pages of 4 KiB (page 0 never mapped). */
export function space(options: Partial<AddressSpaceOptions> = {}): AddressSpace {
  return AddressSpace.create({ size: 64 * PAGE, pageSize: PAGE, ...options });
}

/** The space's page table, as the GPU mirror sees it: for putting pages in GPU states by hand. */
export function pageTable(s: AddressSpace): SharedState {
  return openSharedState(s.handle.meta);
}

/** Makes the page at `va` look as a mirror leaves it: a frame, and `state`. */
export function giveFrame(s: AddressSpace, va: number, state: number, extra = 0): void {
  const { pte } = pageTable(s);
  const page = va / s.pageSize;
  Atomics.store(pte, page, withState(Atomics.load(pte, page), state) | PTE_FRAME | extra);
}

/** Runs `fn`, expecting it to throw a `type` with `fields`; returns the error. */
export function expectError<E extends Error>(
  fn: () => unknown,
  type: new (...args: never[]) => E,
  fields: Partial<E>,
): E {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(type);
  expect(caught).toMatchObject(fields);
  return caught as E;
}

/** The page at `va`'s stale blocks, as runs of page-relative bytes [lo, hi). */
export function staleRuns(s: AddressSpace, va: number): [number, number][] {
  const words = staleWordsPerPage(s.pageSize);
  return blockRuns(readBlocks(pageTable(s).stale, (va / s.pageSize) * words, words));
}

/** Bytes CPU writes marked stale in frames so far (the header's int64). */
export function staleBytesWritten(s: AddressSpace): number {
  const view = new BigInt64Array(s.handle.meta, HEADER_STALE_BYTES_WRITTEN * 4, 1);
  return Number(Atomics.load(view, 0));
}
