// Where Chromium is and how it starts, for the browser tests and `npm run bench`.
import { existsSync } from 'node:fs';

/** CHROMIUM_PATH, else Debian's package. */
export const chromiumPath = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';

export const chromiumArgs = [
  // WebGPU in headless Chromium on Linux; with no GPU, Dawn picks SwiftShader
  // (a fallback adapter) without further flags.
  '--enable-unsafe-webgpu',
  // Chromium refuses to start its sandbox as root.
  ...(process.getuid?.() === 0 ? ['--no-sandbox'] : []),
  // No network chatter: pages only talk to the local Vite server.
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/** Throws, naming the install command, when there is no Chromium at `chromiumPath`. */
export function requireChromium() {
  if (!existsSync(chromiumPath)) {
    throw new Error(
      `Chromium not found at ${chromiumPath}: install it with ` +
        '`apt-get update && apt-get install -y chromium` or set CHROMIUM_PATH',
    );
  }
}
