/**
 * The CPU fault channel: how a thread that meets a GPU-dirty page asks the
 * GpuMirror's thread to bring it back (HMM's migrate_to_ram, serviced by the
 * thread that owns the GPUDevice, which never blocks).
 *
 * Guarantees:
 * - nothing is dropped: a requester that finds every slot taken waits for one
 *   (back-pressure), it never overwrites;
 * - the server takes every posted request at once, so faults pending at the
 *   same moment are serviced in one batch;
 * - a requester wakes only when its request is complete (or failed), and a
 *   requester that gives up (timeout) never leaves a slot behind;
 * - a request is never left waiting for a server that is gone: `stopServing`
 *   wakes requesters whose requests were not taken (they retry and see the
 *   page as it is), and when the serving thread ended without stopping
 *   (`abandonOwnedBy`), its requests fail with DeviceLostError, its pages
 *   fall back to their CPU copies and the server word is free again.
 *
 * Word layout: `FAULT_*` in shared-layout.ts.
 */
import { DeviceLostError, WouldBlockError } from '../errors.ts';
import type { PageRun } from './page-run.ts';
import {
  FAULT_ABANDONED,
  FAULT_CLAIMED,
  FAULT_COUNT,
  FAULT_DATA,
  FAULT_DONE,
  FAULT_FIRST,
  FAULT_FREE,
  FAULT_KIND,
  FAULT_KIND_FETCH,
  FAULT_KIND_MASK,
  FAULT_KIND_PULL,
  FAULT_KIND_PUSH,
  FAULT_KIND_SMALL,
  FAULT_OWNER,
  FAULT_POSTED,
  FAULT_RESULT,
  FAULT_RESULT_DEVICE_LOST,
  FAULT_RESULT_FAILED,
  FAULT_RESULT_OK,
  FAULT_RESULT_RETRY,
  FAULT_SERVICING,
  FAULT_SLOTS,
  FAULT_STATE,
  FAULT_WORDS,
  HEADER_FAULT_DOORBELL,
  HEADER_FAULT_SERVER,
  HEADER_FAULT_SLOTS_FREED,
} from './shared-layout.ts';
import { fallBackToCpuCopies, lostSpan } from './mirror-fallback.ts';
import type { SharedState } from './shared-state.ts';
import type { WaitBudget } from './waiting.ts';

/**
 * How the server ends a request: 'ok' (served, or nothing to do: the
 * requester retries and sees the page as it is), 'device-lost' (the GPU copy
 * is gone: the requester throws DeviceLostError), 'failed' (the batch threw:
 * the requester throws WouldBlockError 'unserved'), 'retry' (a push or pull
 * not carried out, the server stopping: the requester does its access again).
 */
export type FaultResult = 'ok' | 'device-lost' | 'failed' | 'retry';

const RESULT_CODES: Record<FaultResult, number> = {
  ok: FAULT_RESULT_OK,
  'device-lost': FAULT_RESULT_DEVICE_LOST,
  failed: FAULT_RESULT_FAILED,
  retry: FAULT_RESULT_RETRY,
};

/**
 * A request as the server sees it: a fetch of pages [first, first + count);
 * a push of `data` (`count` bytes) to the bytes from `first`, into CPU
 * memory and the page's frame; or a pull of the `count` bytes from `first`
 * from the page's frame, into the slot.
 */
export interface FaultRequest {
  readonly slot: number;
  readonly kind: 'fetch' | 'push' | 'pull';
  /** A fetch for an access small enough for a push or a pull. */
  readonly small: boolean;
  readonly first: number;
  readonly count: number;
  /** A push's bytes. */
  readonly data?: Uint8Array;
}

const KIND_NAMES = ['fetch', 'push', 'pull'] as const;

/** What a served fetch or push returns (a pull returns its bytes). */
const EMPTY = new Uint8Array(0);

export class FaultChannel {
  private readonly slots: Int32Array;
  private readonly header: Int32Array;
  private readonly pageShift: number;

