/**
 * The layout of an address space's shared state: every word that crosses a
 * thread boundary, in one place, with no logic. Two SharedArrayBuffers make a
 * space:
 *
 * - `memory`: `size` bytes of CPU memory, VA == byte offset. Fixed length:
 *   `writeBuffer` rejects views of growable buffers.
 * - `meta`: an Int32Array of the sections below, in this order. Per-page
 *   sections have one entry per page (`pageCount` of them).
 *
 * | section    | words per entry | what                                              |
 * |------------|-----------------|---------------------------------------------------|
 * | header     | HEADER_WORDS    | the words named `HEADER_*`                        |
 * | pte        | 1               | page table entry, bits `PTE_*`                     |
 * | lock       | 1               | page hold word, bits `LOCK_*`                      |
 * | seq        | 1               | invalidation sequence number, +1 per invalidation  |
 * | gen        | 1               | generation, +1 each time the page is freed        |
 * | runHead    | 1               | allocator tag at a run's first page, else 0        |
 * | runTail    | 1               | allocator tag at a run's last page, else 0         |
 * | stale      | staleWordsPerPage | the page's stale blocks, one bit each, see `STALE_*` |
 * | log        | LOG_WORDS × LOG_CAPACITY | the invalidation log, see `LOG_*`        |
 * | faults     | FAULT_WORDS × FAULT_SLOTS | the CPU fault channel, see `FAULT_*`    |
 * | threads    | THREAD_WORDS × THREAD_SLOTS | thread records, see `THREAD_*`        |
 */

/** Version of this layout; `attach` refuses a handle of another version. */
export const LAYOUT_VERSION = 5;
export const LAYOUT_MAGIC = 0x68_6d_6d_31; // "hmm1"

// ---- header ----
export const HEADER_MAGIC = 0;
export const HEADER_VERSION = 1;
/** log2(pageSize). */
export const HEADER_PAGE_SHIFT = 2;
export const HEADER_PAGE_COUNT = 3;
/** Last thread id handed out; each attached instance takes the next. */
export const HEADER_THREAD_IDS = 4;
/** Mutex over runHead/runTail: 0 free, 1 held, 2 held with waiters. */
export const HEADER_ALLOC_MUTEX = 5;
/** Pages in free runs (informational, under the allocator mutex). */
export const HEADER_FREE_PAGES = 6;
/** Invalidation log tickets handed out (int32, wraps); waiters wait on this word. */
export const HEADER_LOG_HEAD = 7;
/** Fault requests posted (int32, wraps); the servicing thread waits on this word. */
export const HEADER_FAULT_DOORBELL = 8;
/** Thread id of the thread that services CPU faults (the GpuMirror's), 0 if none. */
export const HEADER_FAULT_SERVER = 9;
/** Fault slots freed (int32, wraps); a requester that found no free slot waits on this word. */
export const HEADER_FAULT_SLOTS_FREED = 10;
/**
 * Words 12-13, one int64: bytes CPU writes marked stale in GPU frames (the
 * write-amplification stat's denominator; `staleBytesWritten`).
 */
export const HEADER_STALE_BYTES_WRITTEN = 12;
export const HEADER_WORDS = 16;

