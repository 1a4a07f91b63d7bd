/**
 * The entry-point wrapper: every kernel is compiled with its `@compute`
 * function renamed to a plain function and called from webhmm's own entry
 * point, HMM_ENTRY, which then flushes what the invocation recorded
 * (`hmm_flush`, prelude.ts). So the prelude records access errors, faults,
 * refused stores and range overruns in private variables, plain ALU work,
 * and writes the status block once per invocation: on SwiftShader, which
 * runs every branch's code whether taken or not, an atomic in each
 * accessor's error branch cost more than the access itself.
 *
 * Guarantees: the user's code keeps its line numbers (attributes are blanked,
 * not removed, and the wrapper goes after it), and a kernel is never compiled
 * without the flush: if the entry point cannot be found as a `@compute`
 * function, the module has no HMM_ENTRY and fails to compile.
 */

/** The entry point webhmm compiles every kernel with. */
export const HMM_ENTRY = 'hmm_entry';

/** What the user's entry point is renamed to (the `hmm_` prefix is webhmm's). */
export const userEntryName = (entryPoint: string): string => `hmm_user_${entryPoint}`;

/**
 * `code` with `entryPoint` renamed to a plain function (its attributes and
 * its parameters' attributes blanked) and HMM_ENTRY appended, calling it and
 * then `hmm_flush()`; undefined if `code` has no `@compute fn entryPoint(...)`.
 */
export function wrapEntryPoint(code: string, entryPoint: string): string | undefined {
  const masked = maskComments(code);
  const found = new RegExp(`\\bfn\\s+${entryPoint}\\s*\\(`).exec(masked);
  if (!found) return undefined;
  const fnAt = found.index;
  const open = fnAt + found[0].length - 1;
  const close = matching(masked, open);
  if (close < 0 || /^\s*->/.test(masked.slice(close + 1))) return undefined;
  const attributesAt = attributesBefore(masked, fnAt);
  const attributes = masked.slice(attributesAt, fnAt);
  if (!/@\s*compute\b/.test(attributes)) return undefined;
  const params = masked.slice(open + 1, close);
  const names = splitTopLevel(params).map(paramName);
  if (names.some((name) => name === undefined)) return undefined;
  const renamed =
    code.slice(0, attributesAt) +
    blank(code.slice(attributesAt, fnAt)) +
    `fn ${userEntryName(entryPoint)}${newlines(code.slice(fnAt, open))}(` +
    blankAttributes(code.slice(open + 1, close), masked.slice(open + 1, close)) +
    code.slice(close);
  const oneLine = (text: string) => text.replace(/\s+/g, ' ').trim();
  return `${renamed}
// ---- webhmm entry point: the kernel's own, then the invocation's status flushed ----
${oneLine(attributes)}
fn ${HMM_ENTRY}(${oneLine(params)}) {
  ${userEntryName(entryPoint)}(${names.join(', ')});
  hmm_flush();
}
`;
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

/** Index of the `)` matching the `(` at `open`, or -1. */
function matching(text: string, open: number): number {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === '(') depth++;
    else if (text[i] === ')' && --depth === 0) return i;
  }
  return -1;
}

/** Where the attributes (`@name` or `@name(...)`, any number) right before `at` begin. */
function attributesBefore(text: string, at: number): number {
  let start = at;
  for (;;) {
    let i = start;
    while (i > 0 && /\s/.test(text[i - 1] ?? '')) i--;
    if (text[i - 1] === ')') {
      let depth = 0;
      do {
        i--;
        if (text[i] === ')') depth++;
        else if (text[i] === '(') depth--;
      } while (i > 0 && depth > 0);
      while (i > 0 && /\s/.test(text[i - 1] ?? '')) i--;
    }
    let name = i;
    while (name > 0 && /\w/.test(text[name - 1] ?? '')) name--;
    if (name === i) return start;
    let sign = name;
    while (sign > 0 && /\s/.test(text[sign - 1] ?? '')) sign--;
    if (text[sign - 1] !== '@') return start;
    start = sign - 1;
  }
}

/** `params` split at commas outside parentheses and template brackets. */
function splitTopLevel(params: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let from = 0;
  for (let i = 0; i < params.length; i++) {
    const char = params[i];
    if (char === '(' || char === '<') depth++;
    else if (char === ')' || char === '>') depth--;
    else if (char === ',' && depth === 0) {
      parts.push(params.slice(from, i));
      from = i + 1;
    }
  }
  parts.push(params.slice(from));
  return parts.filter((part) => part.trim() !== '');
}

const ATTRIBUTE = /@\s*\w+\s*(\([^)]*\))?/g;

/** The name of one parameter (`@builtin(x) name: type`), or undefined. */
function paramName(param: string): string | undefined {
  return /^\s*([A-Za-z_]\w*)\s*:/.exec(param.replace(ATTRIBUTE, ' '))?.[1];
}

/** `text` with its attributes (found in `masked`, the same text without comments) blanked. */
function blankAttributes(text: string, masked: string): string {
  let out = text;
  for (const match of masked.matchAll(ATTRIBUTE)) {
    const at = match.index;
    out = out.slice(0, at) + blank(match[0]) + out.slice(at + match[0].length);
  }
  return out;
}

/** The newlines of `text`, so a rewritten header keeps the lines after it where they were. */
function newlines(text: string): string {
  return text.replace(/[^\n]/g, '');
}

/** `text` as spaces, its newlines kept. */
function blank(text: string): string {
  return text.replace(/[^\n]/g, ' ');
}
