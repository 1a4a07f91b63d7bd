// The copy engines on real WebGPU: byte-identical results, nothing outside
// the segments touched, no GPU buffers created in steady state, calibration
// cached per adapter.
import { del } from 'idb-keyval';
import { afterEach, describe, expect, it } from 'vitest';
import { BufferCopyEngine, PIPELINE_BATCH_BYTES } from '../../src/gpu/buffer-copy-engine.ts';
import { wholePageShare } from '../../src/gpu/calibrate-blocks.ts';
import { calibrate, calibrationKey, scatteredPieceBytes } from '../../src/gpu/calibration.ts';
import { noteCommandUse } from '../../src/gpu/command-use.ts';
import type { BlockUpload, CopyEngine, Segment } from '../../src/gpu/copy-engine.ts';
import { KernelCopyEngine } from '../../src/gpu/kernel-copy-engine.ts';
import {
  STAGED_CHUNK_BYTES,
  STAGED_CHUNKS,
  STAGED_MIN_BYTES,
} from '../../src/gpu/mapped-staging.ts';
import { totalBytes } from '../../src/gpu/segments.ts';
import { countBlocks, forEachRun, markBlocks } from '../../src/space/stale-blocks.ts';
import { testDevice, type TestDevice } from '../support/gpu.ts';
import { firstDifference, testRandom, type Random } from '../support/random.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const POISON = 0xee;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Rig {
  readonly test: TestDevice;
  readonly memory: SharedArrayBuffer;
  readonly frames: GPUBuffer;
  /** The buffer engine three times: as is, with pipelined readback, with staged uploads. */
  readonly engines: Record<'buffer' | 'kernel' | 'pipelined' | 'staged', CopyEngine>;
}

