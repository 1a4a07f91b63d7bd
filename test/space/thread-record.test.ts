import { describe, expect, it } from 'vitest';
import { WouldBlockError } from '../../src/errors.ts';
import { FaultChannel } from '../../src/space/fault-channel.ts';
import type { Hold } from '../../src/space/page-table.ts';
import { PageTable } from '../../src/space/page-table.ts';
import {
  FAULT_SLOTS,
  FAULT_STATE,
  FAULT_WORDS,
  THREAD_CRITICAL,
  THREAD_JOURNAL_CAPACITY,
  THREAD_RUNNING,
  THREAD_SLOTS,
  THREAD_STATE,
  THREAD_WORDS,
} from '../../src/space/shared-layout.ts';
import { createSharedState } from '../../src/space/shared-state.ts';
import { ThreadRecord, type JournaledHold } from '../../src/space/thread-record.ts';
import { WaitBudget } from '../../src/space/waiting.ts';

const threads = () => createSharedState(16, 12).threads;

describe('thread records', () => {
  it('journal holds, forget released ones, and hand the rest to recovery once', () => {
    const words = threads();
    const record = ThreadRecord.claim(words, 7);
    const a: JournaledHold = { first: 1, count: 2, kind: 'scope-read' };
    const b: JournaledHold = { first: 5, count: 1, kind: 'exclusive-long' };
    const c: JournaledHold = { first: 9, count: 3, kind: 'write' };
    record.journal([a, b]);
    record.journal([c]);
    record.unjournal([b]);
    const released: JournaledHold[][] = [];
    const abandoned: number[] = [];
    ThreadRecord.recover(
      words,
      7,
      (holds) => released.push([...holds]),
      (id) => abandoned.push(id),
    );
    expect(released).toEqual([[a, c]]);
    expect(abandoned).toEqual([7]);
    ThreadRecord.recover(
      words,
      7,
      () => released.push([]),
      () => abandoned.push(0),
    );
    expect(released).toHaveLength(1); // the record is free: nothing twice
    expect(ThreadRecord.slotOf(words, 7)).toBe(-1);
  });

  it('refuse a journal past its capacity and a thread past the last record', () => {
    const words = threads();
    const record = ThreadRecord.claim(words, 1);
    const hold: JournaledHold = { first: 1, count: 1, kind: 'read' };
    record.journal(new Array<JournaledHold>(THREAD_JOURNAL_CAPACITY).fill(hold));
    expect(() => record.assertFits(1)).toThrow(expect.objectContaining({ reason: 'threads' }));
    expect(() => record.journal([hold])).toThrow(expect.objectContaining({ reason: 'threads' }));
    for (let id = 2; id <= THREAD_SLOTS; id++) ThreadRecord.claim(words, id);
    expect(() => ThreadRecord.claim(words, 999)).toThrow(
      expect.objectContaining({ code: 'OUT_OF_MEMORY', reason: 'threads' }),
    );
  });

  it('stop waits out a critical section; a stopped thread starts no other', async () => {
    const words = threads();
    const record = ThreadRecord.claim(words, 3);
    const state = record.slot * THREAD_WORDS + THREAD_STATE;
    Atomics.store(words, state, THREAD_CRITICAL); // as if inside record.critical(...)
    let stopped = false;
    const stopping = ThreadRecord.stop(words, 3).then((found) => (stopped = found));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(stopped).toBe(false);
    Atomics.store(words, state, THREAD_RUNNING); // the section ends
    await stopping;
    expect(stopped).toBe(true);
    expect(() => record.critical(() => 1)).toThrow(WouldBlockError);
    expect(() => record.critical(() => 1)).toThrow(expect.objectContaining({ reason: 'stopped' }));
    expect(await ThreadRecord.stop(words, 404)).toBe(false);
  });

  it('nest critical sections and take waits outside them', () => {
    const words = threads();
    const record = ThreadRecord.claim(words, 4);
    const state = () => Atomics.load(words, record.slot * THREAD_WORDS + THREAD_STATE);
    const seen: number[] = [];
    record.critical(() => {
      seen.push(state());
      record.critical(() => seen.push(state()));
      seen.push(state());
      record.waitOutside(() => seen.push(state()));
      seen.push(state());
    });
    seen.push(state());
    expect(seen).toEqual([
      THREAD_CRITICAL,
      THREAD_CRITICAL,
      THREAD_CRITICAL,
      THREAD_RUNNING,
      THREAD_CRITICAL,
      THREAD_RUNNING,
    ]);
  });
});