  constructor(
    private readonly shared: SharedState,
    /** The requesting thread's id, recorded in its slots. */
    private readonly owner = 0,
    /** Runs a multi-word slot change as one critical section of the thread (thread-record.ts). */
    private readonly critical: <T>(body: () => T) => T = (body) => body(),
  ) {
    this.slots = shared.faults;
    this.header = shared.header;
    this.pageShift = shared.pageShift;
  }

  /** True if some thread services faults (a GpuMirror is attached). */
  get served(): boolean {
    return Atomics.load(this.header, HEADER_FAULT_SERVER) !== 0;
  }

  // ---------------------------------------------------------------- requester side

  /**
   * Asks for pages [first, first + count) and waits until they are serviced.
   * @throws WouldBlockError 'timeout' (the slot is given back); DeviceLostError
   */
  requestSync(first: number, count: number, budget: WaitBudget, small = false): void {
    this.waitSync(FAULT_KIND_FETCH | (small ? FAULT_KIND_SMALL : 0), first, count, budget);
  }

  /** `requestSync` that waits asynchronously, on any thread. */
  async requestAsync(
    first: number,
    count: number,
    budget: WaitBudget,
    small = false,
  ): Promise<void> {
    const kind = FAULT_KIND_FETCH | (small ? FAULT_KIND_SMALL : 0);
    await this.waitAsync(kind, first, count, budget);
  }

  /**
   * Asks for `data` (whole words, at most FAULT_PUSH_BYTES, within one page
   * pinned on the GPU that the caller holds) to be written at `va` into CPU
   * memory and the page's frame, and waits until it is (the frame's copy
   * submitted). Throws as `requestSync`; a push that fails wrote nothing.
   * @returns false when the server did not carry it out (it stopped): the caller writes again
   */
  pushSync(va: number, data: Uint8Array, budget: WaitBudget): boolean {
    return this.waitSync(FAULT_KIND_PUSH, va, data.byteLength, budget, data) !== undefined;
  }

  /** `pushSync` that waits asynchronously, on any thread. */
  async pushAsync(va: number, data: Uint8Array, budget: WaitBudget): Promise<boolean> {
    return (await this.waitAsync(FAULT_KIND_PUSH, va, data.byteLength, budget, data)) !== undefined;
  }

  /**
   * Asks for the `len` bytes at `va` (whole words, at most FAULT_PUSH_BYTES,
   * within one page pinned on the GPU that the caller holds) from the page's
   * frame, leaving CPU memory alone. Throws as `requestSync`.
   * @returns the bytes, or undefined when the server did not read them (it stopped): the caller reads again
   */
  pullSync(va: number, len: number, budget: WaitBudget): Uint8Array | undefined {
    return this.waitSync(FAULT_KIND_PULL, va, len, budget);
  }

  /** `pullSync` that waits asynchronously, on any thread. */
  pullAsync(va: number, len: number, budget: WaitBudget): Promise<Uint8Array | undefined> {
    return this.waitAsync(FAULT_KIND_PULL, va, len, budget);
  }

  private waitSync(
    kind: number,
    first: number,
    count: number,
    budget: WaitBudget,
    data?: Uint8Array,
  ): Uint8Array | undefined {
    let slot = this.claimAndPost(kind, first, count, data);
    while (slot < 0) {
      budget.waitSync(true, this.header, HEADER_FAULT_SLOTS_FREED, this.freedCount(), false);
      slot = this.claimAndPost(kind, first, count, data);
    }
    const state = FAULT_WORDS * slot + FAULT_STATE;
    try {
      for (let seen = this.stateOf(slot); seen === FAULT_POSTED || seen === FAULT_SERVICING;) {
        if (this.orphaned(seen)) break;
        budget.waitSync(true, this.slots, state, seen, false);
        seen = this.stateOf(slot);
      }
    } catch (error) {
      this.abandon(slot);
      throw error;
    }
    return this.finish(slot, kind, first);
  }

