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
import { hasFrame, isGpuDirty, isGpuOwned, pteState, withoutStale, withState } from './pte.ts';
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
  FAULT_KIND_PUSH,
  FAULT_KIND_WRITES,
  FAULT_OWNER,
  FAULT_POSTED,
  FAULT_RESULT,
  FAULT_RESULT_DEVICE_LOST,
  FAULT_RESULT_FAILED,
  FAULT_RESULT_OK,
  FAULT_SERVICING,
  FAULT_SLOTS,
  FAULT_STATE,
  FAULT_WORDS,
  HEADER_FAULT_DOORBELL,
  HEADER_FAULT_SERVER,
  HEADER_FAULT_SLOTS_FREED,
  PTE_CPU,
  PTE_FRAME,
  PTE_GPU_DIRTY,
  PTE_POLICY_MASK,
  PTE_SHARED,
} from './shared-layout.ts';
import type { SharedState } from './shared-state.ts';
import type { WaitBudget } from './waiting.ts';

/**
 * How the server ends a request: 'ok' (served, or nothing to do: the
 * requester retries and sees the page as it is), 'device-lost' (the GPU copy
 * is gone: the requester throws DeviceLostError), 'failed' (the batch threw:
 * the requester throws WouldBlockError 'unserved').
 */
export type FaultResult = 'ok' | 'device-lost' | 'failed';

const RESULT_CODES: Record<FaultResult, number> = {
  ok: FAULT_RESULT_OK,
  'device-lost': FAULT_RESULT_DEVICE_LOST,
  failed: FAULT_RESULT_FAILED,
};

/**
 * A request as the server sees it: a fetch of pages [first, first + count),
 * or a push of `data` (`count` bytes) to the bytes from `first`, into CPU
 * memory and the page's frame.
 */
