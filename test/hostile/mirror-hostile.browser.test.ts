// Hostile input to GpuMirror and Threads, in real Chromium with real WebGPU
// and real workers: every 'mirror', 'device' and 'threads' case of cases.ts,
// each on a fresh space laid out by layOut. A refused call throws the typed
// error the contract names and changes nothing (the space, the mirror's
// frames in use, the device's live GPU buffers, the worker still alive); a
// call that detach() races ends and loses nothing.
import { afterEach, describe, expect, it } from 'vitest';
import { AddressSpace } from '../../src/space/address-space.ts';
import { Threads } from '../../src/threads/threads.ts';
import { testDevice } from '../support/gpu.ts';
import { testMirror } from '../support/mirror.ts';
import { casesNeeding, namedCases } from './cases.ts';
import { BUDGET, SIZE, isEnds, layOut, spaceOptions, type HostileContext } from './context.ts';
import type { HostileThreadApi } from './hostile-thread.worker.ts';
import { checkEnds, checkRefusal } from './run-case.ts';

/** Waits long enough for a software adapter, short enough that a call waiting for itself fails soon. */
const FAULT_TIMEOUT_MS = 2000;

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function laidOutSpace(): AddressSpace {
  const space = AddressSpace.create(spaceOptions(FAULT_TIMEOUT_MS));
  layOut(space);
  return space;
}

describe('hostile input to GpuMirror', () => {
  it.each(namedCases(casesNeeding('mirror')))('%s', async (_name, c) => {
    const { space, gpu } = await testMirror(
      spaceOptions(FAULT_TIMEOUT_MS),
      { budget: BUDGET, copy: 'buffer' },
      cleanups,
    );
    layOut(space);
    const ctx: HostileContext = { space, gpu, cleanups: [] };
    if (isEnds(c.expect)) {
      const did = await checkEnds(c, ctx, gpu);
      console.info(`hostile: ${c.call} with ${c.input}: ${did}`);
    } else {
      await checkRefusal(c, ctx, () => ({ framesInUse: gpu.stats().framesInUse }));
    }
  });

  it.each(namedCases(casesNeeding('device')))('%s', async (_name, c) => {
    const test = await testDevice();
    cleanups.push(() => test.destroy());
    const ctx: HostileContext = { space: laidOutSpace(), device: test.device, cleanups: [] };
    await checkRefusal(c, ctx, () => ({ gpuBuffers: test.liveBuffers() }));
    expect(await test.validationError()).toBeUndefined();
  });
});

describe('hostile input to Threads', () => {
  it.each(namedCases(casesNeeding('threads')))('%s', async (_name, c) => {
    const space = laidOutSpace();
    const workerSource = new URL('./hostile-thread.worker.ts', import.meta.url);
    const threads = await Threads.spawn<HostileThreadApi>(space, workerSource, 1);
    cleanups.push(() => threads.terminate());
    await checkRefusal(c, { space, threads, workerSource, cleanups: [] });
    // A refused terminate ended nothing: the worker still answers.
    expect(await threads.workers[0]?.alive()).toEqual({ index: 0, size: SIZE });
  });
});
