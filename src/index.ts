// The public entry of webhmm: re-exports only. Internal code never imports from here.
export {
  AccessError,
  DeviceLostError,
  InvalidArgumentError,
  OutOfMemoryError,
  WebHmmError,
  WouldBlockError,
  type AccessReason,
  type ArgumentReason,
  type DeviceLostReason,
  type ErrorCode,
  type OutOfMemoryReason,
  type WouldBlockReason,
} from './errors.ts';
export {
  AddressSpace,
  type AccessMode,
  type AddressSpaceOptions,
  type AttachOptions,
  type PageAdvice,
  type PageSnapshot,
  type PageState,
  type PreferredLocation,
  type Protection,
} from './space/address-space.ts';
export { Lease } from './space/lease.ts';
export type { InvalidateCause, InvalidateEvent, InvalidateListener } from './space/notifier.ts';
export type { SpaceHandle } from './space/shared-layout.ts';
export { GpuMirror, type GpuMirrorOptions } from './mirror/gpu-mirror.ts';
export type { Advice } from './gpu/advice.ts';
export type { CopyMode } from './gpu/copy-engines.ts';
export type { CopyEngineKind } from './gpu/copy-engine.ts';
export type { MigrationResult } from './gpu/migration.ts';
export type { PrefetchResult } from './gpu/prefetch.ts';
export type { DeviceLoss } from './gpu/device-loss.ts';
export type { WriteBackOptions } from './gpu/write-back.ts';
export type { ThrashOptions } from './gpu/thrash.ts';
export type {
  CopyEngineChoice,
  MigrationCause,
  MirrorStats,
  TraceEvent,
  TraceListener,
} from './gpu/mirror-stats.ts';
export type {
  Kernel,
  KernelOptions,
  KernelUse,
  NamedUse,
  RunOptions,
  RunResult,
  UseAccess,
} from './kernels/kernel.ts';
export type { ParamType } from './kernels/prelude.ts';
export { Threads, type WorkerSource } from './threads/threads.ts';
export { serveThread, type ThreadInfo } from './threads/serve-thread.ts';
