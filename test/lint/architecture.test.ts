// The architecture blocks of eslint.config.js (scripts/eslint/architecture.js) reject
// what they promise to: upward imports between the layers of src/, internal imports of the
// public entry, files over 500 lines, functions over 80 lines, more than 5 parameters.
// Samples are linted under virtual paths with the same blocks, parsed without type information.
import { fileURLToPath } from 'node:url';
import { ESLint, type Linter } from 'eslint';
import tseslint from 'typescript-eslint';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));

// The blocks eslint.config.js spreads in. scripts/ is JavaScript outside this tsconfig (no
// allowJs here), so the module is imported by URL and its exports typed at the import.
const { architecture, layerRules } = (await import(
  new URL('../../scripts/eslint/architecture.js', import.meta.url).href
)) as { architecture: Linter.Config[]; layerRules: Linter.Config[] };

const eslint = new ESLint({
  cwd: root,
  overrideConfigFile: true,
  overrideConfig: [
    { files: ['**/*.ts'], languageOptions: { parser: tseslint.parser } },
    ...architecture,
  ],
});

/** The messages ESLint reports for `code` at `filePath` (relative to the repository root). */
async function lint(filePath: string, code: string): Promise<Linter.LintMessage[]> {
  const results = await eslint.lintText(code, { filePath });
  const messages = results.flatMap((result) => result.messages);
  const fatal = messages.filter((message) => message.fatal === true || message.ruleId === null);
  expect(fatal, `${filePath} did not parse or was not linted`).toEqual([]);
  return messages;
}

/** The rule ids ESLint reports for `code` at `filePath`. */
async function rulesBroken(filePath: string, code: string): Promise<(string | null)[]> {
  return (await lint(filePath, code)).map((message) => message.ruleId);
}

/** A module of `count` lines (a trailing newline ends the last one). */
function linesOfCode(count: number): string {
  return Array.from({ length: count }, (_, i) => `export const v${i} = ${i};\n`).join('');
}

/** A function declaration spanning `count` lines, header and closing brace included. */
function functionOfLines(count: number): string {
  const body = Array.from({ length: count - 4 }, (_, i) => `  total += ${i};\n`).join('');
  return `export function long(): number {\n  let total = 0;\n${body}  return total;\n}\n`;
}

/** A rule setting without its severity (the computed config spells that as a number). */
function ruleOptions(rule: Linter.RuleEntry | undefined): unknown[] {
  return Array.isArray(rule) ? (rule.slice(1) as unknown[]) : [];
}

describe('the layer order of src/', () => {
  it('rejects an import of kernels/ from gpu/, naming the layer order and the fix', async () => {
    const messages = await lint(
      'src/gpu/upward.ts',
      "import { Kernel } from '../kernels/kernel.ts';\nexport const k = Kernel;\n",
    );
    expect(messages.map((message) => message.ruleId)).toEqual(['no-restricted-imports']);
    expect(messages[0]?.message).toContain('src/gpu/ (layer 3) must not import src/kernels/');
    expect(messages[0]?.message).toContain(
      'bottom to top: errors.ts + arguments.ts < space/ < gpu/ < kernels/ < mirror/ < threads/ < bench/ < demo/',
    );
    expect(messages[0]?.message).toContain('Fix:');
  });

  it('rejects type-only imports and re-exports of a higher layer too', async () => {
    const samples = [
      "import type { Kernel } from '../kernels/kernel.ts';\nexport type K = Kernel;\n",
      "import { type Kernel } from '../kernels/kernel.ts';\nexport type K = Kernel;\n",
      "export type { Kernel } from '../kernels/kernel.ts';\n",
      "export * from '../kernels/kernel.ts';\n",
    ];
    for (const code of samples) {
      expect(await rulesBroken('src/gpu/upward.ts', code), code).toEqual(['no-restricted-imports']);
    }
  });

  it('rejects an import of threads/ from gpu/', async () => {
    expect(await rulesBroken('src/gpu/upward.ts', "import '../threads/threads.ts';\n")).toEqual([
      'no-restricted-imports',
    ]);
  });

  it('allows an import of gpu/ from kernels/', async () => {
    expect(
      await rulesBroken(
        'src/kernels/downward.ts',
        "import { migrate } from '../gpu/migration.ts';\nexport const m = migrate;\n",
      ),
    ).toEqual([]);
  });

  it('rejects an import of mirror/ from kernels/', async () => {
    expect(
      await rulesBroken('src/kernels/upward.ts', "import '../mirror/gpu-mirror.ts';\n"),
    ).toEqual(['no-restricted-imports']);
  });

  it('rejects imports from deeper folders and root-absolute paths', async () => {
    expect(await rulesBroken('src/bench/rows/upward.ts', "import '../../demo/main.ts';\n")).toEqual(
      ['no-restricted-imports'],
    );
    expect(await rulesBroken('src/space/upward.ts', "import '/src/gpu/migration.ts';\n")).toEqual([
      'no-restricted-imports',
    ]);
    expect(
      await rulesBroken('src/bench/rows/downward.ts', "import '../../gpu/copy-engines.ts';\n"),
    ).toEqual([]);
  });

  it('keeps errors.ts and arguments.ts free of every folder, but not of each other', async () => {
    expect(await rulesBroken('src/arguments.ts', "import './errors.ts';\n")).toEqual([]);
    expect(await rulesBroken('src/errors.ts', "import './arguments.ts';\n")).toEqual([]);
    expect(await rulesBroken('src/errors.ts', "import './space/pte.ts';\n")).toEqual([
      'no-restricted-imports',
    ]);
  });

  it('rejects internal imports of the public entry; only demo/ imports it', async () => {
    expect(await rulesBroken('src/space/entry.ts', "import '../index.ts';\n")).toEqual([
      'no-restricted-imports',
    ]);
    expect(await rulesBroken('src/bench/rows/entry.ts', "import '../../index.ts';\n")).toEqual([
      'no-restricted-imports',
    ]);
    expect(await rulesBroken('src/demo/entry.ts', "import '../index.ts';\n")).toEqual([]);
    expect(await rulesBroken('src/demo/entry.ts', "import '../bench/suite.ts';\n")).toEqual([]);
  });

  it('lets the public entry import any layer but demo/', async () => {
    expect(await rulesBroken('src/index.ts', "export * from './mirror/gpu-mirror.ts';\n")).toEqual(
      [],
    );
    expect(await rulesBroken('src/index.ts', "import './demo/main.ts';\n")).toEqual([
      'no-restricted-imports',
    ]);
  });

  it('lets tests import anything', async () => {
    expect(
      await rulesBroken('test/gpu/anything.test.ts', "import '../../src/demo/main.ts';\n"),
    ).toEqual([]);
  });
});