// ---- page table entry (pte) ----
// bits 0-2: state
export const PTE_STATE_MASK = 0b111;
export const PTE_UNMAPPED = 0;
/** Allocated, never written: reads are zeros (the memory is zero), no frame content. */
export const PTE_ZERO = 1;
/** Newest bytes on the CPU; a frame, if any, is stale in the marked blocks (or whole). */
export const PTE_CPU = 2;
/** Both copies valid and equal. */
export const PTE_SHARED = 3;
/** Owned by the GPU; see PTE_GPU_DIRTY. */
export const PTE_GPU = 4;
// bits 3-4: protection
export const PTE_PROT_SHIFT = 3;
export const PTE_PROT_MASK = 0b11 << PTE_PROT_SHIFT;
export const PROT_NONE = 0;
export const PROT_R = 1;
export const PROT_RW = 2;
/** The page has a GPU frame. */
export const PTE_FRAME = 1 << 5;
/** The GPU copy is newer than the CPU copy. */
export const PTE_GPU_DIRTY = 1 << 6;
/** The frame is stale as a whole (a whole-page write): its block bits do not matter. */
export const PTE_STALE_WHOLE = 1 << 7;
/** The frame is stale in the blocks marked in the page's stale bits. */
export const PTE_STALE_BLOCKS = 1 << 8;
/** Freed and not allocated again since: accesses fail with reason 'freed'. */
export const PTE_FREED = 1 << 9;
/**
 * Freed while the device held it: the pages stay out of the allocator, and
 * their bytes are zeroed, when the device's last hold of them is released.
 */
export const PTE_FREE_PENDING = 1 << 10;
// bits 11-13: the mirror's advice (gpu.advise), which steers where the page
// rests and what eviction and prefetch do, never what reads return. Kept by
// every state change and protect; `free` clears it with the rest of the word.
/** Read-mostly: kept duplicated (`shared`), stores written through at the end of a run. */
export const PTE_READ_MOSTLY = 1 << 11;
/** Preferred on the CPU: stores written back at the end of a run; evicted first. */
export const PTE_PREFER_CPU = 1 << 12;
/** Preferred on the GPU: CPU reads copy the bytes back and leave it GPU-owned; evicted last. */
export const PTE_PREFER_GPU = 1 << 13;
export const PTE_ADVICE_MASK = PTE_READ_MOSTLY | PTE_PREFER_CPU | PTE_PREFER_GPU;
/**
 * Pinned on the GPU by thrash mitigation (gpu/thrash.ts): it stays GPU-owned;
 * CPU reads copy its bytes back without taking it, plain CPU writes land in
 * the CPU copy and the frame (a push through the fault channel). Set and
 * cleared by the mirror; a CPU scope or atomic clears it (and takes the
 * page as always); `free` clears it.
 */
export const PTE_PINNED_GPU = 1 << 14;
/**
 * Pinned on the CPU by thrash mitigation: it stays CPU-owned; a run that
 * stores to it writes it back before it resolves (as for read-mostly).
 */
export const PTE_PINNED_CPU = 1 << 15;
/** The mirror's policy bits, advice and pins: they end with the mirror. */
export const PTE_POLICY_MASK = PTE_ADVICE_MASK | PTE_PINNED_GPU | PTE_PINNED_CPU;

// ---- page hold word (lock) ----
// CPU side: plain reads and plain writes never exclude each other; read scopes
// exclude writers; a write scope excludes everyone; a free excludes every CPU
// holder but admits the device's holds (it unmaps at once and leaves the
// zeroing to the device's last release); a protect excludes only frees and
// other protects, and keeps new holders out while it changes the ptes.
// Device side (migrations, kernel runs): an exclusive hold excludes everyone;
// a device read (a kernel that only reads) excludes writers, like a read scope.
// Counts saturate at their maximum: a further holder waits.
/** Plain CPU reads in progress: bits 0-6. */
export const LOCK_READERS_SHIFT = 0;
export const LOCK_READERS_MAX = 0x7f;
/** Plain CPU writes and atomics in progress: bits 7-13. */
export const LOCK_WRITERS_SHIFT = 7;
export const LOCK_WRITERS_MAX = 0x7f;
/** CPU read scopes (access/acquire 'read') in progress: bits 14-18. */
export const LOCK_SCOPES_SHIFT = 14;
export const LOCK_SCOPES_MAX = 0x1f;
/** Device reads (kernel runs that only read the page) in progress: bits 19-22. */
export const LOCK_DEVICE_READS_SHIFT = 19;
export const LOCK_DEVICE_READS_MAX = 0xf;
/** One CPU write scope holds the page: excludes everyone. */
export const LOCK_EXCLUSIVE = 1 << 23;
/** The device holds the page exclusively (a migration, a kernel that writes): excludes everyone. */
export const LOCK_DEVICE = 1 << 24;
/** A free is unmapping the page: excludes every other holder but the device's. */
export const LOCK_FREEING = 1 << 25;
/** A protect is changing the page's protection: excludes frees and new holders, briefly. */
export const LOCK_PROTECT = 1 << 26;
/** Someone waits on this word: the releaser must notify. */
export const LOCK_WAITERS = 1 << 27;
/**
 * A CPU access waits for the page: new device holds wait behind it, even
 * while no one holds the page. Set and withdrawn by the CPU waiters only.
 */
