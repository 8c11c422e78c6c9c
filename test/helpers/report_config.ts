// A tiny synth config on the test model (test/fixtures/tiny_lm): seconds, for the report tests.
import * as path from "node:path";

const root = path.join(__dirname, "..", "..");

export function tinyReportConfig(out: string, extra: Record<string, unknown> = {}) {
  return {
    data: { path: path.join(root, "examples", "data", "imdb", "train.jsonl"), examples_per_class: 6 },
    classes: [
      { label: 0, name: "negative", label_word: " bad", instruction: "Write a negative movie review:" },
      { label: 1, name: "positive", label_word: " great", instruction: "Write a positive movie review:" },
    ],
    template: " It was",
    model: path.join(root, "test", "fixtures", "tiny_lm"),
    method: { batch_size: 3, batches_per_class: 2, length: 6, outer_steps: 4, inner_steps: 4, top_k: 20, init_candidates: 4 },
    filter: { few_shot: 2, keep_per_class: 2 },
    output: out,
    seed: 3,
    ...extra,
  };
}
