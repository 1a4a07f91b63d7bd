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
 * nothing (a collecting pass) needs no pack. The pack reads only the span of
 * pages the pass may store to (a run with `uses` can mark only its declared
 * pages), rounded out to SPAN_WORDS bitmap words, so a one-page run in a
 * space of a million pages packs 2048 pages, not all of them; the rest of
 * the bitmap is cleared.
 */
import { DIRTY_PAGES_PER_WORD } from './kernel-layout.ts';

const WORKGROUP = 64;

/**
 * Spans start and end on multiples of this many bitmap words: a binding's
 * offset must be a multiple of 256 bytes (64 words of the bitmap, and 8 KiB
 * of page words).
 */
const SPAN_WORDS = 64;

/** Pack bind groups kept, by span: a kernel's runs mostly declare the same pages. */
const SPAN_GROUPS = 16;

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
  /** Bind groups by span, `first:end` in bitmap words; map order is recency order. */
  private readonly spans = new Map<string, GPUBindGroup>();

  constructor(
    private readonly device: GPUDevice,
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
  }

  /**
   * Packs (and clears) the page words of pages [firstPage, endPage) into
   * the bitmap: a dispatch after the pass's, in its compute pass. The
   * bitmap must have been cleared before the pass (the pack writes only the
   * words of its span), and the pass may have marked no page outside it.
   */
  encodePack(compute: GPUComputePassEncoder, firstPage = 0, endPage = Infinity): void {
    const first = Math.floor(firstPage / DIRTY_PAGES_PER_WORD / SPAN_WORDS) * SPAN_WORDS;
    if (first >= this.words) return;
    const wanted = Math.ceil(endPage / DIRTY_PAGES_PER_WORD / SPAN_WORDS) * SPAN_WORDS;
    const end = Math.max(first + 1, Math.min(this.words, wanted));
    compute.setPipeline(this.pipeline);
    compute.setBindGroup(0, this.spanGroup(first, end));
    compute.dispatchWorkgroups(Math.ceil((end - first) / WORKGROUP));
  }

  /** The pack's bind group over bitmap words [first, end) and their page words. */
  private spanGroup(first: number, end: number): GPUBindGroup {
    const key = `${first}:${end}`;
    let group = this.spans.get(key);
    if (group) {
      this.spans.delete(key);
    } else {
      const words = end - first;
      const pageWords = DIRTY_PAGES_PER_WORD * 4;
      group = this.device.createBindGroup({
        label: `webhmm dirty pack group ${key}`,
        layout: this.pipeline.getBindGroupLayout(0),
        entries: [
          {
            binding: 0,
            resource: {
              buffer: this.pageWords,
              offset: first * pageWords,
              size: words * pageWords,
            },
          },
          { binding: 1, resource: { buffer: this.bitmap, offset: first * 4, size: words * 4 } },
        ],
      });
    }
    this.spans.set(key, group);
    const oldest = this.spans.keys().next();
    if (this.spans.size > SPAN_GROUPS && !oldest.done) this.spans.delete(oldest.value);
    return group;
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
