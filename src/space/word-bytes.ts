/** The bytes of one 4-byte word and back, as pushes and pulls carry them (cpu-access.ts). */

/** The u32 in the first 4 of `bytes`. */
export function u32Of(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
}

/** The f32 in the first 4 of `bytes`. */
export function f32Of(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, 4).getFloat32(0, true);
}

/** The 4 bytes of the u32 `value`. */
export function bytesOfU32(value: number): Uint8Array {
  return new Uint8Array(new Uint32Array([value]).buffer);
}

/** The 4 bytes of the f32 `value`. */
export function bytesOfF32(value: number): Uint8Array {
  return new Uint8Array(new Float32Array([value]).buffer);
}
