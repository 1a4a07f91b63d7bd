/**
 * Thrash mitigation (the `thrash` option): a page whose ownership moves
 * between the CPU and the GPU more than `threshold` times within
 * `windowMs` is pinned for `pinMs` (UVM detects such pages, throttles them,
 * then pins them and maps them remotely; a browser has no remote mapping,
 * so the pin does the mapping's job). It is pinned on the side whose
 * accesses the pin makes cheap: on the GPU when the CPU's last fault on it
 * was a small access (whole words, at most 64 bytes, which a push or a pull
 * carries), on the CPU when it was a larger one.
 *
 * Pinned on the GPU:
 * - the page stays GPU-owned: kernels use it with no transfer;
 * - a small CPU read of it when GPU-dirty pulls just the bytes read from
 *   the frame (a pull through the fault channel), leaving the page as it
 *   is; a larger one copies the page back and leaves it GPU-owned (clean);
 *   a clean page is read in place;
 * - a small plain CPU write lands in the CPU copy and, before the call
 *   returns, in the frame (a push through the fault channel:
 *   cpu-fault-service.ts), so it moves the bytes written and no page;
 * - a CPU scope or atomic takes the pin away and the page as always, and so
 *   do larger writes and sync small accesses on a thread that may not wait.
 *
 * Pinned on the CPU: the page stays CPU-owned. A run uploads its stale
 * ranges before it (as always) and writes back the pages it stored to
 * after it, before it resolves (-> `shared`, as for read-mostly pages), so
 * CPU reads of it never fault.
 *
 * A move is a page becoming GPU-owned from the CPU (a kernel write, a
 * `gpu.write`, `migrate(..., 'gpu')`) or a GPU-owned page a CPU fault brings
 * back. Pins are counted in `thrashPins` and traced (`kind: 'thrash-pin'`,
 * `to` the side, with the reason). A pin ends after `pinMs`, unless the
 * ping-pong went on under it (the device used the page since, and the CPU
 * pushed to or pulled from it, or a run wrote it through): then it is renewed for
 * `pinMs`, since unpinned the page would bounce again at once. It also ends
 * when the page is freed and when the mirror ends.
 */
import { InvalidArgumentError } from '../errors.ts';
import { positiveInteger } from '../arguments.ts';
import { runsOf } from '../space/page-run.ts';
import type { PageTable } from '../space/page-table.ts';
import { isMapped, isPinned } from '../space/pte.ts';
import { PTE_PINNED_CPU, PTE_PINNED_GPU } from '../space/shared-layout.ts';
import type { MigrationCause, MirrorCounters, TraceEvent } from './mirror-stats.ts';

/** The `thrash` option: when a page counts as thrashing, and how long it stays pinned. */
export interface ThrashOptions {
  /** Moves within `windowMs` a page may make; one more pins it. Default 4. */
  readonly threshold?: number;
  /** The window moves are counted in, ms. Default 200. */
  readonly windowMs?: number;
  /** How long a pin lasts, ms. Default 500. */
  readonly pinMs?: number;
}

/**
 * The defaults: a page that changes hands every iteration of a CPU/GPU loop
 * of up to ~40 ms an iteration (two moves each) is pinned by its third
 * iteration; one migrated there and back once or twice a window is not.
 * Measured on the `thrash.pingpong` row (docs/benchmarks.md), where an
 * iteration takes a few ms.
 */
export const THRASH_DEFAULTS: Required<ThrashOptions> = {
  threshold: 4,
  windowMs: 200,
  pinMs: 500,
};

/**
 * The `thrash` option, checked: undefined when mitigation is off (`false`).
 * @throws InvalidArgumentError 'thrash' 'bad-value' for anything but an object
 *   or false; 'thrash.threshold' etc. for a bound that is not a positive integer
 */
export function checkThrash(option: unknown): Required<ThrashOptions> | undefined {
  if (option === false) return undefined;
  if (option === undefined) return THRASH_DEFAULTS;
  if (typeof option !== 'object' || option === null)
    throw new InvalidArgumentError(
      'thrash',
      option,
      'bad-value',
      '{ threshold?, windowMs?, pinMs? } or false',
    );
  const given = option as ThrashOptions;
  const out = { ...THRASH_DEFAULTS };
  for (const key of ['threshold', 'windowMs', 'pinMs'] as const) {
    const value = given[key];
    if (value === undefined) continue;
    positiveInteger(`thrash.${key}`, value);
    out[key] = value;
  }
  return out;
}

export interface ThrashContext {
  readonly table: PageTable;
  readonly counters: MirrorCounters;
  readonly emit: (event: TraceEvent) => void;
  /** The device-side use clock now (eviction.ts). */
  readonly useClock: () => number;
  /** Whether a device-side use of `page` came after `tick` of the use clock. */
  readonly usedSince: (page: number, tick: number) => boolean;
}

/** A pin: when it ends, the use clock when it began, and whether the ping-pong went on since (a push, a write-through). */
interface Pin {
  until: number;
  tick: number;
  active: boolean;
}

