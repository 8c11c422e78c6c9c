// Headless Chromium for the report tests: Debian's `chromium` (apt-get install chromium; .ci/run installs it) driven by
// playwright-core, which downloads no browser of its own. GRADMM_CHROMIUM names another binary.
import * as fs from "node:fs";
import type { Browser } from "playwright-core";

export function chromiumPath(): string | null {
  const candidates = [process.env.GRADMM_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].filter((p): p is string => !!p);
  return candidates.find((p) => fs.existsSync(p)) ?? null;
}

export async function launchChromium(): Promise<Browser> {
  const executablePath = chromiumPath();
  if (!executablePath) throw new Error("no Chromium: apt-get install chromium (or set GRADMM_CHROMIUM)");
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { chromium } = require("playwright-core") as typeof import("playwright-core");
  // --no-sandbox: CI and containers run as root, where Chromium's sandbox refuses to start
  return chromium.launch({ executablePath, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
}
