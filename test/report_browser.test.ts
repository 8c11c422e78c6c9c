// The reports in a real browser: headless Chromium (Debian's package, driven by playwright-core) opens the run report
// and the utility benchmark's report, takes a screenshot of each, and checks that every plot has drawn marks, that the
// sample table sorts and filters, and that the page makes no network request. Without Chromium it skips, saying so.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, Page } from "playwright-core";
import { parseConfig } from "../ts/gradmm/config";
import { synthesize } from "../ts/gradmm/synthesize";
import { chromiumPath, launchChromium } from "./helpers/browser";
import { tinyReportConfig } from "./helpers/report_config";
import { writeUtilityHtml } from "../bench/utility/html";
import { sampleUtilityReport } from "./helpers/utility_report";

const chromium = chromiumPath();
if (!chromium) console.warn("report_browser.test.ts: SKIPPED: no Chromium found (apt-get install chromium, or set GRADMM_CHROMIUM); .ci/run installs it");

let tmp: string;
let browser: Browser;
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-browser-"));
  if (chromium) browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Opens a file in a fresh page; every request other than the file itself is recorded and aborted. */
async function open(file: string): Promise<{ page: Page; requests: string[]; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const url = pathToFileURL(file).href;
  const requests: string[] = [];
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  await page.route("**/*", (route) => {
    const u = route.request().url();
    if (u === url) return route.continue();
    requests.push(u);
    return route.abort();
  });
  await page.goto(url, { waitUntil: "load" });
  return { page, requests, errors };
}

/** Per plot: its name and how many data marks (vega's role-mark groups' children) it drew with a visible size. */
async function plotMarks(page: Page): Promise<{ name: string; marks: number }[]> {
  return page.$$eval("figure.plot", (figs) =>
    figs.map((f) => {
      const marks = Array.from(f.querySelectorAll("svg g.role-mark > path, svg g.role-mark > line, svg g.role-mark > rect")).filter((el) => {
        const b = (el as SVGGraphicsElement).getBBox();
        return b.width > 0 || b.height > 0;
      });
      return { name: f.getAttribute("data-plot") ?? "?", marks: marks.length };
    }),
  );
}

async function columnValues(page: Page, table: string, col: number): Promise<string[]> {
  return page.$$eval(`#${table} tbody tr:not([hidden])`, (rows, c) => rows.map((r) => (r as HTMLTableRowElement).cells[c as number].getAttribute("data-v") ?? (r as HTMLTableRowElement).cells[c as number].textContent ?? ""), col);
}

describe.skipIf(!chromium)("reports in headless Chromium", () => {
  it("the run report: plots drawn, the sample table sorts and filters, no network", async () => {
    const out = path.join(tmp, "run");
    await synthesize(parseConfig(tinyReportConfig(out), tmp, "cfg"));
    const { page, requests, errors } = await open(path.join(out, "report.html"));
    await page.screenshot({ path: path.join(tmp, "report.png"), fullPage: true });
    expect(fs.statSync(path.join(tmp, "report.png")).size).toBeGreaterThan(10_000);
    const plots = await plotMarks(page);
    expect(plots.map((p) => p.name).sort()).toEqual(["cosine", "filter", "hist-loss", "hist-perplexity", "loss-curves", "stages"]);
    for (const p of plots) expect(p.marks, `plot ${p.name} drew no marks`).toBeGreaterThan(0);

    // sort by matching loss (column 4): ascending, then descending
    const total = (await columnValues(page, "samples-table", 0)).length;
    expect(total).toBe(12);
    const header = page.locator("#samples-table th", { hasText: "matching loss" });
    await header.click();
    const up = (await columnValues(page, "samples-table", 4)).map(Number);
    expect(up).toEqual([...up].sort((a, b) => a - b));
    expect(await header.getAttribute("aria-sort")).toBe("ascending");
    await header.click();
    const down = (await columnValues(page, "samples-table", 4)).map(Number);
    expect(down).toEqual([...up].sort((a, b) => b - a));
    // sort by class (text)
    await page.locator("#samples-table th", { hasText: /^class$/ }).click();
    const classes = await columnValues(page, "samples-table", 1);
    expect(classes).toEqual([...classes].sort());

    // filter by the decision select (each decision the run has), then search text
    const decisions = await page.$$eval('select.table-filter[data-table="samples-table"] option', (os) => os.map((o) => (o as HTMLOptionElement).value).filter(Boolean));
    expect(decisions.length).toBeGreaterThan(0);
    for (const decision of decisions) {
      const n = await page.$$eval("#samples-table tbody tr", (rows, d) => rows.filter((r) => (r as HTMLTableRowElement).cells[9].textContent === d).length, decision);
      await page.selectOption('select.table-filter[data-table="samples-table"]', decision);
      const shownDecisions = await columnValues(page, "samples-table", 9);
      expect(shownDecisions.every((d) => d === decision)).toBe(true);
      expect(shownDecisions.length).toBe(n);
      expect(await page.textContent('.table-count[data-table="samples-table"]')).toBe(`${n} of ${total} rows`);
    }
    await page.selectOption('select.table-filter[data-table="samples-table"]', "");
    const word = (await columnValues(page, "samples-table", 10))[0].trim().split(/\s+/)[0];
    await page.fill('input.table-search[data-table="samples-table"]', word);
    const shown = await columnValues(page, "samples-table", 10);
    expect(shown.length).toBeGreaterThan(0);
    const rowsText = await page.$$eval("#samples-table tbody tr:not([hidden])", (rows) => rows.map((r) => r.textContent!.toLowerCase()));
    expect(rowsText.every((t) => t.includes(word.toLowerCase()))).toBe(true);
    await page.fill('input.table-search[data-table="samples-table"]', "no such text anywhere zzqx");
    expect((await columnValues(page, "samples-table", 0)).length).toBe(0);

    expect(requests).toEqual([]);
    expect(errors).toEqual([]);
    await page.close();
  });

  it("the utility benchmark's report: plots drawn, tables, no network", async () => {
    const dir = path.join(tmp, "utility");
    fs.mkdirSync(dir);
    const file = await writeUtilityHtml(dir, sampleUtilityReport());
    const { page, requests, errors } = await open(file);
    await page.screenshot({ path: path.join(tmp, "utility.png"), fullPage: true });
    const plots = await plotMarks(page);
    expect(plots.length).toBeGreaterThanOrEqual(2);
    for (const p of plots) expect(p.marks, `plot ${p.name} drew no marks`).toBeGreaterThan(0);
    const header = page.locator("#methods-probe th", { hasText: /^accuracy %/ });
    await header.click();
    const acc = (await columnValues(page, "methods-probe", 1)).map(Number);
    expect(acc).toEqual([...acc].sort((a, b) => a - b));
    expect(requests).toEqual([]);
    expect(errors).toEqual([]);
    await page.close();
  });
});
