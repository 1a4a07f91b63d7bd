/**
 * AddressSpace: one virtual address space shared by every thread attached to
 * it. CPU memory is one fixed-length SharedArrayBuffer in which VA == byte
 * offset; all other state (page table, holds, allocator, stale blocks,
 * invalidation log) lives in a second SharedArrayBuffer, so any attached
 * thread can alloc, free, protect, read and write.
 *
 * Guarantees:
 * - Every access holds the pages it touches and checks them only once held
 *   (cpu-access.ts), so a call sees one consistent page state and a failed
 *   call changes nothing.
 * - Plain CPU reads, writes and atomics never exclude each other; read scopes
 *   exclude writers; write scopes and migrations exclude everyone; a free
 *   excludes every CPU access and scope (page-lock.ts). One call waits at
 *   most `faultTimeoutMs` in all, and waits its turn (holding.ts).
 * - A page's newest bytes are never discarded except by `free`; freed pages
 *   are zeroed before the allocator can hand them out again, and only once
 *   the CPU accesses and device holds (kernel runs, migrations) that began
 *   before the free have finished; the CPU sees them unmapped at once, and a
 *   free waits for no device work (mapping.ts).
 * - A listener that throws fails neither the call that triggered it nor the others.
 * - A CPU write to a page whose GPU copy was valid makes that copy stale in
 *   exactly the 16-byte blocks written (no limit per page; stale-blocks.ts)
 *   and reports the page to `onInvalidate` listeners.
 *
 * The rules in full: docs/address-space.md.
 */
import {
  callback,
  nonNegativeInteger,
  numberValue,
  oneOf,
  optionsBag,
  positiveInteger,
  u32Value,
  viewBytes,
} from '../arguments.ts';
import { InvalidArgumentError, invariant } from '../errors.ts';
import { PageAllocator } from './allocator.ts';
import { CpuAccess } from './cpu-access.ts';
import { FaultChannel } from './fault-channel.ts';
import { registerInternals, type SpaceInternals } from './internals.ts';
import type { AccessMode, Lease } from './lease.ts';
import { Mapping } from './mapping.ts';
import { InvalidationNotifier, coalesce, type InvalidateListener } from './notifier.ts';
import { forgetCpuWaiters } from './page-lock.ts';
import { PageTable } from './page-table.ts';
import { PROTECTIONS, describePte, protCode, type PageSnapshot, type Protection } from './pte.ts';
import { bytesOfF32, bytesOfU32, f32Of, u32Of } from './word-bytes.ts';
import { HEADER_THREAD_IDS, LAYOUT_VERSION, type SpaceHandle } from './shared-layout.ts';
import { createSharedState, type SharedState } from './shared-state.ts';
import {
  mayBlockOption,
  openHandle,
  spaceGeometry,
  waitLimits,
  type AddressSpaceOptions,
  type AttachOptions,
} from './space-options.ts';
import { ThreadRecord } from './thread-record.ts';
import type { WaitLimits } from './waiting.ts';

export type { AccessMode } from './lease.ts';
export type { PageAdvice, PageSnapshot, PageState, PreferredLocation, Protection } from './pte.ts';
export type { AddressSpaceOptions, AttachOptions } from './space-options.ts';

