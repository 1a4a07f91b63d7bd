/**
 * Page table entry decoding: every question asked of a pte word, by name, in
 * one place (the bit layout itself is in shared-layout.ts). The CPU side, the
 * migration engine, kernels and the mirror all decode ptes through these, as
 * Linux's mm/hmm.c decodes its ptes through `pte_to_hmm_pfn_flags()`.
 *
 * Rules written here once:
 * - A page is mapped unless its state is `unmapped`; an unmapped page that
 *   was allocated once reports 'freed', otherwise 'unmapped'.
 * - Protection 'none' refuses every access; 'r' refuses writes; 'rw' allows
 *   both. The runtime's own transfers (write-back, sync, detach) check only
 *   that a page is mapped, never its protection.
 * - A frame is stale as a whole or in recorded ranges, never both: marking it
 *   stale whole drops the ranges bit.
 * - Snapshot `dirty`: 'gpu' for a GPU-dirty `gpu` page; 'cpu' for a `cpu`
 *   page whose existing frame lacks some bytes; 'none' otherwise.
 * - Advice (gpu.advise) is policy, never correctness: pages advised
 *   read-mostly or preferred on the CPU have their stores written through at
 *   the end of a run; a page preferred on the GPU stays GPU-owned when CPU
 *   reads copy its bytes back. `preferred` is one of 'cpu', 'gpu', 'none'.
 */
import { AccessError } from '../errors.ts';
import {
  PROT_NONE,
  PROT_R,
  PROT_RW,
  PTE_CPU,
  PTE_FRAME,
  PTE_FREED,
  PTE_ADVICE_MASK,
  PTE_FREE_PENDING,
  PTE_GPU,
  PTE_GPU_DIRTY,
  PTE_PROT_MASK,
  PTE_PREFER_CPU,
  PTE_PINNED_CPU,
  PTE_PINNED_GPU,
  PTE_PREFER_GPU,
  PTE_PROT_SHIFT,
  PTE_READ_MOSTLY,
  PTE_STALE_BLOCKS,
  PTE_STALE_WHOLE,
  PTE_STATE_MASK,
  PTE_UNMAPPED,
} from './shared-layout.ts';

/** A page's state as `snapshot` reports it. */
export type PageState = 'unmapped' | 'zero' | 'cpu' | 'shared' | 'gpu';
/** A page's protection: no access, read-only, or read-write. */
export type Protection = 'none' | 'r' | 'rw';
/** What an access needs of a page. */
export type Need = 'read' | 'write';

/** Where a page is preferred to rest (gpu.advise): 'none' for no preference. */
export type PreferredLocation = 'cpu' | 'gpu' | 'none';

/** A page's advice as `snapshot` reports it. */
export interface PageAdvice {
  readonly readMostly: boolean;
  readonly preferred: PreferredLocation;
}

/** One page as `snapshot` reports it. */
export interface PageSnapshot {
  readonly state: PageState;
  readonly prot: Protection;
  /** 'cpu': the CPU copy is newer than an existing GPU frame; 'gpu': the GPU copy is newer than the CPU copy. */
  readonly dirty: 'none' | 'cpu' | 'gpu';
  /** Present for an advised page (gpu.advise). */
  readonly advice?: PageAdvice;
  /** Present while thrash mitigation pins the page (GPU-owned: on the GPU; otherwise on the CPU). */
  readonly pinned?: true;
}

/** State names, indexed by the PTE_* state code. */
const STATE_NAMES: readonly PageState[] = ['unmapped', 'zero', 'cpu', 'shared', 'gpu'];
/** Every protection name, indexed by its PROT_* code. */
export const PROTECTIONS: readonly Protection[] = ['none', 'r', 'rw'];
const PROT_CODES: Readonly<Record<Protection, number>> = {
  none: PROT_NONE,
  r: PROT_R,
  rw: PROT_RW,
};

/** The page's state code (PTE_UNMAPPED ... PTE_GPU). */
export function pteState(pte: number): number {
  return pte & PTE_STATE_MASK;
}

/** The page's protection code (PROT_NONE, PROT_R or PROT_RW). */
export function pteProt(pte: number): number {
  return (pte & PTE_PROT_MASK) >>> PTE_PROT_SHIFT;
}

