/**
 * Memory advice (`gpu.advise`, cudaMemAdvise's role): hints about how a
 * range is used, kept per page in the page table entry (so every thread's
 * CPU accesses see them), that change where pages rest and what eviction
 * and prefetch do, never what any read returns (docs/gpu-mirror.md, "Advice").
 *
 * - `readMostly`: migrations to the GPU leave the pages `shared` (the CPU
 *   copy stays valid), and a run, fault-mode pass or `gpu.write` that stores
 *   to one writes it back before it resolves: CPU reads of them never fault.
 * - `preferred: 'cpu'`: stores are written back at the end of the run (->
 *   `shared`, frame kept), and the pages are the first eviction victims.
 * - `preferred: 'gpu'`: a CPU read of a GPU-dirty page copies its bytes back
 *   and leaves it GPU-owned (clean), so the next kernel writes it without
 *   a transfer; evicted last; `prefetch(..., 'cpu')` leaves it and counts
 *   an ignored hint.
 * An omitted field leaves that advice as it was; `readMostly: false` and
 * `preferred: 'none'` take it back. Advice survives protect, discard and
 * partial frees of other pages; `free` clears it, and so does the end of
 * the mirror (detach or device loss): advice is the mirror's.
 */
import { InvalidArgumentError } from '../errors.ts';
import { oneOf } from '../arguments.ts';
import type { PageRun } from '../space/page-run.ts';
import type { PageTable } from '../space/page-table.ts';
import { isMapped, type PreferredLocation } from '../space/pte.ts';
import {
  PTE_POLICY_MASK,
  PTE_PREFER_CPU,
  PTE_PREFER_GPU,
  PTE_READ_MOSTLY,
} from '../space/shared-layout.ts';

/** What `gpu.advise` is told: omitted fields stay as they were. */
export interface Advice {
  readonly readMostly?: boolean;
  readonly preferred?: PreferredLocation;
}

const FIELDS = ['readMostly', 'preferred'];

/**
 * The advice, checked.
 * @throws InvalidArgumentError 'bad-value' for anything but an object of
 *   `readMostly` (a boolean) and `preferred` ('cpu', 'gpu' or 'none')
 */
export function checkAdvice(advice: unknown): Advice {
  if (typeof advice !== 'object' || advice === null)
    throw new InvalidArgumentError('advice', advice, 'bad-value', '{ readMostly?, preferred? }');
  const fields = advice as Record<string, unknown>;
  const unknown = Object.keys(fields).find((key) => !FIELDS.includes(key));
  if (unknown !== undefined)
    throw new InvalidArgumentError(
      `advice.${unknown}`,
      fields[unknown],
      'bad-value',
      'no such advice: readMostly, preferred',
    );
  const { readMostly, preferred } = fields;
  if (readMostly !== undefined && typeof readMostly !== 'boolean')
    throw new InvalidArgumentError('advice.readMostly', readMostly, 'bad-value', 'a boolean');
  const checked: { readMostly?: boolean; preferred?: PreferredLocation } = {};
  if (readMostly !== undefined) checked.readMostly = readMostly;
  if (preferred !== undefined)
    checked.preferred = oneOf('advice.preferred', preferred, ['cpu', 'gpu', 'none']);
  return checked;
}

/** The advice bits `advice` sets, and those it clears. */
function adviceBits(advice: Advice): { set: number; clear: number } {
  let [set, clear] = [0, 0];
  if (advice.readMostly !== undefined) {
    if (advice.readMostly) set |= PTE_READ_MOSTLY;
    else clear |= PTE_READ_MOSTLY;
  }
  if (advice.preferred !== undefined) {
    clear |= PTE_PREFER_CPU | PTE_PREFER_GPU;
    if (advice.preferred === 'cpu') set |= PTE_PREFER_CPU;
    if (advice.preferred === 'gpu') set |= PTE_PREFER_GPU;
  }
  return { set, clear };
}

/** Applies `advice` to the mapped pages of `run` (a page freed meanwhile stays as free left it). */
export function applyAdvice(table: PageTable, run: PageRun, advice: Advice): void {
  const { set, clear } = adviceBits(advice);
  for (let page = run.first; page < run.first + run.count; page++)
    table.updatePte(page, (pte) => (isMapped(pte) ? (pte & ~clear) | set : pte));
}

/** Takes the mirror's advice and thrash pins (thrash.ts) back from every page (the mirror ends). */
export function clearAdvice(table: PageTable): void {
  for (let page = 0; page < table.pageCount; page++) {
    if ((table.pte(page) & PTE_POLICY_MASK) !== 0)
      table.updatePte(page, (pte) => pte & ~PTE_POLICY_MASK);
  }
}
