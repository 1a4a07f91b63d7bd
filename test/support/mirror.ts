import { expect } from 'vitest';
import { GpuMirror, type GpuMirrorOptions } from '../../src/mirror/gpu-mirror.ts';
import { AddressSpace, type AddressSpaceOptions } from '../../src/space/address-space.ts';
import { testDevice, type TestDevice } from './gpu.ts';

/**
 * A space mirrored on a counted test device. `cleanups` gets the teardown:
 * detach, then no validation error and no GPU buffer left alive.
 */
export async function testMirror(
  spaceOptions: AddressSpaceOptions,
  mirrorOptions: Omit<GpuMirrorOptions, 'device'>,
  cleanups: (() => Promise<void> | void)[],
): Promise<{ space: AddressSpace; gpu: GpuMirror; test: TestDevice }> {
  const test = await testDevice();
  const space = AddressSpace.create(spaceOptions);
  const gpu = await GpuMirror.attach(space, { ...mirrorOptions, device: test.device });
  cleanups.push(async () => {
    await gpu.detach();
    expect(await test.validationError()).toBeUndefined();
    expect(test.liveBuffers()).toBe(0);
    test.destroy();
  });
  return { space, gpu, test };
}
