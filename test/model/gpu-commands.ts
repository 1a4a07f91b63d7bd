/**
 * Device-side commands of the model-based suite: migrations, prefetches (with
 * another command meanwhile), advice, device reads and writes, kernel runs with `uses` and in fault mode (plain and atomic adds),
 * sync, detach and re-attach, and device loss with re-attach on a new device.
 */
import { DeviceLostError } from '../../src/errors.ts';
import type { Advice } from '../../src/gpu/advice.ts';
import {
  budgetOutcome,
  expectBytes,
  expectOutcome,
  pattern,
  RegionCommand,
  span,
  type Command,
} from './commands.ts';
import { outcomeOfAsync } from './outcome.ts';
import {
  attachMirror,
  BUDGET_PAGES,
  PAGE,
  SPACE_PAGES,
  within,
  type DeviceSource,
  type RealSystem,
} from './real-system.ts';
import type { SpaceModel } from './space-model.ts';

export class Migrate extends RegionCommand {
  constructor(
    pick: number,
    readonly to: 'gpu' | 'cpu',
  ) {
    super(pick);
  }
  async run(m: SpaceModel, r: RealSystem): Promise<void> {
    const region = this.region(m);
    const len = region.pages * PAGE;
    const outcome = await within(
      String(this),
      outcomeOfAsync(() => r.gpu.migrate(region.va, len, this.to)),
    );
    const refusal = m.refusal(region.va, len, 'read');
    const { expected, allowed } =
      this.to === 'gpu'
        ? budgetOutcome(region.va, len, refusal)
        : { expected: refusal, allowed: [] };
    if (expectOutcome(String(this), outcome, expected, allowed) && this.to === 'cpu')
      m.cpuValid(region.va, len);
  }
  toString(): string {
    return `migrate(#${this.pick}, ${this.to})`;
  }
}

/**
 * Prefetches a region to one side while another command on the same region
 * runs (a device read, a CPU read, a worker's CPU write), not waiting for
 * it: that command sees the model's bytes as if the prefetch were not
 * there, and the prefetch never fails for the budget (the part past what it
 * holds is ignored, at least the pages past the budget).
 */
export class Prefetch extends RegionCommand {
  constructor(
    pick: number,
    readonly to: 'gpu' | 'cpu',
    readonly meanwhile: Command | undefined,
  ) {
    super(pick);
  }
  async run(m: SpaceModel, r: RealSystem): Promise<void> {
    const region = this.region(m);
    const len = region.pages * PAGE;
    const refusal = m.refusal(region.va, len, 'read');
    const prefetched = outcomeOfAsync(() => r.gpu.prefetch(region.va, len, this.to));
    const [outcome] = await Promise.all([
      within(String(this), prefetched),
      this.meanwhile?.run(m, r),
    ]);
    if (!expectOutcome(String(this), outcome, refusal) || !outcome.ok) return;
    const beyond = this.to === 'gpu' ? Math.max(0, region.pages - BUDGET_PAGES) * PAGE : 0;
    // To the CPU, pages advised to stay on the GPU are left there (an ignored hint).
    const first = region.va / PAGE;
    const staying = m.advice
      .slice(first, first + region.pages)
      .filter((advice) => advice?.preferred === 'gpu').length;
    const { ignored } = outcome.value;
    if (ignored < beyond || ignored > len || (this.to === 'cpu' && ignored > staying * PAGE))
      throw new Error(`${String(this)}: ignored ${ignored} bytes of ${len}`);
    if (this.to !== 'cpu') return;
    for (let page = first; page < first + region.pages; page++)
      if (m.advice[page]?.preferred !== 'gpu') m.cpuValid(page * PAGE, PAGE);
  }
  toString(): string {
    return `prefetch(#${this.pick}, ${this.to}) with ${String(this.meanwhile ?? 'nothing')}`;
  }
}

