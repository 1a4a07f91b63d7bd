// A kernel run is a mirror call: on pages inside an access() scope or an
// acquire() lease of the same thread it fails at once with WouldBlockError
// 'reentrant' (with `uses` and in fault mode), rather than wait out
// faultTimeoutMs for a lease that waits for it.
import { afterEach, describe, expect, it } from 'vitest';
import { WouldBlockError } from '../../src/errors.ts';
import { testMirror } from '../support/mirror.ts';

const PAGE = 64 * 1024;
const FAULT_TIMEOUT_MS = 3000;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A 16-page space mirrored with the buffer engine; torn down after the test. */
const setup = () =>
  testMirror(
    { size: 16 * PAGE, pageSize: PAGE, faultTimeoutMs: FAULT_TIMEOUT_MS },
    { copy: 'buffer' },
    cleanups,
  );

const STORE = `
@compute @workgroup_size(1)
fn main() { hmm_store_u32(hmm_params.va, 7u); }`;

describe('kernel.run inside a scope of its own thread', () => {
  for (const mode of ['write', 'read'] as const) {
    it(`rejects 'reentrant' at once inside an acquire('${mode}') lease of a declared range`, async () => {
      const { space, gpu } = await setup();
      const va = space.alloc(PAGE);
      const kernel = gpu.kernel({ code: STORE, params: { va: 'u32' } });
      await kernel.ready;
      const lease = await space.acquire(va, PAGE, mode);
      const started = performance.now();
      let error: unknown;
      try {
        await kernel.run({
          workgroups: 1,
          params: { va },
          uses: [{ va, len: 4, access: 'write' }],
        });
      } catch (e) {
        error = e;
      } finally {
        lease.release();
      }
      const waited = performance.now() - started;
      // What happens today: the run waits the whole faultTimeoutMs for the
      // lease (which waits for the run) and fails with 'timeout'.
      expect({
        type: error instanceof WouldBlockError,
        reason: (error as WouldBlockError | undefined)?.reason,
      }).toEqual({ type: true, reason: 'reentrant' });
      expect(waited).toBeLessThan(FAULT_TIMEOUT_MS / 3);
    });
  }
});

describe('a queued kernel.run whose thread leased its range after the call', () => {
  it("rejects 'reentrant' when its turn comes, not after faultTimeoutMs", async () => {
    const { space, gpu } = await setup();
    const va = space.alloc(PAGE);
    const other = space.alloc(PAGE);
    const kernel = gpu.kernel({ code: STORE, params: { va: 'u32' } });
    await kernel.ready;
    const use = (at: number) => [{ va: at, len: 4, access: 'write' as const }];
    // The first run keeps the runtime busy, so the second is queued without holds.
    const busy = kernel.run({ workgroups: 1, params: { va: other }, uses: use(other) });
    const started = performance.now();
    const queued = kernel.run({ workgroups: 1, params: { va }, uses: use(va) });
    const lease = await space.acquire(va, PAGE, 'write');
    const reason = await queued
      .then(
        () => 'resolved',
        (e: unknown) => (e instanceof WouldBlockError ? e.reason : String(e)),
      )
      .finally(() => lease.release());
    await busy;
    const waited = performance.now() - started;
    expect({ reason, fast: waited < FAULT_TIMEOUT_MS / 3 }).toEqual({
      reason: 'reentrant',
      fast: true,
    });
  });
});

describe('a fault-mode run inside a scope of its own thread', () => {
  it("rejects 'reentrant' once its faults reach the lease's pages, not after faultTimeoutMs", async () => {
    const { space, gpu } = await setup();
    const va = space.alloc(PAGE);
    const kernel = gpu.kernel({ code: STORE, params: { va: 'u32' } });
    await kernel.ready;
    const lease = await space.acquire(va, PAGE, 'write');
    const started = performance.now();
    const reason = await kernel
      .run({ workgroups: 1, params: { va } })
      .then(
        () => 'resolved',
        (e: unknown) => (e instanceof WouldBlockError ? e.reason : String(e)),
      )
      .finally(() => lease.release());
    const waited = performance.now() - started;
    expect({ reason, fast: waited < FAULT_TIMEOUT_MS / 3 }).toEqual({
      reason: 'reentrant',
      fast: true,
    });
  });
});
