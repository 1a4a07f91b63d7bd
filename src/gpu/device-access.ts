/**
 * Device-side access through the mirror (`gpu.read`, `gpu.write`): the
 * range is held exclusively, what the device lacks is fetched (counted as
 * GPU faults), then its frames are read or written.
 *
 * - A read leaves fetched pages `shared`; a write makes its pages `gpu` and
 *   dirty, uploading first only the stale bytes it does not overwrite (a
 *   zero page's frame is cleared unless the write covers it whole), and
 *   writes through pages whose advice asks for it (advice.ts).
 * - The write is acknowledged (its pages dirty) only once the queue has it
 *   and the device is live (device-loss.ts).
 */
import type { InvalidateEvent } from '../space/notifier.ts';
import { isGpuOwned, isMapped } from '../space/pte.ts';
import { PTE_GPU, PTE_SHARED } from '../space/shared-layout.ts';
import { WaitBudget } from '../space/waiting.ts';
import { bufferSource } from './buffer-source.ts';
import type { Migrator } from './migration.ts';
import { pagePieces } from './segments.ts';

/** The device's bytes of [va, va + len), fetching what it lacks. */
export async function readOnDevice(m: Migrator, va: number, len: number): Promise<Uint8Array> {
  const { ctx } = m;
  const started = performance.now();
  const { pageSize } = ctx.space.table;
  const run = { ...ctx.space.pageSpan(va, len), va };
  const budget = new WaitBudget(ctx.space.limits, va);
  const holds = await m.holdChecked([run], true, 'read', budget);
  try {
    const { plans, fetched } = await m.fetchWithRoom([run], { budget });
    m.countFetch(plans.length, [run], fetched, started);
    for (const plan of plans) m.settle(plan.page, PTE_SHARED, false);
    const pieces = pagePieces(va, len, pageSize);
    m.frameMap.assertFramesKept(pieces);
    const segments = pieces.map(({ page, lo, hi }) => m.frameMap.segment(page, lo, hi));
    const bytes = await ctx.engine.read(segments);
    const skew = va & 3;
    return bytes.slice(skew, skew + len);
  } finally {
    ctx.space.table.releaseHolds(holds);
  }
}

/** Writes `data` at `va` on the device (see the module doc). */
export async function writeOnDevice(m: Migrator, va: number, data: Uint8Array): Promise<void> {
  const { ctx } = m;
  const started = performance.now();
  const { table } = ctx.space;
  const { pageSize } = table;
  const run = { ...ctx.space.pageSpan(va, data.byteLength), va };
  const budget = new WaitBudget(ctx.space.limits, va);
  const holds = await m.holdChecked([run], true, 'write', budget);
  const events: InvalidateEvent[] = [];
  try {
    const overwrite = { lo: va, hi: va + data.byteLength };
    const { plans, fetched } = await m.fetchWithRoom([run], { overwrite, budget });
    m.countFetch(plans.length, [run], fetched, started);
    const pieces = pagePieces(va, data.byteLength, pageSize);
    m.frameMap.assertFramesKept(pieces);
    const { queue } = ctx.device;
    for (const { page, lo, hi } of pieces) {
      const frameOffset = m.frameMap.frameOf(page) * pageSize + lo;
      const from = page * pageSize + lo - va;
      queue.writeBuffer(ctx.frames, frameOffset, bufferSource(data), from, hi - lo);
    }
    await queue.onSubmittedWorkDone();
    // The write is acknowledged here, with its pages made dirty, or not at all (device-loss.ts).
    ctx.assertLive();
    const taken: number[] = [];
    for (const { page } of pieces) {
      if (!isMapped(table.pte(page))) continue; // freed meanwhile: nothing to keep
      if (!isGpuOwned(table.pte(page))) {
        table.invalidate(page);
        events.push({ va: page * pageSize, len: pageSize, cause: 'migrate' });
        taken.push(page);
      }
      m.settle(page, PTE_GPU, false);
    }
    m.thrash?.moved(taken, 'fault-gpu');
    const written = pieces.map(({ page }) => page);
    m.markDirty(written.filter((page) => isMapped(table.pte(page))));
    await m.writeThrough(written);
  } finally {
    table.releaseHolds(holds);
  }
  ctx.space.announce(events);
}
