/**
 * The app row (docs/benchmarks.md): PageRank end to end, as a new user would
 * write it with webhmm (two workers build the graph in the space, named
 * ranges, runs called in one task, a worker reads the ranks, an in-place
 * update of 1% of the edges, again) against the best plain WebGPU version
 * of the same app.
 */
import { bufferSource } from '../../gpu/buffer-source.ts';
import type { Kernel } from '../../kernels/kernel.ts';
import type { GpuMirror } from '../../mirror/gpu-mirror.ts';
import type { AddressSpace } from '../../space/address-space.ts';
import { Threads } from '../../threads/threads.ts';
import type { BenchContext, BenchRow, RowTrials } from '../bench-types.ts';
import {
  DAMPING,
  DEGREE,
  FILL_NAMED,
  FILL_PLAIN,
  ITERATIONS,
  maxRelativeError,
  referenceRanks,
  SCATTER_NAMED,
  SCATTER_PLAIN,
  edgeUpdates,
  buildSlice,
  type Slice,
} from '../pagerank.ts';
import type { PageRankThreadApi } from '../pagerank-thread.worker.ts';
import { timed } from './kernel-rows.ts';
import { mirroredSpace } from './mirrored-space.ts';

const SEED = 20261202;
const WORKERS = 2;

/** The graph's size: nodes and edges. */
function sizes(context: BenchContext) {
  const nodes = context.quick ? 50_000 : 200_000;
  return { nodes, edges: nodes * DEGREE };
}

/** Workgroups of 64 invocations covering `n`, as [x, y] with x <= 65535. */
function groups(n: number): [number, number] {
  const total = Math.ceil(n / 64);
  const x = Math.min(total, 4096);
  return [x, Math.ceil(total / x)];
}

const slices = (nodes: number): Slice[] =>
  Array.from({ length: WORKERS }, (_, i) => ({
    seed: SEED,
    nodes,
    first: Math.floor((i * nodes) / WORKERS),
    end: Math.floor(((i + 1) * nodes) / WORKERS),
  }));

/** The webhmm app: graph in the space, named-range kernels (exported for its test). */
export class SpaceApp {
  private readonly fill: Kernel;
  private readonly scatter: Kernel;
  /** Bytes uploaded for the last update phase, and the ranks the last trial read. */
  updateBytes = 0;
  ranks: Float32Array = new Float32Array(0);
  /** The in-place update: edge and new target, computed once. */
  private readonly update: readonly (readonly [number, number])[];

  constructor(
    private readonly space: AddressSpace,
    private readonly gpu: GpuMirror,
    private readonly workers: Threads<PageRankThreadApi>,
    private readonly nodes: number,
  ) {
    this.update = edgeUpdates(SEED, nodes);
    this.fill = gpu.kernel({
      code: FILL_NAMED,
      params: { value: 'f32' },
      ranges: { dst: 'write' },
    });
    this.scatter = gpu.kernel({
      code: SCATTER_NAMED,
      params: { damping: 'f32' },
      ranges: { offsets: 'read', targets: 'read', rank: 'read', next: 'readwrite' },
    });
  }

  /** One trial: build, rank, read, update 1% of the edges, rank, read. */
  async trial(): Promise<void> {
    const { space, nodes } = this;
    const edges = nodes * DEGREE;
    const vas = {
      offsets: space.alloc((nodes + 1) * 4),
      targets: space.alloc(edges * 4),
      rank: space.alloc(nodes * 4),
    };
    const next = space.alloc(nodes * 4);
    try {
      await this.workers.map((thread, i) => thread.buildInSpace(vas, slices(nodes)[i] as Slice));
      let result = await this.rank(vas.offsets, vas.targets, vas.rank, next, false);
      this.ranks = await this.read(result);
      const before = this.gpu.stats().bytesToGpu;
      for (const [e, to] of this.update) space.setU32(vas.targets + e * 4, to);
      result = await this.rank(vas.offsets, vas.targets, vas.rank, next, true);
      this.updateBytes = this.gpu.stats().bytesToGpu - before;
      this.ranks = await this.read(result);
    } finally {
      for (const va of [vas.offsets, vas.targets, vas.rank, next]) space.free(va);
    }
  }

