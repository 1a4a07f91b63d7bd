/**
 * Calibration: which copy engine moves each transfer shape faster on this
 * device, measured, not guessed. Both engines run the same transfers (few
 * large runs; many scattered pages; both directions) on scratch buffers, each
 * timed until its data is usable, interleaved, best of a few trials (what the
 * engine can do; a collection pause in one trial must not decide). The
 * result is cached per adapter in IndexedDB (idb-keyval), so a second attach
 * on the same adapter measures nothing.
 */
import { get, set } from 'idb-keyval';
import {
  BufferCopyEngine,
  PIPELINE_BATCH_BYTES,
  type BufferCopyOptions,
} from './buffer-copy-engine.ts';
import { STAGED_MIN_BYTES } from './mapped-staging.ts';
import { measureBlocks, wholePageShare, type BlockRates } from './calibrate-blocks.ts';
import { bestTimes } from './engine-timing.ts';
import { noteCommandUse } from './command-use.ts';
import type { CopyEngine, CopyEngineKind, Segment } from './copy-engine.ts';
import { KernelCopyEngine } from './kernel-copy-engine.ts';
import type { CopyEngineChoice } from './mirror-stats.ts';
import { CONTIGUOUS_MEAN_BYTES, totalBytes, type TransferShape } from './segments.ts';

/** Bump when what is measured changes: older cached calibrations are ignored. */
const CALIBRATION_VERSION = 6;
const CONTIGUOUS_BYTES = 8 << 20;
/** Pieces of the scattered shape, at most. */
const SCATTERED_PIECES = 512;
/** Large enough for several pipelined batches (PIPELINE_BATCH_BYTES). */
const READBACK_BYTES = 4 * PIPELINE_BATCH_BYTES;
/** Pipelining is used only when it wins clearly: it costs more mappings. */
const PIPELINING_MARGIN = 1.1;
/** A large upload, where staging and `writeBuffer` differ (STAGED_MIN_BYTES and more). */
const LARGE_UPLOAD_BYTES = 2 * STAGED_MIN_BYTES;
/** Staging is used only when it wins clearly: it holds mapped buffers. */
const STAGING_MARGIN = 1.1;

export interface Calibration {
  readonly choice: CopyEngineChoice;
  /** GB/s measured per direction, shape and engine. */
  readonly gbPerSecond: Record<
    'h2d' | 'd2h',
    Record<TransferShape, Record<CopyEngineKind, number>>
  >;
  /** Stale-block uploads, measured (calibrate-blocks.ts). */
  readonly blocks: BlockRates;
  /** GB/s of the buffer engine's contiguous readback, in one batch and pipelined. */
  readonly readbackGbPerSecond: { readonly single: number; readonly pipelined: number };
  /** GB/s of the buffer engine's large upload into used frames, by `writeBuffer` and staged. */
  readonly largeUploadGbPerSecond: { readonly writeBuffer: number; readonly staged: number };
  /** Bytes per piece of the scattered shape measured: the space's page size (see `scatteredPieceBytes`). */
  readonly scatteredPieceBytes: number;
  /** True if this came from the cache. */
  readonly cached: boolean;
}

/**
 * The piece size of the scattered shape for a space of `pageSize` pages: a
 * scattered transfer is made of whole pages (or parts of pages), so the
 * engines are compared on the space's own page, below the mean piece size at
 * which a transfer counts as contiguous (segments.ts).
 */
export function scatteredPieceBytes(pageSize: number): number {
  return Math.min(pageSize, CONTIGUOUS_MEAN_BYTES / 2);
}

/** The cache key: the adapter's identity and what bounds the measurement. */
export function calibrationKey(
  info: GPUAdapterInfo,
  limits: GPUSupportedLimits,
  pieceBytes: number,
): string {
  const { vendor, architecture, device, description } = info;
  return `webhmm-calibration-v${CALIBRATION_VERSION}:${vendor}|${architecture}|${device}|${description}|${limits.maxBufferSize}|${pieceBytes}`;
}

/**
 * The cached calibration for this device's adapter and a space of
 * `pageSize` pages, or a fresh measurement (then cached).
 */
