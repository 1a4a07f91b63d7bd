// A CPU thread that builds data structures in the shared space for kernel tests.
import { expose } from 'comlink';
import { AddressSpace } from '../../src/space/address-space.ts';
import type { SpaceHandle } from '../../src/space/shared-layout.ts';
import { seededRandom } from '../support/random.ts';

let space: AddressSpace | undefined;

const api = {
  attach(handle: SpaceHandle): void {
    space = AddressSpace.attach(handle);
  },

  /**
   * Builds a linked list of `count` 8-byte nodes { next: VA, value } at random
   * 8-byte slots of [va, va + len); returns the head VA and the sum of values.
   */
  buildList(va: number, len: number, count: number, seed: number): { head: number; sum: number } {
    if (!space) throw new Error('attach first');
    const random = seededRandom(seed);
    const slots = new Set<number>();
    while (slots.size < count) slots.add(random.int(len / 8));
    const order = [...slots];
    let sum = 0;
    for (let i = 0; i < order.length; i++) {
      const at = va + (order[i] ?? 0) * 8;
      const next = i + 1 < order.length ? va + (order[i + 1] ?? 0) * 8 : 0;
      const value = 1 + random.int(1000);
      space.setU32(at, next);
      space.setU32(at + 4, value);
      sum += value;
    }
    return { head: va + (order[0] ?? 0) * 8, sum };
  },

  /**
   * Waits until word 0 of `flag` is non-zero, then writes `values` at `va`
   * (blocking while a kernel holds the page).
   */
  writeAfterFlag(flag: SharedArrayBuffer, va: number, values: Uint32Array): void {
    if (!space) throw new Error('attach first');
    const word = new Int32Array(flag);
    while (Atomics.load(word, 0) === 0) Atomics.wait(word, 0, 0, 1000);
    space.write(va, values);
  },

  /** `count` CPU atomic increments of each of `counters` u32s at `va`. */
  addToCounters(va: number, counters: number, count: number): void {
    if (!space) throw new Error('attach first');
    for (let i = 0; i < counters; i++) space.atomicAddU32(va + 4 * i, count);
  },
};

export type CpuThreadApi = typeof api;

expose(api);
