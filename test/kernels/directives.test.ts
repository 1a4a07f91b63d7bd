import { describe, expect, it } from 'vitest';
import { hoistDirectives } from '../../src/kernels/directives.ts';

describe('directives of a kernel', () => {
  it('are moved out of the code, onto one line, the code keeping its lines', () => {
    const code = `// a kernel
enable f16;
requires unrestricted_pointer_parameters,
  readonly_and_readwrite_storage_textures; /* two */
diagnostic(off, derivative_uniformity);
@compute @workgroup_size(1) fn main() {}`;
    const { directives, code: rest } = hoistDirectives(code);
    expect(directives).toBe(
      'enable f16; requires unrestricted_pointer_parameters, readonly_and_readwrite_storage_textures; diagnostic(off, derivative_uniformity);',
    );
    expect(rest.split('\n')).toHaveLength(code.split('\n').length);
    expect(rest.split('\n').slice(1, 5).join('').trim()).toBe('/* two */');
    expect(rest.endsWith('@compute @workgroup_size(1) fn main() {}')).toBe(true);
  });

  it('stop at the first declaration: a later word "enable" is code', () => {
    const code = 'const enable_x = 1u;\nenable f16;';
    expect(hoistDirectives(code)).toEqual({ directives: '', code });
  });
});