export interface FaultRequest {
  readonly slot: number;
  readonly kind: 'fetch' | 'push';
  /** A fetch for an access that writes. */
  readonly writes: boolean;
  readonly first: number;
  readonly count: number;
  /** A push's bytes. */
  readonly data?: Uint8Array;
}

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
  requestSync(first: number, count: number, budget: WaitBudget, writes = false): void {
    this.waitSync(FAULT_KIND_FETCH | (writes ? FAULT_KIND_WRITES : 0), first, count, budget);
  }

  /** `requestSync` that waits asynchronously, on any thread. */
  requestAsync(first: number, count: number, budget: WaitBudget, writes = false): Promise<void> {
    const kind = FAULT_KIND_FETCH | (writes ? FAULT_KIND_WRITES : 0);
    return this.waitAsync(kind, first, count, budget);
  }

  /**
   * Asks for `data` (whole words, at most FAULT_PUSH_BYTES, within one page
   * pinned on the GPU that the caller holds) to be written at `va` into CPU
   * memory and the page's frame, and waits until it is (the frame's copy
   * submitted). Throws as `requestSync`; a push that fails wrote nothing.
   */
  pushSync(va: number, data: Uint8Array, budget: WaitBudget): void {
    this.waitSync(FAULT_KIND_PUSH, va, data.byteLength, budget, data);
  }

  /** `pushSync` that waits asynchronously, on any thread. */
  pushAsync(va: number, data: Uint8Array, budget: WaitBudget): Promise<void> {
    return this.waitAsync(FAULT_KIND_PUSH, va, data.byteLength, budget, data);
  }

  private waitSync(
    kind: number,
    first: number,
    count: number,
    budget: WaitBudget,
    data?: Uint8Array,
  ): void {
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
    this.finish(slot, kind & FAULT_KIND_PUSH ? first : first << this.pageShift);
  }

  private async waitAsync(
    kind: number,
    first: number,
    count: number,
    budget: WaitBudget,
    data?: Uint8Array,
  ): Promise<void> {
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
    this.finish(slot, kind & FAULT_KIND_PUSH ? first : first << this.pageShift);
  }

  /**
   * A posted request no server will take (the server stopped after the
   * requester saw it serving): the requester gives it up and retries, seeing
   * the page as it is now.
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
  private finish(slot: number, address: number): void {
    const at = FAULT_WORDS * slot;
    if (this.stateOf(slot) === FAULT_POSTED) {
      this.abandon(slot);
      return;
    }
    const result = Atomics.load(this.slots, at + FAULT_RESULT);
    const lostFirst = Atomics.load(this.slots, at + FAULT_FIRST);
    const lostCount = Atomics.load(this.slots, at + FAULT_COUNT);
    this.free(slot);
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
   * A space has one mirror, the server's, so every page with a frame or
   * owned by the GPU was that mirror's: each becomes a `cpu` page with its
   * CPU bytes and no frame (a GPU-dirty page loses its newer bytes, which
   * were only on that device); then the requests waiting on the server fail
   * with DeviceLostError naming the pages of theirs that were GPU-dirty; then
   * the server word is free, so a new mirror can attach.
   */
  private serverEnded(server: number): void {
    const { pte, seq } = this.shared;
    const lost = new Uint8Array(this.shared.pageCount);
    for (let page = 0; page < this.shared.pageCount; page++) {
      // Its advice and pins end with it (gpu/advice.ts).
      if ((Atomics.load(pte, page) & PTE_POLICY_MASK) !== 0)
        Atomics.and(pte, page, ~PTE_POLICY_MASK);
      let word = Atomics.load(pte, page);
      if (!hasFrame(word) && !isGpuOwned(word)) continue;
      Atomics.add(seq, page, 1);
      for (;;) {
        const state = pteState(word);
        const next = withoutStale(
          withState(
            word & ~(PTE_FRAME | PTE_GPU_DIRTY),
            isGpuOwned(word) || state === PTE_SHARED ? PTE_CPU : state,
          ),
        );
        const seen = Atomics.compareExchange(pte, page, word, next);
        if (seen === word) break;
        word = seen;
      }
      if (isGpuDirty(word)) lost[page] = 1;
      Atomics.add(seq, page, 1);
      Atomics.notify(pte, page);
    }
    // A push's bytes are in CPU memory, the copy that is left: it succeeded.
    const end = (request: FaultRequest): void =>
      request.kind === 'push'
        ? this.complete(request, 'ok')
        : this.complete(request, 'device-lost', lostSpan(request, lost));
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

  /** Takes every posted request (of `kind` only, if given). */
  take(kind?: FaultRequest['kind']): FaultRequest[] {
    const taken: FaultRequest[] = [];
    const code = kind === undefined ? -1 : kind === 'push' ? FAULT_KIND_PUSH : FAULT_KIND_FETCH;
    for (let slot = 0; slot < FAULT_SLOTS; slot++) {
      const at = FAULT_WORDS * slot;
      if (code >= 0 && (Atomics.load(this.slots, at + FAULT_KIND) & FAULT_KIND_PUSH) !== code)
        continue;
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

  /** The request posted in `slot`. */
  private requestIn(slot: number): FaultRequest {
    const at = FAULT_WORDS * slot;
    const kind = Atomics.load(this.slots, at + FAULT_KIND);
    const request = {
      slot,
      kind: kind & FAULT_KIND_PUSH ? ('push' as const) : ('fetch' as const),
      writes: (kind & FAULT_KIND_WRITES) !== 0,
      first: Atomics.load(this.slots, at + FAULT_FIRST) >>> 0,
      count: Atomics.load(this.slots, at + FAULT_COUNT),
    };
    if (request.kind === 'fetch') return request;
    const words = new Int32Array(request.count >>> 2);
    for (let i = 0; i < words.length; i++) words[i] = Atomics.load(this.slots, at + FAULT_DATA + i);
    return { ...request, data: new Uint8Array(words.buffer) };
  }

  /**
   * Completes a taken request and wakes its requester. With 'device-lost',
   * `unsaved` is the run of the request's pages whose GPU copy was lost
   * (first to last such page), reported in the requester's DeviceLostError.
   */
  complete(request: FaultRequest, result: FaultResult = 'ok', unsaved?: PageRun): void {
    const at = FAULT_WORDS * request.slot;
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

/**
 * The pages of `request` marked in `lost`, as one run from the first to the
 * last (undefined if none): what its requester is told could not be saved.
 */
export function lostSpan(request: PageRun, lost: ArrayLike<number>): PageRun | undefined {
  let first = -1;
  let last = -1;
  for (let page = request.first; page < request.first + request.count; page++) {
    if (!lost[page]) continue;
    if (first < 0) first = page;
    last = page;
  }
  return first < 0 ? undefined : { first, count: last - first + 1 };
}
