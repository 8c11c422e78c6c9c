/**
 * The utility benchmark's results as a page (report.html) and its plots as SVG (accuracy-<mode>.svg): per mode,
 * test accuracy by method (bars: mean over seeds, error bars: 95% interval, dots: seeds), per-class accuracy, the
 * table with intervals and set metrics (sortable), and samples of each method's training set. Vega-Lite rendered to
 * static SVG on the server (ts/report/page.ts), like the run report; nothing is fetched when the page opens.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { writeFileAtomic, dataTable, esc, figure, fmt, kvTable, page, vegaLiteSvg, type VegaLiteSpec } from "../../ts/advanced";
import type { MethodSummary } from "./report";

/** The fields of the benchmark's report.json this page reads. */
export interface UtilityReportLike {
  modes: Record<string, { methods: Record<string, MethodSummary>; seeds: number[] }>;
  complete?: boolean;
  settings?: Record<string, unknown>;
  machine?: Record<string, unknown>;
  wall_seconds?: number;
}

const METHOD_COLORS: Record<string, string> = {
  gradmm: "#4c78a8", gradmm_dp: "#9ecae9", real: "#54a24b", zero_shot_gen: "#f58518", few_shot_gen: "#e45756", continuous_gm: "#b279a2", zero_shot_cls: "#9d755d",
};

/** Test accuracy by method: a bar (mean), an error bar (95% interval; none with one seed), a dot per seed, chance dashed. */
export function accuracySpec(agg: { methods: Record<string, MethodSummary>; seeds: number[] }, title: string, chance?: number): VegaLiteSpec {
  const names = Object.keys(agg.methods);
  const bars = names.map((m) => {
    const s = agg.methods[m];
    const half = Number.isFinite(s.accuracy_ci95) ? s.accuracy_ci95 : 0;
    return { method: m, mean: 100 * s.accuracy_mean, lo: 100 * Math.max(0, s.accuracy_mean - half), hi: 100 * Math.min(1, s.accuracy_mean + half), seeds: s.seeds };
  });
  const dots = names.flatMap((m) => agg.methods[m].accuracy_per_seed.map((a, i) => ({ method: m, accuracy: 100 * a, seed: agg.seeds[i] ?? i })));
  const domain = names;
  const range = names.map((n, i) => METHOD_COLORS[n] ?? ["#72b7b2", "#eeca3b", "#ff9da6", "#bab0ac"][i % 4]);
  const x = { field: "method", type: "nominal", sort: names, title: null, axis: { labelAngle: -20 } };
  return {
    title: { text: title, fontSize: 13 },
    width: Math.max(320, 70 * names.length),
    height: 260,
    layer: [
      { data: { values: bars }, mark: { type: "bar", opacity: 0.85 }, encoding: { x, y: { field: "mean", type: "quantitative", title: "test accuracy %", scale: { domain: [0, 100] } }, color: { field: "method", type: "nominal", scale: { domain, range }, legend: null }, tooltip: [{ field: "method" }, { field: "mean", format: ".1f" }, { field: "lo", format: ".1f" }, { field: "hi", format: ".1f" }, { field: "seeds" }] } },
      { data: { values: bars.filter((b) => b.hi > b.lo) }, mark: { type: "rule", strokeWidth: 1.5 }, encoding: { x, y: { field: "lo", type: "quantitative" }, y2: { field: "hi" } } },
      { data: { values: bars }, mark: { type: "text", dy: -8, fontSize: 11 }, encoding: { x, y: { field: "hi", type: "quantitative" }, text: { field: "mean", type: "quantitative", format: ".1f" } } },
      { data: { values: dots }, mark: { type: "point", filled: true, color: "black", size: 22, opacity: 0.7, xOffset: 12 }, encoding: { x, y: { field: "accuracy", type: "quantitative" }, tooltip: [{ field: "method" }, { field: "seed" }, { field: "accuracy", format: ".1f" }] } },
      ...(chance ? [{ data: { values: [{ chance: 100 * chance }] }, mark: { type: "rule", strokeDash: [4, 4], color: "#888" }, encoding: { y: { field: "chance", type: "quantitative" } } }] : []),
    ],
  };
}

/** The accuracy plot as a standalone SVG file's text (what accuracy-<mode>.svg holds). */
export async function accuracySvg(agg: { methods: Record<string, MethodSummary>; seeds: number[] }, title: string, chance?: number): Promise<string> {
  return vegaLiteSvg(accuracySpec(agg, title, chance));
}

const pct = (x: unknown) => (typeof x === "number" && Number.isFinite(x) ? (100 * x).toFixed(1) : "–");
const v = (x: unknown) => (typeof x === "number" && Number.isFinite(x) ? x : NaN);

