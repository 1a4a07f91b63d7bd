// The demo: one address space, shown page by page, that this page's main thread,
// a worker and the GPU (through a GpuMirror) all use. Buttons allocate, write,
// protect, free and migrate; the map shows each page's state and protection,
// and the log shows invalidation notices and the mirror's trace.
import {
  AddressSpace,
  GpuMirror,
  Threads,
  WebHmmError,
  type Kernel,
  type PageSnapshot,
} from '../index.ts';
import { mountBenchPanel } from './bench-panel.ts';
import type { DemoWorkerApi } from './demo.worker.ts';

const PAGE = 64 << 10;
const PAGES = 64;

const space = AddressSpace.create({ size: PAGES * PAGE, pageSize: PAGE });
const threads = Threads.spawn<DemoWorkerApi>(
  space,
  () => new Worker(new URL('./demo.worker.ts', import.meta.url), { type: 'module' }),
  1,
);
const mirror = GpuMirror.attach(space);
const allocations: { va: number; len: number }[] = [];
let increment: Kernel | undefined;

const app = document.querySelector('#app') ?? document.body;
app.innerHTML = `
  <h1>webhmm</h1>
  <p id="isolation"></p>
  <p>One address space of ${PAGES} pages of ${PAGE >> 10} KiB, shared by this page, a worker and the GPU.</p>
  <div id="controls">
    <button data-action="alloc">alloc 256 KiB</button>
    <button data-action="write">main thread writes the newest allocation</button>
    <button data-action="worker">worker writes the newest allocation</button>
    <button data-action="protect">make it read-only</button>
    <button data-action="free">free it</button>
  </div>
  <div id="gpu-controls">
    <button data-action="toGpu">migrate it to the GPU</button>
    <button data-action="gpuWrite">GPU writes its first page</button>
    <button data-action="toCpu">migrate it to the CPU</button>
    <button data-action="kernel">a kernel adds 1 to each of its words</button>
    <button data-action="sync">sync</button>
  </div>
  <p id="gpu-status">GPU: attaching...</p>
  <div id="map" role="img" aria-label="page map"></div>
  <p id="legend"></p>
  <pre id="log" aria-live="polite"></pre>
  <style>
    body { font: 14px system-ui, sans-serif; margin: 1.5rem; }
    #map { display: grid; grid-template-columns: repeat(16, 2.2rem); gap: 3px; margin: 1rem 0; }
    #map div { height: 2.2rem; border-radius: 3px; font-size: 10px; display: grid; place-items: center; }
    .unmapped { background: #eee; color: #999; } .zero { background: #cde; } .cpu { background: #6a6; color: #fff; }
    .shared { background: #59c; color: #fff; } .gpu { background: #c63; color: #fff; }
    #legend span { padding: 0 .4rem; margin-right: .4rem; border-radius: 3px; }
    #gpu-controls { margin-top: .5rem; }
    #log { background: #f6f6f6; padding: .5rem; max-height: 12rem; overflow: auto; }
  </style>`;

const element = (id: string): HTMLElement => {
  const found = document.getElementById(id);
  if (!found) throw new Error(`#${id} missing`);
  return found;
};
element('isolation').textContent = `crossOriginIsolated: ${String(crossOriginIsolated)}`;
element('legend').innerHTML = ['unmapped', 'zero', 'cpu', 'shared', 'gpu']
  .map((state) => `<span class="${state}">${state}</span>`)
  .join('');

function log(line: string): void {
  const out = element('log');
  out.textContent = `${line}\n${out.textContent ?? ''}`;
}

function render(): void {
  void mirror.then((gpu) => {
    const stats = gpu.stats();
    element('gpu-status').textContent =
      `GPU: ${stats.framesInUse} of ${stats.budget / PAGE} frames in use; ` +
      `${stats.bytesToGpu} bytes up, ${stats.bytesToCpu} down, ${stats.cpuFaults} CPU faults; ` +
      `copy engine ${JSON.stringify(stats.copyEngine)}`;
  });
  const pages: PageSnapshot[] = space.snapshot(0, space.size);
  element('map').replaceChildren(
    ...pages.map((page, index) => {
      const cell = document.createElement('div');
      cell.className = page.state;
      cell.title = `page ${index} at 0x${(index * PAGE).toString(16)}: ${page.state}, prot ${page.prot}`;
      cell.textContent = page.state === 'unmapped' ? '' : page.prot;
      return cell;
    }),
  );
}

