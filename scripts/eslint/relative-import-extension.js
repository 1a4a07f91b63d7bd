// ESLint rule: relative imports name the file with its extension ('./errors.ts').
// Why: tsc copies import specifiers into the published .d.ts files, and apps type-checked
// with moduleResolution node16/nodenext cannot resolve extensionless relative paths there.
// `eslint --fix` appends `.ts` or `/index.ts` when that file exists.
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** A specifier already carrying an extension or a query (`./x.wgsl?raw`) is left alone. */
const hasExtension = /\.[a-z0-9]+(\?.*)?$/i;

/** @type {import('eslint').Rule.RuleModule} */
export const relativeImportExtension = {
  meta: {
    type: 'problem',
    fixable: 'code',
    docs: { description: 'Require file extensions on relative import specifiers' },
    messages: {
      missing:
        "Relative import '{{source}}' needs its file extension (e.g. '{{suggestion}}'): published " +
        '.d.ts files keep the specifier and Node16/NodeNext apps cannot resolve it without one.',
    },
    schema: [],
  },
  create(context) {
    /** @param {import('estree').Node | null | undefined} node */
    function check(node) {
      if (node?.type !== 'Literal' || typeof node.value !== 'string') return;
      const source = node.value;
      if (!/^\.{1,2}(\/|$)/.test(source) || hasExtension.test(source)) return;
      const base = resolve(dirname(context.filename), source);
      const suffix = existsSync(`${base}.ts`)
        ? '.ts'
        : existsSync(resolve(base, 'index.ts'))
          ? '/index.ts'
          : null;
      const quote = context.sourceCode.getText(node).charAt(0);
      context.report({
        node,
        messageId: 'missing',
        data: { source, suggestion: `${source}${suffix ?? '.ts'}` },
        ...(suffix === null
          ? {}
          : { fix: (fixer) => fixer.replaceText(node, `${quote}${source}${suffix}${quote}`) }),
      });
    }
    return {
      ImportDeclaration: (node) => check(node.source),
      ExportNamedDeclaration: (node) => check(node.source),
      ExportAllDeclaration: (node) => check(node.source),
      ImportExpression: (node) => check(node.source),
    };
  },
};
