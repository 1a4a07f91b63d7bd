// The public GpuMirror facade: attaching (device, budget, adapter), kernels
// hanging off the mirror, and what detach leaves behind.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DeviceLostError, InvalidArgumentError } from '../../src/errors.ts';
import { GpuMirror, kernelRuntimeOf } from '../../src/mirror/gpu-mirror.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import { testDevice } from '../support/gpu.ts';
import { testMirror } from '../support/mirror.ts';

const KiB = 1024;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  vi.restoreAllMocks();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const ADD_ONE = `@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  let va = hmm_params.va + id.x * 4u;
  hmm_store_u32(va, hmm_load_u32(va) + 1u);
}`;

describe('GpuMirror.attach', () => {
  it('without an adapter rejects with DeviceLostError reason no-adapter, leaving the space unmirrored', async () => {
    const space = AddressSpace.create({ size: 1 << 20, pageSize: 4 * KiB });
    vi.spyOn(navigator.gpu, 'requestAdapter').mockResolvedValue(null);
    const error: unknown = await GpuMirror.attach(space).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(DeviceLostError);
    expect(error).toMatchObject({ code: 'DEVICE_LOST', reason: 'no-adapter', unsaved: [] });
    vi.restoreAllMocks();
    // Nothing was claimed: a mirror with a real device attaches afterwards.
    const test = await testDevice();
    const gpu = await GpuMirror.attach(space, { device: test.device });
    await gpu.detach();
    test.destroy();
  });

  it.each([
    [4 * KiB + 0.5, 'not-integer'],
    [Number.NaN, 'not-integer'],
    [-4 * KiB, 'negative'],
    [0, 'zero'],
    [KiB, 'bad-value'],
  ] as const)(
    'refuses budget %s with reason %s, and the space stays attachable',
    async (budget, reason) => {
      const test = await testDevice();
      const space = AddressSpace.create({ size: 1 << 20, pageSize: 4 * KiB });
      const error: unknown = await GpuMirror.attach(space, { device: test.device, budget }).catch(
        (caught: unknown) => caught,
      );
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect(error).toMatchObject({ argument: 'budget', reason });
      const gpu = await GpuMirror.attach(space, { device: test.device });
      await gpu.detach();
      test.destroy();
    },
  );
});

describe('kernels of a mirror', () => {
  it('destroyed kernels leave the mirror and detach destroys the rest, leaving no GPU buffer', async () => {
    const { space, gpu } = await testMirror({ size: 1 << 20, pageSize: 4 * KiB }, {}, cleanups);
    const va = space.alloc(4 * KiB);
    const kernels = Array.from({ length: 20 }, () =>
      gpu.kernel({ code: ADD_ONE, params: { va: 'u32' } }),
    );
    const runtime = kernelRuntimeOf(gpu);
    expect(runtime?.liveKernels).toBe(20);
    for (const kernel of kernels.slice(0, 15)) kernel.destroy();
    expect(runtime?.liveKernels).toBe(5);
    const kept = kernels[19];
    await kept?.run({
      workgroups: 16,
      params: { va },
      uses: [{ va, len: 4 * KiB, access: 'readwrite' }],
    });
    expect((await space.readAsync(va, 4))[0]).toBe(1);
    // testMirror's cleanup detaches and asserts that no GPU buffer is left alive.
  });

  it('a kernel made after detach is refused with DeviceLostError detached', async () => {
    const test = await testDevice();
    const space = AddressSpace.create({ size: 1 << 20, pageSize: 4 * KiB });
    const gpu = await GpuMirror.attach(space, { device: test.device });
    const kernel = gpu.kernel({ code: ADD_ONE, params: { va: 'u32' } });
    await gpu.detach();
    expect(() => gpu.kernel({ code: ADD_ONE, params: { va: 'u32' } })).toThrow(DeviceLostError);
    await expect(kernel.run({ workgroups: 1, params: { va: 4 * KiB } })).rejects.toMatchObject({
      code: 'DEVICE_LOST',
      reason: 'detached',
    });
    expect(test.liveBuffers()).toBe(0);
    test.destroy();
  });
});
