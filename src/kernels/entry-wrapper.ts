/**
 * The entry-point wrapper: every kernel is compiled with the body of its
 * `@compute` function moved into a plain function, `hmm_user_<name>`, which
 * the entry point calls before `hmm_flush()` (prelude.ts) writes what the
 * invocation recorded to the status block. So the prelude records access
 * errors, faults, refused stores and range overruns in private variables,
 * plain ALU work, and writes the status block once per invocation: on
 * SwiftShader, which runs every branch's code whether taken or not, an
 * atomic in each accessor's error branch cost more than the access itself.
 *
 *     @compute @workgroup_size(64)
 *     fn main(@builtin(global_invocation_id) id: vec3u) { hmm_user_main(id); hmm_flush(); } fn hmm_user_main(id: vec3u) {
 *       ...the kernel's body, on its own lines...
 *     }
 *
 * Guarantees: the entry point's attributes, name and parameters stay where
 * the user wrote them, and the body on its lines (only what follows the
 * opening brace on its line moves right), so compile errors name the
 * user's lines; `@diagnostic` attributes apply to the body too; a kernel is
 * never compiled without the flush: if the entry point cannot be found as a
 * `@compute` function, there is nothing to compile (kernel.ts refuses it).
 * Identifiers starting with `hmm_` are webhmm's.
 */
import { maskComments } from './wgsl-source.ts';

/** What the body of the user's entry point moves into. */
const userEntryName = (entryPoint: string): string => `hmm_user_${entryPoint}`;

/** Where the wrapper inserted its text: after the entry point's opening brace. */
export interface Insertion {
  /** The line, 1-based. */
  readonly line: number;
  /** The column the text starts at, 1-based (in UTF-16 units, as WGSL messages count). */
  readonly column: number;
  readonly length: number;
}

/** A wrapped kernel: its code, and where the wrapper's text went. */
export interface WrappedEntryPoint {
  readonly code: string;
  readonly insertion: Insertion;
}

/**
 * `code` with the body of `entryPoint` moved into a plain function called
 * from it, then `hmm_flush()`; undefined if `code` has no `@compute fn
 * entryPoint(...) {` (with no return type).
 */
export function wrapEntryPoint(code: string, entryPoint: string): WrappedEntryPoint | undefined {
  const masked = maskComments(code);
  const found = new RegExp(`\\bfn\\s+${entryPoint}\\s*\\(`).exec(masked);
  if (!found) return undefined;
  const fnAt = found.index;
  const open = fnAt + found[0].length - 1;
  const close = matching(masked, open);
  if (close < 0) return undefined;
  const brace = /^\s*\{/.exec(masked.slice(close + 1));
  if (!brace) return undefined;
  const attributes = masked.slice(attributesBefore(masked, fnAt), fnAt);
  if (!/@\s*compute\b/.test(attributes)) return undefined;
  const params = splitTopLevel(masked.slice(open + 1, close)).map(stripAttributes);
  const names = params.map(paramName);
  if (names.some((name) => name === undefined)) return undefined;
  // On one line: the copy must not add lines.
  const diagnostics = (attributes.match(DIAGNOSTIC) ?? []).map((d) => d.replace(/\s+/g, ' '));
  const body = close + 1 + brace[0].length; // just past the opening brace
  const user = userEntryName(entryPoint);
  const call = ` ${user}(${names.join(', ')}); hmm_flush(); }`;
  const header = `${diagnostics.join(' ')} fn ${user}(${params.join(', ')}) {`;
  const inserted = `${call} ${header.trim()}`;
  const before = code.slice(0, body);
  const breaks = [...before.matchAll(LINE_BREAK)];
  const last = breaks.at(-1);
  const line = breaks.length + 1;
  const column = body - (last ? last.index + last[0].length : 0) + 1;
  return {
    code: `${before}${inserted}${code.slice(body)}`,
    insertion: { line, column, length: inserted.length },
  };
}

/**
 * A compile message's column in the user's code: past the insertion it
 * moves back by its length; inside it (an error the wrapper's copy of the
 * parameters repeats) it points at the entry point's opening brace.
 */
export function userColumn(insertion: Insertion, line: number, column: number): number {
  if (line !== insertion.line || column < insertion.column) return column;
  if (column >= insertion.column + insertion.length) return column - insertion.length;
  return insertion.column - 1;
}

/** Whether a message's position lies in the wrapper's inserted text. */
export function inInsertion(insertion: Insertion, line: number, column: number): boolean {
  return (
    line === insertion.line &&
    column >= insertion.column &&
    column < insertion.column + insertion.length
  );
}

/** WGSL's line breaks (a CR LF pair counts once), as compile messages count lines. */
const LINE_BREAK = /\r\n|[\n\v\f\r\u0085\u2028\u2029]/g;

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
const DIAGNOSTIC = /@\s*diagnostic\s*\([^)]*\)/g;

/** One parameter (`@builtin(x) name: type`) without its attributes, on one line. */
function stripAttributes(param: string): string {
  return param.replace(ATTRIBUTE, ' ').replace(/\s+/g, ' ').trim();
}

/** The name of one parameter without attributes (`name: type`), or undefined. */
function paramName(param: string): string | undefined {
  return /^([\p{XID_Start}_][\p{XID_Continue}]*)\s*:/u.exec(param)?.[1];
}
