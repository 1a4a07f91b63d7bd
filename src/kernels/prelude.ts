/**
 * The WGSL prelude: what every user kernel is compiled with. It owns bind
 * group 0 and gives kernels the shared address space through functions of a
 * u32 VA:
 *
 * - `hmm_load_u32/f32(va)`, `hmm_store_u32/f32(va, v)`, `hmm_atomic_add_u32(va, v)`;
 * - `hmm_translate(va, forWrite)`: the frame word index of `va`, valid to the
 *   end of its page, for `hmm_frame_load(w)` / `hmm_frame_store(w, v)`;
 * - `hmm_faulted()`: true once this invocation touched a page it could not
 *   use as it is (loads of such pages return 0, stores to them are dropped).
 *
 * Guarantees, whatever the kernel does through these functions, whatever
 * index arithmetic it does with translated word indices:
 * - a store lands only in a page that is GPU-owned, writable and declared for
 *   writing, and marks that page dirty (`hmm_store_*` and atomics when they
 *   store, a `hmm_frame_store` that lands through `hmm_translate(va, true)`);
 *   otherwise it goes to a sink frame;
 * - `hmm_frame_store(w, v)` lands only within the page of one of the
 *   invocation's last STORE_PAGES write translations (a compare each, no
 *   memory access). Any other, through a read translation (it carries
 *   READ_TRANSLATION_TAG), past the end of the translated page, or to a page
 *   translated longer ago, is suppressed and recorded in the status block
 *   (STATUS_REFUSED_STORE): a real pass then fails with AccessError
 *   'undeclared' naming the address it aimed at (a collecting pass ignores it);
 * - a collecting pass (MODE_COLLECT) changes no page: every store goes to the
 *   sink, and every page that needs a change of state is recorded;
 * - a load of a page that is not resident reads the zero frame.
 *
 * How it stays cheap: a translation decides with selects, not branches, and
 * records what went wrong (access errors, faults, a refused store, a range
 * overrun) in private variables; `hmm_flush`, which the kernel's entry point
 * calls once its body returned (entry-wrapper.ts), writes them
 * to the status block. Whether a pass collects is the pipeline constant
 * `hmm_collecting`, so a real pass's pipeline has no fault-bitmap code at
 * all. Both matter most where every branch runs whether taken or not
 * (SwiftShader): an atomic in an untaken error branch cost about as much as
 * the access it guarded (kernel.translated.perelement: 5.7x plain before,
 * 2.8x after).
 *
 * Layouts: kernel-layout.ts (status, control, bitmaps, uses, the read tag)
 * and gpu/device-layout.ts (device page table entries).
 */
import {
  DPTE_FRAME_MASK,
  DPTE_DECLARED_SHIFT,
  DPTE_READABLE,
  DPTE_RESIDENT,
  DPTE_WRITABLE,
} from '../gpu/device-layout.ts';
import {
  ERROR_OUT_OF_RANGE,
  ERROR_STORE_READ_ONLY,
  ERROR_UNDECLARED,
  ACCESSED_READ,
  ACCESSED_WRITE,
  FAULT_BITS_PER_PAGE,
  FAULT_PAGES_PER_WORD,
  FAULT_READ,
  FAULT_WORD_SHIFT,
  FAULT_WRITE,
  READ_TRANSLATION_TAG,
  STATUS_ERROR_KINDS,
  STATUS_ERROR_VA,
  STATUS_FAULTED,
  STATUS_RANGE_BOUNDS,
  STATUS_REFUSED_STORE,
  STATUS_STORED,
  STATUS_WORDS,
  USE_ALL_ACCESS,
  USE_WRITE,
  USES_ALL,
} from './kernel-layout.ts';
import { RANGE_WORD, rangeAccessors, type RangeList } from './named-ranges.ts';

/** The WGSL scalar types a kernel parameter may have. */
export type ParamType = 'u32' | 'i32' | 'f32';

