/**
 * CPU access: how one thread's reads, writes, atomics and scopes touch the
 * space. Every AddressSpace accessor goes through here.
 *
 * Guarantees:
 * - An access holds the pages it touches (page-lock.ts) and checks them only
 *   once held, so it sees one consistent page state, and a failed access
 *   changes nothing.
 * - A GPU-dirty page is never read or written in place: the access releases
 *   its holds, asks the GpuMirror's thread for the pages through the fault
 *   channel (waiting as the thread may), and takes and checks them again.
 *   A clean GPU-owned page comes back at once, with no transfer.
 * - A write marks its bytes stale on the GPU (page-table.ts `markWritten`)
 *   before its holds are released; the invalidations it causes are announced
 *   once every hold is released, never under one.
 * - A call on a range that overlaps a scope (access/acquire) of this very
 *   thread, sync or async, throws (or rejects) WouldBlockError 'reentrant'
 *   at once instead of waiting for itself.
 * - One call waits at most `faultTimeoutMs` in all, across its retries and
 *   faults (holding.ts), and waits its turn behind calls already waiting.
 */
import { nonNegativeInteger, oneOf, positiveInteger } from '../arguments.ts';
import { AccessError, InvalidArgumentError, WouldBlockError } from '../errors.ts';
import { unservedFault, type FaultChannel } from './fault-channel.ts';
import { holdAllAsync, holdAllSync, type HoldCall } from './holding.ts';
import { ACCESS_MODES, Lease, type AccessMode } from './lease.ts';
import { coalesce, type InvalidateEvent, type InvalidationNotifier } from './notifier.ts';
import type { PageRun } from './page-run.ts';
import type { Hold, PageTable } from './page-table.ts';
import { assertAccess, type Need } from './pte.ts';
import { FAULT_PUSH_BYTES } from './shared-layout.ts';
import { WaitBudget, type WaitLimits } from './waiting.ts';

/** A held run of pages with what the CPU access needs of them: bytes [va, va + len). */
/** Holds a plain access takes with its own (`runSync`), checked by `check` once held. */
export interface AlsoHeld {
  readonly holds: readonly Hold[];
  readonly check: () => void;
}

export interface Access extends Hold {
  /** The first byte accessed. */
  readonly va: number;
  /** Bytes accessed (>= 1). */
  readonly len: number;
  readonly need: Need;
  /** A CPU atomic: it takes a page pinned on the GPU back, as a scope does. */
  readonly atomic?: boolean;
}

/** A call's holds taken: whether its access is to be pushed or pulled (see `checkOrRelease`), and its wait budget. */
interface Held {
  readonly pinned: boolean;
  readonly budget: WaitBudget;
}

/** A plain access a push or a pull can carry: whole words, at most FAULT_PUSH_BYTES, in one page. */
function remoteSized(access: Access): boolean {
  return (
    (access.kind === 'write' || access.kind === 'read') &&
    !access.atomic &&
    access.count === 1 &&
    access.va % 4 === 0 &&
    access.len % 4 === 0 &&
    access.len <= FAULT_PUSH_BYTES
  );
}

/** The pages to fault back, from `first` (a GPU-dirty page) to the end of the access at `va`. */
interface Fault extends PageRun {
  readonly va: number;
  /** The faulting access is small enough for a push or a pull (`remoteSized`). */
  readonly small: boolean;
}

export interface CpuAccessParts {
  readonly table: PageTable;
  readonly faults: FaultChannel;
  readonly notifier: InvalidationNotifier;
  readonly limits: WaitLimits;
  /** The space's CPU memory, which leases view. */
  readonly memory: SharedArrayBuffer;
  /** Whether this call may block: the policy, unless this thread owns a GPUDevice. */
  readonly mayBlock: () => boolean;
}

export class CpuAccess {
  readonly mayBlock: () => boolean;
  private readonly table: PageTable;
  private readonly faults: FaultChannel;
  private readonly notifier: InvalidationNotifier;
  private readonly limits: WaitLimits;
  private readonly memory: SharedArrayBuffer;
  /** Ranges held by this thread's scopes (access/acquire), for the re-entrancy check. */
  private readonly scopes = new Set<PageRun>();
  /** Invalidations of the call in progress, announced once its holds are released. */
  private outbox: InvalidateEvent[] = [];

  constructor(parts: CpuAccessParts) {
    this.table = parts.table;
    this.faults = parts.faults;
    this.notifier = parts.notifier;
    this.limits = parts.limits;
    this.memory = parts.memory;
    this.mayBlock = parts.mayBlock;
  }

  // ---------------------------------------------------------------- what an access is

