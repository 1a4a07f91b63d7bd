/**
 * A lease: zero-copy views of exactly one held range, valid until release.
 * A read lease keeps writers out; a write lease keeps everyone else out.
 * Views taken before release keep pointing at the memory, but using them
 * after release is outside webhmm's coherence, like touching the
 * SharedArrayBuffer directly.
 */
import { InvalidArgumentError } from '../errors.ts';

/**
 * How a scope (`space.access`, `space.acquire`) holds its range: 'read' keeps
 * writers out, 'write' keeps everyone else out.
 */
export type AccessMode = 'read' | 'write';

/** The access modes, for argument checks. */
export const ACCESS_MODES: readonly AccessMode[] = ['read', 'write'];

export class Lease {
  private released = false;
  private byteView: Uint8Array | undefined;
  private u32View: Uint32Array | undefined;
  private f32View: Float32Array | undefined;

  /** @internal Leases come from `space.access` and `space.acquire`. */
  constructor(
    private readonly memory: SharedArrayBuffer,
    /** First byte of the range. */
    readonly va: number,
    /** Bytes in the range. */
    readonly len: number,
    /** The mode the range is held in. */
    readonly mode: AccessMode,
    private readonly onRelease: () => void,
  ) {}

  /** The range's bytes. */
  get bytes(): Uint8Array {
    this.assertHeld();
    return (this.byteView ??= new Uint8Array(this.memory, this.va, this.len));
  }

  /** The range as u32 words; the range must be 4-byte aligned in start and length. */
  get u32(): Uint32Array {
    this.assertHeld();
    this.assertWordAligned();
    return (this.u32View ??= new Uint32Array(this.memory, this.va, this.len >>> 2));
  }

  /** The range as f32 values; the range must be 4-byte aligned in start and length. */
  get f32(): Float32Array {
    this.assertHeld();
    this.assertWordAligned();
    return (this.f32View ??= new Float32Array(this.memory, this.va, this.len >>> 2));
  }

  /** Ends the lease. Idempotent. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.onRelease();
  }

  get isReleased(): boolean {
    return this.released;
  }

  private assertHeld(): void {
    if (this.released) {
      throw new InvalidArgumentError(
        'lease',
        `[0x${this.va.toString(16)}, +${this.len})`,
        'released',
        'acquire a new lease',
        { address: this.va },
      );
    }
  }

  private assertWordAligned(): void {
    if (this.va % 4 !== 0 || this.len % 4 !== 0) {
      throw new InvalidArgumentError(
        'lease',
        `[0x${this.va.toString(16)}, +${this.len})`,
        'misaligned',
        'u32 and f32 views need a range 4-byte aligned in start and length; use bytes',
        { address: this.va },
      );
    }
  }
}
