/**
 * The frame budget as migrations meet it: planning which held pages need
 * new frames (migration-plan.ts), refusing calls that could never fit, and
 * getting frames from eviction (eviction.ts) when the pool has too few.
 *
 * Guarantees:
 * - A call that needs more pages resident at once than the budget has
 *   frames is refused before anything moves (OutOfMemoryError 'budget'
 *   naming both numbers): `admit`.
 * - Otherwise a plan only fails for the budget when eviction could not free
 *   frames from pages no one holds (eviction.ts says when it waits).
 * - Every page planned counts as used now, for eviction's order.
 */
import { OutOfMemoryError } from '../errors.ts';
import type { PageRun } from '../space/page-run.ts';
import type { WaitBudget } from '../space/waiting.ts';
import type { Evictor } from './eviction.ts';
import type { FrameMap } from './frame-map.ts';
import type { FramePool } from './frame-pool.ts';
import {
  framesNeeded,
  planResidency,
  type Overwrite,
  type PagePlan,
  type PlanView,
} from './migration-plan.ts';

/**
 * How `makeRoom` and `withRoom` go about it: what the plan overwrites
 * (`overwrite`), the call's wait budget (`budget`), whether to wait for
 * holders of frames (`wait`, default true), pages eviction must leave
 * (`own`, default the runs), and whether it is a prefetch's (`prefetch`:
 * the pages are brought, not used).
 */
export interface RoomHow {
  readonly overwrite?: Overwrite | undefined;
  readonly budget?: WaitBudget | undefined;
  readonly wait?: boolean | undefined;
  readonly own?: readonly PageRun[] | undefined;
  readonly prefetch?: boolean | undefined;
}

/** Times `withRoom` makes room before it gives up to others that keep taking the frames. */
const ROOM_TRIES = 8;

export class FrameBudget {
  private readonly pageSize: number;

  constructor(
    private readonly view: PlanView,
    private readonly frameMap: FrameMap,
    private readonly pool: FramePool,
    readonly evictor: Evictor,
  ) {
    this.pageSize = view.pageSize;
  }

  /**
   * Refuses, before anything moves, a call that needs more pages resident at
   * once than the budget has frames.
   * @throws OutOfMemoryError 'budget' naming both
   */
  admit(runs: readonly PageRun[], hint = 'migrate the range in parts of at most the budget'): void {
    const pages = runs.reduce((sum, run) => sum + run.count, 0);
    const { capacity } = this.pool;
    if (pages <= capacity) return;
    throw new OutOfMemoryError(
      'budget',
      pages * this.pageSize,
      capacity * this.pageSize,
      `${pages} pages of ${this.pageSize} bytes must be resident at once and the budget holds ${capacity}; ${hint}`,
    );
  }

  /**
   * Frames for every page of held `runs` that lacks one, evicting pages no
   * one holds when the pool has too few; the pages count as used now (for
   * a `prefetch`, as brought: no prefetch hits). `how.wait`: wait for other
   * holders to let go of frames (eviction.ts), within `how.budget`, the
   * call's wait budget. `how.own`: pages eviction must leave (default `runs`).
   * @throws OutOfMemoryError 'budget' when they cannot be had; nothing moved
   */
  async makeRoom(runs: readonly PageRun[], how: RoomHow = {}): Promise<void> {
    const { wait = true, budget, own = runs, prefetch = false } = how;
    this.evictor.touch(runs, !prefetch);
    const needed = framesNeeded(this.planFrom(runs));
    if (needed > this.pool.available) await this.evictor.makeRoom(needed, own, wait, budget);
  }

  /** Records a use of `pages` (a kernel touched them) for eviction's order. */
  touch(pages: Iterable<number>): void {
    this.evictor.touchPages(pages);
  }

  /**
   * `plan`, once `makeRoom` made room for it, handed to `use` at once:
   * `use` must take the plan's frames before it awaits anything (as
   * plan-fetch.ts does), so no other call takes them between the plan and
   * the fetch. Another call may take the frames eviction freed before this
   * one is back to plan (each await lets others run): then it makes room
   * again, a few times, within `how.budget`.
   * @throws OutOfMemoryError 'budget' as `makeRoom` and `plan`; nothing moved
   */
  async withRoom<T>(
    runs: readonly PageRun[],
    how: RoomHow,
    use: (plans: PagePlan[]) => Promise<T>,
  ): Promise<T> {
    for (let tries = 1; ; tries++) {
      await this.makeRoom(runs, how);
      const plans = this.planFrom(runs, how.overwrite);
      if (framesNeeded(plans) <= this.pool.available) return use(plans);
      if (tries >= ROOM_TRIES) throw this.refusal(framesNeeded(plans));
    }
  }

  /**
   * The plan for bringing held pages' frames up to date, checked against
   * the frames the pool has left.
   * @throws OutOfMemoryError if the new frames exceed what the pool has left; plans nothing then
   */
  plan(runs: readonly PageRun[], overwrite?: Overwrite): PagePlan[] {
    const plans = this.planFrom(runs, overwrite);
    const needed = framesNeeded(plans);
    if (needed > this.pool.available) throw this.refusal(needed);
    return plans;
  }

  private refusal(needed: number): OutOfMemoryError {
    const { pool } = this;
    return new OutOfMemoryError(
      'budget',
      needed * this.pageSize,
      pool.available * this.pageSize,
      `the migration needs ${needed} new frames of ${this.pageSize} bytes; the budget is ${pool.capacity * this.pageSize} bytes with ${pool.inUse} frames in use`,
    );
  }

  /** The plan of held pages (migration-plan.ts), after reclaiming frames their pages lost to a free. */
  private planFrom(runs: readonly PageRun[], overwrite?: Overwrite): PagePlan[] {
    this.frameMap.releaseQuarantined();
    for (const run of runs) {
      for (let page = run.first; page < run.first + run.count; page++) {
        this.frameMap.reclaimIfStale(page);
      }
    }
    return planResidency(this.view, runs, overwrite);
  }
}
