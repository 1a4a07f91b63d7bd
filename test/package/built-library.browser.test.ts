// The built library (dist/) in a browser, as an app that embeds it uses it:
// an address space, a GPU mirror and Threads whose worker imports dist/ too.
import { expect, inject, it } from 'vitest';
import type * as Webhmm from '../../src/index.ts';

it('spawns threads from dist/ that share a space with the page and the GPU', async () => {
  const build = inject('libBuild');
  if (!build.ok) throw new Error(`npm run build:lib failed:\n${build.output}`);
  const built = '/dist/index.js';
  const { AddressSpace, GpuMirror, Threads } = (await import(
    /* @vite-ignore */ built
  )) as typeof Webhmm;
  const space = AddressSpace.create({ size: 1 << 20, pageSize: 4096 });
  const gpu = await GpuMirror.attach(space);
  const threads = await Threads.spawn<{ add(va: number, value: number): number }>(
    space,
    new URL('./built-thread.worker.js', import.meta.url),
    2,
  );
  try {
    const va = space.alloc(4096);
    await gpu.write(va, new Uint32Array([40])); // GPU-dirty: the workers fault it back
    const seen = await threads.map((thread, i) => thread.add(va, 1 + i));
    expect(seen.sort()).toEqual(seen[0] === 41 ? [41, 43] : [42, 43]);
    expect(space.getU32(va)).toBe(43);
  } finally {
    await threads.terminate();
    await gpu.detach();
  }
});
