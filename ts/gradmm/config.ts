/**
 * The synthesis config: a YAML file validated by a zod schema. Every field has a default and a description; an
 * error names the file, the field and its line.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { z } from "zod";
import { ConfigError } from "../errors";
import { parseWithSchema, strictObject } from "../strict";
import { packageRoot } from "../native";
import { readYamlFile } from "../yaml";
import { KNOWN_MODELS, resolveModelPath } from "../registry";

/** Upper bounds that only stop absurd values early; the real limits (vocabulary, context, memory) are checked against the model before anything runs. */
const MAX_COUNT = 1_000_000;

const classSchema = strictObject({
  label: z.union([z.string(), z.number()]).describe("the value of the label field for this class"),
  name: z.string().optional().describe("a readable name (defaults to the label)"),
  label_word: z.string().min(1).describe("the word the model should predict after text + template, e.g. ' great'"),
  instruction: z.string().min(1).describe("the instruction prefix the projection conditions on, e.g. 'Write a positive movie review:'"),
});

export const configSchema = strictObject({
  data: strictObject({
    path: z.string().describe("JSONL or CSV file with the private labelled examples (relative to the config file)"),
    format: z.enum(["jsonl", "csv"]).optional().describe("inferred from the extension when absent"),
    text_field: z.string().default("text"),
    label_field: z.string().default("label"),
    examples_per_class: z.number().int().positive().max(MAX_COUNT).default(25).describe("real examples per class that form the target"),
    encoding: z
      .enum(["utf-8", "latin1", "utf-16le"])
      .default("utf-8")
      .describe("the data file's text encoding (utf-8 with or without a BOM; anything else is an error naming the line and byte unless set here)"),
  }),
  classes: z.array(classSchema).min(2).describe("one entry per class"),
  template: z.string().default(" It was").describe("appended to every text; the label word follows it"),
  model: z
    .string()
    .optional()
    .describe("Hugging Face model folder, GGUF file, or a known model name such as smollm2-135m-instruct (default: the shipped models/default)"),
  method: strictObject({
      batch_size: z.number().int().positive().max(MAX_COUNT).default(10).describe("samples per batch (with length and the model: within the memory estimate)"),
      batches_per_class: z.number().int().positive().max(MAX_COUNT).default(10),
      length: z
        .number()
        .int()
        .positive()
        .max(MAX_COUNT)
        .nullable()
        .default(null)
        .describe("free tokens per sample (at most what the model's context leaves after instruction and template); null = mean real length (not allowed with DP)"),
      outer_steps: z.number().int().positive().max(MAX_COUNT).default(30).describe("ADMM iterations"),
      inner_steps: z.number().int().positive().max(MAX_COUNT).default(50).describe("Adam steps per x-update"),
      lr: z.number().positive().default(0.008),
      max_grad_norm: z.number().positive().default(1),
      rho: z.union([z.number().positive(), z.array(z.number().positive()).min(1).max(100)]).default(0.1).describe("ADMM penalty; a list runs each"),
      top_k: z.number().int().positive().max(MAX_COUNT).default(200).describe("at most the number of allowed tokens in the vocabulary"),
      init_candidates: z.number().int().positive().max(MAX_COUNT).default(500),
      init_token_norm: z.number().positive().default(1.4),
      decode: z
        .enum(["best_x", "best_z"])
        .default("best_x")
        .describe(
          "what a batch returns: best_x = the paper's recipe, the projection of the best x (lowest f(x)); best_z = the projection of lowest f(z) among those the run made, Π(best x) included",
        ),
      allowed_tokens: z.enum(["alphabetic", "all"]).default("alphabetic"),
      target_rows: z
        .enum(["all", "label_words"])
        .default("all")
        .describe(
          "the lm_head rows the gradients are matched on: all = the paper's recipe, the whole lm_head; label_words = only the rows (and bias entries) of the classes' label-word first tokens, in the target and the synthetic gradient alike (with DP: clipping and noise on those rows only, K·d entries instead of V·d)",
        ),
      objective: z
        .enum(["paper", "whitened_contrastive"])
        .default("paper")
        .describe(
          "the distance matched: paper = 1 − cos(G_syn, G_target); whitened_contrastive (ours) = 1 − cos(W(G_syn) − M, W(G_target) − M), W a diagonal whitening of the lm_head gradients from the private examples of all classes, M the mean of the whitened class targets: only what tells the classes apart is matched (not with dp.enabled, target_rows label_words, or a model whose lm_head has a bias)",
        ),
      whitening_shrinkage: z
        .number()
        .min(0)
        .max(1)
        .default(0.5)
        .describe("whitened_contrastive: each whitening variance shrunk towards its mean, s² = (1 − α)·m² + α·mean(m²); 1 = no whitening, 0 = full"),
  }).prefault({}),
  dp: strictObject({
      enabled: z.boolean().default(false),
      epsilon: z.number().positive().default(1),
      delta: z.number().positive().lt(1).default(1e-5),
      clip_norm: z.number().positive().default(1).describe("per-example gradient clipping norm C"),
  }).prefault({}),
  filter: strictObject({
      enabled: z.boolean().default(true),
      few_shot: z.number().int().min(0).max(1000).default(2).describe("demonstrations in the label-agreement prompt"),
      demonstrations: z
        .array(strictObject({ text: z.string(), class: z.union([z.string(), z.number()]) }))
        .optional()
        .describe("explicit demonstrations (required for few_shot > 0 with DP: private data never enters the filter)"),
      keep_per_class: z.number().int().positive().max(MAX_COUNT).default(100),
      ppl_weight: z.number().min(0).default(0).describe("score = matching loss + ppl_weight × log-perplexity"),
      dedupe: z.boolean().default(true),
  }).prefault({}),
  output: z.string().default("runs/gradmm").describe("output folder (relative to the config file)"),
  seed: z.number().int().min(0).max(2 ** 32 - 1).default(0),
  threads: z.number().int().min(0).max(4096).default(0).describe("CPU threads (0 = all cores)"),
  precision: z
    .enum(["float32", "bf16", "auto"])
    .default("float32")
    .describe("the model's big products: float32 (exact), bf16 (needs AVX512_BF16), auto (bf16 where the CPU has it)"),
});