  /** ITERATIONS push iterations between `a` and `b`, every run called in one task; the VA of the result. */
  private async rank(offsets: number, targets: number, a: number, b: number, reset: boolean) {
    const { nodes } = this;
    const len = nodes * 4;
    const workgroups = groups(nodes);
    const runs = [];
    if (reset) {
      runs.push(
        this.fill.run({
          workgroups,
          params: { value: 1 / nodes },
          uses: [{ name: 'dst', va: a, len }],
        }),
      );
    }
    let [rank, next] = [a, b];
    for (let i = 0; i < ITERATIONS; i++) {
      runs.push(
        this.fill.run({
          workgroups,
          params: { value: (1 - DAMPING) / nodes },
          uses: [{ name: 'dst', va: next, len }],
        }),
        this.scatter.run({
          workgroups,
          params: { damping: DAMPING },
          uses: [
            { name: 'offsets', va: offsets, len: (nodes + 1) * 4 },
            { name: 'targets', va: targets, len: nodes * DEGREE * 4 },
            { name: 'rank', va: rank, len },
            { name: 'next', va: next, len },
          ],
        }),
      );
      [rank, next] = [next, rank];
    }
    await Promise.all(runs);
    return rank;
  }

  private read(va: number): Promise<Float32Array> {
    const [reader] = this.workers.workers;
    if (!reader) throw new Error('no worker');
    return reader.readRanks(va, this.nodes);
  }
}

/** The plain app: SharedArrayBuffer arrays, one writeBuffer each, one submit per ranking. */
class PlainApp {
  private readonly offsets: Uint32Array;
  private readonly targets: Uint32Array;
  private readonly buffers: GPUBuffer[] = [];
  private readonly passes: (readonly [GPUComputePipeline, GPUBindGroup])[] = [];
  private readonly offsetsBuffer: GPUBuffer;
  private readonly targetsBuffer: GPUBuffer;
  private readonly readback: GPUBuffer;
  private readonly result: GPUBuffer;
  ranks: Float32Array = new Float32Array(0);
  /** The in-place update: edge and new target, computed once. */
  private readonly update: readonly (readonly [number, number])[];

  private constructor(
    private readonly device: GPUDevice,
    private readonly workers: Threads<PageRankThreadApi>,
    private readonly nodes: number,
    fill: GPUComputePipeline,
    scatter: GPUComputePipeline,
  ) {
    this.update = edgeUpdates(SEED, nodes);
    const edges = nodes * DEGREE;
    this.offsets = new Uint32Array(new SharedArrayBuffer((nodes + 1) * 4));
    this.targets = new Uint32Array(new SharedArrayBuffer(edges * 4));
    const storage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
    const buffer = (size: number, usage = storage) => {
      const made = device.createBuffer({ label: 'bench pagerank', size, usage });
      this.buffers.push(made);
      return made;
    };
    this.offsetsBuffer = buffer(this.offsets.byteLength);
    this.targetsBuffer = buffer(this.targets.byteLength);
    const [a, b] = [buffer(nodes * 4), buffer(nodes * 4)];
    this.readback = buffer(nodes * 4, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
    const uniform = (words: [number, number]) => {
      const made = buffer(16, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
      const data = new DataView(new ArrayBuffer(16));
      data.setFloat32(0, words[0], true);
      data.setUint32(4, words[1], true);
      device.queue.writeBuffer(made, 0, data.buffer);
      return made;
    };
    const group = (pipeline: GPUComputePipeline, resources: GPUBuffer[]) =>
      device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: resources.map((resource, binding) => ({
          binding,
          resource: { buffer: resource },
        })),
      });
    const init = uniform([1 / nodes, nodes]);
    const base = uniform([(1 - DAMPING) / nodes, nodes]);
    const damping = uniform([DAMPING, nodes]);
    this.passes.push([fill, group(fill, [a, init])]);
    let [rank, next] = [a, b];
    for (let i = 0; i < ITERATIONS; i++) {
      this.passes.push(
        [fill, group(fill, [next, base])],
        [scatter, group(scatter, [this.offsetsBuffer, this.targetsBuffer, rank, next, damping])],
      );
      [rank, next] = [next, rank];
    }
    this.result = rank;
  }

