/**
 * report.html of a synth run (`gradmm report <run folder>`; `gradmm synth` writes it at the end of every run): the
 * matching loss of x and z per outer step, init → best x → decoded, the set's gradient cosine to the target, the
 * per-sample matching loss and perplexity of the synthetic against the real examples (omitted under DP), the filter's
 * decisions in a sortable, searchable table, the DP parameters, settings, model, machine and timings. Built only from
 * the run folder's report.json and synthetic.jsonl, so it can be made again for any finished run.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InvalidFileError } from "../errors";
import { writeFileAtomic } from "../io";
import { dataTable, esc, figure, fmt, kvTable, page, type VegaLiteSpec } from "./page";

interface BatchInfo {
  batch: number;
  rho: number;
  init_loss: number;
  best_x_loss: number;
  decoded_loss: number;
  /** method.decode best_z only: the outer step whose projection was kept (0: Π(best x)). */
  decoded_from_outer?: number;
  x_loss_per_outer: number[];
  z_loss_per_outer: number[];
  seconds: number;
}
interface ClassInfo {
  real_examples: number;
  free_tokens: number;
  target_norm: number;
  gradient_cosine_all: number | null;
  gradient_cosine_filtered: number | null;
  dp?: { n: number; sigma: number; mechanism?: string } | null;
  real?: { matching_loss: number[]; perplexity: number[] } | null;
  batches: BatchInfo[];
}
interface RunReport {
  settings: Record<string, unknown> & { dp?: { enabled?: boolean }; method?: Record<string, unknown>; classes?: { label: unknown; name?: string; label_word: string; instruction: string }[] };
  model: Record<string, unknown>;
  dp: { epsilon: number; delta: number; clip_norm: number; per_class: { class: string; n: number; sigma: number; mechanism?: string }[] } | null;
  classes: Record<string, ClassInfo>;
  filter: Record<string, unknown>;
  counts: { synthetic: number; filtered: number };
  filter_decisions?: { kept: boolean; reason: string; predicted: string | null; score: number; rank: number | null }[];
  machine?: Record<string, unknown>;
  timings?: Record<string, number>;
  seconds_total: number;
}
interface Sample {
  text: string;
  label: string | number;
  matching_loss: number;
  perplexity: number | null;
  batch: number;
  rho: number;
}

function readJson<T>(file: string): T {
  let src: string;
  try {
    src = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new InvalidFileError(file, `cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); is this a finished run's folder?`, { cause: e });
  }
  try {
    return JSON.parse(src) as T;
  } catch (e) {
    throw new InvalidFileError(file, `not valid JSON: ${(e as Error).message}`, { cause: e });
  }
}

function readJsonl<T>(file: string): T[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim())
    .map((l, i) => {
      try {
        return JSON.parse(l) as T;
      } catch (e) {
        throw new InvalidFileError(file, `line ${i + 1}: not valid JSON`, { line: i + 1, cause: e });
      }
    });
}

/** A histogram of fractions (each source sums to 1 per class), so 25 real and 200 synthetic samples compare. */
function histogram(rows: { class: string; source: string; value: number }[], title: string, maxbins = 20): VegaLiteSpec {
  const sources = ["synthetic", "real"].filter((s) => rows.some((r) => r.source === s));
  return {
    data: { values: rows },
    transform: [
      { bin: { maxbins }, field: "value", as: ["bin_start", "bin_end"] },
      { aggregate: [{ op: "count", as: "count" }], groupby: ["bin_start", "bin_end", "source", "class"] },
      { joinaggregate: [{ op: "sum", field: "count", as: "total" }], groupby: ["source", "class"] },
      { calculate: "datum.count / datum.total", as: "fraction" },
    ],
    facet: { column: { field: "class", type: "nominal", title: null } },
    spec: {
      width: 260,
      height: 170,
      mark: { type: "bar", opacity: 0.6, binSpacing: 1 },
      encoding: {
        x: { field: "bin_start", type: "quantitative", bin: { binned: true }, title },
        x2: { field: "bin_end" },
        y: { field: "fraction", type: "quantitative", stack: null, title: "fraction of the set", axis: { format: ".0%" } },
        color: { field: "source", type: "nominal", title: null, scale: { domain: sources, range: ["#4c78a8", "#54a24b"].slice(0, sources.length) } },
        tooltip: [{ field: "source" }, { field: "count" }],
      },
    },
    resolve: { scale: { x: "independent" } },
  };
}

