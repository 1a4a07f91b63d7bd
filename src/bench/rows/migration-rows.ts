/**
 * Migration rows (docs/benchmarks.md): contiguous uploads and readbacks, scattered
 * pages, bringing a mostly clean GPU copy up to date, and the memcpy ceiling.
 */
import { BufferCopyEngine } from '../../gpu/buffer-copy-engine.ts';
import type { CopyMode } from '../../gpu/copy-engines.ts';
import type { GpuMirror } from '../../mirror/gpu-mirror.ts';
import type { AddressSpace } from '../../space/address-space.ts';
import type { BenchContext, BenchRow, RowTrials, Trial } from '../bench-types.ts';
import {
  jsCopy,
  rawReadback,
  rawWriteBuffer,
  rawWriteBufferPerPage,
  scratchBuffer,
} from '../baselines.ts';
import { gbPerSecond, randomDistinct } from '../statistics.ts';
import { mirroredSpace } from './mirrored-space.ts';

const MiB = 1 << 20;
const MODES: readonly CopyMode[] = ['kernel', 'buffer', 'auto'];

/** A space holding `bytes` in one allocation, mirrored with `copy`. */
async function mirrored(context: BenchContext, bytes: number, pageSize: number, copy: CopyMode) {
  const { space, gpu } = await mirroredSpace(context, bytes, pageSize, copy);
  return { space, gpu, va: space.alloc(bytes) };
}

/** A trial: every page of the region made stale on the GPU (untimed), then migrated to it; GB/s. */
function staleUpload(space: AddressSpace, gpu: GpuMirror, va: number, bytes: number): Trial {
  let round = 0;
  return async () => {
    space.fill(va, bytes, ++round & 0xff);
    const started = performance.now();
    await gpu.migrate(va, bytes, 'gpu');
    return gbPerSecond(bytes, performance.now() - started);
  };
}

function h2d(copy: CopyMode): BenchRow {
  return {
    name: `migrate.h2d.${copy}`,
    unit: 'GB/s',
    better: 'higher',
    baselineName: 'writeBuffer of the same bytes',
    async setup(context): Promise<RowTrials> {
      const bytes = context.quick ? 16 * MiB : 64 * MiB;
      const { space, gpu, va } = await mirrored(context, bytes, 64 << 10, copy);
      const raw = scratchBuffer(context.device, bytes, 'h2d target');
      const source = new Uint8Array(new SharedArrayBuffer(bytes)).fill(1);
      let round = 0;
      return {
        value: async () => {
          space.fill(va, bytes, ++round & 0xff); // every page stale on the GPU (untimed)
          const started = performance.now();
          await gpu.migrate(va, bytes, 'gpu');
          return gbPerSecond(bytes, performance.now() - started);
        },
        baseline: rawWriteBuffer(context.device, raw, source),
        notes: () => ({ engine: gpu.stats().copyEngine.h2d.contiguous }),
        teardown: async () => {
          await gpu.detach();
          raw.destroy();
        },
      };
    },
  };
}

/** A kernel that reads one word of its range: enough for its run to use the frames. */
const READ_ONE = /* wgsl */ `
@compute @workgroup_size(1)
fn main() {
  _ = x_load_u32(0u);
}`;

/**
 * `migrate.h2d.afterrun`: `migrate.h2d.auto`'s upload into frames a kernel
 * run has used, as an app's frames are from its first run on. Dawn's
 * `writeBuffer` is about twice as slow into a buffer any command has used,
 * so the baseline writes into a buffer a command has read.
 */
const h2dAfterRun: BenchRow = {
  name: 'migrate.h2d.afterrun',
  unit: 'GB/s',
  better: 'higher',
  baselineName: 'writeBuffer of the same bytes into a buffer a command has read',
  async setup(context): Promise<RowTrials> {
    const { device } = context;
    const bytes = context.quick ? 16 * MiB : 64 * MiB;
    const { space, gpu, va } = await mirrored(context, bytes, 64 << 10, 'auto');
    const readOne = gpu.kernel({ code: READ_ONE, ranges: { x: 'read' } });
    await readOne.run({ workgroups: 1, uses: [{ name: 'x', va, len: bytes }] });
    const raw = scratchBuffer(device, bytes, 'h2d after-run target');
    const probe = scratchBuffer(device, 4, 'h2d after-run probe');
    const encoder = device.createCommandEncoder();
    encoder.copyBufferToBuffer(raw, 0, probe, 0, 4);
    device.queue.submit([encoder.finish()]);
    const source = new Uint8Array(new SharedArrayBuffer(bytes)).fill(1);
    return {
      value: staleUpload(space, gpu, va, bytes),
      baseline: rawWriteBuffer(device, raw, source),
      notes: () => ({ staged: String(gpu.stats().copyEngine.stagedUploads) }),
      teardown: async () => {
        await gpu.detach();
        raw.destroy();
        probe.destroy();
      },
    };
  },
};

