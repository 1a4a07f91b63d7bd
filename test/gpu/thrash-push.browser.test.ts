// Pushes to pages pinned on the GPU, from an adversarial review: a push the
// mirror's thread does not serve in time (it is busy past faultTimeoutMs)
// fails and writes nothing, so the CPU and GPU copies still agree (pushed
// bytes travel in the fault slot and the server writes both copies); and a
// page's count of moves does not outlive a free.
import { afterEach, describe, expect, it } from 'vitest';
import type { GpuMirror } from '../../src/mirror/gpu-mirror.ts';
import { testMirror } from '../support/mirror.ts';
import { singleCallThread } from '../support/single-call-thread.ts';

const PAGE = 4096;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const ADD_ONE = /* wgsl */ `
@compute @workgroup_size(1)
fn main() {
  hmm_store_u32(hmm_params.va, hmm_load_u32(hmm_params.va) + 1u);
}`;

/** A one-page allocation pinned on the GPU by a worker/kernel ping-pong, GPU-dirty. */
async function pinnedPage(faultTimeoutMs: number) {
  const { space, gpu } = await testMirror(
    { size: 1 << 20, pageSize: PAGE, faultTimeoutMs },
    { thrash: { threshold: 2, windowMs: 10_000, pinMs: 60_000 } },
    cleanups,
  );
  const worker = await singleCallThread(space, cleanups);
  const va = space.alloc(PAGE);
  const kernel = gpu.kernel({ code: ADD_ONE, params: { va: 'u32' } });
  for (let i = 0; i < 4; i++) {
    expect((await worker.writeU32(va, 100 * i)).result).toBe('ok');
    await kernel.run({
      workgroups: 1,
      params: { va },
      uses: [{ va, len: 4, access: 'readwrite' }],
    });
  }
  // A worker's read pulls the word and leaves the page GPU-owned, dirty, pinned.
  expect(await worker.u32At(va)).toBe(301);
  expect((await gpu.snapshot(va, PAGE))[0]).toMatchObject({
    state: 'gpu',
    dirty: 'gpu',
    pinned: true,
  });
  return { space, gpu, worker, va };
}

function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // The mirror's thread (this one) is busy: it serves no push meanwhile.
  }
}

async function gpuWord(gpu: GpuMirror, va: number): Promise<number> {
  return new Uint32Array((await gpu.read(va, 4)).slice().buffer)[0] ?? -1;
}

/** The word as a worker's read of the whole page sees it (the page's CPU copy, brought back if need be). */
function cpuWord(
  worker: Awaited<ReturnType<typeof singleCallThread>>,
  va: number,
): Promise<number> {
  return worker.u32InRead(va, PAGE);
}

describe('pushes to pages pinned on the GPU', () => {
  it('a push that times out writes nothing: the CPU and GPU copies of the page agree', async () => {
    const { gpu, worker, va } = await pinnedPage(200);
    // The worker's setU32 posts a push and waits; the mirror's thread is busy
    // past faultTimeoutMs, so the push times out.
    const write = worker.writeU32(va, 0xdead);
    busy(800);
    const outcome = await write;
    expect(outcome.result).toBe('WOULD_BLOCK:timeout');
    const onCpu = await cpuWord(worker, va);
    const onGpu = await gpuWord(gpu, va);
    expect({ onCpu, onGpu }).toEqual({ onCpu: 301, onGpu: 301 });
    // A push served in time lands in both.
    expect((await worker.writeU32(va, 0xdead)).result).toBe('ok');
    expect({ onCpu: await cpuWord(worker, va), onGpu: await gpuWord(gpu, va) }).toEqual({
      onCpu: 0xdead,
      onGpu: 0xdead,
    });
    expect((await gpu.snapshot(va, PAGE))[0]).toMatchObject({ state: 'gpu', pinned: true });
  });
});

describe('thrash counts and free', () => {
  it('a new allocation at freed VAs starts with no moves counted: one move does not pin it', async () => {
    const { space, gpu } = await testMirror(
      { size: 1 << 20, pageSize: PAGE },
      { thrash: { threshold: 2, windowMs: 60_000, pinMs: 60_000 } },
      cleanups,
    );
    const worker = await singleCallThread(space, cleanups);
    const kernel = gpu.kernel({ code: ADD_ONE, params: { va: 'u32' } });
    const use = (va: number) =>
      kernel.run({ workgroups: 1, params: { va }, uses: [{ va, len: 4, access: 'readwrite' }] });
    const va = space.alloc(PAGE);
    await use(va); // move 1: to the GPU
    expect(await worker.u32At(va)).toBe(1); // move 2: a CPU fault brings it back
    expect((await gpu.snapshot(va, PAGE))[0]?.pinned).toBeUndefined();
    space.free(va);
    const again = space.alloc(PAGE);
    expect(again).toBe(va); // the same VAs, a new allocation
    await use(again); // the new allocation's first move
    expect(gpu.stats().thrashPins).toBe(0);
    expect((await gpu.snapshot(again, PAGE))[0]?.pinned).toBeUndefined();
  });
});
