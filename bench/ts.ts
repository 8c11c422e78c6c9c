/**
 * `npm run bench -- ts`: the TypeScript-side hot paths timed by benchmark.js (its sampling, mean, relative margin of
 * error at 95% and ops/s): the tokenizer's encode, reading labelled JSONL and CSV, the filter (label agreement on the
 * test model, ranking, de-duplication, balance) and GGUF metadata parsing. Everything runs from committed files.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { readLabelledFile, filterSamples, type SyntheticSample, parseGGUFBuffer } from "../ts/advanced";
import { loadModel, Tokenizer } from "../ts/index";
import { benchParagraphs } from "./load-tokenizer";

const root = path.join(__dirname, "..", "..");
/** From dist/bench/ or, under tsx, from bench/: the repository root holds package.json. */
const repo = fs.existsSync(path.join(root, "package.json")) ? root : path.join(__dirname, "..");

export interface TsBenchCase {
  name: string;
  /** What one operation is. */
  unit: string;
  ops_per_s: number;
  mean_ms: number;
  rme_percent: number;
  samples: number;
  /** Throughput where one operation has a size (MB/s of text, rows/s). */
  throughput?: string;
}

interface BenchmarkLike {
  name: string;
  hz: number;
  stats: { mean: number; rme: number; sample: number[] };
  error?: Error;
}
type SuiteLike = {
  add(name: string, fn: (() => void) | { defer: true; fn: (d: { resolve(): void }) => void }, opts?: Record<string, unknown>): SuiteLike;
  add(name: string, opts: Record<string, unknown>): SuiteLike;
  on(ev: string, fn: (e: { target: BenchmarkLike }) => void): SuiteLike;
  run(o: { async: boolean }): void;
};

export async function benchTs(opts: { quick?: boolean } = {}): Promise<{ cases: TsBenchCase[]; machine: Record<string, unknown> }> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Benchmark = require("benchmark") as { Suite: new () => SuiteLike; options: { maxTime: number; minSamples: number } };
  Benchmark.options.maxTime = opts.quick ? 0.5 : 3;
  Benchmark.options.minSamples = opts.quick ? 5 : 20;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-bench-ts-"));
  const model = loadModel(path.join(repo, "test", "fixtures", "tiny_lm"));
  try {
    // inputs
    const tokenizer = Tokenizer.fromFile(path.join(repo, "models", "default", "tokenizer.json"));
    const text = benchParagraphs(opts.quick ? 50_000 : 200_000).join("\n");
    const textMB = Buffer.byteLength(text) / 1e6;
    const jsonl = path.join(repo, "examples", "data", "imdb", "train.jsonl");
    const rows = fs.readFileSync(jsonl, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as { text: string; label: number });
    const csv = path.join(tmp, "train.csv");
    fs.writeFileSync(csv, ["text,label", ...rows.map((r) => `"${r.text.replace(/"/g, '""')}",${r.label}`)].join("\n") + "\n");
    const ggufFile = path.join(repo, "test", "fixtures", "gguf", "llama_tiny.gguf");
    const gguf = fs.readFileSync(ggufFile);
    const samples: SyntheticSample[] = Array.from({ length: 60 }, (_, i) => {
      const t = rows[i % rows.length].text.split(/\s+/).slice(0, 8).join(" ");
      const tokens = model.tokenizer!.encode(t).slice(0, 12);
      return { text: t, label: i % 2, cls: i % 2, tokens, matching_loss: ((i * 37) % 100) / 100, perplexity: 10 + i, batch: Math.floor(i / 6), rho: 0.1 };
    });
    const filterOpts = { classes: [{ labelWord: " bad" }, { labelWord: " great" }], template: " It was", demonstrations: [], keepPerClass: 10, pplWeight: 0.1, dedupe: true };

    const results: TsBenchCase[] = [];
    const sizes: Record<string, { unit: string; per?: (hz: number) => string }> = {
      "tokenizer encode": { unit: `${textMB.toFixed(2)} MB of text`, per: (hz) => `${(hz * textMB).toFixed(2)} MB/s` },
      "JSONL read": { unit: `${rows.length} labelled rows`, per: (hz) => `${Math.round(hz * rows.length)} rows/s` },
      "CSV read": { unit: `${rows.length} labelled rows`, per: (hz) => `${Math.round(hz * rows.length)} rows/s` },
      filter: { unit: `${samples.length} samples (tiny test model)`, per: (hz) => `${Math.round(hz * samples.length)} samples/s` },
      "GGUF metadata": { unit: `${path.basename(ggufFile)} header (${(gguf.length / 1e3).toFixed(0)} kB file)` },
    };
    await new Promise<void>((resolve, reject) => {
      new Benchmark.Suite()
        .add("tokenizer encode", () => void tokenizer.encode(text))
        .add("JSONL read", () => void readLabelledFile(jsonl, { textField: "text", labelField: "label", classLabels: [0, 1] }))
        .add("CSV read", () => void readLabelledFile(csv, { textField: "text", labelField: "label", classLabels: ["0", "1"] }))
        .add("filter", {
          defer: true,
          fn: (d: { resolve(): void }) => void filterSamples(model.model, model.tokenizer!, samples, filterOpts).then(() => d.resolve(), reject),
        })
        .add("GGUF metadata", () => void parseGGUFBuffer(gguf, ggufFile))
        .on("cycle", (e: { target: BenchmarkLike }) => {
          const b = e.target;
          if (b.error) return reject(b.error);
          const s = sizes[b.name];
          results.push({ name: b.name, unit: s.unit, ops_per_s: b.hz, mean_ms: b.stats.mean * 1000, rme_percent: b.stats.rme, samples: b.stats.sample.length, ...(s.per ? { throughput: s.per(b.hz) } : {}) });
          process.stderr.write(`bench ts: ${b.name}: ${(b.stats.mean * 1000).toFixed(3)} ms ±${b.stats.rme.toFixed(1)}% (${b.stats.sample.length} samples)\n`);
        })
        .on("complete", () => resolve())
        .run({ async: true });
    });
    return { cases: results, machine: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version } };
  } finally {
    model.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

export function formatTsTable(r: { cases: TsBenchCase[] }): string {
  const lines = ["| path | one operation | mean | ± (95%) | ops/s | throughput | samples |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"];
  for (const c of r.cases)
    lines.push(`| ${c.name} | ${c.unit} | ${c.mean_ms < 1 ? c.mean_ms.toFixed(3) : c.mean_ms.toFixed(1)} ms | ${c.rme_percent.toFixed(1)}% | ${c.ops_per_s.toFixed(1)} | ${c.throughput ?? "–"} | ${c.samples} |`);
  return lines.join("\n");
}
