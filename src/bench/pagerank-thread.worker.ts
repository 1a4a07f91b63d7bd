// The worker threads of the app.pagerank row: they build the graph (in the
// space, or in SharedArrayBuffer typed arrays for the plain baseline) and
// read the ranks back.
import type { AddressSpace } from '../space/address-space.ts';
import { serveThread } from '../threads/serve-thread.ts';
import { buildSlice, DEGREE, type Slice } from './pagerank.ts';

/** Where the graph lives in the space. */
export interface GraphVas {
  readonly offsets: number;
  readonly targets: number;
  readonly rank: number;
}

const createApi = (space: AddressSpace) => ({
  /** Writes the CSR of the slice's nodes, and their initial rank 1 / nodes, into the space. */
  buildInSpace(vas: GraphVas, slice: Slice): void {
    const { nodes, first, end } = slice;
    const count = end - first;
    const offsets = new Uint32Array(nodes + 1);
    const targets = new Uint32Array(nodes * DEGREE);
    buildSlice(offsets, targets, slice);
    const offsetWords = count + (end === nodes ? 1 : 0);
    space.write(vas.offsets + first * 4, offsets.subarray(first, first + offsetWords));
    space.write(vas.targets + first * DEGREE * 4, targets.subarray(first * DEGREE, end * DEGREE));
    space.write(vas.rank + first * 4, new Float32Array(count).fill(1 / nodes));
  },

  /** The same, into SharedArrayBuffer typed arrays (the plain baseline). */
  buildInArrays(offsets: Uint32Array, targets: Uint32Array, slice: Slice): void {
    buildSlice(offsets, targets, slice);
  },

  /** The ranks at `va`, read through the space (GPU-dirty pages fault back). */
  readRanks(va: number, nodes: number): Float32Array {
    const bytes = space.read(va, nodes * 4);
    return new Float32Array(bytes.buffer, bytes.byteOffset, nodes);
  },
});

export type PageRankThreadApi = ReturnType<typeof createApi>;

serveThread(createApi);
