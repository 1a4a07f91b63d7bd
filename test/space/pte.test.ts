import { describe, expect, it } from 'vitest';
import { AccessError } from '../../src/errors.ts';
import {
  FREED_PTE,
  PROTECTIONS,
  assertAccess,
  assertMapped,
  describePte,
  hasFrame,
  hasStaleBlocks,
  isFreed,
  isGpuDirty,
  isGpuOwned,
  isMapped,
  isStale,
  isStaleWhole,
  protAllows,
  protCode,
  protName,
  pteProt,
  pteState,
  withProt,
  withStaleBlocks,
  withStaleWhole,
  withState,
  withoutStale,
} from '../../src/space/pte.ts';
import {
  PROT_NONE,
  PROT_R,
  PROT_RW,
  PTE_CPU,
  PTE_FRAME,
  PTE_FREED,
  PTE_GPU,
  PTE_GPU_DIRTY,
  PTE_SHARED,
  PTE_STALE_BLOCKS,
  PTE_STALE_WHOLE,
  PTE_UNMAPPED,
  PTE_ZERO,
} from '../../src/space/shared-layout.ts';

/** A pte of `state` with protection `prot` and the flag bits `flags`. */
const pte = (state: number, prot: number, flags = 0): number => withProt(state, prot) | flags;

/** The AccessError `fn` throws. */
function accessError(fn: () => unknown): AccessError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(AccessError);
    return error as AccessError;
  }
  throw new Error('expected an AccessError');
}

const STATES = [PTE_UNMAPPED, PTE_ZERO, PTE_CPU, PTE_SHARED, PTE_GPU];
const FLAGS = PTE_FRAME | PTE_GPU_DIRTY | PTE_STALE_BLOCKS | PTE_FREED;

describe('pte state and protection fields', () => {
  it('reads back every state and protection, whatever the flag bits', () => {
    for (const state of STATES) {
      for (const prot of [PROT_NONE, PROT_R, PROT_RW]) {
        for (const flags of [0, FLAGS]) {
          expect(pteState(pte(state, prot, flags))).toBe(state);
          expect(pteProt(pte(state, prot, flags))).toBe(prot);
        }
      }
    }
  });

  it('replaces the state or the protection alone, keeping every other bit', () => {
    const word = pte(PTE_GPU, PROT_R, FLAGS);
    const shared = withState(word, PTE_SHARED);
    expect(pteState(shared)).toBe(PTE_SHARED);
    expect(pteProt(shared)).toBe(PROT_R);
    expect(shared & FLAGS).toBe(FLAGS);
    const writable = withProt(word, PROT_RW);
    expect(pteProt(writable)).toBe(PROT_RW);
    expect(pteState(writable)).toBe(PTE_GPU);
    expect(writable & FLAGS).toBe(FLAGS);
    expect(withProt(withProt(word, PROT_NONE), PROT_R)).toBe(word);
  });

  it('names protections by code and codes by name, refusing anything else', () => {
    expect(PROTECTIONS.map((name) => protCode(name))).toEqual([PROT_NONE, PROT_R, PROT_RW]);
    expect([PROT_NONE, PROT_R, PROT_RW].map(protName)).toEqual(['none', 'r', 'rw']);
    expect(protName(7)).toBe('none');
    for (const bad of ['x', 'RW', 'toString', 1, undefined, null]) {
      expect(protCode(bad)).toBeUndefined();
    }
  });
});

describe('pte predicates', () => {
  it('a page is mapped unless unmapped; freed tells a freed page from a never-mapped one', () => {
    expect(STATES.map((state) => isMapped(pte(state, PROT_RW)))).toEqual([
      false,
      true,
      true,
      true,
      true,
    ]);
    expect(isFreed(FREED_PTE)).toBe(true);
    expect(isMapped(FREED_PTE)).toBe(false);
    expect(isFreed(PTE_UNMAPPED)).toBe(false);
    expect(describePte(FREED_PTE)).toEqual({ state: 'unmapped', prot: 'none', dirty: 'none' });
  });

  it('GPU-owned is state gpu; GPU-dirty also needs the dirty bit', () => {
    expect(isGpuOwned(pte(PTE_GPU, PROT_RW))).toBe(true);
    expect(isGpuDirty(pte(PTE_GPU, PROT_RW))).toBe(false);
    expect(isGpuDirty(pte(PTE_GPU, PROT_RW, PTE_GPU_DIRTY))).toBe(true);
    // A dirty bit left on a page the CPU owns does not make it GPU-dirty.
    expect(isGpuOwned(pte(PTE_SHARED, PROT_RW, PTE_GPU_DIRTY))).toBe(false);
    expect(isGpuDirty(pte(PTE_SHARED, PROT_RW, PTE_GPU_DIRTY))).toBe(false);
  });

  it('tracks the frame and its staleness: whole, ranges, or none', () => {
    const framed = pte(PTE_CPU, PROT_RW, PTE_FRAME);
    expect(hasFrame(framed)).toBe(true);
    expect(hasFrame(pte(PTE_CPU, PROT_RW))).toBe(false);
    expect([isStale(framed), isStaleWhole(framed), hasStaleBlocks(framed)]).toEqual([
      false,
      false,
      false,
    ]);
    const ranges = withStaleBlocks(framed);
    expect([isStale(ranges), isStaleWhole(ranges), hasStaleBlocks(ranges)]).toEqual([
      true,
      false,
      true,
    ]);
    // Stale whole subsumes the ranges: the two are never set together.
    const whole = withStaleWhole(ranges);
    expect([isStale(whole), isStaleWhole(whole), hasStaleBlocks(whole)]).toEqual([
      true,
      true,
      false,
    ]);
    expect(whole & (PTE_STALE_WHOLE | PTE_STALE_BLOCKS)).toBe(PTE_STALE_WHOLE);
    expect(withoutStale(whole)).toBe(framed);
    expect(withoutStale(ranges)).toBe(framed);
  });

  it('protection none refuses every access, r refuses writes, rw allows both', () => {
    const allows = (prot: number) => [
      protAllows(pte(PTE_CPU, prot), 'read'),
      protAllows(pte(PTE_CPU, prot), 'write'),
    ];
    expect(allows(PROT_NONE)).toEqual([false, false]);
    expect(allows(PROT_R)).toEqual([true, false]);
    expect(allows(PROT_RW)).toEqual([true, true]);
  });
});

