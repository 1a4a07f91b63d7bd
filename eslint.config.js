// ESLint (flat config): typescript-eslint's type-aware recommended rules over all code, and
// webhmm's architecture (layer order of src/, file, function and parameter limits: see
// scripts/eslint/architecture.js), run by `npm run lint` with --max-warnings 0.
import js from '@eslint/js';
import globals from 'globals';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';
import { architecture } from './scripts/eslint/architecture.js';
import { relativeImportExtension } from './scripts/eslint/relative-import-extension.js';

export default defineConfig(
  {
    ignores: [
      'node_modules/',
      'dist/',
      'dist-demo/',
      '.test-results/',
      'coverage/',
      'test/package/fixture/',
    ],
  },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: {
          // Plain JS outside every tsconfig: it imports dist/, which a clean checkout lacks.
          allowDefaultProject: ['test/package/built-thread.worker.js'],
        },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    plugins: { local: { rules: { 'relative-import-extension': relativeImportExtension } } },
    rules: {
      'local/relative-import-extension': 'error',
      eqeqeq: ['error', 'always'],
      'no-console': 'off',
      '@typescript-eslint/consistent-type-imports': [
        'error',
        { fixStyle: 'inline-type-imports', prefer: 'type-imports' },
      ],
      '@typescript-eslint/consistent-type-exports': 'error',
      '@typescript-eslint/no-import-type-side-effects': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' },
      ],
    },
  },
  {
    files: ['src/**/*.ts'],
    languageOptions: { globals: { ...globals.browser, ...globals.worker } },
  },
  {
    files: ['test/**/*.ts'],
    languageOptions: { globals: { ...globals.browser, ...globals.node } },
  },
  // Layer order and size limits; test/lint/architecture.test.ts lints samples with these blocks.
  ...architecture,
  {
    // Imports the build (dist/), which lint of a clean checkout runs before: its types are unknown then.
    files: ['test/package/built-thread.worker.js'],
    languageOptions: { globals: { ...globals.worker } },
    rules: {
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
    },
  },
  {
    files: ['*.js', '*.ts', 'scripts/**/*.{js,mjs,ts}'],
    languageOptions: { globals: globals.node },
  },
);
