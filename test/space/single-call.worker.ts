// A CPU thread that attaches to a space and runs single calls synchronously
// (a worker may block), reporting how each ended.
import { expose } from 'comlink';
import { WebHmmError } from '../../src/errors.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import type { Lease } from '../../src/space/lease.ts';
import type { SpaceHandle } from '../../src/space/shared-layout.ts';

let space: AddressSpace | undefined;
let lease: Lease | undefined;

function attached(): AddressSpace {
  if (!space) throw new Error('attach first');
  return space;
}

/** How a call ended: 'ok', or the typed error's code and reason; and how long it took. */
function outcome(call: () => unknown): { result: string; ms: number } {
  const started = performance.now();
  try {
    call();
    return { result: 'ok', ms: performance.now() - started };
  } catch (error) {
    const e = error as WebHmmError & { reason?: string };
    const result = e instanceof WebHmmError ? `${e.code}:${e.reason ?? ''}` : String(error);
    return { result, ms: performance.now() - started };
  }
}

const api = {
  attach(handle: SpaceHandle): void {
    space = AddressSpace.attach(handle);
  },
  writeU32(va: number, value: number) {
    return outcome(() => attached().setU32(va, value));
  },
  readU32(va: number) {
    return outcome(() => attached().getU32(va));
  },
  /** The u32 at `va` (the read blocks on a fault like any worker's). */
  u32At(va: number): number {
    return attached().getU32(va);
  },
  /** The u32 at `va`, from a read of the `len` bytes from it. */
  u32InRead(va: number, len: number): number {
    return new DataView(attached().read(va, len).buffer).getUint32(0, true);
  },
  writeScope(va: number, len: number) {
    return outcome(() => attached().access(va, len, 'write', (l) => l.bytes.fill(1)));
  },
  acquireRead(va: number, len: number): Promise<void> {
    return attached()
      .acquire(va, len, 'read')
      .then((l) => {
        lease = l;
      });
  },
  release(): void {
    lease?.release();
    lease = undefined;
  },
  free(va: number) {
    return outcome(() => attached().free(va));
  },
};

export type SingleCallApi = typeof api;
expose(api);