  private async waitAsync(
    kind: number,
    first: number,
    count: number,
    budget: WaitBudget,
    data?: Uint8Array,
  ): Promise<Uint8Array | undefined> {
    let slot = this.claimAndPost(kind, first, count, data);
    while (slot < 0) {
      await budget.waitAsync(this.header, HEADER_FAULT_SLOTS_FREED, this.freedCount());
      slot = this.claimAndPost(kind, first, count, data);
    }
    const state = FAULT_WORDS * slot + FAULT_STATE;
    try {
      for (let seen = this.stateOf(slot); seen === FAULT_POSTED || seen === FAULT_SERVICING;) {
        if (this.orphaned(seen)) break;
        await budget.waitAsync(this.slots, state, seen);
        seen = this.stateOf(slot);
      }
    } catch (error) {
      this.abandon(slot);
      throw error;
    }
    return this.finish(slot, kind, first);
  }

  /**
   * A posted request no server will take (the server stopped after the requester
   * saw it serving): the requester gives it up and retries, seeing the page as it is.
   */
  private orphaned(state: number): boolean {
    return state === FAULT_POSTED && !this.served;
  }

  /** A free slot, claimed and posted with the request, or -1 if none is free. */
  private claimAndPost(kind: number, first: number, count: number, data?: Uint8Array): number {
    return this.critical(() => {
      const slot = this.claim();
      if (slot >= 0) this.post(slot, kind, first, count, data);
      return slot;
    });
  }

  private claim(): number {
    for (let slot = 0; slot < FAULT_SLOTS; slot++) {
      const at = FAULT_WORDS * slot + FAULT_STATE;
      if (Atomics.compareExchange(this.slots, at, FAULT_FREE, FAULT_CLAIMED) === FAULT_FREE) {
        return slot;
      }
    }
    return -1;
  }

  private post(slot: number, kind: number, first: number, count: number, data?: Uint8Array): void {
    const at = FAULT_WORDS * slot;
    if (data) {
      const words = new Int32Array(data.slice().buffer);
      words.forEach((word, i) => Atomics.store(this.slots, at + FAULT_DATA + i, word));
    }
    Atomics.store(this.slots, at + FAULT_KIND, kind);
    Atomics.store(this.slots, at + FAULT_FIRST, first | 0);
    Atomics.store(this.slots, at + FAULT_COUNT, count);
    Atomics.store(this.slots, at + FAULT_RESULT, FAULT_RESULT_OK);
    Atomics.store(this.slots, at + FAULT_OWNER, this.owner);
    Atomics.store(this.slots, at + FAULT_STATE, FAULT_POSTED);
    Atomics.add(this.header, HEADER_FAULT_DOORBELL, 1);
    Atomics.notify(this.header, HEADER_FAULT_DOORBELL);
  }

  /**
   * Reads the result, frees the slot (or gives it up if it is still posted:
   * see `orphaned`), throws if the request failed.
   * @throws DeviceLostError listing the request's pages whose GPU copy was lost;
   *   WouldBlockError 'unserved' when the server's batch failed
   */
  private finish(slot: number, kind: number, first: number): Uint8Array | undefined {
    const at = FAULT_WORDS * slot;
    if (this.stateOf(slot) === FAULT_POSTED) {
      this.abandon(slot);
      return undefined;
    }
    const result = Atomics.load(this.slots, at + FAULT_RESULT);
    const lostFirst = Atomics.load(this.slots, at + FAULT_FIRST);
    const lostCount = Atomics.load(this.slots, at + FAULT_COUNT);
    const pulled =
      (kind & FAULT_KIND_MASK) === FAULT_KIND_PULL ? this.dataIn(slot, lostCount) : undefined;
    this.free(slot);
    const address = (kind & FAULT_KIND_MASK) === FAULT_KIND_FETCH ? first << this.pageShift : first;
    if (result === FAULT_RESULT_RETRY) return undefined;
    if (result === FAULT_RESULT_DEVICE_LOST) {
      const unsaved =
        lostCount > 0
          ? [{ va: lostFirst << this.pageShift, len: lostCount << this.pageShift }]
          : [];
      throw new DeviceLostError(
        unsaved,
        `the GPU was lost while the page at 0x${address.toString(16)} was GPU-dirty; it keeps its last CPU bytes`,
      );
    }
    if (result === FAULT_RESULT_FAILED) {
      throw new WouldBlockError(
        address,
        'unserved',
        "the GpuMirror's fault service failed to bring the page back (its batch threw; the mirror's thread logged why); the call may be retried",
      );
    }
    return pulled ?? EMPTY;
  }

