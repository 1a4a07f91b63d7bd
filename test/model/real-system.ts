/**
 * The real side of the model-based suite: one address space per sequence,
 * its GpuMirror on a device shared across sequences (replaced when a command
 * destroys it), two real workers that attach each sequence's space, and the
 * kernels the commands run.
 */
import type { Remote } from 'comlink';
import type { Kernel } from '../../src/kernels/kernel.ts';
import { GpuMirror } from '../../src/mirror/gpu-mirror.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import { internalsOf } from '../../src/space/internals.ts';
import { endsWithin } from '../support/deadline.ts';
import { requireAdapter } from '../support/gpu.ts';
import type { ModelThreadApi } from './model-thread.worker.ts';

export const PAGE = 4096;
export const SPACE_PAGES = 64;
/**
 * Frames: a few, so that nearly every device-side call evicts, and regions of
 * four pages (the largest alloc) need more than the budget.
 */
export const BUDGET_PAGES = 3;
/** A blocked call fails with a typed error within this; a call that takes longer than CALL_LIMIT_MS never ended. */
export const FAULT_TIMEOUT_MS = 3000;
export const CALL_LIMIT_MS = 3 * FAULT_TIMEOUT_MS;

/** Adds `k` to each u32 of [va, va + 4 * words), through loads and stores or atomics. */
const addKernel = (atomic: boolean): string => /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x >= hmm_params.words) { return; }
  let va = hmm_params.va + id.x * 4u;
  ${atomic ? 'hmm_atomic_add_u32(va, hmm_params.k);' : 'hmm_store_u32(va, hmm_load_u32(va) + hmm_params.k);'}
}`;

/** The same adds through a named range `r` bound to the region. */
const namedAddKernel = (atomic: boolean): string => /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x >= r_len()) { return; }
  ${atomic ? 'r_atomic_add_u32(id.x, hmm_params.k);' : 'r_store_u32(id.x, r_load_u32(id.x) + hmm_params.k);'}
}`;

export interface Kernels {
  readonly add: Kernel;
  readonly atomicAdd: Kernel;
  readonly namedAdd: Kernel;
  readonly namedAtomicAdd: Kernel;
}

export interface RealSystem {
  readonly space: AddressSpace;
  /** The raw CPU bytes, read only to check pages whose CPU copy is valid. */
  readonly memory: Uint8Array;
  gpu: GpuMirror;
  device: GPUDevice;
  kernels: Kernels;
  readonly threads: readonly Remote<ModelThreadApi>[];
}

/** Devices for the suite: the current one is shared by sequences until a command destroys it. */
export class DeviceSource {
  private current: GPUDevice | undefined;

  async device(): Promise<GPUDevice> {
    if (this.current) return this.current;
    const adapter = await requireAdapter();
    this.current = await adapter.requestDevice({ label: 'webhmm model device' });
    return this.current;
  }

  /** Forgets the current device (it was destroyed): the next call requests a new one. */
  replace(): void {
    this.current = undefined;
  }

  destroy(): void {
    this.current?.destroy();
    this.current = undefined;
  }
}

export async function attachMirror(
  space: AddressSpace,
  device: GPUDevice,
): Promise<{ gpu: GpuMirror; kernels: Kernels }> {
  // Thrash mitigation quick to pin and to let go, so sequences meet pinned pages.
  const thrash = { threshold: 2, windowMs: 60_000, pinMs: 100 };
  const gpu = await GpuMirror.attach(space, { device, budget: BUDGET_PAGES * PAGE, thrash });
  const params = { va: 'u32', words: 'u32', k: 'u32' } as const;
  const ranges = { r: 'readwrite' } as const;
  const kernels = {
    add: gpu.kernel({ code: addKernel(false), params }),
    atomicAdd: gpu.kernel({ code: addKernel(true), params }),
    namedAdd: gpu.kernel({ code: namedAddKernel(false), params: { k: 'u32' }, ranges }),
    namedAtomicAdd: gpu.kernel({ code: namedAddKernel(true), params: { k: 'u32' }, ranges }),
  };
  await Promise.all(Object.values(kernels).map((kernel) => kernel.ready));
  return { gpu, kernels };
}

export async function createRealSystem(
  devices: DeviceSource,
  threads: readonly Remote<ModelThreadApi>[],
): Promise<RealSystem> {
  const space = AddressSpace.create({
    size: SPACE_PAGES * PAGE,
    pageSize: PAGE,
    faultTimeoutMs: FAULT_TIMEOUT_MS,
  });
  const device = await devices.device();
  const { gpu, kernels } = await attachMirror(space, device);
  await Promise.all(threads.map((thread) => thread.use(space.handle)));
  const memory = new Uint8Array(internalsOf(space).memory);
  return { space, memory, gpu, device, kernels, threads };
}

/** Resolves as `promise` does, or rejects once `ms` have passed: a call that never ends fails the sequence. */
export const within = <T>(what: string, promise: Promise<T>, ms = CALL_LIMIT_MS): Promise<T> =>
  endsWithin(promise, ms, what);