export class GpuRead extends RegionCommand {
  constructor(
    pick: number,
    readonly at: number,
    readonly size: number,
  ) {
    super(pick);
  }
  async run(m: SpaceModel, r: RealSystem): Promise<void> {
    const { va, len } = span(this.region(m), this.at, this.size);
    const outcome = await within(
      String(this),
      outcomeOfAsync(() => r.gpu.read(va, len)),
    );
    const { expected, allowed } = budgetOutcome(va, len, m.refusal(va, len, 'read'));
    if (expectOutcome(String(this), outcome, expected, allowed) && outcome.ok)
      expectBytes(String(this), outcome.value, m.bytes.subarray(va, va + len));
  }
  toString(): string {
    return `gpu.read(#${this.pick}, ${this.at.toFixed(2)}, ${this.size.toFixed(2)})`;
  }
}

export class GpuWrite extends RegionCommand {
  constructor(
    pick: number,
    readonly at: number,
    readonly size: number,
    readonly seed: number,
  ) {
    super(pick);
  }
  async run(m: SpaceModel, r: RealSystem): Promise<void> {
    const { va, len } = span(this.region(m), this.at, this.size, 4);
    const data = pattern(len, this.seed);
    const outcome = await within(
      String(this),
      outcomeOfAsync(() => r.gpu.write(va, data)),
    );
    const { expected, allowed } = budgetOutcome(va, len, m.refusal(va, len, 'write'));
    if (!expectOutcome(String(this), outcome, expected, allowed)) return;
    m.gpuWrite(va, data);
    await expectWrittenThrough(String(this), m, r, va, len);
  }
  toString(): string {
    return `gpu.write(#${this.pick}, ${this.at.toFixed(2)}, ${this.size.toFixed(2)})`;
  }
}

/**
 * A kernel adds `k` to every u32 of a region: with `uses`, through a named
 * range, or in fault mode; by loads and stores or atomics.
 */
export class KernelAdd extends RegionCommand {
  constructor(
    pick: number,
    readonly k: number,
    readonly mode: 'uses' | 'named' | 'fault',
    readonly atomic: boolean,
  ) {
    super(pick);
  }
  async run(m: SpaceModel, r: RealSystem): Promise<void> {
    const region = this.region(m);
    const len = region.pages * PAGE;
    const words = len / 4;
    const workgroups = Math.ceil(words / 64);
    const run = () => {
      if (this.mode === 'named') {
        const kernel = this.atomic ? r.kernels.namedAtomicAdd : r.kernels.namedAdd;
        const uses = [{ name: 'r', va: region.va, len }];
        return kernel.run({ workgroups, params: { k: this.k }, uses });
      }
      const kernel = this.atomic ? r.kernels.atomicAdd : r.kernels.add;
      const uses =
        this.mode === 'uses' ? [{ va: region.va, len, access: 'readwrite' as const }] : undefined;
      return kernel.run({
        workgroups,
        params: { va: region.va, words, k: this.k },
        ...(uses ? { uses } : {}),
      });
    };
    const outcome = await within(String(this), outcomeOfAsync(run));
    // Which page a refused run names first is the runtime's choice: compare code and reason.
    const { expected, allowed } = budgetOutcome(region.va, len, m.refusal(region.va, len, 'write'));
    if (!expectOutcome(String(this), outcome, expected, allowed, false)) return;
    m.gpuAddWords(region.va, len, this.k);
    await expectWrittenThrough(String(this), m, r, region.va, len);
  }
  toString(): string {
    return `kernel ${this.atomic ? 'atomicAdd' : 'add'} ${this.k} (#${this.pick}, ${this.mode})`;
  }
}

/**
 * After a device-side write of [va, va + len) resolved: pages advised
 * read-mostly are `shared` again, and those preferred on the CPU are not
 * GPU-dirty (written through before the call resolved).
 */
async function expectWrittenThrough(
  what: string,
  m: SpaceModel,
  r: RealSystem,
  va: number,
  len: number,
): Promise<void> {
  const first = Math.floor(va / PAGE);
  const states = await r.gpu.snapshot(
    first * PAGE,
    Math.ceil((va + len) / PAGE) * PAGE - first * PAGE,
  );
  states.forEach((state, i) => {
    const advice = m.advice[first + i];
    const ok = advice?.readMostly
      ? state.state === 'shared'
      : advice?.preferred !== 'cpu' || state.dirty !== 'gpu';
    if (!ok)
      throw new Error(
        `${what}: page ${first + i}, advised ${JSON.stringify(advice)}, is ${state.state} dirty '${state.dirty}' after the write resolved`,
      );
  });
}