mirror.then(
  (gpu) => {
    gpu.trace((event) =>
      log(
        `${event.kind}: ${event.cause} to ${event.to}, ${event.pages} pages, ${event.bytes} bytes, ${event.ms.toFixed(2)} ms`,
      ),
    );
    render();
  },
  (error: unknown) => {
    element('gpu-status').textContent = `GPU unavailable: ${String(error)}`;
  },
);

space.onInvalidate(0, space.size, (event) =>
  log(`notice: ${event.cause} [0x${event.va.toString(16)}, +${event.len >> 10} KiB)`),
);

const newest = (): { va: number; len: number } => {
  const last = allocations[allocations.length - 1];
  if (!last) throw new Error('allocate first');
  return last;
};

const actions: Record<string, () => Promise<void> | void> = {
  alloc() {
    const len = 256 << 10;
    const va = space.alloc(len);
    allocations.push({ va, len });
    log(`alloc -> 0x${va.toString(16)}`);
  },
  write() {
    const { va } = newest();
    space.write(va + 100, new TextEncoder().encode('hello from the main thread'));
    log(`main thread wrote 26 bytes at 0x${(va + 100).toString(16)}`);
  },
  async worker() {
    const { va, len } = newest();
    const [worker] = (await threads).workers;
    if (!worker) throw new Error('the demo worker did not start');
    const sum = await worker.stamp(va, len, 7);
    log(
      `worker wrote 7 into each page of 0x${va.toString(16)} and read back ${sum}; main reads ${space.getU32(va)}`,
    );
  },
  protect() {
    const { va, len } = newest();
    space.protect(va, len, 'r');
    log(`protect 0x${va.toString(16)} 'r'`);
  },
  free() {
    const { va } = newest();
    space.free(va);
    allocations.pop();
    log(`free 0x${va.toString(16)}`);
  },
  async toGpu() {
    const { va, len } = newest();
    const moved = await (await mirror).migrate(va, len, 'gpu');
    log(`migrate to the GPU: ${moved.pages} pages, ${moved.bytes} bytes moved`);
  },
  async gpuWrite() {
    const { va } = newest();
    await (await mirror).write(va, new Uint32Array([0xc0ffee]));
    log(
      `the GPU wrote 0xc0ffee at 0x${va.toString(16)}: the page is GPU-dirty; a CPU read faults it back`,
    );
  },
  async toCpu() {
    const { va, len } = newest();
    const moved = await (await mirror).migrate(va, len, 'cpu');
    log(`migrate to the CPU: ${moved.pages} pages, ${moved.bytes} bytes moved`);
  },
  async kernel() {
    const { va, len } = newest();
    const gpu = await mirror;
    increment ??= gpu.kernel({
      code: /* wgsl */ `
        @compute @workgroup_size(64)
        fn main(@builtin(global_invocation_id) id: vec3u, @builtin(num_workgroups) groups: vec3u) {
          let word = id.x + id.y * groups.x * 64u;
          if (word * 4u >= hmm_params.len) { return; }
          let va = hmm_params.va + word * 4u;
          hmm_store_u32(va, hmm_load_u32(va) + 1u);
        }`,
      params: { va: 'u32', len: 'u32' },
    });
    const result = await increment.run({
      workgroups: [len / 4 / 64, 1],
      params: { va, len },
      uses: [{ va, len, access: 'readwrite' }],
    });
    log(
      `kernel: ${result.pagesWritten} pages written, ${result.bytesToGpu} bytes uploaded first, ${result.ms.toFixed(1)} ms; main reads ${(await space.readAsync(va, 4)).join(',')}`,
    );
  },
  async sync() {
    const moved = await (await mirror).sync();
    log(`sync: ${moved.pages} GPU-dirty pages written back`);
  },
};

app.addEventListener('click', (event) => {
  const action = (event.target as HTMLElement).dataset['action'];
  const run = action ? actions[action] : undefined;
  if (!run) return;
  Promise.resolve()
    .then(run)
    .catch((error: unknown) =>
      log(
        error instanceof WebHmmError
          ? `${error.name} (${error.reason}): ${error.message}`
          : String(error),
      ),
    )
    .finally(render);
});

mountBenchPanel(app);
render();
