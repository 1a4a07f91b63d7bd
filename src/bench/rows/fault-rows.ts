/**
 * CPU fault rows (docs/benchmarks.md): how long a worker waits for a GPU-dirty page,
 * and how many pages per second come back while 8 workers fault at once,
 * against the raw readback round trip of one page.
 */
import { Threads } from '../../threads/threads.ts';
import type { BenchContext, BenchRow, RowTrials, Trial } from '../bench-types.ts';
import type { FaultThreadApi } from '../fault-thread.worker.ts';
import { median } from '../statistics.ts';
import { mirroredSpace } from './mirrored-space.ts';

const KiB = 1 << 10;
const PAGE = 4 * KiB;
/** One faulting page per this many: its neighbours are not on the GPU, so no fault-around. */
const SPACING = 64;

async function setup(context: BenchContext, bytes: number, threads: number) {
  const { space, gpu } = await mirroredSpace(context, bytes, PAGE);
  const workers = await Threads.spawn<FaultThreadApi>(
    space,
    new URL('../fault-thread.worker.ts', import.meta.url),
    threads,
  );
  const va = space.alloc(bytes);
  return { space, gpu, workers, va };
}

/** The `q` quantile (0-1) of `values`. */
function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

/** One raw round trip of a 4 KiB page: copy into a mapped buffer, mapAsync, copy out; ms each. */
function rawRoundTrips(device: GPUDevice, source: GPUBuffer, count: number) {
  const staging = device.createBuffer({
    label: 'bench fault round trip',
    size: PAGE,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const target = new Uint8Array(PAGE);
  const run = async (): Promise<number[]> => {
    const times: number[] = [];
    for (let i = 0; i < count; i++) {
      const started = performance.now();
      const encoder = device.createCommandEncoder();
      encoder.copyBufferToBuffer(source, ((i * SPACING) % 256) * PAGE, staging, 0, PAGE);
      device.queue.submit([encoder.finish()]);
      await staging.mapAsync(GPUMapMode.READ);
      target.set(new Uint8Array(staging.getMappedRange()));
      staging.unmap();
      times.push(performance.now() - started);
    }
    return times;
  };
  return { run, destroy: () => staging.destroy() };
}

function latency(name: string, q: number): BenchRow {
  return {
    name,
    unit: 'ms',
    better: 'lower',
    baselineName: 'raw 4 KiB copy + mapAsync round trip',
    async setup(context): Promise<RowTrials> {
      const faults = context.quick ? 64 : 256;
      const bytes = faults * SPACING * PAGE;
      const { gpu, workers, va } = await setup(context, bytes, 1);
      const [worker] = workers.workers;
      if (!worker) throw new Error('no worker');
      const vas = Array.from({ length: faults }, (_, i) => va + i * SPACING * PAGE);
      const dirty = new Uint8Array(PAGE).fill(7);
      const raw = context.device.createBuffer({
        label: 'bench fault source',
        size: 256 * PAGE,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
      });
      const trips = rawRoundTrips(context.device, raw, faults);
      const value: Trial = async () => {
        for (const page of vas) await gpu.write(page, dirty); // GPU-dirty, alone (untimed)
        return quantile(await worker.timeReads(vas), q);
      };
      return {
        value,
        baseline: async () => quantile(await trips.run(), q),
        notes: () => ({ faults, readbacksAllTrials: gpu.stats().readbacks }),
        teardown: async () => {
          await workers.terminate();
          await gpu.detach();
          trips.destroy();
          raw.destroy();
        },
      };
    },
  };
}

const throughput: BenchRow = {
  name: 'fault.cpu.throughput',
  unit: 'pages/s',
  better: 'higher',
  baselineName: 'one page per raw round trip',
  async setup(context): Promise<RowTrials> {
    const threads = 8;
    const perThread = context.quick ? 256 : 1024;
    const bytes = threads * perThread * PAGE;
    const { gpu, workers, va } = await setup(context, bytes, threads);
    const dirty = new Uint8Array(bytes).fill(9);
    const raw = context.device.createBuffer({
      label: 'bench fault source',
      size: 256 * PAGE,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
    });
    const trips = rawRoundTrips(context.device, raw, 64);
    let readbacks = 0;
    return {
      value: async () => {
        await gpu.write(va, dirty); // every page GPU-dirty (untimed)
        const before = gpu.stats().readbacks;
        const started = performance.now();
        await workers.map((worker, i) => worker.readInOrder(va + i * perThread * PAGE, perThread));
        const seconds = (performance.now() - started) / 1000;
        readbacks = gpu.stats().readbacks - before;
        return (threads * perThread) / seconds;
      },
      baseline: async () => 1000 / median(await trips.run()),
      notes: () => ({ threads, pages: threads * perThread, readbacks }),
      teardown: async () => {
        await workers.terminate();
        await gpu.detach();
        trips.destroy();
        raw.destroy();
      },
    };
  },
};

export const faultRows: readonly BenchRow[] = [
  latency('fault.cpu.p50', 0.5),
  latency('fault.cpu.p99', 0.99),
  throughput,
];