/** `pte` with its state replaced by `state` (a PTE_* state code); other bits kept. */
export function withState(pte: number, state: number): number {
  return (pte & ~PTE_STATE_MASK) | state;
}

/** `pte` with its protection replaced by `prot` (a PROT_* code); other bits kept. */
export function withProt(pte: number, prot: number): number {
  return (pte & ~PTE_PROT_MASK) | (prot << PTE_PROT_SHIFT);
}

export function isMapped(pte: number): boolean {
  return pteState(pte) !== PTE_UNMAPPED;
}

/** Unmapped because it was freed (and not allocated again since), not because it never was mapped. */
export function isFreed(pte: number): boolean {
  return (pte & PTE_FREED) !== 0;
}

/**
 * Whether a pte change from `before` to `after` changes what a device may do
 * with the page (its state, protection or mapping): such a change moves the
 * page's sequence number on (page-table.ts), which device page tables
 * reconcile by. Dirty, frame and stale bits do not count.
 */
export function changesDeviceView(before: number, after: number): boolean {
  return ((before ^ after) & (PTE_STATE_MASK | PTE_PROT_MASK | PTE_FREED)) !== 0;
}

/** The word of a page `free` has just discarded: unmapped, freed, no frame, nothing stale. */
export const FREED_PTE = PTE_UNMAPPED | PTE_FREED;

/** The word of a page freed while the device held it: as FREED_PTE, its give-back pending. */
export const FREE_PENDING_PTE = FREED_PTE | PTE_FREE_PENDING;

/** Freed while the device held it, and not given back to the allocator yet (mapping.ts). */
export function isFreePending(pte: number): boolean {
  return (pte & PTE_FREE_PENDING) !== 0;
}

/** GPU-owned (`gpu`), dirty or not. */
export function isGpuOwned(pte: number): boolean {
  return pteState(pte) === PTE_GPU;
}

/** GPU-owned and the GPU copy is newer than the CPU copy. */
export function isGpuDirty(pte: number): boolean {
  return pteState(pte) === PTE_GPU && (pte & PTE_GPU_DIRTY) !== 0;
}

/** The page has a GPU frame (current or stale). */
export function hasFrame(pte: number): boolean {
  return (pte & PTE_FRAME) !== 0;
}

/** The frame lacks some of the page's bytes (stale ranges, or the whole page). */
export function isStale(pte: number): boolean {
  return (pte & (PTE_STALE_WHOLE | PTE_STALE_BLOCKS)) !== 0;
}

/** The frame is stale as a whole: its recorded ranges, if any, no longer matter. */
export function isStaleWhole(pte: number): boolean {
  return (pte & PTE_STALE_WHOLE) !== 0;
}

/** The frame is stale in the ranges recorded in the page's stale entry. */
export function hasStaleBlocks(pte: number): boolean {
  return (pte & PTE_STALE_BLOCKS) !== 0;
}

/** `pte` with the frame stale as a whole (any recorded ranges subsumed); other bits kept. */
export function withStaleWhole(pte: number): number {
  return (pte & ~PTE_STALE_BLOCKS) | PTE_STALE_WHOLE;
}

/** `pte` with the frame stale in its recorded ranges; other bits kept. */
export function withStaleBlocks(pte: number): number {
  return pte | PTE_STALE_BLOCKS;
}

/** `pte` with the frame up to date (nothing stale); other bits kept. */
export function withoutStale(pte: number): number {
  return pte & ~(PTE_STALE_WHOLE | PTE_STALE_BLOCKS);
}

/** Advised read-mostly: kept `shared` by migrations to the GPU, stores written through. */
export function isReadMostly(pte: number): boolean {
  return (pte & PTE_READ_MOSTLY) !== 0;
}

/** Advised preferred on the CPU: stores written back at the end of a run, evicted first. */
export function prefersCpu(pte: number): boolean {
  return (pte & PTE_PREFER_CPU) !== 0;
}

/** Advised preferred on the GPU: CPU reads leave it GPU-owned, evicted last. */
export function prefersGpu(pte: number): boolean {
  return (pte & PTE_PREFER_GPU) !== 0;
}

