// A Threads worker that owns a GpuMirror (quick to pin), advises it, and can keep busy (serving no fault meanwhile).
import { GpuMirror } from '../../src/mirror/gpu-mirror.ts';
import type { AddressSpace } from '../../src/space/address-space.ts';
import { serveThread } from '../../src/threads/serve-thread.ts';

let gpu: GpuMirror | undefined;

function mirror(): GpuMirror {
  if (!gpu) throw new Error('attach a mirror first');
  return gpu;
}

const createApi = (space: AddressSpace) => ({
  async attach(): Promise<void> {
    gpu = await GpuMirror.attach(space, {
      budget: 4 << 20,
      thrash: { threshold: 1, windowMs: 60_000, pinMs: 60_000 },
    });
  },
  advise(
    va: number,
    len: number,
    advice: { readMostly?: boolean; preferred?: 'cpu' | 'gpu' | 'none' },
  ): void {
    mirror().advise(va, len, advice);
  },
  async write(va: number, words: Uint32Array): Promise<void> {
    await mirror().write(va, words);
  },
  async snapshot(va: number, len: number): Promise<unknown[]> {
    return mirror().snapshot(va, len);
  },
  /** Keeps this thread (the mirror's) busy: it serves no fault meanwhile. */
  busy(ms: number): void {
    const end = performance.now() + ms;
    while (performance.now() < end) {
      // busy: no fault is served
    }
  },
});

export type AdviseThreadApi = ReturnType<typeof createApi>;

serveThread(createApi);
