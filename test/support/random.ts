/**
 * Seeded randomness for tests. Each random test prints its seed; set
 * VITE_WEBHMM_SEED=<seed> to replay it (Node and browser projects alike).
 */
export interface Random {
  readonly seed: number;
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [0, n). */
  int(n: number): number;
  /** Fills `bytes` with random bytes. */
  fill<Bytes extends Uint8Array>(bytes: Bytes): Bytes;
}

/** mulberry32: small, fast, good enough for test inputs. */
export function seededRandom(seed: number): Random {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    seed,
    next,
    int: (n) => Math.floor(next() * n),
    fill<Bytes extends Uint8Array>(bytes: Bytes): Bytes {
      for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(next() * 256);
      return bytes;
    },
  };
}

/** A Random seeded from VITE_WEBHMM_SEED or at random; logs the seed under `label`. */
export function testRandom(label: string): Random {
  const fixed = (import.meta.env as Record<string, string | undefined>)['VITE_WEBHMM_SEED'];
  const seed =
    fixed !== undefined && fixed !== '' ? Number(fixed) >>> 0 : Math.floor(Math.random() * 2 ** 32);
  console.log(`[seed] ${label}: ${seed} (replay with VITE_WEBHMM_SEED=${seed})`);
  return seededRandom(seed);
}

/** The index of the first byte where `a` and `b` differ (or their lengths do), -1 if equal. Fast on large arrays, unlike a deep equality. */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}
