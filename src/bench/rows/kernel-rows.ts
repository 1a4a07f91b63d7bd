/**
 * Kernel rows (docs/benchmarks.md): SAXPY through the prelude against plain buffers,
 * fault mode against declared uses, and the iterative CPU/GPU loop against
 * the naive whole-buffer round trip.
 */
import type { GpuMirror } from '../../mirror/gpu-mirror.ts';
import type { AddressSpace } from '../../space/address-space.ts';
import type { BenchContext, BenchRow, RowTrials, Trial } from '../bench-types.ts';
import { scratchBuffer } from '../baselines.ts';
import { randomDistinct } from '../statistics.ts';
import { LIST_WALK, SAXPY_PER_ELEMENT } from '../workloads.ts';
import { mirroredSpace } from './mirrored-space.ts';

const MiB = 1 << 20;
const PAGE = 64 << 10;

const mirrored = (context: BenchContext, bytes: number) => mirroredSpace(context, bytes, PAGE);

/** Times `work` until the GPU has finished it; ms. */
export function gpuTrial(device: GPUDevice, work: () => void): Trial {
  return async () => {
    const started = performance.now();
    work();
    await device.queue.onSubmittedWorkDone();
    return performance.now() - started;
  };
}

/** Times `work`, which resolves when its data is usable; ms. */
export function timed(work: () => Promise<unknown>): Trial {
  return async () => {
    const started = performance.now();
    await work();
    return performance.now() - started;
  };
}

/** One compute pass of `pipeline` over plain buffers bound in group 0 in order. */
function plainDispatch(
  device: GPUDevice,
  pipeline: GPUComputePipeline,
  resources: readonly GPUBindingResource[],
  workgroups: readonly [number, number],
): () => void {
  const bindGroup = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: resources.map((resource, binding) => ({ binding, resource })),
  });
  return () => {
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(...workgroups);
    pass.end();
    device.queue.submit([encoder.finish()]);
  };
}

/** Workgroups [x, y] covering `groups` with x <= 65535. */
function grid(groups: number): [number, number] {
  const x = Math.min(groups, 4096);
  return [x, Math.ceil(groups / x)];
}

// ---- SAXPY ----

/** Elements each invocation handles in the translated SAXPY: a workgroup covers 64 * RUN contiguous floats, within one page. */
const RUN = 64;
const TRANSLATED_CHUNK = 64 * RUN;

/** The plain SAXPYs' bindings: x, y, z and the parameters, in bind group 0. */
const PLAIN_SAXPY_BINDINGS = /* wgsl */ `
struct Params { n: u32, a: f32 }
@group(0) @binding(0) var<storage, read> xs: array<f32>;
@group(0) @binding(1) var<storage, read> ys: array<f32>;
@group(0) @binding(2) var<storage, read_write> zs: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
`;

const SAXPY_TRANSLATED = /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) group: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lane: u32) {
  let first = (group.x + group.y * groups.x) * ${TRANSLATED_CHUNK}u;
  if (first >= hmm_params.n) { return; }
  let xw = hmm_translate(hmm_params.x + first * 4u, false);
  let yw = hmm_translate(hmm_params.y + first * 4u, false);
  let zw = hmm_translate(hmm_params.z + first * 4u, true);
  for (var k = lane; k < ${TRANSLATED_CHUNK}u; k += 64u) {
    let x = bitcast<f32>(hmm_frame_load(xw + k));
    let y = bitcast<f32>(hmm_frame_load(yw + k));
    hmm_frame_store(zw + k, bitcast<u32>(hmm_params.a * x + y));
  }
}`;

const SAXPY_PLAIN_TRANSLATED = /* wgsl */ `${PLAIN_SAXPY_BINDINGS}@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) group: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lane: u32) {
  let first = (group.x + group.y * groups.x) * ${TRANSLATED_CHUNK}u;
  if (first >= params.n) { return; }
  for (var k = lane; k < ${TRANSLATED_CHUNK}u; k += 64u) {
    zs[first + k] = params.a * xs[first + k] + ys[first + k];
  }
}`;

const SAXPY_PLAIN_PER_ELEMENT = /* wgsl */ `${PLAIN_SAXPY_BINDINGS}@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = id.x + id.y * groups.x * 64u;
  if (i >= params.n) { return; }
  zs[i] = params.a * xs[i] + ys[i];
}`;

const SAXPY_NAMED = /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = id.x + id.y * groups.x * 64u;
  if (i >= z_len()) { return; }
  z_store_f32(i, hmm_params.a * x_load_f32(i) + y_load_f32(i));
}`;