  /**
   * The pages of [va, va + len), validated.
   * @throws InvalidArgumentError 'va' ('not-integer', 'negative'), 'len' ('not-integer',
   *   'negative', 'zero'); AccessError 'out-of-range' at the first byte past the space
   */
  span(va: number, len: number): PageRun {
    nonNegativeInteger('va', va);
    positiveInteger('len', len);
    const size = this.table.pageCount * this.table.pageSize;
    if (va + len > size) {
      throw new AccessError(
        Math.max(va, size),
        'out-of-range',
        `the space ends at 0x${size.toString(16)}`,
      );
    }
    const first = Math.floor(va / this.table.pageSize);
    return { first, count: Math.floor((va + len - 1) / this.table.pageSize) - first + 1 };
  }

  /** A plain CPU access of [va, va + len), validated as `span`. */
  plain(va: number, len: number, need: Need): Access {
    return { ...this.span(va, len), kind: need, va, len, need };
  }

  /**
   * A scalar access of the 4 bytes at `va`.
   * @throws InvalidArgumentError 'misaligned' unless `va` is 4-byte aligned; as `span`
   */
  word(va: number, need: Need, atomic = false): Access {
    nonNegativeInteger('va', va);
    if (va % 4 !== 0) {
      throw new InvalidArgumentError('va', va, 'misaligned', 'scalar accesses are 4-byte aligned', {
        address: va,
      });
    }
    const access = this.plain(va, 4, need);
    return atomic ? { ...access, atomic } : access;
  }

  /**
   * A scope's access: read scopes keep writers out, write scopes everyone.
   * @throws InvalidArgumentError 'mode' 'bad-value'; as `span`
   */
  scope(va: number, len: number, mode: AccessMode): Access {
    oneOf('mode', mode, ACCESS_MODES);
    const kind = mode === 'read' ? 'scope-read' : 'scope-write';
    return { ...this.span(va, len), kind, va, len, need: mode };
  }

  // ---------------------------------------------------------------- plain accesses

  /**
   * Holds `accesses`, checks them (faulting GPU-dirty pages back), marks the
   * written ones stale on the GPU, runs `body` (webhmm's own copy), releases,
   * announces. All or nothing: on a throw no hold is kept and nothing changed.
   * `also`: more holds taken with them, all or none (a discard's whole
   * pages), which are never faulted back, checked by `also.check` once held.
   * @throws WouldBlockError 'reentrant', 'may-not-block', 'timeout', 'unserved';
   *   AccessError at the first refused byte
   */
  runSync<T>(accesses: readonly Access[], body: () => T, also?: AlsoHeld): T {
    for (const access of accesses) this.assertNotInScope(access, access.va);
    // `body` is webhmm's own copy: the whole access is one critical section.
    const result = this.table.critical(() => {
      this.holdSync(accesses, also);
      try {
        this.markWritten(accesses);
        return body();
      } finally {
        this.table.releaseHolds([...accesses, ...(also?.holds ?? [])]);
      }
    });
    this.announce();
    return result;
  }

  /** `runSync` that waits asynchronously, on any thread. Rejects as `runSync`, 'reentrant' at once. */
  async runAsync<T>(accesses: readonly Access[], body: () => T): Promise<T> {
    for (const access of accesses) this.assertNotInScope(access, access.va);
    await this.holdAsync(accesses);
    const result = this.table.critical(() => {
      try {
        this.markWritten(accesses);
        return body();
      } finally {
        this.table.releaseHolds(accesses);
      }
    });
    this.announce();
    return result;
  }

  /**
   * A plain write `access` as `runSync` runs it, whose bytes are `data()`:
   * on a page pinned on the GPU (gpu/thrash.ts) it pushes them instead of
   * running `body`: the mirror's thread writes them into CPU memory and the
   * frame before the call returns, and a push that fails wrote nothing.
   */
  writeSync(access: Access, data: () => Uint8Array, body: () => void): void {
    this.assertNotInScope(access, access.va);
    // Again only when the mirror stopped before it carried the push out (then the pin is gone).
    while (
      !this.table.critical(() => {
        const { pinned, budget } = this.holdSync([access], undefined, this.mayBlock());
        try {
          if (pinned) return this.faults.pushSync(access.va, data(), budget);
          this.runBody([access], body);
          return true;
        } finally {
          this.table.releaseHolds([access]);
        }
      })
    );
    this.announce();
  }

