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
 * - marks dirty only the pages the kernel stored to (or translated for
 *   writing: prelude.ts). An access outside the
 *   declared runs, or a store through a read translation, fails the run with
 *   AccessError 'undeclared' (run-error.ts).
 *
 * Partial progress on failure: pages fetched stay fetched; stores that
 * landed stay (and their pages are dirty); every hold is released.
 */
import { nonNegativeInteger, positiveInteger } from '../arguments.ts';
import { InvalidArgumentError, invariant } from '../errors.ts';
import type { MirrorHost } from '../gpu/mirror-host.ts';
import type { MigrationResult } from '../gpu/migration.ts';
import type { InvalidateEvent } from '../space/notifier.ts';
import { runEnd, runsOf, type PageRun } from '../space/page-run.ts';
import type { SpaceInternals } from '../space/internals.ts';
import type { HoldKind } from '../space/page-lock.ts';
import type { Hold, PageTable } from '../space/page-table.ts';
import { assertAccess } from '../space/pte.ts';
import { dirtyPages } from './bitmaps.ts';
import { MODE_RUN, USE_WORDS, USE_WRITE } from './kernel-layout.ts';
import type { KernelUse, NamedUse, RunCounts } from './kernel-options.ts';
import {
  ACCESS_BITS,
  boundRanges,
  checkedNamedUse,
  isNamedUse,
  type BoundRange,
  type RangeList,
} from './named-ranges.ts';
import type { Dispatch, KernelRuntime } from './kernel-runtime.ts';
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
  const runs = declaredRuns(space, uses, ranges);
  const bound = boundRanges(ranges, uses);
  assertOutsideScopes(space, runs);
  const holds = holdsOf(runs, 'exclusive-long');
  const taken = runtime.idle && space.table.tryHoldAll(holds) === undefined;
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
): UseRun[] {
  const given: unknown = uses;
  if (!Array.isArray(given)) {
    throw new InvalidArgumentError('uses', given, 'bad-value', 'an array of { va, len, access }');
  }
  const access = new Map<number, number>();
  const bound = new Set<string>();
  uses.forEach((use: unknown, i) => {
    const name = `uses[${i}]`;
    const { va, len, bits } = isNamedUse(use)
      ? checkedNamedUse(name, use as Record<string, unknown>, ranges, bound)
      : checkedUse(name, use);
    const { first, count } = space.pageSpan(va, len);
    for (let page = first; page < first + count; page++)
      access.set(page, (access.get(page) ?? 0) | bits);
  });
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
 * A run with `uses`: holds (unless `declared.early` holds already), checks,
 * fetches, runs one pass and marks what it stored to dirty, then releases
 * every hold and announces the invalidations the fetches caused.
 * @throws AccessError (protection, or an access the pass made outside its uses)
 */
export async function runDeclared(
  runtime: KernelRuntime,
  dispatch: Dispatch,
  declared: DeclaredUses,
): Promise<RunCounts> {
  const { host } = runtime;
  const { runs, bound, early } = declared;
  const { table } = host.space;
  const exclusive = early ?? holdsOf(runs, 'exclusive-long');
  if (!early) {
    // A queued run: its thread may have opened a scope on the pages since run().
    assertOutsideScopes(host.space, runs);
    await table.holdAsync(exclusive, table.address(runs[0]?.first ?? 0));
  }
  let holds: Hold[] = exclusive;
  const events: InvalidateEvent[] = [];
  let dirty: number[] = [];
  let fetched: MigrationResult;
  try {
    host.space.pollNotices();
    checkProtections(table, runs);
    fetched = await fetchDeclared(host, runs, events);
    // The kernel only reads these: CPU readers may join while it runs.
    const written = (i: number) => ((runs[i]?.access ?? 0) & USE_WRITE) !== 0;
    holds = [
      ...table.downgradeHolds(exclusive.filter((_, i) => !written(i))),
      ...exclusive.filter((_, i) => written(i)),
    ];
    // Every entry the pass can reach, reconciled by sequence number (gpu/frame-map.ts).
    host.migrator.frameMap.reconcileRuns(runs);
    host.beforeGpuUse();
    // The entries the pass will see are installed: a protect or free since
    // the fetch (neither waits for the device) fails the run here, before it.
    checkProtections(table, runs);
    runtime.setUses(usesTable(runs));
    const status = await dispatch(MODE_RUN, runs.length);
    const failed = passFailed(status);
    if (status.stored || failed || status.faulted) {
      dirty = dirtyPages(status.bits);
      host.migrator.markDirty(dirty);
    }
    if (failed) throw runError(host, status, runs, dirty, bound);
    // Every entry the pass saw allowed its declared access (checked above).
    invariant(!status.faulted, 'a declared pass faulted on entries checked before it');
  } finally {
    table.releaseHolds(holds);
    host.space.announce(events);
  }
  return {
    replays: 0,
    gpuFaults: fetched.pages,
    bytesToGpu: fetched.bytes,
    pagesWritten: dirty.length,
  };
}

/** Makes read runs `shared` and write runs `gpu`, in one batch, and counts the fetch. */
async function fetchDeclared(
  host: MirrorHost,
  runs: readonly UseRun[],
  events: InvalidateEvent[],
): Promise<MigrationResult> {
  const reads = runs.filter((run) => !(run.access & USE_WRITE));
  const writes = runs.filter((run) => run.access & USE_WRITE);
  const started = performance.now();
  const read = await host.migrator.makeResident(reads, 'shared', events);
  const written = await host.migrator.makeResident(writes, 'gpu', events);
  const fetched = { pages: read.pages + written.pages, bytes: read.bytes + written.bytes };
  host.migrator.countFetch(fetched.pages, runs, fetched, started);
  return fetched;
}

/** The uses table the prelude reads: USE_WORDS u32 per run, [first, end, USE_*, 0]. */
export function usesTable(runs: readonly UseRun[]): Uint32Array<ArrayBuffer> {
  const table = new Uint32Array(runs.length * USE_WORDS);
  runs.forEach((run, i) => table.set([run.first, runEnd(run), run.access, 0], i * USE_WORDS));
  return table;
}

/** Holds of `runs`, index for index. */
function holdsOf(runs: readonly PageRun[], kind: HoldKind): Hold[] {
  return runs.map((run) => ({ first: run.first, count: run.count, kind }));
}
