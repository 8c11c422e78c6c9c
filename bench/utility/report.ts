/** Aggregating seeds into report.json's `methods` and the Markdown table. */

export interface SetMetrics {
  /** Geometric mean over classes of exp(mean per-text cross-entropy after the class instruction). */
  perplexity: number;
  /** Mean over classes of cos(mean lm_head gradient of the set's class-k texts, the class-k private target). */
  gradient_cosine: number;
  gradient_cosine_per_class: (number | null)[];
  distinct_1: number;
  distinct_2: number;
  longest_shared_ngram_max: number;
  longest_shared_ngram_mean: number;
  mean_words: number;
  examples: string[][];
}

export interface MethodSeedResult {
  accuracy: number;
  per_class_accuracy: number[];
  test_loss: number;
  lr?: number;
  step?: number;
  dev_accuracy?: number;
  dev_curve?: unknown;
  train_loss?: unknown;
  train_size_per_class?: number[];
  metrics?: SetMetrics;
  build?: Record<string, unknown>;
  seconds?: number;
  uncalibrated_accuracy?: number;
  calibration?: unknown;
  /** probe mode: the L2 strength chosen on dev, dev accuracy per strength, accuracy on its own training set. */
  l2?: number;
  dev_by_l2?: Record<string, number>;
  train_accuracy?: number;
}

export interface SeedResult {
  seed: number;
  methods: Record<string, MethodSeedResult>;
}

/** Two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..30 (beyond: 1.96). */
const T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042];

/** Mean, sample standard deviation (n − 1; 0 for one value) and the 95% interval half-width of the mean (NaN for n = 1). NaNs are skipped. */
export function meanStd(xs: readonly number[]): { mean: number; std: number; ci95: number; n: number } {
  const v = xs.filter((x) => Number.isFinite(x));
  if (!v.length) return { mean: NaN, std: NaN, ci95: NaN, n: 0 };
  const mean = v.reduce((a, b) => a + b, 0) / v.length;
  const std = v.length > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (v.length - 1)) : 0;
  const ci95 = v.length > 1 ? (T975[Math.min(v.length - 2, T975.length - 1)] * std) / Math.sqrt(v.length) : NaN;
  return { mean, std, ci95, n: v.length };
}

export interface MethodSummary {
  accuracy_mean: number;
  accuracy_std: number;
  /** Half-width of the 95% Student-t interval of the mean over seeds (NaN with one seed). */
  accuracy_ci95: number;
  accuracy_per_seed: number[];
  per_class_accuracy_mean: Record<string, number>;
  seeds: number;
  [key: string]: unknown;
}

const sum = (a: readonly number[]) => a.reduce((x, y) => x + y, 0);

export function aggregate(seeds: readonly SeedResult[], methods: readonly string[], classNames: readonly string[]): { methods: Record<string, MethodSummary>; seeds: number[] } {
  const out: Record<string, MethodSummary> = {};
  for (const name of methods) {
    const rs = seeds.map((s) => s.methods[name]).filter((r): r is MethodSeedResult => !!r);
    if (!rs.length) continue;
    const acc = meanStd(rs.map((r) => r.accuracy));
    const s: MethodSummary = {
      accuracy_mean: acc.mean,
      accuracy_std: acc.std,
      accuracy_ci95: acc.ci95,
      accuracy_per_seed: rs.map((r) => r.accuracy),
      per_class_accuracy_mean: Object.fromEntries(classNames.map((c, k) => [c, meanStd(rs.map((r) => r.per_class_accuracy[k])).mean])),
      seeds: rs.length,
    };
    if (rs[0].metrics) {
      const metric = (f: (m: SetMetrics) => number) => meanStd(rs.map((r) => f(r.metrics!))).mean;
      Object.assign(s, {
        train_size_per_class: rs[0].train_size_per_class,
        lr_per_seed: rs.map((r) => r.lr ?? r.l2),
        step_per_seed: rs.map((r) => r.step),
        dev_accuracy_mean: meanStd(rs.map((r) => r.dev_accuracy ?? NaN)).mean,
        perplexity_mean: metric((m) => m.perplexity),
        gradient_cosine_mean: metric((m) => m.gradient_cosine),
        distinct_1_mean: metric((m) => m.distinct_1),
        distinct_2_mean: metric((m) => m.distinct_2),
        longest_shared_ngram_max: Math.max(...rs.map((r) => r.metrics!.longest_shared_ngram_max)),
        longest_shared_ngram_mean: metric((m) => m.longest_shared_ngram_mean),
        mean_words: metric((m) => m.mean_words),
        examples: rs[0].metrics.examples,
      });
      const raw = rs.map((r) => r.build?.raw_per_class as number[] | undefined);
      const passed = rs.map((r) => r.build?.passed_filter_per_class as number[] | undefined);
      const topped = rs.map((r) => r.build?.topped_up_per_class as number[] | undefined);
      if (raw.every(Boolean) && passed.every(Boolean)) s.filter_kept_fraction = meanStd(rs.map((_, i) => sum(passed[i]!) / sum(raw[i]!))).mean;
      if (topped.every(Boolean)) s.topped_up_per_class_mean = meanStd(rs.map((_, i) => sum(topped[i]!) / topped[i]!.length)).mean;
      const seconds = rs.map((r) => (r.build?.seconds as number | undefined) ?? NaN);
      if (seconds.some(Number.isFinite)) s.build_seconds_mean = meanStd(seconds).mean;
    }
    if (rs[0].uncalibrated_accuracy !== undefined) s.uncalibrated_accuracy_mean = meanStd(rs.map((r) => r.uncalibrated_accuracy!)).mean;
    out[name] = s;
  }
  return { methods: out, seeds: seeds.map((s) => s.seed) };
}