describe('assertMapped and assertAccess', () => {
  it('return the pte of a page that allows the access', () => {
    const word = pte(PTE_SHARED, PROT_RW, PTE_FRAME);
    expect(assertMapped(word, 0x5000)).toBe(word);
    expect(assertAccess(word, 'write', 0x5000)).toBe(word);
    expect(assertAccess(pte(PTE_ZERO, PROT_R), 'read', 0x5000)).toBe(pte(PTE_ZERO, PROT_R));
  });

  it('refuse an unmapped or freed page with that reason, at the address given', () => {
    const never = accessError(() => assertMapped(PTE_UNMAPPED, 0x4000));
    expect(never).toMatchObject({ reason: 'unmapped', address: 0x4000 });
    const freed = accessError(() => assertAccess(FREED_PTE, 'read', 0x8010));
    expect(freed).toMatchObject({ reason: 'freed', address: 0x8010 });
    // Mapping is checked before protection.
    expect(accessError(() => assertAccess(FREED_PTE, 'write', 4))).toMatchObject({
      reason: 'freed',
    });
  });

  it('refuse an access the protection forbids, naming the access and the protection', () => {
    const write = accessError(() => assertAccess(pte(PTE_CPU, PROT_R), 'write', 0x9004));
    expect(write).toMatchObject({ reason: 'protection', address: 0x9004 });
    expect(write.message).toContain("write of a page protected 'r'");
    const read = accessError(() => assertAccess(pte(PTE_GPU, PROT_NONE), 'read', 0x9000));
    expect(read).toMatchObject({ reason: 'protection', address: 0x9000 });
    expect(read.message).toContain("read of a page protected 'none'");
  });

  it('name the actor, when there is one, in the message', () => {
    const byKernel = accessError(() =>
      assertAccess(pte(PTE_CPU, PROT_R), 'write', 0x9000, 'a kernel'),
    );
    expect(byKernel.message).toContain("protected 'r' by a kernel");
    const unmapped = accessError(() => assertAccess(PTE_UNMAPPED, 'read', 0x9000, 'the device'));
    expect(unmapped.message).toContain('touched by the device');
  });
});

describe('describePte', () => {
  it('reports state, protection and which copy is newer', () => {
    expect(describePte(pte(PTE_ZERO, PROT_RW))).toEqual({
      state: 'zero',
      prot: 'rw',
      dirty: 'none',
    });
    expect(describePte(pte(PTE_GPU, PROT_R, PTE_FRAME | PTE_GPU_DIRTY))).toEqual({
      state: 'gpu',
      prot: 'r',
      dirty: 'gpu',
    });
    expect(describePte(pte(PTE_GPU, PROT_RW, PTE_FRAME))).toMatchObject({ dirty: 'none' });
    // 'cpu' dirty: a cpu page whose existing frame lacks some bytes.
    expect(describePte(pte(PTE_CPU, PROT_RW, PTE_FRAME | PTE_STALE_BLOCKS))).toMatchObject({
      state: 'cpu',
      dirty: 'cpu',
    });
    expect(describePte(pte(PTE_CPU, PROT_RW, PTE_STALE_WHOLE))).toMatchObject({ dirty: 'none' });
    expect(describePte(pte(PTE_CPU, PROT_RW, PTE_FRAME))).toMatchObject({ dirty: 'none' });
    expect(describePte(pte(PTE_SHARED, PROT_NONE, PTE_FRAME))).toEqual({
      state: 'shared',
      prot: 'none',
      dirty: 'none',
    });
  });
});