/** Pinned on the GPU by thrash mitigation (gpu/thrash.ts). */
export function isPinnedGpu(pte: number): boolean {
  return (pte & PTE_PINNED_GPU) !== 0;
}

/** Pinned on the CPU by thrash mitigation (gpu/thrash.ts). */
export function isPinnedCpu(pte: number): boolean {
  return (pte & PTE_PINNED_CPU) !== 0;
}

/** Pinned by thrash mitigation, on either side. */
export function isPinned(pte: number): boolean {
  return (pte & (PTE_PINNED_GPU | PTE_PINNED_CPU)) !== 0;
}

/** Kept `shared` by migrations to the GPU and after runs (read-mostly, or pinned on the CPU). */
export function staysShared(pte: number): boolean {
  return (pte & (PTE_READ_MOSTLY | PTE_PINNED_CPU)) !== 0;
}

/** CPU reads leave the page GPU-owned (clean reads in place, dirty ones copy it back): preferred or pinned on the GPU. */
export function keepsGpuOwner(pte: number): boolean {
  return (pte & (PTE_PREFER_GPU | PTE_PINNED_GPU)) !== 0;
}

/** A run's stores to the page are written back before the run resolves (read-mostly, preferred or pinned on the CPU). */
export function writesThrough(pte: number): boolean {
  return (pte & (PTE_READ_MOSTLY | PTE_PREFER_CPU | PTE_PINNED_CPU)) !== 0;
}

/** The page's advice, or undefined when it has none. */
export function adviceOf(pte: number): PageAdvice | undefined {
  if ((pte & PTE_ADVICE_MASK) === 0) return undefined;
  const preferred = prefersCpu(pte) ? 'cpu' : prefersGpu(pte) ? 'gpu' : 'none';
  return { readMostly: isReadMostly(pte), preferred };
}

/** Whether the page's protection allows an access of `need` (mapping aside). */
export function protAllows(pte: number, need: Need): boolean {
  const prot = pteProt(pte);
  return need === 'read' ? prot !== PROT_NONE : prot === PROT_RW;
}

/**
 * The pte, if the page is mapped.
 * @throws AccessError 'freed' or 'unmapped' at `address`
 */
export function assertMapped(pte: number, address: number, detail = ''): number {
  if (!isMapped(pte)) throw new AccessError(address, isFreed(pte) ? 'freed' : 'unmapped', detail);
  return pte;
}

/**
 * The pte, if the page is mapped and its protection allows `need`.
 * @param actor who accesses, for the message ("the device", "a kernel"); none for the CPU
 * @throws AccessError 'freed' / 'unmapped' / 'protection' at `address`
 */
export function assertAccess(pte: number, need: Need, address: number, actor = ''): number {
  assertMapped(pte, address, actor ? `touched by ${actor}` : '');
  if (!protAllows(pte, need)) {
    throw new AccessError(
      address,
      'protection',
      `${need} of a page protected '${protName(pteProt(pte))}'${actor ? ` by ${actor}` : ''}`,
    );
  }
  return pte;
}

/** The name of a PROT_* code. */
export function protName(prot: number): Protection {
  return PROTECTIONS[prot] ?? 'none';
}

/** The PROT_* code of a protection name, or undefined for anything else. */
export function protCode(prot: unknown): number | undefined {
  return typeof prot === 'string' && Object.hasOwn(PROT_CODES, prot)
    ? PROT_CODES[prot as Protection]
    : undefined;
}

/** The page as `snapshot` reports it. */
export function describePte(pte: number): PageSnapshot {
  const state = STATE_NAMES[pteState(pte)] ?? 'unmapped';
  let dirty: PageSnapshot['dirty'] = 'none';
  if (isGpuDirty(pte)) dirty = 'gpu';
  else if (pteState(pte) === PTE_CPU && hasFrame(pte) && isStale(pte)) dirty = 'cpu';
  const advice = adviceOf(pte);
  const page = { state, prot: protName(pteProt(pte)), dirty };
  const advised = advice ? { ...page, advice } : page;
  return isPinned(pte) ? { ...advised, pinned: true } : advised;
}
