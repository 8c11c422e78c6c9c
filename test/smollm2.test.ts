// SmolLM2-135M-Instruct loaded from its GGUF file (Q4_1 + Q8_0 + F32 tensors) against Hugging Face transformers
// loading the same file in float32: tokenizer ids, logits on 8 prompts, and the method's matching loss with its
// input-embedding gradient (double backprop in PyTorch). Fixtures: test/fixtures/gen_real_models.py. Skipped, with a
// message, where the model is not in the cache (.ci/run fetches it first).
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UnsupportedModelError } from "../ts/errors";
import { readGGUF } from "../ts/gguf";
import { GGUF_ARCHITECTURES, ggufModelConfig, permuteRows, unpermuteRows } from "../ts/gguf_model";
import { loadModel, type LoadedModel } from "../ts/load_model";
import { openSafetensors, type SafetensorsReader } from "../ts/safetensors";
import { smollm2GGUF, SMOLLM2_MISSING } from "./helpers/real_model";

const dir = path.join(__dirname, "fixtures", "smollm2");
const meta = JSON.parse(fs.readFileSync(path.join(dir, "meta.json"), "utf8")) as {
  prompts: Array<{ text: string; maxAbsLogit: number; argmax: number[] }>;
  match: { label: number; B: number; L: number; f: number; template: string };
};
const file = smollm2GGUF();

/** max |a-b| / scale. */
function scaledError(a: ArrayLike<number>, b: ArrayLike<number>, scale: number): number {
  expect(a.length).toBe(b.length);
  let err = 0;
  for (let i = 0; i < a.length; i++) err = Math.max(err, Math.abs(a[i] - b[i]));
  return err / scale;
}

