/**
 * Random commands for the model-based suite, and the fixed seeds CI runs.
 * A step destroys the device with probability 2/257, so about a quarter of
 * sequences of 20-60 steps lose their device at least once.
 */
import fc from 'fast-check';
import {
  Alloc,
  AtomicAdd,
  Copy,
  CpuRead,
  CpuWrite,
  Discard,
  Fill,
  Free,
  MainSetU32,
  ScatteredSetU32,
  Protect,
  type Command,
  type Thread,
} from './commands.ts';
import {
  Advise,
  DestroyDevice,
  GpuRead,
  GpuWrite,
  KernelAdd,
  Migrate,
  Prefetch,
  Reattach,
  Sync,
} from './gpu-commands.ts';
import type { DeviceSource } from './real-system.ts';

const pick = fc.nat(1000);
const fraction = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });
const thread = fc.constantFrom<Thread>(0, 1, 'main');
const worker = fc.constantFrom<0 | 1>(0, 1);
const protection = fc.constantFrom('rw', 'rw', 'rw', 'r', 'none' as const);
const readMostly = fc.constantFrom(undefined, true, true, false);
const preferred = fc.constantFrom(undefined, 'cpu', 'gpu', 'gpu', 'none' as const);

export function commandArbitrary(devices: DeviceSource): fc.Arbitrary<Command> {
  return fc.oneof(
    {
      arbitrary: fc
        .tuple(fc.integer({ min: 1, max: 4 }), protection)
        .map(([p, prot]) => new Alloc(p, prot)),
      weight: 30,
    },
    {
      arbitrary: fc
        .tuple(pick, fraction, fc.integer({ min: 1, max: 4 }))
        .map(([r, f, c]) => new Free(r, f, c)),
      weight: 10,
    },
    { arbitrary: fc.tuple(pick, protection).map(([r, p]) => new Protect(r, p)), weight: 10 },
    {
      arbitrary: fc
        .tuple(thread, pick, fraction, fraction, fc.nat(), fc.boolean())
        .map(
          ([t, r, a, s, seed, scope]) =>
            new CpuWrite(t, r, a, s, seed, scope && t === 'main' ? true : scope),
        ),
      weight: 40,
    },
    {
      arbitrary: fc
        .tuple(thread, pick, fraction, fraction)
        .map(([t, r, a, s]) => new CpuRead(t, r, a, s)),
      weight: 30,
    },
    {
      arbitrary: fc
        .tuple(worker, pick, fraction, fraction, fc.nat(255))
        .map(([t, r, a, s, b]) => new Fill(t, r, a, s, b)),
      weight: 10,
    },
    {
      arbitrary: fc
        .tuple(worker, pick, fraction, fraction)
        .map(([t, r, a, s]) => new Discard(t, r, a, s)),
      weight: 8,
    },
    {
      arbitrary: fc
        .tuple(worker, pick, pick, fraction, fraction)
        .map(([t, r, d, a, s]) => new Copy(t, r, d, a, s)),
      weight: 10,
    },
    {
      arbitrary: fc
        .tuple(worker, pick, fraction, fc.nat())
        .map(([t, r, a, v]) => new AtomicAdd(t, r, a, v)),
      weight: 15,
    },
    {
      arbitrary: fc.tuple(pick, fraction, fc.nat()).map(([r, a, v]) => new MainSetU32(r, a, v)),
      weight: 10,
    },
    {
      arbitrary: fc
        .tuple(worker, pick, fc.array(fraction, { minLength: 1, maxLength: 48 }), fc.nat())
        .map(([t, r, spots, seed]) => new ScatteredSetU32(t, r, spots, seed)),
      weight: 15,
    },
    {
      arbitrary: fc
        .tuple(pick, fc.constantFrom<'gpu' | 'cpu'>('gpu', 'cpu'))
        .map(([r, to]) => new Migrate(r, to)),
      weight: 20,
    },
    {
      arbitrary: fc.tuple(pick, fraction, fraction).map(([r, a, s]) => new GpuRead(r, a, s)),
      weight: 15,
    },
    {
      arbitrary: fc
        .tuple(
          pick,
          fc.constantFrom<'gpu' | 'cpu'>('gpu', 'cpu'),
          fc.constantFrom('nothing', 'gpu.read', 'read', 'write'),
          thread,
          worker,
          fraction,
          fraction,
          fc.nat(),
        )
        .map(([r, to, kind, t, w, a, s, seed]) => {
          // The command meanwhile addresses the same region (the same pick).
          const meanwhile =
            kind === 'gpu.read'
              ? new GpuRead(r, a, s)
              : kind === 'read'
                ? new CpuRead(t, r, a, s)
                : kind === 'write'
                  ? new CpuWrite(w, r, a, s, seed, false)
                  : undefined;
          return new Prefetch(r, to, meanwhile);
        }),
      weight: 15,
    },
    {
      arbitrary: fc
        .tuple(pick, fraction, fraction, fc.nat())
        .map(([r, a, s, seed]) => new GpuWrite(r, a, s, seed)),
      weight: 15,
    },
    {
      arbitrary: fc
        .tuple(
          pick,
          fc.nat(1000),
          fc.constantFrom<'uses' | 'named' | 'fault'>('uses', 'named', 'fault'),
          fc.boolean(),
        )
        .map(([r, k, mode, atomic]) => new KernelAdd(r, k, mode, atomic)),
      weight: 30,
    },
    {
      arbitrary: fc.tuple(pick, fraction, fraction, readMostly, preferred).map(
        ([r, a, s, mostly, where]) =>
          new Advise(r, a, s, {
            ...(mostly === undefined ? {} : { readMostly: mostly }),
            ...(where === undefined ? {} : { preferred: where }),
          }),
      ),
      weight: 12,
    },
    { arbitrary: fc.constant(new Sync()), weight: 5 },
    { arbitrary: fc.constant(new Reattach()), weight: 5 },
    { arbitrary: fc.constant(new DestroyDevice(devices)), weight: 2 },
  );
}

/** Whether the suite runs CI's fixed seeds (no VITE_WEBHMM_MODEL_SEED). */
export function fixedModelSeeds(): boolean {
  const seed = (import.meta.env as Record<string, string | undefined>)['VITE_WEBHMM_MODEL_SEED'];
  return seed === undefined || seed === '';
}

/**
 * [seed, sequences] for CI: fixed, so a run is reproducible; VITE_WEBHMM_MODEL_SEED
 * and VITE_WEBHMM_MODEL_RUNS replace them (npm run soak draws fresh seeds).
 */
export function modelSeeds(): [number, number][] {
  const env = import.meta.env as Record<string, string | undefined>;
  const seed = env['VITE_WEBHMM_MODEL_SEED'];
  if (!fixedModelSeeds()) return [[Number(seed), Number(env['VITE_WEBHMM_MODEL_RUNS'] ?? 50)]];
  return [
    [0x5eed_0001, 50],
    [0x5eed_0002, 50],
    [0x5eed_0003, 50],
    [0x5eed_0004, 50],
  ];
}