export async function renderUtilityHtml(report: UtilityReportLike, title = "Utility benchmark"): Promise<string> {
  const parts: string[] = [];
  const modes = Object.keys(report.modes);
  const config = typeof report.settings?.config === "string" ? report.settings.config : "";
  parts.push(`<h1>${esc(title)}${report.complete === false ? " (partial)" : ""}</h1>`);
  parts.push(
    `<p class="sub">${esc(config ? path.basename(config) : "")}${report.settings?.model ? ` · model ${esc(path.basename(String(report.settings.model)))}` : ""}${report.wall_seconds !== undefined ? ` · ${(report.wall_seconds / 60).toFixed(1)} min` : ""}</p>`,
  );
  parts.push(
    `<p class="note">Does the synthetic text train a classifier? Each method's training set trains a classifier (fine-tuning, or a linear probe on frozen features) that is tested on held-out real data. Bars: mean test accuracy over seeds; error bars: Student-t 95% interval of the mean; dots: seeds; dashed: chance.</p>`,
  );
  for (const mode of modes) {
    const agg = report.modes[mode];
    const names = Object.keys(agg.methods);
    if (!names.length) continue;
    const classNames = Object.keys(agg.methods[names[0]].per_class_accuracy_mean);
    parts.push(`<h2 id="mode-${esc(mode)}">${esc(mode)}</h2>`);
    parts.push(await figure(`accuracy-${mode}`, `Test accuracy by method (${mode}), ${agg.seeds.length} seed${agg.seeds.length === 1 ? "" : "s"}.`, accuracySpec(agg, `${mode}: test accuracy`, classNames.length ? 1 / classNames.length : undefined)));
    const perClass = names.flatMap((m) => classNames.map((c) => ({ method: m, class: c, accuracy: 100 * v(agg.methods[m].per_class_accuracy_mean[c]) }))).filter((r) => Number.isFinite(r.accuracy));
    if (perClass.length)
      parts.push(
        await figure(`per-class-${mode}`, "Mean test accuracy per class: a method that predicts one class for everything shows as one high and one low bar.", {
          data: { values: perClass },
          width: { step: 24 },
          height: 200,
          mark: "bar",
          encoding: {
            x: { field: "method", type: "nominal", sort: names, title: null, axis: { labelAngle: -20 } },
            xOffset: { field: "class", type: "nominal" },
            y: { field: "accuracy", type: "quantitative", title: "accuracy %", scale: { domain: [0, 100] } },
            color: { field: "class", type: "nominal" },
            tooltip: [{ field: "method" }, { field: "class" }, { field: "accuracy", format: ".1f" }],
          },
        }),
      );
    const cols = [
      { title: "method" },
      { title: "accuracy % (mean)", type: "num" as const, className: "num" },
      { title: "± std", type: "num" as const, className: "num" },
      { title: "95% interval", type: "num" as const, className: "num" },
      ...classNames.map((c) => ({ title: `${c} %`, type: "num" as const, className: "num" })),
      { title: "seeds", type: "num" as const, className: "num" },
      { title: "perplexity", type: "num" as const, className: "num" },
      { title: "grad cos", type: "num" as const, className: "num" },
      { title: "distinct-1", type: "num" as const, className: "num" },
      { title: "distinct-2", type: "num" as const, className: "num" },
      { title: "longest shared n-gram (max)", type: "num" as const, className: "num" },
      { title: "kept by filter %", type: "num" as const, className: "num" },
    ];
    const rows = names.map((m) => {
      const s = agg.methods[m];
      const lo = s.accuracy_mean - s.accuracy_ci95, hi = s.accuracy_mean + s.accuracy_ci95;
      return [
        { text: m },
        { text: pct(s.accuracy_mean), v: 100 * v(s.accuracy_mean) },
        { text: pct(s.accuracy_std), v: 100 * v(s.accuracy_std) },
        { text: Number.isFinite(s.accuracy_ci95) ? `${pct(lo)} – ${pct(hi)}` : "– (one seed)", v: 100 * v(s.accuracy_ci95) },
        ...classNames.map((c) => ({ text: pct(s.per_class_accuracy_mean[c]), v: 100 * v(s.per_class_accuracy_mean[c]) })),
        { text: String(s.seeds), v: s.seeds },
        { text: fmt(s.perplexity_mean, 1), v: v(s.perplexity_mean) },
        { text: fmt(s.gradient_cosine_mean, 3), v: v(s.gradient_cosine_mean) },
        { text: fmt(s.distinct_1_mean, 2), v: v(s.distinct_1_mean) },
        { text: fmt(s.distinct_2_mean, 2), v: v(s.distinct_2_mean) },
        { text: s.longest_shared_ngram_max === undefined ? "–" : String(s.longest_shared_ngram_max), v: v(s.longest_shared_ngram_max) },
        { text: pct(s.filter_kept_fraction), v: 100 * v(s.filter_kept_fraction) },
      ];
    });
    parts.push(dataTable(`methods-${mode}`, cols, rows, { sortable: true }));
    // samples per method (the first seed's training set, a few per class)
    const withExamples = names.filter((m) => Array.isArray(agg.methods[m].examples));
    if (withExamples.length) {
      parts.push(`<h3>Samples per method</h3>`);
      for (const m of withExamples) {
        const ex = agg.methods[m].examples as string[][];
        parts.push(
          `<details${m === "gradmm" ? " open" : ""}><summary>${esc(m)}</summary>${dataTable(
            `samples-${mode}-${m}`,
            [{ title: "class" }, { title: "text", className: "text" }],
            ex.flatMap((texts, k) => texts.map((t) => [{ text: classNames[k] ?? String(k) }, { text: t }])),
          )}</details>`,
        );
      }
    }
  }
  if (report.settings) {
    parts.push(`<h2 id="settings">Settings and machine</h2>`);
    const s = report.settings;
    parts.push(kvTable(Object.entries(s).filter(([k]) => k !== "model_config")));
    if (report.machine) parts.push(`<h3>Machine</h3>${kvTable(Object.entries(report.machine))}`);
  }
  return page(title, parts.join("\n"));
}

