/** The space every webhmm bench row works in. */
import type { CopyMode } from '../../gpu/copy-engines.ts';
import { GpuMirror } from '../../mirror/gpu-mirror.ts';
import { AddressSpace } from '../../space/address-space.ts';
import type { BenchContext } from '../bench-types.ts';

const MiB = 1 << 20;

/**
 * A space with room for `bytes` of allocations (plus page 0 and rounding),
 * mirrored on the bench device with a budget that holds them all, or with
 * `budget` bytes of frames.
 */
export async function mirroredSpace(
  context: BenchContext,
  bytes: number,
  pageSize: number,
  copy: CopyMode = 'auto',
  budget = bytes + 2 * MiB,
): Promise<{ space: AddressSpace; gpu: GpuMirror }> {
  const space = AddressSpace.create({ size: bytes + 4 * MiB, pageSize });
  const gpu = await GpuMirror.attach(space, { device: context.device, copy, budget });
  return { space, gpu };
}
