/**
 * Named ranges: a kernel declares names and their access at `kernel()`
 * (`ranges: { x: 'read', y: 'readwrite' }`), each run binds every name to a
 * range of the space (`uses: [{ name: 'x', va, len }]`), and the kernel
 * reaches the range's words by index from its start:
 *
 * - `x_len()`: the bound length, in 4-byte words;
 * - `x_load_u32(i)`, `x_load_f32(i)`;
 * - for ranges declared 'write' or 'readwrite': `y_store_u32(i, v)`,
 *   `y_store_f32(i, v)`, `y_atomic_add_u32(i, v)`, `y_atomic_add_f32(i, v)`
 *   (the atomics return the value they replaced).
 *
 * Why this is cheap: the run has made every page of a bound range resident
 * with its declared access and holds them, so an access needs only a bounds
 * check, one device page table load and the frame access; a store also marks
 * its page dirty. There is no search of the run's uses and no check of the
 * entry's flags. An index at or past the length is suppressed (loads read 0,
 * stores go to the sink frame), sets `hmm_faulted()`, and fails the run with
 * AccessError 'out-of-range' naming the range, the index and its address.
 */
import { nonNegativeInteger, positiveInteger } from '../arguments.ts';
import { InvalidArgumentError } from '../errors.ts';
import { DPTE_FRAME_MASK } from '../gpu/device-layout.ts';
import {
  RANGE_BOUNDS_INDEX_MASK,
  RANGE_BOUNDS_SHIFT,
  RANGE_WORDS,
  USE_READ,
  USE_WRITE,
} from './kernel-layout.ts';

/** A kernel's named ranges in declaration order: name and USE_* bits. */
export type RangeList = readonly (readonly [name: string, access: number])[];

/** A named range bound by a run. */
export interface BoundRange {
  readonly name: string;
  readonly va: number;
  readonly len: number;
}

/** The most named ranges one kernel may declare (the bounds status keeps the index in 8 bits). */
export const MAX_NAMED_RANGES = 64;

const IDENTIFIER = /^[A-Za-z][A-Za-z0-9_]*$/;

/** USE_* bits of each access a use may declare. */
export const ACCESS_BITS: Readonly<Record<string, number | undefined>> = {
  read: USE_READ,
  write: USE_WRITE,
  readwrite: USE_READ | USE_WRITE,
};

/**
 * The ranges `kernel()` was given, checked.
 * @throws InvalidArgumentError 'bad-value' (argument 'ranges') for ranges
 *   that are not an object, a name that is not a WGSL identifier, is `hmm`
 *   or starts with `hmm_` (the prelude's), an access other than 'read', 'write',
 *   'readwrite', or more than MAX_NAMED_RANGES names
 */
export function declaredRanges(ranges: unknown): RangeList {
  if (ranges === undefined) return [];
  if (typeof ranges !== 'object' || ranges === null || Array.isArray(ranges)) {
    throw new InvalidArgumentError('ranges', ranges, 'bad-value', "an object like { x: 'read' }");
  }
  const list = Object.entries(ranges as Record<string, unknown>);
  if (list.length > MAX_NAMED_RANGES) {
    throw new InvalidArgumentError(
      'ranges',
      list.length,
      'bad-value',
      `at most ${MAX_NAMED_RANGES} named ranges`,
    );
  }
  return list.map(([name, access]) => {
    const bits = typeof access === 'string' ? ACCESS_BITS[access] : undefined;
    if (!IDENTIFIER.test(name) || name === 'hmm' || name.startsWith('hmm_') || bits === undefined) {
      throw new InvalidArgumentError(
        'ranges',
        `${name}: ${String(access)}`,
        'bad-value',
        "a WGSL identifier not starting with hmm_, declared 'read', 'write' or 'readwrite'",
      );
    }
    return [name, bits] as const;
  });
}

/** Whether `use` binds a named range (it has a `name`) rather than declaring a plain range. */
export function isNamedUse(use: unknown): boolean {
  return typeof use === 'object' && use !== null && 'name' in use;
}

/**
 * A named use's range and the USE_* bits its declaration gives it, checked;
 * each field is read once.
 * @param name the use's argument name, e.g. 'uses[2]'
 * @param bound the ranges bound so far in this run (this one is added)
 * @throws InvalidArgumentError naming the field: '.name' 'bad-value' for a
 *   name not declared at kernel() or bound twice; '.access' 'bad-value' for
 *   any access given (it comes from the declaration); '.va' and '.len'
 *   'not-integer', 'negative' ('zero' for len) or 'misaligned' (not a
 *   multiple of 4)
 */
