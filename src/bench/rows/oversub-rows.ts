/**
 * Oversubscription rows (docs/benchmarks.md): working sets larger than the
 * budget, streamed in chunks with `uses` (with and without prefetching the
 * next chunk) and touched at random in fault mode, against the same work
 * with a budget that holds it all (or, for prefetch, without prefetch).
 */
import type { GpuMirror } from '../../mirror/gpu-mirror.ts';
import type { BenchContext, BenchRow, RowTrials, Trial } from '../bench-types.ts';
import { median, randomDistinct } from '../statistics.ts';
import { mirroredSpace } from './mirrored-space.ts';

const MiB = 1 << 20;
const PAGE = 64 << 10;
/** Words each invocation of the stream kernel updates. */
const WORDS_PER_INVOCATION = 16;

/** x[i] = x[i] * 3 + 1 over the bound range, WORDS_PER_INVOCATION words an invocation. */
const STREAM = /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  for (var k = 0u; k < ${WORDS_PER_INVOCATION}u; k++) {
    let i = id.x * ${WORDS_PER_INVOCATION}u + k;
    if (i >= x_len()) { return; }
    x_store_u32(i, x_load_u32(i) * 3u + 1u);
  }
}`;

/** What a mirror moved: evictions and bytes each way, for per-pass notes. */
function moved(gpu: GpuMirror): { evictions: number; toCpu: number; toGpu: number } {
  const stats = gpu.stats();
  return { evictions: stats.evictions, toCpu: stats.bytesToCpu, toGpu: stats.bytesToGpu };
}

/**
 * A space of `bytes` of data mirrored with `budget`, and a pass of the
 * stream kernel over it in chunks. 'ahead': the next chunk is prefetched as
 * each run is called (one ahead), and the run after it finds its pages
 * resident or waits for them (the prefetches are awaited at the end of the
 * pass). 'discard': each chunk is discarded once its run is done (scratch
 * data), so eviction takes its frames with no write-back.
 */
async function streamSide(
  context: BenchContext,
  bytes: number,
  budget: number,
  chunk: number,
  mode: 'plain' | 'ahead' | 'discard' = 'plain',
) {
  const ahead = mode === 'ahead';
  const { space, gpu } = await mirroredSpace(context, bytes + PAGE, PAGE, 'auto', budget);
  const va = space.alloc(bytes);
  space.access(va, bytes, 'write', (lease) => lease.u32.forEach((_, i, a) => (a[i] = i)));
  const kernel = gpu.kernel({ code: STREAM, ranges: { x: 'readwrite' } });
  const workgroups = Math.ceil(chunk / 4 / WORDS_PER_INVOCATION / 64);
  const pass = async (): Promise<void> => {
    const prefetches = ahead ? [gpu.prefetch(va, chunk, 'gpu')] : [];
    for (let at = 0; at < bytes; at += chunk) {
      if (ahead && at + chunk < bytes) prefetches.push(gpu.prefetch(va + at + chunk, chunk, 'gpu'));
      await kernel.run({ workgroups, uses: [{ name: 'x', va: va + at, len: chunk }] });
      if (mode === 'discard') space.discard(va + at, chunk);
    }
    await Promise.all(prefetches);
  };
  return { gpu, pass };
}

/** GB/s of one `pass` over `bytes`. */
function throughput(pass: () => Promise<void>, bytes: number): Trial {
  return async () => {
    const started = performance.now();
    await pass();
    return bytes / 1e9 / ((performance.now() - started) / 1000);
  };
}

/**
 * `oversub.stream` and its sweep: a kernel reads and writes `factor` times
 * the budget in chunks of budget / 4 with `uses`, against the same kernel
 * and chunks with a budget that holds the data (resident after warm-up).
 */
function oversubStream(name: string, factor: number): BenchRow {
  return {
    name,
    unit: 'GB/s',
    better: 'higher',
    baselineName: 'the same kernel and chunks with the data resident',
    async setup(context): Promise<RowTrials> {
      const budget = context.quick ? 16 * MiB : 64 * MiB;
      const bytes = Math.round((budget * factor) / PAGE) * PAGE;
      const chunk = budget / 4;
      const over = await streamSide(context, bytes, budget, chunk);
      const fits = await streamSide(context, bytes, bytes + 2 * MiB, chunk);
      const before = moved(over.gpu);
      let passes = 0;
      const counted = async (): Promise<void> => {
        await over.pass();
        passes++;
      };
      return {
        value: throughput(counted, bytes),
        baseline: throughput(fits.pass, bytes),
        notes: () => {
          const after = moved(over.gpu);
          const per = (n: number) => Math.round(n / Math.max(1, passes));
          return {
            factor,
            budgetMiB: budget / MiB,
            dataMiB: bytes / MiB,
            evictionsPerPass: per(after.evictions - before.evictions),
            writtenBackMiBPerPass: per(after.toCpu - before.toCpu) / MiB,
            uploadedMiBPerPass: per(after.toGpu - before.toGpu) / MiB,
          };
        },
        teardown: async () => {
          await over.gpu.detach();
          await fits.gpu.detach();
        },
      };
    },
  };
}

/**
 * `prefetch.stream`: the `oversub.stream` loop (2x the budget, chunks of
 * budget / 4) with each chunk prefetched while the run before it works,
 * against the same loop without prefetch calls (the runs' `uses` migrate).
 */
const prefetchStream: BenchRow = {
  name: 'prefetch.stream',
  unit: 'ms',
  better: 'lower',
  baselineName: 'the same loop without prefetch calls',
  async setup(context): Promise<RowTrials> {
    const budget = context.quick ? 16 * MiB : 64 * MiB;
    const bytes = 2 * budget;
    const chunk = budget / 4;
    const ahead = await streamSide(context, bytes, budget, chunk, 'ahead');
    const plain = await streamSide(context, bytes, budget, chunk);
    // The kernels alone, the data resident: what is left when no transfer shows.
    const resident = await streamSide(context, bytes, bytes + 2 * MiB, chunk);
    const residentMs = await timedMedian(resident.pass, 3);
    await resident.gpu.detach();
    const spent = { ahead: [] as number[], plain: [] as number[] };
    const timed = (pass: () => Promise<void>, into: number[]): Trial => {
      const trial = timedPass(pass);
      return async () => {
        const ms = await trial();
        into.push(ms);
        return ms;
      };
    };
    return {
      value: timed(ahead.pass, spent.ahead),
      baseline: timed(plain.pass, spent.plain),
      notes: () => {
        const stats = ahead.gpu.stats();
        const [aheadMs, plainMs] = [median(spent.ahead), median(spent.plain)];
        return {
          budgetMiB: budget / MiB,
          dataMiB: bytes / MiB,
          residentMs: Math.round(residentMs),
          // The share of the transfers' time (plain less resident) the prefetches hid.
          hidden: (plainMs - aheadMs) / Math.max(1e-9, plainMs - residentMs),
          prefetchHits: stats.prefetchHits,
          ignoredHints: stats.ignoredHints,
          evictions: stats.evictions,
        };
      },
      teardown: async () => {
        await ahead.gpu.detach();
        await plain.gpu.detach();
      },
    };
  },
};

/** The median ms of `count` runs of `pass`, after one untimed. */
async function timedMedian(pass: () => Promise<void>, count: number): Promise<number> {
  await pass();
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    await pass();
    times.push(performance.now() - started);
  }
  return median(times);
}

/** The ms of one `pass`. */
function timedPass(pass: () => Promise<void>): Trial {
  return async () => {
    const started = performance.now();
    await pass();
    return performance.now() - started;
  };
}

/**
 * `oversub.discard`: the `oversub.stream` loop with each chunk discarded
 * once its run is done (scratch data: no write-back when its frames go),
 * against the same loop keeping the data (its dirty chunks written back).
 */
const oversubDiscard: BenchRow = {
  name: 'oversub.discard',
  unit: 'ms',
  better: 'lower',
  baselineName: 'the same loop keeping the data',
  async setup(context): Promise<RowTrials> {
    const budget = context.quick ? 16 * MiB : 64 * MiB;
    const bytes = 2 * budget;
    const scratch = await streamSide(context, bytes, budget, budget / 4, 'discard');
    const kept = await streamSide(context, bytes, budget, budget / 4);
    const writtenBack = { scratch: 0, kept: 0 };
    const counted = (side: typeof kept, key: keyof typeof writtenBack): Trial => {
      const trial = timedPass(side.pass);
      return async () => {
        const before = side.gpu.stats().writebacks;
        const ms = await trial();
        writtenBack[key] = side.gpu.stats().writebacks - before;
        return ms;
      };
    };
    return {
      value: counted(scratch, 'scratch'),
      baseline: counted(kept, 'kept'),
      notes: () => ({
        budgetMiB: budget / MiB,
        dataMiB: bytes / MiB,
        pagesWrittenBackPerPass: writtenBack.scratch,
        baselinePagesWrittenBackPerPass: writtenBack.kept,
      }),
      teardown: async () => {
        await scratch.gpu.detach();
        await kept.gpu.detach();
      },
    };
  },
};

// ---- fault mode at random ----

/** Pages each fault-mode run touches. */
const TOUCHED = 16;
/** Runs per trial. */
const RUNS = 10;

/** Adds 1 to the first word of each of TOUCHED pages given by index from `base`; no uses (fault mode). */
const TOUCH = /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x >= ${TOUCHED}u) { return; }
  let pages = array<u32, ${TOUCHED}>(${Array.from({ length: TOUCHED }, (_, i) => `hmm_params.p${i}`).join(', ')});
  let va = hmm_params.base + pages[id.x] * ${PAGE}u;
  hmm_store_u32(va, hmm_load_u32(va) + 1u);
}`;

