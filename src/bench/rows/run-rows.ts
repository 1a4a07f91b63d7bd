/**
 * Run overhead rows (docs/benchmarks.md): what one small kernel run costs
 * beyond its dispatch (`kernel.run.overhead`), and 20 of them called in one
 * task (`kernel.chain`), against the same plain dispatches.
 */
import type { BenchContext, BenchRow, RowTrials } from '../bench-types.ts';
import { scratchBuffer } from '../baselines.ts';
import { gpuTrial, timed } from './kernel-rows.ts';
import { mirroredSpace } from './mirrored-space.ts';

const USE_BYTES = 4096;
/** 4 workgroups of 64: each invocation adds 1 to 4 of the use's 1024 words. */
const WORKGROUPS = 4;
const CHAIN = 20;

const ADD_ONE = /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  for (var k = 0u; k < 4u; k++) {
    let va = hmm_params.va + (id.x * 4u + k) * 4u;
    hmm_store_u32(va, hmm_load_u32(va) + 1u);
  }
}`;

const ADD_ONE_PLAIN = /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> words: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  for (var k = 0u; k < 4u; k++) {
    let i = id.x * 4u + k;
    words[i] = words[i] + 1u;
  }
}`;

/** The webhmm kernel and run, and the plain pipeline and bind group, over 4 KiB. */
async function addOne(context: BenchContext) {
  const { device } = context;
  const { space, gpu } = await mirroredSpace(context, 64 << 10, 64 << 10);
  const va = space.alloc(USE_BYTES);
  const kernel = gpu.kernel({ code: ADD_ONE, params: { va: 'u32' } });
  const run = {
    workgroups: WORKGROUPS,
    params: { va },
    uses: [{ va, len: USE_BYTES, access: 'readwrite' }],
  } as const;
  await kernel.run(run); // the page GPU-owned from here on (untimed)
  const words = scratchBuffer(device, USE_BYTES, 'run overhead');
  const pipeline = await device.createComputePipelineAsync({
    layout: 'auto',
    compute: { module: device.createShaderModule({ code: ADD_ONE_PLAIN }), entryPoint: 'main' },
  });
  const group = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: words } }],
  });
  /** `count` plain dispatches, in one submit. */
  const dispatch = (count: number) => () => {
    const encoder = device.createCommandEncoder();
    for (let i = 0; i < count; i++) {
      const pass = encoder.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(WORKGROUPS);
      pass.end();
    }
    device.queue.submit([encoder.finish()]);
  };
  const teardown = async (): Promise<void> => {
    await gpu.detach();
    words.destroy();
  };
  return { kernel, run, dispatch, teardown };
}

const runOverhead: BenchRow = {
  name: 'kernel.run.overhead',
  unit: 'ms',
  better: 'lower',
  baselineName: 'the same plain dispatch + onSubmittedWorkDone',
  async setup(context): Promise<RowTrials> {
    const { kernel, run, dispatch, teardown } = await addOne(context);
    return {
      value: timed(() => kernel.run(run)),
      baseline: gpuTrial(context.device, dispatch(1)),
      notes: () => ({ invocations: WORKGROUPS * 64, useBytes: USE_BYTES }),
      teardown,
    };
  },
};

const chain: BenchRow = {
  name: 'kernel.chain',
  unit: 'ms',
  better: 'lower',
  baselineName: `${CHAIN} plain dispatches in one submit + onSubmittedWorkDone`,
  async setup(context): Promise<RowTrials> {
    const { kernel, run, dispatch, teardown } = await addOne(context);
    return {
      value: timed(() => Promise.all(Array.from({ length: CHAIN }, () => kernel.run(run)))),
      baseline: gpuTrial(context.device, dispatch(CHAIN)),
      notes: () => ({ runs: CHAIN }),
      teardown,
    };
  },
};

export const runRows: readonly BenchRow[] = [runOverhead, chain];
