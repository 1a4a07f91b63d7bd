// space.discard on the main thread of a range whose last, partial page is
// GPU-dirty: the tail's zeroing needs a readback (WouldBlockError), but by
// then the head was zeroed and the whole pages dropped.
import { afterEach, expect, it } from 'vitest';
import { WouldBlockError } from '../../src/errors.ts';
import { testMirror } from '../support/mirror.ts';

const PAGE = 4096;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

it('a discard that fails with WouldBlockError has dropped nothing', async () => {
  const { space, gpu } = await testMirror(
    { size: 4 << 20, pageSize: PAGE },
    { budget: 64 * PAGE },
    cleanups,
  );
  const va = space.alloc(3 * PAGE);
  space.fill(va, 2 * PAGE, 5);
  await gpu.write(va + 2 * PAGE, new Uint32Array(PAGE / 4).fill(0x09090909)); // page 2 GPU-dirty
  let error: unknown;
  try {
    space.discard(va + PAGE / 2, 2 * PAGE); // head: half of page 0; whole: page 1; tail: half of page 2
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(WouldBlockError);
  const bytes = await space.readAsync(va, 3 * PAGE);
  const head = bytes.subarray(PAGE / 2, PAGE);
  const whole = bytes.subarray(PAGE, 2 * PAGE);
  // The call threw: it must not have zeroed the head nor dropped page 1.
  expect(head.every((b) => b === 5)).toBe(true);
  expect(whole.every((b) => b === 5)).toBe(true);
});
