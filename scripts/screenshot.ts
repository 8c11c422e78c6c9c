// A screenshot of an HTML report in headless Chromium (Debian's chromium via playwright-core), as the browser test
// takes it: `npx tsx scripts/screenshot.ts runs/quick/report.html docs/report.png [width]`.
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { launchChromium } from "../test/helpers/browser";

async function main(): Promise<void> {
  const [html, png, width = "1280"] = process.argv.slice(2);
  if (!html || !png) throw new Error("usage: tsx scripts/screenshot.ts REPORT.html OUT.png [WIDTH]");
  const browser = await launchChromium();
  try {
    const page = await browser.newPage({ viewport: { width: Number(width), height: 900 } });
    await page.route("**/*", (r) => (r.request().url().startsWith("file:") ? r.continue() : r.abort()));
    await page.goto(pathToFileURL(path.resolve(html)).href, { waitUntil: "load" });
    await page.screenshot({ path: png, fullPage: true });
    process.stderr.write(`wrote ${png}\n`);
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exit(1);
});
