/**
 * A compiled kernel over the shared address space: compilation (with the
 * WGSL prelude, pipelines cached per device), runs in their two modes, and
 * the kernel's lifecycle. The two modes are written down where they run:
 * declared-run.ts (with `uses`) and fault-mode-run.ts (without).
 */
import { InvalidArgumentError, invariant } from '../errors.ts';
import { declareUses, submitDeclared, type DeclaredUses } from './declared-run.ts';
import { hoistDirectives } from './directives.ts';
import { wrapEntryPoint } from './entry-wrapper.ts';
import { runFaultMode } from './fault-mode-run.ts';
import {
  declaredParams,
  encodeParams,
  kernelCode,
  kernelEntryPoint,
  kernelWorkgroupSize,
  optionsObject,
  paramsSize,
  rangesOffset,
  workgroupDims,
  type ParamList,
} from './kernel-arguments.ts';
import type { KernelOptions, RunCounts, RunOptions, RunResult } from './kernel-options.ts';
import type {
  BatchDispatch,
  Dispatch,
  KernelRuntime,
  RuntimeKernel,
  Submitted,
  Workgroups,
} from './kernel-runtime.ts';
import { MODE_COLLECT, USE_WORDS } from './kernel-layout.ts';
import {
  declaredRanges,
  writeContiguousFrames,
  writeRangeDescriptors,
  type RangeList,
} from './named-ranges.ts';
import { cachedPipeline, type CompiledKernel } from './pipeline-cache.ts';
import { prelude, usesAtomics } from './prelude.ts';

export type {
  KernelOptions,
  KernelUse,
  NamedUse,
  RunOptions,
  RunResult,
  UseAccess,
} from './kernel-options.ts';

/** What a kernel declared at compile time that its runs must give. */
interface Signature {
  readonly paramList: ParamList;
  readonly ranges: RangeList;
}

/** A run's arguments, checked and encoded at the call. */
interface PreparedRun {
  readonly workgroups: Workgroups;
  readonly params: ArrayBuffer;
  /** With `uses`: the declared runs, and the holds taken at the call. */
  readonly declared: DeclaredUses | undefined;
}

/**
 * A WGSL kernel compiled with webhmm's prelude, run over the shared address
 * space: it loads and stores through the same virtual addresses workers use,
 * pointers included. Get one from `gpu.kernel(options)`.
 *
 * ```ts
 * const scale = gpu.kernel({
 *   code: `
 *     @compute @workgroup_size(64)
 *     fn main(@builtin(global_invocation_id) id: vec3u) {
 *       if (id.x >= hmm_params.n) { return; }
 *       let va = hmm_params.x + id.x * 4u;
 *       hmm_store_f32(va, 2.0 * hmm_load_f32(va));
 *     }`,
 *   params: { n: 'u32', x: 'u32' },
 * });
 * const { ms, pagesWritten } = await scale.run({
 *   workgroups: Math.ceil(n / 64),
 *   params: { n, x },
 *   uses: [{ va: x, len: n * 4, access: 'readwrite' }],
 * });
 * scale.destroy();
 * ```
 *
 * - With `uses`, the declared ranges are checked and made resident in one
 *   batch and held for the whole run; the kernel runs once; only the pages
 *   it stored to become dirty. An access outside `uses` fails the run with
 *   AccessError 'undeclared'.
 * - Without `uses` (fault mode), collecting passes discover the pages the
 *   kernel touches and migrate them with density prefetch (within the
 *   budget, never pages other threads hold) until a pass faults no more;
 *   then the real pass runs. Addresses that depend on the kernel's own
 *   stores or atomics are not supported (declare `uses`).
 * - Whatever index arithmetic the kernel does with translated words, a store
 *   lands only in a page the run may write and marks it dirty; any other
 *   fails the run with AccessError 'undeclared'.
 *
 * Runs of the kernels of one mirror submit in call order. Runs with `uses`
 * called in one task are pipelined: submitted back to back, their status
 * read back once, each settling with its own result or error.
 * `destroy()` frees the kernel's GPU objects; detaching the mirror destroys
 * its kernels. See docs/kernels.md.
 */
export class Kernel implements RuntimeKernel {
  /**
   * Resolves when the kernel is compiled; rejects with InvalidArgumentError
   * 'wgsl' (the message names the user's line) if the code does not compile.
   */
  readonly ready: Promise<void>;
  private pipeline: CompiledKernel | undefined;
  private group: GPUBindGroup;
  private groupGeneration: number;
  private destroyed = false;

