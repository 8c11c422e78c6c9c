/**
 * `npm run bench -- load`: how fast a model folder comes in.
 *   - tokenizer: encode throughput of our tokenizer vs the fastest installed JavaScript tokenizer
 *     (bench/load-tokenizer.ts, GPT-2 vocabulary, ~2 MB of text)
 *   - checkpoint: time to load a ~100 MB F32 safetensors file of a Llama-shaped model (random weights written to a
 *     temporary folder) with CausalLMModel.load(): config.json parse, native allocation, every tensor streamed into the
 *     native parameter block with its shape checked. Also BF16 (converted to float32 while loading) and, as the
 *     ceiling, fs.readFileSync of the same F32 file. The file was just written, so it is read from the page cache:
 *     this measures the loader, not the disk. Median of the repetitions; MB = 10^6 bytes of file.
 *   - gguf: SmolLM2-135M-Instruct (Q4_1/Q8_0 GGUF, 98 MB) from the model cache, page cache warm: loadModel(name) as
 *     a whole, and its stages (sha256 check, header, tokenizer from metadata, weights dequantized into the engine).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { readGGUF, mulberry32, cachedModelFile, sha256FileSync, tokenizerFromGGUF, writeSafetensors, type WritableTensor } from "../ts/advanced";
import { CausalLMModel, loadModel, type LlamaConfig } from "../ts/index";
import { benchTokenizer, type TokenizerBenchResult } from "./load-tokenizer";

export interface CheckpointLoadResult {
  dtype: "F32" | "BF16";
  file_mb: number;
  params: number;
  /** Median seconds for CausalLMModel.load(dir). */
  load_s: number;
  mb_s: number;
}

export interface GGUFLoadResult {
  model: string;
  file_mb: number;
  /** Median seconds of loadModel(name): everything below plus allocation. */
  load_s: number;
  sha256_s: number;
  header_s: number;
  tokenizer_s: number;
  weights_s: number;
}

export interface LoadBenchResult {
  tokenizer: TokenizerBenchResult;
  /** null when SmolLM2-135M-Instruct is not in the model cache. */
  gguf: GGUFLoadResult | null;
  checkpoints: CheckpointLoadResult[];
  /** fs.readFileSync of the F32 file (page cache → JS memory), the ceiling for any loader. */
  read_file_mb_s: number;
  model: { architecture: "llama"; vocab: number; hidden: number; intermediate: number; layers: number; heads: number; kv_heads: number };
  repetitions: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function seconds(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** A Llama-shaped config of about `mb` MB in F32 (8000 vocab, or 1000 below 50 MB; 512 hidden, GQA 8/4 heads, untied). */
function llamaConfig(mb: number): LlamaConfig {
  const base: LlamaConfig = {
    architecture: "llama",
    vocabSize: mb >= 50 ? 8000 : 1000,
    maxSeqLen: 2048,
    channels: 512,
    intermediateSize: 1376,
    numLayers: 1,
    numHeads: 8,
    numKvHeads: 4,
    rmsNormEps: 1e-5,
    ropeTheta: 500000,
    tieWordEmbeddings: false,
  };
  const C = base.channels, I = base.intermediateSize, kv = (C / base.numHeads) * base.numKvHeads!;
  const perLayer = 2 * C * C + 2 * C * kv + 3 * C * I + 2 * C;
  const fixed = 2 * base.vocabSize * C + C;
  base.numLayers = Math.max(1, Math.round(((mb * 1e6) / 4 - fixed) / perLayer));
  return base;
}

function hfConfig(c: LlamaConfig): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    vocab_size: c.vocabSize,
    hidden_size: c.channels,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    max_position_embeddings: c.maxSeqLen,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    hidden_act: "silu",
    tie_word_embeddings: false,
  };
}

