// Correctness of the CPU side with real threads and a real device: a free on
// the page's main thread (which may not block) of pages a kernel run holds,
// and a worker publishing notices in tight bursts while the main thread's
// pump delivers them.
import { releaseProxy, wrap, type Remote } from 'comlink';
import { afterEach, describe, expect, it } from 'vitest';
import { AccessError } from '../../src/errors.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import { internalsOf } from '../../src/space/internals.ts';
import { testMirror } from '../support/mirror.ts';
import type { SpaceCorrectnessWorkerApi } from './space-correctness.worker.ts';

const KiB = 1024;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function worker(space: AddressSpace): Promise<Remote<SpaceCorrectnessWorkerApi>> {
  const thread = new Worker(new URL('./space-correctness.worker.ts', import.meta.url), {
    type: 'module',
  });
  const api = wrap<SpaceCorrectnessWorkerApi>(thread);
  cleanups.push(() => {
    api[releaseProxy]();
    thread.terminate();
  });
  await api.attach(space.handle);
  return api;
}

/** `promise`'s outcome within `ms`; throws 'did not end' if it did not settle. */
async function settled<T>(
  promise: Promise<T>,
  ms: number,
): Promise<{ value: T } | { error: unknown }> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`did not end within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([
      promise.then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

describe('free on the main thread of pages a kernel run holds', () => {
  it('unmaps them at once; they come back zeroed once the run has ended', async () => {
    const page = 64 * KiB;
    const { space, gpu } = await testMirror(
      { size: 4 << 20, pageSize: page },
      { copy: 'buffer' },
      cleanups,
    );
    const va = space.alloc(2 * page);
    space.fill(va, 2 * page, 3);
    const store = gpu.kernel({
      code: /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  hmm_store_u32(hmm_params.va + id.x * 4u, 7u);
}`,
      params: { va: 'u32' },
    });
    await store.ready;
    const run = store.run({
      workgroups: 1,
      params: { va },
      uses: [{ va, len: 2 * page, access: 'write' }],
    });
    // The run holds its pages from the call.
    expect(internalsOf(space).table.isHeld(va / page)).toBe(true);
    space.free(va);
    expect(space.snapshot(va, 2 * page).map((p) => p.state)).toEqual(['unmapped', 'unmapped']);
    expect(() => space.getU32(va)).toThrow(AccessError);
    await settled(run, 10_000);
    const again = space.alloc(2 * page);
    expect(again).toBe(va);
    expect(space.read(va, 2 * page).every((byte) => byte === 0)).toBe(true);
    expect(space.snapshot(va, 2 * page).map((p) => p.state)).toEqual(['zero', 'zero']);
    store.destroy();
  });
});

describe('the notice pump of the main thread', () => {
  it('delivers the last notice of every burst a worker publishes in a tight loop', async () => {
    const pages = 32;
    const space = AddressSpace.create({ size: 64 * 4 * KiB, pageSize: 4 * KiB });
    const va = space.alloc(pages * 4 * KiB);
    const thread = await worker(space);
    const ack = new Int32Array(new SharedArrayBuffer(4));
    const bursts = 1000;
    let waitingFor = 0;
    let seenMarker: () => void = () => undefined;
    space.onInvalidate(va, pages * 4 * KiB, (event) => {
      const first = (event.va - va) / (4 * KiB);
      const end = first + event.len / (4 * KiB);
      const marker = waitingFor % pages;
      if (event.cause === 'overflow' || (first <= marker && marker < end)) seenMarker();
    });
    const published = thread.publishBursts(va, pages, bursts, 8, ack, 2000);
    for (let r = 0; r < bursts; r++) {
      waitingFor = r;
      const seen = new Promise<void>((resolve) => (seenMarker = resolve));
      const outcome = await settled(seen, 2000).catch(() => undefined);
      if (!outcome) throw new Error(`the last notice of burst ${r} did not end up delivered`);
      Atomics.store(ack, 0, r + 1);
      Atomics.notify(ack, 0);
    }
    expect(await published).toBe(-1);
  });
});
