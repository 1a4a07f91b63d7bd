/**
 * Global directives of a kernel's WGSL (`enable f16;`, `requires ...;`,
 * `diagnostic(...);`): WGSL wants them before every declaration, and the
 * prelude comes before the kernel's code, so they are moved above the
 * prelude, on one line. The kernel's code keeps its lines (the directives
 * are blanked in place). A directive the device does not support (a
 * feature the mirror's device lacks) fails to compile as WGSL says.
 */
import { maskComments } from './wgsl-source.ts';

const DIRECTIVE = /^(enable|requires|diagnostic)\b[^;]*;/;

/** The directives at the start of `code`, on one line, and `code` with them blanked. */
export function hoistDirectives(code: string): { directives: string; code: string } {
  const masked = maskComments(code);
  const found: string[] = [];
  let rest = code;
  let at = 0;
  for (;;) {
    while (at < masked.length && /\s/.test(masked[at] ?? '')) at++;
    const directive = DIRECTIVE.exec(masked.slice(at));
    if (!directive) break;
    const end = at + directive[0].length;
    found.push(directive[0].replace(/\s+/g, ' '));
    rest = rest.slice(0, at) + rest.slice(at, end).replace(/[^\n]/g, ' ') + rest.slice(end);
    at = end;
  }
  return { directives: found.join(' '), code: rest };
}