/** A checked config with every default filled in (what loadConfigFile and parseConfig return; README: The config). */
export type SynthConfig = z.infer<typeof configSchema> & {
  /** Absolute paths resolved from the config file's folder. */
  resolved: {
    dataPath: string;
    modelDir: string;
    outputDir: string;
    configFile: string;
    /** The line of a config path in the config file, where known (for errors found after parsing). */
    line?: (p: PropertyKey[]) => number | undefined;
    /** Where `precision` came from, for a PrecisionError: "--precision" when the command line set it. */
    precisionField?: string;
  };
};

/** A locator of config paths: a line number, or (older callers) a " (line N)" string. */
export type Locate = (p: PropertyKey[]) => number | string | undefined;

function lineOf(locate: Locate | undefined, p: PropertyKey[]): number | undefined {
  const v = locate?.(p);
  if (typeof v === "number") return v;
  const m = typeof v === "string" ? /line (\d+)/.exec(v) : null;
  return m ? Number(m[1]) : undefined;
}

/**
 * Parses and validates a config object (from YAML or code); paths resolve against `baseDir`. Unknown keys are errors
 * naming the nearest valid key; every error is a ConfigError (code INVALID_CONFIG) naming the file, field and line.
 */
export function parseConfig(raw: unknown, baseDir: string, sourceName = "<config>", locate?: Locate): SynthConfig {
  const line = (p: PropertyKey[]) => lineOf(locate, p);
  const c = parseWithSchema(configSchema, raw, sourceName, line);
  const fail = (p: PropertyKey[], message: string): never => {
    throw new ConfigError(sourceName, [{ field: p.map(String).join("."), line: line(p), message }]);
  };
  const labels = new Set(c.classes.map((k) => String(k.label)));
  if (labels.size !== c.classes.length) fail(["classes"], "two classes share a label");
  if (c.dp.enabled && c.method.length === null)
    fail(["method", "length"], "must be set when dp.enabled (the mean real length would leak private data)");
  if (c.method.objective === "whitened_contrastive" && c.dp.enabled)
    fail(["method", "objective"], "whitened_contrastive cannot run with dp.enabled: its whitening statistics come from the private examples without noise");
  if (c.method.objective === "whitened_contrastive" && c.method.target_rows !== "all")
    fail(["method", "objective"], "whitened_contrastive weights every lm_head row itself; use it with target_rows: all");
  if (c.dp.enabled && c.filter.enabled && c.filter.few_shot > 0 && !c.filter.demonstrations)
    fail(["filter", "demonstrations"], "required for few-shot filtering with dp.enabled (private data never enters the filter; or set filter.few_shot: 0)");
  c.filter.demonstrations?.forEach((d, i) => {
    if (!labels.has(String(d.class))) fail(["filter", "demonstrations", i, "class"], `'${String(d.class)}' is not the label of a configured class (${[...labels].join(", ")})`);
  });
  const modelDir = resolveModelDir(c.model, baseDir);
  return {
    ...c,
    resolved: {
      dataPath: path.resolve(baseDir, c.data.path),
      modelDir,
      outputDir: path.resolve(baseDir, c.output),
      configFile: sourceName,
      ...(locate ? { line } : {}),
    },
  };
}

