/**
 * Which buffers a command (a copy, clear or dispatch) has read or written.
 * Dawn's `writeBuffer` into a buffer no command has used is about twice as
 * fast as into one a command has used, so the buffer engine stages large
 * uploads only into frames noted here (mapped-staging.ts). Whoever encodes a
 * command on a mirror's frames notes it; a missed note costs only speed.
 */
const usedByCommand = new WeakSet<GPUBuffer>();

export function noteCommandUse(buffer: GPUBuffer): void {
  usedByCommand.add(buffer);
}

export function isUsedByCommand(buffer: GPUBuffer): boolean {
  return usedByCommand.has(buffer);
}
