/**
 * AddressSpace: one virtual address space shared by every thread attached to
 * it. CPU memory is one fixed-length SharedArrayBuffer in which VA == byte
 * offset; all other state (page table, holds, allocator, stale ranges,
 * invalidation log) lives in a second SharedArrayBuffer, so any attached
 * thread can alloc, free, protect, read and write.
 *
 * Guarantees:
 * - Every access holds the pages it touches (page-lock.ts) and checks them
 *   only once held, so a call sees one consistent page state and a failed
 *   call changes nothing.
 * - Plain CPU reads, writes and atomics never exclude each other; read scopes
 *   exclude writers; write scopes, frees and migrations exclude everyone.
 * - A page's newest bytes are never discarded except by `free`; freed pages
 *   are zeroed before the allocator can hand them out again, and only once
 *   the CPU accesses that began before the free have finished.
 * - A CPU write to a page whose GPU copy was valid makes that copy stale in
 *   exactly the written byte ranges (up to STALE_CAPACITY per page, then the
 *   whole page) and reports the page to `onInvalidate` listeners.
 */
import { AccessError, InvalidArgumentError, OutOfMemoryError, WouldBlockError } from '../errors.ts';
import { PageAllocator } from './allocator.ts';
import { FaultChannel, unservedFault } from './fault-channel.ts';
import { registerInternals } from './internals.ts';
import { Lease, type LeaseMode } from './lease.ts';
import { lockMutex, unlockMutex } from './mutex.ts';
import {
  InvalidationNotifier,
  coalesce,
  type InvalidateEvent,
  type InvalidateListener,
} from './notifier.ts';
import { PageTable, type Hold } from './page-table.ts';
import { describePte, type Need, type PageSnapshot, type Protection } from './pte.ts';
import {
  HEADER_ALLOC_MUTEX,
  HEADER_THREAD_IDS,
  LAYOUT_VERSION,
  PROT_NONE,
  PROT_R,
  PROT_RW,
  PTE_FREED,
  PTE_PROT_MASK,
  PTE_PROT_SHIFT,
  PTE_STATE_MASK,
  PTE_UNMAPPED,
  PTE_ZERO,
  type SpaceHandle,
} from './shared-layout.ts';
import { createSharedState, openSharedState, type SharedState } from './shared-state.ts';
import { ThreadRecord } from './thread-record.ts';
import { WaitBudget, defaultMayBlock, type WaitLimits } from './waiting.ts';

export type { PageSnapshot, PageState, Protection } from './pte.ts';
export type AccessMode = LeaseMode;

export interface AddressSpaceOptions {
  /** Bytes of address space: a multiple of pageSize, at most 4 GiB minus one page. */
  readonly size: number;
  /** A power of two from 4 KiB to 2 MiB; default 64 KiB. */
  readonly pageSize?: number;
  /** Longest a blocked call waits before WouldBlockError 'timeout', ms; default 10000. */
  readonly faultTimeoutMs?: number;
  /** Longest a thread that may not block spins on a short critical section, ms; default 200. */
  readonly spinLimitMs?: number;
  /** Decides, per call, whether this thread may block; default: not on a browser window's main thread. */
  readonly mayBlock?: () => boolean;
}

export interface AttachOptions {
  readonly mayBlock?: () => boolean;
}

let attachTerminable: (handle: SpaceHandle) => AddressSpace;

/**
 * Attaches on a thread that `Threads` may end (serveThread): its holds are
 * journaled and its shared-state changes run as critical sections, so ending
 * it loses nothing (thread-record.ts). Not part of the public API.
 * @throws OutOfMemoryError 'threads' when every thread record of the space is taken
 */
export function attachThread(handle: SpaceHandle): AddressSpace {
  return attachTerminable(handle);
}

const PROT_CODES: Record<Protection, number> = { none: PROT_NONE, r: PROT_R, rw: PROT_RW };

const MIN_PAGE_SIZE = 4 << 10;
const MAX_PAGE_SIZE = 2 << 20;
const MAX_SPACE = 2 ** 32;

/** A held run of pages with what the CPU access needs of them. */
interface Access extends Hold {
  readonly va: number;
  readonly len: number;
  readonly need: Need;
}

