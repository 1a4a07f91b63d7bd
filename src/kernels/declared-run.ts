/**
 * Runs with `uses`: the kernel declares the ranges it touches, and the run
 *
 * - merges them into disjoint page runs, each with the union of the USE_*
 *   bits of the ranges covering it;
 * - holds those runs exclusively, at the call when no other run is queued
 *   (so a CPU write made after `run()` was called waits for the kernel),
 *   otherwise when the run starts;
 * - checks protections before anything moves (AccessError 'unmapped',
 *   'freed' or 'protection' naming the first such page), then makes read
 *   runs resident (`zero`/`cpu` -> `shared`) and write runs GPU-owned
 *   (-> `gpu`) in one batch;
 * - lets CPU readers join the runs it only reads, reconciles the device
 *   entries of the declared pages by sequence number, and runs one pass in
 *   which stores land only in the pages of the write runs (prelude.ts);
 * - marks dirty only the pages the kernel stored to (prelude.ts). An access outside the
 *   declared runs, or a store through a read translation, fails the run with
 *   AccessError 'undeclared' (run-error.ts).
 *
 * Partial progress on failure: pages fetched stay fetched; stores that
 * landed stay (and their pages are dirty); every hold is released.
 */
import { nonNegativeInteger, positiveInteger } from '../arguments.ts';
import { InvalidArgumentError, invariant, OutOfMemoryError } from '../errors.ts';
import type { MirrorHost } from '../gpu/mirror-host.ts';
import type { MigrationResult } from '../gpu/migration.ts';
import type { InvalidateEvent } from '../space/notifier.ts';
import { runEnd, runsOf, type PageRun } from '../space/page-run.ts';
import type { SpaceInternals } from '../space/internals.ts';
import type { HoldKind } from '../space/page-lock.ts';
import type { Hold, PageTable } from '../space/page-table.ts';
import { WaitBudget } from '../space/waiting.ts';
import { assertAccess } from '../space/pte.ts';
import { dirtyPages } from './bitmaps.ts';
import { USE_WORDS, USE_WRITE } from './kernel-layout.ts';
import type { KernelUse, NamedUse, RunCounts } from './kernel-options.ts';
import {
  ACCESS_BITS,
  boundRanges,
  checkedNamedUse,
  isNamedUse,
  type BoundRange,
  type RangeList,
} from './named-ranges.ts';
import {
  passStageBytes,
  type BatchDispatch,
  type KernelRuntime,
  type Submitted,
} from './kernel-runtime.ts';
import type { RunBatch } from './run-batch.ts';
import { passFailed, runError } from './run-error.ts';

/** A declared run of pages with its USE_* bits. */
export interface UseRun extends PageRun {
  readonly access: number;
}

/** A run's declared pages, its named ranges, and the holds of the pages it could take at the call. */
export interface DeclaredUses {
  /** Disjoint, ascending. */
  readonly runs: readonly UseRun[];
  /** The kernel's named ranges as this run bound them, in declaration order. */
  readonly bound: readonly BoundRange[];
  /** Exclusive holds of `runs`, index for index, taken at the call; undefined if they could not be. */
  readonly early: Hold[] | undefined;
}

/**
 * The declared runs of `uses`, held at once when the runtime is idle and
 * they are free: an earlier queued run might need them first.
 * @param ranges the kernel's named ranges: `uses` must bind each
 * @throws as declaredRuns and boundRanges do
 */
export function declareUses(
  runtime: KernelRuntime,
  uses: readonly (KernelUse | NamedUse)[],
  ranges: RangeList,
): DeclaredUses {
  const { space } = runtime.host;
  const named = new Map<string, BoundRange>();
  const runs = declaredRuns(space, uses, ranges, named);
  const bound = boundRanges(ranges, named);
  assertOutsideScopes(space, runs);
  runtime.host.migrator.frameBudget.admit(
    runs,
    'run the kernel over chunks whose uses fit the budget',
  );
  const holds = holdsOf(runs, 'exclusive-long');
  const taken =
    runtime.idle &&
    space.table.holdsFit(holds.length) &&
    space.table.tryHoldAll(holds) === undefined;
  return { runs, bound, early: taken ? holds : undefined };
}

