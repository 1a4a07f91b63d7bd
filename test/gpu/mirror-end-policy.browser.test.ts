// Advice and thrash pins are the mirror's, from an adversarial review: a
// Threads worker that owns a mirror and is terminated ends that mirror
// without detach (fault-channel.ts serverEnded); its pages fall back to
// their CPU copies and its advice and pins go with it, so the next mirror
// starts with none (and no pin that no detector would ever end).
import { afterEach, describe, expect, it } from 'vitest';
import { GpuMirror } from '../../src/mirror/gpu-mirror.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import { Threads } from '../../src/threads/threads.ts';
import { testDevice } from '../support/gpu.ts';
import type { AdviseThreadApi } from './advise-thread.worker.ts';

const PAGE = 4096;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('the end of a mirror whose thread was terminated', () => {
  it('takes its advice and pins with it: a new mirror starts with none', async () => {
    const space = AddressSpace.create({ size: 1 << 20, pageSize: PAGE, faultTimeoutMs: 3000 });
    const threads = await Threads.spawn<AdviseThreadApi>(
      space,
      new URL('./advise-thread.worker.ts', import.meta.url),
      1,
    );
    cleanups.push(() => threads.terminate());
    const worker = threads.workers[0];
    if (!worker) throw new Error('no worker');
    await worker.attach();
    const va = space.alloc(2 * PAGE);
    // Page 0: advised on the worker's mirror.
    await worker.advise(va, PAGE, { readMostly: true, preferred: 'gpu' });
    // Page 1: pinned by the worker's mirror (threshold 1): to the GPU, then a CPU fault back.
    await worker.write(va + PAGE, new Uint32Array([5]));
    expect(new Uint32Array((await space.readAsync(va + PAGE, 4)).buffer)[0]).toBe(5);
    const before = space.snapshot(va, 2 * PAGE);
    expect(before[0]?.advice).toEqual({ readMostly: true, preferred: 'gpu' });
    expect(before[1]?.pinned).toBe(true);
    await threads.terminate();
    const test = await testDevice();
    const gpu = await GpuMirror.attach(space, { device: test.device });
    cleanups.push(async () => {
      await gpu.detach();
      test.destroy();
    });
    const after = await gpu.snapshot(va, 2 * PAGE);
    expect(after.map((page) => [page.advice, page.pinned])).toEqual([
      [undefined, undefined],
      [undefined, undefined],
    ]);
  });
});
