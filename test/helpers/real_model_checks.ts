// The checks every real GGUF model gets against transformers (fixtures by test/fixtures/gen_real_models.py): the
// tokenizer's ids and the logits on the fixture's prompts, the method's matching loss and input-embedding gradient by
// double backprop, and a tiny synth run through the CLI by the model's known name.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { expect } from "vitest";
import type { LoadedModel } from "../../ts/load_model";
import type { SafetensorsReader } from "../../ts/safetensors";
import { scaledError } from "./scaled_error";

export interface RealModelMeta {
  prompts: Array<{ text: string; maxAbsLogit: number; argmax: number[] }>;
  match: { label: number; B: number; L: number; f: number; template: string };
}

export function readMeta(dir: string): RealModelMeta {
  return JSON.parse(fs.readFileSync(path.join(dir, "meta.json"), "utf8")) as RealModelMeta;
}

/** Ids equal to transformers', logits within `tol` of max |logit|, the same argmax at every position. */
export async function checkLogits(loaded: LoadedModel, expected: SafetensorsReader, meta: RealModelMeta, tol: number): Promise<number[]> {
  const { model, tokenizer } = loaded;
  const cols = expected.readI32("columns");
  const V = model.config.vocabSize;
  const errs: number[] = [];
  for (let i = 0; i < meta.prompts.length; i++) {
    const ids = expected.readI32(`prompt${i}.ids`);
    expect(tokenizer!.encode(meta.prompts[i].text), `prompt ${i} ids`).toEqual(Array.from(ids));
    const T = ids.length;
    await model.forward({ tokens: ids, B: 1, T, allLogits: true });
    const logits = model.logits();
    const got = new Float32Array(T * cols.length);
    for (let t = 0; t < T; t++) for (let j = 0; j < cols.length; j++) got[t * cols.length + j] = logits[t * V + cols[j]];
    const err = scaledError(got, expected.readF32(`prompt${i}.logits`), meta.prompts[i].maxAbsLogit);
    errs.push(err);
    expect(err, `prompt ${i}`).toBeLessThanOrEqual(tol);
    for (let t = 0; t < T; t++) {
      let best = 0;
      for (let v = 1; v < V; v++) if (logits[t * V + v] > logits[t * V + best]) best = v;
      expect(best, `prompt ${i} position ${t}`).toBe(meta.prompts[i].argmax[t]);
    }
  }
  return errs;
}

/** The matching loss (within fTol) and its input-embedding gradient (within dxTol of max |dX|): [f, dX error]. */
export async function checkMatching(loaded: LoadedModel, expected: SafetensorsReader, meta: RealModelMeta, fTol: number, dxTol: number): Promise<[number, number]> {
  const { model } = loaded;
  const { label, B, L } = meta.match;
  const realIds = expected.readI32("match.real_ids");
  const lastPos = expected.readI32("match.last_pos");
  const n = lastPos.length, T = realIds.length / n;
  const target = await model.native.buildTarget({ tokens: realIds, n, T, lastPos, labels: new Int32Array(n).fill(label) });
  const X = expected.readF32("match.X");
  const dX = new Float32Array(X.length);
  const f = await model.native.matchLoss(target, { X, B, L, label, dX });
  expect(Math.abs(f - meta.match.f)).toBeLessThan(fTol);
  const want = expected.readF32("match.dX");
  let scale = 0;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  const err = scaledError(dX, want, scale);
  expect(err).toBeLessThanOrEqual(dxTol);
  return [f, err];
}

/** A tiny GRADMM run through the synth CLI on the model's known name; returns the written report. */
export function runSynthCli(file: string, name: string, classes: Array<{ label: number; name: string; label_word: string; instruction: string }>): Record<string, unknown> {
  const cli = path.join(__dirname, "..", "..", "dist", "ts", "cli.js");
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `gradmm-${name}-`));
  const cfg = {
    data: { path: path.join(__dirname, "..", "..", "examples", "data", "imdb", "train.jsonl"), examples_per_class: 3 },
    classes,
    template: " It was",
    model: name,
    method: { batch_size: 2, batches_per_class: 1, length: 4, outer_steps: 1, inner_steps: 2, top_k: 20, init_candidates: 2 },
    filter: { few_shot: 1, keep_per_class: 2 },
    output: path.join(tmp, "out"),
    seed: 0,
  };
  fs.writeFileSync(path.join(tmp, "c.yaml"), JSON.stringify(cfg));
  const r = spawnSync(process.execPath, [cli, "synth", path.join(tmp, "c.yaml"), "--no-progress", "--json"], { encoding: "utf8", env: { ...process.env, GRADMM_CACHE: path.dirname(path.dirname(path.dirname(file))) } });
  expect(r.status, r.stderr).toBe(0);
  const lines = fs.readFileSync(path.join(tmp, "out", "synthetic.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  expect(lines).toHaveLength(2 * classes.length);
  for (const l of lines) {
    expect(l.text.trim().split(/\s+/).length).toBeGreaterThanOrEqual(1);
    expect(l.matching_loss).toBeGreaterThan(0);
    expect(l.matching_loss).toBeLessThan(1);
    expect(Number.isFinite(l.perplexity)).toBe(true);
  }
  const report = JSON.parse(fs.readFileSync(path.join(tmp, "out", "report.json"), "utf8")) as Record<string, unknown>;
  fs.rmSync(tmp, { recursive: true, force: true });
  return report;
}
