// ESLint (flat config blocks): webhmm's architecture, checked on every lint.
//
// Layers of src/, bottom to top. A file imports only from its own layer or lower ones:
//   1. src/errors.ts, src/arguments.ts  the base: they import nothing of src/ but each other
//   2. src/space/    the address space; knows nothing of WebGPU (unit-tested in Node)
//   3. src/gpu/      the device side: DeviceMirror, frames, device page table, migration,
//                    copy engines, the CPU fault service
//   4. src/kernels/  the WGSL prelude, kernel compilation and runs
//   5. src/mirror/   the public GpuMirror facade over gpu/ and kernels/
//   6. src/threads/  the worker pool
//   7. src/bench/    the benchmark suite, a user of the library
//   8. src/demo/     the demo page, a user of the library (and of bench/); nothing imports it
// src/index.ts is the public entry: it may import any layer but demo/, and only src/demo/
// imports it (internal code imports the module that defines a name, not the entry).
// test/ may import anything.
//
// The layer rules are core `no-restricted-imports` patterns on the import specifier: a
// relative path (`../kernels/kernel.ts`, `../../gpu/x.ts` from src/bench/rows/) or a
// root-absolute one (`/src/kernels/kernel.ts`). So a folder inside src/ must not be named
// after a layer. `import type` and `export ... from` are restricted too (allowTypeImports is
// false by default). Not checked: `import()` expressions and `new URL('./x.worker.ts', ...)`.
// Each file is in one layer block only; a later block that sets `no-restricted-imports` for
// src/ would replace these options, not add to them.
//
// Size limits: no file in src/ or test/ over 500 lines (every line counts); no function in
// src/ over 80 lines from its signature to its closing brace, blank and comment lines not
// counted; no function in src/ with more than 5 parameters (constructors count; a `this`
// declaration does not).

/** @typedef {import('eslint').Linter.Config} Config */

/** The layers, bottom to top. `folder` is the directory under src/ (null: files at src/). */
const layers = [
  { name: 'errors.ts + arguments.ts', folder: null, files: ['src/errors.ts', 'src/arguments.ts'] },
  { name: 'space/', folder: 'space', files: ['src/space/**/*.ts'] },
  { name: 'gpu/', folder: 'gpu', files: ['src/gpu/**/*.ts'] },
  { name: 'kernels/', folder: 'kernels', files: ['src/kernels/**/*.ts'] },
  { name: 'mirror/', folder: 'mirror', files: ['src/mirror/**/*.ts'] },
  { name: 'threads/', folder: 'threads', files: ['src/threads/**/*.ts'] },
  { name: 'bench/', folder: 'bench', files: ['src/bench/**/*.ts'] },
  { name: 'demo/', folder: 'demo', files: ['src/demo/**/*.ts'] },
];

const layerOrder =
  'Layers of src/, bottom to top: ' +
  layers.map((layer) => layer.name).join(' < ') +
  '; a file imports only from its own layer or lower ones.';

/**
 * A specifier that names `src/<folder>/`: one or more `./` or `../` steps (or `/src/`),
 * then the folder.
 * @param {string} folder
 */
function folderSpecifier(folder) {
  return `^(?:/src/|(?:\\.{1,2}/)+)${folder}(?:/|$)`;
}

/** A specifier that names the public entry, src/index.ts. */
const entrySpecifier = '^(?:/src/|(?:\\.{1,2}/)+)index(?:\\.[jt]s)?$';

/**
 * The pattern that keeps layer `from` off the higher layer `to`.
 * @param {number} from index in `layers`
 * @param {number} to index in `layers`, above `from`
 * @param {string} folder the folder of layer `to`
 */
function upwardImport(from, to, folder) {
  const here = `src/${layers[from]?.name ?? ''}`;
  const above = `src/${layers[to]?.name ?? ''}`;
  const fix =
    from === 0
      ? 'Fix: keep errors and argument checks free of other modules (they take plain values), ' +
        `and move code that needs ${above} into ${above}.`
      : `Fix: move what ${here} needs down into ${here} or a lower layer, or declare an ` +
        `interface in ${here} that ${above} implements and passes in.`;
  return {
    regex: folderSpecifier(folder),
    message: `${here} (layer ${from + 1}) must not import ${above} (layer ${to + 1}). ${layerOrder} ${fix}`,
  };
}

/** The pattern that keeps internal code off the public entry. */
const entryImport = {
  regex: entrySpecifier,
  message:
    'src/index.ts is the public entry: only src/demo/ (a user of the library) imports it. ' +
    `${layerOrder} Fix: import the module that defines the name (e.g. ../gpu/migration.ts).`,
};

/**
 * A `no-restricted-imports` setting.
 * @param {{ regex: string, message: string }[]} patterns
 * @returns {import('eslint').Linter.RuleEntry}
 */
function restrict(patterns) {
  return ['error', { patterns }];
}

/** @type {Config[]} */
export const layerRules = [
  ...layers.map((from, i) => ({
    name: `webhmm/layers/${from.folder ?? 'base'}`,
    files: from.files,
    rules: {
      'no-restricted-imports': restrict([
        ...layers.flatMap((to, j) =>
          j > i && to.folder !== null ? [upwardImport(i, j, to.folder)] : [],
        ),
        ...(from.folder === 'demo' ? [] : [entryImport]),
      ]),
    },
  })),
  {
    name: 'webhmm/layers/entry',
    files: ['src/index.ts'],
    rules: {
      'no-restricted-imports': restrict([
        {
          regex: folderSpecifier('demo'),
          message:
            'src/index.ts must not import src/demo/: the demo is a user of the library and ' +
            `nothing imports it. ${layerOrder} Fix: move what the entry exports out of demo/ ` +
            'into the layer it belongs to.',
        },
      ]),
    },
  },
];

/** @type {Config[]} */
export const sizeRules = [
  {
    name: 'webhmm/size/files',
    files: ['src/**/*.ts', 'test/**/*.ts'],
    rules: {
      // Every line counts, blank and comment lines too: "no file over 500 lines" holds literally.
      'max-lines': ['error', { max: 500, skipBlankLines: false, skipComments: false }],
    },
  },
  {
    name: 'webhmm/size/functions',
    files: ['src/**/*.ts'],
    rules: {
      'max-lines-per-function': ['error', { max: 80, skipBlankLines: true, skipComments: true }],
      // Core max-params, not @typescript-eslint/max-params: that one can only leave out a
      // `this: void` declaration; `countThis: 'never'` leaves out every `this` declaration.
      // Constructors count like any function.
      'max-params': ['error', { max: 5, countThis: 'never' }],
    },
  },
];

/**
 * All architecture blocks, in the order eslint.config.js spreads them in.
 * @type {Config[]}
 */
export const architecture = [...layerRules, ...sizeRules];
