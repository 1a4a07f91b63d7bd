/**
 * WGSL workloads shared by the benchmark rows and the kernel tests, so that
 * what is measured is what is tested.
 */

/** z = a*x + y, one element per invocation through hmm_load/hmm_store; workgroups [x, y] of 64. */
export const SAXPY_PER_ELEMENT = /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = id.x + id.y * groups.x * 64u;
  if (i >= hmm_params.n) { return; }
  let x = hmm_load_f32(hmm_params.x + i * 4u);
  let y = hmm_load_f32(hmm_params.y + i * 4u);
  hmm_store_f32(hmm_params.z + i * 4u, hmm_params.a * x + y);
}`;

/**
 * Walks a linked list of 8-byte nodes { next VA, value } from `head` and
 * stores the sum and the count at `out`; stops at a faulted load (fault mode).
 */
export const LIST_WALK = /* wgsl */ `
@compute @workgroup_size(1)
fn main() {
  var node = hmm_params.head;
  var sum = 0u;
  var count = 0u;
  loop {
    if (node == 0u) { break; }
    let next = hmm_load_u32(node);
    let value = hmm_load_u32(node + 4u);
    if (hmm_faulted()) { break; }
    sum += value;
    count += 1u;
    node = next;
  }
  hmm_store_u32(hmm_params.out, sum);
  hmm_store_u32(hmm_params.out + 4u, count);
}`;

/**
 * Adds 1 to the first word of each of `pages` pages `stride` bytes apart
 * from `base`: the kernel side of a CPU/GPU ping-pong (thrash.pingpong).
 * Params: base, pages, stride (u32).
 */
export const ADD_ONE_PER_PAGE = /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x >= hmm_params.pages) { return; }
  let va = hmm_params.base + id.x * hmm_params.stride;
  hmm_store_u32(va, hmm_load_u32(va) + 1u);
}`;

/** The parameters of ADD_ONE_PER_PAGE. */
export const ADD_ONE_PER_PAGE_PARAMS = { base: 'u32', pages: 'u32', stride: 'u32' } as const;
