// A worker that attaches to a space and runs space.discard synchronously (a worker may block).
import { expose } from 'comlink';
import { WebHmmError } from '../../src/errors.ts';
import { AddressSpace } from '../../src/space/address-space.ts';
import type { SpaceHandle } from '../../src/space/shared-layout.ts';

let space: AddressSpace | undefined;

const api = {
  attach(handle: SpaceHandle): void {
    space = AddressSpace.attach(handle);
  },
  discard(va: number, len: number): { result: string; ms: number } {
    const started = performance.now();
    try {
      space!.discard(va, len);
      return { result: 'ok', ms: performance.now() - started };
    } catch (error) {
      const e = error as WebHmmError & { reason?: string };
      const result = e instanceof WebHmmError ? `${e.code}:${e.reason ?? ''}` : String(error);
      return { result, ms: performance.now() - started };
    }
  },
};

export type DiscardApi = typeof api;
expose(api);
