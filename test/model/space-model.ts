/**
 * The reference model of an address space: plain bytes, mapped regions and
 * protections, and which pages the GPU may hold newer bytes of. Random
 * command sequences run against it and the real space side by side
 * (model.browser.test.ts); after every step every mapped byte must equal the
 * model's.
 *
 * `gpuNewer[page]` is an upper bound on the real page being GPU-dirty: set by
 * device-side stores, cleared by anything that brings the page back to the
 * CPU. `cpuCopy` holds each page's bytes as of the last time its CPU copy was
 * valid: what a device loss leaves of a GPU-dirty page.
 */
import type { PageAdvice, Protection } from '../../src/space/pte.ts';
import type { Advice } from '../../src/gpu/advice.ts';

/** A run of mapped pages the commands may address: an allocation, or what is left of one. */
export interface Region {
  readonly va: number;
  readonly pages: number;
  /** Still exactly an allocation made by `alloc`, so `free(va)` without len frees it. */
  readonly whole: boolean;
}

/** What a call must fail with, as far as the model can tell; undefined: it must succeed. */
export interface ExpectedError {
  readonly code: 'ACCESS';
  readonly reason: 'protection' | 'freed' | 'unmapped';
  readonly address: number;
}

export class SpaceModel {
  readonly bytes: Uint8Array;
  readonly cpuCopy: Uint8Array;
  readonly prot: Protection[];
  readonly mapped: boolean[];
  readonly freed: boolean[];
  readonly gpuNewer: boolean[];
  /** The mirror's advice per page (undefined: none), as `snapshot` must report it. */
  readonly advice: (PageAdvice | undefined)[];
  regions: Region[] = [];
  /** A mirror is attached (GPU commands may run). */
  mirrored = true;

  constructor(
    readonly size: number,
    readonly pageSize: number,
  ) {
    const pages = size / pageSize;
    this.bytes = new Uint8Array(size);
    this.cpuCopy = new Uint8Array(size);
    this.prot = new Array<Protection>(pages).fill('none');
    this.mapped = new Array<boolean>(pages).fill(false);
    this.freed = new Array<boolean>(pages).fill(false);
    this.gpuNewer = new Array<boolean>(pages).fill(false);
    this.advice = new Array<PageAdvice | undefined>(pages).fill(undefined);
  }

  get pageCount(): number {
    return this.mapped.length;
  }

  /** The region `pick` (any integer) selects among the live ones, or undefined if none. */
  region(pick: number): Region | undefined {
    return this.regions.length === 0 ? undefined : this.regions[pick % this.regions.length];
  }

  /** Records an allocation the real space made at `va`; throws if it overlaps anything mapped. */
  alloc(va: number, pages: number, prot: Protection): void {
    const first = va / this.pageSize;
    if (!Number.isInteger(first) || first < 1 || first + pages > this.pageCount)
      throw new Error(`alloc returned ${va}: not a page-aligned VA inside the space past page 0`);
    for (let page = first; page < first + pages; page++) {
      if (this.mapped[page]) throw new Error(`alloc returned ${va}, overlapping page ${page}`);
      this.mapped[page] = true;
      this.freed[page] = false;
      this.prot[page] = prot;
      this.gpuNewer[page] = false;
      this.advice[page] = undefined;
    }
    this.bytes.fill(0, va, va + pages * this.pageSize);
    this.cpuCopy.fill(0, va, va + pages * this.pageSize);
    this.regions.push({ va, pages, whole: true });
  }

  /** Frees pages [first, first + count) of `region`, splitting what is left. */
  free(region: Region, first: number, count: number): void {
    const base = region.va / this.pageSize;
    for (let page = first; page < first + count; page++) {
      this.mapped[page] = false;
      this.freed[page] = true;
      this.gpuNewer[page] = false;
      this.advice[page] = undefined;
    }
    this.bytes.fill(0, first * this.pageSize, (first + count) * this.pageSize);
    this.cpuCopy.fill(0, first * this.pageSize, (first + count) * this.pageSize);
    const rest: Region[] = [];
    if (first > base) rest.push({ va: region.va, pages: first - base, whole: false });
    const end = base + region.pages;
    if (first + count < end)
      rest.push({ va: (first + count) * this.pageSize, pages: end - first - count, whole: false });
    this.regions = this.regions.filter((r) => r !== region).concat(rest);
  }