async function rig(size: number): Promise<Rig> {
  const test = await testDevice();
  const memory = new SharedArrayBuffer(size);
  const frames = test.device.createBuffer({
    label: 'test frames',
    size,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
  const context = { device: test.device, frames, memory };
  const engines = {
    buffer: new BufferCopyEngine(context),
    kernel: new KernelCopyEngine(context),
    pipelined: new BufferCopyEngine(context, { pipelinedReadback: true }),
    staged: new BufferCopyEngine(context, { stagedUploads: true }),
  };
  cleanups.push(async () => {
    for (const engine of Object.values(engines)) engine.destroy();
    frames.destroy();
    expect(await test.validationError()).toBeUndefined();
    expect(test.liveBuffers()).toBe(0);
    test.destroy();
  });
  return { test, memory, frames, engines };
}

/** Random segments: whole pages at random frames, and byte ranges (4-byte aligned) inside pages. */
function randomSegments(random: Random, size: number, page: number, count: number): Segment[] {
  const slots = size / page;
  const vaSlots = new Set<number>();
  const frameSlots = new Set<number>();
  while (vaSlots.size < count) vaSlots.add(random.int(slots));
  while (frameSlots.size < count) frameSlots.add(random.int(slots));
  const frames = [...frameSlots];
  return [...vaSlots].map((slot, i) => {
    const whole = random.next() < 0.5;
    const lo = whole ? 0 : 4 * random.int(page / 8);
    const len = whole ? page : 4 * (1 + random.int((page - lo) / 4));
    return { va: slot * page + lo, frameOffset: (frames[i] ?? 0) * page + lo, len };
  });
}

async function readFrames(rig: Rig, size: number): Promise<Uint8Array> {
  const staging = rig.test.device.createBuffer({
    size,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const encoder = rig.test.device.createCommandEncoder();
  encoder.copyBufferToBuffer(rig.frames, 0, staging, 0, size);
  noteCommandUse(rig.frames);
  rig.test.device.queue.submit([encoder.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const bytes = new Uint8Array(staging.getMappedRange().slice(0));
  staging.destroy();
  return bytes;
}

function poisonFrames(rig: Rig, size: number): void {
  rig.test.device.queue.writeBuffer(rig.frames, 0, new Uint8Array(size).fill(POISON));
}

describe('copy engines', () => {
  it('upload the same bytes, and only those, for random pages and byte ranges', async () => {
    const random = testRandom('engine upload');
    const size = 4 * MiB;
    const r = await rig(size);
    const cpu = new Uint8Array(r.memory);
    random.fill(cpu);
    const segments = randomSegments(random, size, 4 * KiB, 300);
    const results: Uint8Array[] = [];
    for (const kind of ['buffer', 'kernel'] as const) {
      poisonFrames(r, size);
      r.engines[kind].upload(segments);
      results.push(await readFrames(r, size));
    }
    const expected = new Uint8Array(size).fill(POISON);
    for (const segment of segments)
      expected.set(cpu.subarray(segment.va, segment.va + segment.len), segment.frameOffset);
    expect(firstDifference(results[0]!, expected)).toBe(-1);
    expect(firstDifference(results[1]!, expected)).toBe(-1);
  });

  it('upload the marked blocks of pages, and only those, both engines alike', async () => {
    const random = testRandom('engine blocks');
    const size = 4 * MiB;
    const page = 64 * KiB;
    const r = await rig(size);
    const cpu = new Uint8Array(r.memory);
    random.fill(cpu);
    // Each page at another frame, stale in random writes (some pages all but empty, some dense).
    const pages: BlockUpload[] = [];
    for (let p = 0; p < size / page; p++) {
      const bits = new Int32Array(page / 16 / 32);
      const writes = random.int(2) === 0 ? random.int(4) : random.int(2000);
      for (let w = 0; w < writes; w++) {
        const lo = 4 * random.int(page / 4);
        markBlocks(bits, 0, lo, Math.min(page, lo + 4 + 4 * random.int(16)));
      }
      const frame = (p * 7 + 3) % (size / page);
      const blocks = new Uint32Array(bits);
      pages.push({ va: p * page, frameOffset: frame * page, blocks, count: countBlocks(blocks) });
    }
    const original = cpu.slice();
    const expected = new Uint8Array(size).fill(POISON);
    for (const { va, frameOffset, blocks } of pages) {
      forEachRun(blocks, (lo, hi) =>
        expected.set(original.subarray(va + lo, va + hi), frameOffset + lo),
      );
    }
    for (const kind of ['buffer', 'kernel'] as const) {
      cpu.set(original);
      poisonFrames(r, size);
      r.engines[kind].uploadBlocks(pages);
      cpu.fill(0x11); // the bytes were captured at the call: later CPU writes do not reach the GPU
      expect(firstDifference(await readFrames(r, size), expected), kind).toBe(-1);
    }
  });

  it('download and read the same bytes, and only those, for random pages and byte ranges', async () => {
    const random = testRandom('engine download');
    const size = 32 * MiB; // the pipelined readback cuts what is 16 MiB or more
    const r = await rig(size);
    const gpuBytes = random.fill(new Uint8Array(size));
    r.test.device.queue.writeBuffer(r.frames, 0, gpuBytes);
    const segments = randomSegments(random, size, 64 * KiB, 500);
    expect(totalBytes(segments)).toBeGreaterThanOrEqual(2 * PIPELINE_BATCH_BYTES);
    const expected = new Uint8Array(size).fill(POISON);
    for (const segment of segments) {
      expected.set(
        gpuBytes.subarray(segment.frameOffset, segment.frameOffset + segment.len),
        segment.va,
      );
    }
    const packed = new Uint8Array(segments.reduce((sum, s) => sum + s.len, 0));
    let at = 0;
    for (const segment of segments) {
      packed.set(gpuBytes.subarray(segment.frameOffset, segment.frameOffset + segment.len), at);
      at += segment.len;
    }
    for (const kind of ['buffer', 'kernel', 'pipelined'] as const) {
      const cpu = new Uint8Array(r.memory).fill(POISON);
      await r.engines[kind].download(segments);
      expect(firstDifference(cpu, expected), kind).toBe(-1);
      expect(firstDifference(await r.engines[kind].read(segments), packed), kind).toBe(-1);
    }
  });

  it('move one 64 MiB segment both ways intact', async () => {
    const random = testRandom('engine 64 MiB');
    const size = 64 * MiB;
    const r = await rig(size);
    const cpu = new Uint8Array(r.memory);
    const data = random.fill(new Uint8Array(size));
    for (const kind of ['buffer', 'kernel', 'pipelined', 'staged'] as const) {
      cpu.set(data);
      poisonFrames(r, size);
      r.engines[kind].upload([{ va: 0, frameOffset: 0, len: size }]);
      cpu.fill(POISON);
      await r.engines[kind].download([{ va: 0, frameOffset: 0, len: size }]);
      expect(firstDifference(cpu, data), kind).toBe(-1);
    }
  });

  it('create no GPU buffer in steady state', async () => {
    const random = testRandom('engine steady state');
    const size = 2 * MiB;
    const r = await rig(size);
    const segments = randomSegments(random, size, 4 * KiB, 64);
    const blocks = [
      { va: 0, frameOffset: 4096, blocks: new Uint32Array(8).fill(0x01010101), count: 32 },
    ];
    const transfer = async (engine: CopyEngine) => {
      engine.upload(segments);
      engine.uploadBlocks(blocks);
      await engine.download(segments);
      await engine.read(segments);
    };
    for (const engine of Object.values(r.engines)) await transfer(engine);
    const warm = r.test.liveBuffers();
    for (let round = 0; round < 5; round++) {
      for (const engine of Object.values(r.engines)) await transfer(engine);
    }
    expect(r.test.liveBuffers()).toBe(warm);
  });
});

describe('staged uploads', () => {
  it('upload the same bytes, and only those, across chunk ends, as they were at the call', async () => {
    const random = testRandom('staged upload');
    const size = 32 * MiB;
    const r = await rig(size);
    const cpu = new Uint8Array(r.memory);
    random.fill(cpu);
    const segments = randomSegments(random, size, 64 * KiB, 300);
    // Enough to be staged, in several chunks, so pieces are split at chunk ends.
    expect(totalBytes(segments)).toBeGreaterThan(STAGED_MIN_BYTES);
    const expected = new Uint8Array(size).fill(POISON);
    for (const segment of segments)
      expected.set(cpu.subarray(segment.va, segment.va + segment.len), segment.frameOffset);
    poisonFrames(r, size);
    await readFrames(r, 4); // a command has used the frames
    r.engines.staged.upload(segments);
    cpu.fill(0x11); // packed at the call: later CPU writes do not reach the GPU
    expect(firstDifference(await readFrames(r, size), expected)).toBe(-1);
    expect(stagingOf(r)).toBe(Math.ceil(totalBytes(segments) / STAGED_CHUNK_BYTES));
  });

  it('leave small uploads, and uploads into frames no command has used, to writeBuffer', async () => {
    const size = 2 * STAGED_MIN_BYTES;
    const r = await rig(size);
    new Uint8Array(r.memory).fill(7);
    r.engines.staged.upload([{ va: 0, frameOffset: 0, len: size }]);
    expect(stagingOf(r)).toBe(0); // the frames' first command is yet to come
    expect((await readFrames(r, size)).every((byte) => byte === 7)).toBe(true);
    new Uint8Array(r.memory).fill(8);
    r.engines.staged.upload([{ va: 0, frameOffset: 0, len: STAGED_MIN_BYTES - 4096 }]);
    expect(stagingOf(r)).toBe(0);
    const frames = await readFrames(r, size);
    expect(frames[STAGED_MIN_BYTES - 4097]).toBe(8);
    expect(frames[STAGED_MIN_BYTES - 4096]).toBe(7);
  });

  it('reuse their mapped chunks, make at most STAGED_CHUNKS, and send what finds none by writeBuffer', async () => {
    const size = 4 * STAGED_MIN_BYTES;
    const r = await rig(size);
    const memory = new Uint8Array(r.memory);
    const whole = [{ va: 0, frameOffset: 0, len: size }];
    await readFrames(r, 4);
    r.engines.staged.upload(whole);
    await readFrames(r, 4); // the chunks are mapped again once their copy is done
    const warm = r.test.liveBuffers();
    for (let round = 0; round < 5; round++) {
      r.engines.staged.upload(whole);
      await readFrames(r, 4);
    }
    expect(r.test.liveBuffers()).toBe(warm);
    expect(stagingOf(r)).toBe(size / STAGED_CHUNK_BYTES);
    // Back to back, the chunks are still in flight: new ones up to the bound, then writeBuffer.
    for (let burst = 1; burst <= 6; burst++) {
      memory.fill(burst);
      r.engines.staged.upload(whole);
      expect(stagingOf(r)).toBeLessThanOrEqual(STAGED_CHUNKS);
    }
    expect(stagingOf(r)).toBe(STAGED_CHUNKS);
    expect((await readFrames(r, size)).every((byte) => byte === 6)).toBe(true);
  });

  it('free every chunk when the device is lost while they are mapped again', async () => {
    const size = 2 * STAGED_MIN_BYTES;
    const r = await rig(size);
    await readFrames(r, 4);
    r.engines.staged.upload([{ va: 0, frameOffset: 0, len: size }]);
    expect(stagingOf(r)).toBe(size / STAGED_CHUNK_BYTES);
    const lost = r.test.device.lost;
    r.test.device.destroy(); // while the chunks' mapAsync is pending
    await lost;
    await new Promise((resolve) => setTimeout(resolve, 100));
    for (const engine of Object.values(r.engines)) engine.destroy();
    r.frames.destroy();
    expect(r.test.liveBuffers()).toBe(0);
  });
});

function stagingOf(r: Rig): number {
  return (r.engines.staged as BufferCopyEngine).stagingCreated;
}

describe('calibration', () => {
  it('measures both engines per direction and shape, then reuses the cached result', async () => {
    const test = await testDevice();
    cleanups.push(() => test.destroy());
    await del(calibrationKey(test.device.adapterInfo, test.device.limits, 4096));
    const first = await calibrate(test.device, 4096);
    expect(first.cached).toBe(false);
    expect(first.scatteredPieceBytes).toBe(4096);
    for (const direction of ['h2d', 'd2h'] as const) {
      for (const shape of ['contiguous', 'scattered'] as const) {
        const rates = first.gbPerSecond[direction][shape];
        expect(rates.buffer).toBeGreaterThan(0);
        expect(rates.kernel).toBeGreaterThan(0);
        expect(first.choice[direction][shape]).toBe(
          rates.kernel > rates.buffer ? 'kernel' : 'buffer',
        );
      }
    }
    const blocks = first.blocks.gbPerSecond;
    expect(blocks.buffer).toBeGreaterThan(0);
    expect(blocks.kernel).toBeGreaterThan(0);
    expect(first.choice.h2d.blocks).toBe(blocks.kernel > blocks.buffer ? 'kernel' : 'buffer');
    const best = (rates: { buffer: number; kernel: number }) =>
      Math.max(rates.buffer, rates.kernel);
    expect(first.choice.wholePageShare).toBe(
      wholePageShare(first.blocks, best(first.gbPerSecond.h2d.scattered)),
    );
    const { single, pipelined } = first.readbackGbPerSecond;
    expect(single).toBeGreaterThan(0);
    expect(pipelined).toBeGreaterThan(0);
    expect(first.choice.pipelinedReadback).toBe(pipelined > single * 1.1);
    const { writeBuffer, staged } = first.largeUploadGbPerSecond;
    expect(writeBuffer).toBeGreaterThan(0);
    expect(staged).toBeGreaterThan(0);
    expect(first.choice.stagedUploads).toBe(staged > writeBuffer * 1.1);
    console.log(`calibration: ${JSON.stringify(first)}`);
    const second = await calibrate(test.device, 4096);
    expect(second).toEqual({ ...first, cached: true });
    expect(await test.validationError()).toBeUndefined();
    expect(test.liveBuffers()).toBe(0);
  });

  it("compares the engines on scattered pieces of the space's page size, cached per size", async () => {
    const test = await testDevice();
    cleanups.push(() => test.destroy());
    // Pages of 256 KiB and more would make a transfer count as contiguous: capped below.
    expect([4096, 65536, 262144, 2 << 20].map(scatteredPieceBytes)).toEqual([
      4096, 65536, 131072, 131072,
    ]);
    const { adapterInfo, limits } = test.device;
    expect(calibrationKey(adapterInfo, limits, 65536)).not.toBe(
      calibrationKey(adapterInfo, limits, 4096),
    );
    await del(calibrationKey(adapterInfo, limits, 65536));
    const measured = await calibrate(test.device, 65536);
    expect({ cached: measured.cached, piece: measured.scatteredPieceBytes }).toEqual({
      cached: false,
      piece: 65536,
    });
    expect(measured.gbPerSecond.h2d.scattered.buffer).toBeGreaterThan(0);
    expect(await calibrate(test.device, 65536)).toEqual({ ...measured, cached: true });
    expect(test.liveBuffers()).toBe(0);
  });
});
