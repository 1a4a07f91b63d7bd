import { describe, expect, it } from 'vitest';
import { userColumn, wrapEntryPoint } from '../../src/kernels/entry-wrapper.ts';

const lines = (text: string) => text.split('\n');
const wrap = (code: string, entryPoint: string) => wrapEntryPoint(code, entryPoint)?.code;

describe('the entry-point wrapper', () => {
  it('moves the body into a plain function called from the entry point, then hmm_flush, on the brace line', () => {
    const code = `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u,
        @builtin(num_workgroups) groups: vec3<u32>) {
  if (id.x > groups.x) { return; }
}`;
    const wrapped = wrap(code, 'main') ?? '';
    // Same lines; the header untouched; only the brace line grows.
    expect(lines(wrapped).length).toBe(lines(code).length);
    expect(lines(wrapped).slice(0, 3)).toEqual(lines(code).slice(0, 3));
    expect(lines(wrapped)[3]).toBe(
      '        @builtin(num_workgroups) groups: vec3<u32>) { hmm_user_main(id, groups); hmm_flush(); } fn hmm_user_main(id: vec3u, groups: vec3<u32>) {',
    );
    expect(lines(wrapped).slice(4)).toEqual(lines(code).slice(4));
  });

  it('finds the entry point past comments, nested block comments and nested attribute arguments', () => {
    const code = `// fn main() { } in a line comment
/* fn main() /* nested */ still a comment */
@compute /* between */ @workgroup_size(max(1, 2), 1)
fn main() /* before the body */ {}
fn helper() {}`;
    const wrapped = wrap(code, 'main') ?? '';
    expect(lines(wrapped)).toEqual([
      ...lines(code).slice(0, 3),
      'fn main() /* before the body */ { hmm_user_main(); hmm_flush(); } fn hmm_user_main() {}',
      'fn helper() {}',
    ]);
  });

  it('passes a struct of builtins through by name, and names that are not ASCII', () => {
    const struct = `struct In { @builtin(local_invocation_index) lane: u32 }
@compute @workgroup_size(8) fn go(input: In) { _ = input.lane; }`;
    expect(wrap(struct, 'go')).toContain(
      'fn go(input: In) { hmm_user_go(input); hmm_flush(); } fn hmm_user_go(input: In) { _ = input.lane; }',
    );
    const unicode = '@compute @workgroup_size(1) fn main(@builtin(workgroup_id) idé: vec3u) {}';
    expect(wrap(unicode, 'main')).toContain('hmm_user_main(idé);');
  });

  it('applies @diagnostic attributes of the entry point to the moved body too', () => {
    const code =
      '@diagnostic(off, derivative_uniformity) @compute @workgroup_size(1)\nfn main() {}';
    expect(lines(wrap(code, 'main') ?? '')[1]).toBe(
      'fn main() { hmm_user_main(); hmm_flush(); } @diagnostic(off, derivative_uniformity) fn hmm_user_main() {}',
    );
  });

  it('gives up (the kernel is then refused) on anything but a @compute function of that name with a body', () => {
    expect(wrap('@compute @workgroup_size(1) fn main() {}', 'nope')).toBeUndefined();
    expect(wrap('fn main() {}', 'main')).toBeUndefined();
    expect(wrap('// @compute @workgroup_size(1) fn main() {}', 'main')).toBeUndefined();
    expect(wrap('@fragment fn main() -> @location(0) vec4f {}', 'main')).toBeUndefined();
    expect(wrap('@compute @workgroup_size(1) fn main(', 'main')).toBeUndefined();
    expect(wrap('@compute @workgroup_size(1) fn mainly() {}', 'main')).toBeUndefined();
  });

  it("maps a message's column on the brace line back to the user's: past the insertion, or at the brace inside it", () => {
    const code = '@compute @workgroup_size(1)\nfn main(id: u32) { let x: u32 = 1.5; }';
    const wrapped = wrapEntryPoint(code, 'main');
    const insertion = wrapped?.insertion ?? { line: 0, column: 0, length: 0 };
    const brace = (lines(code)[1] ?? '').indexOf('{') + 1;
    expect(insertion).toMatchObject({ line: 2, column: brace + 1 });
    const userX = (lines(code)[1] ?? '').indexOf('x: u32') + 1;
    const wrappedX = (lines(wrapped?.code ?? '')[1] ?? '').indexOf('x: u32') + 1;
    expect(userColumn(insertion, 2, wrappedX)).toBe(userX);
    expect(userColumn(insertion, 2, insertion.column + 3)).toBe(brace);
    expect(userColumn(insertion, 2, 4)).toBe(4);
    expect(userColumn(insertion, 1, 90)).toBe(90);
  });
});
