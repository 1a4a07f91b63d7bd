import { describe, expect, it } from 'vitest';
import { AddressSpace } from '../../src/space/address-space.ts';
import { coalesce, type InvalidateEvent } from '../../src/space/notifier.ts';
import { PTE_SHARED } from '../../src/space/shared-layout.ts';
import { PAGE, giveFrame, space } from './space-fixtures.ts';

describe('onInvalidate', () => {
  it('reports this thread’s frees and protection changes synchronously, clipped to the listener', () => {
    const s = space();
    const va = s.alloc(4 * PAGE);
    const events: unknown[] = [];
    const stop = s.onInvalidate(va + PAGE, 2 * PAGE, (event) => events.push(event));
    s.protect(va, 4 * PAGE, 'r');
    expect(events).toEqual([{ va: va + PAGE, len: 2 * PAGE, cause: 'protect' }]);
    s.free(va + 2 * PAGE, PAGE);
    expect(events[1]).toEqual({ va: va + 2 * PAGE, len: PAGE, cause: 'free' });
    stop();
    s.free(va);
    expect(events).toHaveLength(2);
  });

  it('reports a CPU write that makes a GPU copy stale, once per page', () => {
    const s = space();
    const va = s.alloc(2 * PAGE);
    giveFrame(s, va, PTE_SHARED);
    const events: unknown[] = [];
    s.onInvalidate(va, 2 * PAGE, (event) => events.push(event));
    s.setU32(va + 4, 1);
    s.setU32(va + 8, 1); // already stale: no new notice
    s.setU32(va + PAGE, 1); // no frame: nothing to invalidate
    expect(events).toEqual([{ va, len: PAGE, cause: 'write' }]);
  });

  it('delivers another thread’s notices on this thread’s event loop, coalesced', async () => {
    const mine = space();
    const theirs = AddressSpace.attach(mine.handle);
    const va = mine.alloc(4 * PAGE);
    const events: unknown[] = [];
    mine.onInvalidate(va, 4 * PAGE, (event) => events.push(event));
    theirs.protect(va, PAGE, 'r');
    theirs.protect(va + PAGE, PAGE, 'r');
    expect(events).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(events).toEqual([{ va, len: 2 * PAGE, cause: 'protect' }]);
  });

  it('delivers one whole-space notice when a thread falls behind the log', async () => {
    const mine = space();
    const theirs = AddressSpace.attach(mine.handle);
    const va = mine.alloc(PAGE);
    const events: { cause: string; va: number; len: number }[] = [];
    mine.onInvalidate(va, PAGE, (event) => events.push(event));
    for (let i = 0; i < 1500; i++) theirs.protect(va, PAGE, i % 2 ? 'r' : 'rw');
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(events).toEqual([{ va, len: PAGE, cause: 'overflow' }]);
  });
});

describe('coalesce', () => {
  it('merges events of one cause whose ranges overlap or touch, ordered by cause then address', () => {
    const events: InvalidateEvent[] = [
      { va: 3 * PAGE, len: PAGE, cause: 'write' },
      { va: PAGE, len: PAGE, cause: 'write' },
      { va: 2 * PAGE, len: PAGE, cause: 'write' }, // touches both
      { va: PAGE, len: 2 * PAGE, cause: 'free' },
      { va: 8 * PAGE, len: PAGE, cause: 'free' }, // apart
      { va: 2 * PAGE, len: 4, cause: 'protect' },
      { va: 2 * PAGE, len: 4, cause: 'protect' }, // repeated
    ];
    expect(coalesce(events)).toEqual([
      { va: PAGE, len: 2 * PAGE, cause: 'free' },
      { va: 8 * PAGE, len: PAGE, cause: 'free' },
      { va: 2 * PAGE, len: 4, cause: 'protect' },
      { va: PAGE, len: 3 * PAGE, cause: 'write' },
    ]);
    expect(coalesce([])).toEqual([]);
  });
});
