/**
 * Holding: how a CPU call takes the page holds it needs, waiting as it may.
 *
 * Guarantees:
 * - all or nothing: on return every hold is taken; on a throw none is;
 * - one budget per call: every wait of the call (on any page, after any
 *   retry, and the CPU faults it asks for in between) draws on one
 *   WaitBudget, so a call waits at most `faultTimeoutMs` in all;
 * - no starvation: a call that waits announces itself on the page
 *   (page-lock.ts), so new device holds wait behind it, and so do new CPU
 *   holders that would keep it out; a call that holds nothing else (no
 *   scope of its thread) waits, before it first joins a page, behind such a
 *   waiter of a page that is held, instead of joining the holders it waits
 *   for. A call that already holds a scope never waits behind others (it
 *   may be what they, or what they wait for, need to end);
 * - a call withdraws its claim on the page it waited on once it got in,
 *   gave up, or moved on to wait on another page, so no stale claim keeps
 *   the device out; one that gave up or moved on withdraws its hold-offs
 *   too, so no stale hold-off keeps new holders of a long-held page waiting;
 * - a call that would fail once held (its range was freed meanwhile, say)
 *   fails before it waits, not after (`precheck`).
 */
import {
  announceCpuWaiter,
  announceYield,
  blockerIsLong,
  withdrawCpuWaiter,
  yieldsToWaiter,
  type HoldKind,
} from './page-lock.ts';
import type { Hold, PageTable } from './page-table.ts';
import type { WaitBudget } from './waiting.ts';

/** One call's way of taking its holds. */
export interface HoldCall {
  readonly table: PageTable;
  /** The call's first byte: a failed wait names the later of it and the blocking page. */
  readonly va: number;
  readonly budget: WaitBudget;
  /** Whether the call waits behind a held page's waiters before it first joins (it holds nothing else). */
  readonly yields: boolean;
  /**
   * Run before every wait: throws the error the call would meet once held
   * (a freed page, say), so a call that must fail does not wait first.
   */
  readonly precheck?: () => void;
}

/** Where a call must wait: the page, the kind it wants there, and whether it only yields. */
interface Block {
  readonly page: number;
  readonly kind: HoldKind;
  readonly yielding: boolean;
}

/**
 * Takes every hold of `holds`, waiting with Atomics.wait where `blocking`,
 * else spinning on short holders (waiting.ts).
 * @throws WouldBlockError 'may-not-block' or 'timeout', holding nothing;
 *   OutOfMemoryError 'threads' (a full hold journal)
 */
export function holdAllSync(holds: readonly Hold[], call: HoldCall, blocking: boolean): void {
  const waiting = new Waiting(call);
  try {
    for (;;) {
      const block = waiting.next(holds);
      if (!block) return;
      call.precheck?.();
      const observed = waiting.announce(block);
      if (observed === undefined) continue;
      const long = blockerIsLong(observed, block.yielding ? 'scope-write' : block.kind);
      waiting.budget(block).waitSync(blocking, call.table.shared.lock, block.page, observed, long);
    }
  } catch (error) {
    waiting.withdraw();
    throw error;
  }
}

/**
 * Takes every hold of `holds`, waiting with Atomics.waitAsync (any thread).
 * @throws WouldBlockError 'timeout', holding nothing; OutOfMemoryError 'threads'
 */
export async function holdAllAsync(holds: readonly Hold[], call: HoldCall): Promise<void> {
  const waiting = new Waiting(call);
  try {
    for (;;) {
      const block = waiting.next(holds);
      if (!block) return;
      call.precheck?.();
      const observed = waiting.announce(block);
      if (observed === undefined) continue;
      await waiting.budget(block).waitAsync(call.table.shared.lock, block.page, observed);
    }
  } catch (error) {
    waiting.withdraw();
    throw error;
  }
}

/** The waiting state of one call's hold loop. */
class Waiting {
  /** The page this call claimed as a CPU waiter (LOCK_CPU_WAITING), or -1. */
  private claimed = -1;
  /** Whether the call has waited already: then it is a waiter, and yields to no one. */
  private waited = false;
  private readonly lock: Int32Array;

  constructor(private readonly call: HoldCall) {
    this.lock = call.table.shared.lock;
  }

  /** Takes `holds` if it can (withdrawing its claim as a waiter); otherwise where to wait. */
  next(holds: readonly Hold[]): Block | undefined {
    if (this.call.yields && !this.waited) {
      for (const hold of holds) {
        for (let page = hold.first; page < hold.first + hold.count; page++) {
          if (yieldsToWaiter(Atomics.load(this.lock, page), hold.kind)) {
            return { page, kind: hold.kind, yielding: true };
          }
        }
      }
    }
    const blocked = this.call.table.tryHoldAll(holds);
    if (!blocked) this.withdraw(true);
    return blocked && { ...blocked, yielding: false };
  }

  /** Announces the call on the block's page; the word to wait on, or undefined to retry now. */
  announce(block: Block): number | undefined {
    this.waited = true;
    // A yield claims nothing: it defers to the page's waiters.
    if (block.yielding) return announceYield(this.lock, block.page, block.kind);
    if (this.claimed !== block.page) this.withdraw();
    this.claimed = block.page;
    return announceCpuWaiter(this.lock, block.page, block.kind);
  }

  /** The call's budget, naming the block's page as where it waits. */
  budget(block: Block): WaitBudget {
    const { table, va, budget } = this.call;
    return budget.at(Math.max(va, table.address(block.page)));
  }

  /** Withdraws the call's claim as a CPU waiter, if it has one; with its hold-offs unless it got in. */
  withdraw(gotIn = false): void {
    if (this.claimed >= 0) withdrawCpuWaiter(this.lock, this.claimed, gotIn);
    this.claimed = -1;
  }
}