/** What an instance of the space on this thread is built from. */
interface SpaceParts {
  readonly memory: SharedArrayBuffer;
  readonly shared: SharedState;
  readonly limits: WaitLimits;
  readonly mayBlock: () => boolean;
  /** A thread `Threads` may end: it keeps a thread record (thread-record.ts). */
  readonly terminable: boolean;
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

/**
 * One virtual address space, shared by every thread that attaches to it: VA
 * == byte offset in one SharedArrayBuffer, with page states, protections and
 * holds in shared memory, so any thread can alloc, free, protect, read and
 * write, and a GpuMirror can move pages to a GPU and back coherently.
 *
 * ```ts
 * const space = AddressSpace.create({ size: 64 << 20 }); // 64 MiB of 64 KiB pages
 * const va = space.alloc(3 * 4);                          // page-aligned, reads as zeros
 * space.write(va, new Float32Array([1, 2, 3]));
 * const third = space.access(va, 12, 'read', (lease) => lease.f32[2]); // 3, zero-copy
 * worker.postMessage(space.handle); // in the worker: AddressSpace.attach(handle)
 * space.free(va);
 * ```
 *
 * Calls throw typed errors (errors.ts) and change nothing when they fail. A
 * sync call that would have to wait where this thread may not block throws
 * WouldBlockError; the `*Async` variants and `acquire` wait on any thread.
 */
export class AddressSpace {
  /** Bytes in the space. */
  readonly size: number;
  /** Bytes per page. */
  readonly pageSize: number;
  private readonly memory: SharedArrayBuffer;
  private readonly bytes: Uint8Array;
  private readonly words: Uint32Array;
  private readonly floats: Float32Array;
  private readonly shared: SharedState;
  private readonly notifier: InvalidationNotifier;
  private readonly table: PageTable;
  private readonly faults: FaultChannel;
  private readonly limits: WaitLimits;
  private readonly cpu: CpuAccess;
  private readonly mapping: Mapping;
  /** GpuMirrors this thread owns the device of: while any, it may not block. */
  private devicesOwned = 0;

  private constructor(parts: SpaceParts) {
    const { memory, shared } = parts;
    this.memory = memory;
    this.shared = shared;
    this.pageSize = 2 ** shared.pageShift;
    this.size = memory.byteLength;
    this.bytes = new Uint8Array(memory);
    this.words = new Uint32Array(memory, 0, this.size >>> 2);
    this.floats = new Float32Array(memory, 0, this.size >>> 2);
    const threadId = Atomics.add(shared.header, HEADER_THREAD_IDS, 1) + 1;
    const record = parts.terminable ? ThreadRecord.claim(shared.threads, threadId) : undefined;
    this.limits = record ? { ...parts.limits, record } : parts.limits;
    this.table = new PageTable(shared, memory, this.limits, record);
    const critical = <T>(body: () => T): T => this.table.critical(body);
    this.faults = new FaultChannel(shared, threadId, critical);
    this.notifier = new InvalidationNotifier(shared, threadId, this.size, critical);
    this.cpu = new CpuAccess({
      table: this.table,
      faults: this.faults,
      notifier: this.notifier,
      limits: this.limits,
      memory,
      // Whether this call may block: the policy, unless this thread owns a GPUDevice.
      mayBlock: () => this.devicesOwned === 0 && parts.mayBlock(),
    });
    this.mapping = new Mapping({
      table: this.table,
      allocator: new PageAllocator(shared),
      cpu: this.cpu,
      limits: this.limits,
      memory,
    });
    // A free the device delayed is finished by the device's last release (mapping.ts).
    this.table.onDeviceReleased = (pages) => this.mapping.finishDeferred(pages);
    registerInternals(this, this.internals(threadId));
  }

  /** What the device side needs of this instance (internals.ts). */
  private internals(threadId: number): SpaceInternals {
    const threads = this.shared.threads;
    return {
      table: this.table,
      memory: this.memory,
      faults: this.faults,
      threadId,
      limits: this.limits,
      stopThread: (id) => ThreadRecord.stop(threads, id),
      recoverThread: (id) => {
        ThreadRecord.recover(
          threads,
          id,
          (holds) => this.table.releaseLocks(holds),
          (owner) => this.faults.abandonOwnedBy(owner),
        );
        // The thread may have ended while it waited: its claims as a waiter go too.
        forgetCpuWaiters(this.shared.lock);
      },
      announce: (events) => this.notifier.announce(coalesce(events)),
      pollNotices: () => this.notifier.poll(),
      ownDevice: (owned) => {
        this.devicesOwned += owned ? 1 : -1;
      },
      pageSpan: (va, len) => this.cpu.span(va, len),
      assertNotInScope: (first, count, va) => this.cpu.assertNotInScope({ first, count }, va),
      onListenerError: (handler) => this.notifier.onListenerError(handler),
      allocationRun: (page) => this.mapping.allocationRun(page),
    };
  }