export async function benchLoad(opts: { quick?: boolean; repetitions?: number; checkpointMb?: number } = {}): Promise<LoadBenchResult> {
  const reps = opts.repetitions ?? (opts.quick ? 2 : 5);
  const cfg = llamaConfig(opts.checkpointMb ?? (opts.quick ? 10 : 100));
  process.stderr.write(`bench load: tokenizer (${opts.quick ? "0.2" : "2"} MB of text)\n`);
  const tokenizer = await benchTokenizer({ repetitions: opts.quick ? 2 : 5, textBytes: opts.quick ? 200_000 : 2_000_000 });

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-bench-load-"));
  const checkpoints: CheckpointLoadResult[] = [];
  let readFileMbS = 0;
  try {
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(hfConfig(cfg)));
    // random weights, in the parameter table's names and shapes
    const shapeModel = CausalLMModel.create(cfg);
    const table = shapeModel.paramTable;
    const params = shapeModel.numParams;
    shapeModel.dispose();
    const rng = mulberry32(1);
    const tensors: Record<string, WritableTensor> = {};
    for (const p of table) {
      const data = new Float32Array(p.shape.reduce((a, b) => a * b, 1));
      for (let i = 0; i < data.length; i++) data[i] = (rng() - 0.5) * 0.05;
      tensors[p.name] = { dtype: "F32", shape: p.shape, data };
    }
    for (const dtype of ["F32", "BF16"] as const) {
      const sub = path.join(dir, dtype);
      fs.mkdirSync(sub);
      fs.copyFileSync(path.join(dir, "config.json"), path.join(sub, "config.json"));
      const file = path.join(sub, "model.safetensors");
      writeSafetensors(file, Object.fromEntries(Object.entries(tensors).map(([n, t]) => [n, { ...t, dtype }])));
      const fileMb = fs.statSync(file).size / 1e6;
      process.stderr.write(`bench load: ${dtype} checkpoint ${fileMb.toFixed(1)} MB, ${reps} loads\n`);
      const times: number[] = [];
      for (let r = -1; r < reps; r++) {
        let m: CausalLMModel | undefined;
        const dt = seconds(() => {
          m = CausalLMModel.load(sub);
        });
        m!.dispose();
        if (r >= 0) times.push(dt);
      }
      const t = median(times);
      checkpoints.push({ dtype, file_mb: fileMb, params, load_s: t, mb_s: fileMb / t });
      if (dtype === "F32") {
        const rt: number[] = [];
        for (let r = 0; r < reps; r++) rt.push(seconds(() => void fs.readFileSync(file)));
        readFileMbS = fileMb / median(rt);
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return {
    tokenizer,
    gguf: benchGGUF(reps),
    checkpoints,
    read_file_mb_s: readFileMbS,
    model: {
      architecture: "llama",
      vocab: cfg.vocabSize,
      hidden: cfg.channels,
      intermediate: cfg.intermediateSize,
      layers: cfg.numLayers,
      heads: cfg.numHeads,
      kv_heads: cfg.numKvHeads!,
    },
    repetitions: reps,
  };
}

function benchGGUF(reps: number): GGUFLoadResult | null {
  const name = "smollm2-135m-instruct";
  const file = cachedModelFile(name, { verify: false });
  if (!file) {
    process.stderr.write(`bench load: ${name} is not cached (npm run fetch-model -- ${name}); GGUF load skipped\n`);
    return null;
  }
  process.stderr.write(`bench load: ${name} GGUF, ${reps} loads\n`);
  const load: number[] = [], sha: number[] = [], header: number[] = [], tok: number[] = [], weights: number[] = [];
  for (let r = -1; r < reps; r++) {
    let loaded: ReturnType<typeof loadModel> | undefined;
    const dt = seconds(() => (loaded = loadModel(name)));
    loaded!.dispose();
    let g: ReturnType<typeof readGGUF> | undefined;
    const s1 = seconds(() => void sha256FileSync(file));
    const s2 = seconds(() => (g = readGGUF(file)));
    const s3 = seconds(() => void tokenizerFromGGUF(g!.metadata, file));
    let m: CausalLMModel | undefined;
    const s4 = seconds(() => (m = CausalLMModel.loadGGUF(g!)));
    m!.dispose();
    if (r < 0) continue;
    load.push(dt), sha.push(s1), header.push(s2), tok.push(s3), weights.push(s4);
  }
  return {
    model: name,
    file_mb: fs.statSync(file).size / 1e6,
    load_s: median(load),
    sha256_s: median(sha),
    header_s: median(header),
    tokenizer_s: median(tok),
    weights_s: median(weights),
  };
}

export function formatLoadTable(r: LoadBenchResult): string {
  const lines: string[] = [];
  const t = r.tokenizer;
  lines.push(`tokenizer encode (GPT-2 vocabulary, ${t.text_mb.toFixed(2)} MB text, median of ${t.repetitions})`);
  lines.push(`  ${"ours".padEnd(40)} ${t.ours_mb_s.toFixed(2).padStart(8)} MB/s`);
  for (const ref of t.refs) lines.push(`  ${ref.name.padEnd(40)} ${ref.mb_s.toFixed(2).padStart(8)} MB/s`);
  lines.push(`  ours / fastest reference: ${(t.ours_mb_s / t.ref_mb_s).toFixed(2)}x`);
  const m = r.model;
  lines.push(
    `checkpoint load (Llama-shaped: V=${m.vocab} C=${m.hidden} I=${m.intermediate} L=${m.layers} heads ${m.heads}/${m.kv_heads}; ` +
      `page cache warm, median of ${r.repetitions})`,
  );
  for (const c of r.checkpoints)
    lines.push(`  ${(`CausalLMModel.load ${c.dtype}`).padEnd(40)} ${c.file_mb.toFixed(1).padStart(6)} MB in ${(c.load_s * 1000).toFixed(0).padStart(5)} ms = ${c.mb_s.toFixed(0).padStart(5)} MB/s`);
  lines.push(`  ${"fs.readFileSync F32 (ceiling)".padEnd(40)} ${r.read_file_mb_s.toFixed(0).padStart(31)} MB/s`);
  const g = r.gguf;
  if (g) {
    lines.push(`GGUF load: ${g.model} (${g.file_mb.toFixed(1)} MB; page cache warm, median of ${r.repetitions})`);
    lines.push(`  ${"loadModel(name) in all".padEnd(40)} ${(g.load_s * 1000).toFixed(0).padStart(6)} ms`);
    for (const [k, v] of [["sha256 check of the cached file", g.sha256_s], ["GGUF header", g.header_s], ["tokenizer from metadata", g.tokenizer_s], ["weights (dequantized into the engine)", g.weights_s]] as const)
      lines.push(`    ${k.padEnd(38)} ${(v * 1000).toFixed(0).padStart(6)} ms`);
  } else lines.push("GGUF load: smollm2-135m-instruct not cached (npm run fetch-model -- smollm2-135m-instruct)");
  return lines.join("\n");
}
