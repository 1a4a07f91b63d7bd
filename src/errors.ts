/**
 * webhmm's errors. Every error a caller can act on is a subclass of
 * {@link WebHmmError} with a stable `code`, the context as fields, and a message
 * that names the value and the fix. {@link invariant} is for states that cannot
 * happen; its failure is a bug in webhmm, not in the caller.
 */

export type ErrorCode =
  'ACCESS' | 'WOULD_BLOCK' | 'OUT_OF_MEMORY' | 'DEVICE_LOST' | 'INVALID_ARGUMENT';

export abstract class WebHmmError extends Error {
  abstract readonly code: ErrorCode;
  /** Why, as a stable string (each class lists its own). */
  abstract readonly reason: string;
}

/** Why an access was refused. */
export type AccessReason =
  | 'unmapped' // never allocated, or page 0 (null pointers fault)
  | 'freed' // allocated once and freed since
  | 'out-of-range' // beyond the end of the address space
  | 'protection' // the page's protection forbids this access
  | 'undeclared'; // a kernel touched a page outside its declared `uses`

/**
 * An access to an address that may not be accessed that way. The failed call
 * changed nothing, except a failed kernel run: its offending stores were
 * suppressed, its other stores landed, in the pages `touched` lists.
 */
export class AccessError extends WebHmmError {
  readonly code = 'ACCESS';
  constructor(
    /** The first faulting virtual address. */
    readonly address: number,
    readonly reason: AccessReason,
    detail = '',
    /** A failed kernel run: the VAs of the pages its landed stores may have touched. */
    readonly touched: readonly number[] = [],
  ) {
    super(`${reason} access at 0x${address.toString(16)}${detail ? `: ${detail}` : ''}`);
    this.name = 'AccessError';
  }
}

export type WouldBlockReason =
  | 'may-not-block' // this thread may not wait (browser main thread, or the thread that owns a GpuMirror)
  | 'timeout' // the wait took longer than faultTimeoutMs
  | 'reentrant' // the range is held by a scope of this very thread, which would wait for itself
  | 'stopped' // this thread is being ended (Threads.terminate): it may start nothing new
  | 'unserved'; // the page is dirty on the GPU and no GpuMirror services CPU faults to bring it back

/** A call would have to wait, and here it may not (or waited too long). The failed call changed nothing. */
export class WouldBlockError extends WebHmmError {
  readonly code = 'WOULD_BLOCK';
  constructor(
    readonly address: number,
    readonly reason: WouldBlockReason,
    detail = '',
  ) {
    super(`would block at 0x${address.toString(16)} (${reason})${detail ? `: ${detail}` : ''}`);
    this.name = 'WouldBlockError';
  }
}

export type OutOfMemoryReason =
  | 'address-space' // no run of free pages is large enough
  | 'budget' // the GPU budget cannot hold the pages
  | 'device' // the device refused a buffer
  | 'threads'; // every thread record of the space is taken, or a thread's hold journal is full

/** No run of free pages (or GPU frames, or device memory) is large enough. The failed call changed nothing. */
export class OutOfMemoryError extends WebHmmError {
  readonly code = 'OUT_OF_MEMORY';
  constructor(
    readonly reason: OutOfMemoryReason,
    /** Bytes asked for. */
    readonly requested: number,
    /** Bytes that could be had (the largest free run, or the budget). */
    readonly available: number,
    detail = '',
  ) {
    super(
      `out of memory (${reason}): ${requested} bytes requested, ${available} available${detail ? `; ${detail}` : ''}`,
    );
    this.name = 'OutOfMemoryError';
  }
}

export type DeviceLostReason =
  | 'device-lost' // the device went away
  | 'detached' // the mirror was detached: a call after detach()
  | 'no-adapter'; // there is no device to begin with: navigator.gpu is missing or found no adapter

const DEVICE_LOST_TITLES: Record<DeviceLostReason, string> = {
  'device-lost': 'GPU device lost',
  detached: 'GpuMirror detached',
  'no-adapter': 'no WebGPU device',
};

/**
 * The GPU device is gone, or was never there. `unsaved` lists GPU-dirty byte
 * ranges that could not be written back (empty unless the device was lost).
 */
export class DeviceLostError extends WebHmmError {
  readonly code = 'DEVICE_LOST';
  constructor(
    readonly unsaved: readonly { va: number; len: number }[],
    detail = '',
    readonly reason: DeviceLostReason = 'device-lost',
  ) {
    super(`${DEVICE_LOST_TITLES[reason]}${detail ? `: ${detail}` : ''}`);
    this.name = 'DeviceLostError';
  }
}

/** Why an argument was refused. */
export type ArgumentReason =
  | 'not-integer'
  | 'negative'
  | 'zero'
  | 'too-large' // beyond what the address space or the type can hold
  | 'misaligned' // not a multiple of 4 (scalars) or of the page size (page-granular calls)
  | 'not-allocated' // free of a VA that is not allocated: a double free, or never allocated
  | 'not-allocation-start' // free(va) without len, of a VA inside an allocation
  | 'bad-value' // an option or enum outside its allowed values
  | 'released' // a lease used after release()
  | 'destroyed' // a kernel run after kernel.destroy()
  | 'wgsl' // kernel code that does not compile (the message names the user's line)
  | 'worker-failed'; // a worker given to Threads.spawn failed to load or to attach (the message says why)

/** An argument is not of the form the call takes. The failed call changed nothing. */
export class InvalidArgumentError extends WebHmmError {
  readonly code = 'INVALID_ARGUMENT';
  /** The virtual address concerned, where there is one. */
  readonly address: number | undefined;
  constructor(
    /** The parameter's name, as in the signature. */
    readonly argument: string,
    readonly value: unknown,
    readonly reason: ArgumentReason,
    detail = '',
    /** `address`: the virtual address concerned; `cause`: the underlying failure (a worker's load error). */
    context: { readonly address?: number; readonly cause?: unknown } = {},
  ) {
    super(
      `${argument} = ${describe(value)}: ${reason}${detail ? ` (${detail})` : ''}`,
      'cause' in context ? { cause: context.cause } : undefined,
    );
    this.address = context.address;
    this.name = 'InvalidArgumentError';
  }
}

function describe(value: unknown): string {
  return typeof value === 'number' && Number.isInteger(value) && value > 255
    ? `0x${value.toString(16)}`
    : String(value);
}

/** Thrown by {@link invariant}: webhmm's own state is inconsistent. A bug; please report it. */
export class InvariantError extends Error {
  constructor(message: string) {
    super(`webhmm invariant violated: ${message}`);
    this.name = 'InvariantError';
  }
}

export function invariant(condition: unknown, message: string): asserts condition {
  if (!condition) throw new InvariantError(message);
}