/** The kernel and run options of one of the SAXPYs over x, y and z in the space. */
function saxpyRun(gpu: GpuMirror, code: string, vas: readonly number[], n: number, named: boolean) {
  const [x = 0, y = 0, z = 0] = vas;
  const bytes = n * 4;
  if (named) {
    const kernel = gpu.kernel({
      code,
      params: { a: 'f32' },
      ranges: { x: 'read', y: 'read', z: 'write' },
    });
    const uses = [
      { name: 'x', va: x, len: bytes },
      { name: 'y', va: y, len: bytes },
      { name: 'z', va: z, len: bytes },
    ];
    return { kernel, params: { a: 2 }, uses };
  }
  const kernel = gpu.kernel({
    code,
    params: { n: 'u32', a: 'f32', x: 'u32', y: 'u32', z: 'u32' },
  });
  const uses = [
    { va: x, len: bytes, access: 'read' },
    { va: y, len: bytes, access: 'read' },
    { va: z, len: bytes, access: 'write' },
  ] as const;
  return { kernel, params: { n, a: 2, x, y, z }, uses };
}

function saxpy(
  name: string,
  code: string,
  plainCode: string,
  perInvocation: number,
  named = false,
): BenchRow {
  return {
    name,
    unit: 'ms',
    better: 'lower',
    baselineName: 'the same SAXPY on plain GPU buffers',
    async setup(context): Promise<RowTrials> {
      const { device } = context;
      const n = context.quick ? 4 * MiB : 16 * MiB;
      const bytes = n * 4;
      const { space, gpu } = await mirrored(context, 3 * bytes);
      const [x, y, z] = [space.alloc(bytes), space.alloc(bytes), space.alloc(bytes)];
      space.access(x, bytes, 'write', (lease) => lease.f32.forEach((_, i, a) => (a[i] = i)));
      space.access(y, bytes, 'write', (lease) => lease.f32.fill(0.5));
      const { kernel, params: values, uses } = saxpyRun(gpu, code, [x, y, z], n, named);
      const workgroups = grid(n / perInvocation / 64);
      const run = { workgroups, params: values, uses };
      await kernel.run(run); // data resident from here on (untimed)

      const plain = [0, 1, 2].map((i) => scratchBuffer(device, bytes, `saxpy ${i}`));
      const params = device.createBuffer({
        label: 'bench saxpy params',
        size: 16,
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      });
      const words = new DataView(new ArrayBuffer(16));
      words.setUint32(0, n, true);
      words.setFloat32(4, 2, true);
      device.queue.writeBuffer(params, 0, words.buffer);
      const pipeline = await device.createComputePipelineAsync({
        layout: 'auto',
        compute: { module: device.createShaderModule({ code: plainCode }), entryPoint: 'main' },
      });
      const dispatch = plainDispatch(
        device,
        pipeline,
        [...plain.map((buffer) => ({ buffer })), { buffer: params }],
        workgroups,
      );
      let replays = 0;
      return {
        value: timed(async () => (replays += (await kernel.run(run)).replays)),
        baseline: gpuTrial(device, dispatch),
        notes: () => ({ replays, elementsPerInvocation: perInvocation }),
        teardown: async () => {
          await gpu.detach();
          for (const buffer of [...plain, params]) buffer.destroy();
        },
      };
    },
  };
}

// ---- fault mode: the linked-list walk ----

/**
 * Links `count` 8-byte nodes { next, value } at random slots of [va, va + len).
 * `write(round)` (re)writes every node with values of that round, through one
 * write scope over the whole range, so the GPU's copy of every page is stale
 * and a walk must fetch it again; it returns the sum the walk must find.
 */
