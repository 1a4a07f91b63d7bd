import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import { LAYOUT_VERSION } from '../../src/space/shared-layout.ts';
import { PAGE, expectError, space } from './space-fixtures.ts';

describe('AddressSpace.create', () => {
  it('rejects page sizes that are not powers of two from 4 KiB to 2 MiB', () => {
    for (const pageSize of [1024, 3 * 4096, 4 << 20]) {
      expectError(() => AddressSpace.create({ size: 16 << 20, pageSize }), InvalidArgumentError, {
        argument: 'pageSize',
        reason: 'bad-value',
      });
    }
  });

  it('accepts the bounds of the page size, 4 KiB and 2 MiB, inclusive', () => {
    expect(AddressSpace.create({ size: 2 * 4096, pageSize: 4096 }).pageSize).toBe(4096);
    expect(AddressSpace.create({ size: 4 << 20, pageSize: 2 << 20 }).pageSize).toBe(2 << 20);
  });

  it('rejects sizes that are not whole pages, too small, or over 4 GiB minus a page', () => {
    expectError(() => AddressSpace.create({ size: 5000, pageSize: PAGE }), InvalidArgumentError, {
      reason: 'misaligned',
    });
    expectError(() => AddressSpace.create({ size: PAGE, pageSize: PAGE }), InvalidArgumentError, {
      reason: 'bad-value',
    });
    expectError(
      () => AddressSpace.create({ size: 2 ** 32, pageSize: PAGE }),
      InvalidArgumentError,
      { reason: 'too-large' },
    );
    expectError(() => AddressSpace.create({ size: -PAGE }), InvalidArgumentError, {
      reason: 'negative',
    });
    expectError(() => AddressSpace.create({ size: 1.5 }), InvalidArgumentError, {
      reason: 'not-integer',
    });
  });

  it('defaults to 64 KiB pages', () => {
    expect(AddressSpace.create({ size: 1 << 20 }).pageSize).toBe(64 << 10);
  });

  it('rejects wait limits that are not integers, with the same reasons as every other integer', () => {
    expectError(() => space({ faultTimeoutMs: 0 }), InvalidArgumentError, {
      argument: 'faultTimeoutMs',
      reason: 'zero',
    });
    expectError(() => space({ faultTimeoutMs: 2.5 }), InvalidArgumentError, {
      argument: 'faultTimeoutMs',
      reason: 'not-integer',
    });
    expectError(() => space({ spinLimitMs: -1 }), InvalidArgumentError, {
      argument: 'spinLimitMs',
      reason: 'negative',
    });
    expect(space({ spinLimitMs: 0 }).handle.spinLimitMs).toBe(0);
  });

  it('carries the wait limits, defaults filled in, in the handle', () => {
    expect(space().handle).toMatchObject({ faultTimeoutMs: 10_000, spinLimitMs: 200 });
    expect(space({ faultTimeoutMs: 50, spinLimitMs: 5 }).handle).toMatchObject({
      faultTimeoutMs: 50,
      spinLimitMs: 5,
    });
  });
});

describe('AddressSpace.attach', () => {
  it('gives the same space on another instance: same size, pages and bytes', () => {
    const s = space();
    const va = s.alloc(PAGE);
    s.setU32(va, 77);
    const other = AddressSpace.attach(s.handle);
    expect({ size: other.size, pageSize: other.pageSize }).toEqual({
      size: s.size,
      pageSize: s.pageSize,
    });
    expect(other.getU32(va)).toBe(77);
  });

  it('refuses a handle of another kind or version, or whose buffers do not belong together', () => {
    const s = space();
    expectError(
      () => AddressSpace.attach({ ...s.handle, version: LAYOUT_VERSION + 1 }),
      InvalidArgumentError,
      { argument: 'handle', reason: 'bad-value' },
    );
    expectError(
      () => AddressSpace.attach({ ...s.handle, type: 'other' as 'webhmm-space' }),
      InvalidArgumentError,
      { argument: 'handle', reason: 'bad-value' },
    );
    expectError(
      () => AddressSpace.attach({ ...s.handle, memory: new SharedArrayBuffer(PAGE) }),
      InvalidArgumentError,
      { argument: 'handle', reason: 'bad-value' },
    );
    expectError(
      () => AddressSpace.attach({ ...s.handle, meta: new SharedArrayBuffer(64) }),
      InvalidArgumentError,
      { argument: 'handle', reason: 'bad-value' },
    );
  });
});