  /**
   * A new space of `options.size` bytes, all unmapped.
   * @throws InvalidArgumentError for a size, page size or wait limit out of bounds
   *   (see AddressSpaceOptions); nothing is created
   */
  static create(options: AddressSpaceOptions): AddressSpace {
    // A missing bag is a missing size: refused by the size check below.
    options = optionsBag('options', options) as AddressSpaceOptions;
    const { size, pageSize } = spaceGeometry(options);
    const limits = waitLimits(options);
    const mayBlock = mayBlockOption(options);
    const shared = createSharedState(size / pageSize, Math.log2(pageSize));
    new PageAllocator(shared).initialize();
    return new AddressSpace({
      memory: new SharedArrayBuffer(size),
      shared,
      limits,
      mayBlock,
      terminable: false,
    });
  }

  /**
   * The same space on this thread, from another thread's `space.handle`.
   * @throws InvalidArgumentError 'handle' 'bad-value' for anything but a handle of this version
   */
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
    const shared = openHandle(handle);
    const mayBlock = mayBlockOption(optionsBag('options', options));
    return new AddressSpace({
      memory: handle.memory,
      shared,
      limits: waitLimits(handle),
      mayBlock,
      terminable,
    });
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
   * page-aligned VA (never 0). The pages read as zeros and have protection
   * `options.prot` (default 'rw').
   * @throws InvalidArgumentError for a size that is not a positive integer, or a bad `prot`
   * @throws OutOfMemoryError when no run of free pages is large enough
   * @throws WouldBlockError if the allocator stays busy past spinLimitMs on a thread that may not block
   */
  alloc(bytes: number, options: { readonly prot?: Protection } = {}): number {
    positiveInteger('bytes', bytes);
    const { prot = 'rw' } = optionsBag('options', options);
    return this.mapping.alloc(bytes, protectionCode(prot));
  }

  /**
   * Frees the allocation that starts at `va`, or with `len`, the whole pages
   * of [va, va + len) (len rounded up to pages, like munmap). The CPU sees the
   * range unmapped at once; the data is discarded and the pages are zeroed and
   * returned to the allocator once the accesses already holding them finish.
   * It waits for CPU accesses and other threads' scopes on the range, never
   * for the device: pages a kernel run or a migration holds are unmapped at
   * once and go back to the allocator when the device lets go of them.
   * @throws InvalidArgumentError 'misaligned' (va not page-aligned), 'not-allocated'
   *   (double free, or never allocated), 'not-allocation-start' (no len, va inside an allocation)
   * @throws AccessError 'out-of-range'
   * @throws WouldBlockError where waiting for a scope holding the range is not allowed,
   *   'reentrant' inside a scope of this thread on the range
   */
  free(va: number, len?: number): void {
    this.mapping.free(va, len);
  }

  /**
   * Sets the protection of the whole pages of [va, va + len) for accesses that
   * start after this call: it waits for no access, scope or device hold, only
   * (briefly) for a free or protect of the same pages in progress.
   * @throws InvalidArgumentError 'misaligned' (va not page-aligned), or a bad size or prot
   * @throws AccessError 'unmapped' / 'freed' / 'out-of-range' at the first such page; nothing changes
   */
  protect(va: number, len: number, prot: Protection): void {
    this.mapping.protect(va, len, protectionCode(prot));
  }