export function checkedNamedUse(
  name: string,
  use: Record<string, unknown>,
  ranges: RangeList,
  bound: Map<string, BoundRange>,
): { va: number; len: number; bits: number } {
  const { name: rangeName, va, len, access } = use;
  const declared = ranges.find(([known]) => known === rangeName);
  if (!declared) {
    throw new InvalidArgumentError(
      `${name}.name`,
      rangeName,
      'bad-value',
      `not a range declared at kernel() (declared: ${ranges.map(([known]) => known).join(', ') || 'none'})`,
    );
  }
  if (bound.has(declared[0])) {
    throw new InvalidArgumentError(
      `${name}.name`,
      rangeName,
      'bad-value',
      'bound twice in one run',
    );
  }
  if (access !== undefined) {
    throw new InvalidArgumentError(
      `${name}.access`,
      access,
      'bad-value',
      "a named range's access comes from kernel(); give none",
    );
  }
  nonNegativeInteger(`${name}.va`, va);
  positiveInteger(`${name}.len`, len);
  for (const [field, value] of [
    ['va', va],
    ['len', len],
  ] as const) {
    if (value % 4 !== 0) {
      throw new InvalidArgumentError(`${name}.${field}`, value, 'misaligned', 'a multiple of 4');
    }
  }
  bound.set(declared[0], { name: declared[0], va, len });
  return { va, len, bits: declared[1] };
}

/**
 * Every declared range bound, in declaration order, from the bindings
 * checkedNamedUse recorded.
 * @throws InvalidArgumentError 'bad-value' (argument 'uses') naming the
 *   ranges a run left unbound
 */
export function boundRanges(
  ranges: RangeList,
  bound: ReadonlyMap<string, BoundRange>,
): BoundRange[] {
  const missing = ranges.filter(([name]) => !bound.has(name)).map(([name]) => name);
  if (missing.length > 0) {
    throw new InvalidArgumentError(
      'uses',
      missing.join(', '),
      'bad-value',
      `every named range needs a { name, va, len } use; missing: ${missing.join(', ')}`,
    );
  }
  return ranges.map(([name]) => bound.get(name) as BoundRange);
}

/** Ranges that may take the contiguous path (bits of `hmm_contiguous`); later ones always translate. */
export const CONTIGUOUS_RANGES = 32;

/**
 * Writes the range descriptors the prelude reads into a params uniform
 * (kernel-arguments.ts: encodeParams) at `offset`: RANGE_WORDS u32 per
 * range, [va / 4, len / 4, frame word of the first word or 0, 0] (the
 * frame word is set per pass, `writeContiguousFrames`).
 */
export function writeRangeDescriptors(
  params: ArrayBuffer,
  offset: number,
  bound: readonly BoundRange[],
): void {
  const words = new Uint32Array(params, offset, bound.length * RANGE_WORDS);
  bound.forEach((range, i) => words.set([range.va / 4, range.len / 4], i * RANGE_WORDS));
}

/**
 * For each bound range whose pages sit in consecutive frames (their order
 * kept), writes the frame word of its first word into its descriptor at
 * `offset` and sets its bit in the mask returned: the pipeline for that mask
 * reaches those words as base + i. `frameOf` gives a held page's frame.
 */
export function writeContiguousFrames(
  params: ArrayBuffer,
  offset: number,
  bound: readonly BoundRange[],
  pageSize: number,
  frameOf: (page: number) => number,
): number {
  const words = new Uint32Array(params, offset, bound.length * RANGE_WORDS);
  let mask = 0;
  bound.slice(0, CONTIGUOUS_RANGES).forEach((range, k) => {
    const first = Math.floor(range.va / pageSize);
    const last = Math.floor((range.va + range.len - 1) / pageSize);
    const base = frameOf(first);
    if (base < 0) return;
    for (let page = first + 1; page <= last; page++)
      if (frameOf(page) !== base + (page - first)) return;
    words[k * RANGE_WORDS + 2] = (base * pageSize + (range.va - first * pageSize)) / 4;
    mask |= 1 << k;
  });
  return mask >>> 0;
}