  static async create(
    device: GPUDevice,
    workers: Threads<PageRankThreadApi>,
    nodes: number,
  ): Promise<PlainApp> {
    const compile = (code: string) =>
      device.createComputePipelineAsync({
        layout: 'auto',
        compute: { module: device.createShaderModule({ code }), entryPoint: 'main' },
      });
    return new PlainApp(
      device,
      workers,
      nodes,
      await compile(FILL_PLAIN),
      await compile(SCATTER_PLAIN),
    );
  }

  async trial(): Promise<void> {
    const { device, nodes } = this;
    await this.workers.map((thread, i) =>
      thread.buildInArrays(this.offsets, this.targets, slices(nodes)[i] as Slice),
    );
    device.queue.writeBuffer(this.offsetsBuffer, 0, bufferSource(this.offsets));
    device.queue.writeBuffer(this.targetsBuffer, 0, bufferSource(this.targets));
    this.ranks = await this.rank();
    for (const [e, to] of this.update) this.targets[e] = to;
    device.queue.writeBuffer(this.targetsBuffer, 0, bufferSource(this.targets));
    this.ranks = await this.rank();
  }

  private async rank(): Promise<Float32Array> {
    const encoder = this.device.createCommandEncoder();
    const workgroups = groups(this.nodes);
    for (const [pipeline, group] of this.passes) {
      const pass = encoder.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(...workgroups);
      pass.end();
    }
    encoder.copyBufferToBuffer(this.result, 0, this.readback, 0, this.nodes * 4);
    this.device.queue.submit([encoder.finish()]);
    await this.readback.mapAsync(GPUMapMode.READ);
    const ranks = new Float32Array(this.readback.getMappedRange().slice(0));
    this.readback.unmap();
    return ranks;
  }

  destroy(): void {
    for (const buffer of this.buffers) buffer.destroy();
  }
}

/** The float64 ranks of the updated graph, for the notes (and the test). */
export function updatedReference(nodes: number): Float64Array {
  const edges = nodes * DEGREE;
  const offsets = new Uint32Array(nodes + 1);
  const targets = new Uint32Array(edges);
  buildSlice(offsets, targets, { seed: SEED, nodes, first: 0, end: nodes });
  for (const [e, to] of edgeUpdates(SEED, nodes)) targets[e] = to;
  return referenceRanks(offsets, targets, nodes);
}

const pagerank: BenchRow = {
  name: 'app.pagerank',
  unit: 'ms',
  better: 'lower',
  baselineName:
    'the same app on plain WebGPU buffers: SharedArrayBuffer arrays, one writeBuffer each, one submit, one mapAsync',
  async setup(context): Promise<RowTrials> {
    const { nodes, edges } = sizes(context);
    const csrBytes = (nodes + 1 + edges) * 4;
    const page = 64 << 10;
    // The four arrays, each rounded up to whole pages.
    const bytes = Math.ceil((csrBytes + 2 * nodes * 4) / page) * page + 4 * page;
    const { space, gpu } = await mirroredSpace(context, bytes, page);
    const workers = await Threads.spawn<PageRankThreadApi>(
      space,
      new URL('../pagerank-thread.worker.ts', import.meta.url),
      WORKERS,
    );
    const app = new SpaceApp(space, gpu, workers, nodes);
    const plain = await PlainApp.create(context.device, workers, nodes);
    const reference = updatedReference(nodes);
    return {
      value: timed(() => app.trial()),
      baseline: timed(() => plain.trial()),
      notes: () => ({
        nodes,
        edges,
        updateBytesToGpu: app.updateBytes,
        updateShareOfCsr: Number((app.updateBytes / csrBytes).toFixed(3)),
        maxRelativeError: maxRelativeError(app.ranks, reference),
        plainMaxRelativeError: maxRelativeError(plain.ranks, reference),
      }),
      teardown: async () => {
        await workers.terminate();
        await gpu.detach();
        plain.destroy();
      },
    };
  },
};

export const appRows: readonly BenchRow[] = [pagerank];