function d2h(copy: CopyMode): BenchRow {
  return {
    name: `migrate.d2h.${copy}`,
    unit: 'GB/s',
    better: 'higher',
    baselineName: 'copyBufferToBuffer + mapAsync + copy out',
    async setup(context): Promise<RowTrials> {
      const bytes = context.quick ? 16 * MiB : 64 * MiB;
      const { gpu, va } = await mirrored(context, bytes, 64 << 10, copy);
      const raw = scratchBuffer(context.device, bytes, 'd2h source');
      const target = new Uint8Array(bytes);
      const dirty = new Uint8Array(bytes);
      const readback = rawReadback(context.device, raw, target);
      let round = 0;
      return {
        value: async () => {
          await gpu.write(va, dirty.fill(++round & 0xff)); // every page GPU-dirty (untimed)
          const started = performance.now();
          await gpu.migrate(va, bytes, 'cpu');
          return gbPerSecond(bytes, performance.now() - started);
        },
        baseline: readback,
        notes: () => {
          const choice = gpu.stats().copyEngine;
          return { engine: choice.d2h.contiguous, pipelined: String(choice.pipelinedReadback) };
        },
        teardown: async () => {
          await gpu.detach();
          readback.destroy();
          raw.destroy();
        },
      };
    },
  };
}

function scattered(copy: CopyMode): BenchRow {
  return {
    name: `migrate.scattered.${copy}`,
    unit: 'GB/s',
    better: 'higher',
    baselineName: 'writeBuffer per page',
    async setup(context): Promise<RowTrials> {
      const page = 4 << 10;
      const bytes = context.quick ? 16 * MiB : 64 * MiB;
      const count = context.quick ? 1024 : 4096;
      const { space, gpu, va } = await mirrored(context, bytes, page, copy);
      space.fill(va, bytes, 1);
      await gpu.migrate(va, bytes, 'gpu');
      const raw = scratchBuffer(context.device, bytes, 'scattered target');
      const source = new Uint8Array(new SharedArrayBuffer(bytes)).fill(2);
      const pages = randomDistinct(bytes / page, count);
      let round = 0;
      return {
        value: async () => {
          const fill = ++round & 0xff;
          for (const index of pages) space.fill(va + index * page, page, fill); // untimed
          const started = performance.now();
          const moved = await gpu.migrate(va, bytes, 'gpu');
          return gbPerSecond(moved.bytes, performance.now() - started);
        },
        baseline: rawWriteBufferPerPage(context.device, raw, source, pages, page),
        notes: () => ({ engine: gpu.stats().copyEngine.h2d.scattered, pages: count }),
        teardown: async () => {
          await gpu.detach();
          raw.destroy();
        },
      };
    },
  };
}

/** The page size of the update rows' space. */
const UPDATE_PAGE = 64 << 10;

/** An update row: what the CPU changes of a region on the GPU between trials, and what the notes say. */
interface UpdateShape {
  readonly name: string;
  readonly bytes: (quick: boolean) => number;
  /** Changes the region through the space (round counts the trials, from 1). */
  readonly change: (space: AddressSpace, va: number, bytes: number, round: number) => void;
  readonly notes: (bytes: number) => Record<string, number>;
}

/**
 * Bring a region on the GPU up to date after `shape.change`, against one
 * `writeBuffer` of the whole region; notes add the bytes the update moved.
 */
