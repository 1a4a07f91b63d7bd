// A worker for the environment test: it blocks in Atomics.wait on memory it shares
// with the test page, then answers through the same memory (comlink carries the calls).
import { expose } from 'comlink';
import { Slot } from './atomics-slots.ts';

const api = {
  /**
   * Announces itself in `ready`, blocks until `go` becomes non-zero (recording every
   * Atomics.wait result), writes `input * 2` to `output` and wakes the waiter on `done`.
   */
  blockThenDouble(shared: SharedArrayBuffer): string[] {
    const i32 = new Int32Array(shared);
    const waits: string[] = [];
    Atomics.store(i32, Slot.ready, 1);
    Atomics.notify(i32, Slot.ready);
    while (Atomics.load(i32, Slot.go) === 0) waits.push(Atomics.wait(i32, Slot.go, 0, 10_000));
    Atomics.store(i32, Slot.output, Atomics.load(i32, Slot.input) * 2);
    Atomics.store(i32, Slot.done, 1);
    Atomics.notify(i32, Slot.done);
    return waits;
  },
  /** Whether this worker runs with cross-origin isolation (needed for SharedArrayBuffer). */
  isolated(): boolean {
    return self.crossOriginIsolated;
  },
};

export type AtomicsWorkerApi = typeof api;

expose(api);