function linkedList(space: AddressSpace, va: number, len: number, count: number) {
  const slots = new Set<number>();
  while (slots.size < count) slots.add(Math.floor((Math.random() * len) / 8));
  const order = [...slots];
  const head = va + (order[0] ?? 0) * 8;
  const write = (round: number): number => {
    let sum = 0;
    space.access(va, len, 'write', (lease) => {
      for (let i = 0; i < order.length; i++) {
        const word = (order[i] ?? 0) * 2;
        const value = (i + round) & 0xff;
        lease.u32[word] = i + 1 < order.length ? va + (order[i + 1] ?? 0) * 8 : 0;
        lease.u32[word + 1] = value;
        sum += value;
      }
    });
    return sum;
  };
  return { head, write };
}

const faultMode: BenchRow = {
  name: 'kernel.faultmode',
  unit: 'ms',
  better: 'lower',
  baselineName: 'the same walk with uses',
  async setup(context): Promise<RowTrials> {
    const len = context.quick ? 16 * MiB : 64 * MiB;
    const nodes = context.quick ? 25_000 : 100_000;
    const { space, gpu } = await mirrored(context, len + PAGE);
    const list = space.alloc(len);
    const out = space.alloc(8);
    const { head, write } = linkedList(space, list, len, nodes);
    const walk = gpu.kernel({ code: LIST_WALK, params: { head: 'u32', out: 'u32' } });
    const uses = [
      { va: list, len, access: 'read' },
      { va: out, len: 8, access: 'write' },
    ] as const;
    let round = 0;
    let replays = 0;
    /** Each walk starts from a list the CPU has just rewritten (untimed), and must find its sum. */
    const walkFresh = (declared: boolean): Trial => {
      return async () => {
        const sum = write(++round);
        const started = performance.now();
        const result = await walk.run({
          workgroups: 1,
          params: { head, out },
          ...(declared ? { uses } : {}),
        });
        const ms = performance.now() - started;
        if (!declared) replays = result.replays;
        const found = new Uint32Array((await space.readAsync(out, 8)).buffer);
        if (found[0] !== sum || found[1] !== nodes)
          throw new Error(`list walk found ${found[0]}/${found[1]}, expected ${sum}/${nodes}`);
        return ms;
      };
    };
    return {
      value: walkFresh(false),
      baseline: walkFresh(true),
      notes: () => ({ replays, nodes }),
      teardown: () => gpu.detach(),
    };
  },
};

// ---- the iterative CPU/GPU loop ----

/** Workgroup size 64; each invocation transforms CHUNK_FLOATS / 64 floats of one chunk (y of the grid picks the chunk). */
const CHUNK_FLOATS = PAGE / 4;

const ITERATE_WEBHMM = /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) group: vec3u, @builtin(local_invocation_index) lane: u32) {
  let chunk = hmm_load_u32(hmm_params.chunks + group.x * 4u);
  let w = hmm_translate(chunk, true);
  for (var k = lane; k < ${CHUNK_FLOATS}u; k += 64u) {
    let v = bitcast<f32>(hmm_frame_load(w + k));
    hmm_frame_store(w + k, bitcast<u32>(v * 0.5 + 1.0));
  }
}`;

const ITERATE_PLAIN = /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> data: array<f32>;
@group(0) @binding(1) var<storage, read> chunks: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) group: vec3u, @builtin(local_invocation_index) lane: u32) {
  let first = chunks[group.x] * ${CHUNK_FLOATS}u;
  for (var k = lane; k < ${CHUNK_FLOATS}u; k += 64u) {
    data[first + k] = data[first + k] * 0.5 + 1.0;
  }
}`;

interface IterativeShape {
  readonly bytes: number;
  readonly iterations: number;
  /** Chunks the CPU updates per iteration. */
  readonly perIteration: number;
  /** What the CPU writes into each chunk. */
  readonly update: Float32Array;
  /** Throws unless a chunk's last float reads back transformed. */
  readonly check: (value: number | undefined) => void;
}

