import { describe, expect, it } from 'vitest';
import { clearIntervals, insertInterval, intervalsAt } from '../../src/space/interval-set.ts';
import { testRandom } from '../support/random.ts';

const CAPACITY = 4;
const set = (): Int32Array => new Int32Array(1 + 2 * CAPACITY);

describe('interval set', () => {
  it('keeps ranges sorted and merges what overlaps or touches', () => {
    const words = set();
    expect(insertInterval(words, 0, CAPACITY, 100, 200)).toBe(true);
    expect(insertInterval(words, 0, CAPACITY, 10, 20)).toBe(true);
    expect(insertInterval(words, 0, CAPACITY, 300, 310)).toBe(true);
    expect(intervalsAt(words, 0)).toEqual([
      [10, 20],
      [100, 200],
      [300, 310],
    ]);
    expect(insertInterval(words, 0, CAPACITY, 20, 100)).toBe(true);
    expect(intervalsAt(words, 0)).toEqual([
      [10, 200],
      [300, 310],
    ]);
    expect(insertInterval(words, 0, CAPACITY, 150, 305)).toBe(true);
    expect(intervalsAt(words, 0)).toEqual([[10, 310]]);
  });

  it('refuses, unchanged, a range that would exceed the capacity', () => {
    const words = set();
    for (let i = 0; i < CAPACITY; i++)
      expect(insertInterval(words, 0, CAPACITY, i * 10, i * 10 + 5)).toBe(true);
    const before = intervalsAt(words, 0);
    expect(insertInterval(words, 0, CAPACITY, 100, 105)).toBe(false);
    expect(intervalsAt(words, 0)).toEqual(before);
    // A range that merges two keeps within capacity.
    expect(insertInterval(words, 0, CAPACITY, 5, 10)).toBe(true);
    expect(intervalsAt(words, 0)).toHaveLength(CAPACITY - 1);
  });

  it('leaves the mutex bit of the count word alone', () => {
    const words = set();
    words[0] = 1 << 31;
    insertInterval(words, 0, CAPACITY, 0, 8);
    expect(words[0] & (1 << 31)).not.toBe(0);
    clearIntervals(words, 0);
    expect(words[0]).toBe(1 << 31);
    expect(intervalsAt(words, 0)).toEqual([]);
  });

  it('covers exactly the union of random inserts while within capacity', () => {
    const random = testRandom('interval set');
    for (let round = 0; round < 500; round++) {
      const words = set();
      const covered = new Uint8Array(256);
      for (let i = 0; i < 6; i++) {
        const start = random.int(250);
        const end = start + 1 + random.int(256 - start - 1);
        if (!insertInterval(words, 0, CAPACITY, start, end)) break;
        covered.fill(1, start, end);
      }
      const actual = new Uint8Array(256);
      for (const [s, e] of intervalsAt(words, 0)) actual.fill(1, s, e);
      expect(actual).toEqual(covered);
    }
  });
});
