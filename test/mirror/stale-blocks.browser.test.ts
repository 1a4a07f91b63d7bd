// Sub-page stale tracking on real workers and real WebGPU: CPU writes mark
// 16-byte blocks with no per-page limit, lock-free under concurrent writers,
// and an upload moves exactly the blocks written (or the page, when most of
// it is stale), byte-identical on the GPU.
import { afterEach, describe, expect, it } from 'vitest';
import type { CopyMode } from '../../src/gpu/copy-engines.ts';
import { Threads } from '../../src/threads/threads.ts';
import { testMirror } from '../support/mirror.ts';
import { testRandom } from '../support/random.ts';
import type { CpuThreadApi } from '../threads/cpu-thread.worker.ts';
import { scatteredValue } from '../threads/stress.ts';

const KiB = 1024;
const PAGE = 64 * KiB;
const PAGES = 32;
const WRITERS = 4;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function mirrored(copy: CopyMode) {
  const rig = await testMirror({ size: (PAGES + 2) * PAGE, pageSize: PAGE }, { copy }, cleanups);
  const va = rig.space.alloc(PAGES * PAGE);
  rig.space.fill(va, PAGES * PAGE, 7);
  await rig.gpu.migrate(va, PAGES * PAGE, 'gpu'); // every page has a frame, none stale
  return { ...rig, va };
}

/** `count` random word indexes of the region, for each writer; they overlap across writers. */
function scattered(seed: string, count: number): Uint32Array[] {
  const random = testRandom(seed);
  const words = (PAGES * PAGE) / 4;
  return Array.from({ length: WRITERS }, () =>
    Uint32Array.from({ length: count }, () => random.int(words)),
  );
}

describe('stale blocks', () => {
  for (const copy of ['kernel', 'buffer'] as const) {
    it(`moves exactly the 16-byte blocks that 4 concurrent workers wrote (${copy} engine)`, async () => {
      const { space, gpu, va } = await mirrored(copy);
      const threads = await Threads.spawn<CpuThreadApi>(
        space,
        new URL('../threads/cpu-thread.worker.ts', import.meta.url),
        WRITERS,
      );
      cleanups.push(() => threads.terminate());
      // ~1% of the words: a few per cent of each page's blocks, so no page goes whole.
      const writes = scattered(`stale blocks ${copy}`, (PAGES * PAGE) / 4 / 100 / WRITERS);
      const start = new SharedArrayBuffer(4);
      const before = gpu.stats();
      await Promise.all(
        threads.workers.map((worker, i) => worker.scatteredWrites(va, writes[i]!, start, WRITERS)),
      );
      const blocks = new Set(writes.flatMap((list) => Array.from(list, (w) => w >>> 2)));
      const moved = await gpu.migrate(va, PAGES * PAGE, 'gpu');
      const after = gpu.stats();
      expect(moved.bytes).toBe(blocks.size * 16);
      expect(after.staleBytesUploaded - before.staleBytesUploaded).toBe(blocks.size * 16);
      expect(after.staleBytesWritten - before.staleBytesWritten).toBe(
        writes.reduce((sum, list) => sum + 4 * list.length, 0),
      );
      const expected = new Uint32Array(PAGES * (PAGE / 4)).fill(0x07070707);
      for (const list of writes) for (const w of list) expected[w] = scatteredValue(w);
      const onGpu = new Uint32Array((await gpu.read(va, PAGES * PAGE)).buffer);
      expect(onGpu).toEqual(expected);
      // Brought up to date: nothing is left to move.
      expect((await gpu.migrate(va, PAGES * PAGE, 'gpu')).bytes).toBe(0);
    });
  }

  it('a gpu.write that fails after its fetch leaves the bytes it skipped marked stale', async () => {
    const { space, gpu } = await testMirror(
      { size: 16 * 4 * KiB, pageSize: 4 * KiB },
      { copy: 'buffer' },
      cleanups,
    );
    const page = 4 * KiB;
    // Frames that held other bytes go back to the pool.
    const old = space.alloc(4 * page);
    space.fill(old, 4 * page, 0xab);
    await gpu.migrate(old, 4 * page, 'gpu');
    space.free(old);
    // A: CPU bytes and no frame; a zero page with no frame; B, freed mid-write.
    const va = space.alloc(3 * page);
    const [a, zero, b] = [va, va + page, va + 2 * page];
    space.fill(a, page, 0x5c);
    // The write covers A's second half, the zero page whole, B's start. Its
    // fetch gives A a frame holding only A's first half, and the zero page an
    // uncleared frame; B is freed the moment the fetch is done.
    const stop = gpu.trace((event) => {
      if (event.cause === 'fault-gpu') space.free(b, page);
    });
    await expect(gpu.write(a + page / 2, new Uint8Array(2 * page).fill(1))).rejects.toMatchObject({
      reason: 'freed',
    });
    stop();
    expect(await gpu.read(a, page)).toEqual(space.read(a, page));
    space.setU32(zero + 8, 3); // a partial write to the zero page: the rest must read as zeros
    expect(await gpu.read(zero, page)).toEqual(space.read(zero, page));
  });

  it("a migrate to 'gpu' called while one to 'cpu' holds the pages ends after it", async () => {
    const { gpu, va } = await mirrored('buffer');
    await gpu.write(va, new Uint8Array(4 * PAGE).fill(3)); // GPU-dirty: the way back reads them
    const [back, there] = await Promise.all([
      gpu.migrate(va, 4 * PAGE, 'cpu'),
      gpu.migrate(va, 4 * PAGE, 'gpu'),
    ]);
    expect(back.bytes).toBe(4 * PAGE);
    expect(there.bytes).toBe(0); // both copies equal: no transfer
    expect((await gpu.snapshot(va, 4 * PAGE)).map((page) => page.state)).toEqual(
      Array(4).fill('gpu'),
    );
  });

  it('uploads a page whole once most of it is stale, and the blocks of the others', async () => {
    const { space, gpu, va } = await mirrored('kernel');
    expect(gpu.stats().copyEngine.wholePageShare).toBe(0.5); // fixed engines use no calibration
    for (let w = 0; w < PAGE / 4; w += 2) space.setU32(va + 4 * w, w); // every other word: all blocks
    space.setU32(va + PAGE + 100, 1);
    space.write(va + 2 * PAGE + 1000, new Uint8Array(40).fill(9)); // blocks 62-64
    const moved = await gpu.migrate(va, 3 * PAGE, 'gpu');
    expect(moved).toEqual({ pages: 3, bytes: PAGE + 16 + 3 * 16 });
    const onGpu = await gpu.read(va, 3 * PAGE);
    expect(onGpu).toEqual(space.read(va, 3 * PAGE));
  });
});