export class AddressSpace {
  /** Bytes in the space. */
  readonly size: number;
  /** Bytes per page. */
  readonly pageSize: number;
  private readonly pageShift: number;
  private readonly memory: SharedArrayBuffer;
  private readonly bytes: Uint8Array;
  private readonly words: Uint32Array;
  private readonly floats: Float32Array;
  private readonly shared: SharedState;
  private readonly allocator: PageAllocator;
  private readonly notifier: InvalidationNotifier;
  private readonly table: PageTable;
  private readonly faults: FaultChannel;
  private readonly limits: WaitLimits;
  /** Whether this call may block: the policy, unless this thread owns a GPUDevice. */
  private readonly mayBlock: () => boolean;
  private devicesOwned = 0;
  /** Ranges held by this thread's scopes (access/acquire), for the re-entrancy check. */
  private readonly scopes = new Set<{ readonly first: number; readonly count: number }>();
  /** Invalidations of the call in progress, announced once its holds are released. */
  private outbox: InvalidateEvent[] = [];

  private constructor(
    memory: SharedArrayBuffer,
    shared: SharedState,
    limits: WaitLimits,
    mayBlock: () => boolean,
    /** A thread `Threads` may end: it keeps a thread record (thread-record.ts). */
    terminable = false,
  ) {
    this.memory = memory;
    this.shared = shared;
    this.mayBlock = () => this.devicesOwned === 0 && mayBlock();
    this.pageShift = shared.pageShift;
    this.pageSize = 2 ** shared.pageShift;
    this.size = memory.byteLength;
    this.bytes = new Uint8Array(memory);
    this.words = new Uint32Array(memory, 0, this.size >>> 2);
    this.floats = new Float32Array(memory, 0, this.size >>> 2);
    this.allocator = new PageAllocator(shared);
    const threadId = Atomics.add(shared.header, HEADER_THREAD_IDS, 1) + 1;
    const record = terminable ? ThreadRecord.claim(shared.threads, threadId) : undefined;
    this.limits = record ? { ...limits, record } : limits;
    this.table = new PageTable(shared, memory, this.limits, record);
    const critical = <T>(body: () => T): T => this.table.critical(body);
    this.faults = new FaultChannel(shared, threadId, critical);
    this.notifier = new InvalidationNotifier(shared, threadId, this.size, critical);
    registerInternals(this, {
      table: this.table,
      memory,
      faults: this.faults,
      threadId,
      limits: this.limits,
      stopThread: (id) => ThreadRecord.stop(shared.threads, id),
      recoverThread: (id) =>
        ThreadRecord.recover(
          shared.threads,
          id,
          (holds) => this.table.releaseLocks(holds),
          (owner) => this.faults.abandonOwnedBy(owner),
        ),
      announce: (events) => this.notifier.announce(coalesce(events)),
      pollNotices: () => this.notifier.poll(),
      ownDevice: (owned) => {
        this.devicesOwned += owned ? 1 : -1;
      },
      pageSpan: (va, len) => this.pageSpan(va, len),
      allocationRun: (page) => {
        let run: { first: number; count: number; allocated: boolean } | undefined;
        this.withAllocator(page * this.pageSize, () => (run = this.allocator.runAt(page)));
        return run?.allocated ? { first: run.first, count: run.count } : undefined;
      },
    });
  }

