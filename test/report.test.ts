// report.html (ts/report/run.ts): what a synth run writes for a person to look at. The page is checked here as text
// (self-contained, every section, DP leaks nothing); test/report_browser.test.ts opens it in Chromium.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InvalidFileError } from "../ts/errors";
import { parseConfig } from "../ts/gradmm/config";
import { synthesize } from "../ts/gradmm/synthesize";
import { renderRunReport, writeRunReport } from "../ts/report/run";
import { vegaLiteSvg } from "../ts/report/page";
import { tinyReportConfig } from "./helpers/report_config";

const root = path.join(__dirname, "..");
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-report-"));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Every URL-bearing attribute or CSS reference in the page: none may point outside it. */
function externalReferences(html: string): string[] {
  const refs = [...html.matchAll(/\b(?:src|href|xlink:href|action)\s*=\s*"([^"]*)"/g)].map((m) => m[1]).filter((u) => !u.startsWith("#") && !u.startsWith("data:"));
  const css = [...html.matchAll(/url\(([^)]*)\)|@import/g)].map((m) => m[0]);
  return [...refs, ...css];
}

describe("vegaLiteSvg", () => {
  it("renders a Vega-Lite spec to static SVG with marks, on the server", async () => {
    const svg = await vegaLiteSvg({ data: { values: [{ a: 1, b: 2 }, { a: 2, b: 5 }] }, mark: "line", encoding: { x: { field: "a", type: "quantitative" }, y: { field: "b", type: "quantitative" } } });
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg).toMatch(/class="mark-line role-mark/);
    expect(svg).not.toMatch(/https?:\/\/(?!www\.w3\.org)/);
  });
});

describe("run report", () => {
  it("synth writes report.html with every section, self-contained", async () => {
    const out = path.join(tmp, "run");
    const r = await synthesize(parseConfig(tinyReportConfig(out), tmp, "cfg"));
    const html = fs.readFileSync(path.join(out, "report.html"), "utf8");
    for (const id of ["loss-curves", "stages", "cosine", "hist-loss", "hist-perplexity", "filter"]) expect(html).toContain(`data-plot="${id}"`);
    // every plot is an inline SVG with data marks
    const figures = html.split('<figure class="plot"').slice(1);
    expect(figures.length).toBe(6);
    for (const f of figures) expect(f).toMatch(/<svg[^>]*>[\s\S]*role-mark/);
    // the sample table: one row per synthetic sample, with the filter's decisions
    const start = html.indexOf('id="samples-table"');
    const table = html.slice(start, html.indexOf("</table>", start));
    expect((table.match(/<tr>/g) ?? []).length - 1).toBe(r.samples.length);
    expect(html).toMatch(/label disagreement|below top N|class balance|duplicate/);
    // real against synthetic histograms (no DP)
    expect(html).toContain(">real<");
    // settings, model, machine, timings
    for (const s of ["Method", "Model", "Machine", "Timings", "outer_steps", "numLayers"]) expect(html).toContain(s);
    // self-contained: no external reference, no external script or stylesheet, a CSP that forbids fetching
    expect(externalReferences(html)).toEqual([]);
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+stylesheet/);
    expect(html).toContain("default-src 'none'");
    // report.json: decisions aligned with synthetic.jsonl, real statistics, machine and timings
    const report = JSON.parse(fs.readFileSync(path.join(out, "report.json"), "utf8"));
    expect(report.filter_decisions.length).toBe(r.samples.length);
    expect(report.filter_decisions.filter((d: { kept: boolean }) => d.kept).length).toBe(r.filtered.length);
    expect(report.classes.negative.real.matching_loss.length).toBe(6);
    expect(report.classes.negative.real.perplexity.every((p: number) => p > 1)).toBe(true);
    expect(report.machine.cores).toBeGreaterThan(0);
    expect(report.timings.batches_s).toBeGreaterThan(0);
    // the page can be made again from the folder alone, identically
    expect(await renderRunReport(out)).toBe(html);
  });

  it("under DP shows the DP parameters and nothing computed from the private texts", async () => {
    const out = path.join(tmp, "dp");
    const cfg = tinyReportConfig(out, { dp: { enabled: true, epsilon: 2, delta: 1e-5, clip_norm: 1 }, filter: { few_shot: 0, keep_per_class: 2 } });
    await synthesize(parseConfig(cfg, tmp, "cfg"));
    const html = fs.readFileSync(path.join(out, "report.html"), "utf8");
    const report = JSON.parse(fs.readFileSync(path.join(out, "report.json"), "utf8"));
    expect(report.classes.negative.real).toBeNull();
    expect(html).toContain('id="dp"');
    expect(html).toMatch(/σ \(noise std\)/);
    expect(html).toContain("Differential privacy is on");
    expect(html).not.toContain(">real<");
    // no 8-gram of a private text appears in the page
    const privateTexts = fs
      .readFileSync(path.join(root, "examples", "data", "imdb", "train.jsonl"), "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l).text as string);
    const words = html.replace(/<[^>]+>/g, " ").split(/\s+/).join(" ");
    for (const t of privateTexts.slice(0, 400)) {
      const w = t.split(/\s+/).filter(Boolean);
      for (let i = 0; i + 8 <= w.length; i += 4) expect(words.includes(w.slice(i, i + 8).join(" "))).toBe(false);
    }
  });

  it("gradmm report on a folder without a run is a typed error naming the file", async () => {
    await expect(writeRunReport(path.join(tmp, "nothing-here"))).rejects.toBeInstanceOf(InvalidFileError);
    const bad = path.join(tmp, "bad");
    fs.mkdirSync(bad);
    fs.writeFileSync(path.join(bad, "report.json"), "{");
    await expect(writeRunReport(bad)).rejects.toThrow(/report\.json.*not valid JSON/);
  });
});