export const LOCK_CPU_WAITING = 1 << 28;
/**
 * A waiter (CPU or device) is kept out by plain readers: new plain readers
 * that hold nothing else wait behind it while the page is held. Like the
 * two below, cleared when the page is next left with no holder.
 */
export const LOCK_HOLD_OFF_READERS = 1 << 29;
/** A waiter is kept out by plain writers: new plain writers wait behind it while the page is held. */
export const LOCK_HOLD_OFF_WRITERS = 1 << 30;
/** A waiter is kept out by read scopes or device reads: new read scopes wait behind it while the page is held. */
export const LOCK_HOLD_OFF_SCOPES = 1 << 31;

// ---- stale blocks ----
/**
 * The granularity of stale tracking: a CPU write marks the 16-byte blocks it
 * touched as stale in the page's frame, one bit each, with no per-page
 * limit, so scattered writes upload about what they changed.
 */
export const STALE_BLOCK_BYTES = 16;
export const STALE_BLOCK_SHIFT = 4;
/** Words of stale bits per page: one bit per block (at least 8 words: pages are at least 4 KiB). */
export function staleWordsPerPage(pageSize: number): number {
  return pageSize >>> (STALE_BLOCK_SHIFT + 5);
}

// ---- invalidation log ----
/** Records in the ring; a reader that falls further behind gets one whole-space event. */
export const LOG_CAPACITY = 1024;
/** stamp (ticket + 1 once published), va, len, cause | origin << LOG_ORIGIN_SHIFT. */
export const LOG_WORDS = 4;
export const LOG_STAMP = 0;
export const LOG_VA = 1;
export const LOG_LEN = 2;
export const LOG_META = 3;
export const LOG_CAUSE_MASK = 0xff;
export const LOG_ORIGIN_SHIFT = 8;
/**
 * Log cause codes: the cause field of a record is an index into LOG_CAUSES.
 * A record never carries 'overflow': that cause is the reader's own, when it
 * fell behind the ring (notifier.ts).
 */
export const LOG_CAUSES = ['write', 'free', 'protect', 'migrate', 'discard'] as const;
/** A cause a log record can carry. */
export type LogCause = (typeof LOG_CAUSES)[number];

// ---- CPU fault channel ----
// A thread that meets a GPU-dirty page claims a slot, posts the page range,
// rings the doorbell and waits on the slot's state word; the GpuMirror's thread
// takes every posted slot in one batch, brings the pages back and completes them.
// A push (a plain write of at most FAULT_PUSH_BYTES to a page pinned on the
// GPU) posts the bytes instead, which the server writes into CPU memory and
// the frame alike, so concurrent pushes land in one order in both, and a
// push that is never served changed nothing.
/** Slots; a requester that finds none free waits for one (back-pressure, nothing dropped). */
export const FAULT_SLOTS = 256;
/** Bytes a push carries at most, in the slot (whole words). */
export const FAULT_PUSH_BYTES = 64;
/** state, first page (a push: first byte), page count (a push: bytes), result, owner, kind, a push's bytes. */
export const FAULT_WORDS = 6 + FAULT_PUSH_BYTES / 4;
export const FAULT_STATE = 0;
export const FAULT_FIRST = 1;
export const FAULT_COUNT = 2;
export const FAULT_RESULT = 3;
/** The requester's thread id, so a terminated thread's slots can be taken back. */
export const FAULT_OWNER = 4;
/** FAULT_KIND_FETCH, _PUSH or _PULL (FAULT_KIND_MASK), or'ed with FAULT_KIND_SMALL. */
export const FAULT_KIND = 5;
export const FAULT_KIND_MASK = 3;
export const FAULT_KIND_FETCH = 0;
export const FAULT_KIND_PUSH = 1;
/** A pull: the bytes of a small read of a page pinned on the GPU, read from its frame into the slot. */
export const FAULT_KIND_PULL = 2;
/**
 * Or'ed into a fetch's kind: the faulting access is small enough for a
 * push or a pull (thrash mitigation pins such pages on the GPU).
 */