export class ThrashDetector {
  /** When each page's current window began (performance.now()). */
  private readonly windowStart: Float64Array;
  /** Moves of each page in its current window. */
  private readonly moves: Uint16Array;
  /** 1 where the CPU's last fault on the page was for a small access (a push or pull could carry it). */
  private readonly cpuSmall: Uint8Array;
  /** Pinned pages and their pins. */
  private readonly pins = new Map<number, Pin>();
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly ctx: ThrashContext,
    readonly options: Required<ThrashOptions>,
  ) {
    this.windowStart = new Float64Array(ctx.table.pageCount);
    this.moves = new Uint16Array(ctx.table.pageCount);
    this.cpuSmall = new Uint8Array(ctx.table.pageCount);
  }

  /** Notes what the CPU faults on `pages` for: it chooses the side a pin of them takes. */
  cpuFaulted(pages: Iterable<number>, small: boolean): void {
    for (const page of pages) this.cpuSmall[page] = small ? 1 : 0;
  }

  /** Counts a move of each of `pages` between the CPU and the GPU; pins those past the threshold. */
  moved(pages: Iterable<number>, cause: MigrationCause): void {
    const now = performance.now();
    const { threshold, windowMs } = this.options;
    const pinned: number[] = [];
    for (const page of pages) {
      // Unpinned by a CPU scope or atomic: the count starts over, so the pin stays taken.
      if (this.pins.has(page) && !isPinned(this.ctx.table.pte(page))) {
        this.pins.delete(page);
        this.windowStart[page] = now;
        this.moves[page] = 0;
      }
      if (now - (this.windowStart[page] ?? 0) > windowMs) {
        this.windowStart[page] = now;
        this.moves[page] = 0;
      }
      const moves = (this.moves[page] ?? 0) + 1;
      this.moves[page] = Math.min(moves, 0xffff);
      if (moves > threshold && !isPinned(this.ctx.table.pte(page))) pinned.push(page);
    }
    if (pinned.length > 0) this.pin(pinned, now, cause);
  }

  /** Notes CPU writes pushed to pages pinned on the GPU, or runs' stores written through pages pinned on the CPU: the ping-pong goes on under the pin. */
  active(pages: Iterable<number>): void {
    for (const page of pages) {
      const pin = this.pins.get(page);
      if (pin) pin.active = true;
    }
  }

  /** Forgets pages [first, end), freed: a new allocation there starts with no moves counted and no pin. */
  forget(first: number, end: number): void {
    this.moves.fill(0, first, end);
    this.windowStart.fill(0, first, end);
    for (let page = first; page < end; page++) this.pins.delete(page);
  }

  /** Whether any page is pinned (a run's stores may have to be written through). */
  get pinning(): boolean {
    return this.pins.size > 0;
  }

  /** Ends every pin (the mirror ends). */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const page of this.pins.keys()) this.unpin(page);
    this.pins.clear();
  }

  private pin(pages: readonly number[], now: number, cause: MigrationCause): void {
    const tick = this.ctx.useClock();
    const onGpu = pages.filter((page) => this.cpuSmall[page]);
    const onCpu = pages.filter((page) => !this.cpuSmall[page]);
    for (const [side, bit] of [
      [onGpu, PTE_PINNED_GPU],
      [onCpu, PTE_PINNED_CPU],
    ] as const) {
      for (const page of side) {
        this.ctx.table.updatePte(page, (pte) => (isMapped(pte) ? pte | bit : pte));
        this.pins.set(page, { until: now + this.options.pinMs, tick, active: false });
      }
      this.trace(side, bit === PTE_PINNED_GPU ? 'gpu' : 'cpu', now, cause);
    }
    this.ctx.counters.thrashPins += pages.length;
    this.timer ??= setTimeout(() => this.expire(), this.options.pinMs);
  }

  /** One 'thrash-pin' event per run of `pages` pinned on `side`. */
  private trace(
    pages: readonly number[],
    side: 'gpu' | 'cpu',
    now: number,
    cause: MigrationCause,
  ): void {
    const { table } = this.ctx;
    const { threshold, windowMs, pinMs } = this.options;
    const reason = `more than ${threshold} moves between the CPU and the GPU within ${windowMs} ms (the last: ${cause}); pinned on the ${side === 'gpu' ? 'GPU' : 'CPU'} for ${pinMs} ms`;
    for (const run of runsOf([...pages].sort((a, b) => a - b))) {
      const [va, len] = [table.address(run.first), run.count * table.pageSize];
      const event = { t: now, kind: 'thrash-pin', cause, to: side, va, len } as const;
      this.ctx.emit({ ...event, pages: run.count, bytes: 0, ms: 0, reason });
    }
  }

  /** Ends the pins that are due (or renews those the ping-pong went on under); looks again when the next one is due. */
  private expire(): void {
    this.timer = undefined;
    const now = performance.now();
    const tick = this.ctx.useClock();
    let next = Infinity;
    for (const [page, pin] of this.pins) {
      if (pin.until > now) {
        next = Math.min(next, pin.until);
      } else if (
        pin.active &&
        this.ctx.usedSince(page, pin.tick) &&
        isPinned(this.ctx.table.pte(page))
      ) {
        Object.assign(pin, { until: now + this.options.pinMs, tick, active: false });
        next = Math.min(next, pin.until);
      } else {
        this.unpin(page);
        this.pins.delete(page);
      }
    }
    if (next < Infinity) this.timer = setTimeout(() => this.expire(), next - now);
  }

  private unpin(page: number): void {
    this.ctx.table.updatePte(page, (pte) => pte & ~(PTE_PINNED_GPU | PTE_PINNED_CPU));
  }
}