const pct = (x: unknown) => (typeof x === "number" && Number.isFinite(x) ? (100 * x).toFixed(1) : "–");
const num = (x: unknown, d = 2) => (typeof x === "number" && Number.isFinite(x) ? x.toFixed(d) : "–");

/** The results table (accuracy in %, mean ± std over seeds) and the set metrics. */
export function formatMarkdown(report: { methods: Record<string, MethodSummary>; seeds: number[]; wall_seconds?: number; machine?: Record<string, unknown> }): string {
  const names = Object.keys(report.methods);
  const classNames = names.length ? Object.keys(report.methods[names[0]].per_class_accuracy_mean) : [];
  const lines = [
    `| method | accuracy % (mean ± std) | 95% CI ± | ${classNames.map((c) => `${c} %`).join(" | ")} | n/class | ppl | grad cos | distinct-1 | distinct-2 | longest shared n-gram (max / mean) | kept by filter | lr or probe l2 (per seed) |`,
    `| --- | ---: | ---: | ${classNames.map(() => "---:").join(" | ")} | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |`,
  ];
  for (const n of names) {
    const s = report.methods[n];
    const size = s.train_size_per_class as number[] | undefined;
    lines.push(
      `| ${n} | ${pct(s.accuracy_mean)} ± ${pct(s.accuracy_std)} | ${pct(s.accuracy_ci95)} | ${classNames.map((c) => pct(s.per_class_accuracy_mean[c])).join(" | ")} | ${size ? size.join("/") : "–"} | ${num(s.perplexity_mean, 1)} | ${num(s.gradient_cosine_mean, 3)} | ${num(s.distinct_1_mean)} | ${num(s.distinct_2_mean)} | ${s.longest_shared_ngram_max ?? "–"} / ${num(s.longest_shared_ngram_mean, 1)} | ${s.filter_kept_fraction === undefined ? "–" : pct(s.filter_kept_fraction) + "%"} | ${(s.lr_per_seed as number[] | undefined)?.join(", ") ?? "–"} |`,
    );
  }
  const foot = [`Seeds: ${report.seeds.join(", ")}.`];
  if (report.wall_seconds !== undefined) foot.push(`Wall time: ${(report.wall_seconds / 60).toFixed(1)} min.`);
  if (report.machine) foot.push(`Machine: ${report.machine.cpu}, ${report.machine.threads} thread(s).`);
  return [...lines, "", foot.join(" ")].join("\n");
}

/**
 * The first seed's training texts, `perClass` per class per method (the first of each set: GRADMM's in the filter's
 * ranking, the real set's at random), as a Markdown table with one row per text.
 */
export function formatSamplesMarkdown(report: { methods: Record<string, MethodSummary>; seeds: number[] }, classNames: readonly string[], perClass = 5, maxChars = 240): string {
  const cell = (t: string) => {
    const one = t.replace(/\s+/g, " ").trim();
    const cut = one.length > maxChars ? one.slice(0, maxChars - 1) + "…" : one;
    return cut.replace(/\\/g, "\\\\").replace(/\|/g, "\\|").replace(/</g, "&lt;");
  };
  const lines = [`| method | class | text (seed ${report.seeds[0] ?? "–"}) |`, "| --- | --- | --- |"];
  for (const [name, s] of Object.entries(report.methods)) {
    const ex = s.examples as string[][] | undefined;
    if (!Array.isArray(ex)) continue;
    ex.forEach((texts, k) => texts.slice(0, perClass).forEach((t) => lines.push(`| ${name} | ${classNames[k] ?? k} | ${cell(t)} |`)));
  }
  return lines.join("\n");
}
