/**
 * Strict config schemas: an unknown key is an error that names the nearest valid key ("did you mean `enabled`?"),
 * never silently dropped (a typo in `dp: {enabeld: true}` must not turn privacy off). Used by every config schema
 * (synth, pretrain; bench/utility can adopt it), with `parseWithSchema` turning zod's issues into a ConfigError that
 * names the file, each field and its line.
 */
import { z } from "zod";
import { ConfigError, type ConfigIssue } from "./errors";

/** Levenshtein distance (insertions, deletions, substitutions; an adjacent swap counts 1). */
export function editDistance(a: string, b: string): number {
  const m = a.length, n = b.length;
  let prev2 = new Array<number>(n + 1).fill(0);
  let prev = Array.from({ length: n + 1 }, (_, j) => j);
  for (let i = 1; i <= m; i++) {
    const cur = new Array<number>(n + 1);
    cur[0] = i;
    for (let j = 1; j <= n; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) cur[j] = Math.min(cur[j], prev2[j - 2] + 1);
    }
    prev2 = prev;
    prev = cur;
  }
  return prev[n];
}

/** The candidate nearest to `word` (case-, '-'/'_'-insensitive edit distance), or null when none is close. */
export function didYouMean(word: string, candidates: readonly string[]): string | null {
  const norm = (s: string) => s.toLowerCase().replace(/[-\s]/g, "_");
  const w = norm(word);
  let best: string | null = null, bestD = Infinity;
  for (const c of candidates) {
    const cn = norm(c);
    let d = editDistance(w, cn);
    if (d > 0 && (cn.replace(/_/g, "") === w.replace(/_/g, ""))) d = 0.5; // batchsize → batch_size
    if (d < bestD) [best, bestD] = [c, d];
  }
  if (best === null) return null;
  const limit = Math.max(2, Math.floor(Math.min(w.length, best.length) / 3));
  return bestD <= limit ? best : null;
}

/** A key as written in messages: as it is when plain, else quoted (so that "", " " or a newline stay visible). */
export function showKey(key: PropertyKey): string {
  const k = String(key);
  return /^[A-Za-z0-9_.-]+$/.test(k) ? k : JSON.stringify(k);
}

/** "unknown key `x` (did you mean `y`?)" or "unknown key `x` (valid keys: a, b, c)". */
export function unknownKeyMessage(key: string, known: readonly string[]): string {
  const near = didYouMean(key, known);
  return near ? `unknown key \`${showKey(key)}\` (did you mean \`${near}\`?)` : `unknown key \`${showKey(key)}\` (valid keys: ${known.join(", ")})`;
}

/**
 * `z.strictObject(shape)` whose unknown-key error names the nearest valid key. Chain `.prefault({})`, `.optional()`
 * etc. as with z.object; errors read best through `parseWithSchema` / `formatZodIssues` (one line per key).
 */
export function strictObject<T extends z.ZodRawShape>(shape: T) {
  const known = Object.keys(shape);
  return z.strictObject(shape, {
    error: (iss) => (iss.code === "unrecognized_keys" ? iss.keys.map((k) => unknownKeyMessage(k, known)).join("\n") : undefined),
  });
}

/** zod issues as ConfigIssues: one per unknown key (located at that key's line), the path written a.b.0.c. */
export function formatZodIssues(issues: readonly z.core.$ZodIssue[], locate?: (p: PropertyKey[]) => number | undefined): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  const add = (p: PropertyKey[], message: string) => out.push({ field: p.length ? p.map(showKey).join(".") : "(root)", line: locate?.(p), message });
  for (const i of issues) {
    if (i.code === "unrecognized_keys") {
      const msgs = i.message.split("\n");
      i.keys.forEach((k, n) => add([...i.path, k], msgs.length === i.keys.length ? msgs[n] : `unknown key \`${k}\``));
    } else if (i.code === "invalid_union" && i.errors.length) {
      // the branch that got furthest says the most (e.g. a strict object's unknown key rather than "expected string")
      const branch = [...i.errors].sort((a, b) => Math.max(0, ...b.map((x) => x.path.length)) - Math.max(0, ...a.map((x) => x.path.length)))[0];
      const deeper = branch.filter((x) => x.path.length > 0);
      if (deeper.length) out.push(...formatZodIssues(deeper.map((x) => ({ ...x, path: [...i.path, ...x.path] })), locate));
      else add(i.path, i.message);
    } else add(i.path, i.message);
  }
  return out;
}

/** Parses `raw` with `schema`; a mismatch is a ConfigError naming `file`, every field and its line. */
export function parseWithSchema<S extends z.ZodType>(schema: S, raw: unknown, file: string, locate?: (p: PropertyKey[]) => number | undefined): z.infer<S> {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  const issues = formatZodIssues(r.error.issues, locate);
  issues.sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity)); // stable: file order where lines are known
  throw new ConfigError(file, issues);
}
