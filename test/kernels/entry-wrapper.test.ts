import { describe, expect, it } from 'vitest';
import { HMM_ENTRY, maskComments, wrapEntryPoint } from '../../src/kernels/entry-wrapper.ts';

const lines = (text: string) => text.split('\n');

describe('the entry-point wrapper', () => {
  it('renames the entry point to a plain function and calls it, then hmm_flush, from its own', () => {
    const code = `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u,
        @builtin(num_workgroups) groups: vec3<u32>) {
  if (id.x > groups.x) { return; }
}`;
    const wrapped = wrapEntryPoint(code, 'main') ?? '';
    const user = lines(wrapped).slice(0, lines(code).length);
    // The user's lines stay where they were, attributes blanked.
    expect(user[1]?.trim()).toBe('');
    expect(user[2]).toMatch(/^fn hmm_user_main\(\s+id: vec3u,$/);
    expect(user[3]).toMatch(/^\s+groups: vec3<u32>\) \{$/);
    expect(user[4]).toBe(lines(code)[4]);
    expect(wrapped).not.toMatch(/@compute[^\n]*\nfn hmm_user_main/);
    expect(wrapped).toContain(
      `@compute @workgroup_size(64)
fn ${HMM_ENTRY}(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) groups: vec3<u32>) {
  hmm_user_main(id, groups);
  hmm_flush();
}`,
    );
  });

  it('finds the entry point past comments, nested block comments and nested attribute arguments', () => {
    const code = `// fn main() { } in a line comment
/* fn main() /* nested */ still a comment */
@compute /* between */ @workgroup_size(max(1, 2), 1)
fn main() {}
fn helper() {}`;
    const wrapped = wrapEntryPoint(code, 'main') ?? '';
    expect(lines(wrapped).slice(0, 5)).toEqual([
      lines(code)[0],
      lines(code)[1],
      ' '.repeat(lines(code)[2]?.length ?? 0),
      'fn hmm_user_main() {}',
      'fn helper() {}',
    ]);
    expect(wrapped).toContain(`@compute @workgroup_size(max(1, 2), 1)\nfn ${HMM_ENTRY}() {`);
    expect(wrapped).toContain('  hmm_user_main();\n');
  });

  it('passes a struct of builtins through by name', () => {
    const code = `struct In { @builtin(local_invocation_index) lane: u32 }
@compute @workgroup_size(8) fn go(input: In) { _ = input.lane; }`;
    const wrapped = wrapEntryPoint(code, 'go') ?? '';
    expect(wrapped).toContain('fn hmm_user_go(input: In) {');
    expect(wrapped).toContain(`fn ${HMM_ENTRY}(input: In) {\n  hmm_user_go(input);`);
  });

  it('gives up (so the module has no entry point and fails to compile) on anything but a @compute function of that name', () => {
    expect(wrapEntryPoint('@compute @workgroup_size(1) fn main() {}', 'nope')).toBeUndefined();
    expect(wrapEntryPoint('fn main() {}', 'main')).toBeUndefined();
    expect(wrapEntryPoint('// @compute @workgroup_size(1) fn main() {}', 'main')).toBeUndefined();
    expect(wrapEntryPoint('@fragment fn main() -> @location(0) vec4f {}', 'main')).toBeUndefined();
    expect(wrapEntryPoint('@compute @workgroup_size(1) fn main(', 'main')).toBeUndefined();
    expect(wrapEntryPoint('@compute @workgroup_size(1) fn mainly() {}', 'main')).toBeUndefined();
  });

  it('masks comments with spaces, keeping every newline and every other character', () => {
    const code = 'a /* b\n /* c */ d */ e // f\ng';
    const masked = maskComments(code);
    expect(masked.length).toBe(code.length);
    expect(masked.replace(/ +/g, ' ')).toBe('a \n e \ng');
  });
});
