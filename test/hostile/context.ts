// The hostile-input cases' world: one small space laid out the same way every
// time (an 'rw', an 'r' and a 'none' allocation with known bytes, a freed
// page, never-allocated pages, page 0), what a case is, and the fingerprint
// that says whether a failed call changed anything.
import type { ErrorCode } from '../../src/errors.ts';
import type { GpuMirror } from '../../src/mirror/gpu-mirror.ts';
import type { AddressSpace } from '../../src/space/address-space.ts';
import { internalsOf } from '../../src/space/internals.ts';
import { HEADER_THREAD_IDS, LOCK_WAITERS } from '../../src/space/shared-layout.ts';
import type { Threads } from '../../src/threads/threads.ts';
import type { HostileThreadApi } from './hostile-thread.worker.ts';

/** Bytes per page of the hostile space. */
export const PAGE = 4096;
/** Pages in the hostile space. */
export const PAGES = 16;
/** Bytes in the hostile space: the first address past its end. */
export const SIZE = PAGES * PAGE;
/** Pages 1-2: an 'rw' allocation holding `knownBytes`. */
export const RW = 1 * PAGE;
export const RW_LEN = 2 * PAGE;
/** Page 3: an allocation protected 'r' (filled with 0x11 first). */
export const R = 3 * PAGE;
/** Page 4: an allocation protected 'none' (filled with 0x22 first). */
export const NONE = 4 * PAGE;
/** Page 5: allocated, filled with 0x33, freed. */
export const FREED = 5 * PAGE;
/** Pages 6-15: never allocated. */
export const UNMAPPED = 6 * PAGE;
/** 2^32: past every u32 address. */
export const TWO_32 = 2 ** 32;
/** The budget of the mirror cases' GpuMirror: two frames. */
export const BUDGET = 2 * PAGE;

/** What a case needs: a space (Node), a mirrored space, a GPU device and an unmirrored space, or a worker. */
export type Needs = 'space' | 'mirror' | 'device' | 'threads';

export interface HostileContext {
  readonly space: AddressSpace;
  /** 'mirror' cases: the space's GpuMirror (budget BUDGET, copy 'buffer'). */
  readonly gpu?: GpuMirror;
  /** 'device' cases: a counted test device; the space has no mirror. */
  readonly device?: GPUDevice;
  /** 'threads' cases: one worker spawned from `workerSource`, with the space attached. */
  readonly threads?: Threads<HostileThreadApi>;
  readonly workerSource?: URL;
  /** What a case's `prepare` took (leases, mirrors): undone after the check. */
  readonly cleanups: (() => unknown)[];
}

/** The call fails with this typed error and changes nothing. */
export interface Refusal {
  readonly code: ErrorCode;
  readonly reason: string;
  /** The first faulting address (AccessError, WouldBlockError) or the address concerned. */
  readonly address?: number;
  /** InvalidArgumentError: the parameter's name, as in the signature. */
  readonly argument?: string;
}

/**
 * detach() called while the call is in flight: the call either completes or
 * rejects with DeviceLostError 'detached'; detach resolves; no byte is lost.
 */
export interface Ends {
  readonly code: 'DEVICE_LOST';
  readonly reason: 'detached';
  readonly orCompletes: true;
}

/** Bytes a case's call lands in CPU memory: always (an awaited setup write), or only if the call completed. */
export interface Landing {
  readonly va: number;
  readonly data: Uint8Array;
  readonly when: 'always' | 'completed';
}

export interface Case {
  /** The public function, as a user writes it: 'space.read', 'gpu.migrate', 'Threads.spawn'. */
  readonly call: string;
  /** The bad input, in words: 'va = NaN'. */
  readonly input: string;
  readonly expect: Refusal | Ends;
  readonly needs: Needs;
  /** Runs before the "before" fingerprint (takes a lease, detaches the mirror...). */
  readonly prepare?: (ctx: HostileContext) => unknown;
  /** Makes the call (for `Ends` cases: starts it and returns its promise without awaiting it). */
  readonly run: (ctx: HostileContext) => unknown;
  /** `Ends` cases: what the call lands. */
  readonly lands?: readonly Landing[];
  /** Where the contract does not say it in so many words: the reading this case takes. */
  readonly reading?: string;
}

