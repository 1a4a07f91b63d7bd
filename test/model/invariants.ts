/**
 * What must hold after every step of a model-based sequence: page states obey
 * the state table and agree with the model's mappings, protections and advice, every
 * mapped byte equals the model (GPU-dirty pages read through the device, the
 * rest from CPU memory), and frames in use never exceed the budget.
 */
import { expectBytes } from './commands.ts';
import { BUDGET_PAGES, PAGE, SPACE_PAGES, within, type RealSystem } from './real-system.ts';
import type { SpaceModel } from './space-model.ts';

export async function checkInvariants(m: SpaceModel, r: RealSystem, after: string): Promise<void> {
  const states = await within('snapshot', r.gpu.snapshot(0, SPACE_PAGES * PAGE));
  const deviceReads: number[] = [];
  states.forEach((state, page) => {
    const where = `after ${after}: page ${page}`;
    if (!m.mapped[page]) {
      if (state.state !== 'unmapped')
        throw new Error(`${where} is ${state.state}, the model has it unmapped`);
      return;
    }
    if (state.state === 'unmapped')
      throw new Error(`${where} is unmapped, the model has it mapped`);
    if (state.prot !== m.prot[page])
      throw new Error(`${where} is protected '${state.prot}', the model says '${m.prot[page]}'`);
    if (JSON.stringify(state.advice) !== JSON.stringify(m.advice[page]))
      throw new Error(
        `${where} has advice ${JSON.stringify(state.advice)}, the model says ${JSON.stringify(m.advice[page])}`,
      );
    if (state.dirty === 'gpu' && state.state !== 'gpu')
      throw new Error(`${where}: dirty 'gpu' in state ${state.state}`);
    if (state.dirty === 'cpu' && state.state !== 'cpu')
      throw new Error(`${where}: dirty 'cpu' in state ${state.state}`);
    const base = page * PAGE;
    if (state.state === 'zero' && m.bytes.subarray(base, base + PAGE).some((byte) => byte !== 0))
      throw new Error(`${where} is zero, the model has bytes in it`);
    if (state.dirty === 'gpu') {
      if (!m.gpuNewer[page])
        throw new Error(`${where} is GPU-dirty, yet nothing stored to it on the device`);
      if (state.prot !== 'none') deviceReads.push(page);
      return;
    }
    // The CPU copy is the truth: the model's bound on GPU-newer pages tightens.
    m.cpuValid(base, PAGE);
    expectBytes(
      `${where} (CPU copy)`,
      r.memory.subarray(base, base + PAGE),
      m.bytes.subarray(base, base + PAGE),
    );
  });
  for (const run of runsOf(deviceReads)) {
    const bytes = await within('gpu.read', r.gpu.read(run.first * PAGE, run.count * PAGE));
    expectBytes(
      `after ${after}: pages ${run.first}+${run.count} (GPU copy)`,
      bytes,
      m.bytes.subarray(run.first * PAGE, (run.first + run.count) * PAGE),
    );
  }
  const { framesInUse } = r.gpu.stats();
  if (framesInUse > BUDGET_PAGES)
    throw new Error(`after ${after}: ${framesInUse} frames in use, budget ${BUDGET_PAGES}`);
}

function runsOf(pages: readonly number[]): { first: number; count: number }[] {
  const runs: { first: number; count: number }[] = [];
  for (const page of pages) {
    const last = runs[runs.length - 1];
    if (last && last.first + last.count === page) last.count++;
    else runs.push({ first: page, count: 1 });
  }
  return runs;
}
