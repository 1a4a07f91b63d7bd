/**
 * Device access rules: what the device may do with a page as it is, derived
 * from its pte, and the device page table entry that encodes it for kernels
 * (layout in device-layout.ts). The mirror, the migration engine and kernel
 * runs all ask these, so the device's view of a page is defined once:
 *
 * - the device reads a page directly when it is resident (`shared` or `gpu`)
 *   and not protected 'none';
 * - the device writes a page directly only when it is GPU-owned (`gpu`) and
 *   protected 'rw';
 * - anything else is a GPU fault: the runtime changes the page's state first.
 */
import { isGpuOwned, protAllows, pteState } from '../space/pte.ts';
import { PTE_GPU, PTE_SHARED } from '../space/shared-layout.ts';
import { DPTE_READABLE, DPTE_RESIDENT, DPTE_WRITABLE } from './device-layout.ts';

/** The frame holds the page's current bytes: the page is `shared` or `gpu`. */
export function deviceResident(pte: number): boolean {
  const state = pteState(pte);
  return state === PTE_SHARED || state === PTE_GPU;
}

/** Whether the device may read the page as it is (resident, not `prot: 'none'`). */
export function deviceCanRead(pte: number): boolean {
  return deviceResident(pte) && protAllows(pte, 'read');
}

/** Whether the device may write the page as it is (GPU-owned, read-write). */
export function deviceCanWrite(pte: number): boolean {
  return isGpuOwned(pte) && protAllows(pte, 'write');
}

/** The device page table entry of a page in `frame` whose pte is `pte`. */
export function deviceEntry(frame: number, pte: number): number {
  let entry = frame;
  if (deviceResident(pte)) entry |= DPTE_RESIDENT;
  if (deviceCanRead(pte)) entry |= DPTE_READABLE;
  if (deviceCanWrite(pte)) entry |= DPTE_WRITABLE;
  return entry;
}