/** The page's HTML from a run folder. */
export async function renderRunReport(dir: string): Promise<string> {
  const report = readJson<RunReport>(path.join(dir, "report.json"));
  if (!report || typeof report !== "object" || !report.classes || !report.settings)
    throw new InvalidFileError(path.join(dir, "report.json"), "not a synth run's report (no classes or settings)");
  const samples = readJsonl<Sample>(path.join(dir, "synthetic.jsonl"));
  const classNames = Object.keys(report.classes);
  const dpOn = !!report.dp;
  const labelName = new Map((report.settings.classes ?? []).map((c) => [String(c.label), c.name ?? String(c.label)]));
  const nameOf = (label: unknown) => labelName.get(String(label)) ?? String(label);
  const parts: string[] = [];

  // ---- header and summary ----
  const model = report.model as { modelType?: string; numLayers?: number; channels?: number; vocabSize?: number };
  const modelDir = String(report.settings.model_dir ?? report.settings.model ?? "");
  parts.push(`<h1>GRADMM run report</h1><p class="sub">${esc(dir)} · model ${esc(path.basename(modelDir))}${model.modelType ? ` (${esc(model.modelType)}, ${model.numLayers} layers, ${model.channels} channels)` : ""}${dpOn ? ` · differentially private (ε = ${report.dp!.epsilon})` : ""}</p>`);
  parts.push(
    `<nav><a href="#matching">matching</a><a href="#cosine">gradient cosine</a><a href="#distributions">distributions</a><a href="#samples">samples</a>${dpOn ? `<a href="#dp">DP</a>` : ""}<a href="#settings">settings</a></nav>`,
  );
  const cards: [string, string][] = [
    [String(report.counts.synthetic), "synthetic samples"],
    [String(report.counts.filtered), "kept by the filter"],
    ...classNames.map((c): [string, string] => [fmt(report.classes[c].gradient_cosine_filtered ?? report.classes[c].gradient_cosine_all, 3), `gradient cosine, ${c}`]),
    [`${(report.seconds_total / 60).toFixed(1)} min`, "wall time"],
  ];
  parts.push(`<div class="cards">${cards.map(([v, l]) => `<div class="card"><b>${esc(v)}</b><span>${esc(l)}</span></div>`).join("")}</div>`);

  // ---- matching loss per outer step ----
  const curves: { class: string; batch: string; outer: number; loss: number; variable: string }[] = [];
  const stages: { class: string; batch: string; stage: string; loss: number }[] = [];
  for (const c of classNames)
    for (const b of report.classes[c].batches) {
      const batch = `batch ${b.batch}${report.classes[c].batches.some((o) => o.rho !== b.rho) ? ` ρ=${b.rho}` : ""}`;
      b.x_loss_per_outer.forEach((loss, i) => curves.push({ class: c, batch, outer: i + 1, loss, variable: "x (continuous embeddings)" }));
      b.z_loss_per_outer.forEach((loss, i) => curves.push({ class: c, batch, outer: i + 1, loss, variable: "z (projected tokens)" }));
      stages.push({ class: c, batch, stage: "init", loss: b.init_loss }, { class: c, batch, stage: "best x", loss: b.best_x_loss }, { class: c, batch, stage: "decoded", loss: b.decoded_loss });
    }
  parts.push(`<h2 id="matching">Gradient matching</h2>`);
  parts.push(
    `<p class="note">The matching loss is 1 − cos(gradient of the synthetic batch, the class target), per ADMM outer step: x is the relaxed embedding matrix after its Adam steps, z its projection onto tokens. A working run drives both down and keeps z close to x.</p>`,
  );
  parts.push(
    await figure("loss-curves", "Matching loss of x and z per outer step, one line per batch.", {
      data: { values: curves },
      facet: { row: { field: "class", type: "nominal", title: null }, column: { field: "variable", type: "nominal", title: null } },
      spec: {
        width: 330,
        height: 190,
        mark: { type: "line", strokeWidth: 1.4, point: curves.length < 400 ? { size: 12 } : false },
        encoding: {
          x: { field: "outer", type: "quantitative", title: "outer step", axis: { tickMinStep: 1, format: "d" } },
          y: { field: "loss", type: "quantitative", title: "matching loss", scale: { zero: false } },
          color: { field: "batch", type: "nominal", title: "batch", legend: { columns: 2 } },
          tooltip: [{ field: "class" }, { field: "batch" }, { field: "outer" }, { field: "loss", format: ".4f" }],
        },
      },
    }),
  );
  parts.push(
    await figure("stages", "Per batch: the loss of the initial candidate, the best x found, and the decoded text.", {
      data: { values: stages },
      width: 300,
      height: 200,
      mark: { type: "line", point: true, opacity: 0.8 },
      encoding: {
        x: { field: "stage", type: "ordinal", sort: ["init", "best x", "decoded"], title: null, axis: { labelAngle: 0 } },
        y: { field: "loss", type: "quantitative", title: "matching loss", scale: { zero: false } },
        color: { field: "class", type: "nominal" },
        detail: { field: "batch", type: "nominal" },
        tooltip: [{ field: "class" }, { field: "batch" }, { field: "stage" }, { field: "loss", format: ".4f" }],
      },
    }),
  );

  // ---- gradient cosine of the set ----
  const cos = classNames.flatMap((c) => [
    { class: c, set: "all synthetic", cosine: report.classes[c].gradient_cosine_all },
    { class: c, set: "kept by the filter", cosine: report.classes[c].gradient_cosine_filtered },
  ]).filter((r) => typeof r.cosine === "number");
  parts.push(`<h2 id="cosine">Gradient cosine of the set to the target</h2>`);
  parts.push(
    await figure("cosine", "cos(mean gradient of the class's synthetic texts, the class target): 1 would be a set that trains exactly like the real examples.", {
      data: { values: cos },
      width: { step: 42 },
      height: 200,
      mark: { type: "bar" },
      encoding: {
        x: { field: "class", type: "nominal", title: null, axis: { labelAngle: 0 } },
        xOffset: { field: "set", type: "nominal" },
        y: { field: "cosine", type: "quantitative", title: "gradient cosine" },
        color: { field: "set", type: "nominal", title: null, scale: { range: ["#9ecae9", "#4c78a8"] } },
        tooltip: [{ field: "class" }, { field: "set" }, { field: "cosine", format: ".4f" }],
      },
    }),
  );
  parts.push(
    dataTable(
      "classes",
      [{ title: "class" }, { title: "real examples", type: "num", className: "num" }, { title: "free tokens", type: "num", className: "num" }, { title: "‖target‖", type: "num", className: "num" }, { title: "cosine (all)", type: "num", className: "num" }, { title: "cosine (kept)", type: "num", className: "num" }, { title: "batches", type: "num", className: "num" }],
      classNames.map((c) => {
        const k = report.classes[c];
        return [{ text: c }, { text: String(k.real_examples), v: k.real_examples }, { text: String(k.free_tokens), v: k.free_tokens }, { text: fmt(k.target_norm, 4), v: k.target_norm }, { text: fmt(k.gradient_cosine_all, 4), v: k.gradient_cosine_all ?? NaN }, { text: fmt(k.gradient_cosine_filtered, 4), v: k.gradient_cosine_filtered ?? NaN }, { text: String(k.batches.length), v: k.batches.length }];
      }),
    ),
  );

  // ---- distributions: synthetic against real ----
  parts.push(`<h2 id="distributions">Per-sample matching loss and perplexity</h2>`);
  const lossRows: { class: string; source: string; value: number }[] = [];
  const pplRows: { class: string; source: string; value: number }[] = [];
  for (const s of samples) {
    const c = nameOf(s.label);
    if (Number.isFinite(s.matching_loss)) lossRows.push({ class: c, source: "synthetic", value: s.matching_loss });
    if (s.perplexity !== null && s.perplexity > 0) pplRows.push({ class: c, source: "synthetic", value: Math.log10(s.perplexity) });
  }
  if (dpOn) parts.push(`<p class="note warn">Differential privacy is on: the real examples' statistics are not computed and not shown (nothing derived from a private text beyond the noisy targets may leave the run).</p>`);
  else {
    for (const c of classNames) {
      const real = report.classes[c].real;
      real?.matching_loss.forEach((v) => lossRows.push({ class: c, source: "real", value: v }));
      real?.perplexity.forEach((v) => v > 0 && pplRows.push({ class: c, source: "real", value: Math.log10(v) }));
    }
    parts.push(`<p class="note">Synthetic samples against the real examples that form the target (each example's own gradient against its class target; perplexity after the class instruction). Bars are fractions of each set.</p>`);
  }
  if (lossRows.length) parts.push(await figure("hist-loss", "Per-sample matching loss (1 − cos of the sample's own gradient to the class target).", histogram(lossRows, "matching loss")));
  if (pplRows.length) parts.push(await figure("hist-perplexity", "Per-sample perplexity under the model, after the class instruction (log₁₀).", histogram(pplRows, "log₁₀ perplexity")));

  // ---- the filter's decisions ----
  const decisions = report.filter_decisions;
  parts.push(`<h2 id="samples">Samples and the filter's decisions</h2>`);
  parts.push(
    `<p class="note">The filter keeps samples the model itself labels as intended (label agreement), drops duplicates, ranks each class by score (matching loss + ppl_weight × log-perplexity), keeps the best keep_per_class and balances the classes. Click a header to sort; type to search.</p>`,
  );
  if (report.filter && Object.keys(report.filter).length) parts.push(kvTable(Object.entries(report.filter)));
  if (decisions && decisions.length === samples.length) {
    const counts: { class: string; reason: string; count: number }[] = [];
    samples.forEach((s, i) => {
      const c = nameOf(s.label), reason = decisions[i].reason;
      const row = counts.find((r) => r.class === c && r.reason === reason);
      if (row) row.count++;
      else counts.push({ class: c, reason, count: 1 });
    });
    parts.push(
      await figure("filter", "What the filter did with each class's samples.", {
        data: { values: counts },
        width: 360,
        height: { step: 26 },
        mark: "bar",
        encoding: {
          y: { field: "class", type: "nominal", title: null },
          x: { field: "count", type: "quantitative", title: "samples", stack: "zero" },
          color: { field: "reason", type: "nominal", title: "decision", scale: { domain: ["kept", "filter disabled", "below top N", "class balance", "duplicate", "label disagreement"], range: ["#54a24b", "#88d27a", "#eeca3b", "#f58518", "#b279a2", "#e45756"] } },
          tooltip: [{ field: "class" }, { field: "reason" }, { field: "count" }],
        },
      }),
    );
  } else if (samples.length) parts.push(`<p class="note">This run's report.json predates per-sample filter decisions; the table shows the samples without them.</p>`);
  const cols = [
    { title: "#", type: "num" as const, className: "num" },
    { title: "class" },
    { title: "batch", type: "num" as const, className: "num" },
    { title: "ρ", type: "num" as const, className: "num" },
    { title: "matching loss", type: "num" as const, className: "num" },
    { title: "perplexity", type: "num" as const, className: "num" },
    { title: "model says" },
    { title: "score", type: "num" as const, className: "num" },
    { title: "rank", type: "num" as const, className: "num" },
    { title: "decision" },
    { title: "text", className: "text" },
  ];
  const rows = samples.map((s, i) => {
    const d = decisions?.[i];
    return [
      { text: String(i + 1), v: i + 1 },
      { text: nameOf(s.label) },
      { text: String(s.batch), v: s.batch },
      { text: String(s.rho), v: s.rho },
      { text: fmt(s.matching_loss, 4), v: s.matching_loss },
      { text: fmt(s.perplexity, 1), v: s.perplexity ?? NaN },
      { text: d?.predicted ?? "–" },
      { text: d ? fmt(d.score, 4) : "–", v: d?.score ?? NaN },
      { text: d?.rank ? String(d.rank) : "–", v: d?.rank ?? NaN },
      { text: d ? d.reason : "–" },
      { text: s.text },
    ];
  });
  parts.push(dataTable("samples-table", cols, rows, { sortable: true, search: true, filterColumn: 9 }));

  // ---- DP ----
  if (report.dp) {
    parts.push(`<h2 id="dp">Differential privacy</h2>`);
    parts.push(kvTable([["ε (epsilon)", report.dp.epsilon], ["δ (delta)", report.dp.delta], ["C (per-example clipping norm)", report.dp.clip_norm]]));
    parts.push(
      dataTable(
        "dp-table",
        [{ title: "class" }, { title: "n (examples)", type: "num", className: "num" }, { title: "σ (noise std)", type: "num", className: "num" }, { title: "mechanism" }],
        report.dp.per_class.map((p) => [{ text: p.class }, { text: String(p.n), v: p.n }, { text: fmt(p.sigma, 5), v: p.sigma }, { text: p.mechanism ?? "–" }]),
      ),
    );
  }

  // ---- settings, model, machine, timings ----
  parts.push(`<h2 id="settings">Settings, model, machine and timings</h2>`);
  const st = report.settings as Record<string, unknown>;
  parts.push(`<h3>Method</h3>${kvTable(Object.entries(st.method ?? {}))}`);
  parts.push(
    `<h3>Classes</h3>${dataTable(
      "classes-settings",
      [{ title: "label" }, { title: "name" }, { title: "label word" }, { title: "instruction" }],
      (report.settings.classes ?? []).map((c) => [{ text: String(c.label) }, { text: c.name ?? "–" }, { text: JSON.stringify(c.label_word) }, { text: c.instruction }]),
    )}`,
  );
  parts.push(`<h3>Run</h3>${kvTable([["template", JSON.stringify(st.template)], ["data", st.data], ["filter", st.filter], ["dp", st.dp], ["seed", st.seed], ["output", st.output], ["model", modelDir]])}`);
  parts.push(`<h3>Model</h3>${kvTable(Object.entries(report.model ?? {}))}`);
  if (report.machine) parts.push(`<h3>Machine</h3>${kvTable(Object.entries(report.machine))}`);
  const t = report.timings ?? {};
  const batchSeconds = classNames.flatMap((c) => report.classes[c].batches.map((b) => b.seconds));
  parts.push(
    `<h3>Timings</h3>${kvTable([
      ...Object.entries(t).map(([k, v]): [string, unknown] => [k.replace(/_s$/, " (s)").replace(/_/g, " "), +v.toFixed(2)]),
      ["batches", batchSeconds.length],
      ["seconds per batch (mean)", batchSeconds.length ? +(batchSeconds.reduce((a, b) => a + b, 0) / batchSeconds.length).toFixed(2) : null],
      ["total (s)", +report.seconds_total.toFixed(2)],
    ])}`,
  );
  parts.push(`<details><summary>report.json settings as written</summary><pre>${esc(JSON.stringify(report.settings, null, 2))}</pre></details>`);
  return page(`GRADMM report: ${path.basename(path.resolve(dir))}`, parts.join("\n"));
}

/** Writes `<dir>/report.html` (atomically) and returns its path. */
export async function writeRunReport(dir: string): Promise<string> {
  const html = await renderRunReport(dir);
  const file = path.join(dir, "report.html");
  writeFileAtomic(file, html);
  return file;
}
