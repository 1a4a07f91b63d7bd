/**
 * The packed block scatter: how the kernel copy engine uploads many tiny
 * stale blocks (16 bytes each) at once. The CPU packs every marked block's
 * bytes back to back, with a table of where each goes (one u32 per block:
 * its index among the frames' 16-byte blocks); one `writeBuffer` each, then
 * one dispatch in which every invocation copies one block. A table entry is
 * a quarter of its block's bytes, and no work is spent on unmarked blocks:
 * at 1% of a page's words written, this moves ~4% of its bytes where a
 * whole-page upload moves all of it.
 */
import { STALE_BLOCK_BYTES } from '../space/shared-layout.ts';
import type { BlockUpload } from './copy-engine.ts';

export const BLOCK_SCATTER_WORKGROUP = 256;

/** `frames[table[b]] = packed[b]` for each block b, one invocation each. */
export const BLOCK_SCATTER_WGSL = /* wgsl */ `
@group(0) @binding(0) var<storage, read> table: array<u32>;
@group(0) @binding(1) var<storage, read> packed: array<vec4u>;
@group(0) @binding(2) var<storage, read_write> frames: array<vec4u>;

@compute @workgroup_size(${BLOCK_SCATTER_WORKGROUP})
fn main(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let b = id.x + id.y * groups.x * ${BLOCK_SCATTER_WORKGROUP}u;
  if (b >= arrayLength(&table)) { return; }
  frames[table[b]] = packed[b];
}`;

/** Where packing puts its output: grown by the caller to at least `count` blocks. */
export interface BlockPacking {
  /** Packed block bytes, 4 words per block. */
  readonly packed: Int32Array<ArrayBuffer>;
  /** Destination block index in the frames buffer, one per block. */
  readonly table: Uint32Array<ArrayBuffer>;
}

const WORDS_PER_BLOCK = STALE_BLOCK_BYTES / 4;

/**
 * Packs the marked blocks of `pages` from CPU memory (`memory`, as words)
 * into `out`, in page order then block order; returns the block count.
 */
export function packBlocks(
  pages: readonly BlockUpload[],
  memory: Int32Array,
  out: BlockPacking,
): number {
  const { packed, table } = out;
  let at = 0;
  for (const { va, frameOffset, blocks } of pages) {
    const source = va >>> 2;
    const target = Math.floor(frameOffset / STALE_BLOCK_BYTES);
    for (let word = 0; word < blocks.length; word++) {
      let bits = blocks[word]!;
      while (bits !== 0) {
        const low = bits & -bits;
        bits ^= low;
        const block = (word << 5) | (31 - Math.clz32(low));
        table[at] = target + block;
        const from = source + block * WORDS_PER_BLOCK;
        const to = at * WORDS_PER_BLOCK;
        packed[to] = memory[from]!;
        packed[to + 1] = memory[from + 1]!;
        packed[to + 2] = memory[from + 2]!;
        packed[to + 3] = memory[from + 3]!;
        at++;
      }
    }
  }
  return at;
}
