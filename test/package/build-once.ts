// Global setup of the `unit` project: builds the library (`npm run build:lib`) once per
// run, so package.test.ts checks the dist/ of the current sources. A failed build does
// not abort the other unit tests; package.test.ts reports it with the build's output.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';

export interface LibBuild {
  ok: boolean;
  /** The build's stdout and stderr, or why it could not start. */
  output: string;
  ms: number;
}

declare module 'vitest' {
  export interface ProvidedContext {
    libBuild: LibBuild;
  }
}

export default function setup(project: TestProject): void {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const start = performance.now();
  const run = spawnSync('npm', ['run', '--silent', 'build:lib'], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, npm_config_loglevel: 'error' },
    timeout: 300_000,
  });
  const output = [run.error?.message, run.stdout, run.stderr].filter(Boolean).join('\n');
  project.provide('libBuild', {
    ok: run.status === 0,
    output,
    ms: Math.round(performance.now() - start),
  });
}
