/**
 * Background write-back (`GpuMirror.attach`'s `writeBack` option): bounds
 * what a device loss can take. Acknowledged GPU-dirty pages (a resolved
 * `gpu.write`, a resolved run) that no run in flight holds are written back
 * to the CPU (cause 'writeback', -> `shared`, frames kept) when they are
 * older than `maxDirtyAgeMs`, or, oldest first, beyond `maxDirtyBytes`.
 *
 * Guarantees:
 * - Once the mirror is idle, at most `maxDirtyBytes` (rounded down to whole
 *   pages) of acknowledged GPU-dirty bytes remain, none older than
 *   `maxDirtyAgeMs`, give or take one pass (a pass starts on the next task
 *   after a page becomes dirty, or when the oldest page comes of age).
 * - Pages held by runs in flight are left alone and looked at again shortly;
 *   a write-back that fails is retried after a pause, never in a tight loop.
 * - It writes back only GPU-dirty pages: a page written back, synced or
 *   faulted back meanwhile is forgotten.
 */
import { nonNegativeInteger, positiveInteger } from '../arguments.ts';
import { InvalidArgumentError } from '../errors.ts';
import { runsOf, type PageRun } from '../space/page-run.ts';

export interface WriteBackOptions {
  /**
   * Most acknowledged GPU-dirty bytes the mirror keeps, rounded down to
   * whole pages (a non-negative integer; under one page, every acknowledged page is written back); beyond
   * it the oldest pages are written back. Default: no bound.
   */
  readonly maxDirtyBytes?: number;
  /** Longest an acknowledged page stays GPU-dirty before it is written back, ms (a positive integer). Default: no bound. */
  readonly maxDirtyAgeMs?: number;
}

/** What background write-back uses of its mirror. */
export interface WriteBackHost {
  readonly pageSize: number;
  /** The page is GPU-dirty now. */
  isDirty(page: number): boolean;
  /** Someone holds the page now (a run in flight): a hint, not a hold. */
  isHeld(page: number): boolean;
  /** Writes `runs` back to the CPU (cause 'writeback'); rejects if it failed. */
  writeBack(runs: readonly PageRun[]): Promise<void>;
}

/** How soon a pass that had to skip held pages looks again, ms. */
const HELD_RETRY_MS = 10;
/** How long a pass whose write-back failed waits before trying again, ms. */
const FAILED_RETRY_MS = 100;

/**
 * Checks a `writeBack` option.
 * @throws InvalidArgumentError 'writeBack.maxDirtyBytes' / 'writeBack.maxDirtyAgeMs' for a non-integer or negative bound
 */
export function checkWriteBack(
  options: WriteBackOptions | undefined,
): WriteBackOptions | undefined {
  if (options === undefined) return undefined;
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError(
      'writeBack',
      options,
      'bad-value',
      '{ maxDirtyBytes?, maxDirtyAgeMs? }',
    );
  }
  const { maxDirtyBytes, maxDirtyAgeMs } = options;
  if (maxDirtyBytes !== undefined) nonNegativeInteger('writeBack.maxDirtyBytes', maxDirtyBytes);
  if (maxDirtyAgeMs !== undefined) positiveInteger('writeBack.maxDirtyAgeMs', maxDirtyAgeMs);
  return options;
}

export class BackgroundWriteBack {
  /** Acknowledged dirty pages and when each became dirty (insertion order: oldest first). */
  private readonly since = new Map<number, number>();
  private readonly maxPages: number;
  private readonly maxAgeMs: number;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** performance.now() at which `timer` fires. */
  private due = Infinity;
  private running = false;
  /** Pages became dirty during a pass: look again after it. */
  private again = false;
  private stopped = false;

  constructor(
    options: WriteBackOptions,
    private readonly host: WriteBackHost,
  ) {
    this.maxPages =
      options.maxDirtyBytes === undefined
        ? Infinity
        : Math.floor(options.maxDirtyBytes / host.pageSize);
    this.maxAgeMs = options.maxDirtyAgeMs ?? Infinity;
  }

  /** Pages were made GPU-dirty by a write being acknowledged now. */
  dirtied(pages: readonly number[]): void {
    if (this.stopped) return;
    const now = performance.now();
    for (const page of pages) if (!this.since.has(page)) this.since.set(page, now);
    if (this.running) this.again = true;
    else this.schedule(0);
  }

  /** Stops for good (detach, device loss): no pass starts after this. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    const due = performance.now() + ms;
    if (this.timer !== undefined && this.due <= due) return;
    clearTimeout(this.timer);
    this.due = due;
    this.timer = setTimeout(() => void this.pass(), ms);
  }

  private async pass(): Promise<void> {
    this.timer = undefined;
    this.due = Infinity;
    if (this.stopped) return;
    this.running = true;
    this.again = false;
    let retryMs = Infinity;
    try {
      const { chosen, skipped, nextDue } = this.choose(performance.now());
      if (skipped) retryMs = HELD_RETRY_MS;
      if (nextDue < Infinity) retryMs = Math.min(retryMs, Math.max(0, nextDue - performance.now()));
      if (chosen.length > 0) {
        try {
          await this.host.writeBack(runsOf(chosen));
          for (const page of chosen) if (!this.host.isDirty(page)) this.since.delete(page);
        } catch {
          // A device loss ends write-back through stop(); anything else: try again later.
          retryMs = Math.min(retryMs, FAILED_RETRY_MS);
        }
      }
    } finally {
      this.running = false;
    }
    if (this.again) retryMs = 0;
    if (retryMs < Infinity) this.schedule(retryMs);
  }

  /**
   * The pages to write back now: every page older than maxDirtyAgeMs, and
   * the oldest beyond maxDirtyBytes, none a run holds; forgets pages no
   * longer dirty.
   */
  private choose(now: number): { chosen: number[]; skipped: boolean; nextDue: number } {
    for (const page of [...this.since.keys()]) {
      if (!this.host.isDirty(page)) this.since.delete(page);
    }
    let excess = this.since.size - this.maxPages;
    const chosen: number[] = [];
    let skipped = false;
    let nextDue = Infinity;
    for (const [page, dirtiedAt] of this.since) {
      const old = now - dirtiedAt >= this.maxAgeMs;
      if (!old && excess <= 0) {
        nextDue = Math.min(nextDue, dirtiedAt + this.maxAgeMs);
        continue;
      }
      if (this.host.isHeld(page)) {
        skipped = true;
        continue;
      }
      chosen.push(page);
      excess--;
    }
    return { chosen, skipped, nextDue };
  }
}
