/**
 * What a kernel is compiled from and what its runs take and give: the public
 * option and result types of `gpu.kernel()` and `kernel.run()`, with their
 * units and bounds. No logic. See docs/kernels.md for the whole story.
 */
import type { ParamType } from './prelude.ts';

/**
 * What `gpu.kernel()` compiles. `code` and `params` are checked at once (a
 * bad one throws InvalidArgumentError 'bad-value' before anything is built);
 * the rest is checked by compilation.
 */
export interface KernelOptions {
  /**
   * WGSL with a `@compute` entry point. It declares no bindings in group 0
   * (the prelude owns group 0) and reaches shared memory through the
   * prelude's `hmm_*` functions of a u32 virtual address. A non-empty string.
   */
  readonly code: string;
  /**
   * The name of a `@compute` function of `code`. Default 'main'. A name that
   * is not one makes `ready` and every run reject with InvalidArgumentError 'wgsl'.
   */
  readonly entryPoint?: string;
  /**
   * Becomes the WGSL constant `HMM_WORKGROUP_SIZE: u32` (the value taken
   * modulo 2^32), for the code's `@workgroup_size(HMM_WORKGROUP_SIZE)`.
   * Invocations in one workgroup from 1 to the device's
   * `maxComputeInvocationsPerWorkgroup` (256 by default); a size the device
   * refuses fails compilation ('wgsl'). Default: no such constant.
   */
  readonly workgroupSize?: number;
  /**
   * The kernel's parameters, by name (a WGSL identifier: a letter, then
   * letters, digits or `_`), each typed 'u32', 'i32' or 'f32'; the code reads
   * them as `hmm_params.<name>`. Default: none.
   */
  readonly params?: Readonly<Record<string, ParamType>>;
}

/**
 * One range a run declares it touches. It covers every page that holds any of
 * its bytes: pages `floor(va / pageSize)` up to and including
 * `floor((va + len - 1) / pageSize)`. Ranges may overlap; a page's access is
 * the union of the accesses of the ranges that cover it.
 */
export interface KernelUse {
  /** The range's first byte: a virtual (byte) address, an integer >= 0 (InvalidArgumentError otherwise). */
  readonly va: number;
  /**
   * The range's length in bytes, an integer > 0 (InvalidArgumentError
   * otherwise); the range ends at `va + len` (exclusive), which may not pass
   * the end of the space (AccessError 'out-of-range').
   */
  readonly len: number;
  /**
   * 'read': the kernel only loads from these pages (they become `shared`);
   * 'write' or 'readwrite': it may store to them (they become `gpu`). A store
   * to a page declared only for reading fails the run.
   */
  readonly access: 'read' | 'write' | 'readwrite';
}

/** One run of a compiled kernel. */
export interface RunOptions {
  /**
   * Workgroups to dispatch: a count, or `[x, y?, z?]`; each an integer from 1
   * to 65535 (missing dimensions are 1).
   */
  readonly workgroups: number | readonly [number, number?, number?];
  /**
   * Values of the parameters declared at `kernel()`, by name. Each is a
   * number other than NaN; a declared parameter left out is 0; an undeclared
   * name fails the run (InvalidArgumentError). 'u32' and 'i32' values are
   * truncated and wrapped modulo 2^32 (as `>>> 0` and `| 0` do), 'f32' values
   * rounded to float32.
   */
  readonly params?: Readonly<Record<string, number>>;
  /**
   * The ranges the kernel touches. With them the run checks and fetches them
   * in one batch and runs once; an access outside them fails the run. Without
   * them (fault mode) the runtime discovers the pages with collecting passes.
   */
  readonly uses?: readonly KernelUse[];
}

/** What a completed run reports. */
export interface RunResult {
  /** Wall time from the `run()` call to completion, in milliseconds (queueing included). */
  readonly ms: number;
  /** Fault-collecting passes that found faults (0 for a run with `uses`). */
  readonly replays: number;
  /** Pages the run had to fetch or change the state of, counted in pages. */
  readonly gpuFaults: number;
  /** Bytes uploaded to the GPU for the run. */
  readonly bytesToGpu: number;
  /** Pages the kernel stored to (now GPU-dirty), counted in pages. */
  readonly pagesWritten: number;
}

/** A run's result before its wall time is known. */
export type RunCounts = Omit<RunResult, 'ms'>;
