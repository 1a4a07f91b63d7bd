import { describe, expect, it } from 'vitest';
import { isWgslWord, maskComments } from '../../src/kernels/wgsl-source.ts';

describe('WGSL source text', () => {
  it('masks comments with spaces, keeping every newline and every other character', () => {
    const code = 'a /* b\n /* c */ d */ e // f\ng';
    const masked = maskComments(code);
    expect(masked.length).toBe(code.length);
    expect(masked.replace(/ +/g, ' ')).toBe('a \n e \ng');
  });

  it('knows the keywords and reserved words WGSL refuses as identifiers', () => {
    expect(['from', 'let', 'fn', 'self', 'NULL'].every(isWgslWord)).toBe(true);
    expect(['fromage', 'main', 'x', 'hmm'].some(isWgslWord)).toBe(false);
  });
});
