/**
 * Thrash rows (docs/benchmarks.md): a CPU/GPU ping-pong on the same pages,
 * with thrash mitigation (the default) against the same loop without it.
 */
import { GpuMirror } from '../../mirror/gpu-mirror.ts';
import { AddressSpace } from '../../space/address-space.ts';
import type { BenchContext, BenchRow, RowTrials, Trial } from '../bench-types.ts';
import { median } from '../statistics.ts';
import { ADD_ONE_PER_PAGE, ADD_ONE_PER_PAGE_PARAMS } from '../workloads.ts';

const PAGE = 64 << 10;
const PAGES = 64;
/** Untimed iterations before the trials: the default threshold pins by the third. */
const WARM_UP = 4;

/**
 * One side: a space of PAGES pages mirrored with `thrash` (undefined: the
 * default), and an iteration that sets word 0 of every page from the CPU
 * (`writeAsync`, one call a page), then runs a kernel adding 1 to each,
 * measured in bytes moved either way. `check` reads the words back and
 * throws unless every page holds what the iterations left.
 */
async function pingPongSide(context: BenchContext, thrash: false | undefined) {
  const space = AddressSpace.create({ size: (PAGES + 2) * PAGE, pageSize: PAGE });
  const gpu = await GpuMirror.attach(space, {
    device: context.device,
    ...(thrash === false ? { thrash } : {}),
  });
  const base = space.alloc(PAGES * PAGE);
  const kernel = gpu.kernel({ code: ADD_ONE_PER_PAGE, params: ADD_ONE_PER_PAGE_PARAMS });
  const uses = [{ va: base, len: PAGES * PAGE, access: 'readwrite' as const }];
  const moved = () => gpu.stats().bytesToGpu + gpu.stats().bytesToCpu;
  const times: number[] = [];
  let round = 0;
  const iteration: Trial = async () => {
    const [before, started] = [moved(), performance.now()];
    round++;
    for (let page = 0; page < PAGES; page++)
      await space.writeAsync(base + page * PAGE, new Uint32Array([round * 1000 + page]));
    await kernel.run({ workgroups: 1, params: { base, pages: PAGES, stride: PAGE }, uses });
    times.push(performance.now() - started);
    return moved() - before;
  };
  const check = async (): Promise<void> => {
    for (let page = 0; page < PAGES; page++) {
      const [word] = new Uint32Array((await space.readAsync(base + page * PAGE, 4)).slice().buffer);
      if (word !== round * 1000 + page + 1)
        throw new Error(
          `thrash.pingpong: page ${page} holds ${word}, not ${round * 1000 + page + 1}`,
        );
    }
  };
  return { gpu, iteration, check, times };
}

/**
 * `thrash.pingpong`: bytes moved per iteration of the ping-pong (64 pages of
 * 64 KiB; the CPU sets one u32 per page, then a kernel adds 1 to it) with
 * thrash mitigation, against the same loop with `thrash: false`.
 */
const thrashPingPong: BenchRow = {
  name: 'thrash.pingpong',
  unit: 'bytes',
  better: 'lower',
  baselineName: 'the same loop with thrash: false',
  async setup(context): Promise<RowTrials> {
    const pinned = await pingPongSide(context, undefined);
    const plain = await pingPongSide(context, false);
    // The iterations in which mitigation detects the ping-pong: its cost, shown in the notes.
    let detection = 0;
    for (let i = 0; i < WARM_UP; i++) {
      detection += await pinned.iteration();
      await plain.iteration();
    }
    return {
      value: pinned.iteration,
      baseline: plain.iteration,
      notes: () => ({
        pins: pinned.gpu.stats().thrashPins,
        detectionBytes: detection,
        msPerIteration: Math.round(median(pinned.times) * 10) / 10,
        baselineMsPerIteration: Math.round(median(plain.times) * 10) / 10,
      }),
      teardown: async () => {
        // Results stay exact: both sides' words are what their iterations left.
        await pinned.check();
        await plain.check();
        await pinned.gpu.detach();
        await plain.gpu.detach();
      },
    };
  },
};

export const thrashRows: readonly BenchRow[] = [thrashPingPong];