  /**
   * A new space: `size` bytes, all unmapped. Throws InvalidArgumentError for a
   * size or page size out of bounds.
   */
  static create(options: AddressSpaceOptions): AddressSpace {
    const pageSize = options.pageSize ?? 64 << 10;
    positiveInteger('pageSize', pageSize);
    if (pageSize < MIN_PAGE_SIZE || pageSize > MAX_PAGE_SIZE || (pageSize & (pageSize - 1)) !== 0) {
      throw new InvalidArgumentError(
        'pageSize',
        pageSize,
        'bad-value',
        'a power of two from 4096 to 2097152',
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
    const limits = waitLimits(options);
    const shared = createSharedState(size / pageSize, Math.log2(pageSize));
    new PageAllocator(shared).initialize();
    return new AddressSpace(
      new SharedArrayBuffer(size),
      shared,
      limits,
      options.mayBlock ?? defaultMayBlock,
    );
  }

  /** The same space on this thread, from another thread's `space.handle`. */
  static attach(handle: SpaceHandle, options: AttachOptions = {}): AddressSpace {
    return AddressSpace.open(handle, options, false);
  }

  static {
    attachTerminable = (handle) => AddressSpace.open(handle, {}, true);
  }

  private static open(
    handle: SpaceHandle,
    options: AttachOptions,
    terminable: boolean,
  ): AddressSpace {
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
    return new AddressSpace(
      handle.memory,
      shared,
      waitLimits(handle),
      options.mayBlock ?? defaultMayBlock,
      terminable,
    );
  }

  /** Structured-cloneable; `AddressSpace.attach(handle)` on another thread gives the same space. */
  get handle(): SpaceHandle {
    return {
      type: 'webhmm-space',
      version: LAYOUT_VERSION,
      memory: this.memory,
      meta: this.shared.meta,
      faultTimeoutMs: this.limits.faultTimeoutMs,
      spinLimitMs: this.limits.spinLimitMs,
    };
  }

  // ---------------------------------------------------------------- allocation

  /**
   * Allocates `bytes` rounded up to whole pages, first fit; returns the
   * page-aligned VA. The pages read as zeros.
   * @throws InvalidArgumentError for a size that is not a positive integer, or a bad `prot`
   * @throws OutOfMemoryError when no run of free pages is large enough
   * @throws WouldBlockError if the allocator stays busy past spinLimitMs on a thread that may not block
   */
  alloc(bytes: number, options: { readonly prot?: Protection } = {}): number {
    positiveInteger('bytes', bytes);
    const prot = protCode(options.prot ?? 'rw');
    const count = Math.ceil(bytes / this.pageSize);
    let first = -1;
    let largest = 0;
    // One critical section: pages taken from the allocator are mapped before this thread could be ended.
    this.table.critical(() => {
      this.withAllocator(0, () => {
        first = count < this.shared.pageCount ? this.allocator.take(count) : -1;
        if (first < 0) largest = this.allocator.largestFree();
      });
      for (let page = first; page >= 0 && page < first + count; page++) {
        Atomics.store(this.shared.pte, page, PTE_ZERO | (prot << PTE_PROT_SHIFT));
      }
    });
    if (first < 0) {
      throw new OutOfMemoryError(
        'address-space',
        bytes,
        largest * this.pageSize,
        'free memory or create a larger space',
      );
    }
    return first * this.pageSize;
  }

  /**
   * Frees the allocation that starts at `va`, or with `len`, the whole pages
   * of [va, va + len) (len rounded up to pages, like munmap). The CPU sees the
   * range unmapped at once; the data is discarded and the pages are zeroed and
   * returned to the allocator once the accesses already holding them finish.
   * @throws InvalidArgumentError 'misaligned' (va not page-aligned), 'not-allocated'
   *   (double free, or never allocated), 'not-allocation-start' (no len, va inside an allocation)
   * @throws AccessError 'out-of-range'
   * @throws WouldBlockError where waiting for a scope holding the range is not allowed
   */
  free(va: number, len?: number): void {
    nonNegativeInteger('va', va);
    if (va % this.pageSize !== 0) {
      throw new InvalidArgumentError(
        'va',
        va,
        'misaligned',
        `free takes page-aligned addresses (pageSize ${this.pageSize})`,
        { address: va },
      );
    }
    if (va >= this.size)
      throw new AccessError(va, 'out-of-range', `the space ends at 0x${this.size.toString(16)}`);
    const first = va >>> this.pageShift;
    let count: number;
    let generations: Int32Array | undefined;
    if (len === undefined) {
      count = this.allocationAt(first, va);
      generations = this.shared.gen.slice(first, first + count);
    } else {
      count = this.pageSpan(va, len).count;
    }
    const hold: Hold = { first, count, kind: 'exclusive' };
    this.assertNotInScope(first, count, va);
    this.table.critical(() => this.freeHeld(hold, va, generations));
    this.announce();
  }

  /** Holds, discards and returns to the allocator the pages of `hold` (one critical section). */
  private freeHeld(hold: Hold, va: number, generations: Int32Array | undefined): void {
    const { first, count } = hold;
    this.table.holdSync([hold], va, this.mayBlock);
    try {
      for (let page = first; page < first + count; page++) {
        const pte = this.table.pte(page);
        const stale =
          generations !== undefined &&
          generations[page - first] !== Atomics.load(this.shared.gen, page);
        if ((pte & PTE_STATE_MASK) === PTE_UNMAPPED || stale) {
          throw new InvalidArgumentError(
            'va',
            va,
            'not-allocated',
            `page at 0x${(page * this.pageSize).toString(16)} is not allocated: a double free?`,
            { address: va },
          );
        }
      }
      for (let page = first; page < first + count; page++) this.table.discardPage(page);
      this.outbox.push({ va, len: count * this.pageSize, cause: 'free' });
    } finally {
      this.table.releaseHolds([hold]);
    }
    this.withAllocator(va, () => this.allocator.give(first, count));
  }

  /**
   * Sets the protection of the whole pages of [va, va + len) for accesses that
   * start after this call.
   * @throws InvalidArgumentError 'misaligned' (va not page-aligned), or a bad size or prot
   * @throws AccessError 'unmapped' / 'freed' / 'out-of-range' at the first such page; nothing changes
   */
  protect(va: number, len: number, prot: Protection): void {
    const code = protCode(prot);
    const span = this.pageSpan(va, len);
    if (va % this.pageSize !== 0) {
      throw new InvalidArgumentError(
        'va',
        va,
        'misaligned',
        `protect takes page-aligned addresses (pageSize ${this.pageSize})`,
        { address: va },
      );
    }
    this.assertNotInScope(span.first, span.count, va);
    for (let page = span.first; page < span.first + span.count; page++) {
      this.table.assertMapped(page, va);
    }
    this.table.critical(() => {
      for (let page = span.first; page < span.first + span.count; page++) {
        this.table.invalidate(page);
        this.table.updatePte(page, (pte) =>
          (pte & PTE_STATE_MASK) === PTE_UNMAPPED
            ? pte
            : (pte & ~PTE_PROT_MASK) | (code << PTE_PROT_SHIFT),
        );
      }
    });
    this.outbox.push({ va, len: span.count * this.pageSize, cause: 'protect' });
    this.announce();
  }

  // ---------------------------------------------------------------- bulk access

  /**
   * A copy of [va, va + len).
   * @throws AccessError at the first unmapped, freed, out-of-range or unreadable byte; WouldBlockError
   */
  read(va: number, len: number): Uint8Array {
    const access = this.cpuAccess(va, len, 'read');
    return this.accessSync([access], () => this.bytes.slice(va, va + len));
  }

  /** `read` that waits asynchronously, on any thread (and brings GPU-dirty pages back). */
  async readAsync(va: number, len: number): Promise<Uint8Array> {
    const access = this.cpuAccess(va, len, 'read');
    return this.accessAsync([access], () => this.bytes.slice(va, va + len));
  }

  /**
   * Writes `data`'s bytes at `va`.
   * @throws AccessError at the first unmapped, freed, out-of-range or non-writable byte; WouldBlockError
   */
  write(va: number, data: ArrayBufferView): void {
    const source = viewBytes(data);
    const access = this.cpuAccess(va, source.byteLength, 'write');
    this.accessSync([access], () => this.bytes.set(source, va));
  }

  /** `write` that waits asynchronously, on any thread. */
  async writeAsync(va: number, data: ArrayBufferView): Promise<void> {
    const source = viewBytes(data);
    const access = this.cpuAccess(va, source.byteLength, 'write');
    return this.accessAsync([access], () => this.bytes.set(source, va));
  }

  /** Sets every byte of [va, va + len) to `byte` (0-255). Throws as `write`. */
  fill(va: number, len: number, byte: number): void {
    if (!Number.isInteger(byte) || byte < 0 || byte > 255) {
      throw new InvalidArgumentError('byte', byte, 'bad-value', 'an integer 0-255');
    }
    const access = this.cpuAccess(va, len, 'write');
    this.accessSync([access], () => this.bytes.fill(byte, va, va + len));
  }

  /**
   * Copies `len` bytes from `srcVa` to `dstVa`; the ranges may overlap (memmove).
   * @throws AccessError for an unreadable source or unwritable destination byte; WouldBlockError
   */
  copy(dstVa: number, srcVa: number, len: number): void {
    const accesses = [this.cpuAccess(srcVa, len, 'read'), this.cpuAccess(dstVa, len, 'write')];
    this.accessSync(accesses, () => this.bytes.copyWithin(dstVa, srcVa, srcVa + len));
  }

  // ---------------------------------------------------------------- scopes

  /**
   * Holds [va, va + len) for `fn` and passes it a lease of zero-copy views. A
   * read scope keeps writers out; a write scope keeps everyone out and makes
   * the range's GPU copy stale. The scope ends when `fn` returns (use
   * `acquire` to hold across awaits). Calls on an overlapping range from
   * inside `fn` throw WouldBlockError 'reentrant'.
   * @throws AccessError as `read`/`write`; WouldBlockError
   */
  access<T>(va: number, len: number, mode: AccessMode, fn: (lease: Lease) => T): T {
    const access = this.scopeAccess(va, len, mode);
    this.assertNotInScope(access.first, access.count, va);
    const lease = this.table.critical(() => {
      this.holdForCpuSync([access]);
      return this.openScope(access, mode);
    });
    try {
      return fn(lease);
    } finally {
      lease.release();
    }
  }

  /**
   * Holds [va, va + len) until `lease.release()`, waiting asynchronously on
   * any thread. Same rules as `access`.
   */
  async acquire(va: number, len: number, mode: AccessMode): Promise<Lease> {
    const access = this.scopeAccess(va, len, mode);
    await this.holdForCpuAsync([access]);
    return this.table.critical(() => this.openScope(access, mode));
  }

  // ---------------------------------------------------------------- scalars

  /** The u32 at `va` (4-byte aligned). Throws as `read`, and InvalidArgumentError 'misaligned'. */
  getU32(va: number): number {
    return this.accessSync([this.wordAccess(va, 'read')], () => Atomics.load(this.words, va >>> 2));
  }

  /** Stores the u32 `value` at `va` (4-byte aligned). Throws as `write`. */
  setU32(va: number, value: number): void {
    this.accessSync([this.wordAccess(va, 'write')], () =>
      Atomics.store(this.words, va >>> 2, value),
    );
  }

  /** The f32 at `va` (4-byte aligned). Throws as `read`. */
  getF32(va: number): number {
    return this.accessSync([this.wordAccess(va, 'read')], () => this.floats[va >>> 2] ?? 0);
  }

  /** Stores the f32 `value` at `va` (4-byte aligned). Throws as `write`. */
  setF32(va: number, value: number): void {
    this.accessSync([this.wordAccess(va, 'write')], () => {
      this.floats[va >>> 2] = value;
    });
  }

  /**
   * Atomically adds `value` to the u32 at `va`; returns the old value. Lock-free
   * against other CPU accesses; coherent with GPU atomics (the page is brought
   * to the CPU first).
   */
  atomicAddU32(va: number, value: number): number {
    return this.accessSync([this.wordAccess(va, 'write')], () =>
      Atomics.add(this.words, va >>> 2, value),
    );
  }

  /** Atomically replaces the u32 at `va` with `value` if it equals `expected`; returns the old value. */
  atomicCasU32(va: number, expected: number, value: number): number {
    return this.accessSync([this.wordAccess(va, 'write')], () =>
      Atomics.compareExchange(this.words, va >>> 2, expected, value),
    );
  }

  // ---------------------------------------------------------------- observation

  /**
   * Calls `listener` for every invalidation that overlaps [va, va + len), with
   * the overlap: CPU writes that make GPU copies stale, frees, protection
   * changes and migrations that take pages from the CPU. Runs on this thread,
   * outside any page hold. Returns the function that unsubscribes.
   */
  onInvalidate(va: number, len: number, listener: InvalidateListener): () => void {
    this.pageSpan(va, len);
    return this.notifier.listen(va, len, listener);
  }

  /** The state of each page of [va, va + len), changing nothing. */
  snapshot(va: number, len: number): PageSnapshot[] {
    const span = this.pageSpan(va, len);
    const out: PageSnapshot[] = [];
    for (let page = span.first; page < span.first + span.count; page++) {
      out.push(describePte(this.table.pte(page)));
    }
    return out;
  }

  // ---------------------------------------------------------------- internals

  /** Validates [va, va + len) and returns its pages. */
  private pageSpan(va: number, len: number): { first: number; count: number } {
    nonNegativeInteger('va', va);
    positiveInteger('len', len);
    if (va + len > this.size) {
      throw new AccessError(
        Math.max(va, this.size),
        'out-of-range',
        `the space ends at 0x${this.size.toString(16)}`,
      );
    }
    const first = Math.floor(va / this.pageSize);
    return { first, count: Math.floor((va + len - 1) / this.pageSize) - first + 1 };
  }

  /** A plain CPU access of [va, va + len), validated. */
  private cpuAccess(va: number, len: number, need: Need): Access {
    return { ...this.pageSpan(va, len), kind: need, va, len, need };
  }

  /** A scalar access at `va`, which must be 4-byte aligned. */
  private wordAccess(va: number, need: Need): Access {
    nonNegativeInteger('va', va);
    if (va % 4 !== 0) {
      throw new InvalidArgumentError('va', va, 'misaligned', 'scalar accesses are 4-byte aligned', {
        address: va,
      });
    }
    return this.cpuAccess(va, 4, need);
  }

  /** A scope's access: read scopes keep writers out, write scopes everyone. */
  private scopeAccess(va: number, len: number, mode: AccessMode): Access {
    if (mode !== 'read' && mode !== 'write') {
      throw new InvalidArgumentError('mode', mode, 'bad-value', "'read' or 'write'");
    }
    const kind = mode === 'read' ? 'scope-read' : 'exclusive-long';
    return { ...this.pageSpan(va, len), kind, va, len, need: mode };
  }

  /** Pages in the allocation that starts at `first`, read under the allocator mutex. */
  private allocationAt(first: number, va: number): number {
    let count = 0;
    let pageIsFreed = false;
    let inside = false;
    this.withAllocator(va, () => {
      const run = this.allocator.runAt(first);
      if (run.allocated && run.first === first) count = run.count;
      inside = run.allocated;
      pageIsFreed = (this.table.pte(first) & PTE_FREED) !== 0;
    });
    if (count > 0) return count;
    if (inside && !pageIsFreed) {
      throw new InvalidArgumentError(
        'va',
        va,
        'not-allocation-start',
        'free(va) takes the start of an allocation; pass len to free part of one',
        { address: va },
      );
    }
    throw new InvalidArgumentError(
      'va',
      va,
      'not-allocated',
      pageIsFreed ? 'freed already: a double free' : 'never allocated',
      { address: va },
    );
  }

  private withAllocator(va: number, fn: () => void): void {
    this.table.critical(() => {
      lockMutex(
        this.shared.header,
        HEADER_ALLOC_MUTEX,
        this.mayBlock(),
        new WaitBudget(this.limits, va),
      );
      try {
        fn();
      } finally {
        unlockMutex(this.shared.header, HEADER_ALLOC_MUTEX);
      }
    });
  }

  /** A CPU access: hold, check (faulting GPU-dirty pages back), mark written, run `body`, release, announce. */
  private accessSync<T>(accesses: readonly Access[], body: () => T): T {
    for (const access of accesses) this.assertNotInScope(access.first, access.count, access.va);
    // `body` is webhmm's own copy: the whole access is one critical section.
    const result = this.table.critical(() => {
      this.holdForCpuSync(accesses);
      try {
        this.markAccessesWritten(accesses);
        return body();
      } finally {
        this.table.releaseHolds(accesses);
      }
    });
    this.announce();
    return result;
  }

  private async accessAsync<T>(accesses: readonly Access[], body: () => T): Promise<T> {
    await this.holdForCpuAsync(accesses);
    const result = this.table.critical(() => {
      try {
        this.markAccessesWritten(accesses);
        return body();
      } finally {
        this.table.releaseHolds(accesses);
      }
    });
    this.announce();
    return result;
  }

  /**
   * Holds `accesses` with every page checked and CPU-accessible, bringing
   * GPU-dirty pages back through the fault channel first (waiting as the
   * thread may). On return the holds are taken.
   */
  private holdForCpuSync(accesses: readonly Access[]): void {
    for (;;) {
      this.table.holdSync(accesses, accesses[0]?.va ?? 0, this.mayBlock);
      const fault = this.checkOrRelease(accesses);
      if (!fault) return;
      const address = Math.max(fault.va, this.table.address(fault.first));
      if (!this.mayBlock()) {
        throw new WouldBlockError(
          address,
          'may-not-block',
          'the page is dirty on the GPU and needs a readback; use the async variant',
        );
      }
      if (!this.faults.served) throw unservedFault(address);
      this.faults.requestSync(fault.first, fault.count, new WaitBudget(this.limits, address));
    }
  }

  private async holdForCpuAsync(accesses: readonly Access[]): Promise<void> {
    for (;;) {
      await this.table.holdAsync(accesses, accesses[0]?.va ?? 0);
      const fault = this.checkOrRelease(accesses);
      if (!fault) return;
      const address = Math.max(fault.va, this.table.address(fault.first));
      if (!this.faults.served) throw unservedFault(address);
      await this.faults.requestAsync(
        fault.first,
        fault.count,
        new WaitBudget(this.limits, address),
      );
    }
  }

  /**
   * Checks held accesses. Returns the pages to fault back (from the first
   * GPU-dirty page to the end of its access), having released the holds, or
   * undefined with the holds kept. On an AccessError, releases and throws.
   */
  private checkOrRelease(
    accesses: readonly Access[],
  ): { first: number; count: number; va: number } | undefined {
    return this.table.critical(() => this.checkOrReleaseHeld(accesses));
  }

  private checkOrReleaseHeld(
    accesses: readonly Access[],
  ): { first: number; count: number; va: number } | undefined {
    try {
      for (const access of accesses) {
        const faulted = this.table.checkHeld(access.first, access.count, access.va, access.need);
        if (faulted >= 0) {
          this.table.releaseHolds(accesses);
          return { first: faulted, count: access.first + access.count - faulted, va: access.va };
        }
      }
      return undefined;
    } catch (error) {
      this.table.releaseHolds(accesses);
      throw error;
    }
  }

  private markAccessesWritten(accesses: readonly Access[]): void {
    for (const access of accesses) {
      if (access.need === 'write') {
        this.table.markWritten(access.va, access.len, this.mayBlock, this.outbox);
      }
    }
  }

  /** Registers a scope over held, checked pages; returns its lease. */
  private openScope(access: Access, mode: AccessMode): Lease {
    try {
      this.markAccessesWritten([access]);
    } catch (error) {
      this.outbox = [];
      this.table.releaseHolds([access]);
      throw error;
    }
    const scope = { first: access.first, count: access.count };
    this.scopes.add(scope);
    return new Lease(this.memory, access.va, access.len, mode, () => {
      this.scopes.delete(scope);
      this.table.releaseHolds([access]);
      this.announce();
    });
  }

  private assertNotInScope(first: number, count: number, va: number): void {
    for (const scope of this.scopes) {
      if (first < scope.first + scope.count && scope.first < first + count) {
        throw new WouldBlockError(
          va,
          'reentrant',
          'the range is held by an access() or acquire() scope of this thread; use its lease',
        );
      }
    }
  }

  /** Announces the call's invalidations: to other threads through the log, to this thread's listeners now. */
  private announce(): void {
    if (this.outbox.length === 0) return;
    const events = coalesce(this.outbox);
    this.outbox = [];
    this.notifier.announce(events);
  }
}

function protCode(prot: Protection): number {
  const code = PROT_CODES[prot];
  if (code === undefined)
    throw new InvalidArgumentError('prot', prot, 'bad-value', "'none', 'r' or 'rw'");
  return code;
}

function waitLimits(options: { faultTimeoutMs?: number; spinLimitMs?: number }): WaitLimits {
  const faultTimeoutMs = options.faultTimeoutMs ?? 10_000;
  const spinLimitMs = options.spinLimitMs ?? 200;
  positiveInteger('faultTimeoutMs', faultTimeoutMs);
  nonNegativeInteger('spinLimitMs', spinLimitMs);
  return { faultTimeoutMs, spinLimitMs };
}

function viewBytes(data: ArrayBufferView): Uint8Array {
  if (!ArrayBuffer.isView(data))
    throw new InvalidArgumentError('data', typeof data, 'bad-value', 'an ArrayBufferView');
  if (data.byteLength === 0) throw new InvalidArgumentError('data', 0, 'zero', 'nothing to write');
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function nonNegativeInteger(name: string, value: number): void {
  if (typeof value !== 'number' || !Number.isInteger(value))
    throw new InvalidArgumentError(name, value, 'not-integer');
  if (value < 0) throw new InvalidArgumentError(name, value, 'negative');
}

function positiveInteger(name: string, value: number): void {
  nonNegativeInteger(name, value);
  if (value === 0) throw new InvalidArgumentError(name, value, 'zero');
}