  protect(region: Region, prot: Protection): void {
    const first = region.va / this.pageSize;
    for (let page = first; page < first + region.pages; page++) this.prot[page] = prot;
  }

  /** `advice` given for the pages of [va, va + len): omitted fields stay; no advice left reads as none. */
  advise(va: number, len: number, advice: Advice): void {
    for (let page = Math.floor(va / this.pageSize); page * this.pageSize < va + len; page++) {
      const was = this.advice[page] ?? { readMostly: false, preferred: 'none' };
      const now = { ...was, ...advice };
      this.advice[page] = now.readMostly || now.preferred !== 'none' ? now : undefined;
    }
  }

  /** The mirror ended (detach, device loss): its advice went with it. */
  forgetAdvice(): void {
    this.advice.fill(undefined);
  }

  /** The error an access of [va, va + len) needing `need` must fail with, or undefined. */
  refusal(va: number, len: number, need: 'read' | 'write'): ExpectedError | undefined {
    for (let page = Math.floor(va / this.pageSize); page * this.pageSize < va + len; page++) {
      const address = Math.max(va, page * this.pageSize);
      if (!this.mapped[page])
        return { code: 'ACCESS', reason: this.freed[page] ? 'freed' : 'unmapped', address };
      const prot = this.prot[page];
      if (prot === 'none' || (need === 'write' && prot !== 'rw'))
        return { code: 'ACCESS', reason: 'protection', address };
    }
    return undefined;
  }

  /**
   * A CPU write: both copies take the bytes. The page may stay GPU-dirty
   * (pinned on the GPU by thrash mitigation, the write pushed to its frame),
   * so the bound on GPU-newer pages stays; the check after the step tightens
   * it for pages that came back to the CPU.
   */
  cpuWrite(va: number, data: Uint8Array): void {
    this.bytes.set(data, va);
    this.cpuCopy.set(data, va);
  }

  /** The device stored `data` at `va`: the GPU copy is newer. */
  gpuWrite(va: number, data: Uint8Array): void {
    this.bytes.set(data, va);
    this.markGpuNewer(va, data.length);
  }

  /** The CPU copy of [va, va + len) is valid again (a readback, or a fault). */
  cpuValid(va: number, len: number): void {
    for (let page = Math.floor(va / this.pageSize); page * this.pageSize < va + len; page++) {
      if (!this.gpuNewer[page]) continue;
      this.gpuNewer[page] = false;
      const base = page * this.pageSize;
      this.cpuCopy.set(this.bytes.subarray(base, base + this.pageSize), base);
    }
  }

  /** Every page's CPU copy is valid (sync, detach). */
  allCpuValid(): void {
    this.cpuValid(0, this.size);
  }

  markGpuNewer(va: number, len: number): void {
    for (let page = Math.floor(va / this.pageSize); page * this.pageSize < va + len; page++)
      this.gpuNewer[page] = true;
  }

  /** Adds `k` to every u32 of [va, va + len) (a kernel's effect), as the device stores it. */
  gpuAddWords(va: number, len: number, k: number): void {
    const words = new Uint32Array(this.bytes.buffer, va, len / 4);
    for (let i = 0; i < words.length; i++) words[i] = ((words[i] ?? 0) + k) >>> 0;
    this.markGpuNewer(va, len);
  }

  /** The device was lost: the pages it held newer bytes of fall back to their last CPU bytes. */
  loseGpuPages(pages: readonly number[]): void {
    for (const page of pages) {
      const base = page * this.pageSize;
      this.bytes.set(this.cpuCopy.subarray(base, base + this.pageSize), base);
      this.gpuNewer[page] = false;
    }
  }
}
