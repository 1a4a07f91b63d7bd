/**
 * Attaching a mirror: the device (requested, or the caller's), the frame
 * budget, and the GPU objects a mirror starts with (frames buffer, device
 * page table, copy engine). Either every part is made or none is kept: a
 * failure destroys what was made, frees the space's fault-server word, and
 * destroys a device the mirror requested itself.
 */
import { DeviceLostError, InvalidArgumentError, OutOfMemoryError } from '../errors.ts';
import { oneOf, positiveInteger } from '../arguments.ts';
import type { AddressSpace } from '../space/address-space.ts';
import { internalsOf, type SpaceInternals } from '../space/internals.ts';
import { createCopyEngine, type ChosenCopyEngine, type CopyMode } from './copy-engines.ts';
import { DPTE_MAX_FRAMES } from './device-layout.ts';
import { DevicePageTable } from './device-page-table.ts';
import { FramePool } from './frame-pool.ts';
import { checkThrash, type ThrashOptions } from './thrash.ts';
import { checkWriteBack, type WriteBackOptions } from './write-back.ts';

export interface GpuMirrorOptions {
  /** The device to use; default: the default adapter's, with its largest storage binding. */
  readonly device?: GPUDevice;
  /**
   * Bytes of GPU frames: an integer of at least one page, rounded down to
   * whole pages, at most the device's storage binding limit less two pages.
   * Default: min(maxStorageBufferBindingSize / 4, 256 MiB, the space's pages).
   */
  readonly budget?: number;
  /** Which copy engine moves pages; default 'auto' (calibrated per device). */
  readonly copy?: CopyMode;
  /**
   * Bounds what a device loss can take: acknowledged GPU-dirty bytes that no
   * run in flight holds are written back in the background (cause
   * 'writeback') once older than `maxDirtyAgeMs`, or, oldest first, beyond
   * `maxDirtyBytes` (write-back.ts). Default: none (dirty pages stay on the
   * GPU until something needs them).
   */
  readonly writeBack?: WriteBackOptions;
  /**
   * What a fault-mode run fetches beside its faulting pages: 'density'
   * (default; the densest aligned block of up to 2 MiB around each, as
   * UVM's tree prefetcher: kernels/density-prefetch.ts) or 'off' (just the
   * faulting pages).
   */
  readonly prefetch?: FaultPrefetch;
  /**
   * Thrash mitigation (thrash.ts): pages that move between the CPU and the
   * GPU more than `threshold` times (default 4) within `windowMs` (200) are
   * pinned on the GPU for `pinMs` (500); `false` turns it off.
   */
  readonly thrash?: ThrashOptions | false;
}

/** The `prefetch` option: fault-mode runs' density prefetch, or none. */
export type FaultPrefetch = 'density' | 'off';

/** What a mirror is made of, once attached. */
export interface MirrorParts {
  readonly space: AddressSpace;
  readonly internals: SpaceInternals;
  readonly device: GPUDevice;
  /** The mirror requested the device itself, so it destroys it at detach. */
  readonly ownsDevice: boolean;
  /** `budget` bytes of frames, then the zero frame, then the sink frame. */
  readonly frames: GPUBuffer;
  readonly pool: FramePool;
  readonly dpt: DevicePageTable;
  readonly engine: ChosenCopyEngine;
  /** Bytes of GPU frames. */
  readonly budget: number;
  /** The `writeBack` option, checked. */
  readonly writeBack: WriteBackOptions | undefined;
  /** The `prefetch` option, checked. */
  readonly prefetch: FaultPrefetch;
  /** The `thrash` option, checked: undefined when off. */
  readonly thrash: Required<ThrashOptions> | undefined;
}

/** Frames past the budget: the zero frame faulted loads read, and the sink suppressed stores go to. */
export const SPECIAL_FRAMES = 2;
const DEFAULT_BUDGET_CAP = 256 << 20;

/**
 * Makes the parts of a mirror of `space`, claiming the space's fault service.
 * @throws InvalidArgumentError (a budget, `writeBack` or `thrash` bound out of bounds, or the space is mirrored already)
 * @throws OutOfMemoryError when the device refuses the frames buffer
 * @throws DeviceLostError 'no-adapter' when no WebGPU adapter is available
 */