/** A bounds failure as STATUS_RANGE_BOUNDS holds it: the range's declaration index and the index. */
export function decodeRangeBounds(word: number): {
  range: number;
  index: number;
  saturated: boolean;
} {
  const index = word & RANGE_BOUNDS_INDEX_MASK;
  return {
    range: word >>> RANGE_BOUNDS_SHIFT,
    index,
    saturated: index === RANGE_BOUNDS_INDEX_MASK,
  };
}

const u = (value: number): string => `${value >>> 0}u`;

/**
 * The shared WGSL of named ranges: the word of index `i` of range `r` (a
 * descriptor from hmm_params.hmm_ranges), bounds-checked, its page marked
 * dirty when it is for writing. Needs the prelude's constants, its
 * bookkeeping (hmm_mark_dirty, hmm_faulted_flag, hmm_range_overrun) and the
 * page table.
 */
export const RANGE_WORD = `// Which ranges the run found in consecutive frames (bit k: range k, the first
// CONTIGUOUS_RANGES): their words are base + i, no page table load. Set per
// pipeline, so the other branch is compiled out.
override hmm_contiguous: u32 = 0u;

fn hmm_range_word(r: vec4<u32>, k: u32, i: u32, forWrite: bool, contiguous: bool) -> u32 {
  // An overrun is recorded for hmm_flush (the lowest, inverted) and reaches the zero or sink frame.
  let inside = i < r.y;
  let overrun = ~((k << ${u(RANGE_BOUNDS_SHIFT)}) | min(i, ${u(RANGE_BOUNDS_INDEX_MASK)}));
  hmm_range_overrun = select(max(hmm_range_overrun, overrun), hmm_range_overrun, inside);
  hmm_faulted_flag = hmm_faulted_flag || !inside;
  let w = r.x + min(i, r.y - 1u);
  let page = w >> (HMM_PAGE_SHIFT - 2u);
  if (forWrite && inside) { hmm_mark_dirty(page); }
  let fallback = select(HMM_ZERO_WORDS, HMM_SINK_WORDS, forWrite);
  if (contiguous) { return select(fallback, r.z + i, inside); }
  let frame_word = (hmm_page_table[page] & ${u(DPTE_FRAME_MASK)}) * HMM_PAGE_WORDS + (w & (HMM_PAGE_WORDS - 1u));
  return select(fallback, frame_word, inside);
}
`;

/** The accessors of each named range, for frames bound as atomics or as plain words. */
export function rangeAccessors(ranges: RangeList, atomics: boolean): string {
  const load = atomics
    ? (w: string) => `atomicLoad(&hmm_frames[${w}])`
    : (w: string) => `hmm_frames[${w}]`;
  const store = atomics
    ? (w: string, v: string) => `atomicStore(&hmm_frames[${w}], ${v});`
    : (w: string, v: string) => `hmm_frames[${w}] = ${v};`;
  return ranges
    .map(([name, access], k) => {
      const desc = `hmm_params.hmm_ranges[${k}]`;
      const contiguous = k < CONTIGUOUS_RANGES ? `(hmm_contiguous & ${u(2 ** k)}) != 0u` : 'false';
      const word = (forWrite: boolean) =>
        `hmm_range_word(${desc}, ${u(k)}, i, ${forWrite}, ${contiguous})`;
      const reads = `fn ${name}_len() -> u32 { return ${desc}.y; }
fn ${name}_load_u32(i: u32) -> u32 { return ${load(word(false))}; }
fn ${name}_load_f32(i: u32) -> f32 { return bitcast<f32>(${name}_load_u32(i)); }
`;
      if (!(access & USE_WRITE)) return reads;
      const writes = `fn ${name}_store_u32(i: u32, value: u32) { ${store(word(true), 'value')} }
fn ${name}_store_f32(i: u32, value: f32) { ${name}_store_u32(i, bitcast<u32>(value)); }
`;
      const atomicOps = atomics
        ? `fn ${name}_atomic_add_u32(i: u32, value: u32) -> u32 { return atomicAdd(&hmm_frames[${word(true)}], value); }
fn ${name}_atomic_add_f32(i: u32, value: f32) -> f32 { return hmm_frame_atomic_add_f32(${word(true)}, value); }
`
        : '';
      return reads + writes + atomicOps;
    })
    .join('');
}
