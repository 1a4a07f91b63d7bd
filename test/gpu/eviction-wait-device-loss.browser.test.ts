// A call waiting in eviction for frames others hold goes on waiting after
// the device is lost, until faultTimeoutMs runs out.
import { afterEach, expect, it } from 'vitest';
import { DeviceLostError } from '../../src/errors.ts';
import { GpuMirror } from '../../src/mirror/gpu-mirror.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import { testDevice } from '../support/gpu.ts';

const PAGE = 4096;
const TIMEOUT = 4000;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

it('a migration waiting for frames rejects with DeviceLostError when the device is lost', async () => {
  const test = await testDevice();
  const space = AddressSpace.create({ size: 4 << 20, pageSize: PAGE, faultTimeoutMs: TIMEOUT });
  const gpu = await GpuMirror.attach(space, { device: test.device, budget: 16 * PAGE });
  cleanups.push(async () => {
    await gpu.detach();
    test.destroy();
  });
  const filler = space.alloc(16 * PAGE);
  space.fill(filler, 16 * PAGE, 1);
  await gpu.migrate(filler, 16 * PAGE, 'gpu');
  await gpu.migrate(filler, 16 * PAGE, 'cpu');
  const lease = await space.acquire(filler, 16 * PAGE, 'read'); // no victim while it lasts
  cleanups.push(() => lease.release());
  const target = space.alloc(PAGE);
  const migrated = gpu.migrate(target, PAGE, 'gpu').then(
    () => undefined,
    (e: unknown) => e,
  );
  await new Promise((resolve) => setTimeout(resolve, 100));
  const lostAt = performance.now();
  test.device.destroy();
  await gpu.lost;
  const error = await migrated;
  const after = performance.now() - lostAt;
  expect(error).toBeInstanceOf(DeviceLostError);
  // device loss: the loss ends the mirror: pending calls reject (not after faultTimeoutMs).
  expect(after).toBeLessThan(TIMEOUT / 4);
});
