/**
 * The options an address space is created and attached with, and their
 * checks: what `AddressSpace.create` and `AddressSpace.attach` accept, in one
 * place, so a bad option is refused before any shared memory exists.
 *
 * Bounds (all inclusive):
 * - `pageSize`: a power of two from 4096 (4 KiB) to 2097152 (2 MiB) bytes;
 * - `size`: a whole number of pages, at least two (page 0 is never mapped, so
 *   a null pointer faults), at most 4 GiB minus one page (VAs fit a u32);
 * - `faultTimeoutMs`: a positive integer; `spinLimitMs`: a non-negative one.
 */
import { callback, nonNegativeInteger, positiveInteger } from '../arguments.ts';
import { InvalidArgumentError } from '../errors.ts';
import { LAYOUT_VERSION, type SpaceHandle } from './shared-layout.ts';
import { openSharedState, type SharedState } from './shared-state.ts';
import { defaultMayBlock, type WaitLimits } from './waiting.ts';

export interface AddressSpaceOptions {
  /**
   * Bytes of address space: a whole number of pages, at least two pages
   * (page 0 is never mapped) and at most 4 GiB minus one page. The space's
   * CPU memory is one SharedArrayBuffer of exactly this length.
   */
  readonly size: number;
  /** Bytes per page: a power of two from 4096 to 2097152 (4 KiB to 2 MiB), inclusive; default 65536 (64 KiB). */
  readonly pageSize?: number;
  /**
   * Longest a blocked call waits for one thing (pages another thread or a
   * kernel holds, a CPU fault being served) before it fails with
   * WouldBlockError 'timeout': milliseconds, a positive integer; default
   * 10000. Carried in `handle`, so every attached thread uses it.
   */
  readonly faultTimeoutMs?: number;
  /**
   * Longest a thread that may not block spins on a short critical section
   * (another thread's plain access, the allocator) before WouldBlockError
   * 'may-not-block': milliseconds, a non-negative integer (0: never spin);
   * default 200. Carried in `handle`.
   */
  readonly spinLimitMs?: number;
  /**
   * Decides, at each call, whether this thread may block (Atomics.wait).
   * Default: not on a browser window's main thread; yes in workers and Node.
   * Never blocks, whatever this says, while this thread owns a GpuMirror.
   */
  readonly mayBlock?: () => boolean;
}

export interface AttachOptions {
  /** As `AddressSpaceOptions.mayBlock`, for this thread. The wait limits come from the handle. */
  readonly mayBlock?: () => boolean;
}

/** The smallest page, bytes (inclusive). */
const MIN_PAGE_SIZE = 4 << 10;
/** The largest page, bytes (inclusive). */
const MAX_PAGE_SIZE = 2 << 20;
const DEFAULT_PAGE_SIZE = 64 << 10;
/** VAs are u32: a space ends at least one page below 2^32. */
const MAX_SPACE = 2 ** 32;
const DEFAULT_FAULT_TIMEOUT_MS = 10_000;
const DEFAULT_SPIN_LIMIT_MS = 200;

/**
 * The size and page size `options` ask for, checked.
 * @throws InvalidArgumentError naming the first bad option: 'pageSize' ('not-integer',
 *   'negative', 'zero', 'bad-value'), 'size' ('not-integer', 'negative', 'zero',
 *   'misaligned', 'too-large', 'bad-value' for fewer than two pages)
 */
export function spaceGeometry(options: AddressSpaceOptions): { size: number; pageSize: number } {
  const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
  positiveInteger('pageSize', pageSize);
  if (pageSize < MIN_PAGE_SIZE || pageSize > MAX_PAGE_SIZE || (pageSize & (pageSize - 1)) !== 0) {
    throw new InvalidArgumentError(
      'pageSize',
      pageSize,
      'bad-value',
      `a power of two from ${MIN_PAGE_SIZE} to ${MAX_PAGE_SIZE}`,
    );
  }
  const { size } = options;
  positiveInteger('size', size);
  if (size % pageSize !== 0) {
    throw new InvalidArgumentError(
      'size',
      size,
      'misaligned',
      `a multiple of pageSize (${pageSize})`,
    );
  }
  if (size > MAX_SPACE - pageSize) {
    throw new InvalidArgumentError(
      'size',
      size,
      'too-large',
      `at most 4 GiB minus one page (${MAX_SPACE - pageSize})`,
    );
  }
  if (size < 2 * pageSize) {
    throw new InvalidArgumentError(
      'size',
      size,
      'bad-value',
      'at least two pages: page 0 is never mapped',
    );
  }
  return { size, pageSize };
}

/**
 * The wait limits `options` (or a handle) carry, defaults filled in.
 * @throws InvalidArgumentError 'faultTimeoutMs' ('not-integer', 'negative', 'zero'),
 *   'spinLimitMs' ('not-integer', 'negative')
 */
export function waitLimits(options: {
  readonly faultTimeoutMs?: number;
  readonly spinLimitMs?: number;
}): WaitLimits {
  const faultTimeoutMs = options.faultTimeoutMs ?? DEFAULT_FAULT_TIMEOUT_MS;
  const spinLimitMs = options.spinLimitMs ?? DEFAULT_SPIN_LIMIT_MS;
  positiveInteger('faultTimeoutMs', faultTimeoutMs);
  nonNegativeInteger('spinLimitMs', spinLimitMs);
  return { faultTimeoutMs, spinLimitMs };
}

/**
 * The shared state behind another thread's `space.handle`, checked.
 * @throws InvalidArgumentError 'handle' 'bad-value' for something that is not a
 *   handle of this layout version, or whose memory and meta do not belong together
 */
export function openHandle(handle: SpaceHandle): SharedState {
  if (typeof handle !== 'object' || handle === null) {
    throw new InvalidArgumentError('handle', handle, 'bad-value', 'a webhmm space handle');
  }
  if (handle.type !== 'webhmm-space' || handle.version !== LAYOUT_VERSION) {
    throw new InvalidArgumentError(
      'handle',
      handle.type,
      'bad-value',
      `not a webhmm space handle of version ${LAYOUT_VERSION}`,
    );
  }
  const shared = openSharedState(handle.meta);
  if (handle.memory.byteLength !== shared.pageCount * 2 ** shared.pageShift) {
    throw new InvalidArgumentError(
      'handle',
      handle.memory.byteLength,
      'bad-value',
      'memory and meta do not belong together',
    );
  }
  return shared;
}

/**
 * The `mayBlock` option, or the default (blocking waits everywhere but the main thread).
 * @throws InvalidArgumentError 'mayBlock' 'bad-value' for anything but a function
 */
export function mayBlockOption(options: { readonly mayBlock?: unknown }): () => boolean {
  if (options.mayBlock === undefined) return defaultMayBlock;
  callback('mayBlock', options.mayBlock);
  return options.mayBlock as () => boolean;
}
