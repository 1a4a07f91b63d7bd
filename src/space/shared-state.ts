/**
 * Typed views over an address space's `meta` buffer, laid out per
 * `shared-layout.ts`. Every thread attached to a space builds the same views
 * over the same SharedArrayBuffer; nothing here is thread-local.
 */
import { InvalidArgumentError } from '../errors.ts';
import {
  FAULT_SLOTS,
  FAULT_WORDS,
  HEADER_MAGIC,
  HEADER_PAGE_COUNT,
  HEADER_PAGE_SHIFT,
  HEADER_VERSION,
  HEADER_WORDS,
  LAYOUT_MAGIC,
  LAYOUT_VERSION,
  LOG_CAPACITY,
  LOG_WORDS,
  staleWordsPerPage,
  THREAD_SLOTS,
  THREAD_WORDS,
} from './shared-layout.ts';

export interface SharedState {
  readonly meta: SharedArrayBuffer;
  readonly header: Int32Array;
  readonly pte: Int32Array;
  readonly lock: Int32Array;
  readonly seq: Int32Array;
  readonly gen: Int32Array;
  readonly runHead: Int32Array;
  readonly runTail: Int32Array;
  readonly stale: Int32Array;
  readonly log: Int32Array;
  readonly faults: Int32Array;
  readonly threads: Int32Array;
  readonly pageCount: number;
  readonly pageShift: number;
}

/** Per-page one-word sections, in layout order. */
const PAGE_SECTIONS = 6;

function metaWords(pageCount: number, pageShift: number): number {
  return (
    HEADER_WORDS +
    PAGE_SECTIONS * pageCount +
    staleWordsPerPage(2 ** pageShift) * pageCount +
    LOG_WORDS * LOG_CAPACITY +
    FAULT_WORDS * FAULT_SLOTS +
    THREAD_WORDS * THREAD_SLOTS
  );
}

function views(meta: SharedArrayBuffer, pageCount: number, pageShift: number): SharedState {
  const all = new Int32Array(meta);
  let at = HEADER_WORDS;
  const take = (words: number): Int32Array => all.subarray(at, (at += words));
  return {
    meta,
    header: all.subarray(0, HEADER_WORDS),
    pte: take(pageCount),
    lock: take(pageCount),
    seq: take(pageCount),
    gen: take(pageCount),
    runHead: take(pageCount),
    runTail: take(pageCount),
    stale: take(staleWordsPerPage(2 ** pageShift) * pageCount),
    log: take(LOG_WORDS * LOG_CAPACITY),
    faults: take(FAULT_WORDS * FAULT_SLOTS),
    threads: take(THREAD_WORDS * THREAD_SLOTS),
    pageCount,
    pageShift,
  };
}

/** A fresh, zeroed state for `pageCount` pages of `1 << pageShift` bytes. */
export function createSharedState(pageCount: number, pageShift: number): SharedState {
  const meta = new SharedArrayBuffer(metaWords(pageCount, pageShift) * 4);
  const state = views(meta, pageCount, pageShift);
  state.header[HEADER_MAGIC] = LAYOUT_MAGIC;
  state.header[HEADER_VERSION] = LAYOUT_VERSION;
  state.header[HEADER_PAGE_SHIFT] = pageShift;
  state.header[HEADER_PAGE_COUNT] = pageCount;
  return state;
}

/** Views over a state another thread created; throws InvalidArgumentError if `meta` is not one. */
export function openSharedState(meta: SharedArrayBuffer): SharedState {
  const header = new Int32Array(meta, 0, HEADER_WORDS);
  if (
    Atomics.load(header, HEADER_MAGIC) !== LAYOUT_MAGIC ||
    Atomics.load(header, HEADER_VERSION) !== LAYOUT_VERSION
  ) {
    throw new InvalidArgumentError(
      'handle',
      'meta',
      'bad-value',
      `not a webhmm address space of layout version ${LAYOUT_VERSION}`,
    );
  }
  const pageCount = Atomics.load(header, HEADER_PAGE_COUNT);
  const pageShift = Atomics.load(header, HEADER_PAGE_SHIFT);
  if (meta.byteLength !== metaWords(pageCount, pageShift) * 4) {
    throw new InvalidArgumentError(
      'handle',
      meta.byteLength,
      'bad-value',
      'meta buffer has the wrong length for its page count',
    );
  }
  return views(meta, pageCount, pageShift);
}
