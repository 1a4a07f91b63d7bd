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
 *   requester that gives up (timeout) never leaves a slot behind.
 *
 * Word layout: `FAULT_*` in shared-layout.ts.
 */
import { DeviceLostError, WouldBlockError } from '../errors.ts';
import {
  FAULT_ABANDONED,
  FAULT_CLAIMED,
  FAULT_COUNT,
  FAULT_DONE,
  FAULT_FIRST,
  FAULT_FREE,
  FAULT_OWNER,
  FAULT_POSTED,
  FAULT_RESULT,
  FAULT_RESULT_DEVICE_LOST,
  FAULT_RESULT_OK,
  FAULT_SERVICING,
  FAULT_SLOTS,
  FAULT_STATE,
  FAULT_WORDS,
  HEADER_FAULT_DOORBELL,
  HEADER_FAULT_SERVER,
  HEADER_FAULT_SLOTS_FREED,
} from './shared-layout.ts';
import type { SharedState } from './shared-state.ts';
import type { WaitBudget } from './waiting.ts';

/** A request as the server sees it. */
export interface FaultRequest {
  readonly slot: number;
  readonly first: number;
  readonly count: number;
}

export class FaultChannel {
  private readonly slots: Int32Array;
  private readonly header: Int32Array;

  constructor(
    shared: SharedState,
    /** The requesting thread's id, recorded in its slots. */
    private readonly owner = 0,
    /** Runs a multi-word slot change as one critical section of the thread (thread-record.ts). */
    private readonly critical: <T>(body: () => T) => T = (body) => body(),
  ) {
    this.slots = shared.faults;
    this.header = shared.header;
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
  requestSync(first: number, count: number, budget: WaitBudget): void {
    let slot = this.claimAndPost(first, count);
    while (slot < 0) {
      budget.waitSync(true, this.header, HEADER_FAULT_SLOTS_FREED, this.freedCount(), false);
      slot = this.claimAndPost(first, count);
    }
    const state = FAULT_WORDS * slot + FAULT_STATE;
    try {
      for (let seen = this.stateOf(slot); seen === FAULT_POSTED || seen === FAULT_SERVICING;) {
        budget.waitSync(true, this.slots, state, seen, false);
        seen = this.stateOf(slot);
      }
    } catch (error) {
      this.abandon(slot);
      throw error;
    }
    this.finish(slot, first);
  }

  /** `requestSync` that waits asynchronously, on any thread. */
  async requestAsync(first: number, count: number, budget: WaitBudget): Promise<void> {
    let slot = this.claimAndPost(first, count);
    while (slot < 0) {
      await budget.waitAsync(this.header, HEADER_FAULT_SLOTS_FREED, this.freedCount());
      slot = this.claimAndPost(first, count);
    }
    const state = FAULT_WORDS * slot + FAULT_STATE;
    try {
      for (let seen = this.stateOf(slot); seen === FAULT_POSTED || seen === FAULT_SERVICING;) {
        await budget.waitAsync(this.slots, state, seen);
        seen = this.stateOf(slot);
      }
    } catch (error) {
      this.abandon(slot);
      throw error;
    }
    this.finish(slot, first);
  }

  /** A free slot, claimed and posted with the request, or -1 if none is free. */
  private claimAndPost(first: number, count: number): number {
    return this.critical(() => {
      const slot = this.claim();
      if (slot >= 0) this.post(slot, first, count);
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

  private post(slot: number, first: number, count: number): void {
    const at = FAULT_WORDS * slot;
    Atomics.store(this.slots, at + FAULT_FIRST, first);
    Atomics.store(this.slots, at + FAULT_COUNT, count);
    Atomics.store(this.slots, at + FAULT_RESULT, FAULT_RESULT_OK);
    Atomics.store(this.slots, at + FAULT_OWNER, this.owner);
    Atomics.store(this.slots, at + FAULT_STATE, FAULT_POSTED);
    Atomics.add(this.header, HEADER_FAULT_DOORBELL, 1);
    Atomics.notify(this.header, HEADER_FAULT_DOORBELL);
  }

  /** Reads the result, frees the slot, throws if the request failed. */
  private finish(slot: number, first: number): void {
    const result = Atomics.load(this.slots, FAULT_WORDS * slot + FAULT_RESULT);
    this.free(slot);
    if (result === FAULT_RESULT_DEVICE_LOST) {
      throw new DeviceLostError([], `the GPU was lost while page ${first} was GPU-dirty`);
    }
  }

  /** Gives back every slot thread `owner` (terminated) had: as if it had given up waiting. */
  abandonOwnedBy(owner: number): void {
    for (let slot = 0; slot < FAULT_SLOTS; slot++) {
      // A claimed slot is another thread's, being posted: claim and post are one critical section.
      const state = this.stateOf(slot);
      if (state === FAULT_FREE || state === FAULT_CLAIMED) continue;
      if (Atomics.load(this.slots, FAULT_WORDS * slot + FAULT_OWNER) === owner) this.abandon(slot);
    }
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

  /** Stops serving; call after completing every request taken. */
  stopServing(threadId: number): void {
    Atomics.compareExchange(this.header, HEADER_FAULT_SERVER, threadId, 0);
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
      taken.push({
        slot,
        first: Atomics.load(this.slots, at + FAULT_FIRST),
        count: Atomics.load(this.slots, at + FAULT_COUNT),
      });
    }
    return taken;
  }

  /** Completes a taken request and wakes its requester. */
  complete(request: FaultRequest, deviceLost = false): void {
    const at = FAULT_WORDS * request.slot;
    Atomics.store(
      this.slots,
      at + FAULT_RESULT,
      deviceLost ? FAULT_RESULT_DEVICE_LOST : FAULT_RESULT_OK,
    );
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