const TOUCH_PARAMS = Object.fromEntries([
  ['base', 'u32'],
  ...Array.from({ length: TOUCHED }, (_, i) => [`p${i}`, 'u32']),
]) as Record<string, 'u32'>;

/** A region of `bytes` mirrored with `budget`, and a trial of RUNS fault-mode runs at random pages. */
async function randomSide(context: BenchContext, bytes: number, budget: number) {
  const { space, gpu } = await mirroredSpace(context, bytes + PAGE, PAGE, 'auto', budget);
  const base = space.alloc(bytes);
  const kernel = gpu.kernel({ code: TOUCH, params: TOUCH_PARAMS });
  const pages = bytes / PAGE;
  let replays = 0;
  const trial: Trial = async () => {
    const started = performance.now();
    for (let run = 0; run < RUNS; run++) {
      const picked = randomDistinct(pages, TOUCHED);
      const params = Object.fromEntries([
        ['base', base],
        ...picked.map((page, i) => [`p${i}`, page]),
      ]) as Record<string, number>;
      replays += (await kernel.run({ workgroups: 1, params })).replays;
    }
    return performance.now() - started;
  };
  return { gpu, trial, replays: () => replays };
}

/**
 * `oversub.random`: fault-mode runs, each touching TOUCHED random pages of a
 * region twice the budget, against the same runs with the region within budget.
 */
const oversubRandom: BenchRow = {
  name: 'oversub.random',
  unit: 'ms',
  better: 'lower',
  baselineName: 'the same runs with the region within budget',
  async setup(context): Promise<RowTrials> {
    const budget = context.quick ? 16 * MiB : 64 * MiB;
    const bytes = 2 * budget;
    const over = await randomSide(context, bytes, budget);
    const fits = await randomSide(context, bytes, bytes + 2 * MiB);
    return {
      value: over.trial,
      baseline: fits.trial,
      notes: () => ({
        runsPerTrial: RUNS,
        pagesPerRun: TOUCHED,
        replays: over.replays(),
        baselineReplays: fits.replays(),
        evictions: over.gpu.stats().evictions,
      }),
      teardown: async () => {
        await over.gpu.detach();
        await fits.gpu.detach();
      },
    };
  },
};

export const oversubRows: readonly BenchRow[] = [
  oversubStream('oversub.stream', 2),
  oversubStream('oversub.stream.1.5x', 1.5),
  oversubStream('oversub.stream.4x', 4),
  prefetchStream,
  oversubDiscard,
  oversubRandom,
];
