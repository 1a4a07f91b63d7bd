// Hostile input to AddressSpace, in Node (a thread that may block): every
// 'space' case of cases.ts, each on a fresh space laid out by layOut, must
// throw the typed error the contract names and change nothing.
import { describe, expect, it } from 'vitest';
import { AddressSpace } from '../../src/space/address-space.ts';
import { casesNeeding, namedCases } from './cases.ts';
import { layOut, spaceOptions, type HostileContext } from './context.ts';
import { checkRefusal } from './run-case.ts';

/** Short waits: a call that waits where the contract says it throws at once fails fast. */
const FAULT_TIMEOUT_MS = 300;

function context(): HostileContext {
  const space = AddressSpace.create({ ...spaceOptions(FAULT_TIMEOUT_MS), mayBlock: () => true });
  layOut(space);
  return { space, cleanups: [] };
}

describe('hostile input to AddressSpace', () => {
  const rows = namedCases(casesNeeding('space'));

  it('has cases', () => {
    expect(rows.length).toBeGreaterThan(100);
  });

  it.each(rows)('%s', async (_name, c) => {
    await checkRefusal(c, context());
  });
});