export interface PreludeConfig {
  readonly pageShift: number;
  readonly pageCount: number;
  /** Frame index of the frame of zeros faulted loads read. */
  readonly zeroFrame: number;
  /** Frame index of the frame suppressed stores go to. */
  readonly sinkFrame: number;
  /** Kernel parameters in declaration order. */
  readonly params: readonly (readonly [name: string, type: ParamType])[];
  /** Becomes `HMM_WORKGROUP_SIZE` when given. */
  readonly workgroupSize?: number | undefined;
  /**
   * Whether the kernel uses `hmm_atomic_add_u32`. Only then are frames bound
   * as atomics: plain loads and stores are what the hardware does fastest.
   */
  readonly atomics: boolean;
  /** The kernel's named ranges (named-ranges.ts), in declaration order. */
  readonly ranges: RangeList;
}

/**
 * Whether `code` calls the prelude's atomics, or those of one of its
 * writable named ranges (then frames must be `atomic<u32>`).
 */
export function usesAtomics(code: string, ranges: RangeList = []): boolean {
  const names = ['hmm', ...ranges.filter(([, access]) => access & USE_WRITE).map(([name]) => name)];
  return new RegExp(`\\b(${names.join('|')})_atomic_add_(u32|f32)\\b`).test(code);
}

const u = (value: number): string => `${value >>> 0}u`;

const TAG = u(READ_TRANSLATION_TAG);

/** Write translations each invocation remembers for `hmm_frame_store` (see the module doc). */
export const STORE_PAGES = 4;

// Loads mask off the read tag. hmm_store_u32 and the atomics use the word
// their own translation gave; hmm_frame_store checks the word it is given.
const ATOMIC_FRAMES = `fn hmm_frame_load(w: u32) -> u32 { return atomicLoad(&hmm_frames[w & ~${TAG}]); }
fn hmm_frame_store(w: u32, value: u32) {
  if (hmm_store_allowed(w)) { atomicStore(&hmm_frames[w], value); } else { hmm_refuse_store(w); }
}
fn hmm_store_u32(va: u32, value: u32) { atomicStore(&hmm_frames[hmm_translate_page(va, true)], value); }
fn hmm_atomic_add_u32(va: u32, value: u32) -> u32 {
  return atomicAdd(&hmm_frames[hmm_translate_page(va, true)], value);
}
fn hmm_atomic_add_f32(va: u32, value: f32) -> f32 {
  return hmm_frame_atomic_add_f32(hmm_translate_page(va, true), value);
}
// WGSL has no f32 atomics: a compare-exchange loop on the word's bits. Some
// exchange succeeds on every round, so the loop ends however many contend.
fn hmm_frame_atomic_add_f32(w: u32, value: f32) -> f32 {
  var old = atomicLoad(&hmm_frames[w]);
  loop {
    let swapped = atomicCompareExchangeWeak(&hmm_frames[w], old, bitcast<u32>(bitcast<f32>(old) + value));
    if (swapped.exchanged) { return bitcast<f32>(old); }
    old = swapped.old_value;
  }
}`;

const PLAIN_FRAMES = `fn hmm_frame_load(w: u32) -> u32 { return hmm_frames[w & ~${TAG}]; }
fn hmm_frame_store(w: u32, value: u32) {
  if (hmm_store_allowed(w)) { hmm_frames[w] = value; } else { hmm_refuse_store(w); }
}
fn hmm_store_u32(va: u32, value: u32) { hmm_frames[hmm_translate_page(va, true)] = value; }`;

/**
 * The prelude for `config`: group 0's declarations, the bookkeeping, the
 * translation, the frame accessors of the binding kind, then the load and
 * store functions.
 */
export function prelude(config: PreludeConfig): string {
  const named =
    config.ranges.length > 0 ? `${RANGE_WORD}${rangeAccessors(config.ranges, config.atomics)}` : '';
  return `${declarations(config)}${BOOKKEEPING}${TRANSLATE}${STORE_CHECK}${config.atomics ? ATOMIC_FRAMES : PLAIN_FRAMES}
${named}${ACCESSORS}`;
}

