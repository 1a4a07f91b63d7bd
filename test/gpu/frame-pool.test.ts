import { describe, expect, it } from 'vitest';
import { FramePool } from '../../src/gpu/frame-pool.ts';

const takeAll = (pool: FramePool, count: number) =>
  Array.from({ length: count }, () => pool.take());

describe('the frame pool', () => {
  it('hands out the lowest free frame, so frames taken one after another are consecutive', () => {
    const pool = new FramePool(100);
    expect(takeAll(pool, 70)).toEqual(Array.from({ length: 70 }, (_, i) => i));
    // Given back in page order, as a free does (a stack handed them out reversed).
    for (let frame = 10; frame < 70; frame++) pool.give(frame);
    expect(takeAll(pool, 60)).toEqual(Array.from({ length: 60 }, (_, i) => 10 + i));
    expect(pool.take()).toBe(70);
  });

  it('never hands out more than its capacity, and counts what is free', () => {
    const pool = new FramePool(33);
    expect(new Set(takeAll(pool, 33)).size).toBe(33);
    expect(pool.take()).toBe(-1);
    expect([pool.available, pool.inUse]).toEqual([0, 33]);
    pool.give(32);
    pool.give(5);
    expect([pool.available, pool.inUse]).toEqual([2, 31]);
    expect(takeAll(pool, 3)).toEqual([5, 32, -1]);
  });

  it('refuses a frame given back twice, or one it never had, before its counts go wrong', () => {
    const pool = new FramePool(2);
    const frame = pool.take();
    pool.give(frame);
    expect(() => pool.give(frame)).toThrow(/given back twice/);
    expect(() => pool.give(2)).toThrow(/not one of the pool's/);
    expect(() => pool.give(-1)).toThrow(/not one of the pool's/);
    expect([pool.available, pool.take(), pool.take(), pool.take()]).toEqual([2, 0, 1, -1]);
  });
});
