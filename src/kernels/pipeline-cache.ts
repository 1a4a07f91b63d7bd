/**
 * The pipeline cache: one compute pipeline per device and distinct kernel
 * source, shared by every kernel compiled from it. A failed compilation is
 * not cached (the next `kernel()` of the same code tries again).
 *
 * Why a WeakMap keyed by device: a destroyed or lost device's pipelines are
 * collected with it, and the cache keeps no device alive (webgpu-utils keeps
 * its mipmap pipelines the same way, for the same reason).
 *
 * Why a pipeline built with one mirror's pipeline layout serves another
 * mirror's kernels on the same device: WebGPU bind group layouts created
 * from identical descriptors are group-equivalent, so a bind group made with
 * one runtime's layout is valid with a pipeline made with another's. Every
 * runtime creates group 0's layout from the same descriptor, and the key is
 * the entry point plus the whole source, prelude included, so it holds
 * everything the prelude bakes in: page shift and count, the zero and sink
 * frames, the parameters and whether frames are bound as atomics.
 *
 * Bounded: at most PIPELINE_CACHE_ENTRIES sources per device, the least
 * recently compiled-from dropped first. A kernel keeps its own pipeline, so
 * dropping an entry costs only a compilation when that source comes again;
 * an app generating kernel code (one per size, say) does not grow memory
 * without end.
 */
import { InvalidArgumentError } from '../errors.ts';
import { inInsertion, userColumn, type Insertion } from './entry-wrapper.ts';
import { preludeLines } from './prelude.ts';

/**
 * What to compile. The module is the directives on its first line, the
 * prelude, then the user's code: its messages are mapped back to the
 * user's lines and columns here.
 */
export interface PipelineSource {
  /** The user's global directives, on one line (directives.ts). */
  readonly directives: string;
  readonly prelude: string;
  /** The user's code, its entry point wrapped (entry-wrapper.ts). */
  readonly code: string;
  readonly entryPoint: string;
  /** Where the entry-point wrapper inserted its text, to report the user's own columns. */
  readonly insertion: Insertion;
  /** The pipeline layout (group 0 of the prelude) of the runtime compiling first. */
  readonly layout: GPUPipelineLayout;
}

/** A compiled kernel source: its pipeline, and its variants by pipeline constant. */
export interface CompiledKernel {
  readonly pipeline: GPUComputePipeline;
  /**
   * The pipeline with `hmm_contiguous` set to `mask` (named-ranges.ts: the
   * ranges whose bits are set reach their words as base + i) and
   * `hmm_collecting` to `collecting` (prelude.ts: a fault-collecting pass).
   * Made on first use (its compile overlaps the queue's work), then kept;
   * (0, false) is `pipeline`.
   */
  variant(mask: number, collecting?: boolean): GPUComputePipeline;
}

/** Distinct kernel sources whose pipelines a device's cache keeps. */
export const PIPELINE_CACHE_ENTRIES = 64;

// Map order is recency order: a hit moves its entry to the end.
const pipelines = new WeakMap<GPUDevice, Map<string, Promise<CompiledKernel>>>();

/** Pipelines cached for `device` now (for tests; not public API). */
export function cachedPipelineCount(device: GPUDevice): number {
  return pipelines.get(device)?.size ?? 0;
}

/**
 * The pipeline of `source` on `device`: the cached one, or a new one (cached
 * from now on unless its compilation fails).
 * @returns a promise that rejects with InvalidArgumentError 'wgsl' for code that does not compile
 */
export function cachedPipeline(device: GPUDevice, source: PipelineSource): Promise<CompiledKernel> {
  const key = `${source.entryPoint}\n${moduleCode(source)}`;
  let cache = pipelines.get(device);
  if (!cache) pipelines.set(device, (cache = new Map<string, Promise<CompiledKernel>>()));
  let pipeline = cache.get(key);
  if (pipeline) {
    cache.delete(key);
  } else {
    const made = createPipeline(device, source);
    made.catch(() => {
      if (cache.get(key) === made) cache.delete(key);
    });
    pipeline = made;
  }
  cache.set(key, pipeline);
  const oldest = cache.keys().next();
  if (cache.size > PIPELINE_CACHE_ENTRIES && !oldest.done) cache.delete(oldest.value);
  return pipeline;
}

/** The WGSL of `source`'s module. */
function moduleCode(source: PipelineSource): string {
  return `${source.directives}\n${source.prelude}${source.code}`;
}

/**
 * Compiles `source` on `device`.
 * @throws InvalidArgumentError 'wgsl' (argument 'code', value the entry
 *   point) naming each error's line in the user's code, or "in the prelude"
 */
export async function createPipeline(
  device: GPUDevice,
  source: PipelineSource,
): Promise<CompiledKernel> {
  const { entryPoint, insertion, layout } = source;
  const code = moduleCode(source);
  // The directives' line, then the prelude's.
  const before = 1 + preludeLines(source.prelude);
  // A WGSL error is also a validation error: catch it here, report it from the compilation info.
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ label: `webhmm kernel ${entryPoint}`, code });
  const scoped = device.popErrorScope();
  const info = await module.getCompilationInfo();
  await scoped;
  const errors = info.messages.filter((message) => message.type === 'error');
  if (errors.length > 0) {
    const located = errors.map((message) => {
      const line = message.lineNum - before;
      return { message, line, copied: inInsertion(insertion, line, message.linePos) };
    });
    // The wrapper's copy of the parameters and attributes repeats their errors.
    const original = new Set(located.filter((m) => !m.copied).map((m) => m.message.message));
    const lines = located
      .filter((m) => !(m.copied && original.has(m.message.message)))
      .map(({ message, line }) =>
        line > 0
          ? `line ${line}:${userColumn(insertion, line, message.linePos)}: ${message.message}`
          : `${message.lineNum === 1 ? 'in a directive' : 'in the prelude'}: ${message.message}`,
      );
    throw new InvalidArgumentError('code', entryPoint, 'wgsl', [...new Set(lines)].join('; '));
  }
  const label = `webhmm kernel ${entryPoint}`;
  try {
    const pipeline = await device.createComputePipelineAsync({
      label,
      layout,
      compute: { module, entryPoint },
    });
    const variants = new Map<string, GPUComputePipeline>([['0 false', pipeline]]);
    const variant = (mask: number, collecting = false): GPUComputePipeline => {
      const key = `${mask} ${collecting}`;
      let made = variants.get(key);
      if (!made) {
        made = device.createComputePipeline({
          label: `${label} (contiguous ${mask.toString(2)}${collecting ? ', collecting' : ''})`,
          layout,
          compute: {
            module,
            entryPoint,
            // Only constants the module declares: hmm_contiguous comes with named ranges.
            constants: {
              ...(mask !== 0 ? { hmm_contiguous: mask } : {}),
              ...(collecting ? { hmm_collecting: 1 } : {}),
            },
          },
        });
        variants.set(key, made);
      }
      return made;
    };
    return { pipeline, variant };
  } catch (error) {
    throw new InvalidArgumentError(
      'code',
      entryPoint,
      'wgsl',
      error instanceof Error ? error.message : 'pipeline creation failed',
    );
  }
}