describe.skipIf(!file)(`SmolLM2-135M-Instruct (GGUF) vs transformers${file ? "" : ` (skipped: ${SMOLLM2_MISSING})`}`, () => {
  let loaded: LoadedModel;
  let expected: SafetensorsReader;
  beforeAll(() => {
    loaded = loadModel(file!);
    expected = openSafetensors(path.join(dir, "expected.safetensors"));
  });
  afterAll(() => {
    loaded?.dispose();
    expected?.close();
  });

  it("reads the config from GGUF metadata", () => {
    expect(loaded.config).toMatchObject({
      architecture: "llama",
      modelType: "llama",
      vocabSize: 49152,
      maxSeqLen: 8192,
      channels: 576,
      intermediateSize: 1536,
      numLayers: 30,
      numHeads: 9,
      numKvHeads: 3,
      headDim: 64,
      ropeTheta: 100000,
      ropeScaling: null,
      tieWordEmbeddings: true,
      attentionBias: false,
      oProjBias: false,
      mlpBias: false,
    });
    expect(loaded.config.architecture === "llama" && loaded.config.rmsNormEps).toBeCloseTo(1e-5, 10);
  });

  it("gives transformers' logits on 8 prompts (max |Δ| / max |logit| ≤ 1e-4)", async () => {
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
      expect(err, `prompt ${i}`).toBeLessThanOrEqual(1e-4);
      // the next token the model prefers is the same at every position
      for (let t = 0; t < T; t++) {
        let best = 0;
        for (let v = 1; v < V; v++) if (logits[t * V + v] > logits[t * V + best]) best = v;
        expect(best).toBe(meta.prompts[i].argmax[t]);
      }
    }
    console.log("SmolLM2 logits vs transformers, scaled error per prompt:", errs.map((e) => e.toExponential(2)).join(" "));
  });

  it("gives PyTorch autograd's matching loss and input-embedding gradient (double backprop through transformers)", async () => {
    const { model } = loaded;
    const { label, B, L } = meta.match;
    const realIds = expected.readI32("match.real_ids");
    const lastPos = expected.readI32("match.last_pos");
    const n = lastPos.length, T = realIds.length / n;
    const target = await model.native.buildTarget({ tokens: realIds, n, T, lastPos, labels: new Int32Array(n).fill(label) });
    const X = expected.readF32("match.X");
    const dX = new Float32Array(X.length);
    const f = await model.native.matchLoss(target, { X, B, L, label, dX });
    expect(Math.abs(f - meta.match.f)).toBeLessThan(1e-5);
    const want = expected.readF32("match.dX");
    let scale = 0;
    for (const v of want) scale = Math.max(scale, Math.abs(v));
    const err = scaledError(dX, want, scale);
    console.log(`SmolLM2 matching loss: ours ${f}, PyTorch ${meta.match.f}; dX scaled error ${err.toExponential(2)}`);
    expect(err).toBeLessThanOrEqual(1e-4);
  });

  it("undoes llama.cpp's Q/K row permutation (loading without it changes the model)", async () => {
    const { model } = loaded;
    const q = model.tensor("model.layers.0.self_attn.q_proj.weight");
    const k = model.tensor("model.layers.0.self_attn.k_proj.weight");
    const C = model.config.channels;
    // permute ∘ unpermute is the identity, and the permutation is not
    const back = new Float32Array(q.length), again = new Float32Array(q.length);
    permuteRows(q, back, q.length / C, C, 9);
    unpermuteRows(back, again, q.length / C, C, 9);
    expect(again).toEqual(q);
    expect(back).not.toEqual(q);
    // the model with q/k as stored in the file (permuted) predicts differently
    const ids = expected.readI32("prompt1.ids");
    await model.forward({ tokens: ids, B: 1, T: ids.length, allLogits: true });
    const right = model.logits();
    const saveQ = q.slice(), saveK = k.slice();
    permuteRows(saveQ, q, q.length / C, C, 9);
    permuteRows(saveK, k, k.length / C, C, 3);
    model.markParamsChanged();
    await model.forward({ tokens: ids, B: 1, T: ids.length, allLogits: true });
    const wrong = model.logits();
    q.set(saveQ);
    k.set(saveK);
    model.markParamsChanged();
    const cols = expected.readI32("columns");
    const V = model.config.vocabSize, T = ids.length, exp = expected.readF32("prompt1.logits");
    let err = 0;
    for (let t = 0; t < T; t++) for (let j = 0; j < cols.length; j++) err = Math.max(err, Math.abs(wrong[t * V + cols[j]] - exp[t * cols.length + j]));
    expect(err / meta.prompts[1].maxAbsLogit).toBeGreaterThan(1e-2);
    expect(right.length).toBe(wrong.length);
  });

  it("runs the whole method through the synth CLI by its known name (a tiny run)", () => {
    const cli = path.join(__dirname, "..", "dist", "ts", "cli.js");
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-smollm2-"));
    const cfg = {
      data: { path: path.join(__dirname, "..", "examples", "data", "imdb", "train.jsonl"), examples_per_class: 3 },
      classes: [
        { label: 0, name: "negative", label_word: " bad", instruction: "Here is a negative movie review:" },
        { label: 1, name: "positive", label_word: " great", instruction: "Here is a positive movie review:" },
      ],
      template: " It was",
      model: "smollm2-135m-instruct",
      method: { batch_size: 2, batches_per_class: 1, length: 4, outer_steps: 1, inner_steps: 2, top_k: 20, init_candidates: 2 },
      filter: { few_shot: 1, keep_per_class: 2 },
      output: path.join(tmp, "out"),
      seed: 0,
    };
    fs.writeFileSync(path.join(tmp, "c.yaml"), JSON.stringify(cfg));
    const r = spawnSync(process.execPath, [cli, "synth", path.join(tmp, "c.yaml"), "--no-progress", "--json"], { encoding: "utf8", env: { ...process.env, GRADMM_CACHE: path.dirname(path.dirname(path.dirname(file!))) } });
    expect(r.status, r.stderr).toBe(0);
    const lines = fs.readFileSync(path.join(tmp, "out", "synthetic.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(lines).toHaveLength(4);
    for (const l of lines) {
      expect(l.text.trim().split(/\s+/).length).toBeGreaterThanOrEqual(1);
      expect(l.matching_loss).toBeGreaterThan(0);
      expect(l.matching_loss).toBeLessThan(1);
      expect(Number.isFinite(l.perplexity)).toBe(true);
    }
    const report = JSON.parse(fs.readFileSync(path.join(tmp, "out", "report.json"), "utf8"));
    expect(report.model).toMatchObject({ architecture: "llama", numLayers: 30 });
    fs.rmSync(tmp, { recursive: true, force: true });
  }, 300_000);

  it("refuses architectures it does not run, naming them", () => {
    const g = readGGUF(file!);
    g.metadata.set("general.architecture", "mamba");
    expect(() => ggufModelConfig(g)).toThrow(UnsupportedModelError);
    expect(() => ggufModelConfig(g)).toThrow(new RegExp(`GGUF architecture 'mamba' is not supported \\(supported: ${GGUF_ARCHITECTURES.join(", ")}\\)`));
  });
});
