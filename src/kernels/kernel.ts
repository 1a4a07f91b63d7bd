/**
 * A compiled kernel over the shared address space, and its runs.
 *
 * - With `uses`: the declared ranges are checked and made resident in one
 *   batch (read: `zero`/`cpu` -> `shared`; write: -> `gpu`) and held for the
 *   whole run; the kernel runs once; only the pages it stored to become dirty.
 *   An access outside `uses` fails the run with AccessError 'undeclared'.
 * - Without `uses` (fault mode): collecting passes with stores suppressed
 *   record what needs a change of state; the runtime migrates it with 2 MiB
 *   fault-around and repeats until a pass faults no more; then it holds every
 *   page the kernel touched and runs the real pass.
 *
 * Fault mode cannot follow addresses that depend on the kernel's own stores
 * or atomics (the collecting passes see none of them): declare `uses` for
 * such kernels. A real pass that still faults fails with InvalidArgumentError.
 * Loops driven by loaded data should stop when `hmm_faulted()` is true, since
 * non-resident loads read 0 during collection.
 */
import { AccessError, InvalidArgumentError, invariant } from '../errors.ts';
import {
  deviceCanRead,
  deviceCanWrite,
  faultAroundRun,
  type MigrationResult,
  type PageRun,
} from '../gpu/migration.ts';
import type { InvalidateEvent } from '../space/notifier.ts';
import type { Hold } from '../space/page-table.ts';
import {
  PROT_NONE,
  PROT_RW,
  PTE_FREED,
  PTE_PROT_MASK,
  PTE_PROT_SHIFT,
  PTE_STATE_MASK,
  PTE_UNMAPPED,
} from '../space/shared-layout.ts';
import {
  ACCESSED_READ,
  ACCESSED_WRITE,
  DIRTY_PAGES_PER_WORD,
  ERROR_OUT_OF_RANGE,
  ERROR_STORE_READ_ONLY,
  ERROR_UNDECLARED,
  FAULT_BITS_PER_PAGE,
  FAULT_PAGES_PER_WORD,
  FAULT_READ,
  FAULT_WRITE,
  MODE_COLLECT,
  MODE_RUN,
  USE_READ,
  USE_WORDS,
  USE_WRITE,
  USES_ALL,
} from './kernel-layout.ts';
import type { KernelRuntime, PassStatus, Workgroups } from './kernel-runtime.ts';
import { prelude, preludeLines, usesAtomics, type ParamType } from './prelude.ts';

export interface KernelOptions {
  /** WGSL with an entry point; no bindings in group 0 (the prelude owns it). */
  readonly code: string;
  /** Default 'main'. */
  readonly entryPoint?: string;
  /** Defines `HMM_WORKGROUP_SIZE` for the code's `@workgroup_size`. */
  readonly workgroupSize?: number;
  /** Parameters with their WGSL types, read as `hmm_params.<name>`. */
  readonly params?: Readonly<Record<string, ParamType>>;
}

export interface KernelUse {
  readonly va: number;
  readonly len: number;
  readonly access: 'read' | 'write' | 'readwrite';
}

export interface RunOptions {
  /** Workgroups to dispatch: a count or [x, y?, z?], each at most 65535. */
  readonly workgroups: number | readonly [number, number?, number?];
  readonly params?: Readonly<Record<string, number>>;
  /** The ranges the kernel touches; without them the run uses fault mode. */
  readonly uses?: readonly KernelUse[];
}

export interface RunResult {
  /** Wall time of the run, ms. */
  readonly ms: number;
  /** Collecting passes that found faults. */
  readonly replays: number;
  /** Pages the run had to fetch or change state of. */
  readonly gpuFaults: number;
  readonly bytesToGpu: number;
  /** Pages the kernel stored to. */
  readonly pagesWritten: number;
}

/** A declared run of pages with its USE_* bits. */
interface UseRun extends PageRun {
  readonly access: number;
}

const FAULT_AROUND_BYTES = 2 << 20;
/** Collecting passes before a run gives up (a kernel whose faults never settle). */
const MAX_REPLAYS = 4096;
const pipelines = new WeakMap<GPUDevice, Map<string, Promise<GPUComputePipeline>>>();

export class Kernel {
  private group: GPUBindGroup;
  private groupGeneration: number;
  /** Resolves when the kernel is compiled; rejects with its compile error. */
  readonly ready: Promise<void>;
  private pipeline: GPUComputePipeline | undefined;