  /**
   * The contents of [va, va + len) are no longer needed (as UvmDiscard,
   * MADV_FREE): it reads as zeros. Whole pages become `zero` and lose their
   * GPU frames with no write-back; a partial page at either end is zeroed
   * in place, as `fill(..., 0)`. Needs 'rw'; waits for kernel runs and
   * migrations holding the pages, like a CPU write.
   * @throws AccessError at the first unmapped, freed, out-of-range or non-writable byte;
   *   WouldBlockError where waiting is not allowed ('reentrant' inside a scope on the range)
   */
  discard(va: number, len: number): void {
    this.mapping.discard(va, len);
  }

  // ---------------------------------------------------------------- bulk access

  /**
   * A copy of [va, va + len).
   * @throws AccessError at the first unmapped, freed, out-of-range or unreadable byte; WouldBlockError
   */
  read(va: number, len: number): Uint8Array {
    const copy = () => this.bytes.slice(va, va + len);
    return this.cpu.readSync(this.cpu.plain(va, len, 'read'), (bytes) => bytes, copy);
  }

  /** `read` that waits asynchronously, on any thread (and brings GPU-dirty pages back). */
  async readAsync(va: number, len: number): Promise<Uint8Array> {
    const copy = () => this.bytes.slice(va, va + len);
    return this.cpu.readAsync(this.cpu.plain(va, len, 'read'), (bytes) => bytes, copy);
  }

  /**
   * Writes `data`'s bytes at `va`.
   * @throws InvalidArgumentError 'data': 'bad-value' (not an ArrayBufferView), 'zero' (empty)
   * @throws AccessError at the first unmapped, freed, out-of-range or non-writable byte; WouldBlockError
   */
  write(va: number, data: ArrayBufferView): void {
    const source = viewBytes('data', data);
    const access = this.cpu.plain(va, source.byteLength, 'write');
    this.cpu.writeSync(
      access,
      () => source,
      () => this.bytes.set(source, va),
    );
  }

  /** `write` that waits asynchronously, on any thread. */
  async writeAsync(va: number, data: ArrayBufferView): Promise<void> {
    const source = viewBytes('data', data);
    const access = this.cpu.plain(va, source.byteLength, 'write');
    return this.cpu.writeAsync(
      access,
      () => source,
      () => this.bytes.set(source, va),
    );
  }

  /**
   * Sets every byte of [va, va + len) to `byte`, an integer 0-255 inclusive.
   * @throws InvalidArgumentError 'byte': 'not-integer', 'negative', 'too-large' (over 255); as `write`
   */
  fill(va: number, len: number, byte: number): void {
    nonNegativeInteger('byte', byte);
    if (byte > 255) throw new InvalidArgumentError('byte', byte, 'too-large', 'an integer 0-255');
    const access = this.cpu.plain(va, len, 'write');
    const bytes = () => new Uint8Array(len).fill(byte);
    this.cpu.writeSync(access, bytes, () => this.bytes.fill(byte, va, va + len));
  }

  /**
   * Copies `len` bytes from `srcVa` to `dstVa`; the ranges may overlap (memmove).
   * @throws AccessError for an unreadable source or unwritable destination byte; WouldBlockError
   */
  copy(dstVa: number, srcVa: number, len: number): void {
    nonNegativeInteger('dstVa', dstVa);
    nonNegativeInteger('srcVa', srcVa);
    const accesses = [this.cpu.plain(srcVa, len, 'read'), this.cpu.plain(dstVa, len, 'write')];
    this.cpu.runSync(accesses, () => this.bytes.copyWithin(dstVa, srcVa, srcVa + len));
  }

  // ---------------------------------------------------------------- scopes

  /**
   * Holds [va, va + len) for `fn` and passes it a lease of zero-copy views. A
   * read scope keeps writers out; a write scope keeps everyone out and makes
   * the range's GPU copy stale. The scope ends when `fn` returns (use
   * `acquire` to hold across awaits). Calls on an overlapping range from
   * inside `fn` throw WouldBlockError 'reentrant'.
   * @throws InvalidArgumentError 'mode' 'bad-value'; AccessError as `read`/`write`; WouldBlockError
   */
  access<T>(va: number, len: number, mode: AccessMode, fn: (lease: Lease) => T): T {
    callback('fn', fn);
    const lease = this.cpu.openSync(this.cpu.scope(va, len, mode), mode);
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
    return this.cpu.openAsync(this.cpu.scope(va, len, mode), mode);
  }