/** One point of a GRADMM batch's trajectory: f(x) after an outer step's x-update (outer 0: the chosen init), or f(z) after its projection. */
export interface TrajectoryPoint {
  method: string;
  batch: string;
  outer: number;
  variable: "f(x)" | "f(z)";
  loss: number;
}

/** The matching-loss trajectories of every GRADMM batch of a utility run (each seed's synth folder's report.json). */
export function collectTrajectories(dir: string): TrajectoryPoint[] {
  const points: TrajectoryPoint[] = [];
  const seeds = fs.existsSync(dir) ? fs.readdirSync(dir).filter((d) => /^seed-\d+$/.test(d)).sort((a, b) => Number(a.slice(5)) - Number(b.slice(5))) : [];
  for (const seed of seeds)
    for (const method of ["gradmm", "gradmm_dp"]) {
      const file = path.join(dir, seed, method, "report.json");
      if (!fs.existsSync(file)) continue;
      const r = JSON.parse(fs.readFileSync(file, "utf8")) as { classes: Record<string, { batches: { batch: number; rho: number; init_loss: number; x_loss_per_outer: number[]; z_loss_per_outer: number[] }[] }> };
      for (const [cls, c] of Object.entries(r.classes))
        for (const b of c.batches) {
          const batch = `${seed} ${cls} ${b.batch} ρ=${b.rho}`;
          points.push({ method, batch, outer: 0, variable: "f(x)", loss: b.init_loss });
          b.x_loss_per_outer.forEach((loss, i) => points.push({ method, batch, outer: i + 1, variable: "f(x)", loss }));
          b.z_loss_per_outer.forEach((loss, i) => points.push({ method, batch, outer: i + 1, variable: "f(z)", loss }));
        }
    }
  return points;
}

/** Matching loss per ADMM outer step: a thin line per batch, the mean over batches thick; x and z side by side, a row per method. */
export function trajectorySpec(points: readonly TrajectoryPoint[], title: string): VegaLiteSpec {
  const color = { field: "method", type: "nominal", scale: { domain: ["gradmm", "gradmm_dp"], range: [METHOD_COLORS.gradmm, "#e45756"] }, title: null };
  const x = { field: "outer", type: "ordinal", title: "ADMM outer step (0: init)", axis: { labelAngle: 0 } };
  return {
    title: { text: title, fontSize: 13 },
    data: { values: points },
    // a row per method, each with its own y scale (the DP target is mostly noise, so gradmm_dp's losses sit near 1)
    facet: { row: { field: "method", type: "nominal", title: null, header: { labelFontSize: 12 } }, column: { field: "variable", type: "nominal", title: null, header: { labelFontSize: 12 } } },
    resolve: { scale: { y: "independent" } },
    spec: {
      width: 300,
      height: 220,
      layer: [
        { mark: { type: "line", strokeWidth: 0.6, opacity: 0.3 }, encoding: { x, y: { field: "loss", type: "quantitative", title: "1 − cos(g_syn, g_real)", scale: { zero: false } }, color, detail: { field: "batch" } } },
        { mark: { type: "line", strokeWidth: 2.5, point: true }, encoding: { x, y: { aggregate: "mean", field: "loss", type: "quantitative" }, color } },
      ],
    },
  };
}

/** Writes report.html and accuracy-<mode>.svg (and trajectories.svg when the run has GRADMM batches) into `dir`; returns report.html's path. */
export async function writeUtilityHtml(dir: string, report: UtilityReportLike, title?: string): Promise<string> {
  for (const [mode, agg] of Object.entries(report.modes)) {
    if (!Object.keys(agg.methods).length) continue;
    const names = Object.keys(agg.methods);
    const classes = Object.keys(agg.methods[names[0]].per_class_accuracy_mean).length;
    writeFileAtomic(path.join(dir, `accuracy-${mode}.svg`), await accuracySvg(agg, `${title ?? "utility"} (${mode}): test accuracy, mean and 95% interval over ${agg.seeds.length} seeds`, classes ? 1 / classes : undefined));
  }
  const points = collectTrajectories(dir);
  if (points.length) {
    const batches = new Set(points.map((p) => `${p.method} ${p.batch}`)).size;
    writeFileAtomic(path.join(dir, "trajectories.svg"), await vegaLiteSvg(trajectorySpec(points, `${title ?? "utility"}: matching loss per ADMM outer step (${batches} batches; thick: mean)`)));
  }
  const file = path.join(dir, "report.html");
  writeFileAtomic(file, await renderUtilityHtml(report, title));
  return file;
}