export async function calibrate(device: GPUDevice, pageSize: number): Promise<Calibration> {
  const pieceBytes = scatteredPieceBytes(pageSize);
  const key = calibrationKey(device.adapterInfo, device.limits, pieceBytes);
  const stored = await readCache(key);
  if (stored) return { ...stored, cached: true };
  const measured = await measure(device, pieceBytes);
  await writeCache(key, measured);
  return { ...measured, cached: false };
}

async function measure(
  device: GPUDevice,
  pieceBytes: number,
): Promise<Omit<Calibration, 'cached'>> {
  const { gbPerSecond, blocks } = await measureEngines(device, pieceBytes);
  const readback = await measureReadbackPipelining(device);
  const largeUpload = await measureStagedUploads(device);
  const pick = (rates: Record<CopyEngineKind, number>): CopyEngineKind =>
    rates.kernel > rates.buffer ? 'kernel' : 'buffer';
  const best = (rates: Record<CopyEngineKind, number>) => Math.max(rates.kernel, rates.buffer);
  const choice: CopyEngineChoice = {
    h2d: {
      contiguous: pick(gbPerSecond.h2d.contiguous),
      scattered: pick(gbPerSecond.h2d.scattered),
      blocks: pick(blocks.gbPerSecond),
    },
    d2h: {
      contiguous: pick(gbPerSecond.d2h.contiguous),
      scattered: pick(gbPerSecond.d2h.scattered),
    },
    pipelinedReadback: readback.pipelined > readback.single * PIPELINING_MARGIN,
    stagedUploads: largeUpload.staged > largeUpload.writeBuffer * STAGING_MARGIN,
    wholePageShare: wholePageShare(blocks, best(gbPerSecond.h2d.scattered)),
  };
  return {
    choice,
    gbPerSecond,
    blocks,
    readbackGbPerSecond: readback,
    largeUploadGbPerSecond: largeUpload,
    scatteredPieceBytes: pieceBytes,
  };
}

