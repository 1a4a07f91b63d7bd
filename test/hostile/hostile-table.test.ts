// docs/hostile-input.md and cases.ts are the same list: every case is a row of
// the table under its function's heading, with the same error (code and
// reason) and the same argument and address, and the table has no row that
// is not a case.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { cases, outcomeCell, type Case } from './cases.ts';
import { isEnds } from './context.ts';

const DOC = new URL('../../docs/hostile-input.md', import.meta.url);

interface Row {
  readonly call: string;
  readonly input: string;
  readonly error: string;
  readonly at: string;
  readonly line: number;
}

/** Text of a cell as the cases spell it: backticks gone, spaces collapsed. */
function plain(cell: string): string {
  return cell.replaceAll('`', '').replace(/\s+/g, ' ').trim();
}

/** The rows of every `| input | error | at |` table, each under the `### \`call(...)\`` heading above it. */
function rows(markdown: string): Row[] {
  const out: Row[] = [];
  let call: string | undefined;
  markdown.split('\n').forEach((text, index) => {
    const heading = /^###\s+`([^`(]+)/.exec(text);
    if (heading) call = heading[1]?.trim();
    if (text.startsWith('## ')) call = undefined;
    if (!call || !text.startsWith('|')) return;
    const cells = text.split('|').slice(1, -1).map(plain);
    const [input = '', error = '', at = ''] = cells;
    if (cells.length !== 3 || input === 'input' || /^:?-+:?$/.test(input)) return;
    out.push({ call, input, error, at, line: index + 1 });
  });
  return out;
}

/** The 'at' cell of a case: its argument and its address (hex), or a dash. */
function atCell(c: Case): string {
  if (isEnds(c.expect)) return '—';
  const { argument, address } = c.expect;
  const parts = [argument, address === undefined ? undefined : `0x${address.toString(16)}`];
  const present = parts.filter((part) => part !== undefined);
  return present.length > 0 ? present.join(', ') : '—';
}

const key = (call: string, input: string): string => `${call} | ${input}`;

describe('docs/hostile-input.md', () => {
  const table = rows(readFileSync(DOC, 'utf8'));
  const byKey = new Map(table.map((row) => [key(row.call, row.input), row]));

  it('has one row per case, none twice', () => {
    expect(table.length).toBe(new Set(table.map((row) => key(row.call, row.input))).size);
    expect(table.length).toBe(cases.length);
  });

  it.each(cases.map((c): [string, Case] => [key(c.call, c.input), c]))(
    'lists %s with the error the test expects',
    (_key, c) => {
      const row = byKey.get(key(c.call, c.input));
      expect(row, 'a row under the heading of its call').toBeDefined();
      expect(row?.error).toBe(outcomeCell(c.expect));
      expect(row?.at).toBe(atCell(c));
    },
  );

  it('names no case that does not exist', () => {
    const known = new Set(cases.map((c) => key(c.call, c.input)));
    const strays = table.filter((row) => !known.has(key(row.call, row.input)));
    expect(strays.map((row) => `line ${row.line}: ${key(row.call, row.input)}`)).toEqual([]);
  });
});