/** Advises a span of a region; every later step checks the snapshot reports it. */
export class Advise extends RegionCommand {
  constructor(
    pick: number,
    readonly at: number,
    readonly size: number,
    readonly advice: Advice,
  ) {
    super(pick);
  }
  run(m: SpaceModel, r: RealSystem): Promise<void> {
    const { va, len } = span(this.region(m), this.at, this.size);
    r.gpu.advise(va, len, this.advice);
    m.advise(va, len, this.advice);
    return Promise.resolve();
  }
  toString(): string {
    return `advise(#${this.pick}, ${this.at.toFixed(2)}, ${this.size.toFixed(2)}, ${JSON.stringify(this.advice)})`;
  }
}

export class Sync implements Command {
  check(m: Readonly<SpaceModel>): boolean {
    return m.mirrored;
  }
  async run(m: SpaceModel, r: RealSystem): Promise<void> {
    expectOutcome(
      'sync',
      await within(
        'sync',
        outcomeOfAsync(() => r.gpu.sync()),
      ),
      undefined,
    );
    m.allCpuValid();
  }
  toString(): string {
    return 'sync()';
  }
}

/** Detaches the mirror (writing every GPU-dirty page back) and attaches a new one on the same device. */
export class Reattach implements Command {
  check(): boolean {
    return true;
  }
  async run(m: SpaceModel, r: RealSystem): Promise<void> {
    expectOutcome(
      'detach',
      await within(
        'detach',
        outcomeOfAsync(() => r.gpu.detach()),
      ),
      undefined,
    );
    m.allCpuValid();
    m.forgetAdvice();
    Object.assign(r, await within('attach', attachMirror(r.space, r.device)));
  }
  toString(): string {
    return 'detach(); attach()';
  }
}

/**
 * Destroys the device: the pages the GPU held dirty lose their GPU bytes
 * (they read as their last CPU bytes), every later call on the mirror
 * rejects with DeviceLostError listing exactly those pages, and a new
 * mirror attaches on a new device.
 */
export class DestroyDevice implements Command {
  constructor(private readonly devices: DeviceSource) {}
  check(): boolean {
    return true;
  }
  async run(m: SpaceModel, r: RealSystem): Promise<void> {
    const states = await r.gpu.snapshot(0, SPACE_PAGES * PAGE);
    const dirty = states.flatMap((state, page) => (state.dirty === 'gpu' ? [page] : []));
    // Pages written back since (e.g. by CPU fault-around) lose nothing.
    states.forEach((state, page) => {
      if (state.dirty !== 'gpu') m.cpuValid(page * PAGE, PAGE);
    });
    r.device.destroy();
    this.devices.replace();
    await within('device.lost', r.device.lost);
    await within('detach after loss', r.gpu.detach());
    const refused = await outcomeOfAsync(() => r.gpu.migrate(PAGE, PAGE, 'cpu'));
    if (refused.ok || refused.code !== 'DEVICE_LOST')
      throw new Error('a call after device loss did not reject with DeviceLostError');
    const error = await r.gpu.sync().catch((caught: unknown) => caught);
    if (!(error instanceof DeviceLostError))
      throw new Error('sync after device loss did not throw DeviceLostError');
    const unsaved = error.unsaved.flatMap(({ va, len }) =>
      Array.from({ length: len / PAGE }, (_, i) => va / PAGE + i),
    );
    if (unsaved.join() !== dirty.join())
      throw new Error(
        `device loss reported unsaved pages [${unsaved.join()}], the GPU-dirty pages were [${dirty.join()}]`,
      );
    m.loseGpuPages(dirty);
    m.forgetAdvice();
    r.device = await this.devices.device();
    Object.assign(r, await within('attach', attachMirror(r.space, r.device)));
  }
  toString(): string {
    return 'device.destroy(); attach(new device)';
  }
}