describe('fault slots of an ended thread', () => {
  const limits = { faultTimeoutMs: 60_000, spinLimitMs: 1 };
  const busySlots = (faults: Int32Array): number[] =>
    Array.from({ length: FAULT_SLOTS }, (_, slot) =>
      Atomics.load(faults, slot * FAULT_WORDS + FAULT_STATE),
    ).filter((state) => state !== 0);

  it('are freed when posted, and freed by the server when in service', () => {
    const shared = createSharedState(16, 12);
    const server = new FaultChannel(shared);
    expect(server.serve(1)).toBe(true);
    const dead = new FaultChannel(shared, 7);
    const alive = new FaultChannel(shared, 8);
    // Neither request is ever answered by its requester: they stand for threads blocked in a fault.
    void dead.requestAsync(1, 1, new WaitBudget(limits, 0)).catch(() => undefined);
    void alive.requestAsync(2, 1, new WaitBudget(limits, 0)).catch(() => undefined);
    expect(busySlots(shared.faults)).toHaveLength(2);
    server.abandonOwnedBy(7); // posted: freed at once
    expect(busySlots(shared.faults)).toHaveLength(1);
    expect(server.take().map((request) => request.first)).toEqual([2]);

    void dead.requestAsync(3, 1, new WaitBudget(limits, 0)).catch(() => undefined);
    const [inService] = server.take();
    expect(inService?.first).toBe(3);
    server.abandonOwnedBy(7); // in service: the server frees it when done
    expect(busySlots(shared.faults)).toHaveLength(2);
    server.complete(inService!);
    expect(busySlots(shared.faults)).toHaveLength(1); // only the live thread's
  });
});

describe('downgrading part of a set of exclusive holds', () => {
  it('splits runs where the kind changes, locks and journal alike', () => {
    const shared = createSharedState(32, 12);
    const record = ThreadRecord.claim(shared.threads, 5);
    const limits = { faultTimeoutMs: 100, spinLimitMs: 1 };
    const table = new PageTable(shared, new SharedArrayBuffer(32 * 4096), limits, record);
    const holds: Hold[] = [
      { first: 2, count: 6, kind: 'exclusive-long' },
      { first: 20, count: 2, kind: 'exclusive-long' },
    ];
    expect(table.tryHoldAll(holds)).toBeUndefined();
    const after = table.downgradeHoldsExcept(holds, new Set([4, 5, 21]));
    expect(after).toEqual([
      { first: 4, count: 2, kind: 'exclusive-long' },
      { first: 21, count: 1, kind: 'exclusive-long' },
      { first: 2, count: 2, kind: 'device-read' },
      { first: 6, count: 2, kind: 'device-read' },
      { first: 20, count: 1, kind: 'device-read' },
    ]);
    // A plain read may join a device-read page, not an exclusive one.
    expect(table.tryHoldAll([{ first: 2, count: 1, kind: 'read' }])).toBeUndefined();
    expect(table.tryHoldAll([{ first: 4, count: 1, kind: 'read' }])).toMatchObject({ page: 4 });
    table.releaseHolds([{ first: 2, count: 1, kind: 'read' }]);
    table.releaseHolds(after);
    const journaled: JournaledHold[] = [];
    ThreadRecord.recover(
      shared.threads,
      5,
      (h) => journaled.push(...h),
      () => undefined,
    );
    expect(journaled).toEqual([]); // every hold was released through the journal
    expect([...shared.lock].every((word) => word === 0)).toBe(true);
  });
});