/**
 * A run on pages its own thread holds in a scope would wait for the scope,
 * which waits for it.
 * @throws WouldBlockError 'reentrant' at the first such run
 */
export function assertOutsideScopes(space: SpaceInternals, runs: readonly PageRun[]): void {
  for (const run of runs)
    space.assertNotInScope(run.first, run.count, space.table.address(run.first));
}

/**
 * The pages of `uses` as disjoint, ascending page runs, each page with the
 * union of the USE_* bits of the uses covering it; neighbouring pages with
 * the same bits share a run.
 * A use with a `name` binds a named range of `ranges` (checkedNamedUse).
 * @throws InvalidArgumentError naming the use (argument 'uses', 'uses[i]',
 *   'uses[i].va', '.len', '.access' or '.name'): 'bad-value' for uses that are not
 *   an array, a use that is not an object, an access other than 'read',
 *   'write', 'readwrite'; 'not-integer' or 'negative' for `va`;
 *   'not-integer', 'negative' or 'zero' for `len`; as checkedNamedUse for
 *   named uses. AccessError 'out-of-range' for a range past the end of the space.
 */
export function declaredRuns(
  space: SpaceInternals,
  uses: readonly (KernelUse | NamedUse)[],
  ranges: RangeList = [],
  bound = new Map<string, BoundRange>(),
): UseRun[] {
  const given: unknown = uses;
  if (!Array.isArray(given)) {
    throw new InvalidArgumentError('uses', given, 'bad-value', 'an array of { va, len, access }');
  }
  const access = new Map<number, number>();
  // Each use and each of its fields is read once: what is checked is what is held.
  for (let i = 0; i < given.length; i++) {
    const use: unknown = given[i];
    const name = `uses[${i}]`;
    const { va, len, bits } = isNamedUse(use)
      ? checkedNamedUse(name, use as Record<string, unknown>, ranges, bound)
      : checkedUse(name, use);
    const { first, count } = space.pageSpan(va, len);
    for (let page = first; page < first + count; page++)
      access.set(page, (access.get(page) ?? 0) | bits);
  }
  const byBits = new Map<number, number[]>();
  for (const [page, bits] of access) {
    const pages = byBits.get(bits);
    if (pages) pages.push(page);
    else byBits.set(bits, [page]);
  }
  const runs: UseRun[] = [];
  for (const [bits, pages] of byBits) {
    for (const run of runsOf(pages)) runs.push({ ...run, access: bits });
  }
  return runs.sort((a, b) => a.first - b.first);
}

/** A use's range and USE_* bits, checked. @throws as declaredRuns does */
function checkedUse(name: string, use: unknown): { va: number; len: number; bits: number } {
  if (typeof use !== 'object' || use === null) {
    throw new InvalidArgumentError(name, use, 'bad-value', 'a { va, len, access } object');
  }
  const { va, len, access } = use as Record<string, unknown>;
  nonNegativeInteger(`${name}.va`, va);
  positiveInteger(`${name}.len`, len);
  const bits = typeof access === 'string' ? ACCESS_BITS[access] : undefined;
  if (bits === undefined) {
    throw new InvalidArgumentError(
      `${name}.access`,
      access,
      'bad-value',
      "'read', 'write' or 'readwrite'",
    );
  }
  return { va, len, bits };
}

/**
 * Checks that every declared page is mapped and that its protection allows
 * the declared access (a run declared with USE_WRITE needs 'rw').
 * @throws AccessError 'unmapped', 'freed' or 'protection' at the first such page
 */
export function checkProtections(table: PageTable, runs: readonly UseRun[]): void {
  for (const run of runs) {
    const need = run.access & USE_WRITE ? 'write' : 'read';
    for (let page = run.first; page < runEnd(run); page++) {
      assertAccess(table.pte(page), need, table.address(page), 'a kernel');
    }
  }
}

