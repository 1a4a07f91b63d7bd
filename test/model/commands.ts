/**
 * The commands of the model-based suite: each runs one public call on the
 * real system and the same effect on the model, and checks that the call
 * ended as the model says (its value, or its typed error). Outcomes the
 * model cannot rule out are named where they are allowed:
 * WouldBlockError 'may-not-block' for a main-thread sync call on a page the
 * GPU holds dirty. Device-side calls evict to make room (the budget is a few
 * frames), so they fail with OutOfMemoryError 'budget' exactly when they
 * need more pages resident at once than the budget has frames (`overBudget`).
 */
import type fc from 'fast-check';
import type { Protection } from '../../src/space/pte.ts';
import { outcomeOf, outcomeOfAsync, type Outcome } from './outcome.ts';
import { BUDGET_PAGES, PAGE, within, type RealSystem } from './real-system.ts';
import type { ExpectedError, Region, SpaceModel } from './space-model.ts';

type Command = fc.AsyncCommand<SpaceModel, RealSystem>;
/** Who runs a CPU call: worker 0, worker 1, or the main thread (async variants). */
type Thread = 0 | 1 | 'main';

const BUDGET_REFUSAL = { code: 'OUT_OF_MEMORY', reason: 'budget' } as const;

/** The error a call must end with: the model's refusal, or a budget refusal (no address). */
type Expected = ExpectedError | typeof BUDGET_REFUSAL;

/**
 * What a device-side call over [va, va + len) may end with besides the
 * model's refusal: a call that needs more pages than the budget must fail
 * with 'budget' (where no access error comes first), one that fits must not.
 */
function budgetOutcome(
  va: number,
  len: number,
  refusal: ExpectedError | undefined,
): { expected: Expected | undefined; allowed: (typeof BUDGET_REFUSAL)[] } {
  const pages = Math.ceil((va + len) / PAGE) - Math.floor(va / PAGE);
  if (pages <= BUDGET_PAGES) return { expected: refusal, allowed: [] };
  return { expected: refusal ?? BUDGET_REFUSAL, allowed: [BUDGET_REFUSAL] };
}

/**
 * Throws unless `outcome` is what the model expects: success, the expected
 * typed error (code, reason and, where given, address), or one of `allowed`.
 * @returns whether the call succeeded
 */
function expectOutcome(
  what: string,
  outcome: Outcome<unknown>,
  expected: Expected | undefined,
  allowed: readonly { code: string; reason: string }[] = [],
  checkAddress = true,
): boolean {
  if (!outcome.ok && allowed.some((a) => a.code === outcome.code && a.reason === outcome.reason))
    return false;
  if (expected === undefined) {
    if (outcome.ok) return true;
    throw new Error(
      `${what}: expected success, got ${outcome.code} ${outcome.reason}: ${outcome.message}`,
    );
  }
  const address = checkAddress && 'address' in expected ? expected.address : undefined;
  if (
    outcome.ok ||
    outcome.code !== expected.code ||
    outcome.reason !== expected.reason ||
    (address !== undefined && outcome.address !== address)
  ) {
    const got = outcome.ok ? 'success' : `${outcome.code} ${outcome.reason} at ${outcome.address}`;
    throw new Error(
      `${what}: expected ${expected.code} ${expected.reason} at ${address}, got ${got}`,
    );
  }
  return false;
}

function expectBytes(what: string, got: Uint8Array, want: Uint8Array): void {
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i])
      throw new Error(`${what}: byte ${i} is ${got[i]}, the model says ${want[i]}`);
  }
  if (got.length !== want.length)
    throw new Error(`${what}: ${got.length} bytes, expected ${want.length}`);
}

/** A byte range inside a region, from fractions: [start, start + len), 4-byte aligned when asked. */
function span(region: Region, at: number, size: number, align = 1): { va: number; len: number } {
  const bytes = region.pages * PAGE;
  const start = Math.floor((at * bytes) / align) * align;
  const len = Math.max(align, Math.floor((size * (bytes - start)) / align) * align);
  return { va: region.va + start, len: Math.min(len, bytes - start) };
}

