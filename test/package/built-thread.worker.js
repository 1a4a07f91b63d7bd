// A worker of an app that embeds the built library: serveThread from dist/.
// Plain JavaScript, so that type-checking a clean checkout does not need dist/.
import { serveThread } from '../../dist/index.js';

serveThread((space) => ({
  /**
   * Adds `value` to the u32 at `va`; returns the sum it made.
   * @param {number} va
   * @param {number} value
   * @returns {number}
   */
  add: (va, value) => space.atomicAddU32(va, value) + value,
}));
