import { describe, expect, it } from 'vitest';
import { AccessError, InvalidArgumentError } from '../../src/errors.ts';
import { checkProtections, declaredRuns, usesTable } from '../../src/kernels/declared-run.ts';
import { USE_READ, USE_WORDS, USE_WRITE } from '../../src/kernels/kernel-layout.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import { internalsOf } from '../../src/space/internals.ts';

const KiB = 1024;
const PAGE = 4 * KiB;

function space(): { space: AddressSpace; base: number; page: number } {
  const created = AddressSpace.create({ size: 1024 * KiB, pageSize: PAGE });
  const base = created.alloc(32 * PAGE);
  return { space: created, base, page: base / PAGE };
}

describe('the declared runs of a kernel run', () => {
  it('cover every page holding a byte of each use, merged by access, ascending', () => {
    const { space: s, base, page } = space();
    const runs = declaredRuns(internalsOf(s), [
      // 2 bytes across a page boundary: two pages.
      { va: base + 10 * PAGE - 1, len: 2, access: 'write' },
      { va: base, len: 4 * PAGE, access: 'read' },
      { va: base + 2 * PAGE, len: 4 * PAGE, access: 'readwrite' },
      { va: base + 3 * PAGE + 8, len: 4, access: 'read' },
    ]);
    expect(runs).toEqual([
      { first: page, count: 2, access: USE_READ },
      { first: page + 2, count: 4, access: USE_READ | USE_WRITE },
      { first: page + 9, count: 2, access: USE_WRITE },
    ]);
  });

  it('merge neighbouring pages of the same access into one run, and split where it changes', () => {
    const { space: s, base, page } = space();
    const runs = declaredRuns(internalsOf(s), [
      { va: base + 4 * PAGE, len: PAGE, access: 'read' },
      { va: base, len: 4 * PAGE, access: 'read' },
      { va: base + 5 * PAGE, len: PAGE, access: 'write' },
      { va: base + 6 * PAGE, len: PAGE, access: 'read' },
    ]);
    expect(runs).toEqual([
      { first: page, count: 5, access: USE_READ },
      { first: page + 5, count: 1, access: USE_WRITE },
      { first: page + 6, count: 1, access: USE_READ },
    ]);
    expect([...usesTable(runs)]).toEqual([
      page,
      page + 5,
      USE_READ,
      0,
      page + 5,
      page + 6,
      USE_WRITE,
      0,
      page + 6,
      page + 7,
      USE_READ,
      0,
    ]);
    expect(usesTable(runs).length).toBe(runs.length * USE_WORDS);
  });

  it('refuse an access other than read, write or readwrite, and a range the space refuses', () => {
    const { space: s, base } = space();
    const internals = internalsOf(s);
    const bad = { va: base, len: 4, access: 'rw' as 'read' };
    expect(() => declaredRuns(internals, [bad])).toThrow(
      expect.objectContaining({ argument: 'uses[0].access', value: 'rw', reason: 'bad-value' }),
    );
    expect(() => declaredRuns(internals, [{ va: base, len: 0, access: 'read' }])).toThrow(
      InvalidArgumentError,
    );
    expect(() => declaredRuns(internals, [{ va: 1024 * KiB - 4, len: 8, access: 'read' }])).toThrow(
      expect.objectContaining({ reason: 'out-of-range' }),
    );
  });

  it('fail the protection check at the first page that forbids the declared access', () => {
    const { space: s, base } = space();
    const internals = internalsOf(s);
    s.protect(base + 3 * PAGE, PAGE, 'r');
    s.protect(base + 5 * PAGE, PAGE, 'none');
    const check = (va: number, len: number, access: 'read' | 'write' | 'readwrite') => () =>
      checkProtections(internals.table, declaredRuns(internals, [{ va, len, access }]));
    expect(check(base, 5 * PAGE, 'read')).not.toThrow();
    expect(check(base, 5 * PAGE, 'write')).toThrow(AccessError);
    expect(check(base, 5 * PAGE, 'write')).toThrow(
      expect.objectContaining({ reason: 'protection', address: base + 3 * PAGE }),
    );
    expect(check(base + 4 * PAGE, 2 * PAGE, 'read')).toThrow(
      expect.objectContaining({ reason: 'protection', address: base + 5 * PAGE }),
    );
  });

  it('fail the protection check of an unmapped page as unmapped, of a freed one as freed', () => {
    const { space: s } = space();
    const internals = internalsOf(s);
    const other = s.alloc(PAGE);
    s.free(other);
    const check = (va: number) => () =>
      checkProtections(internals.table, declaredRuns(internals, [{ va, len: 4, access: 'read' }]));
    expect(check(0)).toThrow(expect.objectContaining({ reason: 'unmapped', address: 0 }));
    expect(check(other)).toThrow(expect.objectContaining({ reason: 'freed', address: other }));
  });
});
