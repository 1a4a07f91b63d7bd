/**
 * A batch of pipelined runs: runs with `uses` encoded back to back into one
 * command encoder, each copying its status block and dirty bitmap into its
 * own slot of one readback buffer, submitted together and read back by one
 * `mapAsync` once the batch closes (kernel-runtime.ts closes it when no run
 * waits to submit). So a chain of N runs costs one submit and one round
 * trip, not N.
 *
 * - What differs per pass (the initial status block, the control words, the
 *   parameters, the declared pages' page table entries) is staged at its own offset of the batch's
 *   staging buffer, written once just before the submit, and copied into
 *   the shared buffers by the encoder right before the pass.
 * - Work submitted meanwhile by the runs' fetches (uploads, device page
 *   table entries) lands before the batch's passes; it only touches pages
 *   the batch does not hold, or entries the batch's passes do not read.
 *
 * - The batch holds the union of its runs' pages until it completes: a later
 *   run of the same batch joins the holds it needs that the batch has (a
 *   page held for writing serves any access, one held as a device read
 *   serves reads), and takes the rest itself (declared-run.ts).
 * - On completion the runs are settled in submission order, each from its
 *   own slot (its dirty pages marked, its error decoded), so an error in the
 *   middle of a chain fails only that run; then the pages they stored to
 *   whose advice asks for it are written through (gpu/advice.ts: a failure
 *   there fails every run of the batch); then every hold is released and
 *   the invalidations the fetches caused are announced; then the runs'
 *   promises settle.
 * - If the readback fails (the device was lost), every run of the batch
 *   rejects with that failure: none of them was acknowledged.
 */
import { invariant } from '../errors.ts';
import type { MirrorHost } from '../gpu/mirror-host.ts';
import type { InvalidateEvent } from '../space/notifier.ts';
import type { HoldKind } from '../space/page-lock.ts';
import type { Hold } from '../space/page-table.ts';
import { decodeStatus, type PassStatus } from './pass-status.ts';

/** The most runs one batch takes; a full batch closes and the next run opens another. */
export const BATCH_SLOTS = 32;
/** Bytes of per-pass data one batch stages by default (a run needing more gets a batch of its own size). */
export const BATCH_STAGING_BYTES = 64 << 10;

/** The GPU buffers one batch uses: its readback slots and its staging. */
export interface BatchBuffers {
  /** MAP_READ, BATCH_SLOTS slots. */
  readonly readback: GPUBuffer;
  /** COPY_SRC | COPY_DST, the per-pass data. */
  readonly staging: GPUBuffer;
  /** The CPU side of `staging`, the size of it. */
  readonly staged: Uint8Array<ArrayBuffer>;
}

interface Entry {
  readonly settle: (status: PassStatus) => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

export class RunBatch {
  private readonly entries: Entry[] = [];
  private readonly holds: Hold[] = [];
  private readonly events: InvalidateEvent[] = [];
  /** The kind of the hold the batch has on each page it holds. */
  private readonly held = new Map<number, HoldKind>();
  private closed = false;
  /** The commands of the batch's passes not submitted yet. */
  encoder: GPUCommandEncoder;
  /** Passes encoded into `encoder`. */
  private encodedSince = 0;
  /** Staged bytes already written to the staging buffer (by `submitEncoded`). */
  private writtenBytes = 0;
  private stagedBytes = 0;

  /**
   * @param buffers readback of BATCH_SLOTS slots of `slotWords` u32, and staging
   * @param done called with the buffers once the batch no longer needs them
   *   (true: they can be used again; false: the readback failed)
   */
  constructor(
    private readonly host: MirrorHost,
    readonly buffers: BatchBuffers,
    readonly slotWords: number,
    private readonly done: (buffers: BatchBuffers, reusable: boolean) => void,
  ) {
    this.encoder = host.device.createCommandEncoder({ label: 'webhmm kernel batch' });
  }

  /** Whether `bytes` more of per-pass data fit the batch's staging. */
  fits(bytes: number): boolean {
    return this.stagedBytes + bytes <= this.buffers.staged.length;
  }

  /** Stages `data` for a pass; returns its byte offset in the staging buffer (16-aligned). */
  stage(data: Uint8Array | Uint32Array | ArrayBuffer): number {
    const bytes =
      data instanceof ArrayBuffer
        ? new Uint8Array(data)
        : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    invariant(this.fits(bytes.byteLength), 'staged past the batch staging');
    const offset = this.stagedBytes;
    this.buffers.staged.set(bytes, offset);
    this.stagedBytes = Math.ceil((offset + bytes.byteLength) / 16) * 16;
    return offset;
  }

  /** Runs submitted into the batch. */
  get size(): number {
    return this.entries.length;
  }

  /** The readback the next run's status goes to. */
  get readback(): GPUBuffer {
    return this.buffers.readback;
  }

  /** Whether the batch takes another run: open and not full. */
  get open(): boolean {
    return !this.closed && this.entries.length < BATCH_SLOTS;
  }

  /** Byte offset of the slot the next run submitted copies its status block to. */
  get nextSlotOffset(): number {
    return this.entries.length * this.slotWords * 4;
  }

  /** The kind of hold the batch has on `page`, if any. */
  heldAs(page: number): HoldKind | undefined {
    return this.held.get(page);
  }

