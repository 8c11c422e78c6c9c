// SmolLM2-135M-Instruct loaded from its GGUF file (Q4_1 + Q8_0 + F32 tensors) against Hugging Face transformers
// loading the same file in float32: tokenizer ids, logits on 8 prompts, and the method's matching loss with its
// input-embedding gradient (double backprop in PyTorch). Fixtures: test/fixtures/gen_real_models.py. Skipped, with a
// message, where the model is not in the cache (.ci/run fetches it first).
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UnsupportedModelError } from "../ts/errors";
import { readGGUF } from "../ts/gguf";
import { GGUF_ARCHITECTURES, ggufModelConfig, permuteRows, unpermuteRows } from "../ts/gguf_model";
import { loadModel, type LoadedModel } from "../ts/load_model";
import { openSafetensors, type SafetensorsReader } from "../ts/safetensors";
import { smollm2GGUF, SMOLLM2_MISSING } from "./helpers/real_model";
import { checkLogits, checkMatching, readMeta, runSynthCli } from "./helpers/real_model_checks";

const dir = path.join(__dirname, "fixtures", "smollm2");
const meta = readMeta(dir);
const file = smollm2GGUF();

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
    const errs = await checkLogits(loaded, expected, meta, 1e-4);
    console.log("SmolLM2 logits vs transformers, scaled error per prompt:", errs.map((e) => e.toExponential(2)).join(" "));
  });

  it("gives PyTorch autograd's matching loss and input-embedding gradient (double backprop through transformers)", async () => {
    const [f, err] = await checkMatching(loaded, expected, meta, 1e-5, 1e-4);
    console.log(`SmolLM2 matching loss: ours ${f}, PyTorch ${meta.match.f}; dX scaled error ${err.toExponential(2)}`);
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
    const report = runSynthCli(file!, "smollm2-135m-instruct", [
      { label: 0, name: "negative", label_word: " bad", instruction: "Here is a negative movie review:" },
      { label: 1, name: "positive", label_word: " great", instruction: "Here is a positive movie review:" },
    ]);
    expect(report.model).toMatchObject({ architecture: "llama", numLayers: 30 });
  }, 300_000);

  it("refuses architectures it does not run, naming them", () => {
    const g = readGGUF(file!);
    g.metadata.set("general.architecture", "mamba");
    expect(() => ggufModelConfig(g)).toThrow(UnsupportedModelError);
    expect(() => ggufModelConfig(g)).toThrow(new RegExp(`GGUF architecture 'mamba' is not supported \\(supported: ${GGUF_ARCHITECTURES.join(", ")}\\)`));
  });
});
