// Review helper: loops of CPU accesses on one thread (a worker may block).
import { expose } from 'comlink';
import { WebHmmError } from '../../../src/errors.ts';
import { AddressSpace } from '../../../src/space/address-space.ts';
import type { SpaceHandle } from '../../../src/space/shared-layout.ts';

let space: AddressSpace | undefined;
const sp = () => {
  if (!space) throw new Error('attach first');
  return space;
};
const code = (e: unknown) =>
  e instanceof WebHmmError
    ? `${e.code}:${(e as { reason?: string }).reason ?? ''}:${e.message}`
    : String(e);

const api = {
  attach(handle: SpaceHandle, faultTimeoutMs?: number): void {
    space = AddressSpace.attach(handle);
    void faultTimeoutMs;
  },
  /** setU32(va, from..to), one after another; stops at the first error. */
  writeSeq(va: number, from: number, to: number) {
    const started = performance.now();
    for (let v = from; v <= to; v++) {
      try {
        sp().setU32(va, v);
      } catch (e) {
        return { last: v - 1, error: code(e), ms: performance.now() - started };
      }
    }
    return { last: to, error: '', ms: performance.now() - started };
  },
  /** setU32(va, 1, 2, ...) for `ms`; the last value written ok, and the first error. */
  writeFor(va: number, ms: number) {
    const end = performance.now() + ms;
    let last = 0;
    const errors: string[] = [];
    for (let v = 1; performance.now() < end; v++) {
      try {
        sp().setU32(va, v);
        last = v;
      } catch (e) {
        if (errors.length < 5) errors.push(code(e));
      }
    }
    return { last, errors };
  },
  /** setU32(va, 1, 2, ...) for `ms` or until the first error: the value that failed. */
  writeUntilError(va: number, ms: number) {
    const end = performance.now() + ms;
    for (let v = 1; performance.now() < end; v++) {
      try {
        sp().setU32(va, v);
      } catch (e) {
        return { failed: v, error: code(e) };
      }
    }
    return { failed: 0, error: '' };
  },
  /** setU32 for `ms`, with the longest single call. */
  writeLatency(va: number, ms: number) {
    const end = performance.now() + ms;
    let last = 0;
    let max = 0;
    const errors: string[] = [];
    for (let v = 1; performance.now() < end; v++) {
      const t = performance.now();
      try {
        sp().setU32(va, v);
        last = v;
      } catch (e) {
        if (errors.length < 5)
          errors.push(`${code(e)} after ${Math.round(performance.now() - t)}ms`);
      }
      max = Math.max(max, performance.now() - t);
    }
    return { last, max: Math.round(max), errors };
  },
  /** write(va, len bytes of v, v = 1, 2, ...) for `ms`. */
  writeBlockFor(va: number, len: number, ms: number) {
    const end = performance.now() + ms;
    let last = 0;
    const errors: string[] = [];
    for (let v = 1; performance.now() < end; v++) {
      try {
        sp().write(va, new Uint32Array(len / 4).fill(v));
        last = v;
      } catch (e) {
        if (errors.length < 5) errors.push(code(e));
      }
    }
    return { last, errors };
  },
  /** atomicAddU32(va, 1) for `ms`; how many succeeded. */
  addFor(va: number, ms: number) {
    const end = performance.now() + ms;
    let n = 0;
    const errors: string[] = [];
    while (performance.now() < end) {
      try {
        sp().atomicAddU32(va, 1);
        n++;
      } catch (e) {
        if (errors.length < 5) errors.push(code(e));
      }
    }
    return { n, errors };
  },
  /** write(va, bytes of len filled with v) for v in from..to. */
  writeBytesSeq(va: number, len: number, from: number, to: number) {
    for (let v = from; v <= to; v++) {
      try {
        sp().write(va, new Uint32Array(len / 4).fill(v));
      } catch (e) {
        return { last: v - 1, error: code(e) };
      }
    }
    return { last: to, error: '' };
  },
  /** getU32(va) for `ms`: values seen must not go down. */
  readMonotonic(va: number, ms: number) {
    const end = performance.now() + ms;
    let prev = 0;
    let reads = 0;
    const drops: [number, number][] = [];
    while (performance.now() < end) {
      let v: number;
      try {
        v = sp().getU32(va);
      } catch (e) {
        return { reads, drops, error: code(e), prev };
      }
      reads++;
      if (v < prev && drops.length < 10) drops.push([prev, v]);
      prev = Math.max(prev, v);
    }
    return { reads, drops, error: '', prev };
  },
  /** read(va, len) for `ms`: every word equal (torn/mixed otherwise), values must not go down. */
  readBlocks(va: number, len: number, ms: number) {
    const end = performance.now() + ms;
    let prev = 0;
    let reads = 0;
    const bad: string[] = [];
    while (performance.now() < end) {
      let words: Uint32Array;
      try {
        words = new Uint32Array(sp().read(va, len).slice().buffer);
      } catch (e) {
        return { reads, bad, error: code(e) };
      }
      reads++;
      const v = words[0] ?? 0;
      if (v < prev && bad.length < 10) bad.push(`drop ${prev}->${v}`);
      prev = Math.max(prev, v);
    }
    return { reads, bad, error: '' };
  },
  u32(va: number) {
    try {
      return sp().getU32(va);
    } catch (e) {
      return code(e);
    }
  },
  u32InRead(va: number, len: number) {
    try {
      return new DataView(sp().read(va, len).buffer).getUint32(0, true);
    } catch (e) {
      return code(e);
    }
  },
  setU32(va: number, v: number) {
    const started = performance.now();
    try {
      sp().setU32(va, v);
      return { result: 'ok', ms: performance.now() - started };
    } catch (e) {
      return { result: code(e), ms: performance.now() - started };
    }
  },
  write(va: number, bytes: Uint8Array) {
    try {
      sp().write(va, bytes);
      return 'ok';
    } catch (e) {
      return code(e);
    }
  },
  read(va: number, len: number) {
    try {
      return Array.from(sp().read(va, len));
    } catch (e) {
      return code(e);
    }
  },
  atomicAdd(va: number, v: number, times: number) {
    try {
      for (let i = 0; i < times; i++) sp().atomicAddU32(va, v);
      return 'ok';
    } catch (e) {
      return code(e);
    }
  },
};

export type StressApi = typeof api;
expose(api);
