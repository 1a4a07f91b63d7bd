// The demo's CPU thread: attaches to the page's address space and writes to it
// through webhmm, the way an app's worker would.
import { expose } from 'comlink';
import { AddressSpace } from '../index.ts';
import type { SpaceHandle } from '../index.ts';

let space: AddressSpace | undefined;

const api = {
  attach(handle: SpaceHandle): void {
    space = AddressSpace.attach(handle);
  },
  /** Writes `word` into every page of [va, va + len) and returns the sum the worker reads back. */
  stamp(va: number, len: number, word: number): number {
    if (!space) throw new Error('attach first');
    let sum = 0;
    for (let at = va; at < va + len; at += space.pageSize) {
      space.setU32(at, word);
      sum += space.getU32(at);
    }
    return sum;
  },
};

export type DemoWorkerApi = typeof api;

expose(api);