/** Group 0's structs and bindings, and the constants baked in for this space and kernel. */
function declarations(config: PreludeConfig): string {
  const pageWords = 2 ** config.pageShift / 4;
  const members = config.params.map(([name, type]) => `  ${name}: ${type},`);
  // Each run's range descriptors follow its parameters (kernel-arguments.ts: encodeParams).
  if (config.ranges.length > 0) {
    members.push(`  hmm_ranges: array<vec4<u32>, ${config.ranges.length}>,`);
  }
  const params = members.length > 0 ? members.join('\n') : '  _none: u32,';
  return `// ---- webhmm prelude: bind group 0 belongs to the runtime ----
struct HmmControl { uses: u32, _pad0: u32, _pad1: u32, _pad2: u32 }
struct HmmParams {
${params}
}
@group(0) @binding(0) var<storage, read_write> hmm_frames: array<${config.atomics ? 'atomic<u32>' : 'u32'}>;
@group(0) @binding(1) var<storage, read> hmm_page_table: array<u32>;
@group(0) @binding(2) var<storage, read_write> hmm_dirty_pages: array<u32>;
@group(0) @binding(3) var<storage, read_write> hmm_fault_bits: array<atomic<u32>>;
@group(0) @binding(4) var<storage, read_write> hmm_status: array<atomic<u32>, ${STATUS_WORDS}>;
@group(0) @binding(5) var<uniform> hmm_ctl: HmmControl;
@group(0) @binding(7) var<uniform> hmm_params: HmmParams;
${config.workgroupSize === undefined ? '' : `const HMM_WORKGROUP_SIZE: u32 = ${u(config.workgroupSize)};`}
const HMM_PAGE_SHIFT: u32 = ${u(config.pageShift)};
const HMM_PAGE_WORDS: u32 = ${u(pageWords)};
const HMM_PAGE_COUNT: u32 = ${u(config.pageCount)};
const HMM_ZERO_WORDS: u32 = ${u(config.zeroFrame * pageWords)};
const HMM_SINK_WORDS: u32 = ${u(config.sinkFrame * pageWords)};
// A collecting pass's pipeline (fault mode) sets it: its code is compiled out of the others.
override hmm_collecting: bool = false;
var<private> hmm_faulted_flag: bool = false;
// What hmm_flush writes to the status block (kernel-layout.ts), as it will be there.
var<private> hmm_error_va: u32 = 0u;
var<private> hmm_error_kinds: u32 = 0u;
var<private> hmm_fault_seen: bool = false;
var<private> hmm_stored: bool = false;
var<private> hmm_refused_store: u32 = 0u;
var<private> hmm_range_overrun: u32 = 0u;
// The last STORE_PAGES write translations: the frame word of the page, its VA
// page (HMM_NO_PAGE for the sink) and whether a hmm_frame_store landed in it.
const HMM_NO_PAGE: u32 = 0xffffffffu;
${Array.from(
  { length: STORE_PAGES },
  (_, i) => `var<private> hmm_store_page${i}: u32 = HMM_SINK_WORDS;
var<private> hmm_store_va_page${i}: u32 = HMM_NO_PAGE;
var<private> hmm_store_hit${i}: bool = false;`,
).join('\n')}

`;
}