export function isEnds(expect: Refusal | Ends): expect is Ends {
  return 'orCompletes' in expect;
}

/** The known bytes of the 'rw' allocation: byte i is (7i + 3) mod 256. */
export function knownBytes(len = RW_LEN): Uint8Array {
  return Uint8Array.from({ length: len }, (_, i) => (i * 7 + 3) & 0xff);
}

/**
 * Lays the space out (see the constants above) and checks the allocator put
 * everything where the cases expect it.
 */
export function layOut(space: AddressSpace): void {
  const placed = [
    space.alloc(RW_LEN),
    space.alloc(PAGE, { prot: 'rw' }),
    space.alloc(PAGE),
    space.alloc(PAGE),
  ];
  const expected = [RW, R, NONE, FREED];
  if (placed.some((va, i) => va !== expected[i])) {
    throw new Error(
      `hostile layout: allocations at ${placed.join(', ')}, not ${expected.join(', ')}`,
    );
  }
  space.write(RW, knownBytes());
  space.fill(R, PAGE, 0x11);
  space.fill(NONE, PAGE, 0x22);
  space.fill(FREED, PAGE, 0x33);
  space.protect(R, PAGE, 'r');
  space.protect(NONE, PAGE, 'none');
  space.free(FREED);
}

/** The options of the hostile space (the page size and size above; short waits). */
export function spaceOptions(faultTimeoutMs: number) {
  return { size: SIZE, pageSize: PAGE, faultTimeoutMs };
}

/** `value` given where a `T` is declared: hostile input that the types would refuse. */
export function hostile<T>(value: unknown): T {
  return value as T;
}

/** A hostile value where the API takes a number. */
export const n = (value: unknown): number => hostile<number>(value);

/** `value`, which the case's context must have. */
export function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`the hostile context has no ${what}`);
  return value;
}

/** A view of `len` bytes whose buffer has been transferred away (detached: byteLength 0). */
export function detachedView(len = 8): Uint8Array {
  const view = new Uint8Array(len);
  structuredClone(view.buffer, { transfer: [view.buffer] });
  return view;
}

/**
 * Everything a failed call must leave as it was: CPU memory (hashed), every
 * page's pte, holds (waiter bits aside: a waiter may leave one), generation
 * and stale ranges, the allocator tags, the header (thread ids aside), the
 * invalidation log, the fault channel (the fault-server word included), the
 * thread records, and `space.snapshot` of every page.
 */
export interface Fingerprint {
  readonly bytes: string;
  readonly pte: readonly number[];
  readonly holds: readonly number[];
  readonly gen: readonly number[];
  readonly stale: string;
  readonly allocator: string;
  readonly header: string;
  readonly log: string;
  readonly faults: string;
  readonly threads: string;
  readonly snapshot: string;
}

export function fingerprint(space: AddressSpace): Fingerprint {
  const { memory, table } = internalsOf(space);
  const { shared } = table;
  const pages = Array.from({ length: table.pageCount }, (_, page) => page);
  const header = Int32Array.from(shared.header);
  header[HEADER_THREAD_IDS] = 0;
  return {
    bytes: hash(new Uint8Array(memory)),
    pte: pages.map((page) => table.pte(page)),
    holds: pages.map((page) => Atomics.load(shared.lock, page) & (LOCK_WAITERS - 1)),
    gen: pages.map((page) => Atomics.load(shared.gen, page)),
    stale: hash(shared.stale),
    allocator: `${hash(shared.runHead)}:${hash(shared.runTail)}`,
    header: hash(header),
    log: hash(shared.log),
    faults: hash(shared.faults),
    threads: hash(shared.threads),
    snapshot: JSON.stringify(space.snapshot(0, space.size)),
  };
}

/** A copy of the space's CPU memory. */
export function memoryCopy(space: AddressSpace): Uint8Array {
  return new Uint8Array(internalsOf(space).memory).slice();
}

/** FNV-1a (32 bits) of the bytes of `view`, with its length, as hex. */
export function hash(view: ArrayBufferView): string {
  const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  let h = 0x811c9dc5;
  for (const byte of bytes) h = Math.imul(h ^ byte, 0x01000193);
  return `${bytes.length}:${(h >>> 0).toString(16).padStart(8, '0')}`;
}