  private constructor(
    private readonly runtime: KernelRuntime,
    compiled: Promise<GPUComputePipeline>,
    private readonly paramNames: readonly (readonly [string, ParamType])[],
    private readonly params: GPUBuffer,
    private readonly label: string,
  ) {
    this.group = runtime.bindGroup(params, label);
    this.groupGeneration = runtime.generation;
    this.ready = compiled.then((pipeline) => {
      this.pipeline = pipeline;
    });
    // A compile error is reported by ready and by every run.
    this.ready.catch(() => undefined);
  }

  /**
   * Starts compiling `options.code` with the prelude (pipelines are cached
   * per device); `ready` and `run` report a compile error.
   * @throws InvalidArgumentError 'bad-value' for bad options, at once
   */
  static compile(runtime: KernelRuntime, options: KernelOptions): Kernel {
    const { device, space, zeroFrame, sinkFrame } = runtime.host;
    if (typeof options.code !== 'string' || options.code.length === 0) {
      throw new InvalidArgumentError('code', options.code, 'bad-value', 'WGSL source');
    }
    const paramNames = Object.entries(options.params ?? {});
    for (const [name, type] of paramNames) {
      if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(name) || !['u32', 'i32', 'f32'].includes(type)) {
        throw new InvalidArgumentError(
          'params',
          `${name}: ${type}`,
          'bad-value',
          "an identifier typed 'u32', 'i32' or 'f32'",
        );
      }
    }
    const entryPoint = options.entryPoint ?? 'main';
    const head = prelude({
      pageShift: space.table.pageShift,
      pageCount: space.table.pageCount,
      zeroFrame,
      sinkFrame,
      params: paramNames,
      workgroupSize: options.workgroupSize,
      atomics: usesAtomics(options.code),
    });
    const code = `${head}${options.code}`;
    const key = `${entryPoint}\n${code}`;
    let cache = pipelines.get(device);
    if (!cache) pipelines.set(device, (cache = new Map<string, Promise<GPUComputePipeline>>()));
    let pipeline = cache.get(key);
    if (!pipeline) {
      pipeline = createPipeline(runtime, code, entryPoint, preludeLines(head));
      cache.set(key, pipeline);
      pipeline.catch(() => cache.delete(key));
    }
    const params = device.createBuffer({
      label: `webhmm kernel ${entryPoint} params`,
      size: Math.max(16, Math.ceil((paramNames.length * 4) / 16) * 16),
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    return new Kernel(runtime, pipeline, paramNames, params, `webhmm kernel ${entryPoint}`);
  }

  /** Runs the kernel; resolves once it has completed. See the module doc for the two modes. */
  run(options: RunOptions): Promise<RunResult> {
    const started = performance.now();
    let workgroups: Workgroups;
    let values: ArrayBuffer;
    let declared: { runs: UseRun[]; holds: Hold[] | undefined } | undefined;
    try {
      this.runtime.host.assertAttached();
      workgroups = workgroupDims(options.workgroups);
      values = this.encodeParams(options.params ?? {});
      if (options.uses) {
        // The run holds its pages from the call on, when it can take them at once
        // and no earlier run is queued (which might need them first): a CPU
        // write made after run() was called then waits for the kernel.
        const runs = this.declaredRuns(options.uses);
        const holds: Hold[] = runs.map((run) => ({ ...run, kind: 'exclusive-long' }));
        const taken =
          this.runtime.idle && this.runtime.host.space.table.tryHoldAll(holds) === undefined;
        declared = { runs, holds: taken ? holds : undefined };
      }
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    return this.runtime.serialize(async () => {
      // Early holds are ours to release until runDeclared takes them over.
      let owned = declared?.holds;
      try {
        await this.ready;
        this.runtime.host.assertAttached();
        this.runtime.host.device.queue.writeBuffer(this.params, 0, values);
        let result: Omit<RunResult, 'ms'>;
        if (declared) {
          owned = undefined;
          result = await this.runDeclared(workgroups, declared.runs, declared.holds);
        } else {
          result = await this.runFaulting(workgroups);
        }
        return { ...result, ms: performance.now() - started };
      } catch (error) {
        if (owned) this.runtime.host.space.table.releaseHolds(owned);
        throw error;
      }
    });
  }

  destroy(): void {
    this.params.destroy();
  }

  // ---------------------------------------------------------------- with uses

  /** @param early the holds run() took at the call, if it could */
  private async runDeclared(
    workgroups: Workgroups,
    runs: readonly UseRun[],
    early: Hold[] | undefined,
  ): Promise<Omit<RunResult, 'ms'>> {
    const { host } = this.runtime;
    const table = new Uint32Array(runs.length * USE_WORDS);
    runs.forEach((run, i) =>
      table.set([run.first, run.first + run.count, run.access, 0], i * USE_WORDS),
    );
    const exclusive: Hold[] = early ?? runs.map((run) => ({ ...run, kind: 'exclusive-long' }));
    if (!early)
      await host.space.table.holdAsync(exclusive, host.space.table.address(runs[0]?.first ?? 0));
    let holds: Hold[] = exclusive;
    const events: InvalidateEvent[] = [];
    let dirty: number[] = [];
    let fetched: MigrationResult;
    try {
      host.space.pollNotices();
      this.checkProtections(runs);
      const reads = runs.filter((run) => !(run.access & USE_WRITE));
      const writes = runs.filter((run) => run.access & USE_WRITE);
      const fetchStarted = performance.now();
      const read = await host.migrator.makeResident(reads, 'shared', events);
      const written = await host.migrator.makeResident(writes, 'gpu', events);
      fetched = { pages: read.pages + written.pages, bytes: read.bytes + written.bytes };
      host.migrator.countFetch(fetched.pages, runs, fetched, fetchStarted);
      // The kernel only reads these: CPU readers may join while it runs.
      holds = [
        ...host.space.table.downgradeHolds(
          exclusive.filter((_, i) => !((runs[i]?.access ?? 0) & USE_WRITE)),
        ),
        ...exclusive.filter((_, i) => (runs[i]?.access ?? 0) & USE_WRITE),
      ];
      host.beforeGpuUse();
      this.runtime.setUses(table);
      const status = await this.runtime.pass(
        this.compiled(),
        this.bindGroup(),
        workgroups,
        MODE_RUN,
        runs.length,
        false,
        this.label,
      );
      if (status.stored || status.errorKinds) {
        dirty = pagesOf(status.bits, DIRTY_PAGES_PER_WORD, 1, 1);
        host.migrator.markDirty(dirty);
      }
      if (status.errorKinds) throw this.runError(status, runs, dirty);
    } finally {
      host.space.table.releaseHolds(holds);
      host.space.announce(events);
    }
    return {
      replays: 0,
      gpuFaults: fetched.pages,
      bytesToGpu: fetched.bytes,
      pagesWritten: dirty.length,
    };
  }

  /** The declared ranges as disjoint page runs with merged access bits. */
  private declaredRuns(uses: readonly KernelUse[]): UseRun[] {
    const { space } = this.runtime.host;
    const access = new Map<number, number>();
    const accessBits: Record<string, number | undefined> = {
      read: USE_READ,
      write: USE_WRITE,
      readwrite: USE_READ | USE_WRITE,
    };
    for (const use of uses) {
      const bits = accessBits[use.access];
      if (bits === undefined)
        throw new InvalidArgumentError(
          'access',
          use.access,
          'bad-value',
          "'read', 'write' or 'readwrite'",
        );
      const { first, count } = space.pageSpan(use.va, use.len);
      for (let page = first; page < first + count; page++)
        access.set(page, (access.get(page) ?? 0) | bits);
    }
    const pages = [...access.keys()].sort((a, b) => a - b);
    const runs: { first: number; count: number; access: number }[] = [];
    for (const page of pages) {
      const bits = access.get(page) ?? 0;
      const last = runs[runs.length - 1];
      if (last && last.first + last.count === page && last.access === bits) last.count++;
      else runs.push({ first: page, count: 1, access: bits });
    }
    return runs;
  }

  /** @throws AccessError for a declared page whose protection forbids the declared access */
  private checkProtections(runs: readonly UseRun[]): void {
    const { table } = this.runtime.host.space;
    for (const run of runs) {
      for (let page = run.first; page < run.first + run.count; page++) {
        const pte = table.pte(page);
        if ((pte & PTE_STATE_MASK) === PTE_UNMAPPED) {
          throw new AccessError(table.address(page), pte & PTE_FREED ? 'freed' : 'unmapped');
        }
        const prot = (pte & PTE_PROT_MASK) >>> PTE_PROT_SHIFT;
        if (prot === PROT_NONE || (run.access & USE_WRITE && prot !== PROT_RW)) {
          throw new AccessError(table.address(page), 'protection', 'declared by a kernel run');
        }
      }
    }
  }

  // ---------------------------------------------------------------- fault mode

  private async runFaulting(workgroups: Workgroups): Promise<Omit<RunResult, 'ms'>> {
    const { host } = this.runtime;
    const { table } = host.space;
    let replays = 0;
    let gpuFaults = 0;
    let bytesToGpu = 0;
    // Pages brought in for this run stay held by it until it ends, so CPU
    // writers cannot undo a replay's work and the passes converge.
    const fetched = new FetchedPages();
    const events: InvalidateEvent[] = [];
    try {
      for (;;) {
        // Collect until a pass faults no more.
        host.beforeGpuUse();
        const status = await this.runtime.pass(
          this.compiled(),
          this.bindGroup(),
          workgroups,
          MODE_COLLECT,
          USES_ALL,
          true,
          this.label,
        );
        if (status.errorKinds) throw this.runError(status, [], []);
        const { bits } = status;
        if (status.faulted) {
          if (++replays > MAX_REPLAYS) {
            throw new InvalidArgumentError(
              'code',
              'kernel',
              'bad-value',
              `still faulting after ${MAX_REPLAYS} collecting passes`,
            );
          }
          const moved = await this.serviceFaults(
            pagesOf(bits, FAULT_PAGES_PER_WORD, FAULT_BITS_PER_PAGE, FAULT_READ),
            pagesOf(bits, FAULT_PAGES_PER_WORD, FAULT_BITS_PER_PAGE, FAULT_WRITE),
            fetched,
            events,
          );
          gpuFaults += moved.faulted;
          bytesToGpu += moved.bytes;
          continue;
        }
        // Hold every other page the kernel touched, then check nothing changed meanwhile.
        const written = pagesOf(bits, FAULT_PAGES_PER_WORD, FAULT_BITS_PER_PAGE, ACCESSED_WRITE);
        const writtenSet = new Set(written);
        const readOnly = pagesOf(
          bits,
          FAULT_PAGES_PER_WORD,
          FAULT_BITS_PER_PAGE,
          ACCESSED_READ,
        ).filter((page) => !writtenSet.has(page));
        const writeHolds: Hold[] = runsOf(written.filter((page) => !fetched.has(page))).map(
          (run) => ({ ...run, kind: 'exclusive-long' }),
        );
        const readHolds: Hold[] = runsOf(readOnly.filter((page) => !fetched.has(page))).map(
          (run) => ({ ...run, kind: 'scope-read' }),
        );
        const holds = [...writeHolds, ...readHolds];
        await table.holdAsync(holds, 0);
        let dirty: number[] = [];
        try {
          host.space.pollNotices();
          const stillGood =
            written.every((page) => deviceCanWrite(table.pte(page))) &&
            readOnly.every((page) => deviceCanRead(table.pte(page)));
          if (!stillGood) continue;
          // Fetched pages the kernel only reads: CPU readers may join while it runs.
          fetched.holds = table.downgradeHoldsExcept(fetched.holds, writtenSet);
          host.beforeGpuUse();
          const real = await this.runtime.pass(
            this.compiled(),
            this.bindGroup(),
            workgroups,
            MODE_RUN,
            USES_ALL,
            false,
            this.label,
          );
          if (real.stored) {
            dirty = pagesOf(real.bits, DIRTY_PAGES_PER_WORD, 1, 1);
            host.migrator.markDirty(dirty);
          }
          if (real.errorKinds) throw this.runError(real, [], dirty);
          if (real.faulted) {
            throw new InvalidArgumentError(
              'code',
              'kernel',
              'bad-value',
              'the real pass touched pages the collecting passes did not: its addresses depend on its own stores or atomics; declare uses',
            );
          }
        } finally {
          table.releaseHolds(holds);
        }
        return { replays, gpuFaults, bytesToGpu, pagesWritten: dirty.length };
      }
    } finally {
      table.releaseHolds(fetched.holds);
      host.space.announce(events);
    }
  }

  /**
   * Checks faulted pages, then holds (for the rest of the run) and migrates
   * them with fault-around: the aligned 2 MiB block around each page, within
   * its allocation. Pages the run holds already are migrated as they are.
   * @throws AccessError for an unmapped, freed or protection-violating page
   */
  private async serviceFaults(
    reads: readonly number[],
    writes: readonly number[],
    fetched: FetchedPages,
    events: InvalidateEvent[],
  ): Promise<{ faulted: number; bytes: number }> {
    const { host } = this.runtime;
    const { table } = host.space;
    const writeSet = new Set(writes);
    for (const page of [...reads, ...writes].sort((a, b) => a - b)) {
      const pte = table.pte(page);
      if ((pte & PTE_STATE_MASK) === PTE_UNMAPPED) {
        throw new AccessError(
          table.address(page),
          pte & PTE_FREED ? 'freed' : 'unmapped',
          'touched by a kernel',
        );
      }
      const prot = (pte & PTE_PROT_MASK) >>> PTE_PROT_SHIFT;
      if (prot === PROT_NONE || (writeSet.has(page) && prot !== PROT_RW)) {
        throw new AccessError(
          table.address(page),
          'protection',
          `a kernel ${writeSet.has(page) ? 'stored to' : 'read'} it`,
        );
      }
    }
    const toGpu = [...this.faultAround(writes, PROT_RW)];
    const toGpuSet = new Set(toGpu);
    const toShared = [...this.faultAround(reads, PROT_NONE + 1)].filter(
      (page) => !toGpuSet.has(page),
    );
    const started = performance.now();
    const newRuns = (pages: readonly number[]) =>
      runsOf(pages.filter((page) => !fetched.has(page)));
    fetched.add(await host.migrator.holdChecked(newRuns(toGpu), true, 'write'));
    fetched.add(await host.migrator.holdChecked(newRuns(toShared), true, 'read'));
    const [sharedRuns, gpuRuns] = [runsOf(toShared), runsOf(toGpu)];
    const shared = await host.migrator.makeResident(sharedRuns, 'shared', events);
    const owned = await host.migrator.makeResident(gpuRuns, 'gpu', events);
    const moved = { pages: shared.pages + owned.pages, bytes: shared.bytes + owned.bytes };
    const runs = [...sharedRuns, ...gpuRuns].sort((a, b) => a.first - b.first);
    host.migrator.countFetch(reads.length + writes.length, runs, moved, started);
    host.counters.replays++;
    return { faulted: reads.length + writes.length, bytes: moved.bytes };
  }

  /** `pages` plus the mapped pages of their 2 MiB blocks within their allocations whose protection is at least `minProt`. */
  private faultAround(pages: readonly number[], minProt: number): Set<number> {
    const { space } = this.runtime.host;
    const { table } = space;
    const block = Math.max(1, FAULT_AROUND_BYTES / table.pageSize);
    const out = new Set<number>(pages);
    const anchors = new Map<number, number>(); // block index -> a faulted page in it
    for (const page of pages)
      if (!anchors.has(Math.floor(page / block))) anchors.set(Math.floor(page / block), page);
    for (const anchor of anchors.values()) {
      const allocation = space.allocationRun(anchor);
      if (!allocation) continue;
      const around = faultAroundRun(anchor, anchor + 1, block, allocation);
      for (let page = around.first; page < around.first + around.count; page++) {
        const pte = table.pte(page);
        const prot = (pte & PTE_PROT_MASK) >>> PTE_PROT_SHIFT;
        if ((pte & PTE_STATE_MASK) !== PTE_UNMAPPED && prot >= minProt) out.add(page);
      }
    }
    return out;
  }

  // ---------------------------------------------------------------- helpers

  private runError(
    status: PassStatus,
    runs: readonly UseRun[],
    dirty: readonly number[],
  ): AccessError {
    const { table } = this.runtime.host.space;
    const va = status.errorVa ?? 0;
    const page = Math.floor(va / table.pageSize);
    const touched = dirty.map((p) => table.address(p));
    if (status.errorKinds & ERROR_OUT_OF_RANGE && page >= table.pageCount) {
      return new AccessError(va, 'out-of-range', 'a kernel access beyond the space', touched);
    }
    const declared = runs.find((run) => page >= run.first && page < run.first + run.count);
    if (declared && status.errorKinds & ERROR_STORE_READ_ONLY) {
      const prot = (table.pte(page) & PTE_PROT_MASK) >>> PTE_PROT_SHIFT;
      return prot === PROT_RW
        ? new AccessError(
            va,
            'undeclared',
            'a kernel stored to a range declared for reading',
            touched,
          )
        : new AccessError(va, 'protection', 'a kernel stored to a read-only page', touched);
    }
    invariant(
      status.errorKinds & (ERROR_UNDECLARED | ERROR_STORE_READ_ONLY | ERROR_OUT_OF_RANGE),
      'error kind',
    );
    return new AccessError(
      va,
      'undeclared',
      'a kernel touched a page outside its declared uses',
      touched,
    );
  }

  private compiled(): GPUComputePipeline {
    invariant(this.pipeline, 'run before compile');
    return this.pipeline;
  }

  private bindGroup(): GPUBindGroup {
    if (this.groupGeneration !== this.runtime.generation) {
      this.group = this.runtime.bindGroup(this.params, this.label);
      this.groupGeneration = this.runtime.generation;
    }
    return this.group;
  }

  private encodeParams(values: Readonly<Record<string, number>>): ArrayBuffer {
    const buffer = new ArrayBuffer(Math.max(16, Math.ceil((this.paramNames.length * 4) / 16) * 16));
    const view = new DataView(buffer);
    for (const name of Object.keys(values)) {
      if (!this.paramNames.some(([declared]) => declared === name)) {
        throw new InvalidArgumentError(
          'params',
          name,
          'bad-value',
          'not a parameter declared at kernel()',
        );
      }
    }
    this.paramNames.forEach(([name, type], i) => {
      const value = values[name] ?? 0;
      if (typeof value !== 'number' || Number.isNaN(value)) {
        throw new InvalidArgumentError(`params.${name}`, value, 'bad-value', `a ${type}`);
      }
      if (type === 'f32') view.setFloat32(i * 4, value, true);
      else if (type === 'i32') view.setInt32(i * 4, value, true);
      else view.setUint32(i * 4, value >>> 0, true);
    });
    return buffer;
  }
}

async function createPipeline(
  runtime: KernelRuntime,
  code: string,
  entryPoint: string,
  preludeLineCount: number,
): Promise<GPUComputePipeline> {
  const { device } = runtime.host;
  // A WGSL error is also a validation error: catch it here, report it from the compilation info.
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ label: `webhmm kernel ${entryPoint}`, code });
  const scoped = device.popErrorScope();
  const info = await module.getCompilationInfo();
  await scoped;
  const errors = info.messages.filter((message) => message.type === 'error');
  if (errors.length > 0) {
    const lines = errors.map((message) => {
      const line = message.lineNum - preludeLineCount;
      return line > 0
        ? `line ${line}:${message.linePos}: ${message.message}`
        : `in the prelude: ${message.message}`;
    });
    throw new InvalidArgumentError('code', entryPoint, 'wgsl', lines.join('; '));
  }
  try {
    return await device.createComputePipelineAsync({
      label: `webhmm kernel ${entryPoint}`,
      layout: runtime.pipelineLayout,
      compute: { module, entryPoint },
    });
  } catch (error) {
    throw new InvalidArgumentError(
      'code',
      entryPoint,
      'wgsl',
      error instanceof Error ? error.message : 'pipeline creation failed',
    );
  }
}

