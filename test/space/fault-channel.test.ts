import { describe, expect, it } from 'vitest';
import { WouldBlockError } from '../../src/errors.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import { FaultChannel } from '../../src/space/fault-channel.ts';
import { internalsOf } from '../../src/space/internals.ts';
import {
  FAULT_SLOTS,
  PTE_FRAME,
  PTE_GPU,
  PTE_GPU_DIRTY,
  PTE_SHARED,
} from '../../src/space/shared-layout.ts';
import { isGpuOwned, withState } from '../../src/space/pte.ts';
import { WaitBudget } from '../../src/space/waiting.ts';

const PAGE = 4096;

/** Serves the channel as a mirror would, but "reads back" by flipping pages to shared. */
function fakeServer(space: AddressSpace): { batches: number[][]; stop: () => void } {
  const { faults, table, threadId } = internalsOf(space);
  expect(faults.serve(threadId)).toBe(true);
  const batches: number[][] = [];
  let running = true;
  void (async () => {
    while (running) {
      const seen = faults.doorbell();
      const taken = faults.take();
      if (taken.length > 0) batches.push(taken.map((request) => request.first));
      for (const request of taken) {
        for (let page = request.first; page < request.first + request.count; page++) {
          table.updatePte(page, (pte) =>
            isGpuOwned(pte) ? withState(pte & ~PTE_GPU_DIRTY, PTE_SHARED) : pte,
          );
        }
        faults.complete(request);
      }
      await faults.ring(seen, 50);
    }
  })();
  return {
    batches,
    stop: () => {
      running = false;
      faults.stopServing(threadId);
    },
  };
}

function makeGpuDirty(space: AddressSpace, va: number): void {
  const { table } = internalsOf(space);
  const page = va / space.pageSize;
  table.updatePte(page, (pte) => withState(pte, PTE_GPU) | PTE_GPU_DIRTY | PTE_FRAME);
}

describe('CPU faults through the fault channel', () => {
  it('an async read of a GPU-dirty page waits until the server brings it back', async () => {
    const space = AddressSpace.create({ size: 64 * PAGE, pageSize: PAGE, mayBlock: () => false });
    const va = space.alloc(2 * PAGE);
    space.setU32(va + PAGE, 5);
    makeGpuDirty(space, va + PAGE);
    const server = fakeServer(space);
    try {
      expect(new Uint32Array((await space.readAsync(va + PAGE, 4)).buffer)[0]).toBe(5);
      expect(space.snapshot(va, 2 * PAGE).map((page) => page.state)).toEqual(['zero', 'shared']);
      expect(server.batches).toEqual([[va / PAGE + 1]]);
    } finally {
      server.stop();
    }
  });

  it('a sync access of a GPU-dirty page on a thread that may not block throws, changing nothing', () => {
    const space = AddressSpace.create({ size: 64 * PAGE, pageSize: PAGE, mayBlock: () => false });
    const va = space.alloc(PAGE);
    makeGpuDirty(space, va);
    expect(() => space.getU32(va)).toThrow(WouldBlockError);
    expect(space.snapshot(va, PAGE)[0]).toEqual({ state: 'gpu', prot: 'rw', dirty: 'gpu' });
  });

  it('services requests pending at the same moment in one batch', async () => {
    const space = AddressSpace.create({ size: 64 * PAGE, pageSize: PAGE });
    const pages = [3, 5, 9];
    space.alloc(10 * PAGE); // pages 1-10
    for (const page of pages) makeGpuDirty(space, page * PAGE);
    const reads = pages.map((page) => space.readAsync(page * PAGE, 4));
    const server = fakeServer(space);
    try {
      await Promise.all(reads);
      expect(server.batches).toEqual([pages]);
    } finally {
      server.stop();
    }
  });

  it('applies back-pressure when every slot is taken, dropping nothing', async () => {
    const space = AddressSpace.create({ size: 64 * PAGE, pageSize: PAGE });
    const { faults, limits } = internalsOf(space);
    // Served from the start: a request posted while nothing serves returns at once for its caller to retry.
    const server = fakeServer(space);
    const requests = Array.from({ length: FAULT_SLOTS + 20 }, (_, i) =>
      faults.requestAsync(1 + (i % 60), 1, new WaitBudget(limits, 0)),
    );
    try {
      await Promise.all(requests);
      expect(server.batches.flat()).toHaveLength(FAULT_SLOTS + 20);
    } finally {
      server.stop();
    }
  });

  it('a requester that times out gives its slot back', async () => {
    const space = AddressSpace.create({ size: 64 * PAGE, pageSize: PAGE });
    const { faults, threadId } = internalsOf(space);
    // A server that never answers: the requester's wait runs out.
    expect(faults.serve(threadId)).toBe(true);
    const budget = new WaitBudget({ faultTimeoutMs: 20, spinLimitMs: 0 }, PAGE);
    await expect(faults.requestAsync(1, 1, budget)).rejects.toMatchObject({ reason: 'timeout' });
    expect(new FaultChannel(internalsOf(space).table.shared).take()).toEqual([]);
    faults.stopServing(threadId);
  });
});
