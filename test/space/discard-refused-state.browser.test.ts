// space.discard refused (WouldBlockError: another thread's scope holds a
// whole page and the main thread may not wait) changes nothing: its partial
// end pages keep their states and no notice is left queued for the next call.
// (It once marked the ends written before it found the whole page held.)
import { afterEach, expect, it } from 'vitest';
import { WouldBlockError } from '../../src/errors.ts';
import type { InvalidateEvent } from '../../src/space/notifier.ts';
import { singleCallThread } from '../support/single-call-thread.ts';
import { testMirror } from '../support/mirror.ts';

const PAGE = 4096;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

it('a refused discard leaves its end pages as they were and announces nothing', async () => {
  const { space, gpu } = await testMirror(
    { size: 4 << 20, pageSize: PAGE },
    { budget: 64 * PAGE },
    cleanups,
  );
  const va = space.alloc(4 * PAGE);
  space.fill(va, PAGE, 5); // page 0: cpu
  await gpu.migrate(va, PAGE, 'gpu');
  await gpu.migrate(va, PAGE, 'cpu'); // page 0: shared; pages 1-3: zero
  const before = (await gpu.snapshot(va, 4 * PAGE)).map((e) => `${e.state}/${e.dirty}`);
  const events: InvalidateEvent[] = [];
  const off = space.onInvalidate(va, 4 * PAGE, (event) => events.push(event));
  cleanups.push(off);
  // Another thread's scope on the whole page 1.
  const worker = await singleCallThread(space, cleanups);
  await worker.acquireRead(va + PAGE, PAGE);
  cleanups.push(() => worker.release());
  let error: unknown;
  try {
    space.discard(va + PAGE / 2, 2 * PAGE); // head: half of page 0; whole: page 1; tail: half of page 2
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(WouldBlockError);
  space.setU32(va + 3 * PAGE, 1); // an unrelated call (page 3)
  const after = (await gpu.snapshot(va, 4 * PAGE)).map((e) => `${e.state}/${e.dirty}`);
  expect.soft(after.slice(0, 3)).toEqual(before.slice(0, 3));
  expect(events.filter((e) => e.va < va + 3 * PAGE)).toEqual([]);
});