function updateRow(shape: UpdateShape): BenchRow {
  return {
    name: shape.name,
    unit: 'ms',
    better: 'lower',
    baselineName: 'writeBuffer of the whole region',
    async setup(context): Promise<RowTrials> {
      const bytes = shape.bytes(context.quick);
      const { space, gpu, va } = await mirrored(context, bytes, UPDATE_PAGE, 'auto');
      space.fill(va, bytes, 1);
      await gpu.migrate(va, bytes, 'gpu');
      const raw = scratchBuffer(context.device, bytes, 'update target');
      const source = new Uint8Array(new SharedArrayBuffer(bytes)).fill(3);
      const whole = rawWriteBuffer(context.device, raw, source);
      let round = 0;
      let moved = 0;
      return {
        value: async () => {
          shape.change(space, va, bytes, ++round);
          const before = gpu.stats().bytesToGpu;
          const started = performance.now();
          await gpu.migrate(va, bytes, 'gpu');
          const ms = performance.now() - started;
          moved = gpu.stats().bytesToGpu - before;
          return ms;
        },
        baseline: async () => {
          const started = performance.now();
          await whole();
          return performance.now() - started;
        },
        notes: () => {
          const { staleBytesUploaded, staleBytesWritten, copyEngine } = gpu.stats();
          return {
            ...shape.notes(bytes),
            bytesMoved: moved,
            // Write amplification over the whole row: bytes uploaded per byte written.
            amplification: Number((staleBytesUploaded / Math.max(1, staleBytesWritten)).toFixed(2)),
            wholePageShare: Number(copyEngine.wholePageShare.toFixed(3)),
          };
        },
        teardown: async () => {
          await gpu.detach();
          raw.destroy();
        },
      };
    },
  };
}

/** `update.dirty.*`: `share` of the region's pages rewritten whole (fill). */
function updateDirty(label: string, share: number): BenchRow {
  const count = (bytes: number) => Math.max(1, Math.round((bytes / UPDATE_PAGE) * share));
  return updateRow({
    name: `update.dirty.${label}`,
    bytes: (quick) => (quick ? 32 * MiB : 256 * MiB),
    change: (space, va, bytes, round) => {
      for (const index of randomDistinct(bytes / UPDATE_PAGE, count(bytes)))
        space.fill(va + index * UPDATE_PAGE, UPDATE_PAGE, round & 0xff);
    },
    notes: (bytes) => ({ pages: count(bytes), of: bytes / UPDATE_PAGE }),
  });
}

/**
 * `update.scattered.1pct`: 1% of the words written at random, one `setU32`
 * each: write amplification shows as bytes moved far beyond 4 a word.
 */
const updateScattered = updateRow({
  name: 'update.scattered.1pct',
  bytes: (quick) => (quick ? 16 * MiB : 64 * MiB),
  change: (space, va, bytes, round) => {
    for (const index of randomDistinct(bytes / 4, Math.round(bytes / 400)))
      space.setU32(va + index * 4, round);
  },
  notes: (bytes) => ({ wordsWritten: Math.round(bytes / 400), of: bytes }),
});

/** Whether cutting a readback into overlapped batches pays on this device (informational; calibration decides it for `auto`). */
const pipelinedReadback: BenchRow = {
  name: 'readback.pipelined',
  unit: 'GB/s',
  better: 'higher',
  baselineName: 'the same readback in one batch',
  setup(context): Promise<RowTrials> {
    const bytes = context.quick ? 16 * MiB : 64 * MiB;
    const memory = new SharedArrayBuffer(bytes);
    const frames = scratchBuffer(context.device, bytes, 'readback frames');
    const copy = { device: context.device, frames, memory };
    const single = new BufferCopyEngine(copy);
    const pipelined = new BufferCopyEngine(copy, { pipelinedReadback: true });
    const whole = [{ va: 0, frameOffset: 0, len: bytes }];
    const readback =
      (engine: BufferCopyEngine): Trial =>
      async () => {
        const started = performance.now();
        await engine.download(whole);
        return gbPerSecond(bytes, performance.now() - started);
      };
    return Promise.resolve({
      value: readback(pipelined),
      baseline: readback(single),
      teardown: () => {
        single.destroy();
        pipelined.destroy();
        frames.destroy();
      },
    });
  },
};

const memcpyCeiling: BenchRow = {
  name: 'memcpy.ceiling',
  unit: 'GB/s',
  better: 'higher',
  baselineName: 'JS Uint8Array.set of the same bytes',
  async setup(context): Promise<RowTrials> {
    const row = await h2d('auto').setup(context);
    const bytes = context.quick ? 16 * MiB : 64 * MiB;
    const copy: Trial = jsCopy(
      new Uint8Array(new SharedArrayBuffer(bytes)).fill(4),
      new Uint8Array(bytes),
    );
    return { ...row, baseline: copy };
  },
};

export const migrationRows: readonly BenchRow[] = [
  ...MODES.map(h2d),
  h2dAfterRun,
  ...MODES.map(d2h),
  ...MODES.map(scattered),
  updateDirty('0.1pct', 0.001),
  updateDirty('1pct', 0.01),
  updateDirty('10pct', 0.1),
  updateDirty('100pct', 1),
  updateScattered,
  pipelinedReadback,
  memcpyCeiling,
];