/** Fault, error and dirty bookkeeping, the status flush, and the uses lookup. */
const BOOKKEEPING = `fn hmm_faulted() -> bool { return hmm_faulted_flag; }

// Sets \`bits\` of the page's nibble in the fault bitmap (once: loads first).
fn hmm_note(page: u32, bits: u32) {
  let word = page >> ${u(FAULT_WORD_SHIFT)};
  let mask = bits << ((page & ${u(FAULT_PAGES_PER_WORD - 1)}) * ${u(FAULT_BITS_PER_PAGE)});
  if ((atomicLoad(&hmm_fault_bits[word]) & mask) != mask) { atomicOr(&hmm_fault_bits[word], mask); }
}

// A plain store of 1 after a plain load saw 0 (dirty-pages.ts: why, and why the race is benign).
fn hmm_mark_dirty(page: u32) {
  if (hmm_dirty_pages[page] == 0u) { hmm_dirty_pages[page] = 1u; }
  hmm_stored = true;
}

// The invocation's record, into the status block: called by the kernel's
// entry point once its body returned (entry-wrapper.ts). The lowest error VA
// and range overrun are kept inverted, so a cleared block means none.
fn hmm_flush() {
  hmm_flush_stores();
  if (hmm_error_kinds != 0u) {
    atomicMax(&hmm_status[${STATUS_ERROR_VA}], hmm_error_va);
    atomicOr(&hmm_status[${STATUS_ERROR_KINDS}], hmm_error_kinds);
  }
  if (hmm_fault_seen) { atomicStore(&hmm_status[${STATUS_FAULTED}], 1u); }
  if (hmm_stored) { atomicStore(&hmm_status[${STATUS_STORED}], 1u); }
  if (hmm_refused_store != 0u) { atomicStore(&hmm_status[${STATUS_REFUSED_STORE}], hmm_refused_store); }
  if (hmm_range_overrun != 0u) { atomicMax(&hmm_status[${STATUS_RANGE_BOUNDS}], hmm_range_overrun); }
}

// USE_* bits the run declared for the page of \`entry\` (all in fault mode),
// 0 if undeclared: the runtime puts them in the entries of the pass's pages.
fn hmm_declared(entry: u32) -> u32 {
  return select((entry >> ${u(DPTE_DECLARED_SHIFT)}) & ${u(USE_ALL_ACCESS)}, ${u(USE_ALL_ACCESS)}, hmm_ctl.uses == ${u(USES_ALL)});
}

`;

/** hmm_translate: where every access of a kernel is checked. */
const TRANSLATE = `// The frame word of \`va\`, valid to the end of its page. For writing, it marks
// the page dirty; a page that cannot be used as it is gives the zero frame
// (reads) or the sink frame (writes) and sets hmm_faulted(). A read
// translation carries the read tag: loads mask it off, stores through it are
// refused. Errors, in order of precedence: beyond the space, undeclared, a
// store to a page declared read-only; then a fault (not usable as it is).
fn hmm_translate_page(va: u32, forWrite: bool) -> u32 { return hmm_translate_marking(va, forWrite, forWrite); }

// As hmm_translate_page; a usable write translation marks its page dirty only with \`mark\`.
fn hmm_translate_marking(va: u32, forWrite: bool, mark: bool) -> u32 {
  let page = va >> HMM_PAGE_SHIFT;
  let offset = (va >> 2u) & (HMM_PAGE_WORDS - 1u);
  let fallback = select(HMM_ZERO_WORDS | ${TAG}, HMM_SINK_WORDS, forWrite) + offset;
  let in_space = page < HMM_PAGE_COUNT;
  let entry = hmm_page_table[min(page, HMM_PAGE_COUNT - 1u)];
  let declared = select(0u, hmm_declared(entry), in_space);
  let read_only = forWrite && (declared & ${u(USE_WRITE)}) == 0u;
  let error = select(select(select(0u, ${u(ERROR_STORE_READ_ONLY)}, read_only), ${u(ERROR_UNDECLARED)}, declared == 0u), ${u(ERROR_OUT_OF_RANGE)}, !in_space);
  let need = select(${u(DPTE_RESIDENT | DPTE_READABLE)}, ${u(DPTE_WRITABLE)}, forWrite);
  let fault = error == 0u && (entry & need) != need;
  if (hmm_collecting && error == 0u) {
    let accessed = select(${u(ACCESSED_READ)}, ${u(ACCESSED_WRITE)}, forWrite);
    hmm_note(page, accessed | select(0u, select(${u(FAULT_READ)}, ${u(FAULT_WRITE)}, forWrite), fault));
  }
  hmm_error_va = select(hmm_error_va, max(hmm_error_va, ~va), error != 0u);
  hmm_error_kinds = hmm_error_kinds | error;
  hmm_fault_seen = hmm_fault_seen || fault;
  hmm_faulted_flag = hmm_faulted_flag || error != 0u || fault;
  // A collecting pass's stores go to the sink, faulting or not.
  let usable = error == 0u && !fault && !(forWrite && hmm_collecting);
  if (mark && usable) { hmm_mark_dirty(page); }
  let frame_words = (entry & ${u(DPTE_FRAME_MASK)}) * HMM_PAGE_WORDS + offset;
  return select(fallback, frame_words | select(${TAG}, 0u, forWrite), usable);
}

// As hmm_translate_page, but a write translation marks nothing yet: its page
// (its frame, or the sink) becomes one of the pages hmm_frame_store may store
// to, and is marked dirty once a store landed in it (when it leaves the last
// STORE_PAGES, or in hmm_flush).
fn hmm_translate(va: u32, forWrite: bool) -> u32 {
  let w = hmm_translate_marking(va, forWrite, false);
  if (forWrite) {
    let base = w & ~(HMM_PAGE_WORDS - 1u);
    hmm_remember_store_page(base, select(va >> HMM_PAGE_SHIFT, HMM_NO_PAGE, base == HMM_SINK_WORDS));
  }
  return w;
}

`;

