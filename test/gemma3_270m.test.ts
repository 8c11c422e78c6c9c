// Gemma 3 270M loaded from its GGUF file (Q8_0 embeddings, Q5_0 / Q4_K / Q6_K / Q8_0 weights, norms stored as 1 + w)
// against Hugging Face transformers loading the same file in float32: tokenizer ids (sentencepiece BPE with byte
// fallback over 262,144 tokens), logits on 8 prompts, the method's matching loss with its input-embedding gradient
// (double backprop in PyTorch; Gemma's input embeddings are the √d-scaled rows), and a synth run by its known name.
// Fixtures: test/fixtures/gen_real_models.py gemma3-270m. Skipped, with a message, where the model is not in the
// cache (.ci/run fetches it first).
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type LoadedModel } from "../ts/load_model";
import { openSafetensors, type SafetensorsReader } from "../ts/safetensors";
import { gemma3GGUF, GEMMA3_MISSING } from "./helpers/real_model";
import { checkLogits, checkMatching, readMeta, runSynthCli } from "./helpers/real_model_checks";

const dir = path.join(__dirname, "fixtures", "gemma3_270m");
const meta = readMeta(dir);
const file = gemma3GGUF();

describe.skipIf(!file)(`Gemma 3 270M (GGUF) vs transformers${file ? "" : ` (skipped: ${GEMMA3_MISSING})`}`, () => {
  let loaded: LoadedModel;
  let expected: SafetensorsReader;
  beforeAll(() => {
    loaded = loadModel(file!);
    expected = openSafetensors(path.join(dir, "expected.safetensors"));
  }, 120_000);
  afterAll(() => {
    loaded?.dispose();
    expected?.close();
  });

  it("reads the config from GGUF metadata (every 6th layer global, local rope base 10,000)", () => {
    const sliding = "sliding_attention", full = "full_attention";
    expect(loaded.config).toMatchObject({
      architecture: "gemma3",
      vocabSize: 262144,
      maxSeqLen: 32768,
      channels: 640,
      intermediateSize: 2048,
      numLayers: 18,
      numHeads: 4,
      numKvHeads: 1,
      headDim: 256,
      ropeTheta: 1e6,
      ropeLocalTheta: 1e4,
      ropeScalingFactor: 1,
      slidingWindow: 512,
      queryPreAttnScalar: 256,
      tieWordEmbeddings: true,
      layerTypes: [0, 1, 2].flatMap(() => [sliding, sliding, sliding, sliding, sliding, full]),
    });
    expect(loaded.config.architecture === "gemma3" && loaded.config.rmsNormEps).toBeCloseTo(1e-6, 12);
  });

  it("gives transformers' logits on 8 prompts (max |Δ| / max |logit| ≤ 1e-4)", async () => {
    const errs = await checkLogits(loaded, expected, meta, 1e-4);
    console.log("Gemma 3 270M logits vs transformers, scaled error per prompt:", errs.map((e) => e.toExponential(2)).join(" "));
  }, 120_000);

  it("gives PyTorch autograd's matching loss and input-embedding gradient (double backprop through transformers)", async () => {
    const [f, err] = await checkMatching(loaded, expected, meta, 1e-5, 1e-4);
    console.log(`Gemma 3 270M matching loss: ours ${f}, PyTorch ${meta.match.f}; dX scaled error ${err.toExponential(2)}`);
  }, 120_000);

  it("runs the whole method through the synth CLI by its known name (a tiny run)", () => {
    const report = runSynthCli(file!, "gemma3-270m", [
      { label: 0, name: "negative", label_word: " bad", instruction: "Here is a negative movie review:" },
      { label: 1, name: "positive", label_word: " great", instruction: "Here is a positive movie review:" },
    ]);
    expect(report.model).toMatchObject({ architecture: "gemma3", numLayers: 18 });
  }, 600_000);
});
