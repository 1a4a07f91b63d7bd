import { DPTE_DECLARED_SHIFT } from '../../src/gpu/device-layout.ts';
import { describe, expect, it } from 'vitest';
import {
  FAULT_BITS_PER_PAGE,
  FAULT_PAGES_PER_WORD,
  FAULT_WORD_SHIFT,
  USE_READ,
  READ_TRANSLATION_TAG,
  STATUS_REFUSED_STORE,
  USE_WRITE,
  USES_ALL,
} from '../../src/kernels/kernel-layout.ts';
import { prelude, STORE_PAGES, usesAtomics } from '../../src/kernels/prelude.ts';

const config = {
  pageShift: 16,
  pageCount: 64,
  zeroFrame: 8,
  sinkFrame: 9,
  params: [],
  ranges: [],
};

describe('the prelude', () => {
  it('binds frames as atomics only for kernels that call hmm_atomic_add_u32 or _f32', () => {
    expect(usesAtomics('let old = hmm_atomic_add_u32(va, 1u);')).toBe(true);
    expect(usesAtomics('let old = hmm_atomic_add_f32(va, 0.5);')).toBe(true);
    expect(usesAtomics('hmm_store_u32(va, hmm_load_u32(va) + 1u);')).toBe(false);
    expect(usesAtomics('my_hmm_atomic_add_u32_wrapper(va)')).toBe(false);
    // A writable named range's atomics count; a read range has none to call.
    const ranges = [
      ['hist', USE_READ | USE_WRITE],
      ['keys', USE_READ],
    ] as const;
    expect(usesAtomics('hist_atomic_add_u32(k, 1u);', ranges)).toBe(true);
    expect(usesAtomics('hist_atomic_add_f32(k, 1.0);', ranges)).toBe(true);
    expect(usesAtomics('keys_atomic_add_u32(k, 1u);', ranges)).toBe(false);
    expect(usesAtomics('hist_store_u32(k, 1u);', ranges)).toBe(false);

    const plain = prelude({ ...config, atomics: false });
    expect(plain).toContain('var<storage, read_write> hmm_frames: array<u32>;');
    expect(plain).not.toContain('fn hmm_atomic_add_u32');
    const atomic = prelude({ ...config, atomics: true });
    expect(atomic).toContain('var<storage, read_write> hmm_frames: array<atomic<u32>>;');
    expect(atomic).toContain('fn hmm_atomic_add_u32');
    expect(atomic).toContain('fn hmm_atomic_add_f32');
    expect(plain).not.toContain('fn hmm_atomic_add_f32');
  });

  it('addresses the fault bitmap with the geometry kernel-layout.ts declares, and marks dirty pages one word each', () => {
    const wgsl = prelude({ ...config, atomics: false });
    expect(wgsl).toContain(`let word = page >> ${FAULT_WORD_SHIFT}u;`);
    expect(wgsl).toContain(
      `let mask = bits << ((page & ${FAULT_PAGES_PER_WORD - 1}u) * ${FAULT_BITS_PER_PAGE}u);`,
    );
    // Dirty marks are one word a page, packed into the bitmap after the pass (dirty-pages.ts).
    expect(wgsl).toContain('if (hmm_dirty_pages[page] == 0u) { hmm_dirty_pages[page] = 1u; }');
    // A pass's declared access is in its pages' entries; in fault mode every
    // page is declared for reading and writing.
    expect(wgsl).toContain(
      `select((entry >> ${DPTE_DECLARED_SHIFT}u) & ${USE_READ | USE_WRITE}u, ${USE_READ | USE_WRITE}u, hmm_ctl.uses == ${USES_ALL}u)`,
    );
  });

  it('lets hmm_frame_store land only in the pages of the last write translations, recording the rest in the status block', () => {
    for (const atomics of [false, true]) {
      const wgsl = prelude({ ...config, atomics });
      for (let i = 0; i < STORE_PAGES; i++) {
        expect(wgsl).toContain(`let in${i} = w - hmm_store_page${i} < HMM_PAGE_WORDS;`);
      }
      expect(wgsl).not.toContain(`hmm_store_page${STORE_PAGES}`);
      expect(wgsl).toContain('else { hmm_refuse_store(w); }');
      // Recorded for hmm_flush, which the entry-point wrapper calls at the end.
      expect(wgsl).toContain('fn hmm_refuse_store(w: u32) { hmm_refused_store = w + 1u; }');
      expect(wgsl).toContain(
        `if (hmm_refused_store != 0u) { atomicStore(&hmm_status[${STATUS_REFUSED_STORE}], hmm_refused_store); }`,
      );
      // Read translations carry the tag, which loads mask off.
      expect(wgsl).toContain(`frame_words | select(${READ_TRANSLATION_TAG}u, 0u, forWrite)`);
      expect(wgsl).toContain(`[w & ~${READ_TRANSLATION_TAG}u]`);
    }
  });
});