/**
 * hmm_frame_store's check: the word must lie in the page of one of the
 * invocation's last STORE_PAGES write translations, a compare each, in
 * registers. A refused store records the word it aimed at, plus one, for
 * the status block (STATUS_REFUSED_STORE), read back after every pass anyway.
 * Measured on SwiftShader (kernel.translated's kernel alone): the compares
 * and the read tag cost nothing measurable; an atomic store of the refusal
 * in the untaken branch cost about 12%, since SwiftShader runs a branch's
 * code for every store whether taken or not (hence a private variable for
 * hmm_flush); choosing the store's address with a select cost about 15%: it
 * defeats SwiftShader's sequential stores.
 */
const STORE_CHECK = `fn hmm_remember_store_page(base: u32, va_page: u32) {
  if (base == hmm_store_page0) { return; }
  hmm_mark_stored(hmm_store_va_page${STORE_PAGES - 1}, hmm_store_hit${STORE_PAGES - 1});
${Array.from({ length: STORE_PAGES - 1 }, (_, i) => {
  const [to, from] = [STORE_PAGES - 1 - i, STORE_PAGES - 2 - i];
  return `  hmm_store_page${to} = hmm_store_page${from};
  hmm_store_va_page${to} = hmm_store_va_page${from};
  hmm_store_hit${to} = hmm_store_hit${from};`;
}).join('\n')}
  hmm_store_page0 = base;
  hmm_store_va_page0 = va_page;
  hmm_store_hit0 = false;
}

// A remembered write translation's page, dirty if a store landed in it.
fn hmm_mark_stored(va_page: u32, hit: bool) {
  if (hit && va_page != HMM_NO_PAGE) { hmm_mark_dirty(va_page); }
}

// The remembered pages stores landed in, marked dirty (from hmm_flush).
fn hmm_flush_stores() {
${Array.from({ length: STORE_PAGES }, (_, i) => `  hmm_mark_stored(hmm_store_va_page${i}, hmm_store_hit${i});`).join('\n')}
}

// Records a suppressed store: the word it aimed at, plus one (the runtime names its address).
fn hmm_refuse_store(w: u32) { hmm_refused_store = w + 1u; }

// Whether \`w\` lies in a remembered page; the page it lies in counts as stored to.
fn hmm_store_allowed(w: u32) -> bool {
${Array.from(
  { length: STORE_PAGES },
  (_, i) => `  let in${i} = w - hmm_store_page${i} < HMM_PAGE_WORDS;
  hmm_store_hit${i} = hmm_store_hit${i} | in${i};`,
).join('\n')}
  return ${Array.from({ length: STORE_PAGES }, (_, i) => `in${i}`).join(' | ')};
}

`;

/** The loads and stores built on the frame accessors. */
const ACCESSORS = `fn hmm_load_u32(va: u32) -> u32 { return hmm_frame_load(hmm_translate_page(va, false)); }
fn hmm_load_f32(va: u32) -> f32 { return bitcast<f32>(hmm_load_u32(va)); }
fn hmm_store_f32(va: u32, value: f32) { hmm_store_u32(va, bitcast<u32>(value)); }
// ---- end of the webhmm prelude ----
`;

/** Lines the prelude adds before user code (for mapping compiler messages to user lines). */
export function preludeLines(source: string): number {
  return source.split('\n').length - 1;
}
