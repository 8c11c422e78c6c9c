// The synth config's fixed part that the tiny-model tests share: the IMDB example data (6 private examples per
// class), the two sentiment classes, the template and the tiny test model (test/fixtures/tiny_lm).
import * as path from "node:path";

export const tinyLM = path.join(__dirname, "..", "fixtures", "tiny_lm");

export function tinySynthBase() {
  return {
    data: { path: path.join(__dirname, "..", "..", "examples", "data", "imdb", "train.jsonl"), examples_per_class: 6 },
    classes: [
      { label: 0, name: "negative", label_word: " bad", instruction: "Write a negative movie review:" },
      { label: 1, name: "positive", label_word: " great", instruction: "Write a positive movie review:" },
    ],
    template: " It was",
    model: tinyLM,
  };
}