  private constructor(
    private readonly runtime: KernelRuntime,
    compiled: Promise<CompiledKernel>,
    private readonly signature: Signature,
    private readonly params: GPUBuffer,
    private readonly entryPoint: string,
  ) {
    this.group = runtime.bindGroup(params, this.label);
    this.groupGeneration = runtime.generation;
    this.ready = compiled.then((pipeline) => {
      this.pipeline = pipeline;
    });
    // A compile error is reported by ready and by every run.
    this.ready.catch(() => undefined);
  }

  /**
   * Starts compiling `options.code` with the prelude on the runtime's device
   * (pipelines are cached per device) and registers the kernel with the
   * runtime, which destroys it when it is destroyed itself. `ready` and
   * every `run` report a compile error.
   * @throws DeviceLostError once the mirror is detached or lost;
   *   InvalidArgumentError naming the bad option (kernel-arguments.ts:
   *   'bad-value'; 'not-integer', 'zero' or 'too-large' for workgroupSize),
   *   before anything is built
   */
  static compile(runtime: KernelRuntime, given: KernelOptions): Kernel {
    const { device, space, zeroFrame, sinkFrame } = runtime.host;
    runtime.host.assertAttached();
    const options = optionsObject<KernelOptions>('options', given);
    const code = kernelCode(options);
    const entryPoint = kernelEntryPoint(options);
    const workgroupSize = kernelWorkgroupSize(options);
    const paramList = declaredParams(options.params);
    const ranges = declaredRanges(options.ranges);
    const head = prelude({
      pageShift: space.table.pageShift,
      pageCount: space.table.pageCount,
      zeroFrame,
      sinkFrame,
      params: paramList,
      workgroupSize,
      atomics: usesAtomics(code, ranges),
      ranges,
    });
    // WGSL wants directives first: above the prelude (pipeline-cache.ts).
    const { directives, code: body } = hoistDirectives(code);
    const wrapped = wrapEntryPoint(body, entryPoint);
    const pipeline = wrapped
      ? cachedPipeline(device, {
          directives,
          prelude: head,
          code: wrapped.code,
          insertion: wrapped.insertion,
          entryPoint,
          layout: runtime.pipelineLayout,
        })
      : Promise.reject(
          new InvalidArgumentError(
            'code',
            entryPoint,
            'wgsl',
            `no @compute function named ${entryPoint} (fn ${entryPoint}(...) with no return type)`,
          ),
        );
    const params = device.createBuffer({
      label: `webhmm kernel ${entryPoint} params`,
      size: paramsSize(paramList.length, ranges.length),
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    const kernel = new Kernel(runtime, pipeline, { paramList, ranges }, params, entryPoint);
    runtime.register(kernel);
    return kernel;
  }

  /**
   * Runs the kernel; resolves once it has completed, with its wall time and
   * what it moved. Arguments are checked at the call (a rejection then
   * changes nothing); with `uses`, the run holds its pages from the call on
   * when no other run is queued, so a CPU write made after `run()` waits for
   * the kernel.
   * @returns a promise that rejects with InvalidArgumentError (naming the
   *   bad argument, e.g. 'params.n' 'not-integer' or 'workgroups.x'
   *   'too-large', see kernel-arguments.ts; 'wgsl' for code that did not
   *   compile; 'destroyed' after `destroy()`), AccessError (a declared use
   *   out of range, unmapped, freed or protected; or an access the kernel may
   *   not make: its other stores landed, `touched` lists their pages),
   *   OutOfMemoryError 'budget', WouldBlockError ('reentrant' on pages of
   *   this thread's own scope or lease; 'timeout'), or DeviceLostError (the
   *   mirror is detached or its device lost). A run refused for its
   *   arguments or uses holds and moves nothing.
   */
  run(options: RunOptions): Promise<RunResult> {
    const started = performance.now();
    let prepared: PreparedRun;
    try {
      prepared = this.prepare(options);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    return this.runtime.schedule(() => this.submit(prepared, started));
  }

  /**
   * Frees the kernel's parameter buffer and takes it out of its runtime.
   * Idempotent; a later `run()` rejects with InvalidArgumentError 'destroyed'.
   */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    // A pass encoded into an open batch may still copy into it.
    this.runtime.retire(this.params);
    this.runtime.unregister(this);
  }

  private get label(): string {
    return `webhmm kernel ${this.entryPoint}`;
  }

  /** Checks and encodes a run's arguments; with `uses`, takes the holds it can now. */
  private prepare(given: RunOptions): PreparedRun {
    this.runtime.host.assertAttached();
    this.assertLive();
    const options = optionsObject<RunOptions>('options', given);
    const workgroups = workgroupDims(options.workgroups);
    // Checked before the uses, which may take holds.
    const { paramList, ranges } = this.signature;
    const params = encodeParams(paramList, options.params, ranges.length);
    if (options.uses === undefined && ranges.length > 0) {
      throw new InvalidArgumentError(
        'uses',
        undefined,
        'bad-value',
        `a kernel with named ranges runs with uses binding each (${ranges.map(([name]) => name).join(', ')})`,
      );
    }
    const declared =
      options.uses !== undefined ? declareUses(this.runtime, options.uses, ranges) : undefined;
    if (declared) {
      writeRangeDescriptors(params, rangesOffset(paramList.length), declared.bound);
    }
    return { workgroups, params, declared };
  }

  /**
   * The run itself, its turn to submit come: with `uses`, submitted into the
   * open batch, completing with it; in fault mode, after every batch
   * completed, and completed before the next run submits.
   */
  private async submit(prepared: PreparedRun, started: number): Promise<Submitted<RunResult>> {
    const { runtime } = this;
    const { host } = runtime;
    const { declared } = prepared;
    // Early holds are ours to release until submitDeclared takes them over.
    let owned = declared?.early;
    const timed = (counts: RunCounts): RunResult => ({
      ...counts,
      ms: performance.now() - started,
    });
    try {
      // Runs submitted before must not wait for this kernel to compile.
      if (!this.pipeline) void runtime.closeBatch();
      await this.ready;
      host.assertAttached();
      this.assertLive();
      if (declared) {
        owned = undefined;
        const submitted = await submitDeclared(runtime, this.batchDispatcher(prepared), declared);
        return { completion: submitted.completion.then(timed) };
      }
      await runtime.drain();
      runtime.write(this.params, prepared.params);
      const counts = await runFaultMode(host, this.dispatcher(prepared.workgroups));
      return { completion: Promise.resolve(timed(counts)) };
    } catch (error) {
      if (owned) host.space.table.releaseHolds(owned);
      throw error;
    }
  }

  /** The real pass of a run with `uses`, its parameters staged with it. */
  private batchDispatcher(prepared: PreparedRun): BatchDispatch {
    return {
      params: prepared.params,
      submit: (batch, usesTable) => {
        this.assertLive();
        this.runtime.submitPass(
          batch,
          {
            pipeline: this.compiled().variant(this.contiguousFrames(prepared)),
            group: this.bindGroup(),
            workgroups: prepared.workgroups,
            uses: usesTable.length / USE_WORDS,
            label: this.label,
          },
          { buffer: this.params, data: prepared.params },
          usesTable,
        );
      },
    };
  }

  /** Passes of this kernel with `workgroups`; each checks the kernel is still live. */
  private dispatcher(workgroups: Workgroups): Dispatch {
    return (mode, uses) => {
      this.assertLive();
      return this.runtime.pass({
        pipeline: this.compiled().variant(0, mode === MODE_COLLECT),
        group: this.bindGroup(),
        workgroups,
        mode,
        uses,
        label: this.label,
      });
    };
  }

  /** @throws InvalidArgumentError 'destroyed' after destroy() */
  private assertLive(): void {
    if (this.destroyed) {
      throw new InvalidArgumentError(
        'kernel',
        this.entryPoint,
        'destroyed',
        'kernel.destroy() was called; compile it again with gpu.kernel()',
      );
    }
  }

  /**
   * Marks the named ranges of a run whose held pages sit in consecutive
   * frames, in its staged parameters; returns their mask (the pipeline
   * variant that reaches them as base + i).
   */
  private contiguousFrames(prepared: PreparedRun): number {
    const { paramList, ranges } = this.signature;
    if (ranges.length === 0 || !prepared.declared) return 0;
    const { host } = this.runtime;
    return writeContiguousFrames(
      prepared.params,
      rangesOffset(paramList.length),
      prepared.declared.bound,
      host.space.table.pageSize,
      (page) => host.migrator.frameMap.frameOf(page),
    );
  }

  private compiled(): CompiledKernel {
    invariant(this.pipeline, 'run before compile');
    return this.pipeline;
  }

  /** Group 0, rebuilt when the runtime replaced a shared buffer since it was made. */
  private bindGroup(): GPUBindGroup {
    if (this.groupGeneration !== this.runtime.generation) {
      this.group = this.runtime.bindGroup(this.params, this.label);
      this.groupGeneration = this.runtime.generation;
    }
    return this.group;
  }
}
