// A worker that attaches to a space and runs single calls synchronously
// (test/space/single-call.worker.ts), ended by the test's cleanups.
import { releaseProxy, wrap, type Remote } from 'comlink';
import type { AddressSpace } from '../../src/space/address-space.ts';
import type { SingleCallApi } from '../space/single-call.worker.ts';

export async function singleCallThread(
  space: AddressSpace,
  cleanups: (() => Promise<void> | void)[],
): Promise<Remote<SingleCallApi>> {
  const thread = new Worker(new URL('../space/single-call.worker.ts', import.meta.url), {
    type: 'module',
  });
  const api = wrap<SingleCallApi>(thread);
  cleanups.push(() => {
    api[releaseProxy]();
    thread.terminate();
  });
  await api.attach(space.handle);
  return api;
}