/**
 * A run with `uses`, submitted into the open batch: holds what it needs
 * (joining the batch's holds where it may, see `admit`; `declared.early`
 * holds already), checks, fetches, lets CPU readers join the pages it only
 * reads, and submits its one pass. It completes with its batch: then what
 * it stored to is marked dirty, and the batch releases the holds and
 * announces the invalidations the fetches caused.
 *
 * A run waits for the open batch to complete first (and then holds as a run
 * alone would, waiting for any holder) when it cannot join: a page the batch
 * holds as a device read that it writes, a page a CPU call waits for, a page
 * someone else holds, a hold journal that is full, or frames the budget can
 * only give once the batch's pages are free (OutOfMemoryError 'budget').
 * @throws AccessError (protection) before its pass; its completion rejects
 *   with AccessError for an access the pass made outside its uses
 */
export async function submitDeclared(
  runtime: KernelRuntime,
  dispatch: BatchDispatch,
  declared: DeclaredUses,
): Promise<Submitted<RunCounts>> {
  const { table } = runtime.host.space;
  let early = declared.early;
  if (!early) {
    // A queued run: its thread may have opened a scope on the pages since run().
    assertOutsideScopes(runtime.host.space, declared.runs);
  }
  const uses = usesTable(declared.runs);
  const stageBytes = passStageBytes(dispatch.params, uses);
  // One wait budget for the run: its holds and its waits for frames.
  const { limits } = runtime.host.space;
  const budget = new WaitBudget(limits, table.address(declared.runs[0]?.first ?? 0));
  for (let alone = false; ; alone = true) {
    const batch = runtime.openBatch(stageBytes);
    const taken = early
      ? { holds: early, access: declared.runs.map((run) => run.access) }
      : await admit(table, batch, declared.runs, alone, budget);
    early = undefined;
    if (!taken) {
      await runtime.drain();
      continue;
    }
    try {
      const submit = () => dispatch.submit(batch, uses);
      return await submitHeld(runtime, submit, declared, { batch, taken, budget });
    } catch (error) {
      table.releaseHolds(taken.holds);
      if (!(error instanceof OutOfMemoryError && error.reason === 'budget') || batch.size === 0) {
        throw error;
      }
      await runtime.drain(); // the frames may be the batch's
    }
  }
}

/** Holds a run took itself, each with the USE_* bits of the run it is part of. */
interface Taken {
  holds: Hold[];
  readonly access: readonly number[];
}

/**
 * The holds `runs` need beyond those `batch` has, taken: undefined when the
 * run cannot join the batch (see submitDeclared). Alone (an empty batch),
 * it waits for holders as any run does.
 */
async function admit(
  table: PageTable,
  batch: RunBatch,
  runs: readonly UseRun[],
  alone: boolean,
  budget: WaitBudget,
): Promise<Taken | undefined> {
  const holds: Hold[] = [];
  const access: number[] = [];
  for (const run of runs) {
    const write = (run.access & USE_WRITE) !== 0;
    let first = -1;
    for (let page = run.first; page <= runEnd(run); page++) {
      const held = page < runEnd(run) ? batch.heldAs(page) : 'end';
      if (held === undefined) {
        if (first < 0) first = page;
        continue;
      }
      if (first >= 0) {
        holds.push({ first, count: page - first, kind: 'exclusive-long' });
        access.push(run.access);
        first = -1;
      }
      if (held === 'end') continue;
      if ((write && held !== 'exclusive-long') || table.cpuWaiting(page)) return undefined;
    }
  }
  if (batch.size === 0 || alone) {
    // Batches still completing may fill this thread's hold journal: wait for them first.
    if (!alone && !table.holdsFit(holds.length)) return undefined;
    await table.holdAsync(holds, table.address(runs[0]?.first ?? 0), budget);
    return { holds, access };
  }
  if (!table.holdsFit(holds.length) || table.tryHoldAll(holds)) return undefined;
  return { holds, access };
}

