// space.discard on real WebGPU: contents dropped with no write-back, frames
// freed at once, partial pages zeroed in place, runs holding the pages
// finished first, and bad ranges refused with nothing changed.
import { releaseProxy, wrap } from 'comlink';
import { afterEach, describe, expect, it } from 'vitest';
import { AccessError } from '../../src/errors.ts';
import type { GpuMirror } from '../../src/mirror/gpu-mirror.ts';
import type { AddressSpace } from '../../src/space/address-space.ts';
import { testMirror } from '../support/mirror.ts';
import type { SpaceWorkerApi } from '../space/space.worker.ts';

const PAGE = 4096;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function setup(budgetPages = 64): Promise<{ space: AddressSpace; gpu: GpuMirror }> {
  return testMirror({ size: 4 << 20, pageSize: PAGE }, { budget: budgetPages * PAGE }, cleanups);
}

const words = (bytes: Uint8Array): Uint32Array =>
  new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);

describe('space.discard', () => {
  it('drops GPU-dirty pages with no write-back: zeros everywhere, frames freed at once', async () => {
    const { space, gpu } = await setup();
    const va = space.alloc(8 * PAGE, { prot: 'rw' });
    await gpu.write(va, new Uint32Array(8 * 1024).fill(0xdeadbeef));
    const events: string[] = [];
    space.onInvalidate(va, 8 * PAGE, (event) => events.push(event.cause));
    expect(gpu.stats().framesInUse).toBe(8);
    space.discard(va, 8 * PAGE);
    expect(gpu.stats()).toMatchObject({
      framesInUse: 0,
      bytesToCpu: 0,
      writebacks: 0,
      readbacks: 0,
    });
    expect(new Set((await gpu.snapshot(va, 8 * PAGE)).map((entry) => entry.state))).toEqual(
      new Set(['zero']),
    );
    expect(space.read(va, 8 * PAGE).every((byte) => byte === 0)).toBe(true);
    expect(words(await gpu.read(va, 8 * PAGE)).every((word) => word === 0)).toBe(true);
    expect(events).toEqual(['discard']);
    // The pages work on as zero pages: written, they keep what is written.
    space.setU32(va, 5);
    await gpu.migrate(va, 8 * PAGE, 'gpu');
    expect(words(await gpu.read(va, 8)).slice(0, 2)).toEqual(new Uint32Array([5, 0]));
  });

  it('zeroes a partial page at either end in place and keeps the rest of its bytes', async () => {
    const { space } = await setup();
    const va = space.alloc(4 * PAGE);
    space.fill(va, 4 * PAGE, 7);
    space.discard(va + 100, 2 * PAGE);
    const bytes = space.read(va, 4 * PAGE);
    const zeroAt = (i: number) => i >= 100 && i < 2 * PAGE + 100;
    expect(bytes.every((byte, i) => byte === (zeroAt(i) ? 0 : 7))).toBe(true);
    expect(space.snapshot(va, 4 * PAGE).map((entry) => entry.state)).toEqual([
      'cpu',
      'zero',
      'cpu',
      'cpu',
    ]);
  });

  it('is ordered after a run holding the pages: a worker discard waits for it', async () => {
    const { space, gpu } = await setup();
    const va = space.alloc(4 * PAGE);
    const slow = gpu.kernel({
      code: /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  var acc = id.x;
  for (var i = 0u; i < hmm_params.spin; i++) { acc = acc * 1664525u + 1013904223u; }
  for (var w = id.x; w < ${PAGE}u; w += 64u) { hmm_store_u32(hmm_params.va + w * 4u, 9u + (acc & 0u)); }
}`,
      params: { va: 'u32', spin: 'u32' },
    });
    await slow.ready;
    await gpu.migrate(va, 4 * PAGE, 'gpu');
    const worker = new Worker(new URL('../space/space.worker.ts', import.meta.url), {
      type: 'module',
    });
    const api = wrap<SpaceWorkerApi>(worker);
    cleanups.push(() => {
      api[releaseProxy]();
      worker.terminate();
    });
    await api.attach(space.handle);
    let ranAt = 0;
    const run = slow
      .run({
        workgroups: 1,
        params: { va, spin: 2_000_000 },
        uses: [{ va, len: 4 * PAGE, access: 'write' }],
      })
      .then(() => (ranAt = performance.timeOrigin + performance.now()));
    const discardedAt = await api.discardAt(va, 4 * PAGE);
    await run;
    expect(discardedAt).toBeGreaterThanOrEqual(ranAt);
    // The run's stores landed first; the discard dropped them, with no write-back.
    expect(space.read(va, 4 * PAGE).every((byte) => byte === 0)).toBe(true);
    expect(gpu.stats()).toMatchObject({ bytesToCpu: 0, writebacks: 0 });
  });

  it('refuses unmapped and protected ranges with AccessError, changing nothing', async () => {
    const { space } = await setup();
    const va = space.alloc(4 * PAGE);
    space.fill(va, 4 * PAGE, 3);
    space.protect(va + 2 * PAGE, 2 * PAGE, 'r');
    const refused = (() => {
      try {
        space.discard(va + 100, 3 * PAGE);
        return undefined;
      } catch (error) {
        return error;
      }
    })();
    expect(refused).toBeInstanceOf(AccessError);
    expect(refused).toMatchObject({ reason: 'protection', address: va + 2 * PAGE });
    expect(space.read(va, 4 * PAGE).every((byte) => byte === 3)).toBe(true);
    space.protect(va + 2 * PAGE, 2 * PAGE, 'rw');
    const unmapped = (() => {
      try {
        space.discard(va + 3 * PAGE, 2 * PAGE);
        return undefined;
      } catch (error) {
        return error;
      }
    })();
    expect(unmapped).toMatchObject({ code: 'ACCESS', address: va + 4 * PAGE });
    expect(() => space.discard(va, 0)).toThrow(/zero/);
  });
});
