/** What the stress test's writers (workers and kernels) store: one value per word and round. */
export function stressValue(word: number, round: number): number {
  return (Math.imul(round + 1, 0x9e3779b1) ^ word) >>> 0;
}

/** What the scattered writers store at word `index`: the same whoever writes it. */
export function scatteredValue(index: number): number {
  return (Math.imul(index, 0x85ebca6b) ^ 0x5bd1e995) >>> 0;
}

/** The same in WGSL, for kernels. */
export const STRESS_VALUE_WGSL = /* wgsl */ `
fn stress_value(word: u32, round: u32) -> u32 { return ((round + 1u) * 0x9e3779b1u) ^ word; }`;

/** Whether the kernel writes its chunk `chunk` in round `round` (a quarter of them, varying). */
export function kernelWrites(chunk: number, round: number): boolean {
  return ((Math.imul(chunk, 2654435761) + Math.imul(round, 40503)) >>> 0) % 4 === 0;
}

export const KERNEL_WRITES_WGSL = /* wgsl */ `
fn kernel_writes(chunk: u32, round: u32) -> bool {
  return (chunk * 2654435761u + round * 40503u) % 4u == 0u;
}`;

/**
 * What a read of a range whose second half was freed, allocated again (zeroed)
 * and filled with `reusedByte` saw: 'old' (all before the free), 'reused' or
 * 'reused-zero' (after the reuse, which took the same pages back, after or
 * before its fill), 'reused-filling' (during that fill: only its bytes and
 * zeros, which a plain read overlapping it may see), or 'other': old bytes
 * mixed into the reused half, or a first half not old, which must never
 * happen.
 */
export function raceOutcome(bytes: Uint8Array, oldByte: number, reusedByte: number): string {
  const half = bytes.length / 2;
  if (!bytes.subarray(0, half).every((b) => b === oldByte)) return 'other';
  const second = bytes.subarray(half);
  if (second.every((b) => b === oldByte)) return 'old';
  if (second.every((b) => b === reusedByte)) return 'reused';
  if (second.every((b) => b === 0)) return 'reused-zero';
  // The new owner's fill in progress: plain reads and writes never exclude each other.
  if (second.every((b) => b === reusedByte || b === 0)) return 'reused-filling';
  return 'other';
}