/** The rest of submitDeclared, its holds taken within its wait budget. */
async function submitHeld(
  runtime: KernelRuntime,
  dispatch: () => void,
  declared: DeclaredUses,
  { batch, taken, budget }: { batch: RunBatch; taken: Taken; budget: WaitBudget },
): Promise<Submitted<RunCounts>> {
  const { host } = runtime;
  const { table } = host.space;
  const { runs, bound } = declared;
  const events: InvalidateEvent[] = [];
  try {
    host.space.pollNotices();
    checkProtections(table, runs);
    // Alone, a run waits for frames others hold; in a batch it fails, and waits for the batch instead.
    const fetched = await fetchDeclared(host, runs, events, batch.size === 0, budget);
    // The kernel only reads these: CPU readers may join while it runs.
    const written = (i: number) => ((taken.access[i] ?? 0) & USE_WRITE) !== 0;
    taken.holds = [
      ...table.downgradeHolds(taken.holds.filter((_, i) => !written(i))),
      ...taken.holds.filter((_, i) => written(i)),
    ];
    // Every entry the pass can reach, reconciled by sequence number (gpu/frame-map.ts).
    host.migrator.frameMap.reconcileRuns(runs);
    // Passes encoded before this one read the table as it was: submit them
    // before its entries change (a free or protect since may have changed them).
    host.beforeGpuUse(() => batch.submitEncoded());
    // The entries the pass will see are installed: a protect or free since
    // the fetch (neither waits for the device) fails the run here, before it.
    checkProtections(table, runs);
    dispatch();
    const completion = batch.add(taken.holds, events, (status) => {
      const failed = passFailed(status);
      let dirty: number[] = [];
      if (status.stored || failed || status.faulted) {
        dirty = dirtyPages(status.bits);
        host.migrator.markDirty(dirty);
      }
      if (failed) throw runError(host, status, runs, dirty, bound);
      // Every entry the pass saw allowed its declared access (checked above).
      invariant(!status.faulted, 'a declared pass faulted on entries checked before it');
      return {
        replays: 0,
        gpuFaults: fetched.pages,
        bytesToGpu: fetched.bytes,
        pagesWritten: dirty.length,
      };
    });
    return { completion };
  } catch (error) {
    host.space.announce(events);
    throw error;
  }
}

/** Makes read runs `shared` and write runs `gpu`, in one batch, with frames for all of them first, and counts the fetch. */
async function fetchDeclared(
  host: MirrorHost,
  runs: readonly UseRun[],
  events: InvalidateEvent[],
  waitForFrames: boolean,
  budget: WaitBudget,
): Promise<MigrationResult> {
  const reads = runs.filter((run) => !(run.access & USE_WRITE));
  const writes = runs.filter((run) => run.access & USE_WRITE);
  const started = performance.now();
  const { migrator } = host;
  await migrator.frameBudget.makeRoom(runs, { wait: waitForFrames, budget });
  // The pass is submitted after the uploads, so it need not wait for them.
  const how = { purpose: 'run', budget, wait: waitForFrames } as const;
  const read = await migrator.makeResident(reads, 'shared', events, how);
  const written = await migrator.makeResident(writes, 'gpu', events, how);
  const fetched = { pages: read.pages + written.pages, bytes: read.bytes + written.bytes };
  host.migrator.countFetch(fetched.pages, runs, fetched, started);
  return fetched;
}

/** A run's uses as a table: USE_WORDS u32 per run, [first, end, USE_*, 0] (what declarePages puts in the page table). */
export function usesTable(runs: readonly UseRun[]): Uint32Array<ArrayBuffer> {
  const table = new Uint32Array(runs.length * USE_WORDS);
  runs.forEach((run, i) => table.set([run.first, runEnd(run), run.access, 0], i * USE_WORDS));
  return table;
}

/** Holds of `runs`, index for index. */
function holdsOf(runs: readonly PageRun[], kind: HoldKind): Hold[] {
  return runs.map((run) => ({ first: run.first, count: run.count, kind }));
}
