/**
 * Reading WGSL source text: comments masked out (so a scan for the entry
 * point or the directives sees only code), and the words WGSL does not allow
 * as identifiers: its keywords and reserved words (WGSL spec, "Keywords" and
 * "Reserved Words"). A parameter named one of them would make the prelude's
 * `HmmParams` struct fail to compile, with an error the user could only
 * read as webhmm's; kernel() refuses it first.
 */
const KEYWORDS =
  'alias break case const const_assert continue continuing default diagnostic discard else enable false fn for if let loop override requires return struct switch true var while';

const RESERVED =
  'NULL Self abstract active alignas alignof as asm asm_fragment async attribute auto await become binding_array cast catch class co_await co_return co_yield coherent column_major common compile compile_fragment concept const_cast consteval constexpr constinit crate debugger decltype delete demote demote_to_helper do dynamic_cast enum explicit export extends extern external fallthrough filter final finally friend from fxgroup get goto groupshared highp impl implements import inline instanceof interface layout lowp macro macro_rules match mediump meta mod module move mut mutable namespace new nil noexcept noinline nointerpolation noperspective null nullptr of operator package packoffset partition pass patch pixelfragment precise precision premerge priv protected pub public readonly ref regardless register reinterpret_cast require resource restrict self set shared sizeof smooth snorm static static_assert static_cast std subroutine super target template this thread_local throw trait try type typedef typeid typename typeof union unless unorm unsafe unsized use using varying virtual volatile wgsl where with writeonly yield';

const NOT_IDENTIFIERS = new Set(`${KEYWORDS} ${RESERVED}`.split(' '));

/** Whether WGSL refuses `name` as an identifier although it looks like one. */
export function isWgslWord(name: string): boolean {
  return NOT_IDENTIFIERS.has(name);
}

/** `code` with every comment (line, and nested block) replaced by spaces, newlines kept. */
export function maskComments(code: string): string {
  let out = '';
  let depth = 0;
  for (let i = 0; i < code.length; i++) {
    const two = code.slice(i, i + 2);
    if (depth === 0 && two === '//') {
      const end = code.indexOf('\n', i);
      const stop = end < 0 ? code.length : end;
      out += ' '.repeat(stop - i);
      i = stop - 1;
    } else if (two === '/*') {
      depth++;
      out += '  ';
      i++;
    } else if (depth > 0 && two === '*/') {
      depth--;
      out += '  ';
      i++;
    } else {
      const char = code[i] ?? '';
      out += depth > 0 && char !== '\n' ? ' ' : char;
    }
  }
  return out;
}
