/**
 * The loss of a mirror's device (`device.lost`, or a GPU call failing
 * because of it), recorded once: what `gpu.lost` resolves with and what
 * every pending and later call rejects with.
 *
 * Guarantees:
 * - `unsaved` is exact: the pages GPU-dirty when the loss is recorded, which
 *   are the pages made dirty by acknowledged writes (a `gpu.write`, a run
 *   that resolved), coalesced. A page becomes GPU-dirty only when its write
 *   is acknowledged, and never once the loss is recorded (`assertLive` guards
 *   every such commit point), so no acknowledged write is left out and no
 *   rejected one is listed.
 * - A GPU call that fails (a `mapAsync` rejected by the loss before
 *   `device.lost` fires) is taken as the loss when `device.lost` follows
 *   within LOSS_GRACE_MS, never as success.
 */
import { DeviceLostError, WebHmmError } from '../errors.ts';
import { lostSpan } from '../space/mirror-fallback.ts';
import { runsOf, type PageRun } from '../space/page-run.ts';

/** What `gpu.lost` resolves with. */
export interface DeviceLoss {
  /** The device's own reason: 'destroyed' (`device.destroy()`), else 'unknown'. */
  readonly reason: 'destroyed' | 'unknown';
  readonly message: string;
  /** The GPU-dirty byte ranges acknowledged writes left that could not be read back, coalesced. */
  readonly unsaved: readonly { readonly va: number; readonly len: number }[];
}

/** How long a failed GPU call waits for `device.lost` to say whether it failed of a loss, ms. */
export const LOSS_GRACE_MS = 2000;

export class LossWatch {
  /** Resolves once, only on device loss. */
  readonly lost: Promise<DeviceLoss>;
  private resolve: (loss: DeviceLoss) => void = () => undefined;
  private loss: DeviceLoss | undefined;
  /** Per page: 1 if its GPU copy was lost (GPU-dirty at the loss). */
  private lostPages: Uint8Array | undefined;

  constructor(
    private readonly device: GPUDevice,
    private readonly pageSize: number,
  ) {
    this.lost = new Promise((resolve) => (this.resolve = resolve));
  }

  /** The loss, once recorded. */
  get current(): DeviceLoss | undefined {
    return this.loss;
  }

  /**
   * Records the loss, with `dirty` the pages GPU-dirty now (of `pageCount`),
   * and resolves `lost`. Only the first call counts.
   */
  record(info: GPUDeviceLostInfo, dirty: readonly number[], pageCount: number): DeviceLoss {
    if (this.loss) return this.loss;
    this.lostPages = new Uint8Array(pageCount);
    for (const page of dirty) this.lostPages[page] = 1;
    this.loss = {
      reason: info.reason === 'destroyed' ? 'destroyed' : 'unknown',
      message: info.message,
      unsaved: runsOf(dirty).map((run) => ({
        va: run.first * this.pageSize,
        len: run.count * this.pageSize,
      })),
    };
    this.resolve(this.loss);
    return this.loss;
  }

  /** The error pending and later calls reject with. */
  error(): DeviceLostError {
    const loss = this.loss;
    return new DeviceLostError(
      loss?.unsaved ?? [],
      loss ? `${loss.reason}: ${loss.message}` : 'the device was lost',
    );
  }

  /** @throws DeviceLostError once the loss is recorded */
  assertLive(): void {
    if (this.loss) throw this.error();
  }

  /**
   * Whether `error` (a failed GPU call's) came of the loss: true once it is
   * recorded, or if `device.lost` follows within LOSS_GRACE_MS; webhmm's own
   * typed errors (access, budget, waiting) are not GPU failures.
   */
  async causedBy(error: unknown): Promise<boolean> {
    if (this.loss) return true;
    if (error instanceof WebHmmError) return false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), LOSS_GRACE_MS);
    });
    try {
      await Promise.race([this.device.lost, grace]);
    } finally {
      clearTimeout(timer);
    }
    // device.lost's own handler (registered first) has recorded the loss by now.
    return this.loss !== undefined;
  }

  /** The run of `request`'s pages whose GPU copy was lost, for its requester (FaultChannel.complete). */
  unsavedIn(request: PageRun): PageRun | undefined {
    return this.lostPages ? lostSpan(request, this.lostPages) : undefined;
  }
}