describe('size limits', () => {
  it('rejects a source file of 501 lines and accepts one of 500', async () => {
    expect(await rulesBroken('src/space/long.ts', linesOfCode(501))).toEqual(['max-lines']);
    expect(await rulesBroken('src/space/long.ts', linesOfCode(500))).toEqual([]);
  });

  it('counts blank and comment lines in a file', async () => {
    const padded = `${linesOfCode(400)}${'\n'.repeat(50)}${'// note\n'.repeat(51)}`;
    expect(await rulesBroken('src/space/long.ts', padded)).toEqual(['max-lines']);
  });

  it('rejects a test file of 501 lines', async () => {
    expect(await rulesBroken('test/space/long.test.ts', linesOfCode(501))).toEqual(['max-lines']);
  });

  it('rejects a function of 81 lines and accepts one of 80', async () => {
    expect(await rulesBroken('src/gpu/long.ts', functionOfLines(81))).toEqual([
      'max-lines-per-function',
    ]);
    expect(await rulesBroken('src/gpu/long.ts', functionOfLines(80))).toEqual([]);
  });

  it('does not count blank and comment lines in a function', async () => {
    const padded = functionOfLines(80).replace(
      '  let total = 0;\n',
      '  let total = 0;\n\n  // why\n',
    );
    expect(await rulesBroken('src/gpu/long.ts', padded)).toEqual([]);
  });

  it('rejects a function of 6 parameters and accepts one of 5', async () => {
    const six = 'export function f(a: 1, b: 2, c: 3, d: 4, e: 5, f: 6): void {}\n';
    const five = 'export function f(a: 1, b: 2, c: 3, d: 4, e: 5): void {}\n';
    expect(await rulesBroken('src/gpu/params.ts', six)).toEqual(['max-params']);
    expect(await rulesBroken('src/gpu/params.ts', five)).toEqual([]);
  });

  it('counts constructor parameters, parameter properties included', async () => {
    const code =
      'export class C {\n  constructor(private readonly a: 1, b: 2, c: 3, d: 4, e: 5, f: 6) {}\n}\n';
    expect(await rulesBroken('src/gpu/params.ts', code)).toEqual(['max-params']);
  });

  it('does not count a `this` declaration', async () => {
    const code = 'export function f(this: Window, a: 1, b: 2, c: 3, d: 4, e: 5): void {}\n';
    expect(await rulesBroken('src/gpu/params.ts', code)).toEqual([]);
  });
});

describe('eslint.config.js', () => {
  it('applies these very layer blocks to src/', async () => {
    const real = new ESLint({ cwd: root });
    for (const block of layerRules) {
      const file = (block.files?.[0] as string).replace('**/*.ts', 'sample.ts');
      const config = (await real.calculateConfigForFile(file)) as Linter.Config;
      const expected = ruleOptions(block.rules?.['no-restricted-imports']);
      expect(expected).not.toEqual([]);
      expect(ruleOptions(config.rules?.['no-restricted-imports']), file).toEqual(expected);
    }
  });
});
