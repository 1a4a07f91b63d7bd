// Vite: the demo dev server and preview (index.html -> src/demo/main.ts), the demo
// build (dist-demo/) and, with `--mode lib`, the library build (dist/).
import { defineConfig, type UserConfig } from 'vite';

/**
 * SharedArrayBuffer needs cross-origin isolation, so every page served (dev,
 * preview and the Vitest browser page, which inherits `server`) sends these.
 */
export const isolationHeaders = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
} as const;

const shared: UserConfig = {
  server: { headers: isolationHeaders },
  preview: { headers: isolationHeaders },
  // Module workers (`new Worker(new URL('./x.ts', import.meta.url), { type: 'module' })`)
  // may import chunks; the default 'iife' worker format cannot.
  worker: { format: 'es' },
  // Pre-bundled up front: a dependency found mid-run would reload the page
  // (a test, a benchmark run or the demo).
  optimizeDeps: { include: ['comlink', 'idb-keyval'] },
};

export default defineConfig(({ mode }): UserConfig => {
  if (mode === 'lib') {
    return {
      ...shared,
      publicDir: false,
      build: {
        outDir: 'dist',
        emptyOutDir: true,
        target: 'es2022',
        sourcemap: true,
        minify: false,
        lib: { entry: 'src/index.ts', formats: ['es'], fileName: 'index' },
        rolldownOptions: {
          // Runtime dependencies stay imports; the app's bundler dedupes them.
          external: [/^comlink(\/|$)/, /^idb-keyval(\/|$)/],
        },
      },
    };
  }
  return {
    ...shared,
    build: { outDir: 'dist-demo', emptyOutDir: true, target: 'es2022' },
  };
});
