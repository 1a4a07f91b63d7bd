/**
 * The PageRank app of the `app.pagerank` row (docs/benchmarks.md): a random
 * graph in out-edge CSR form, built the same way by any number of workers
 * (each a slice of the nodes, from a fixed seed), push-style PageRank
 * kernels through named ranges and on plain buffers, and the float64
 * reference the ranks are checked against.
 *
 * Every node has DEGREE out-edges (so `offsets[u] = DEGREE * u`), each to a
 * node drawn from a hash of (seed, u, k): no dangling nodes, in-degrees
 * Poisson-like. An iteration is two passes: `next = (1 - d) / n`, then every
 * node u adds `d * rank[u] / degree(u)` to the next rank of each of its
 * targets (an f32 atomic add).
 */

/** Out-edges of every node: 200 000 nodes make 1 M edges. */
export const DEGREE = 5;
export const DAMPING = 0.85;
export const ITERATIONS = 10;

/** A node's k-th target, from a 32-bit hash of (seed, u, k). */
export function target(seed: number, u: number, k: number, nodes: number): number {
  let h =
    Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^
    Math.imul(u + 1, 0xc2b2ae35) ^
    Math.imul(k + 1, 0x27d4eb2f);
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d);
  h = Math.imul(h ^ (h >>> 12), 0x297a2d39);
  h ^= h >>> 15;
  return (h >>> 0) % nodes;
}

/** A slice of a graph's nodes, [first, end), of the graph of `nodes` nodes from `seed`. */
export interface Slice {
  readonly seed: number;
  readonly nodes: number;
  readonly first: number;
  readonly end: number;
}

/** Words of `offsets` a slice writes: one a node, and the end of the graph for the last slice. */
export function offsetWords(slice: Slice): number {
  return slice.end - slice.first + (slice.end === slice.nodes ? 1 : 0);
}

/**
 * Fills the CSR of the slice's nodes into views that start at its first
 * node: `offsets[u - first]` (offsetWords of them) and the targets of their
 * edges from `targets[0]`.
 */
export function buildSlice(offsets: Uint32Array, targets: Uint32Array, slice: Slice): void {
  const { seed, nodes, first, end } = slice;
  for (let u = first; u < end; u++) {
    offsets[u - first] = u * DEGREE;
    for (let k = 0; k < DEGREE; k++) targets[(u - first) * DEGREE + k] = target(seed, u, k, nodes);
  }
  if (end === nodes) offsets[end - first] = nodes * DEGREE;
}

/** The update: 1% of the edges (distinct, from the seed), each with its new target. */
export function edgeUpdates(seed: number, nodes: number): (readonly [edge: number, to: number])[] {
  const edges = nodes * DEGREE;
  const chosen = new Set<number>();
  for (let i = 0; chosen.size < edges / 100; i++)
    chosen.add(target(seed ^ 0x5bd1e995, i, 0, edges));
  return [...chosen].map((e) => [e, target(seed ^ 0x1b873593, e, 1, nodes)] as const);
}

/** PageRank in float64 over the CSR, ITERATIONS push iterations from 1 / n. */
export function referenceRanks(
  offsets: Uint32Array,
  targets: Uint32Array,
  nodes: number,
): Float64Array {
  let rank = new Float64Array(nodes).fill(1 / nodes);
  for (let iteration = 0; iteration < ITERATIONS; iteration++) {
    const next = new Float64Array(nodes).fill((1 - DAMPING) / nodes);
    for (let u = 0; u < nodes; u++) {
      const first = offsets[u] ?? 0;
      const end = offsets[u + 1] ?? 0;
      const share = (DAMPING * (rank[u] ?? 0)) / (end - first);
      for (let e = first; e < end; e++) {
        const v = targets[e] ?? 0;
        next[v] = (next[v] ?? 0) + share;
      }
    }
    rank = next;
  }
  return rank;
}

/** The largest |a - b| / |b| over the ranks. */
export function maxRelativeError(ranks: Float32Array, reference: Float64Array): number {
  let worst = 0;
  reference.forEach((expected, i) => {
    worst = Math.max(worst, Math.abs((ranks[i] ?? 0) - expected) / Math.abs(expected));
  });
  return worst;
}

// ---- kernels through named ranges ----

/** `dst[i] = hmm_params.value` for every word of dst. */
export const FILL_NAMED = /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = id.x + id.y * groups.x * 64u;
  if (i >= dst_len()) { return; }
  dst_store_f32(i, hmm_params.value);
}`;

/** Every node pushes its share of rank to its targets' next rank. */
export const SCATTER_NAMED = /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let u = id.x + id.y * groups.x * 64u;
  if (u >= rank_len()) { return; }
  let first = offsets_load_u32(u);
  let end = offsets_load_u32(u + 1u);
  let share = hmm_params.damping * rank_load_f32(u) / f32(end - first);
  for (var e = first; e < end; e++) {
    next_atomic_add_f32(targets_load_u32(e), share);
  }
}`;

// ---- the same kernels on plain buffers (the baseline) ----

export const FILL_PLAIN = /* wgsl */ `
struct Params { value: f32, n: u32 }
@group(0) @binding(0) var<storage, read_write> dst: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = id.x + id.y * groups.x * 64u;
  if (i >= params.n) { return; }
  dst[i] = params.value;
}`;

export const SCATTER_PLAIN = /* wgsl */ `
struct Params { damping: f32, n: u32 }
@group(0) @binding(0) var<storage, read> offsets: array<u32>;
@group(0) @binding(1) var<storage, read> targets: array<u32>;
@group(0) @binding(2) var<storage, read> rank: array<f32>;
@group(0) @binding(3) var<storage, read_write> next: array<atomic<u32>>;
@group(0) @binding(4) var<uniform> params: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let u = id.x + id.y * groups.x * 64u;
  if (u >= params.n) { return; }
  let first = offsets[u];
  let end = offsets[u + 1u];
  let share = params.damping * rank[u] / f32(end - first);
  for (var e = first; e < end; e++) {
    let w = targets[e];
    var old = atomicLoad(&next[w]);
    loop {
      let swapped = atomicCompareExchangeWeak(&next[w], old, bitcast<u32>(bitcast<f32>(old) + share));
      if (swapped.exchanged) { break; }
      old = swapped.old_value;
    }
  }
}`;
