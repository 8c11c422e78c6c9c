/**
 * The output folder of a run: checking it can be written, removing a previous run (--overwrite), and the checkpoint
 * (--resume): what makes two runs the same (fingerprint), reading and validating it. synthesize.ts writes the files.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { z } from "zod";
import { resolvePrecision } from "../threads";
import { GradmmError, InvalidCheckpointError, OutputError } from "../errors";
import { findGGUF } from "../model_config";
import { configSchema, type SynthConfig } from "./config";
import type { BatchResult } from "./method";

/** The output folder already holds a run, and neither `resume` nor `overwrite` was asked for (code OUTPUT_EXISTS). */
export class OutputExistsError extends GradmmError {
  constructor(dir: string) {
    super("OUTPUT_EXISTS", `${dir} already holds a run; pass --resume to continue it, --overwrite to replace it, or choose another output folder`);
  }
}

/** checkpoint.json: the run's fingerprint and every finished batch by `k/r/b`. */
export interface Checkpoint {
  fingerprint: string;
  batches: Record<string, StoredBatch>;
}
/** One finished batch as the checkpoint stores it. */
export interface StoredBatch extends BatchResult {
  texts: string[];
  perplexity: number[];
  seconds: number;
}

/**
 * What makes two runs' batches the same: the config minus what only acts after the batches or does not change them
 * (output, threads, the filter section, the data file's path: its contents count) and the model and data files'
 * contents. A run that changes only the filter resumes every batch of the checkpoint and filters again.
 */
export function fingerprint(config: SynthConfig): string {
  return configFingerprint(config, null);
}

/**
 * The fingerprint checkpoints written before 2026-12-07 carry: with the filter section and the data file's path
 * inside (by default the config's own).
 */
export function fingerprintWithFilter(config: SynthConfig, filter: SynthConfig["filter"] = config.filter, dataPath: string = config.data.path): string {
  return configFingerprint(config, { filter, dataPath });
}

/**
 * Whether a checkpoint's fingerprint says its batches are this config's: the fingerprint, or the older one, for
 * this config's filter and data path or those the run in `runDir` recorded in its report.json (a finished run).
 */
export function checkpointMatches(config: SynthConfig, checkpointFingerprint: string, runDir: string): boolean {
  if (checkpointFingerprint === fingerprint(config) || checkpointFingerprint === fingerprintWithFilter(config)) return true;
  const reportFile = path.join(runDir, "report.json");
  if (!fs.existsSync(reportFile)) return false;
  let recorded: { filter?: unknown; data?: { path?: unknown } } | undefined;
  try {
    recorded = (JSON.parse(fs.readFileSync(reportFile, "utf8")) as { settings?: typeof recorded }).settings;
  } catch {
    return false;
  }
  const filter = configSchema.shape.filter.safeParse(recorded?.filter);
  const dataPath = recorded?.data?.path;
  return filter.success && typeof dataPath === "string" && checkpointFingerprint === fingerprintWithFilter(config, filter.data, dataPath);
}

function configFingerprint(config: SynthConfig, before: { filter: SynthConfig["filter"]; dataPath: string } | null): string {
  const h = createHash("sha256");
  const { output: _o, threads: _t, resolved, precision, filter: _f, ...rest } = config;
  // method.decode best_x, method.target_rows all and method.objective paper (the defaults, the paper's) leave the
  // fingerprint as it was before the settings existed
  const { decode, target_rows, objective, whitening_shrinkage, ...method } = rest.method;
  if (before) {
    // the key order of the parsed config: filter sits between dp and seed
    const { seed, ...beforeSeed } = rest;
    h.update(JSON.stringify({ ...beforeSeed, data: { ...rest.data, path: before.dataPath }, method, filter: before.filter, seed }));
  } else {
    const { path: _p, ...data } = rest.data;
    h.update(JSON.stringify({ ...rest, data, method, batches_only: true }));
  }
  if (decode === "best_z") h.update("decode: best_z");
  if (target_rows === "label_words") h.update("target_rows: label_words");
  if (objective === "whitened_contrastive") h.update(`objective: whitened_contrastive, shrinkage ${whitening_shrinkage}`);
  // float32 (the default) leaves the fingerprint as it was before the setting existed; bf16 (given or chosen by
  // auto) gives other results, so another fingerprint
  if (resolvePrecision(precision, resolved.precisionField ?? "precision") === "bf16") h.update("precision: bf16");
  const gguf = findGGUF(resolved.modelDir);
  const files = gguf ? [resolved.dataPath, gguf] : [resolved.dataPath, path.join(resolved.modelDir, "model.safetensors"), path.join(resolved.modelDir, "tokenizer.json")];
  for (const f of files) h.update(fs.existsSync(f) ? fs.readFileSync(f) : Buffer.from("missing"));
  return h.digest("hex");
}

