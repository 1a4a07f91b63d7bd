/**
 * What a kernel is compiled from and what its runs take and give: the public
 * option and result types of `gpu.kernel()` and `kernel.run()`, with their
 * units and bounds. No logic. See docs/kernels.md for the whole story.
 */
import type { ParamType } from './prelude.ts';

/**
 * What `gpu.kernel()` compiles. The options are checked at once (a bad one
 * throws InvalidArgumentError naming it before anything is built, see
 * kernel-arguments.ts); whether the code compiles is compilation's to say.
 */
export interface KernelOptions {
  /**
   * WGSL with a `@compute` entry point. It declares no bindings in group 0
   * (the prelude owns group 0) and reaches shared memory through the
   * prelude's `hmm_*` functions of a u32 virtual address. A non-empty string.
   */
  readonly code: string;
  /**
   * The name of a `@compute` function of `code`: a WGSL identifier
   * (InvalidArgumentError 'bad-value' otherwise). Default 'main'. A name the
   * code has no such function of makes `ready` and every run reject with
   * InvalidArgumentError 'wgsl'.
   */
  readonly entryPoint?: string;
  /**
   * Becomes the WGSL constant `HMM_WORKGROUP_SIZE: u32`, for the code's
   * `@workgroup_size(HMM_WORKGROUP_SIZE)`. An integer from 1 to 2^32 - 1
   * (InvalidArgumentError 'not-integer', 'negative', 'zero' or 'too-large'
   * otherwise); invocations in one workgroup may be at most the device's
   * `maxComputeInvocationsPerWorkgroup` (256 by default): a size the device
   * refuses fails compilation ('wgsl'). Default: no such constant.
   */
  readonly workgroupSize?: number;
  /**
   * The kernel's parameters, by name (a WGSL identifier: a letter, then
   * letters, digits or `_`), each typed 'u32', 'i32' or 'f32'; the code reads
   * them as `hmm_params.<name>`. Default: none.
   */
  readonly params?: Readonly<Record<string, ParamType>>;
  /**
   * Named ranges, by name (a WGSL identifier not starting with `hmm_`), each
   * declared 'read', 'write' or 'readwrite' (at most 64). The kernel gets
   * `x_len()` (words), `x_load_u32(i)`, `x_load_f32(i)` and, for writable
   * ranges, `x_store_u32(i, v)`, `x_store_f32(i, v)`, `x_atomic_add_u32(i, v)`,
   * `x_atomic_add_f32(i, v)`, indexed in 4-byte words from the range's start
   * and bounds-checked. Every run binds each name with a NamedUse. Default: none.
   */
  readonly ranges?: Readonly<Record<string, UseAccess>>;
}

/** How a kernel may touch a range: 'read' (loads only), or 'write'/'readwrite' (stores too). */
export type UseAccess = 'read' | 'write' | 'readwrite';

/**
 * One range a run declares it touches. It covers every page that holds any of
 * its bytes: pages `floor(va / pageSize)` up to and including
 * `floor((va + len - 1) / pageSize)`. Ranges may overlap; a page's access is
 * the union of the accesses of the ranges that cover it.
 */
export interface KernelUse {
  /** The range's first byte: a virtual (byte) address, an integer >= 0 (InvalidArgumentError 'uses[i].va' otherwise). */
  readonly va: number;
  /**
   * The range's length in bytes, an integer > 0 (InvalidArgumentError
   * 'uses[i].len' otherwise); the range ends at `va + len` (exclusive), which may not pass
   * the end of the space (AccessError 'out-of-range').
   */
  readonly len: number;
  /**
   * 'read': the kernel only loads from these pages (they become `shared`);
   * 'write' or 'readwrite': it may store to them (they become `gpu`). A store
   * to a page declared only for reading fails the run.
   */
  readonly access: UseAccess;
}

/**
 * A run's binding of a named range declared at `kernel()`: the kernel's
 * `name_*` functions reach [va, va + len). The access is the declaration's
 * (giving one is refused). Like a KernelUse it covers every page holding any
 * of its bytes; ranges may overlap each other and plain uses.
 */
export interface NamedUse {
  /** A name declared in the kernel's `ranges`, bound once per run. */
  readonly name: string;
  /** The range's first byte: an integer >= 0 and a multiple of 4. */
  readonly va: number;
  /** Bytes, an integer > 0 and a multiple of 4; `name_len()` is `len / 4`. */
  readonly len: number;
}

/** One run of a compiled kernel. */
export interface RunOptions {
  /**
   * Workgroups to dispatch: a count, or `[x, y?, z?]`; each an integer from 1
   * to 65535 (missing dimensions are 1). InvalidArgumentError naming the
   * dimension otherwise ('workgroups.x' 'not-integer', 'zero', 'negative' or
   * 'too-large'; 'workgroups' 'bad-value' for anything but those shapes).
   */
  readonly workgroups: number | readonly [number, number?, number?];
  /**
   * Values of the parameters declared at `kernel()`, by name: every declared
   * parameter, nothing else, nothing coerced. A 'u32' is an integer from 0
   * to 2^32 - 1, an 'i32' an integer from -2^31 to 2^31 - 1, an 'f32' any
   * number but NaN (rounded to float32; +-Infinity beyond its range). A
   * missing, undeclared or mistyped value fails the run with
   * InvalidArgumentError naming it ('params.<name>'), holding nothing.
   */
  readonly params?: Readonly<Record<string, number>>;
  /**
   * The ranges the kernel touches, plain (KernelUse) and named (NamedUse:
   * every named range declared, each once). With them the run checks and
   * fetches them in one batch and runs once; an access outside them fails
   * the run. Without them (fault mode, refused for a kernel with named
   * ranges) the runtime discovers the pages with collecting passes.
   */
  readonly uses?: readonly (KernelUse | NamedUse)[];
}

/** What a completed run reports. */
export interface RunResult {
  /** Wall time from the `run()` call to completion, in milliseconds (queueing included). */
  readonly ms: number;
  /**
   * Fault-collecting passes that found faults, or whose pages changed before
   * the real pass could hold them (0 for a run with `uses`).
   */
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