/** Scratch for a measurement: CPU memory and a frames buffer of `size` bytes. */
function scratch(device: GPUDevice, size: number) {
  const memory = new SharedArrayBuffer(size);
  new Uint8Array(memory).fill(0x5a);
  const frames = device.createBuffer({
    label: 'webhmm calibration frames',
    size,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
  return { device, frames, memory };
}

/** Both engines, both directions, both shapes, and the blocks shape (uploads only), interleaved; GB/s. */
async function measureEngines(
  device: GPUDevice,
  pieceBytes: number,
): Promise<Pick<Calibration, 'gbPerSecond' | 'blocks'>> {
  const context = scratch(device, CONTIGUOUS_BYTES);
  const engines: Record<CopyEngineKind, CopyEngine> = {
    buffer: new BufferCopyEngine(context),
    kernel: new KernelCopyEngine(context),
  };
  try {
    const shapes: Record<TransferShape, Segment[]> = {
      contiguous: [{ va: 0, frameOffset: 0, len: CONTIGUOUS_BYTES }],
      scattered: scatteredPieces(CONTIGUOUS_BYTES, pieceBytes),
    };
    const gbPerSecond = { h2d: {}, d2h: {} } as Calibration['gbPerSecond'];
    for (const direction of ['h2d', 'd2h'] as const) {
      for (const shape of ['contiguous', 'scattered'] as const) {
        const segments = shapes[shape];
        const ms = await bestTimes(engines, (engine) =>
          timeTransfer(device, engine, direction, segments),
        );
        const bytes = totalBytes(segments);
        gbPerSecond[direction][shape] = {
          buffer: bytes / 1e6 / ms.buffer,
          kernel: bytes / 1e6 / ms.kernel,
        };
      }
    }
    const blocks = await measureBlocks(device, engines, CONTIGUOUS_BYTES, pieceBytes);
    return { gbPerSecond, blocks };
  } finally {
    engines.buffer.destroy();
    engines.kernel.destroy();
    context.frames.destroy();
  }
}

/** The buffer engine's readback of READBACK_BYTES in one batch and pipelined, interleaved; GB/s. */
function measureReadbackPipelining(device: GPUDevice): Promise<Calibration['readbackGbPerSecond']> {
  return compareBufferEngines(device, READBACK_BYTES, 'd2h', {
    single: {},
    pipelined: { pipelinedReadback: true },
  });
}

/**
 * The buffer engine's LARGE_UPLOAD_BYTES upload by `writeBuffer` and staged,
 * interleaved; GB/s. The frames are first read by a command, as a mirror's
 * frames are by every run: Dawn's `writeBuffer` into a buffer no command has
 * used takes a faster path that a mirror never sees.
 */
function measureStagedUploads(device: GPUDevice): Promise<Calibration['largeUploadGbPerSecond']> {
  const useFrames = (frames: GPUBuffer): void => {
    const probe = device.createBuffer({ size: 4, usage: GPUBufferUsage.COPY_DST });
    const encoder = device.createCommandEncoder();
    encoder.copyBufferToBuffer(frames, 0, probe, 0, 4);
    noteCommandUse(frames);
    device.queue.submit([encoder.finish()]);
    probe.destroy(); // freed once the copy is done
  };
  return compareBufferEngines(
    device,
    LARGE_UPLOAD_BYTES,
    'h2d',
    { writeBuffer: {}, staged: { stagedUploads: true } },
    useFrames,
  );
}

/**
 * The buffer engine with each of `variants`' options moving `bytes` in one
 * piece in `direction`, interleaved, best of TRIALS; GB/s per variant.
 * `prepare` sees the scratch frames first.
 */
async function compareBufferEngines<Name extends string>(
  device: GPUDevice,
  bytes: number,
  direction: 'h2d' | 'd2h',
  variants: Record<Name, BufferCopyOptions>,
  prepare?: (frames: GPUBuffer) => void,
): Promise<Record<Name, number>> {
  const context = scratch(device, bytes);
  const names = Object.keys(variants) as Name[];
  const engines = Object.fromEntries(
    names.map((name) => [name, new BufferCopyEngine(context, variants[name])]),
  ) as Record<Name, BufferCopyEngine>;
  try {
    prepare?.(context.frames);
    const whole = [{ va: 0, frameOffset: 0, len: bytes }];
    const ms = await bestTimes(engines, (engine) => timeTransfer(device, engine, direction, whole));
    return Object.fromEntries(names.map((name) => [name, bytes / 1e6 / ms[name]])) as Record<
      Name,
      number
    >;
  } finally {
    for (const name of names) engines[name].destroy();
    context.frames.destroy();
  }
}

/** Up to SCATTERED_PIECES pieces of `piece` bytes at spread-out places of `size` bytes, frames shuffled. */
function scatteredPieces(size: number, piece: number): Segment[] {
  const slots = size / piece;
  const stride = Math.max(1, Math.floor(slots / SCATTERED_PIECES));
  const segments: Segment[] = [];
  for (let i = 0; i < SCATTERED_PIECES && i * stride < slots; i++) {
    const page = i * stride;
    // A different frame than VA, as page tables make it (7 is coprime to the power-of-two slots).
    const frame = (page * 7 + 3) % slots;
    segments.push({ va: page * piece, frameOffset: frame * piece, len: piece });
  }
  return segments;
}

async function timeTransfer(
  device: GPUDevice,
  engine: CopyEngine,
  direction: 'h2d' | 'd2h',
  segments: readonly Segment[],
): Promise<number> {
  const started = performance.now();
  if (direction === 'h2d') {
    engine.upload(segments);
    await device.queue.onSubmittedWorkDone();
  } else {
    await engine.download(segments);
  }
  return performance.now() - started;
}

async function readCache(key: string): Promise<Omit<Calibration, 'cached'> | undefined> {
  if (typeof indexedDB === 'undefined') return undefined;
  try {
    return await get<Omit<Calibration, 'cached'>>(key);
  } catch {
    return undefined; // a private window or a blocked store: measure instead
  }
}

async function writeCache(key: string, value: Omit<Calibration, 'cached'>): Promise<void> {
  if (typeof indexedDB === 'undefined') return;
  try {
    await set(key, value);
  } catch {
    // Not cached: the next attach measures again.
  }
}
