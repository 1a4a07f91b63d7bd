/**
 * What a migration moved, counted and traced: the counters by direction and
 * cause, and one trace event per batch (mirror-stats.ts), so users see why
 * memory moved.
 */
import type { PageRun } from '../space/page-run.ts';
import type { MigrationCause, MirrorCounters, TraceEvent } from './mirror-stats.ts';

/** Pages and bytes a migration moved. */
export interface Moved {
  readonly pages: number;
  readonly bytes: number;
}

export interface AccountingContext {
  readonly counters: MirrorCounters;
  readonly emit: (event: TraceEvent) => void;
  readonly pageSize: number;
}

/** One migration to count: its direction, cause, the runs it was for, what it moved, when it started. */
export interface MigrationRecord {
  readonly to: 'gpu' | 'cpu';
  readonly cause: MigrationCause;
  readonly runs: readonly PageRun[];
  readonly moved: Moved;
  readonly started: number;
}

/** Counts a migration and traces it. */
export function accountMigration(
  ctx: AccountingContext,
  { to, cause, runs, moved, started }: MigrationRecord,
): void {
  const { counters, pageSize } = ctx;
  if (to === 'gpu') {
    counters.pagesToGpu += moved.pages;
    counters.bytesToGpu += moved.bytes;
  } else {
    counters.pagesToCpu += moved.pages;
    counters.bytesToCpu += moved.bytes;
  }
  counters.bytesByCause[cause] += moved.bytes;
  const first = runs[0]?.first ?? 0;
  const last = runs[runs.length - 1];
  const end = last ? last.first + last.count : first;
  ctx.emit({
    t: started,
    kind: 'migration',
    cause,
    to,
    va: first * pageSize,
    len: (end - first) * pageSize,
    pages: moved.pages,
    bytes: moved.bytes,
    ms: performance.now() - started,
  });
}
