// Vitest: two projects.
//   unit     Node, test/**/*.test.ts except *.browser.test.ts (plus the packaging test,
//            whose global setup builds the library first when dist/ is stale).
//   browser  test/**/*.browser.test.ts in headless system Chromium through Playwright,
//            with real WebGPU (SwiftShader when there is no GPU) and cross-origin
//            isolation (the page inherits `server.headers` from vite.config.ts).
import { playwright } from '@vitest/browser-playwright';
import { defineConfig, mergeConfig } from 'vitest/config';
import { chromiumArgs, chromiumPath, requireChromium } from './scripts/chromium.mjs';
import viteConfig from './vite.config.ts';

/**
 * True unless the command line selects only projects other than `browser`
 * (`vitest run --project unit` must not need a browser).
 */
function browserProjectSelected(argv: readonly string[]): boolean {
  const selected: string[] = [];
  argv.forEach((arg, i) => {
    if (arg === '--project') selected.push(argv[i + 1] ?? '');
    else if (arg.startsWith('--project=')) selected.push(arg.slice('--project='.length));
  });
  return selected.length === 0 || selected.some((name) => name.includes('browser'));
}

if (browserProjectSelected(process.argv)) requireChromium();

export default defineConfig((env) =>
  mergeConfig(
    viteConfig(env),
    defineConfig({
      // Pre-bundled up front with the app's dependencies (vite.config.ts): found
      // mid-run, a test-only dependency would reload the browser page.
      optimizeDeps: { include: ['fast-check'] },
      test: {
        // One JSON file per run (the npm scripts set --outputFile.json per project);
        // .ci/run counts passed and failed tests from them.
        reporters: ['default', 'json'],
        outputFile: { json: '.test-results/vitest.json' },
        projects: [
          {
            extends: true,
            test: {
              name: 'unit',
              environment: 'node',
              include: ['test/**/*.test.ts'],
              exclude: ['test/**/*.browser.test.ts', 'test/package/fixture/**'],
              globalSetup: ['test/package/build-once.ts'],
            },
          },
          {
            extends: true,
            test: {
              name: 'browser',
              include: ['test/**/*.browser.test.ts'],
              globalSetup: ['test/package/build-once.ts'],
              // GPU work on a software adapter is slow.
              testTimeout: 60_000,
              hookTimeout: 60_000,
              browser: {
                enabled: true,
                headless: true,
                screenshotFailures: false,
                provider: playwright({
                  launchOptions: { executablePath: chromiumPath, args: chromiumArgs },
                }),
                instances: [{ browser: 'chromium' }],
              },
            },
          },
        ],
      },
    }),
  ),
);
