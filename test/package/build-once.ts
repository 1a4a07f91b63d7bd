// Global setup of both projects: builds the library (`npm run build:lib`) unless dist/
// is newer than every source file, so the package tests check the dist/ of the current
// sources. A failed build does not abort the other tests; the package tests report it
// with the build's output.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
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
  if (builtAfter(join(root, 'dist'), newest(join(root, 'src')))) {
    project.provide('libBuild', { ok: true, output: 'dist/ is up to date', ms: 0 });
    return;
  }
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

/** The newest modification time of the files under `dir`, ms. */
function newest(dir: string): number {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    latest = Math.max(latest, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs);
  }
  return latest;
}

/** Whether dist/ holds a build made after `time`. */
function builtAfter(dist: string, time: number): boolean {
  const files = ['index.js', 'index.d.ts'].map((name) => join(dist, name));
  return files.every((file) => existsSync(file) && statSync(file).mtimeMs > time);
}
