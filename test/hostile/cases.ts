// Every hostile-input case, as data: public function x bad input -> the typed
// error the contract names (docs/hostile-input.md is the same list as a table,
// and hostile-table.test.ts keeps the two equal).
import { accessCases } from './access-cases.ts';
import { isEnds, type Case, type Ends, type Needs, type Refusal } from './context.ts';
import { mappingCases } from './mapping-cases.ts';
import { mirrorCases } from './mirror-cases.ts';
import { scalarCasesAll } from './scalar-cases.ts';
import { scopeCasesAll } from './scope-cases.ts';
import { threadCases } from './thread-cases.ts';

export type { Case } from './context.ts';

export const cases: readonly Case[] = [
  ...mappingCases,
  ...accessCases,
  ...scopeCasesAll,
  ...scalarCasesAll,
  ...mirrorCases,
  ...threadCases,
];

export function casesNeeding(...needs: readonly Needs[]): Case[] {
  return cases.filter((c) => needs.includes(c.needs));
}

/** The table cell of an outcome: 'CODE reason', or for detach during a call 'completes, or CODE reason'. */
export function outcomeCell(expect: Refusal | Ends): string {
  return isEnds(expect)
    ? `completes, or ${expect.code} ${expect.reason}`
    : `${expect.code} ${expect.reason}`;
}

/** The test's name: a sentence of what the call does with the input. */
export function caseName(c: Case): string {
  // "space.read called inside a scope ...", "gpu.read called after detach() ...", else "space.read with va = NaN ...".
  const subject = /^(inside|after) /.test(c.input)
    ? `${c.call} called ${c.input}`
    : `${c.call} with ${c.input}`;
  if (isEnds(c.expect)) {
    return `${subject} completes or rejects with ${c.expect.code} ${c.expect.reason}, and loses nothing`;
  }
  return `${subject} throws ${c.expect.code} ${c.expect.reason} and changes nothing`;
}

/** `[name, case]` rows for `it.each`, checked unique. */
export function namedCases(list: readonly Case[]): [string, Case][] {
  const rows = list.map((c): [string, Case] => [caseName(c), c]);
  const seen = new Set<string>();
  for (const [name] of rows) {
    if (seen.has(name)) throw new Error(`two hostile cases are named "${name}"`);
    seen.add(name);
  }
  return rows;
}