function workgroupDims(workgroups: RunOptions['workgroups']): Workgroups {
  const dims = typeof workgroups === 'number' ? [workgroups] : [...workgroups];
  const [x = 1, y = 1, z = 1] = dims;
  for (const [name, value] of [
    ['x', x],
    ['y', y],
    ['z', z],
  ] as const) {
    if (!Number.isInteger(value) || value < 1 || value > 65535) {
      throw new InvalidArgumentError(
        `workgroups.${name}`,
        value,
        'bad-value',
        'an integer from 1 to 65535',
      );
    }
  }
  return [x, y, z];
}

/** Pages whose `bit` is set in a bitmap of `perWord` pages of `bitsPerPage` bits each. */
function pagesOf(words: Uint32Array, perWord: number, bitsPerPage: number, bit: number): number[] {
  const pages: number[] = [];
  words.forEach((word, index) => {
    if (word === 0) return;
    for (let slot = 0; slot < perWord; slot++) {
      if ((word >>> (slot * bitsPerPage)) & bit) pages.push(index * perWord + slot);
    }
  });
  return pages;
}

/** Sorted pages as runs of consecutive pages. */
function runsOf(pages: readonly number[]): PageRun[] {
  const sorted = [...pages].sort((a, b) => a - b);
  const runs: { first: number; count: number }[] = [];
  for (const page of sorted) {
    const last = runs[runs.length - 1];
    if (last && last.first + last.count === page) last.count++;
    else if (!last || last.first + last.count < page) runs.push({ first: page, count: 1 });
  }
  return runs;
}

/** The pages a fault-mode run has brought in and holds (exclusively) until it ends. */
class FetchedPages {
  holds: Hold[] = [];
  private readonly pages = new Set<number>();

  has(page: number): boolean {
    return this.pages.has(page);
  }

  add(holds: readonly Hold[]): void {
    for (const hold of holds) {
      this.holds.push(hold);
      for (let page = hold.first; page < hold.first + hold.count; page++) this.pages.add(page);
    }
  }
}