/** The iterative row's baseline: a typed array, full writeBuffer, the chunk kernel, full readback. */
async function naiveIterativeLoop(
  device: GPUDevice,
  shape: IterativeShape,
): Promise<{ run: () => Promise<void>; destroy: () => void }> {
  const { bytes, iterations, perIteration, update, check } = shape;
  const totalChunks = bytes / PAGE;
  const plain = scratchBuffer(device, bytes, 'iterative data');
  const chunkBuffer = device.createBuffer({
    label: 'bench chunk list',
    size: perIteration * 4,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
  });
  const readback = device.createBuffer({
    label: 'bench iterative readback',
    size: bytes,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const pipeline = await device.createComputePipelineAsync({
    layout: 'auto',
    compute: { module: device.createShaderModule({ code: ITERATE_PLAIN }), entryPoint: 'main' },
  });
  const bindGroup = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [
      { binding: 0, resource: { buffer: plain } },
      { binding: 1, resource: { buffer: chunkBuffer } },
    ],
  });
  const host = new Float32Array(bytes / 4);
  const naive = async () => {
    for (let i = 0; i < iterations; i++) {
      const chunks = randomDistinct(totalChunks, perIteration);
      for (const chunk of chunks) host.set(update, chunk * CHUNK_FLOATS);
      device.queue.writeBuffer(plain, 0, host);
      device.queue.writeBuffer(chunkBuffer, 0, Uint32Array.from(chunks));
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(chunks.length);
      pass.end();
      encoder.copyBufferToBuffer(plain, 0, readback, 0, bytes);
      device.queue.submit([encoder.finish()]);
      await readback.mapAsync(GPUMapMode.READ);
      host.set(new Float32Array(readback.getMappedRange()));
      readback.unmap();
      for (const chunk of chunks) check(host[(chunk + 1) * CHUNK_FLOATS - 1]);
    }
  };
  return {
    run: naive,
    destroy: () => {
      for (const buffer of [plain, chunkBuffer, readback]) buffer.destroy();
    },
  };
}

const iterative: BenchRow = {
  name: 'iterative.webhmm',
  unit: 'ms',
  better: 'lower',
  baselineName: 'typed array, full writeBuffer, the chunk kernel, full readback',
  async setup(context): Promise<RowTrials> {
    const { device } = context;
    const bytes = context.quick ? 32 * MiB : 128 * MiB;
    const iterations = context.quick ? 5 : 20;
    const totalChunks = bytes / PAGE;
    const perIteration = Math.max(1, Math.round(totalChunks * 0.02));
    const { space, gpu } = await mirrored(context, bytes + PAGE);
    const data = space.alloc(bytes);
    const chunkList = space.alloc(perIteration * 4);
    const kernel = gpu.kernel({ code: ITERATE_WEBHMM, params: { chunks: 'u32' } });
    const update = new Float32Array(CHUNK_FLOATS).fill(3);
    /** Every chunk the CPU set to 3 must read back transformed: 3 * 0.5 + 1. */
    const check = (value: number | undefined) => {
      if (value !== 2.5) throw new Error(`iterative chunk read back ${value}, expected 2.5`);
    };

    const webhmm = async () => {
      for (let i = 0; i < iterations; i++) {
        const chunks = randomDistinct(totalChunks, perIteration);
        for (const chunk of chunks) space.write(data + chunk * PAGE, update);
        space.write(
          chunkList,
          Uint32Array.from(chunks, (chunk) => data + chunk * PAGE),
        );
        await kernel.run({
          workgroups: chunks.length,
          params: { chunks: chunkList },
          uses: [
            { va: chunkList, len: perIteration * 4, access: 'read' },
            ...chunks.map((chunk) => ({
              va: data + chunk * PAGE,
              len: PAGE,
              access: 'readwrite' as const,
            })),
          ],
        });
        await gpu.sync();
        for (const chunk of chunks) check(space.getF32(data + chunk * PAGE + PAGE - 4));
      }
    };

    const naive = await naiveIterativeLoop(device, {
      bytes,
      iterations,
      perIteration,
      update,
      check,
    });
    return {
      value: timed(webhmm),
      baseline: timed(naive.run),
      notes: () => ({ iterations, chunksPerIteration: perIteration }),
      teardown: async () => {
        await gpu.detach();
        naive.destroy();
      },
    };
  },
};

export const kernelRows: readonly BenchRow[] = [
  saxpy('kernel.translated', SAXPY_TRANSLATED, SAXPY_PLAIN_TRANSLATED, RUN),
  saxpy('kernel.translated.perelement', SAXPY_PER_ELEMENT, SAXPY_PLAIN_PER_ELEMENT, 1),
  saxpy('kernel.named', SAXPY_NAMED, SAXPY_PLAIN_PER_ELEMENT, 1, true),
  faultMode,
  iterative,
];
