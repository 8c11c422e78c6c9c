/**
 * `npm run bench -- model-compare <recipe.yaml…>`: the architecture comparison behind the default model. Each recipe
 * is run first (`npm run pretrain -- <recipe>`); this reads their run summaries and tabulates them side by side.
 */
import * as fs from "node:fs";
import { loadPretrainConfig, mlpWidth, type RunSummary, summaryFile } from "../../ts/advanced";

export function compareRuns(configFiles: string[]): { summaries: RunSummary[]; markdown: string } {
  const summaries = configFiles.map((f) => {
    const file = summaryFile(loadPretrainConfig(f));
    if (!fs.existsSync(file)) throw new Error(`${f} has no finished run (${file} is missing): run \`npm run pretrain -- ${f}\` first`);
    return JSON.parse(fs.readFileSync(file, "utf8")) as RunSummary;
  });
  const n = (x: number) => Math.round(x).toLocaleString("en-US");
  const rows = summaries.map((s) => {
    const m = s.config.model;
    const trainSeconds = s.sessions.reduce((a, x) => a + x.seconds, 0);
    const shape = m.architecture === "llama" ? `Llama ${m.n_embd}d × ${m.n_layer}L, SwiGLU ${mlpWidth(m)}, RoPE, RMSNorm` : `GPT-2 ${m.n_embd}d × ${m.n_layer}L, MLP ${mlpWidth(m)}, learned positions, LayerNorm`;
    return `| ${shape} | ${n(s.numParams)} | ${n(s.steps)} | ${n(s.tokensSeen)} | ${n(s.tokensSeen / trainSeconds)} | ${s.valLoss.toFixed(4)} | ${s.imdb.bitsPerByte.toFixed(4)} |`;
  });
  const markdown = [
    `Same corpus, tokenizer, seed, batch, optimiser and schedule; each recipe trained to the same token count (${configFiles.join(", ")}):`,
    "",
    "| model | parameters | steps | tokens | training tokens/s | validation loss (nats/token) | IMDB bits/byte |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...rows,
  ].join("\n");
  return { summaries, markdown };
}
