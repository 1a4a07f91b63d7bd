// The entry-point wrapper on real WebGPU: what an invocation records is
// flushed however its entry point returns, entry points take their builtins
// as the user wrote them, and compile errors keep the user's line numbers.
import { afterEach, describe, expect, it } from 'vitest';
import { AccessError, InvalidArgumentError } from '../../src/errors.ts';
import type { GpuMirror } from '../../src/mirror/gpu-mirror.ts';
import type { AddressSpace } from '../../src/space/address-space.ts';
import { testMirror } from '../support/mirror.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function setup(): Promise<{ space: AddressSpace; gpu: GpuMirror }> {
  return testMirror({ size: 4 * MiB, pageSize: 4 * KiB }, { copy: 'buffer' }, cleanups);
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    (value) => {
      throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
    },
    (error: unknown) => error,
  );
}

/** What compiling `code` says: 'compiled', or the error's message. */
const compileMessage = (gpu: GpuMirror) => (code: string) =>
  gpu.kernel({ code }).ready.then(
    () => 'compiled',
    (error: unknown) => (error as Error).message,
  );

describe('the entry-point wrapper', () => {
  it('flushes an access error made before an early return, from every invocation', async () => {
    const { space, gpu } = await setup();
    const data = space.alloc(4 * KiB);
    const outside = space.alloc(4 * KiB);
    const kernel = gpu.kernel({
      code: /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  hmm_store_u32(hmm_params.data + id.x * 4u, id.x);
  if (id.x != 37u) { return; }
  hmm_store_u32(hmm_params.outside + 8u, 1u);
  return;
}`,
      params: { data: 'u32', outside: 'u32' },
    });
    const error = await rejection(
      kernel.run({
        workgroups: 1,
        params: { data, outside },
        uses: [{ va: data, len: 4 * KiB, access: 'write' }],
      }),
    );
    expect(error).toBeInstanceOf(AccessError);
    expect(error).toMatchObject({ reason: 'undeclared', address: outside + 8 });
    // The stores that were allowed landed, and their page is dirty.
    const landed = new Uint32Array((await space.readAsync(data, 256)).buffer);
    expect([...landed]).toEqual(Array.from({ length: 64 }, (_, i) => i));
  });

  it('passes builtins through a struct parameter and a second entry point is left alone', async () => {
    const { space, gpu } = await setup();
    const out = space.alloc(4 * KiB);
    const kernel = gpu.kernel({
      code: /* wgsl */ `
struct Ids {
  @builtin(local_invocation_index) lane: u32,
  @builtin(workgroup_id) group: vec3u,
}
@compute @workgroup_size(1) fn other() {}
@compute @workgroup_size(16)
fn fill(ids: Ids) {
  hmm_store_u32(hmm_params.out + (ids.group.x * 16u + ids.lane) * 4u, ids.group.x * 100u + ids.lane);
}`,
      entryPoint: 'fill',
      params: { out: 'u32' },
    });
    await kernel.run({
      workgroups: 4,
      params: { out },
      uses: [{ va: out, len: 256, access: 'write' }],
    });
    const values = new Uint32Array((await space.readAsync(out, 256)).buffer);
    expect([...values]).toEqual(Array.from({ length: 64 }, (_, i) => (i >> 4) * 100 + (i & 15)));
  });

  it("reports a compile error at the user's line, attributes spread over lines", async () => {
    const { gpu } = await setup();
    const kernel = gpu.kernel({
      code: '@compute\n@workgroup_size(1)\nfn main(\n  @builtin(global_invocation_id) id: vec3u,\n) {\n  let x: u32 = id;\n}',
    });
    const error = await rejection(kernel.ready);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect(error).toMatchObject({ reason: 'wgsl' });
    expect((error as Error).message).toMatch(/line 6:/);
    expect((error as Error).message).not.toMatch(/prelude/);
  });

  it("reports mistakes in the entry point's attributes and parameters at the user's lines, and keeps @diagnostic on the body", async () => {
    const { gpu } = await setup();
    const message = compileMessage(gpu);
    expect(await message('\n@compute @workgroup_size(WG)\nfn main() {}')).toMatch(/\(line 2:26: /);
    expect(await message('\n@compute\nfn main() {}')).toMatch(/\(line 3:/);
    expect(
      await message(
        '\n@compute @workgroup_size(1)\nfn main(@builtin(global_invocation_id) id: u32) {}',
      ),
    ).toMatch(/\(line 3:/);
    const unicode =
      '@compute @workgroup_size(1)\nfn main(@builtin(workgroup_id) idé: vec3u) { _ = idé; }';
    expect(await message(unicode)).toBe('compiled');
    const unreachable =
      '\n@diagnostic(error, chromium.unreachable_code) @compute @workgroup_size(1)\nfn main() {\n  return;\n  _ = 1u;\n}';
    expect(await message(unreachable)).toMatch(/line 5:\d+: .*unreachable/);
  });

  it("gives columns within the user's line for errors on the entry point's brace line", async () => {
    const { gpu } = await setup();
    const position = async (code: string) => {
      const message = await gpu.kernel({ code }).ready.then(
        () => 'compiled',
        (error: unknown) => (error as Error).message,
      );
      const found = [...message.matchAll(/line (\d+):(\d+)/g)];
      return found.map(([, line, column]) => {
        const text = code.split('\n')[Number(line) - 1] ?? '';
        return { message, column: Number(column), inside: Number(column) <= text.length };
      });
    };
    const sameLine = await position('@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }');
    expect(sameLine.map((p) => p.inside)).toEqual([true]);
    expect(sameLine[0]?.column).toBe(54); // the 1.5
    const header = await position(
      '@compute @workgroup_size(1)\nfn main(@builtin(global_invocation_id) id: vec3uu) {\n}',
    );
    expect(header.length).toBeGreaterThan(0);
    expect(header.every((p) => p.inside)).toBe(true);
  });

  it('reports an error the wrapper repeats once, and keeps lines past multi-line attributes and other line breaks', async () => {
    const { gpu } = await setup();
    const message = compileMessage(gpu);
    const twice =
      '@compute @workgroup_size(1)\nfn main(@builtin(global_invocation_id) id: vec3u, @builtin(local_invocation_id) id: vec3u) {\n}';
    expect((await message(twice)).match(/redeclaration/g)).toHaveLength(1);
    const badDiagnostic =
      '@diagnostic(bogus, derivative_uniformity) @compute @workgroup_size(1)\nfn main() {}';
    expect((await message(badDiagnostic)).match(/severity/g)).toHaveLength(1);
    const multiLine =
      '@diagnostic(off,\n derivative_uniformity) @compute @workgroup_size(1)\nfn main() {\n  let x: u32 = 1.5;\n}';
    expect(await message(multiLine)).toMatch(/\(line 4:16: /);
    const loneCr = 'fn f() {}\r@compute @workgroup_size(1)\nfn main() { let x: u32 = 1.5; }';
    expect(await message(loneCr)).toMatch(/\(line 3:26: /);
  });

  it('compiles global directives written before the kernel, and keeps the lines after them', async () => {
    const { space, gpu } = await setup();
    const out = space.alloc(4 * KiB);
    const directives =
      'diagnostic(off, derivative_uniformity);\nrequires unrestricted_pointer_parameters;\n';
    const kernel = gpu.kernel({
      code: `${directives}@compute @workgroup_size(1)\nfn main() { hmm_store_u32(hmm_params.out, 7u); }`,
      params: { out: 'u32' },
    });
    await kernel.run({
      workgroups: 1,
      params: { out },
      uses: [{ va: out, len: 4, access: 'write' }],
    });
    expect(new Uint32Array((await space.readAsync(out, 4)).buffer)[0]).toBe(7);
    const broken = gpu.kernel({
      code: `${directives}@compute @workgroup_size(1)\nfn main() {\n  let x: u32 = 1.5;\n}`,
    });
    const error = await rejection(broken.ready);
    expect((error as Error).message).toMatch(/\(line 5:16: /);
  });

  it('refuses an entry point that is not a @compute function, when the kernel compiles', async () => {
    const { gpu } = await setup();
    const kernel = gpu.kernel({ code: 'fn main() {}' });
    const error = await rejection(kernel.ready);
    expect(error).toMatchObject({ reason: 'wgsl', argument: 'code' });
    expect((error as Error).message).toContain('no @compute function named main');
  });
});