  /** `writeSync` that waits asynchronously, on any thread. */
  async writeAsync(access: Access, data: () => Uint8Array, body: () => void): Promise<void> {
    this.assertNotInScope(access, access.va);
    for (let done = false; !done;) {
      const { pinned, budget } = await this.holdAsync([access], true);
      try {
        if (pinned) done = await this.faults.pushAsync(access.va, data(), budget);
        else done = this.table.critical(() => this.runBody([access], body));
      } finally {
        this.table.releaseHolds([access]);
      }
    }
    this.announce();
  }

  /**
   * A plain read `access` as `runSync` runs it: from a GPU-dirty page pinned
   * on the GPU (gpu/thrash.ts) it pulls just its bytes from the frame and
   * hands them to `fromBytes` instead of running `body`; the page stays as
   * it is.
   */
  readSync<T>(access: Access, fromBytes: (bytes: Uint8Array) => T, body: () => T): T {
    this.assertNotInScope(access, access.va);
    for (;;) {
      const result = this.table.critical(() => {
        const { pinned, budget } = this.holdSync([access], undefined, this.mayBlock());
        try {
          if (!pinned) return { value: body() };
          const bytes = this.faults.pullSync(access.va, access.len, budget);
          return bytes && { value: fromBytes(bytes) };
        } finally {
          this.table.releaseHolds([access]);
        }
      });
      if (result) return result.value;
    }
  }

  /** `readSync` that waits asynchronously, on any thread. */
  async readAsync<T>(
    access: Access,
    fromBytes: (bytes: Uint8Array) => T,
    body: () => T,
  ): Promise<T> {
    this.assertNotInScope(access, access.va);
    for (;;) {
      const { pinned, budget } = await this.holdAsync([access], true);
      try {
        if (!pinned) return this.table.critical(body);
        const bytes = await this.faults.pullAsync(access.va, access.len, budget);
        if (bytes) return fromBytes(bytes);
      } finally {
        this.table.releaseHolds([access]);
      }
    }
  }

  private runBody(accesses: readonly Access[], body: () => void): true {
    this.markWritten(accesses);
    body();
    return true;
  }

  // ---------------------------------------------------------------- scopes

  /** Holds `access` (a `scope`) synchronously and opens it. Throws as `runSync`. */
  openSync(access: Access, mode: AccessMode): Lease {
    this.assertNotInScope(access, access.va);
    return this.table.critical(() => {
      this.holdSync([access]);
      return this.open(access, mode);
    });
  }

  /** Holds `access` (a `scope`), waiting asynchronously on any thread, and opens it. */
  async openAsync(access: Access, mode: AccessMode): Promise<Lease> {
    this.assertNotInScope(access, access.va);
    await this.holdAsync([access]);
    return this.table.critical(() => this.open(access, mode));
  }

  /**
   * Throws if [first, first + count) overlaps a scope of this thread
   * (SpaceInternals exposes it to the device side, for mirror calls).
   * @throws WouldBlockError 'reentrant' at `va`
   */
  assertNotInScope(run: PageRun, va: number): void {
    for (const scope of this.scopes) {
      if (run.first < scope.first + scope.count && scope.first < run.first + run.count) {
        throw new WouldBlockError(
          va,
          'reentrant',
          'the range is held by an access() or acquire() scope of this thread; use its lease',
        );
      }
    }
  }

  // ---------------------------------------------------------------- invalidations

  /** Records an invalidation of the call in progress, to announce once its holds are released. */
  invalidated(event: InvalidateEvent): void {
    this.outbox.push(event);
  }

  /** Announces the call's invalidations: to other threads through the log, to this thread's listeners now. */
  announce(): void {
    if (this.outbox.length === 0) return;
    const events = coalesce(this.outbox);
    this.outbox = [];
    this.notifier.announce(events);
  }

  // ---------------------------------------------------------------- internals

  /**
   * Takes `holds` for one call whose first byte is `va`, waiting as the
   * thread may, within `budget` (holding.ts). `yields`: whether the call
   * waits behind a held page's waiters before joining (never inside a scope
   * of this thread); `precheck` runs before each wait, so a call that must
   * fail fails at once.
   * @throws WouldBlockError 'may-not-block' or 'timeout', holding nothing;
   *   what `precheck` throws
   */
  holdPagesSync(
    holds: readonly Hold[],
    va: number,
    budget: WaitBudget,
    yields: boolean,
    precheck: () => void,
  ): void {
    const blocking = this.mayBlock();
    // A sync call that may not block spins only briefly: it waits behind no one.
    holdAllSync(holds, this.holdCall(va, budget, yields && blocking, precheck), blocking);
  }

  private holdCall(
    va: number,
    budget: WaitBudget,
    yields: boolean,
    precheck: () => void,
  ): HoldCall {
    return { table: this.table, va, budget, yields: yields && this.scopes.size === 0, precheck };
  }

