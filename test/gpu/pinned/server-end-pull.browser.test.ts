// The mirror's Threads worker ends (terminated) while a CPU read of a
// GPU-dirty page waits on it. SPEC inv. 7: GPU-dirty bytes that could not
// be saved are reported; fault-channel.ts serverEnded fails waiting fetches
// with DeviceLostError naming them. A waiting pull (a small read of a page
// pinned on the GPU, always GPU-dirty) is instead "done again" on the CPU
// copy and returns the lost write's predecessor with no error.
import { afterEach, describe, expect, it } from 'vitest';
import { AddressSpace } from '../../../src/space/address-space.ts';
import { Threads } from '../../../src/threads/threads.ts';
import type { AdviseThreadApi as MirrorThreadApi } from '../advise-thread.worker.ts';

const PAGE = 4096;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup() {
  const space = AddressSpace.create({ size: 1 << 20, pageSize: PAGE, faultTimeoutMs: 5000 });
  const threads = await Threads.spawn<MirrorThreadApi>(
    space,
    new URL('../advise-thread.worker.ts', import.meta.url),
    1,
  );
  cleanups.push(() => threads.terminate());
  const worker = threads.workers[0];
  if (!worker) throw new Error('no worker');
  await worker.attach();
  const va = space.alloc(PAGE);
  // Pinned on the GPU (threshold 1, the CPU's fault a small read), then GPU-dirty with 6.
  await worker.write(va, new Uint32Array([5]));
  expect(new Uint32Array((await space.readAsync(va, 4)).buffer)[0]).toBe(5);
  await worker.write(va, new Uint32Array([6]));
  expect(await worker.snapshot(va, PAGE)).toMatchObject([
    { state: 'gpu', dirty: 'gpu', pinned: true },
  ]);
  return { space, threads, worker, va };
}

async function endWhileWaiting(read: () => Promise<Uint8Array>) {
  const { threads, worker } = ctx!;
  void worker.busy(1500).catch(() => undefined);
  await new Promise((r) => setTimeout(r, 100));
  const reading = read().then(
    (bytes) => ({ value: new Uint32Array(bytes.slice(0, 4).buffer)[0] }),
    (error: Error) => ({ error: error.name, message: error.message }),
  );
  await new Promise((r) => setTimeout(r, 100));
  await threads.terminate();
  return reading;
}
let ctx: Awaited<ReturnType<typeof setup>> | undefined;

describe('a mirror thread that ends while a CPU read waits on it', () => {
  it('a waiting fetch (a 128-byte read) fails: its reader is told', async () => {
    ctx = await setup();
    const { space, va } = ctx;
    // Control: the fetch's reader is told (DeviceLostError, or 'unserved' when the batch was cut short).
    const r = await endWhileWaiting(() => space.readAsync(va, 128));
    expect(r).toHaveProperty('error');
  });

  it('a waiting pull (a 4-byte read) is told too, not handed the older CPU bytes (5) in silence', async () => {
    ctx = await setup();
    const { space, va } = ctx;
    expect(await endWhileWaiting(() => space.readAsync(va, 4))).toHaveProperty('error');
  });
});
