/**
 * How a call waits. A call may block unless it runs on a browser's main
 * thread or on the thread that owns a GpuMirror (a thread parked in
 * Atomics.wait receives no mapAsync callback, so it would deadlock its own
 * faults). The decision is made per call through an injectable `mayBlock`
 * (docs/address-space.md, "Waiting").
 *
 * - may block: Atomics.wait, for at most `faultTimeoutMs` in all, then
 *   WouldBlockError 'timeout';
 * - may not block: a short critical section (plain accesses, the allocator,
 *   a free) is spun for at most `spinLimitMs`; a long one (a scope, a kernel,
 *   a migration) throws WouldBlockError 'may-not-block' at once;
 * - async variants wait with Atomics.waitAsync on any thread, up to `faultTimeoutMs`.
 */
import { WouldBlockError } from '../errors.ts';

export interface WaitLimits {
  /** Longest a blocked call waits before WouldBlockError 'timeout', ms. */
  readonly faultTimeoutMs: number;
  /** Longest a thread that may not block spins on a short critical section, ms. */
  readonly spinLimitMs: number;
  /** The thread's record: a blocking wait is taken outside its critical section (thread-record.ts). */
  readonly record?: { waitOutside(wait: () => void): void };
}

/** The default decision: a browser window's main thread may not block; workers and Node may. */
export function defaultMayBlock(): boolean {
  return !(typeof window !== 'undefined' && typeof document !== 'undefined');
}

/**
 * The waiting of one call: its deadlines start at the first wait and hold
 * for the whole call, across every retry, page and fault it waits on, so a
 * call waits at most `faultTimeoutMs` in all (spins at most `spinLimitMs`).
 */
export class WaitBudget {
  private deadline = Number.NaN;
  private spinDeadline = Number.NaN;
  private waitedMs = 0;

  constructor(
    private readonly limits: WaitLimits,
    /** The faulting address reported if the wait fails. */
    private address: number,
    /**
     * Count only the time spent waiting, not the time between waits: for a
     * kernel run, whose own passes and transfers between its waits are not
     * waiting on others.
     */
    private readonly waitsOnly = false,
  ) {}

  /** Names `address` as where the call waits now (reported if the wait fails); returns this budget. */
  at(address: number): this {
    this.address = address;
    return this;
  }

  private start(): void {
    if (!Number.isNaN(this.deadline)) return;
    const now = performance.now();
    this.deadline = now + this.limits.faultTimeoutMs;
    this.spinDeadline = now + this.limits.spinLimitMs;
  }

  private remainingMs(): number {
    this.start();
    const left = this.waitsOnly
      ? this.limits.faultTimeoutMs - this.waitedMs
      : this.deadline - performance.now();
    if (left <= 0) {
      throw new WouldBlockError(
        this.address,
        'timeout',
        `waited ${this.limits.faultTimeoutMs} ms (faultTimeoutMs)`,
      );
    }
    return left;
  }

  /**
   * Waits until `words[index]` may have changed from `observed`, or, where the
   * thread may not block, spins once (the caller retries).
   * @param long what blocks may last long (a scope or GPU work)
   * @throws WouldBlockError 'timeout' or 'may-not-block'
   */
  waitSync(
    mayBlock: boolean,
    words: Int32Array,
    index: number,
    observed: number,
    long: boolean,
  ): void {
    if (mayBlock) {
      const ms = this.remainingMs();
      const wait = (): void => void Atomics.wait(words, index, observed, ms);
      if (this.limits.record) this.limits.record.waitOutside(wait);
      else wait();
      return;
    }
    if (long) {
      throw new WouldBlockError(
        this.address,
        'may-not-block',
        'the page is held by a scope or by GPU work and this thread may not wait; use the async variant',
      );
    }
    this.start();
    if (performance.now() > this.spinDeadline) {
      throw new WouldBlockError(
        this.address,
        'may-not-block',
        `spun ${this.limits.spinLimitMs} ms (spinLimitMs)`,
      );
    }
  }

  /**
   * Pauses up to `ms` (less if less is left), counted as waiting, for a
   * caller that polls (eviction waiting for holders to let go of frames).
   * @returns false, without pausing, once the budget is spent
   */
  async pause(ms: number): Promise<boolean> {
    let left: number;
    try {
      left = this.remainingMs();
    } catch {
      return false;
    }
    const began = performance.now();
    await new Promise((resolve) => setTimeout(resolve, Math.min(ms, left)));
    this.waitedMs += performance.now() - began;
    return true;
  }

  /** Waits on any thread until `words[index]` may have changed from `observed`. */
  async waitAsync(words: Int32Array, index: number, observed: number): Promise<void> {
    const ms = this.remainingMs();
    const began = performance.now();
    const result = Atomics.waitAsync(words, index, observed, ms);
    const outcome = result.async ? await result.value : result.value;
    // A wait that timed out used up what was left, whatever the clock says:
    // its timer may fire a fraction of a millisecond early by performance.now().
    const waited = performance.now() - began;
    this.waitedMs += outcome === 'timed-out' ? Math.max(waited, ms) : waited;
  }
}
