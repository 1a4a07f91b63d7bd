// The worker threads of the app.pagerank row: they build the graph (in the
// space, or in SharedArrayBuffer typed arrays for the plain baseline) and
// read the ranks back.
import type { AddressSpace } from '../space/address-space.ts';
import { serveThread } from '../threads/serve-thread.ts';
import { buildSlice, DEGREE, offsetWords, type Slice } from './pagerank.ts';

/** Where the graph lives in the space. */
export interface GraphVas {
  readonly offsets: number;
  readonly targets: number;
  readonly rank: number;
}

const createApi = (space: AddressSpace) => ({
  /**
   * Builds the CSR of the slice's nodes, and their initial rank 1 / nodes,
   * in place in the space (write scopes: the leases are the space's bytes).
   */
  buildInSpace(vas: GraphVas, slice: Slice): void {
    const { nodes, first, end } = slice;
    const count = end - first;
    space.access(vas.offsets + first * 4, offsetWords(slice) * 4, 'write', (offsets) =>
      space.access(vas.targets + first * DEGREE * 4, count * DEGREE * 4, 'write', (targets) =>
        buildSlice(offsets.u32, targets.u32, slice),
      ),
    );
    space.access(vas.rank + first * 4, count * 4, 'write', (rank) => rank.f32.fill(1 / nodes));
  },

  /** The same, into SharedArrayBuffer typed arrays (the plain baseline). */
  buildInArrays(offsets: Uint32Array, targets: Uint32Array, slice: Slice): void {
    const { first } = slice;
    buildSlice(offsets.subarray(first), targets.subarray(first * DEGREE), slice);
  },

  /** The ranks at `va`, read through the space (GPU-dirty pages fault back). */
  readRanks(va: number, nodes: number): Float32Array {
    const bytes = space.read(va, nodes * 4);
    return new Float32Array(bytes.buffer, bytes.byteOffset, nodes);
  },
});

export type PageRankThreadApi = ReturnType<typeof createApi>;

serveThread(createApi);