export async function prepareMirror(
  space: AddressSpace,
  options: GpuMirrorOptions,
): Promise<MirrorParts> {
  const internals = internalsOf(space);
  const writeBack = checkWriteBack(options.writeBack);
  const prefetch = oneOf('prefetch', options.prefetch ?? 'density', ['density', 'off']);
  const thrash = checkThrash(options.thrash);
  const ownsDevice = options.device === undefined;
  if (!ownsDevice) assertDevice(options.device);
  const device = options.device ?? (await requestDevice());
  try {
    if (await isLost(device)) {
      throw new DeviceLostError([], 'the device given to attach was lost already', 'device-lost');
    }
    const limit = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
    const budget = chooseBudget(options.budget, limit, space.pageSize, space.size);
    if (!internals.faults.serve(internals.threadId)) {
      throw new InvalidArgumentError(
        'space',
        'mirrored',
        'bad-value',
        'the space has a GpuMirror already; detach it first',
      );
    }
    try {
      const base = { space, internals, device, ownsDevice, budget, writeBack, prefetch, thrash };
      return await createParts(base, options.copy);
    } catch (error) {
      internals.faults.stopServing(internals.threadId);
      throw error;
    }
  } catch (error) {
    if (ownsDevice) device.destroy();
    throw error;
  }
}

async function createParts(
  base: Omit<MirrorParts, 'frames' | 'pool' | 'dpt' | 'engine'>,
  copy: CopyMode = 'auto',
): Promise<MirrorParts> {
  const { device, internals, budget, space } = base;
  const frames = await createGpuBuffer(device, {
    label: 'webhmm frames',
    size: budget + SPECIAL_FRAMES * space.pageSize,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
  const dpt = new DevicePageTable(device, internals.table.pageCount);
  try {
    const context = { device, frames, memory: internals.memory };
    const engine = await createCopyEngine(copy, context, space.pageSize);
    return { ...base, frames, pool: new FramePool(budget / space.pageSize), dpt, engine };
  } catch (error) {
    dpt.destroy();
    frames.destroy();
    throw error;
  }
}

/**
 * The frame budget: `limit` is the device's binding limit, which must also
 * hold the special frames. The default never exceeds the space's own pages
 * (page 0 is never mapped): more frames could never be used.
 */
function chooseBudget(
  requested: number | undefined,
  limit: number,
  pageSize: number,
  spaceSize: number,
): number {
  const maxFrames = Math.min(Math.floor(limit / pageSize) - SPECIAL_FRAMES, DPTE_MAX_FRAMES);
  if (requested === undefined) {
    const spacePages = Math.floor(spaceSize / pageSize) - 1;
    const frames = Math.min(
      Math.floor(limit / 4 / pageSize),
      DEFAULT_BUDGET_CAP / pageSize,
      maxFrames,
      spacePages,
    );
    return Math.max(1, frames) * pageSize;
  }
  positiveInteger('budget', requested);
  if (requested < pageSize) {
    throw new InvalidArgumentError(
      'budget',
      requested,
      'bad-value',
      `at least one page (${pageSize} bytes)`,
    );
  }
  if (requested > maxFrames * pageSize) {
    throw new InvalidArgumentError(
      'budget',
      requested,
      'too-large',
      `at most the device's storage binding limit, ${maxFrames * pageSize} bytes`,
    );
  }
  return Math.floor(requested / pageSize) * pageSize;
}

/** @throws InvalidArgumentError 'device' 'bad-value' for anything but a GPUDevice */
function assertDevice(device: unknown): void {
  if (typeof GPUDevice === 'undefined' || !(device instanceof GPUDevice))
    throw new InvalidArgumentError('device', typeof device, 'bad-value', 'a GPUDevice');
}

/**
 * Whether `device` is lost already (destroyed, say). No call says so at once:
 * `device.lost` settles in a task of its own, so an empty submission is let
 * finish, and a task after it, before the answer is no.
 */
async function isLost(device: GPUDevice): Promise<boolean> {
  const settled = device.queue
    .onSubmittedWorkDone()
    .then(() => new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 0)));
  return Promise.race([device.lost.then(() => true), settled]);
}

async function requestDevice(): Promise<GPUDevice> {
  const gpu = typeof navigator !== 'undefined' ? navigator.gpu : undefined;
  const adapter = await gpu?.requestAdapter();
  if (!adapter) {
    throw new DeviceLostError(
      [],
      'navigator.gpu is missing or found no adapter; pass a device, or run where WebGPU is enabled',
      'no-adapter',
    );
  }
  return adapter.requestDevice({
    label: 'webhmm device',
    requiredLimits: {
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      maxBufferSize: adapter.limits.maxBufferSize,
    },
  });
}

/** createBuffer, with a refusal by the device turned into OutOfMemoryError. */
async function createGpuBuffer(
  device: GPUDevice,
  descriptor: GPUBufferDescriptor,
): Promise<GPUBuffer> {
  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('internal');
  const buffer = device.createBuffer(descriptor);
  const internal = await device.popErrorScope();
  const oom = await device.popErrorScope();
  const error = oom ?? internal;
  if (error) {
    buffer.destroy();
    throw new OutOfMemoryError(
      'device',
      descriptor.size,
      0,
      `the device refused ${descriptor.label ?? 'a buffer'}: ${error.message}`,
    );
  }
  return buffer;
}
