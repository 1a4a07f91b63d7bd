// space.discard when it has to wait, on real workers and WebGPU: it takes
// every hold at once or none, within one wait budget, so a discard that
// throws has changed nothing, one that waits deadlocks with no one, and none
// waits past faultTimeoutMs. Each case was a defect a review found (the test
// failed before its fix).
import { releaseProxy, wrap } from 'comlink';
import { afterEach, describe, expect, it } from 'vitest';
import { WouldBlockError } from '../../src/errors.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import type { InvalidateEvent } from '../../src/space/notifier.ts';
import { testMirror } from '../support/mirror.ts';
import { singleCallThread } from '../support/single-call-thread.ts';
import type { DiscardApi } from './discard.worker.ts';

const PAGE = 4096;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A space and a worker attached to it that discards synchronously (a worker may block). */
async function spaceWithDiscarder(faultTimeoutMs: number) {
  const space = AddressSpace.create({ size: 4 << 20, pageSize: PAGE, faultTimeoutMs });
  const thread = new Worker(new URL('./discard.worker.ts', import.meta.url), { type: 'module' });
  const worker = wrap<DiscardApi>(thread);
  cleanups.push(() => {
    worker[releaseProxy]();
    thread.terminate();
  });
  await worker.attach(space.handle);
  return { space, worker };
}

describe('a discard that waits', () => {
  it('holds nothing meanwhile: the holder it waits for can still open a scope on its tail page', async () => {
    const timeout = 1500;
    const { space, worker } = await spaceWithDiscarder(timeout);
    const va = space.alloc(3 * PAGE);
    space.fill(va, 3 * PAGE, 7);
    const lease = await space.acquire(va + PAGE, PAGE, 'read'); // on the whole page 1
    // Half of page 0, page 1, half of page 2: the worker waits for the scope.
    const discarded = worker.discard(va + PAGE / 2, 2 * PAGE);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const started = performance.now();
    const tail = await space.acquire(va + 2 * PAGE + PAGE / 2, PAGE / 2, 'write');
    tail.bytes.fill(9);
    tail.release();
    const writeMs = performance.now() - started;
    lease.release();
    const outcome = await discarded;
    expect({ result: outcome.result, writeStalled: writeMs > timeout / 2 }).toEqual({
      result: 'ok',
      writeStalled: false,
    });
    const bytes = space.read(va, 3 * PAGE);
    expect(bytes.subarray(PAGE / 2, 2 * PAGE + PAGE / 2).every((b) => b === 0)).toBe(true);
  });

  it('ends within faultTimeoutMs of waiting on others, in all', async () => {
    const timeout = 1000;
    const { space, worker } = await spaceWithDiscarder(timeout);
    const va = space.alloc(2 * PAGE);
    space.fill(va, 2 * PAGE, 7);
    const head = await space.acquire(va, PAGE, 'read'); // the partial head page, let go of at 0.8 T
    const whole = await space.acquire(va + PAGE, PAGE, 'read'); // the whole page, kept
    cleanups.push(() => whole.release());
    setTimeout(() => head.release(), 0.8 * timeout);
    const outcome = await worker.discard(va + PAGE / 2, PAGE + PAGE / 2);
    expect(outcome.result).toBe('WOULD_BLOCK:timeout');
    expect(outcome.ms).toBeLessThan(timeout + 300);
  });
});

describe('a discard refused with WouldBlockError changes nothing', () => {
  it('when its GPU-dirty tail page would need a readback on the main thread', async () => {
    const { space, gpu } = await testMirror(
      { size: 4 << 20, pageSize: PAGE },
      { budget: 64 * PAGE },
      cleanups,
    );
    const va = space.alloc(3 * PAGE);
    space.fill(va, 2 * PAGE, 5);
    await gpu.write(va + 2 * PAGE, new Uint32Array(PAGE / 4).fill(0x09090909)); // page 2 GPU-dirty
    // Half of page 0, page 1, half of page 2.
    expect(() => space.discard(va + PAGE / 2, 2 * PAGE)).toThrow(WouldBlockError);
    const bytes = await space.readAsync(va, 3 * PAGE);
    expect(bytes.subarray(PAGE / 2, 2 * PAGE).every((b) => b === 5)).toBe(true);
  });

  it("when another thread's scope holds a whole page: its ends keep their states, no notice", async () => {
    const { space, gpu } = await testMirror(
      { size: 4 << 20, pageSize: PAGE },
      { budget: 64 * PAGE },
      cleanups,
    );
    const va = space.alloc(4 * PAGE);
    space.fill(va, PAGE, 5);
    await gpu.migrate(va, PAGE, 'gpu');
    await gpu.migrate(va, PAGE, 'cpu'); // page 0: shared; pages 1-3: zero
    const before = (await gpu.snapshot(va, 4 * PAGE)).map((e) => `${e.state}/${e.dirty}`);
    const events: InvalidateEvent[] = [];
    cleanups.push(space.onInvalidate(va, 4 * PAGE, (event) => events.push(event)));
    const worker = await singleCallThread(space, cleanups);
    await worker.acquireRead(va + PAGE, PAGE); // on the whole page 1
    cleanups.push(() => worker.release());
    expect(() => space.discard(va + PAGE / 2, 2 * PAGE)).toThrow(WouldBlockError);
    space.setU32(va + 3 * PAGE, 1); // an unrelated call (page 3) delivers what was queued
    const after = (await gpu.snapshot(va, 4 * PAGE)).map((e) => `${e.state}/${e.dirty}`);
    expect(after.slice(0, 3)).toEqual(before.slice(0, 3));
    expect(events.filter((e) => e.va < va + 3 * PAGE)).toEqual([]);
  });
});
