import { afterEach, describe, expect, it } from 'vitest';
import { testMirror } from '../../support/mirror.ts';
import { ADD_ONE_AT, pinOnGpu, stressThread } from './support.ts';

const PAGE = 4096;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe.each(['kernel', 'buffer'] as const)('pull and push sizes (copy %s)', (copy) => {
  it('64 bytes at the end of the page, 8 bytes, 4 bytes at odd word offsets', async () => {
    const { space, gpu } = await testMirror(
      { size: 1 << 20, pageSize: PAGE },
      { copy, thrash: { threshold: 2, windowMs: 10_000, pinMs: 60_000 } },
      cleanups,
    );
    const w = await stressThread(space, cleanups);
    const va = space.alloc(2 * PAGE);
    const last = va + PAGE - 4;
    await pinOnGpu(gpu, w, last, last);
    const pattern = new Uint32Array(16).map((_, i) => 0x1000 + i);
    const before = gpu.stats().bytesToGpu;
    expect(await w.write(va + PAGE - 64, new Uint8Array(pattern.buffer))).toBe('ok');
    expect(gpu.stats().bytesToGpu - before).toBe(64);
    const kernel = gpu.kernel({ code: ADD_ONE_AT, params: { va: 'u32' } });
    await kernel.run({
      workgroups: 1,
      params: { va: last },
      uses: [{ va, len: PAGE, access: 'readwrite' }],
    });
    const expected = Array.from(
      new Uint8Array(pattern.map((v, i) => (i === 15 ? v + 1 : v)).buffer),
    );
    const toCpu = gpu.stats().bytesToCpu;
    expect(await w.read(va + PAGE - 64, 64)).toEqual(expected);
    expect(await w.read(va + PAGE - 8, 8)).toEqual(expected.slice(56));
    expect(await w.read(va + PAGE - 60, 4)).toEqual(expected.slice(4, 8));
    expect(gpu.stats().bytesToCpu - toCpu).toBe(64 + 8 + 4);
    expect(Array.from(await gpu.read(va + PAGE - 64, 64))).toEqual(expected);
    expect(await w.read(va + PAGE - 64, 64)).toEqual(expected);
    expect((await gpu.snapshot(va, PAGE))[0]).toMatchObject({
      state: 'gpu',
      dirty: 'gpu',
      pinned: true,
    });
    // The CPU copy was left alone by the pulls: a whole-page read brings the page back.
    expect((await w.read(va + PAGE - 64, 68 - 4)).length).toBe(64);
    expect(Array.from(await space.readAsync(va + PAGE - 64, 64))).toEqual(expected);
  });
});