function pattern(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = seed | 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Base for commands that address a region picked among the model's live ones. */
abstract class RegionCommand implements Command {
  constructor(readonly pick: number) {}
  check(m: Readonly<SpaceModel>): boolean {
    return m.regions.length > 0;
  }
  protected region(m: SpaceModel): Region {
    const region = m.region(this.pick);
    if (!region) throw new Error('no region (check() should have said so)');
    return region;
  }
  abstract run(m: SpaceModel, r: RealSystem): Promise<void>;
  abstract toString(): string;
}

class Alloc implements Command {
  constructor(
    readonly pages: number,
    readonly prot: Protection,
  ) {}
  check(m: Readonly<SpaceModel>): boolean {
    return m.regions.length < 8;
  }
  async run(m: SpaceModel, r: RealSystem): Promise<void> {
    const outcome = outcomeOf(() => r.space.alloc(this.pages * PAGE, { prot: this.prot }));
    if (!outcome.ok) throw new Error(`alloc: ${outcome.message}`);
    m.alloc(outcome.value, this.pages, this.prot);
    return Promise.resolve();
  }
  toString(): string {
    return `alloc(${this.pages} pages, ${this.prot})`;
  }
}

class Free extends RegionCommand {
  constructor(
    pick: number,
    readonly from: number,
    readonly count: number,
  ) {
    super(pick);
  }
  run(m: SpaceModel, r: RealSystem): Promise<void> {
    const region = this.region(m);
    const first = region.va / PAGE + Math.floor(this.from * region.pages);
    const count = Math.max(1, Math.min(region.pages - (first - region.va / PAGE), this.count));
    const whole = region.whole && count === region.pages;
    const outcome = outcomeOf(() =>
      whole ? r.space.free(region.va) : r.space.free(first * PAGE, count * PAGE),
    );
    expectOutcome('free', outcome, undefined);
    m.free(region, first, count);
    return Promise.resolve();
  }
  toString(): string {
    return `free(#${this.pick}, from ${this.from.toFixed(2)}, ${this.count} pages)`;
  }
}

class Protect extends RegionCommand {
  constructor(
    pick: number,
    readonly prot: Protection,
  ) {
    super(pick);
  }
  run(m: SpaceModel, r: RealSystem): Promise<void> {
    const region = this.region(m);
    expectOutcome(
      'protect',
      outcomeOf(() => r.space.protect(region.va, region.pages * PAGE, this.prot)),
      undefined,
    );
    m.protect(region, this.prot);
    return Promise.resolve();
  }
  toString(): string {
    return `protect(#${this.pick}, ${this.prot})`;
  }
}

class CpuWrite extends RegionCommand {
  constructor(
    readonly thread: Thread,
    pick: number,
    readonly at: number,
    readonly size: number,
    readonly seed: number,
    readonly scope: boolean,
  ) {
    super(pick);
  }
  async run(m: SpaceModel, r: RealSystem): Promise<void> {
    const { va, len } = span(this.region(m), this.at, this.size);
    const data = pattern(len, this.seed);
    const outcome = await within(String(this), writeOn(r, this.thread, va, data, this.scope));
    if (expectOutcome(String(this), outcome, m.refusal(va, len, 'write'))) m.cpuWrite(va, data);
  }
  toString(): string {
    return `${this.scope ? 'scope-write' : 'write'}@${this.thread}(#${this.pick}, ${this.at.toFixed(2)}, ${this.size.toFixed(2)})`;
  }
}

function workerOf(r: RealSystem, thread: 0 | 1): RealSystem['threads'][number] {
  const worker = r.threads[thread];
  if (!worker) throw new Error(`no worker ${thread}`);
  return worker;
}

/** A worker's outcome: comlink types a union's promise as a union of promises. */
function remote<T>(promise: Promise<unknown>): Promise<Outcome<T>> {
  return promise as Promise<Outcome<T>>;
}

function writeOn(
  r: RealSystem,
  thread: Thread,
  va: number,
  data: Uint8Array,
  scope: boolean,
): Promise<Outcome<unknown>> {
  if (thread !== 'main') {
    const worker = r.threads[thread];
    if (!worker) throw new Error(`no worker ${thread}`);
    return scope ? worker.scopeWrite(va, data) : worker.write(va, data);
  }
  if (!scope) return outcomeOfAsync(() => r.space.writeAsync(va, data));
  return outcomeOfAsync(async () => {
    const lease = await r.space.acquire(va, data.length, 'write');
    lease.bytes.set(data);
    lease.release();
  });
}

class CpuRead extends RegionCommand {
  constructor(
    readonly thread: Thread,
    pick: number,
    readonly at: number,
    readonly size: number,
  ) {
    super(pick);
  }
  async run(m: SpaceModel, r: RealSystem): Promise<void> {
    const { va, len } = span(this.region(m), this.at, this.size);
    const worker = this.thread === 'main' ? undefined : r.threads[this.thread];
    const outcome = await within(
      String(this),
      worker ? worker.read(va, len) : outcomeOfAsync(() => r.space.readAsync(va, len)),
    );
    if (!expectOutcome(String(this), outcome, m.refusal(va, len, 'read')) || !outcome.ok) return;
    m.cpuValid(va, len);
    expectBytes(String(this), outcome.value, m.bytes.subarray(va, va + len));
  }
  toString(): string {
    return `read@${this.thread}(#${this.pick}, ${this.at.toFixed(2)}, ${this.size.toFixed(2)})`;
  }
}

class Fill extends RegionCommand {
  constructor(
    readonly thread: 0 | 1,
    pick: number,
    readonly at: number,
    readonly size: number,
    readonly byte: number,
  ) {
    super(pick);
  }
  async run(m: SpaceModel, r: RealSystem): Promise<void> {
    const { va, len } = span(this.region(m), this.at, this.size);
    const outcome = await within(
      String(this),
      remote<void>(workerOf(r, this.thread).fill(va, len, this.byte)),
    );
    if (expectOutcome(String(this), outcome, m.refusal(va, len, 'write')))
      m.cpuWrite(va, new Uint8Array(len).fill(this.byte));
  }
  toString(): string {
    return `fill@${this.thread}(#${this.pick}, ${this.at.toFixed(2)}, ${this.size.toFixed(2)}, ${this.byte})`;
  }
}

/** `discard` on a worker: the range reads as zeros (whole pages drop their frames unsaved). */
class Discard extends RegionCommand {
  constructor(
    readonly thread: 0 | 1,
    pick: number,
    readonly at: number,
    readonly size: number,
  ) {
    super(pick);
  }
  async run(m: SpaceModel, r: RealSystem): Promise<void> {
    const { va, len } = span(this.region(m), this.at, this.size);
    const outcome = await within(
      String(this),
      remote<void>(workerOf(r, this.thread).discard(va, len)),
    );
    if (expectOutcome(String(this), outcome, m.refusal(va, len, 'write')))
      m.cpuWrite(va, new Uint8Array(len));
  }
  toString(): string {
    return `discard@${this.thread}(#${this.pick}, ${this.at.toFixed(2)}, ${this.size.toFixed(2)})`;
  }
}

class Copy extends RegionCommand {
  constructor(
    readonly thread: 0 | 1,
    pick: number,
    readonly to: number,
    readonly at: number,
    readonly size: number,
  ) {
    super(pick);
  }
  async run(m: SpaceModel, r: RealSystem): Promise<void> {
    const src = span(this.region(m), this.at, this.size);
    const target = m.region(this.to) ?? this.region(m);
    const len = Math.min(src.len, target.pages * PAGE);
    const dst = target.va + target.pages * PAGE - len;
    const outcome = await within(
      String(this),
      remote<void>(workerOf(r, this.thread).copy(dst, src.va, len)),
    );
    const expected = m.refusal(src.va, len, 'read') ?? m.refusal(dst, len, 'write');
    if (!expectOutcome(String(this), outcome, expected)) return;
    m.cpuValid(src.va, len);
    m.cpuWrite(dst, m.bytes.slice(src.va, src.va + len));
  }
  toString(): string {
    return `copy@${this.thread}(#${this.pick} -> #${this.to}, ${this.at.toFixed(2)}, ${this.size.toFixed(2)})`;
  }
}

class AtomicAdd extends RegionCommand {
  constructor(
    readonly thread: 0 | 1,
    pick: number,
    readonly at: number,
    readonly value: number,
  ) {
    super(pick);
  }
  async run(m: SpaceModel, r: RealSystem): Promise<void> {
    const { va } = span(this.region(m), this.at, 0, 4);
    const outcome = await within(
      String(this),
      remote<number>(workerOf(r, this.thread).atomicAdd(va, this.value)),
    );
    if (!expectOutcome(String(this), outcome, m.refusal(va, 4, 'write')) || !outcome.ok) return;
    m.cpuValid(va, 4);
    const old = new DataView(m.bytes.buffer).getUint32(va, true);
    if (outcome.value !== old)
      throw new Error(`${String(this)}: old value ${outcome.value}, the model says ${old}`);
    const next = new Uint8Array(4);
    new DataView(next.buffer).setUint32(0, (old + this.value) >>> 0, true);
    m.cpuWrite(va, next);
  }
  toString(): string {
    return `atomicAdd@${this.thread}(#${this.pick}, ${this.at.toFixed(2)}, ${this.value})`;
  }
}

/**
 * Scattered word stores on a worker, one `setU32` each at random places of a
 * region: many 16-byte stale blocks per page, marked while other threads
 * and kernels work. The stores before the first refused one land.
 */
class ScatteredSetU32 extends RegionCommand {
  constructor(
    readonly thread: 0 | 1,
    pick: number,
    readonly spots: readonly number[],
    readonly seed: number,
  ) {
    super(pick);
  }
  async run(m: SpaceModel, r: RealSystem): Promise<void> {
    const region = this.region(m);
    const vas = Uint32Array.from(this.spots, (at) => span(region, at, 0, 4).va);
    const values = Uint32Array.from(
      vas,
      (va, i) => (Math.imul(this.seed + i, 0x9e3779b1) ^ va) >>> 0,
    );
    const refused = Array.from(vas).findIndex((va) => m.refusal(va, 4, 'write'));
    const outcome = await within(
      String(this),
      remote<undefined>(workerOf(r, this.thread).setWords(vas, values)),
    );
    const expected = refused < 0 ? undefined : m.refusal(vas[refused]!, 4, 'write');
    expectOutcome(String(this), outcome, expected);
    const landed = refused < 0 ? vas.length : refused;
    for (let i = 0; i < landed; i++) {
      const bytes = new Uint8Array(4);
      new DataView(bytes.buffer).setUint32(0, values[i]!, true);
      m.cpuWrite(vas[i]!, bytes);
    }
  }
  toString(): string {
    return `setU32s@${this.thread}(#${this.pick}, ${this.spots.length} spots, ${this.seed})`;
  }
}

/** A main-thread sync store: it may not block, so a page the GPU holds dirty refuses it. */
class MainSetU32 extends RegionCommand {
  constructor(
    pick: number,
    readonly at: number,
    readonly value: number,
  ) {
    super(pick);
  }
  run(m: SpaceModel, r: RealSystem): Promise<void> {
    const { va } = span(this.region(m), this.at, 0, 4);
    const dirty = r.space.snapshot(va, 4)[0]?.dirty === 'gpu';
    const outcome = outcomeOf(() => r.space.setU32(va, this.value));
    const expected = m.refusal(va, 4, 'write');
    const allowed = dirty && !expected ? [{ code: 'WOULD_BLOCK', reason: 'may-not-block' }] : [];
    if (expectOutcome(String(this), outcome, expected, allowed)) {
      const bytes = new Uint8Array(4);
      new DataView(bytes.buffer).setUint32(0, this.value, true);
      m.cpuWrite(va, bytes);
    } else if (dirty && !outcome.ok && outcome.reason !== 'may-not-block' && !expected) {
      throw new Error(`${String(this)}: unexpected ${outcome.reason}`);
    }
    return Promise.resolve();
  }
  toString(): string {
    return `setU32@main(#${this.pick}, ${this.at.toFixed(2)}, ${this.value})`;
  }
}

export {
  Alloc,
  AtomicAdd,
  Copy,
  CpuRead,
  CpuWrite,
  Discard,
  Fill,
  Free,
  MainSetU32,
  Protect,
  ScatteredSetU32,
};
export { budgetOutcome, expectBytes, expectOutcome, pattern, RegionCommand, span };
export type { Command, Thread };
