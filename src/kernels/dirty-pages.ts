/**
 * Dirty tracking on the device: kernels mark a page they store to by a
 * plain store of 1 into its word of the dirty page words (one u32 per VA
 * page, the prelude's `hmm_dirty_pages`), after a plain load saw 0. Right
 * after each real pass, in the same compute pass, the dirty pack packs the
 * words into the dirty bitmap (one bit per page, DIRTY_WORD_SHIFT) that is
 * read back, and clears them for the next pass.
 *
 * Why not an atomic or on the bitmap: SwiftShader runs atomics lane by
 * lane, and every invocation storing to a page hit the same bitmap word
 * (the atomic load that skipped the or included): PageRank's scatter ran at
 * 800 ms for ten passes with atomic marks, 290 ms with plain ones and 270 ms
 * with none. The race is benign: every writer stores the same 1.
 *
 * Guarantees: after a pass and its pack, the bitmap's bit p is set exactly
 * when the pass marked page p; every page word is 0 again. A pass that marks
 * nothing (a collecting pass) needs no pack.
 */
import { DIRTY_PAGES_PER_WORD } from './kernel-layout.ts';

const WORKGROUP = 64;

/** One invocation per bitmap word: its 32 page words, packed, then cleared. */
const DIRTY_PACK_WGSL = /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> pages: array<u32>;
@group(0) @binding(1) var<storage, read_write> bits: array<u32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) id: vec3u) {
  let word = id.x;
  if (word >= arrayLength(&bits)) { return; }
  var packed = 0u;
  for (var b = 0u; b < ${DIRTY_PAGES_PER_WORD}u; b++) {
    let page = word * ${DIRTY_PAGES_PER_WORD}u + b;
    packed |= select(0u, 1u << b, pages[page] != 0u);
    pages[page] = 0u;
  }
  bits[word] = packed;
}`;

// Per device: one pipeline serves every runtime on it.
const pipelines = new WeakMap<GPUDevice, GPUComputePipeline>();

/** The dirty page words, the bitmap they pack into, and the pack. */
export class DirtyPages {
  /** One u32 per page (padded to whole bitmap words), bound as the prelude's hmm_dirty_pages. */
  readonly pageWords: GPUBuffer;
  /** One bit per page: what a real pass's readback copies. */
  readonly bitmap: GPUBuffer;
  private readonly pipeline: GPUComputePipeline;
  private readonly group: GPUBindGroup;
  private readonly groups: number;

  constructor(
    device: GPUDevice,
    /** Words of the bitmap. */
    readonly words: number,
  ) {
    const storage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    // Created zeroed, as every pack leaves them.
    this.pageWords = device.createBuffer({
      label: 'webhmm dirty page words',
      size: words * DIRTY_PAGES_PER_WORD * 4,
      usage: storage,
    });
    this.bitmap = device.createBuffer({
      label: 'webhmm dirty bitmap',
      size: words * 4,
      usage: storage,
    });
    this.pipeline = packPipeline(device);
    this.group = device.createBindGroup({
      label: 'webhmm dirty pack group',
      layout: this.pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: this.pageWords } },
        { binding: 1, resource: { buffer: this.bitmap } },
      ],
    });
    this.groups = Math.ceil(words / WORKGROUP);
  }

  /** Packs (and clears) the page words into the bitmap: a dispatch after the pass's, in its compute pass. */
  encodePack(compute: GPUComputePassEncoder): void {
    compute.setPipeline(this.pipeline);
    compute.setBindGroup(0, this.group);
    compute.dispatchWorkgroups(this.groups);
  }

  destroy(): void {
    this.pageWords.destroy();
    this.bitmap.destroy();
  }
}

function packPipeline(device: GPUDevice): GPUComputePipeline {
  let pipeline = pipelines.get(device);
  if (!pipeline) {
    const label = 'webhmm dirty pack';
    pipeline = device.createComputePipeline({
      label,
      layout: 'auto',
      compute: {
        module: device.createShaderModule({ label, code: DIRTY_PACK_WGSL }),
        entryPoint: 'main',
      },
    });
    pipelines.set(device, pipeline);
  }
  return pipeline;
}
