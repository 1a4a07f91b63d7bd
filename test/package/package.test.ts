// The published package, used the way an app uses it: by name, through package.json
// `exports`, from the built dist/ (built by build-once.ts before this project runs).
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, inject, it } from 'vitest';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const npmEnv = { ...process.env, npm_config_loglevel: 'error' };

interface PackageJson {
  name: string;
  exports: { '.': { types: string; import: string } };
}
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as PackageJson;

function requireBuild(): void {
  const build = inject('libBuild');
  if (!build.ok) throw new Error(`npm run build:lib failed:\n${build.output}`);
}

async function sourceExportNames(): Promise<string[]> {
  const source = (await import('../../src/index.ts')) as Record<string, unknown>;
  return Object.keys(source).sort();
}

describe('the webhmm package', { timeout: 60_000 }, () => {
  it('builds from the current sources with vite and tsc', () => {
    const build = inject('libBuild');
    expect(build.ok, `npm run build:lib failed:\n${build.output}`).toBe(true);
  });

  it('resolves by name in Node to dist/index.js, with the same exports as src/index.ts', async () => {
    requireBuild();
    // Node's own resolver, from the project root: package self-reference through `exports`.
    const script = `
      const module = await import('webhmm');
      console.log(JSON.stringify({ url: import.meta.resolve('webhmm'), names: Object.keys(module).sort() }));`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], {
      cwd: root,
    });
    const loaded = JSON.parse(stdout) as { url: string; names: string[] };
    expect(fileURLToPath(loaded.url)).toBe(join(root, pkg.exports['.'].import));
    expect(loaded.names).toEqual(await sourceExportNames());
  });

  it('works by name in Node: allocate, write, read, snapshot, free, notices, typed errors', async () => {
    requireBuild();
    const script = `
      import { AddressSpace, AccessError } from 'webhmm';
      const space = AddressSpace.create({ size: 1 << 20, pageSize: 4096 });
      const va = space.alloc(8192);
      const events = [];
      space.onInvalidate(va, 8192, (event) => events.push(event));
      space.write(va, new Uint32Array([41]));
      space.atomicAddU32(va, 1);
      const value = space.getU32(va);
      const states = space.snapshot(va, 8192).map((page) => page.state);
      space.free(va);
      let error;
      try { space.getU32(va); } catch (caught) { error = { isAccess: caught instanceof AccessError, code: caught.code, reason: caught.reason }; }
      console.log(JSON.stringify({ value, states, events, error }));`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], {
      cwd: root,
    });
    expect(JSON.parse(stdout)).toEqual({
      value: 42,
      states: ['cpu', 'zero'],
      events: [{ va: 4096, len: 8192, cause: 'free' }],
      error: { isAccess: true, code: 'ACCESS', reason: 'freed' },
    });
  });

  it('resolves by name through Vite too, to the same exports', async () => {
    requireBuild();
    // A non-literal specifier keeps tsc from needing dist/ while type-checking.
    const name = pkg.name;
    const module = (await import(/* @vite-ignore */ name)) as Record<string, unknown>;
    expect(Object.keys(module).sort()).toEqual(await sourceExportNames());
  });

  it('ships dist/index.js and its type declarations, and nothing from src/', async () => {
    requireBuild();
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
      cwd: root,
      env: npmEnv,
    });
    const [packed] = JSON.parse(stdout) as [{ files: { path: string }[] }];
    const files = packed.files.map((file) => file.path);
    expect(files).toContain('package.json');
    expect(files).toContain(pkg.exports['.'].import.replace(/^\.\//, ''));
    expect(files).toContain(pkg.exports['.'].types.replace(/^\.\//, ''));
    expect(files.filter((file) => file.startsWith('src/') || file.startsWith('test/'))).toEqual([]);
  });

  it('type-checks in an app that resolves it with NodeNext and checks its .d.ts files', async () => {
    requireBuild();
    expect(existsSync(join(root, pkg.exports['.'].types))).toBe(true);
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const fixture = join(root, 'test', 'package', 'fixture', 'tsconfig.json');
    const result = await run(process.execPath, [tsc, '-p', fixture], { cwd: root }).then(
      () => ({ ok: true, output: '' }),
      (error: { stdout?: string; stderr?: string }) => ({
        ok: false,
        output: `${error.stdout ?? ''}${error.stderr ?? ''}`,
      }),
    );
    expect(result.ok, `tsc on the app fixture failed:\n${result.output}`).toBe(true);
  });
});
