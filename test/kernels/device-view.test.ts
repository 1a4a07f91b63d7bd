// The device's view of pages (the frame map's device page table entries) is
// reconciled with the page table by sequence number, never by notices alone:
// the transitions a kernel run relies on, in Node, with the device page table
// stubbed (its GPU upload is not what is tested here).
import { describe, expect, it } from 'vitest';
import { DPTE_READABLE, DPTE_RESIDENT, DPTE_WRITABLE } from '../../src/gpu/device-layout.ts';
import type { DevicePageTable } from '../../src/gpu/device-page-table.ts';
import { FrameMap } from '../../src/gpu/frame-map.ts';
import { FramePool } from '../../src/gpu/frame-pool.ts';
import { emptyCounters } from '../../src/gpu/mirror-stats.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import { internalsOf } from '../../src/space/internals.ts';
import { withState } from '../../src/space/pte.ts';
import { PTE_GPU } from '../../src/space/shared-layout.ts';

const PAGE = 4096;

/** A space, a frame map over it, and a page of it made GPU-owned and clean, as a migration leaves it. */
function gpuOwnedPage() {
  const space = AddressSpace.create({ size: 64 * PAGE, pageSize: PAGE });
  const { table } = internalsOf(space);
  const entries = new Map<number, number>();
  const dpt = {
    set: (page: number, entry: number) => entries.set(page, entry),
  } as unknown as DevicePageTable;
  const frameMap = new FrameMap({ table, pool: new FramePool(8), dpt, counters: emptyCounters() });
  const va = space.alloc(2 * PAGE);
  space.write(va, new Uint32Array([1]));
  const page = va / PAGE;
  frameMap.assign(page);
  table.updatePte(page, (pte) => withState(pte, PTE_GPU));
  frameMap.refreshEntry(page);
  const entry = () => entries.get(page) ?? 0;
  return { space, table, frameMap, va, page, entry };
}

describe('the device view of a page', () => {
  it('is derived again when a plain CPU read takes a clean gpu page back to shared, with no notice', () => {
    const { space, table, frameMap, va, page, entry } = gpuOwnedPage();
    expect(entry() & DPTE_WRITABLE).not.toBe(0);
    const sequence = table.sequence(page);
    expect(space.getU32(va)).toBe(1);
    expect(space.snapshot(va, PAGE)[0]).toMatchObject({ state: 'shared' });
    expect(table.sequence(page)).not.toBe(sequence);
    // Stale until reconciled: nothing told the frame map.
    expect(entry() & DPTE_WRITABLE).not.toBe(0);
    expect(frameMap.reconcile()).toBe(1);
    expect(entry() & (DPTE_WRITABLE | DPTE_RESIDENT | DPTE_READABLE)).toBe(
      DPTE_RESIDENT | DPTE_READABLE,
    );
  });

  it('costs nothing to reconcile when no page changed, and only the runs asked about otherwise', () => {
    const { space, frameMap, va, page, entry } = gpuOwnedPage();
    expect(frameMap.reconcile()).toBe(0);
    space.getU32(va);
    expect(frameMap.reconcileRuns([{ first: page + 1, count: 1 }])).toBe(0);
    expect(entry() & DPTE_WRITABLE).not.toBe(0);
    expect(frameMap.reconcileRuns([{ first: page, count: 2 }])).toBe(1);
    expect(entry() & DPTE_WRITABLE).toBe(0);
  });

  it('follows a CPU write, a protection change and a free, each by its sequence', () => {
    const write = gpuOwnedPage();
    write.space.getU32(write.va);
    write.frameMap.reconcile();
    write.space.setU32(write.va, 2); // shared -> cpu: the frame is stale now
    write.frameMap.reconcile();
    expect(write.entry() & (DPTE_RESIDENT | DPTE_WRITABLE)).toBe(0);

    const prot = gpuOwnedPage();
    prot.space.protect(prot.va, PAGE, 'r');
    prot.frameMap.reconcile();
    expect(prot.entry() & DPTE_WRITABLE).toBe(0);
    expect(prot.entry() & DPTE_READABLE).not.toBe(0);

    const freed = gpuOwnedPage();
    freed.space.free(freed.va);
    expect(freed.frameMap.reconcile()).toBe(1);
    expect(freed.entry()).toBe(0);
    expect(freed.frameMap.has(freed.page)).toBe(false);
  });
});