  /**
   * Records a run just submitted into the next slot: the holds it took (the
   * batch releases them), the invalidations it caused (announced after), and
   * how to settle it from its status. Returns its result's promise.
   */
  add<T>(
    holds: readonly Hold[],
    events: readonly InvalidateEvent[],
    settle: (status: PassStatus) => T,
  ): Promise<T> {
    invariant(this.open, 'a run added to a closed or full batch');
    for (const hold of holds) {
      this.holds.push(hold);
      for (let page = hold.first; page < hold.first + hold.count; page++)
        this.held.set(page, hold.kind);
    }
    this.events.push(...events);
    this.encodedSince++;
    return new Promise<T>((resolve, reject) => {
      this.entries.push({ settle, resolve: resolve as (value: unknown) => void, reject });
    });
  }

  /** The pages the batch holds for writing: those its passes may have stored to. */
  private *writtenPages(): Iterable<number> {
    for (const [page, kind] of this.held) if (kind === 'exclusive-long') yield page;
  }

  /** Closes an empty batch without submitting: a run added after this is a bug, not a hang. */
  discard(): void {
    invariant(this.entries.length === 0, 'a batch with runs discarded');
    this.closed = true;
  }

  /**
   * Submits the passes encoded so far (their staging first) and goes on
   * encoding in a new encoder: what the queue runs after this comes after
   * them. The batch stays open; its readback is still one.
   */
  submitEncoded(): void {
    if (this.encodedSince === 0) return;
    const { queue } = this.host.device;
    // Nothing newly staged is the steady state of a chain: no write at all (a
    // write before a submit delayed its mapAsync by ~2 ms on Chromium here).
    if (this.stagedBytes > this.writtenBytes) {
      const { staging, staged } = this.buffers;
      const from = this.writtenBytes;
      queue.writeBuffer(staging, from, staged, from, this.stagedBytes - from);
      this.writtenBytes = this.stagedBytes;
    }
    queue.submit([this.encoder.finish()]);
    this.encoder = this.host.device.createCommandEncoder({ label: 'webhmm kernel batch' });
    this.encodedSince = 0;
  }

  /**
   * Closes the batch: writes its staging, submits its passes, and reads back
   * every slot in one round trip; resolves once every run settled.
   */
  async complete(): Promise<void> {
    invariant(!this.closed, 'a batch completed twice');
    this.closed = true;
    const { readback } = this.buffers;
    const bytes = this.entries.length * this.slotWords * 4;
    let words: Uint32Array | undefined;
    let failure: unknown;
    try {
      this.submitEncoded();
      await readback.mapAsync(GPUMapMode.READ, 0, bytes);
      words = new Uint32Array(readback.getMappedRange(0, bytes).slice(0));
      readback.unmap();
    } catch (error) {
      failure = error;
    }
    let outcomes = this.entries.map((entry, slot) => {
      if (!words) return { failed: true, value: failure };
      try {
        const status = decodeStatus(
          words.subarray(slot * this.slotWords, (slot + 1) * this.slotWords),
        );
        return { failed: false, value: entry.settle(status) };
      } catch (error) {
        return { failed: true, value: error };
      }
    });
    try {
      // Advised pages the passes stored to go back before any run resolves (gpu/advice.ts).
      if (words) await this.host.migrator.writeThrough(this.writtenPages());
    } catch (error) {
      outcomes = outcomes.map(() => ({ failed: true, value: error }));
    }
    this.host.space.table.releaseHolds(this.holds);
    this.host.space.announce(this.events);
    this.done(this.buffers, words !== undefined);
    this.entries.forEach((entry, i) => {
      const outcome = outcomes[i];
      if (outcome?.failed) entry.reject(outcome.value);
      else entry.resolve(outcome?.value);
    });
  }
}

/** Batch buffers, pooled at the default staging size; bigger ones live for one batch. */
export class BatchBufferPool {
  private readonly free: BatchBuffers[] = [];
  private readonly live = new Set<BatchBuffers>();

  /** @param slotBytes bytes of one readback slot */
  constructor(
    private readonly device: GPUDevice,
    private readonly slotBytes: number,
  ) {}

  /** Buffers for a batch staging at least `stageBytes`. */
  take(stageBytes: number): BatchBuffers {
    if (stageBytes <= BATCH_STAGING_BYTES) {
      const free = this.free.pop();
      if (free) return free;
    }
    const size = Math.max(BATCH_STAGING_BYTES, Math.ceil(stageBytes / 16) * 16);
    const buffers = {
      readback: this.device.createBuffer({
        label: 'webhmm kernel batch readback',
        size: BATCH_SLOTS * this.slotBytes,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      }),
      staging: this.device.createBuffer({
        label: 'webhmm kernel batch staging',
        size,
        usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      }),
      staged: new Uint8Array(size),
    };
    this.live.add(buffers);
    return buffers;
  }

  /** Returns a batch's buffers: kept for the next batch when `reusable` and of the default size. */
  give(buffers: BatchBuffers, reusable: boolean): void {
    if (reusable && buffers.staging.size === BATCH_STAGING_BYTES) {
      this.free.push(buffers);
      return;
    }
    this.live.delete(buffers);
    buffers.readback.destroy();
    buffers.staging.destroy();
  }

  destroy(): void {
    for (const { readback, staging } of this.live) {
      readback.destroy();
      staging.destroy();
    }
    this.live.clear();
    this.free.length = 0;
  }
}
