// One call's wait budget: a call's budget counts wall time from its first
// wait; a kernel run's (waits only) counts only the time it spent waiting, so
// its own passes between waits never make it time out.
import { describe, expect, it, vi } from 'vitest';
import { WouldBlockError } from '../../src/errors.ts';
import { WaitBudget } from '../../src/space/waiting.ts';

const limits = { faultTimeoutMs: 100, spinLimitMs: 0 };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A wait that returns at once: the word no longer holds the value observed. */
function waitThatReturnsAtOnce(budget: WaitBudget): Promise<void> {
  const word = new Int32Array(new SharedArrayBuffer(4));
  return budget.waitAsync(word, 0, 1);
}

describe('WaitBudget', () => {
  it('of a call: counts the time between its waits, and times out past faultTimeoutMs', async () => {
    const budget = new WaitBudget(limits, 0x1000);
    await waitThatReturnsAtOnce(budget);
    await sleep(150);
    await expect(waitThatReturnsAtOnce(budget)).rejects.toMatchObject({
      constructor: WouldBlockError,
      reason: 'timeout',
      address: 0x1000,
    });
  });

  it('of a kernel run (waits only): does not count the time between its waits', async () => {
    const budget = new WaitBudget(limits, 0x1000, true);
    await waitThatReturnsAtOnce(budget);
    await sleep(150); // the run's own passes, say
    await expect(waitThatReturnsAtOnce(budget)).resolves.toBeUndefined();
  });

  it('of a kernel run (waits only): times out once its waits add up to faultTimeoutMs', async () => {
    const budget = new WaitBudget(limits, 0x2000, true);
    const word = new Int32Array(new SharedArrayBuffer(4));
    await budget.waitAsync(word, 0, 0); // nobody notifies: waits the whole 100 ms
    await expect(budget.waitAsync(word, 0, 0)).rejects.toMatchObject({
      reason: 'timeout',
      address: 0x2000,
    });
  });

  it('of a kernel run (waits only): a wait that timed out uses up the budget, even if the clock says less', async () => {
    // The wait's timer may fire a little early by performance.now(); here the clock stands still.
    const now = vi.spyOn(performance, 'now').mockReturnValue(1000);
    try {
      const budget = new WaitBudget({ faultTimeoutMs: 20, spinLimitMs: 0 }, 0x3000, true);
      const word = new Int32Array(new SharedArrayBuffer(4));
      await budget.waitAsync(word, 0, 0); // times out after 20 ms of real time
      await expect(budget.waitAsync(word, 0, 0)).rejects.toMatchObject({ reason: 'timeout' });
    } finally {
      now.mockRestore();
    }
  });
});
