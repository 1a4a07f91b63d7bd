/**
 * A mutex in one int32 word of shared memory (0 free, 1 held, 2 held with
 * waiters), after Drepper's "Futexes Are Tricky". Guards short critical
 * sections only (the allocator's run tags): a thread that may not block spins.
 */
import type { WaitBudget } from './waiting.ts';

const FREE = 0;
const HELD = 1;
const CONTENDED = 2;

/** @throws WouldBlockError when the budget runs out */
export function lockMutex(
  words: Int32Array,
  index: number,
  mayBlock: boolean,
  budget: WaitBudget,
): void {
  let seen = Atomics.compareExchange(words, index, FREE, HELD);
  while (seen !== FREE) {
    if (seen === CONTENDED || Atomics.compareExchange(words, index, HELD, CONTENDED) !== FREE) {
      budget.waitSync(mayBlock, words, index, CONTENDED, false);
    }
    seen = Atomics.compareExchange(words, index, FREE, CONTENDED);
  }
}

export function unlockMutex(words: Int32Array, index: number): void {
  if (Atomics.sub(words, index, 1) !== HELD) {
    Atomics.store(words, index, FREE);
    Atomics.notify(words, index, 1);
  }
}
