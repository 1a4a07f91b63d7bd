// protect() while a run with `uses` fetches its pages (protect waits for no
// device hold): the store lands or the run fails with AccessError
// 'protection', never resolves with the store silently dropped. (The pass's
// refused store was a fault, and a declared run did not look at faults.)
import { afterEach, describe, expect, it } from 'vitest';
import { AccessError } from '../../src/errors.ts';
import { internalsOf } from '../../src/space/internals.ts';
import { PTE_FRAME } from '../../src/space/shared-layout.ts';
import { testMirror } from '../support/mirror.ts';

const PAGE = 64 * 1024;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const STORE = `
@compute @workgroup_size(1)
fn main() { hmm_store_u32(hmm_params.va, 7u); }`;

describe("protect(..., 'r') while a declared run fetches its write page", () => {
  it('never resolves the run with its store dropped', async () => {
    const { space, gpu } = await testMirror(
      { size: 16 * PAGE, pageSize: PAGE, faultTimeoutMs: 3000 },
      { copy: 'buffer' },
      cleanups,
    );
    const table = internalsOf(space).table;
    const va = space.alloc(PAGE);
    space.fill(va, PAGE, 1); // a cpu page with no frame: the run uploads it, then waits for the GPU
    const kernel = gpu.kernel({ code: STORE, params: { va: 'u32' } });
    await kernel.ready;
    const run = kernel.run({
      workgroups: 1,
      params: { va },
      uses: [{ va, len: 4, access: 'write' }],
    });
    for (let i = 0; i < 1000 && !(table.pte(va / PAGE) & PTE_FRAME); i++) await Promise.resolve();
    expect(table.pte(va / PAGE) & PTE_FRAME).toBe(PTE_FRAME);
    space.protect(va, PAGE, 'r');
    const outcome = await run.then(
      (result) => ({ resolved: true, pagesWritten: result.pagesWritten }),
      (error: unknown) => ({
        resolved: false,
        reason: error instanceof AccessError ? error.reason : String(error),
      }),
    );
    const word = new Uint32Array((await gpu.read(va, 4)).buffer)[0];
    if (outcome.resolved) {
      // Resolved: the store is a completed write and must be there.
      expect({ ...outcome, word }).toEqual({ resolved: true, pagesWritten: 1, word: 7 });
    } else {
      expect(outcome).toEqual({ resolved: false, reason: 'protection' });
    }
  });
});