export const FAULT_KIND_SMALL = 4;
/** A push's or a pull's bytes: FAULT_PUSH_BYTES / 4 words from here. */
export const FAULT_DATA = 6;
export const FAULT_FREE = 0;
/** A requester is filling the slot. */
export const FAULT_CLAIMED = 1;
export const FAULT_POSTED = 2;
export const FAULT_SERVICING = 3;
export const FAULT_DONE = 4;
/** The requester gave up (timeout) while the slot was in service; the server frees it. */
export const FAULT_ABANDONED = 5;
export const FAULT_RESULT_OK = 0;
export const FAULT_RESULT_DEVICE_LOST = 1;
/**
 * The server failed to serve the request for another reason (its batch threw,
 * e.g. a spin on a short critical section ran out); it goes on serving others.
 */
export const FAULT_RESULT_FAILED = 2;
/** A push or a pull the server did not carry out (it stopped): the requester does its access again. */
export const FAULT_RESULT_RETRY = 3;

// ---- thread records ----
// One per attached thread: whether it is inside a critical section (a run of
// shared-state changes that must not be cut short), and the journal of the
// page holds it has (like Linux's robust futex list), so that a terminated
// thread's holds can be released on its behalf. See thread-record.ts.
/** Records: threads attached to a space at once. */
export const THREAD_SLOTS = 128;
/** Holds one thread may have at once (each a run of pages; a scope or a lease is one). */
export const THREAD_JOURNAL_CAPACITY = 64;
/** Words per journal entry: first page, page count, hold kind code. */
export const THREAD_ENTRY_WORDS = 3;
export const THREAD_STATE = 0;
export const THREAD_ID = 1;
export const THREAD_HOLDS = 2;
export const THREAD_JOURNAL = 4;
export const THREAD_WORDS = THREAD_JOURNAL + THREAD_ENTRY_WORDS * THREAD_JOURNAL_CAPACITY;
export const THREAD_FREE = 0;
/** Attached, outside any critical section (or waiting): safe to end. */
export const THREAD_RUNNING = 1;
/** Inside a critical section: ending it now could tear shared state. */
export const THREAD_CRITICAL = 2;
/** Asked to stop: it enters no critical section again; it may be ended. */
export const THREAD_STOPPED = 3;

/** What `space.handle` carries to another thread (structured-cloneable). */
export interface SpaceHandle {
  readonly type: 'webhmm-space';
  /** LAYOUT_VERSION of the space; `attach` refuses any other. */
  readonly version: number;
  /** The CPU memory: `size` bytes, VA == byte offset, fixed length. */
  readonly memory: SharedArrayBuffer;
  /** Everything else (the sections above), as an Int32Array's buffer. */
  readonly meta: SharedArrayBuffer;
  /** The space's `faultTimeoutMs`, ms (a positive integer). */
  readonly faultTimeoutMs: number;
  /** The space's `spinLimitMs`, ms (a non-negative integer). */
  readonly spinLimitMs: number;
}
