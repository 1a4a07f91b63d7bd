// Layout of the Int32 slots shared by environment.browser.test.ts and atomics.worker.ts.
// Kept apart from the worker so that importing it does not run the worker's code.
export const Slot = { ready: 0, go: 1, input: 2, output: 3, done: 4 } as const;
