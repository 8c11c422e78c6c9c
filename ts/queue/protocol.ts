/**
 * What travels through Redis, and its validation. Everything read from Redis is data: JSON parsed and checked by a
 * strict zod schema (the run's config by the config schema itself), never evaluated.
 *
 *   job payload  {v, run, k, r, b, model: {name, sha256}}           one per batch (class × ρ × batch)
 *   run spec     {v, run, fingerprint, config, model, classes[]}    once per run, at gradmm:<queue>:run:<id>:spec;
 *                each class: its free length and its target's inputs (private token ids, last positions, labels, DP
 *                clip/noise std/noise seed), from which each worker rebuilds the target once per run
 *   result       the batch's tokens, losses, perplexities, timings  HSETNX into gradmm:<queue>:run:<id>:results
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { z } from "zod";
import { configSchema } from "../gradmm/config";
import { findGGUF } from "../model_config";
import type { NativeBuildTargetArgs } from "../native";
import { KNOWN_MODELS, sha256FileSync } from "../registry";
import { strictObject } from "../strict";
import { QueueError } from "./redis";

const MAX = 1_000_000;
const hex64 = z.string().regex(/^[0-9a-f]{64}$/, "must be 64 hex digits");
const runId = z.string().regex(/^[0-9a-f]{24}$/, "must be 24 hex digits");
const index = z.number().int().min(0).max(MAX);

export const modelIdSchema = strictObject({ name: z.string().min(1).max(512), sha256: hex64 });
export type ModelId = z.infer<typeof modelIdSchema>;

export const jobPayloadSchema = strictObject({ v: z.literal(1), run: runId, k: index, r: index, b: index, model: modelIdSchema });
export type JobPayload = z.infer<typeof jobPayloadSchema>;

/** Int32Array ↔ base64 (little-endian), for token ids in the spec. */
export function i32ToBase64(a: Int32Array): string {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");
}
export function base64ToI32(s: string): Int32Array {
  const buf = Buffer.from(s, "base64");
  if (buf.length % 4) throw new Error("not a whole number of int32 values");
  const out = new Int32Array(buf.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = buf.readInt32LE(i * 4);
  return out;
}
const b64 = z.string().max(256 * 2 ** 20).regex(/^[A-Za-z0-9+/]*={0,2}$/, "must be base64");

export const specSchema = strictObject({
  v: z.literal(1),
  run: runId,
  fingerprint: hex64,
  config: configSchema,
  model: strictObject({ name: z.string().min(1).max(512), sha256: hex64, path: z.string().max(4096) }),
  classes: z
    .array(
      strictObject({
        name: z.string().max(4096),
        freeLen: z.number().int().min(1).max(MAX),
        target: strictObject({
          tokens: b64,
          n: z.number().int().min(1).max(MAX),
          T: z.number().int().min(1).max(MAX),
          lastPos: b64,
          labels: b64,
          clipNorm: z.number().min(0).max(1e30),
          noiseStd: z.number().min(0).max(1e30),
          noiseSeed: z.number().int().min(0).max(2 ** 32 - 1),
          /** method.target_rows label_words: the lm_head rows (Int32 base64); absent: all rows */
          rows: b64.optional(),
        }),
      }),
    )
    .min(2)
    .max(10_000),
});
export type RunSpec = z.infer<typeof specSchema>;

/** A float that may be NaN or ±Infinity (JSON has no such numbers): numbers as they are, the others as strings. */
const num = z.union([z.number(), z.enum(["NaN", "Infinity", "-Infinity"])]).transform((v) => Number(v));
export const encodeNum = (x: number): number | string => (Number.isFinite(x) ? x : String(x));

export const resultSchema = strictObject({
  tokens: z.array(z.array(z.number().int().min(0).max(2 ** 31 - 1)).max(MAX)).max(MAX),
  perSampleLoss: z.array(num),
  decodedLoss: num,
  bestXLoss: num,
  initLoss: num,
  xLossPerOuter: z.array(num),
  zLossPerOuter: z.array(num),
  /** method.decode best_z only: the outer step whose projection was kept (0: Π(best x)). */
  decodedFromOuter: z.number().int().min(0).optional(),
  perplexity: z.array(num),
  /** Seconds the batch's compute took on the worker (runBatch + perplexity), as `seconds` of a local run. */
  seconds: z.number().min(0),
  /** Seconds the worker spent before the batch on this run's setup (spec, model, the class's target; 0 once cached). */
  setupS: z.number().min(0),
  /** Who computed it and when (ms since the epoch): queued (job created), started, finished. */
  worker: z.string().max(512),
  queuedAt: z.number(),
  startedAt: z.number(),
  finishedAt: z.number(),
  attempt: z.number().int().min(0),
});
export type BatchResultWire = z.infer<typeof resultSchema>;

/** One line per zod issue: "field: message". */
export function formatIssues(e: z.ZodError, root = ""): string {
  return e.issues
    .slice(0, 5)
    .map((i) => `${[root, ...i.path.map(String)].filter(Boolean).join(".") || "(root)"}: ${i.message}`)
    .join("; ");
}

/** Parses a job's data; a QueueError (QUEUE_PAYLOAD) that says what is wrong otherwise. */
export function parsePayload(data: unknown, jobId: string | undefined): JobPayload {
  const r = jobPayloadSchema.safeParse(data);
  if (!r.success) throw new QueueError("QUEUE_PAYLOAD", `invalid job payload (job ${JSON.stringify(jobId)}): ${formatIssues(r.error, "data")}`);
  return r.data;
}

/** Parses a run spec's JSON text; a QueueError (QUEUE_PAYLOAD) otherwise. The config goes through the config schema. */
export function parseSpec(json: string | null, run: string): RunSpec {
  if (json === null) throw new QueueError("QUEUE_PAYLOAD", `run ${run}: no run spec in Redis (the run finished and was cleaned up, or the job was put on the queue by hand)`);
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (e) {
    throw new QueueError("QUEUE_PAYLOAD", `run ${run}: the run spec is not JSON (${(e as Error).message})`);
  }
  const r = specSchema.safeParse(raw);
  if (!r.success) throw new QueueError("QUEUE_PAYLOAD", `run ${run}: invalid run spec: ${formatIssues(r.error, "spec")}`);
  if (r.data.run !== run) throw new QueueError("QUEUE_PAYLOAD", `run ${run}: the spec is for run ${r.data.run}`);
  return r.data;
}

/** The target's build arguments from a spec's class (sizes checked against each other). */
export function targetArgsOf(spec: RunSpec, k: number): NativeBuildTargetArgs {
  const t = spec.classes[k].target;
  const tokens = base64ToI32(t.tokens), lastPos = base64ToI32(t.lastPos), labels = base64ToI32(t.labels);
  const bad = (m: string) => new QueueError("QUEUE_PAYLOAD", `run ${spec.run}: invalid run spec: classes.${k}.target: ${m}`);
  if (tokens.length !== t.n * t.T) throw bad(`${tokens.length} tokens for n=${t.n} × T=${t.T}`);
  if (lastPos.length !== t.n || labels.length !== t.n) throw bad(`lastPos/labels must have n=${t.n} entries`);
  if (lastPos.some((p) => p < 0 || p >= t.T)) throw bad(`a last position is outside 0..${t.T - 1}`);
  const args: NativeBuildTargetArgs = { tokens, n: t.n, T: t.T, lastPos, labels, clipNorm: t.clipNorm, noiseStd: t.noiseStd, noiseSeed: t.noiseSeed };
  if (t.rows !== undefined) {
    const rows = base64ToI32(t.rows);
    if (rows.length === 0 || rows.some((r) => r < 0)) throw bad("rows must list at least one row, none negative");
    args.rows = rows;
  }
  return args;
}

export function specClass(name: string, freeLen: number, a: NativeBuildTargetArgs): RunSpec["classes"][number] {
  return {
    name,
    freeLen,
    target: {
      tokens: i32ToBase64(a.tokens),
      n: a.n,
      T: a.T,
      lastPos: i32ToBase64(a.lastPos),
      labels: i32ToBase64(a.labels),
      clipNorm: a.clipNorm ?? 0,
      noiseStd: a.noiseStd ?? 0,
      noiseSeed: a.noiseSeed ?? 0,
      ...(a.rows?.length ? { rows: i32ToBase64(a.rows) } : {}),
    },
  };
}

const shaCache = new Map<string, { key: string; sha: string }>();
function cachedSha(file: string): string {
  const st = fs.statSync(file);
  const key = `${st.size}/${st.mtimeMs}/${st.ino}`;
  const hit = shaCache.get(file);
  if (hit && hit.key === key) return hit.sha;
  const sha = sha256FileSync(file);
  shaCache.set(file, { key, sha });
  return sha;
}

/**
 * A model's identity: its name (a known model's name, else the file or folder name) and the sha256 of its contents
 * (a GGUF file's sha256; for a Hugging Face folder, the sha256 of the list of its files' names and sha256s: config.json,
 * tokenizer.json, the safetensors file or the index and its shards).
 */
export function modelIdentity(configModel: string | undefined, modelDir: string): ModelId & { path: string } {
  const known = configModel && Object.prototype.hasOwnProperty.call(KNOWN_MODELS, configModel) && !/[/\\]/.test(configModel);
  const name = known ? configModel! : path.basename(modelDir);
  const gguf = findGGUF(modelDir);
  if (gguf) return { name, sha256: cachedSha(gguf), path: modelDir };
  const files = ["config.json", "tokenizer.json"].filter((f) => fs.existsSync(path.join(modelDir, f)));
  const index = path.join(modelDir, "model.safetensors.index.json");
  if (fs.existsSync(index)) {
    files.push("model.safetensors.index.json");
    const map = (JSON.parse(fs.readFileSync(index, "utf8")) as { weight_map?: Record<string, string> }).weight_map ?? {};
    files.push(...[...new Set(Object.values(map))].sort());
  } else if (fs.existsSync(path.join(modelDir, "model.safetensors"))) files.push("model.safetensors");
  const h = createHash("sha256");
  for (const f of files) h.update(`${f}\t${cachedSha(path.join(modelDir, f))}\n`);
  return { name, sha256: h.digest("hex"), path: modelDir };
}

/** The run's id: its fingerprint and output folder (two output folders of one config are two runs). */
export function runIdOf(fingerprint: string, outputDir: string): string {
  return createHash("sha256").update(`${fingerprint}\0${outputDir}`).digest("hex").slice(0, 24);
}

export const jobIdOf = (run: string, k: number, r: number, b: number) => `${run}-${k}-${r}-${b}`;
