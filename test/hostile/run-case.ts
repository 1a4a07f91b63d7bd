// Runs a hostile-input case and checks it: the typed error the case names,
// and a space that is exactly as it was (or, for detach during a call, a call
// that ended and a space that lost nothing).
import { expect } from 'vitest';
import {
  AccessError,
  DeviceLostError,
  InvalidArgumentError,
  OutOfMemoryError,
  WouldBlockError,
  type ErrorCode,
} from '../../src/errors.ts';
import { GpuMirror } from '../../src/mirror/gpu-mirror.ts';
import { Lease } from '../../src/space/lease.ts';
import { Threads } from '../../src/threads/threads.ts';
import {
  RW,
  RW_LEN,
  fingerprint,
  hash,
  isEnds,
  memoryCopy,
  type Case,
  type HostileContext,
  type Refusal,
} from './context.ts';

const CLASSES: Record<ErrorCode, abstract new (...args: never[]) => Error> = {
  ACCESS: AccessError,
  WOULD_BLOCK: WouldBlockError,
  OUT_OF_MEMORY: OutOfMemoryError,
  DEVICE_LOST: DeviceLostError,
  INVALID_ARGUMENT: InvalidArgumentError,
};

type Outcome =
  { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown };

/** Runs `run`, sync throw or rejection alike. `run` is called before this returns (no await before it). */
async function outcome(run: () => unknown): Promise<Outcome> {
  try {
    return { ok: true, value: await run() };
  } catch (error) {
    return { ok: false, error };
  }
}

type ErrorFields = Partial<Record<'class' | 'code' | 'reason' | 'address' | 'argument', unknown>>;

/** One line naming an error: class, code, reason, and the argument and address where the case asks. */
function line(fields: ErrorFields, expect: Refusal): string {
  const parts = [fields.class, fields.code, fields.reason].map((part) => describe(part));
  if (expect.argument !== undefined) parts.push(`argument ${describe(fields.argument)}`);
  if (expect.address !== undefined) {
    const { address } = fields;
    parts.push(
      `address ${typeof address === 'number' ? `0x${address.toString(16)}` : describe(address)}`,
    );
  }
  return parts.join(' ');
}

/** What the case expects, as `seen` reports it. */
function wanted(expect: Refusal): string {
  return line({ ...expect, class: CLASSES[expect.code].name }, expect);
}

/** What the call did: the error's line, or what it resolved with or threw. */
function seen(result: Outcome, expect: Refusal): string {
  if (result.ok) return `resolved with ${describe(result.value)}`;
  const { error } = result;
  if (!(error instanceof Error)) return `threw ${describe(error)}`;
  const known = Object.values(CLASSES).find((type) => error instanceof type);
  if (!known) return `${error.name}: ${error.message}`;
  return line({ ...(error as ErrorFields), class: known.name }, expect);
}

function describe(value: unknown): string {
  if (value instanceof Uint8Array) return `Uint8Array(${value.length})`;
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'object' && value !== null) return value.constructor.name;
  return String(value);
}

/** Undoes what a call that should have failed made: a lease, a mirror, threads, a subscription. */
async function tidy(value: unknown): Promise<void> {
  if (value instanceof Lease) value.release();
  else if (value instanceof GpuMirror) await value.detach();
  else if (value instanceof Threads) await value.terminate();
  else if (typeof value === 'function') (value as () => void)();
}

async function undo(ctx: HostileContext): Promise<void> {
  for (const step of ctx.cleanups.splice(0).reverse()) await step();
}

/**
 * A refusal case: prepare, fingerprint, call, check the error, fingerprint
 * again and compare (with `observe`'s extra state: frames in use, GPU buffers).
 */
export async function checkRefusal(
  c: Case,
  ctx: HostileContext,
  observe: () => Record<string, unknown> = () => ({}),
): Promise<void> {
  if (isEnds(c.expect)) throw new Error(`${c.call} ${c.input}: a detach-during case`);
  try {
    await c.prepare?.(ctx);
    const before = { ...fingerprint(ctx.space), ...observe() };
    const result = await outcome(() => c.run(ctx));
    if (result.ok) await tidy(result.value);
    const got = seen(result, c.expect);
    const want = wanted(c.expect);
    // Soft: a call that fails the wrong way is still checked for what it changed.
    expect.soft(got, `wanted "${want}", got "${got}"`).toBe(want);
    expect({ ...fingerprint(ctx.space), ...observe() }, 'the space after the call').toEqual(before);
  } finally {
    await undo(ctx);
  }
}

/**
 * A detach-during case: start the call, detach at once. The call completes
 * or rejects with DeviceLostError 'detached'; detach resolves; CPU memory
 * holds the bytes from before with what the call landed; pages, holds and
 * snapshot are as before the case (no frames are left: every page is back
 * on the CPU), and the 'rw' pages read back. Returns what the call did.
 */
export async function checkEnds(c: Case, ctx: HostileContext, gpu: GpuMirror): Promise<string> {
  if (!isEnds(c.expect)) throw new Error(`${c.call} ${c.input}: not a detach-during case`);
  const base = fingerprint(ctx.space);
  const bytes = memoryCopy(ctx.space);
  try {
    await c.prepare?.(ctx);
    const call = outcome(() => c.run(ctx));
    const detach = outcome(() => gpu.detach());
    const [result, detached] = await Promise.all([call, detach]);
    expect(detached, 'detach()').toEqual({ ok: true, value: undefined });
    if (!result.ok) {
      const lost: Refusal = { code: c.expect.code, reason: c.expect.reason };
      const got = seen(result, lost);
      expect(got, `the call detach() ended: got "${got}"`).toBe(wanted(lost));
    }
    for (const landing of c.lands ?? []) {
      if (landing.when === 'always' || result.ok) bytes.set(landing.data, landing.va);
    }
    const after = fingerprint(ctx.space);
    expect(after.bytes, 'CPU memory: nothing lost').toBe(hash(bytes));
    const pages = (f: typeof base) => ({
      pte: f.pte,
      holds: f.holds,
      gen: f.gen,
      snapshot: f.snapshot,
    });
    expect(pages(after), 'pages after detach').toEqual(pages(base));
    expect(await ctx.space.readAsync(RW, RW_LEN), 'the rw pages, read back').toEqual(
      bytes.slice(RW, RW + RW_LEN),
    );
    return result.ok ? 'completed' : `rejected: ${String(result.error)}`;
  } finally {
    await undo(ctx);
  }
}