  // ---------------------------------------------------------------- scalars

  /** The u32 at `va` (4-byte aligned). Throws as `read`, and InvalidArgumentError 'misaligned'. */
  getU32(va: number): number {
    const access = this.cpu.word(va, 'read');
    return this.cpu.readSync(access, u32Of, () => Atomics.load(this.words, va >>> 2));
  }

  /** Stores the u32 `value` at `va` (4-byte aligned). Throws as `write`. */
  setU32(va: number, value: number): void {
    u32Value('value', value);
    const store = () => void Atomics.store(this.words, va >>> 2, value);
    this.cpu.writeSync(this.cpu.word(va, 'write'), () => bytesOfU32(value), store);
  }

  /** The f32 at `va` (4-byte aligned). Throws as `read`. */
  getF32(va: number): number {
    return this.cpu.readSync(this.cpu.word(va, 'read'), f32Of, () => this.floats[va >>> 2] ?? 0);
  }

  /** Stores the f32 `value` at `va` (4-byte aligned). Throws as `write`. */
  setF32(va: number, value: number): void {
    numberValue('value', value);
    const store = () => this.floats.set([value], va >>> 2);
    this.cpu.writeSync(this.cpu.word(va, 'write'), () => bytesOfF32(value), store);
  }

  /**
   * Atomically adds `value` to the u32 at `va`; returns the old value. Lock-free
   * against other CPU accesses; coherent with GPU atomics (the page is brought
   * to the CPU first).
   */
  atomicAddU32(va: number, value: number): number {
    u32Value('value', value);
    return this.cpu.runSync([this.cpu.word(va, 'write', true)], () =>
      Atomics.add(this.words, va >>> 2, value),
    );
  }

  /** Atomically replaces the u32 at `va` with `value` if it equals `expected`; returns the old value. */
  atomicCasU32(va: number, expected: number, value: number): number {
    u32Value('expected', expected);
    u32Value('value', value);
    return this.cpu.runSync([this.cpu.word(va, 'write', true)], () =>
      Atomics.compareExchange(this.words, va >>> 2, expected, value),
    );
  }

  // ---------------------------------------------------------------- observation

  /**
   * Calls `listener` for every invalidation that overlaps [va, va + len), with
   * the overlap: CPU writes that make GPU copies stale, frees, protection
   * changes and migrations that take pages from the CPU, and 'overflow' (this
   * thread fell behind: assume the whole space changed). Runs on this thread,
   * outside any page hold: synchronously for this thread's own calls, on its
   * event loop, coalesced, for other threads'. Returns the function that unsubscribes.
   */
  onInvalidate(va: number, len: number, listener: InvalidateListener): () => void {
    callback('listener', listener);
    this.cpu.span(va, len);
    return this.notifier.listen(va, len, listener);
  }

  /** The state of each page of [va, va + len), changing nothing. */
  snapshot(va: number, len: number): PageSnapshot[] {
    const span = this.cpu.span(va, len);
    const out: PageSnapshot[] = [];
    for (let page = span.first; page < span.first + span.count; page++) {
      out.push(describePte(this.table.pte(page)));
    }
    return out;
  }
}

/**
 * The PROT_* code of `prot`.
 * @throws InvalidArgumentError 'prot' 'bad-value' for anything but 'none', 'r' or 'rw'
 */
function protectionCode(prot: unknown): number {
  const code = protCode(oneOf('prot', prot, PROTECTIONS));
  invariant(code !== undefined, `protection '${String(prot)}' has a code`);
  return code;
}
