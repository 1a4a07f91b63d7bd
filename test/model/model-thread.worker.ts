// A CPU thread of the model-based suite: runs each command's CPU access on a
// space it attaches per sequence, synchronously (a worker may block on faults),
// and reports the outcome instead of throwing, so the test can compare it with
// the model's expectation.
import { AddressSpace } from '../../src/space/address-space.ts';
import type { SpaceHandle } from '../../src/space/shared-layout.ts';
import { serveThread } from '../../src/threads/serve-thread.ts';
import { outcomeOf, type Outcome } from './outcome.ts';

const createApi = () => {
  let space: AddressSpace | undefined;
  const run = <T>(body: (space: AddressSpace) => T): Outcome<T> =>
    outcomeOf(() => {
      if (!space) throw new Error('no space: call use(handle) first');
      return body(space);
    });
  return {
    /** Attaches the sequence's space (the thread's own stays unused). */
    use(handle: SpaceHandle): void {
      space = AddressSpace.attach(handle);
    },
    read: (va: number, len: number) => run((s) => s.read(va, len)),
    write: (va: number, data: Uint8Array) => run((s) => s.write(va, data)),
    fill: (va: number, len: number, byte: number) => run((s) => s.fill(va, len, byte)),
    discard: (va: number, len: number) => run((s) => s.discard(va, len)),
    copy: (dst: number, src: number, len: number) => run((s) => s.copy(dst, src, len)),
    atomicAdd: (va: number, value: number) => run((s) => s.atomicAddU32(va, value)),
    /** `setU32(vas[i], values[i])` in order, stopping at the first refusal. */
    setWords: (vas: Uint32Array, values: Uint32Array) =>
      run((s) => vas.forEach((va, i) => s.setU32(va, values[i] ?? 0))),
    /** A write scope over the range: the lease's bytes take `data`. */
    scopeWrite: (va: number, data: Uint8Array) =>
      run((s) => s.access(va, data.length, 'write', (lease) => lease.bytes.set(data))),
  };
};

export type ModelThreadApi = ReturnType<typeof createApi>;

serveThread(createApi);