  /** The `len` bytes a push or pull left in `slot`. */
  private dataIn(slot: number, len: number): Uint8Array {
    const at = FAULT_WORDS * slot + FAULT_DATA;
    const words = new Int32Array(len >>> 2);
    for (let i = 0; i < words.length; i++) words[i] = Atomics.load(this.slots, at + i);
    return new Uint8Array(words.buffer);
  }

  /**
   * Gives back what thread `owner` (ended: Threads.terminate) had in the
   * channel: every slot it had, as if it had given up waiting, and, if it
   * served faults (it had a GpuMirror it never detached), the server role:
   * see `serverEnded`.
   */
  abandonOwnedBy(owner: number): void {
    for (let slot = 0; slot < FAULT_SLOTS; slot++) {
      // A claimed slot is another thread's, being posted: claim and post are one critical section.
      const state = this.stateOf(slot);
      if (state === FAULT_FREE || state === FAULT_CLAIMED) continue;
      if (Atomics.load(this.slots, FAULT_WORDS * slot + FAULT_OWNER) === owner) this.abandon(slot);
    }
    if (Atomics.load(this.header, HEADER_FAULT_SERVER) === owner) this.serverEnded(owner);
  }

  /**
   * The serving thread `server` ended without detaching its mirror (its holds
   * were released already): its GPU frames went with it, as in a device loss.
   * Every page falls back to its CPU copy (mirror-fallback.ts); then the
   * requests waiting on the server fail with DeviceLostError naming the
   * pages of theirs that were GPU-dirty (pushes and pulls are done again);
   * then the server word is free, so a new mirror can attach.
   */
  private serverEnded(server: number): void {
    const lost = fallBackToCpuCopies(this.shared);
    // A push or pull not carried out: its requester does its access again, on the CPU copy.
    // A push is done again on the CPU copy; a pull's GPU-dirty bytes were lost with the rest.
    const end = (request: FaultRequest): void =>
      request.kind === 'push'
        ? this.complete(request, 'retry')
        : this.complete(request, 'device-lost', lostSpan(this.pagesOf(request), lost));
    for (const request of this.take()) end(request);
    // Requests in service by the ended server: taken, never completed.
    for (let slot = 0; slot < FAULT_SLOTS; slot++) {
      if (this.stateOf(slot) === FAULT_SERVICING) end(this.requestIn(slot));
    }
    this.stopServing(server);
  }

  /** Gives up a request: frees the slot, or leaves it for the server to free if in service. */
  private abandon(slot: number): void {
    const at = FAULT_WORDS * slot + FAULT_STATE;
    for (;;) {
      const state = Atomics.load(this.slots, at);
      if (state === FAULT_POSTED || state === FAULT_DONE) {
        if (Atomics.compareExchange(this.slots, at, state, FAULT_CLAIMED) === state) {
          this.free(slot);
          return;
        }
      } else if (state === FAULT_SERVICING) {
        if (Atomics.compareExchange(this.slots, at, state, FAULT_ABANDONED) === state) return;
      } else {
        return;
      }
    }
  }

  private free(slot: number): void {
    Atomics.store(this.slots, FAULT_WORDS * slot + FAULT_STATE, FAULT_FREE);
    Atomics.add(this.header, HEADER_FAULT_SLOTS_FREED, 1);
    Atomics.notify(this.header, HEADER_FAULT_SLOTS_FREED);
  }

  private stateOf(slot: number): number {
    return Atomics.load(this.slots, FAULT_WORDS * slot + FAULT_STATE);
  }

  private freedCount(): number {
    return Atomics.load(this.header, HEADER_FAULT_SLOTS_FREED);
  }

  // ---------------------------------------------------------------- server side

  /** Registers `threadId` as the server. Returns false if another thread serves already. */
  serve(threadId: number): boolean {
    return Atomics.compareExchange(this.header, HEADER_FAULT_SERVER, 0, threadId) === 0;
  }

