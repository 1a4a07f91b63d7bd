// Write-through (gpu.advise readMostly) against device loss, from an
// adversarial review: a call whose write-through readback the loss fails is
// rejected, so its write was never acknowledged, and `gpu.lost.unsaved`,
// which lists only pages acknowledged writes made GPU-dirty, does not list it.
import { afterEach, describe, expect, it } from 'vitest';
import { DeviceLostError } from '../../src/errors.ts';
import { GpuMirror } from '../../src/mirror/gpu-mirror.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import { testDevice } from '../support/gpu.ts';

const PAGE = 4096;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function lossSetup() {
  const test = await testDevice();
  const space = AddressSpace.create({ size: 1 << 20, pageSize: PAGE });
  const gpu = await GpuMirror.attach(space, { device: test.device, thrash: false });
  cleanups.push(async () => {
    await gpu.detach().catch(() => undefined);
    test.destroy();
  });
  return { space, gpu, device: test.device };
}

/** Destroys `device` as the next mapAsync(READ) starts (the write-through's readback). */
function loseAtNextReadback(device: GPUDevice): () => boolean {
  const prototype = GPUBuffer.prototype;
  const original = Object.getOwnPropertyDescriptor(prototype, 'mapAsync');
  const mapAsync = original?.value as GPUBuffer['mapAsync'];
  let fired = false;
  Object.defineProperty(prototype, 'mapAsync', {
    ...original,
    value(this: GPUBuffer, mode: number, ...rest: number[]) {
      if (!fired && mode === GPUMapMode.READ) {
        fired = true;
        device.destroy();
      }
      return mapAsync.apply(this, [mode, ...rest] as Parameters<GPUBuffer['mapAsync']>);
    },
  });
  cleanups.push(() => {
    if (original) Object.defineProperty(prototype, 'mapAsync', original);
  });
  return () => fired;
}

const ADD_ONE = /* wgsl */ `
@compute @workgroup_size(1)
fn main() {
  hmm_store_u32(hmm_params.va, hmm_load_u32(hmm_params.va) + 1u);
}`;

describe('write-through and device loss', () => {
  it('a gpu.write rejected because its write-through failed is not listed as unsaved', async () => {
    const { space, gpu, device } = await lossSetup();
    const va = space.alloc(PAGE);
    space.write(va, new Uint32Array([7]));
    gpu.advise(va, PAGE, { readMostly: true });
    await gpu.migrate(va, PAGE, 'gpu');
    expect((await gpu.snapshot(va, PAGE))[0]?.state).toBe('shared');
    const fired = loseAtNextReadback(device);
    const write = gpu.write(va, new Uint32Array([0xbeef])).then(
      () => 'resolved',
      (error: unknown) => (error instanceof DeviceLostError ? 'DeviceLostError' : String(error)),
    );
    const outcome = await write;
    const loss = await gpu.lost;
    expect(fired()).toBe(true);
    // Either the write was acknowledged (resolved) and its page is unsaved, or it was rejected and is not listed.
    expect({ outcome, unsaved: loss.unsaved }).toEqual(
      outcome === 'resolved' ? { outcome, unsaved: [{ va, len: PAGE }] } : { outcome, unsaved: [] },
    );
  });

  it('a run rejected because its write-through failed is not listed as unsaved', async () => {
    const { space, gpu, device } = await lossSetup();
    const va = space.alloc(PAGE);
    space.write(va, new Uint32Array([7]));
    gpu.advise(va, PAGE, { readMostly: true });
    const kernel = gpu.kernel({ code: ADD_ONE, params: { va: 'u32' } });
    const uses = [{ va, len: 4, access: 'readwrite' as const }];
    await kernel.run({ workgroups: 1, params: { va }, uses }); // compiled; written through
    expect(space.getU32(va)).toBe(8);
    // The run's status readback is the first mapAsync(READ); the write-through's the second.
    const prototype = GPUBuffer.prototype;
    const original = Object.getOwnPropertyDescriptor(prototype, 'mapAsync');
    const mapAsync = original?.value as GPUBuffer['mapAsync'];
    let reads = 0;
    Object.defineProperty(prototype, 'mapAsync', {
      ...original,
      value(this: GPUBuffer, mode: number, ...rest: number[]) {
        if (mode === GPUMapMode.READ && ++reads === 2) device.destroy();
        return mapAsync.apply(this, [mode, ...rest] as Parameters<GPUBuffer['mapAsync']>);
      },
    });
    cleanups.push(() => {
      if (original) Object.defineProperty(prototype, 'mapAsync', original);
    });
    const outcome = await kernel.run({ workgroups: 1, params: { va }, uses }).then(
      () => 'resolved',
      (error: unknown) => (error instanceof DeviceLostError ? 'DeviceLostError' : String(error)),
    );
    const loss = await gpu.lost;
    expect(reads).toBeGreaterThanOrEqual(2);
    expect({ outcome, unsaved: loss.unsaved }).toEqual(
      outcome === 'resolved' ? { outcome, unsaved: [{ va, len: PAGE }] } : { outcome, unsaved: [] },
    );
  });
});
