// A thread that owns a GpuMirror, for the thread-end tests, started by
// Threads.spawn: it attaches a mirror of the space on its own device and
// does GPU work on request; `block` keeps its event loop from serving faults.
// Without a mirror, it is a plain CPU thread (`readOutcome`).
import { GpuMirror } from '../../src/mirror/gpu-mirror.ts';
import type { AddressSpace } from '../../src/space/address-space.ts';
import { internalsOf } from '../../src/space/internals.ts';
import { serveThread } from '../../src/threads/serve-thread.ts';

let gpu: GpuMirror | undefined;

function mirror(): GpuMirror {
  if (!gpu) throw new Error('attach a mirror first');
  return gpu;
}

const createApi = (space: AddressSpace) => ({
  threadId: () => internalsOf(space).threadId,

  async attach(): Promise<void> {
    gpu = await GpuMirror.attach(space, { budget: 4 << 20 });
  },

  /**
   * Calls `pairs.length` runs in one task, run i copying word 0 of
   * `pairs[i][0]` plus one into word 0 of `pairs[i][1]` through named ranges
   * (two holds each); returns the messages of those that failed.
   */
  async chainCopies(pairs: readonly (readonly [number, number])[]): Promise<string[]> {
    const copy = mirror().kernel({
      code: '@compute @workgroup_size(1) fn main() { y_store_u32(0u, x_load_u32(0u) + 1u); }',
      ranges: { x: 'read', y: 'write' },
    });
    const settled = await Promise.allSettled(
      pairs.map(([x, y]) =>
        copy.run({
          workgroups: 1,
          uses: [
            { name: 'x', va: x, len: 4 },
            { name: 'y', va: y, len: 4 },
          ],
        }),
      ),
    );
    copy.destroy();
    return settled.flatMap((s) => (s.status === 'rejected' ? [String(s.reason)] : []));
  },

  async write(va: number, words: Uint32Array): Promise<void> {
    await mirror().write(va, words);
  },

  async migrate(va: number, len: number, to: 'gpu' | 'cpu'): Promise<void> {
    await mirror().migrate(va, len, to);
  },

  /** Makes `count` pages GPU-dirty, page i at `va + i * stride` holding words `seed + i * 1000 + w`. */
  async dirtyPages(va: number, count: number, stride: number, seed: number): Promise<void> {
    const words = new Uint32Array(space.pageSize / 4);
    for (let i = 0; i < count; i++) {
      for (let w = 0; w < words.length; w++) words[w] = seed + i * 1000 + w;
      await mirror().write(va + i * stride, words);
    }
  },

  /** gpu.sync(); resolves with its result, or the error's code and reason. */
  async sync(): Promise<{ pages: number } | { error: string }> {
    try {
      const { pages } = await mirror().sync();
      return { pages };
    } catch (error) {
      return { error: describe(error) };
    }
  },

  /** gpu.detach(); resolves with the error's code and reason if it failed. */
  async detach(): Promise<string | undefined> {
    try {
      await mirror().detach();
      return undefined;
    } catch (error) {
      return describe(error);
    }
  },

  /** The mirror's snapshot states of [va, va + len). */
  async states(va: number, len: number): Promise<string[]> {
    return (await mirror().snapshot(va, len)).map((page) => page.state);
  },

  /**
   * Reads [va, va + len) (faulting GPU-dirty pages back, blocking); returns
   * the sum of its bytes, or the error's code, reason and `unsaved` list.
   */
  readOutcome(
    va: number,
    len: number,
  ): { sum: number } | { code: string; reason: string; unsaved: readonly unknown[] } {
    try {
      return { sum: space.read(va, len).reduce((sum, byte) => sum + byte, 0) };
    } catch (error) {
      const {
        code = 'none',
        reason = String(error),
        unsaved = [],
      } = error as {
        code?: string;
        reason?: string;
        unsaved?: readonly unknown[];
      };
      return { code, reason, unsaved };
    }
  },

  /** Never returns: the thread's event loop stays blocked, so its mirror serves no fault. */
  block(flag: SharedArrayBuffer): void {
    const word = new Int32Array(flag);
    Atomics.store(word, 0, 1);
    Atomics.notify(word, 0);
    for (;;) Atomics.wait(word, 1, 0);
  },
});

function describe(error: unknown): string {
  const { code, reason } = error as { code?: string; reason?: string };
  return code ? `${code} ${reason ?? ''}: ${(error as Error).message}` : String(error);
}

export type MirrorThreadApi = ReturnType<typeof createApi>;

serveThread(createApi);