/**
 * A relative model path is looked up beside the config first, then in the package (so `models/default` works
 * anywhere); a known model name (`gradmm models`) that is no such path means its cached file.
 */
export function resolveModelDir(model: string | undefined, baseDir: string): string {
  if (!model) return path.join(packageRoot(), "models", "default");
  if (path.isAbsolute(model)) return model;
  const local = path.resolve(baseDir, model);
  if (fs.existsSync(local)) return local;
  const shipped = path.resolve(packageRoot(), model);
  if (fs.existsSync(shipped)) return shipped;
  if (Object.prototype.hasOwnProperty.call(KNOWN_MODELS, model)) return resolveModelPath(model);
  return local;
}

/** Reads a YAML config file; validation errors name the field and its line. */
export function loadConfigFile(file: string): SynthConfig {
  const { data, line } = readYamlFile(file);
  return parseConfig(data, path.dirname(path.resolve(file)), file, line);
}

/**
 * Command-line overrides of a loaded config (`gradmm synth -o DIR --threads N --model NAME|PATH --precision P`): paths resolve
 * against the current folder, as any path typed on a command line does. The checkpoint's fingerprint covers the model
 * (so --resume with another --model is refused) and not the output folder or threads.
 */
export function applyOverrides(config: SynthConfig, o: { output?: string; threads?: number; model?: string; precision?: string }): SynthConfig {
  const out: SynthConfig = { ...config, resolved: { ...config.resolved } };
  if (o.output !== undefined) {
    out.output = o.output;
    out.resolved.outputDir = path.resolve(o.output);
  }
  if (o.threads !== undefined) {
    if (!Number.isInteger(o.threads) || o.threads < 0 || o.threads > 4096) throw new ConfigError("--threads", [{ field: "threads", message: `expected an integer from 0 (all cores) to 4096, got ${o.threads}` }]);
    out.threads = o.threads;
  }
  if (o.model !== undefined) {
    out.model = o.model;
    out.resolved.modelDir = resolveModelDir(o.model, process.cwd());
  }
  if (o.precision !== undefined) {
    if (o.precision !== "float32" && o.precision !== "bf16" && o.precision !== "auto")
      throw new ConfigError("--precision", [{ field: "precision", message: `expected float32, bf16 or auto, got ${o.precision}` }]);
    out.precision = o.precision;
    out.resolved.precisionField = "--precision";
  }
  return out;
}