/** The output folder's files of a run, in the order --overwrite removes them (results first, the checkpoint last). */
export const RUN_FILES = ["report.html", "report.json", "filtered.jsonl", "synthetic.jsonl", "checkpoint.json"];

/**
 * Checks that `dir` can be the output folder without writing anything: not a file, and writable (or creatable in a
 * writable folder). A read-only mount is reported as such, not as a missing file.
 */
export function checkOutputDir(dir: string): void {
  let probe = dir;
  for (;;) {
    let st: fs.Stats | null = null;
    try {
      st = fs.statSync(probe);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== "ENOENT") {
        if (code === "ENOTDIR") throw new OutputError("OUTPUT_NOT_DIR", dir, "a parent of the output folder is a file, not a folder", { cause: e });
        throw new OutputError("OUTPUT_NOT_WRITABLE", dir, `cannot use the output folder (${code})`, { cause: e });
      }
    }
    if (st) {
      if (!st.isDirectory())
        throw new OutputError("OUTPUT_NOT_DIR", dir, probe === dir ? "the output path is a file, not a folder" : `${probe} (a parent of the output folder) is a file, not a folder`);
      try {
        fs.accessSync(probe, fs.constants.W_OK | fs.constants.X_OK);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        const what = code === "EROFS" ? "is on a read-only file system" : "is not writable";
        throw new OutputError("OUTPUT_NOT_WRITABLE", dir, probe === dir ? `the output folder ${what}` : `the output folder would be made in ${probe}, which ${what}`, { cause: e });
      }
      return;
    }
    const parent = path.dirname(probe);
    if (parent === probe) return;
    probe = parent;
  }
}

/** Writes under the output folder; a file-system failure becomes a typed OutputError naming the file. */
export function writeOutput(file: string, write: () => void): void {
  try {
    write();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (!code) throw e;
    throw new OutputError(code === "EEXIST" || code === "ENOTDIR" || code === "EISDIR" ? "OUTPUT_NOT_DIR" : "OUTPUT_NOT_WRITABLE", file, `cannot write (${code}: ${(e as Error).message.replace(/^\w+: /, "").split(",")[0]})`, { cause: e });
  }
}

/**
 * --overwrite: the previous run leaves before the first batch, so an interrupted run never leaves one run's results
 * beside another's checkpoint. A folder holding only a run's files is renamed aside in one step (then deleted);
 * otherwise the run's files are deleted results first, checkpoint last (each step leaves a consistent folder).
 */
export function removePreviousRun(dir: string): void {
  if (!fs.existsSync(dir)) return;
  const entries = fs.readdirSync(dir);
  const ours = (f: string) => RUN_FILES.includes(f) || /\.tmp-\d+$/.test(f);
  writeOutput(dir, () => {
    if (entries.every(ours)) {
      const aside = path.join(path.dirname(dir), `.${path.basename(dir)}.replaced-${process.pid}-${Date.now()}`);
      fs.renameSync(dir, aside);
      fs.rmSync(aside, { recursive: true, force: true });
    } else {
      for (const f of RUN_FILES) fs.rmSync(path.join(dir, f), { force: true });
      for (const f of entries) if (/\.tmp-\d+$/.test(f) && RUN_FILES.some((r) => f.startsWith(r))) fs.rmSync(path.join(dir, f), { force: true });
    }
  });
}

const storedBatchSchema = z.object({
  tokens: z.array(z.array(z.number().int().min(0))),
  perSampleLoss: z.array(z.number()),
  decodedLoss: z.number(),
  bestXLoss: z.number(),
  initLoss: z.number(),
  xLossPerOuter: z.array(z.number()),
  zLossPerOuter: z.array(z.number()),
  decodedFromOuter: z.number().int().min(0).optional(),
  texts: z.array(z.string()),
  perplexity: z.array(z.number().nullable()),
  seconds: z.number(),
});
const checkpointSchema = z.object({ fingerprint: z.string().regex(/^[0-9a-f]{64}$/), batches: z.record(z.string().regex(/^\d+\/\d+\/\d+$/), storedBatchSchema) });

/** Reads and validates a checkpoint for --resume; a bad one is an InvalidCheckpointError naming its file and field. */
export function readCheckpoint(file: string): Checkpoint {
  let src: string;
  try {
    src = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new InvalidCheckpointError(file, `cannot read: ${(e as Error).message}`, { cause: e });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(src);
  } catch (e) {
    throw new InvalidCheckpointError(file, `not valid JSON (${src.trim() ? "truncated or corrupted" : "empty"}: ${(e as Error).message.replace(/, ".*" is not valid JSON$/s, "")}); remove it or use --overwrite`, { cause: e });
  }
  const r = checkpointSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    const field = i.path.map(String).join(".") || "(root)";
    throw new InvalidCheckpointError(file, `field ${field}: ${i.message}; remove it or use --overwrite`, { field });
  }
  return r.data as Checkpoint;
}