  /** Checks the pages of `accesses` as `checkHeld` will once they are held. */
  private precheck(accesses: readonly Access[]): () => void {
    return () => {
      for (const access of accesses) {
        for (let page = access.first; page < access.first + access.count; page++) {
          const address = Math.max(access.va, this.table.address(page));
          assertAccess(this.table.pte(page), access.need, address);
        }
      }
    };
  }

  /**
   * Holds `accesses` with every page checked and CPU-accessible, bringing
   * GPU-dirty pages back through the fault channel first (waiting as the
   * thread may, within one budget for the whole call). On return the holds
   * are taken.
   */
  private holdSync(accesses: readonly Access[], also?: AlsoHeld, mayPush = false): Held {
    const va = accesses[0]?.va ?? also?.holds[0]?.first ?? 0;
    const budget = new WaitBudget(this.limits, va);
    const checkAccesses = this.precheck(accesses);
    const precheck = () => {
      checkAccesses();
      also?.check();
    };
    const holds = [...accesses, ...(also?.holds ?? [])];
    for (;;) {
      this.holdPagesSync(holds, va, budget, true, precheck);
      const fault = this.checkOrRelease(accesses, mayPush, also);
      if (typeof fault === 'boolean') return { pinned: fault, budget };
      const address = Math.max(fault.va, this.table.address(fault.first));
      if (!this.mayBlock()) {
        throw new WouldBlockError(
          address,
          'may-not-block',
          'the page is dirty on the GPU and needs a readback; use the async variant',
        );
      }
      if (!this.faults.served) throw unservedFault(address);
      this.faults.requestSync(fault.first, fault.count, budget.at(address), fault.small);
    }
  }

  private async holdAsync(accesses: readonly Access[], mayPush = false): Promise<Held> {
    const va = accesses[0]?.va ?? 0;
    const budget = new WaitBudget(this.limits, va);
    const call = this.holdCall(va, budget, true, this.precheck(accesses));
    for (;;) {
      await holdAllAsync(accesses, call);
      const fault = this.checkOrRelease(accesses, mayPush);
      if (typeof fault === 'boolean') return { pinned: fault, budget };
      const address = Math.max(fault.va, this.table.address(fault.first));
      if (!this.faults.served) throw unservedFault(address);
      await this.faults.requestAsync(fault.first, fault.count, budget.at(address), fault.small);
    }
  }

  /**
   * Checks held accesses. Returns the pages to fault back (from the first
   * GPU-dirty page to the end of its access), having released the holds, or
   * with the holds kept, whether the one access (a small plain write or
   * read, `mayRemote`: the call can wait for the mirror's thread) is to be
   * pushed to or pulled from a page pinned on the GPU (gpu/thrash.ts).
   * Other writes, scopes and atomics take pins away. On an AccessError,
   * releases and throws.
   */
  private checkOrRelease(
    accesses: readonly Access[],
    mayRemote: boolean,
    also?: AlsoHeld,
  ): Fault | boolean {
    const holds = [...accesses, ...(also?.holds ?? [])];
    return this.table.critical(() => {
      try {
        const remote: number[] = [];
        for (const access of accesses) {
          const how = !(mayRemote && remoteSized(access))
            ? { unpin: access.kind !== 'read' }
            : access.kind === 'write'
              ? { pushes: remote }
              : { pulls: remote };
          const { first, count, va, need } = access;
          const faulted = this.table.checkHeld(first, count, va, need, how);
          if (faulted >= 0) {
            this.table.releaseHolds(holds);
            const small = remoteSized(access);
            return { first: faulted, count: first + count - faulted, va, small };
          }
        }
        also?.check();
        return remote.length > 0;
      } catch (error) {
        this.table.releaseHolds(holds);
        throw error;
      }
    });
  }

  private markWritten(accesses: readonly Access[]): void {
    for (const access of accesses) {
      if (access.need === 'write') {
        this.table.markWritten(access.va, access.len, this.outbox);
      }
    }
  }

  /** Registers a scope over held, checked pages; returns its lease. */
  private open(access: Access, mode: AccessMode): Lease {
    try {
      this.markWritten([access]);
    } catch (error) {
      this.outbox = [];
      this.table.releaseHolds([access]);
      throw error;
    }
    const scope: PageRun = { first: access.first, count: access.count };
    this.scopes.add(scope);
    return new Lease(this.memory, access.va, access.len, mode, () => {
      this.scopes.delete(scope);
      this.table.releaseHolds([access]);
      this.announce();
    });
  }
}
