// Threads' argument checks, in Node: they are made before any worker starts.
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import { Threads } from '../../src/threads/threads.ts';

describe('Threads.spawn', () => {
  it('refuses a count that is not a positive integer, with the integer reasons, starting nothing', async () => {
    const space = AddressSpace.create({ size: 1 << 20 });
    const cases: [number, string][] = [
      [0, 'zero'],
      [-2, 'negative'],
      [1.5, 'not-integer'],
      [Number.NaN, 'not-integer'],
    ];
    for (const [count, reason] of cases) {
      const spawned = Threads.spawn(space, 'data:text/javascript,', count);
      await expect(spawned).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(spawned).rejects.toMatchObject({ argument: 'count', value: count, reason });
    }
  });
});