  /**
   * Stops serving; call after completing every request taken. Requesters
   * still waiting on a posted request wake and retry (see `orphaned`).
   */
  stopServing(threadId: number): void {
    if (Atomics.compareExchange(this.header, HEADER_FAULT_SERVER, threadId, 0) !== threadId) return;
    for (let slot = 0; slot < FAULT_SLOTS; slot++) {
      if (this.stateOf(slot) === FAULT_POSTED) {
        Atomics.notify(this.slots, FAULT_WORDS * slot + FAULT_STATE);
      }
    }
  }

  /** The doorbell's value, to wait on after a `take`. */
  doorbell(): number {
    return Atomics.load(this.header, HEADER_FAULT_DOORBELL);
  }

  /** Resolves when the doorbell moves on from `seen` (or at once if it has), or after `ms`. */
  async ring(seen: number, ms: number): Promise<void> {
    const waited = Atomics.waitAsync(this.header, HEADER_FAULT_DOORBELL, seen, ms);
    if (waited.async) await waited.value;
  }

  /** Wakes a server waiting in `ring`, e.g. to make it stop. */
  wakeServer(): void {
    Atomics.notify(this.header, HEADER_FAULT_DOORBELL);
  }

  /** Takes every posted request. */
  take(): FaultRequest[] {
    const taken: FaultRequest[] = [];
    for (let slot = 0; slot < FAULT_SLOTS; slot++) {
      const at = FAULT_WORDS * slot;
      if (
        Atomics.compareExchange(this.slots, at + FAULT_STATE, FAULT_POSTED, FAULT_SERVICING) !==
        FAULT_POSTED
      ) {
        continue;
      }
      taken.push(this.requestIn(slot));
    }
    return taken;
  }

  /** The pages a request is for (a push's or pull's one page). */
  pagesOf(request: FaultRequest): PageRun {
    const { kind, first, count } = request;
    return kind === 'fetch' ? { first, count } : { first: first >>> this.pageShift, count: 1 };
  }

  /** The request posted in `slot`. */
  private requestIn(slot: number): FaultRequest {
    const at = FAULT_WORDS * slot;
    const kind = Atomics.load(this.slots, at + FAULT_KIND);
    const request = {
      slot,
      kind: KIND_NAMES[kind & FAULT_KIND_MASK] ?? 'fetch',
      small: (kind & FAULT_KIND_SMALL) !== 0,
      first: Atomics.load(this.slots, at + FAULT_FIRST) >>> 0,
      count: Atomics.load(this.slots, at + FAULT_COUNT),
    };
    return request.kind === 'push'
      ? { ...request, data: this.dataIn(slot, request.count) }
      : request;
  }

  /**
   * Completes a taken request and wakes its requester. With 'device-lost',
   * `unsaved` is the run of the request's pages whose GPU copy was lost
   * (first to last such page), reported in the requester's DeviceLostError.
   * A pull completed 'ok' carries its bytes, `pulled`.
   */
  complete(
    request: FaultRequest,
    result: FaultResult = 'ok',
    unsaved?: PageRun,
    pulled?: Uint8Array,
  ): void {
    const at = FAULT_WORDS * request.slot;
    if (pulled) {
      const words = new Int32Array(pulled.slice().buffer);
      words.forEach((word, i) => Atomics.store(this.slots, at + FAULT_DATA + i, word));
    }
    if (result === 'device-lost') {
      Atomics.store(this.slots, at + FAULT_FIRST, unsaved?.first ?? 0);
      Atomics.store(this.slots, at + FAULT_COUNT, unsaved?.count ?? 0);
    }
    Atomics.store(this.slots, at + FAULT_RESULT, RESULT_CODES[result]);
    if (
      Atomics.compareExchange(this.slots, at + FAULT_STATE, FAULT_SERVICING, FAULT_DONE) !==
      FAULT_SERVICING
    ) {
      this.free(request.slot); // abandoned by its requester
      return;
    }
    Atomics.notify(this.slots, at + FAULT_STATE);
  }
}

/**
 * The error a requester gets when no thread services faults: WouldBlockError
 * 'unserved' (not 'timeout': nothing was waited for, and waiting would not help).
 */
export function unservedFault(address: number): WouldBlockError {
  return new WouldBlockError(
    address,
    'unserved',
    'the page is dirty on the GPU and no GpuMirror services faults',
  );
}
