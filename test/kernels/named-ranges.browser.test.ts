// Named ranges on real WebGPU: indexed access from a range's start, bounds,
// dirty tracking, atomics exact against the CPU, and the run's argument checks.
import { afterEach, describe, expect, it } from 'vitest';
import { AccessError, InvalidArgumentError } from '../../src/errors.ts';
import type { GpuMirror } from '../../src/mirror/gpu-mirror.ts';
import type { AddressSpace } from '../../src/space/address-space.ts';
import { testMirror } from '../support/mirror.ts';
import { testRandom } from '../support/random.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const PAGE = 4 * KiB;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function setup(size = 4 * MiB): Promise<{ space: AddressSpace; gpu: GpuMirror }> {
  return testMirror({ size, pageSize: PAGE }, { copy: 'buffer' }, cleanups);
}

const SAXPY = /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x >= z_len()) { return; }
  z_store_f32(id.x, hmm_params.a * x_load_f32(id.x) + y_load_f32(id.x));
}`;

const pageStates = async (gpu: GpuMirror, va: number, len: number) =>
  (await gpu.snapshot(va, len)).map((page) => `${page.state}/${page.dirty}`);

describe('named ranges', () => {
  it('index words from each range start, across pages and from mid-page starts', async () => {
    const { space, gpu } = await setup();
    const n = 3000; // 11.7 KiB: four pages from a mid-page start
    const base = space.alloc(64 * KiB);
    const [x, y, z] = [base + 100 * 4, base + 20 * KiB + 4, base + 40 * KiB + 2048];
    space.write(
      x,
      Float32Array.from({ length: n }, (_, i) => i),
    );
    space.write(
      y,
      Float32Array.from({ length: n }, (_, i) => i % 7),
    );
    const kernel = gpu.kernel({
      code: SAXPY,
      params: { a: 'f32' },
      ranges: { x: 'read', y: 'read', z: 'write' },
    });
    const result = await kernel.run({
      workgroups: Math.ceil(n / 64),
      params: { a: 3 },
      uses: [
        { name: 'z', va: z, len: n * 4 },
        { name: 'x', va: x, len: n * 4 },
        { name: 'y', va: y, len: n * 4 },
      ],
    });
    const zPages = Math.floor((z + n * 4 - 1) / PAGE) - Math.floor(z / PAGE) + 1;
    expect(result).toMatchObject({ replays: 0, pagesWritten: zPages });
    const out = new Float32Array((await space.readAsync(z, n * 4)).buffer);
    expect(out.findIndex((v, i) => v !== 3 * i + (i % 7))).toBe(-1);
    // The words around z are untouched.
    const around = new Uint32Array((await space.readAsync(z - 4, n * 4 + 8)).buffer);
    expect([around[0], around[n + 1]]).toEqual([0, 0]);
    kernel.destroy();
  });

  it('reach ranges alike whether their pages sit in consecutive frames or in scattered ones', async () => {
    const { space, gpu } = await setup();
    const n = 5 * (PAGE / 4) - 7; // five pages from a mid-page start
    const [x, y] = [space.alloc(6 * PAGE) + 28, space.alloc(6 * PAGE) + 12];
    space.write(
      x,
      Float32Array.from({ length: n }, (_, i) => i),
    );
    space.write(
      y,
      Float32Array.from({ length: n }, (_, i) => 2 * i),
    );
    // x's pages take frames in reverse order; y's in order (one migrate).
    for (let page = 5; page >= 0; page--) await gpu.migrate(x - 28 + page * PAGE, PAGE, 'gpu');
    await gpu.migrate(y - 12, 6 * PAGE, 'gpu');
    const kernel = gpu.kernel({
      code: SAXPY,
      params: { a: 'f32' },
      ranges: { x: 'read', y: 'read', z: 'readwrite' },
    });
    for (const [z, a] of [
      [x, 2], // z over x's scattered frames: z = 2x + y, in place
      [y, 3], // z over y's consecutive frames: z = 3x + y
    ] as const) {
      const before = new Float32Array((await space.readAsync(z, n * 4)).buffer);
      const xs = new Float32Array((await space.readAsync(x, n * 4)).buffer);
      const ys = new Float32Array((await space.readAsync(y, n * 4)).buffer);
      await kernel.run({
        workgroups: Math.ceil(n / 64),
        params: { a },
        uses: [
          { name: 'x', va: x, len: n * 4 },
          { name: 'y', va: y, len: n * 4 },
          { name: 'z', va: z, len: n * 4 },
        ],
      });
      const out = new Float32Array((await space.readAsync(z, n * 4)).buffer);
      expect(before.length).toBe(n);
      expect(out.findIndex((v, i) => v !== a * xs[i]! + ys[i]!)).toBe(-1);
    }
    kernel.destroy();
  });

  it('run a kernel that never reaches some bound ranges, or reaches them only through _len', async () => {
    const { space, gpu } = await setup();
    const [a, b] = [space.alloc(2 * PAGE), space.alloc(2 * PAGE)];
    for (const [code, written] of [
      ['a_store_u32(0u, 7u);', 1], // b bound, never used
      ['a_store_u32(0u, b_len());', 1], // b used only for its length: no word of it reached
      ['if (b_len() == 0u) { return; }', 0], // no word of either range reached
    ] as const) {
      const kernel = gpu.kernel({
        code: `@compute @workgroup_size(1) fn main() { ${code} }`,
        ranges: { a: 'write', b: 'read' },
      });
      await expect(
        kernel.run({
          workgroups: 1,
          uses: [
            { name: 'a', va: a, len: 2 * PAGE },
            { name: 'b', va: b, len: 2 * PAGE },
          ],
        }),
      ).resolves.toMatchObject({ pagesWritten: written });
      kernel.destroy();
    }
    expect(await space.readAsync(a, 4)).toEqual(new Uint8Array([0, 8, 0, 0])); // 2048 words
  });

  it('marks dirty only the pages stored to, and leaves the others of a writable range clean', async () => {
    const { space, gpu } = await setup();
    const va = space.alloc(8 * PAGE);
    const kernel = gpu.kernel({
      code: /* wgsl */ `
        @compute @workgroup_size(1)
        fn main() {
          let seen = y_load_u32(hmm_params.i);
          y_store_u32(hmm_params.i, seen + 5u);
        }`,
      params: { i: 'u32' },
      ranges: { y: 'readwrite' },
    });
    space.setU32(va + 3 * PAGE + 8, 37);
    const i = (3 * PAGE + 8) / 4;
    const result = await kernel.run({
      workgroups: 1,
      params: { i },
      uses: [{ name: 'y', va, len: 8 * PAGE }],
    });
    expect(result.pagesWritten).toBe(1);
    const states = await pageStates(gpu, va, 8 * PAGE);
    expect(states.filter((s) => s === 'gpu/gpu')).toHaveLength(1);
    expect(states[3]).toBe('gpu/gpu');
    expect(new Uint32Array((await space.readAsync(va + 3 * PAGE + 8, 4)).buffer)[0]).toBe(42);
    kernel.destroy();
  });

  it('suppresses out-of-range loads and stores and fails the run naming the range, index and address', async () => {
    const { space, gpu } = await setup();
    const va = space.alloc(4 * PAGE);
    space.write(
      va,
      Uint32Array.from({ length: (4 * PAGE) / 4 }, (_, i) => i + 1),
    );
    const kernel = gpu.kernel({
      code: /* wgsl */ `
        @compute @workgroup_size(64)
        fn main(@builtin(global_invocation_id) id: vec3u) {
          // Each invocation copies src[i] to dst[i]; 64 invocations, ranges of 40 words.
          let v = src_load_u32(id.x);
          let flagged = hmm_faulted();
          dst_store_u32(id.x, select(v, 0xdeadu, flagged));
        }`,
      ranges: { src: 'read', dst: 'write' },
    });
    const dst = va + 2 * PAGE;
    const run = kernel.run({
      workgroups: 1,
      uses: [
        { name: 'src', va, len: 40 * 4 },
        { name: 'dst', va: dst, len: 40 * 4 },
      ],
    });
    const error = await run.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(AccessError);
    const access = error as AccessError;
    expect(access.reason).toBe('out-of-range');
    expect(access.message).toContain("'src' at index 40");
    expect(access.address).toBe(va + 40 * 4);
    expect(access.touched).toEqual([dst]);
    // In-range stores landed; the words past dst's end kept their bytes.
    const out = new Uint32Array((await space.readAsync(dst, 64 * 4)).buffer);
    expect(Array.from(out.subarray(0, 40))).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect(Array.from(out.subarray(40))).toEqual(
      Array.from({ length: 24 }, (_, i) => (2 * PAGE) / 4 + 40 + i + 1),
    );
    kernel.destroy();
  });

  it('adds u32 atomically, exact against the sums the CPU computes, on top of CPU atomics', async () => {
    const { space, gpu } = await setup();
    const random = testRandom('named atomics');
    const n = 50_000;
    const bins = 97;
    const keys = space.alloc(n * 4);
    const histogram = space.alloc(bins * 4);
    const data = Uint32Array.from({ length: n }, () => random.int(bins));
    space.write(keys, data);
    const expected = new Array<number>(bins).fill(0);
    for (let b = 0; b < bins; b++) {
      space.atomicAddU32(histogram + b * 4, b);
      expected[b] = b;
    }
    for (const key of data) expected[key] = (expected[key] ?? 0) + 1;
    const kernel = gpu.kernel({
      code: /* wgsl */ `
        @compute @workgroup_size(64)
        fn main(@builtin(global_invocation_id) id: vec3u) {
          if (id.x >= keys_len()) { return; }
          hist_atomic_add_u32(keys_load_u32(id.x), 1u);
        }`,
      ranges: { keys: 'read', hist: 'readwrite' },
    });
    await kernel.run({
      workgroups: Math.ceil(n / 64),
      uses: [
        { name: 'keys', va: keys, len: n * 4 },
        { name: 'hist', va: histogram, len: bins * 4 },
      ],
    });
    const out = new Uint32Array((await space.readAsync(histogram, bins * 4)).buffer);
    expect(Array.from(out)).toEqual(expected);
    kernel.destroy();
  });

  it('adds f32 atomically, exact for integer values below 2^24', async () => {
    const { space, gpu } = await setup();
    const n = 20_000;
    const sums = space.alloc(16);
    const kernel = gpu.kernel({
      code: /* wgsl */ `
        @compute @workgroup_size(64)
        fn main(@builtin(global_invocation_id) id: vec3u) {
          if (id.x >= hmm_params.n) { return; }
          let old = sum_atomic_add_f32(id.x % 4u, f32(id.x % 100u));
          if (old < 0.0) { sum_store_f32(0u, -1.0); }
        }`,
      params: { n: 'u32' },
      ranges: { sum: 'readwrite' },
    });
    await kernel.run({
      workgroups: Math.ceil(n / 64),
      params: { n },
      uses: [{ name: 'sum', va: sums, len: 16 }],
    });
    const expected = [0, 0, 0, 0];
    for (let i = 0; i < n; i++) expected[i % 4] = (expected[i % 4] ?? 0) + (i % 100);
    expect(expected.every((v) => v < 2 ** 24)).toBe(true);
    const out = new Float32Array((await space.readAsync(sums, 16)).buffer);
    expect(Array.from(out)).toEqual(expected);
    kernel.destroy();
  });

  it('reads a plain use with hmm_load beside named ranges', async () => {
    const { space, gpu } = await setup();
    const table = space.alloc(PAGE);
    const out = space.alloc(PAGE);
    space.setU32(table + 12, 1234);
    const kernel = gpu.kernel({
      code: /* wgsl */ `
        @compute @workgroup_size(1)
        fn main() { out_store_u32(0u, hmm_load_u32(hmm_params.table + 12u) + out_len()); }`,
      params: { table: 'u32' },
      ranges: { out: 'write' },
    });
    await kernel.run({
      workgroups: 1,
      params: { table },
      uses: [
        { va: table, len: 16, access: 'read' },
        { name: 'out', va: out, len: 8 },
      ],
    });
    expect(new Uint32Array((await space.readAsync(out, 4)).buffer)[0]).toBe(1236);
    kernel.destroy();
  });

  it('refuses missing, extra, doubled, misaligned or access-carrying bindings, holding nothing', async () => {
    const { space, gpu } = await setup();
    const va = space.alloc(PAGE);
    const kernel = gpu.kernel({
      code: /* wgsl */ `
        @compute @workgroup_size(1)
        fn main() { b_store_u32(0u, a_load_u32(0u)); }`,
      ranges: { a: 'read', b: 'readwrite' },
    });
    const refused = async (uses: unknown, argument: string, reason: string) => {
      const error = await kernel.run({ workgroups: 1, uses: uses as [] }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect(error).toMatchObject({ argument, reason });
    };
    const a = { name: 'a', va, len: 4 };
    const b = { name: 'b', va: va + 4, len: 4 };
    await refused([a], 'uses', 'bad-value');
    await refused([a, b, { name: 'c', va, len: 4 }], 'uses[2].name', 'bad-value');
    await refused([a, b, a], 'uses[2].name', 'bad-value');
    await refused([a, { ...b, va: va + 2 }], 'uses[1].va', 'misaligned');
    await refused([a, { ...b, len: 6 }], 'uses[1].len', 'misaligned');
    await refused([a, { ...b, access: 'read' }], 'uses[1].access', 'bad-value');
    await refused(undefined, 'uses', 'bad-value');
    // Nothing was held or moved: a CPU write goes through, and a good run works.
    space.setU32(va, 9);
    await kernel.run({ workgroups: 1, uses: [a, b] });
    expect(new Uint32Array((await space.readAsync(va + 4, 4)).buffer)[0]).toBe(9);
    expect(() => gpu.kernel({ code: 'x', ranges: { hmm_x: 'read' } })).toThrow(
      InvalidArgumentError,
    );
    expect(() => gpu.kernel({ code: 'x', ranges: { x: 'rw' as 'read' } })).toThrow(
      InvalidArgumentError,
    );
    kernel.destroy();
  });

  it('reads each field of a named use once: a getter cannot widen the range after the check (found in review)', async () => {
    const { space, gpu } = await setup();
    const base = space.alloc(2 * PAGE);
    const victim = base + PAGE;
    await gpu.write(victim, new Uint32Array(PAGE / 4).fill(5)); // GPU-owned, next to the range
    const kernel = gpu.kernel({
      code: /* wgsl */ `
        @compute @workgroup_size(64)
        fn main(@builtin(global_invocation_id) id: vec3u) {
          if (id.x >= r_len()) { return; }
          r_store_u32(id.x, r_load_u32(id.x) + 1u);
        }`,
      ranges: { r: 'readwrite' },
    });
    let reads = 0;
    const hostile = {
      name: 'r',
      va: base,
      get len() {
        reads++;
        return reads === 1 ? 256 : 2 * PAGE;
      },
    };
    await kernel.run({ workgroups: (2 * PAGE) / 4 / 64, uses: [hostile] });
    expect(reads).toBe(1);
    const after = new Uint32Array((await gpu.read(victim, PAGE)).buffer);
    expect(after.every((word) => word === 5)).toBe(true);
    kernel.destroy();
  });
});
