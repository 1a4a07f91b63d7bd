/**
 * The public GpuMirror: a DeviceMirror (gpu/device-mirror.ts: frames,
 * device page table, migration, device-side access, CPU fault service) with
 * kernels over the shared address space on top (kernels/). It sits above
 * both layers so the GPU layer never imports the kernel layer.
 */
import type { AddressSpace } from '../space/address-space.ts';
import { DeviceMirror } from '../gpu/device-mirror.ts';
import { prepareMirror, type GpuMirrorOptions } from '../gpu/mirror-setup.ts';
import { Kernel, type KernelOptions } from '../kernels/kernel.ts';
import { KernelRuntime } from '../kernels/kernel-runtime.ts';

export type { GpuMirrorOptions } from '../gpu/mirror-setup.ts';

let kernelRuntimeOfMirror: (mirror: GpuMirror) => KernelRuntime | undefined;

/**
 * One GPUDevice's mirror of an AddressSpace: GPU page frames, a device page
 * table, migration in both directions, kernels that follow the space's
 * pointers, and the service of CPU faults on GPU-dirty pages. Attach one per
 * space, on a thread that never blocks (the main thread, or a worker that
 * serves nothing else).
 *
 * ```ts
 * const space = AddressSpace.create({ size: 64 << 20 });
 * const va = space.alloc(4096);
 * const gpu = await GpuMirror.attach(space);
 * const double = gpu.kernel({
 *   code: `@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3u) {
 *     let va = hmm_params.va + id.x * 4u;
 *     hmm_store_u32(va, hmm_load_u32(va) * 2u);
 *   }`,
 *   params: { va: 'u32' },
 * });
 * await double.run({ workgroups: 16, params: { va }, uses: [{ va, len: 4096, access: 'readwrite' }] });
 * space.getU32(va); // the CPU read brings the page back
 * await gpu.detach();
 * ```
 */
export class GpuMirror extends DeviceMirror {
  private runtime: KernelRuntime | undefined;

  /**
   * Mirrors `space` onto a GPU device. Only one mirror per space.
   * @throws InvalidArgumentError (a budget out of bounds, a bad `copy`, a `device` that is
   *   not a GPUDevice, a `space` that is not an AddressSpace or is mirrored already)
   * @throws OutOfMemoryError 'device' when the device refuses the frames buffer
   * @throws DeviceLostError 'no-adapter' when no WebGPU adapter is available, 'device-lost'
   *   for a device that is lost already
   */
  static async attach(space: AddressSpace, options: GpuMirrorOptions = {}): Promise<GpuMirror> {
    return new GpuMirror(await prepareMirror(space, options));
  }

  /**
   * A kernel over the shared address space: `code` is WGSL using the prelude
   * (`hmm_load_u32`, `hmm_store_u32`, `hmm_translate`, ...; see
   * docs/kernels.md). Compilation starts now; `kernel.ready` and every
   * `run` report WGSL errors with the user's line numbers.
   * @throws InvalidArgumentError for bad options, at once; DeviceLostError after detach
   */
  kernel(options: KernelOptions): Kernel {
    this.assertAttached();
    const kernel = Kernel.compile(this.kernelRuntime(), options);
    // Each run is a call in flight of the mirror: refused once detach began,
    // waited for by detach (and by the device-loss handling) otherwise.
    const run = kernel.run.bind(kernel);
    kernel.run = (runOptions) => this.track(() => run(runOptions));
    return kernel;
  }

  private kernelRuntime(): KernelRuntime {
    if (!this.runtime) {
      this.runtime = new KernelRuntime(this.host());
      this.own(this.runtime);
    }
    return this.runtime;
  }

  static {
    kernelRuntimeOfMirror = (mirror) => mirror.runtime;
  }
}

/** The mirror's kernel runtime, if it made one: for tests that count live kernels. Not public API. */
export function kernelRuntimeOf(mirror: GpuMirror): KernelRuntime | undefined {
  return kernelRuntimeOfMirror(mirror);
}
