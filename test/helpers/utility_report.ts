// A utility-benchmark report.json as runUtility writes it (two modes, three methods, three seeds), for the HTML tests.
import type { UtilityReportLike } from "../../bench/utility/html";
import { aggregate, type SeedResult } from "../../bench/utility/report";

export function sampleUtilityReport(): UtilityReportLike {
  const classes = ["negative", "positive"];
  const seeds = (offset: number): SeedResult[] =>
    [0, 1, 2].map((seed) => ({
      seed,
      methods: Object.fromEntries(
        ["gradmm", "real", "zero_shot_gen"].map((m, i) => {
          const acc = 0.55 + 0.1 * i + 0.02 * seed + offset;
          return [
            m,
            {
              accuracy: acc,
              per_class_accuracy: [acc - 0.05, acc + 0.05],
              test_loss: 0.7,
              metrics: { perplexity: 40 + i, gradient_cosine: 0.9 - 0.1 * i, gradient_cosine_per_class: [0.9, 0.8], distinct_1: 0.5, distinct_2: 0.8, longest_shared_ngram_max: 3, longest_shared_ngram_mean: 1.5, mean_words: 20, examples: [[`a ${m} text of the negative class`], [`a ${m} text of the positive class`]] },
            },
          ];
        }),
      ),
    }));
  const finetune = aggregate(seeds(0), ["gradmm", "real", "zero_shot_gen"], classes);
  const probe = aggregate(seeds(0.05), ["gradmm", "real", "zero_shot_gen"], classes);
  return { modes: { finetune, probe }, complete: true, settings: { config: "bench/utility/imdb.yaml", model: "models/default" }, machine: { cpu: "test", cores: 2 }, wall_seconds: 600 };
}
