// Property-based fuzzing (fast-check) of everything a user hands gradmm: configs (YAML text and objects), labelled
// data (JSONL/CSV in random encodings, BOMs, quotes, huge and empty fields), checkpoints, GGUF and safetensors
// headers, and the CLI itself. Each input gives success or a typed GradmmError (never another error, a crash or a
// stack trace); the CLI exits with a documented code and writes nothing when it fails. Then the privacy promises:
// with DP on, no 8-gram of a private text reaches the output folder, stdout or stderr, and a config that would use
// private data where DP forbids it is an error.
//
// Seeded (GRADMM_FUZZ_SEED, default 20) and bounded: about a minute in CI. A longer run, e.g. 30 minutes:
//   GRADMM_FUZZ_SECONDS=1800 npx vitest run test/fuzz.test.ts      (npm run fuzz -- 1800)
// which prints the number of inputs tried per target (also written to $GRADMM_FUZZ_REPORT when set).
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import fc from "fast-check";
import { stringify as toYaml } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, EXIT_CODES, GradmmError } from "../ts/errors";
import { loadConfigFile, parseConfig } from "../ts/gradmm/config";
import { readLabelledFile } from "../ts/gradmm/data";
import { readCheckpoint } from "../ts/gradmm/output";
import { parseGGUFBuffer } from "../ts/gguf";
import { parseSafetensorsBuffer } from "../ts/safetensors";

const root = path.join(__dirname, "..");
const cli = path.join(root, "dist", "ts", "cli.js");
const tinyLM = path.join(__dirname, "fixtures", "tiny_lm");
const imdb = path.join(root, "examples", "data", "imdb", "train.jsonl");

const SEED = Number(process.env.GRADMM_FUZZ_SEED ?? 20);
const LONG = Number(process.env.GRADMM_FUZZ_SECONDS ?? 0);
/** Per target: CI runs `ci` inputs; a long run shares GRADMM_FUZZ_SECONDS between the targets by `weight`. */
const TOTAL_WEIGHT = 1 + 1 + 1 + 1 + 1 + 3 + 4;
function budget(ci: number, weight: number): fc.Parameters<unknown> {
  if (!LONG) return { seed: SEED, numRuns: ci, endOnFailure: true };
  return { seed: SEED, numRuns: Number.MAX_SAFE_INTEGER, interruptAfterTimeLimit: (LONG * 1000 * weight) / TOTAL_WEIGHT, markInterruptAsFailure: false, endOnFailure: true };
}
const timeout = (ciMs: number, weight: number) => (LONG ? (LONG * 1000 * weight) / TOTAL_WEIGHT + 120_000 : ciMs);
const counts: Record<string, number> = {};
const count = (target: string) => (counts[target] = (counts[target] ?? 0) + 1);

let tmp: string;
let n = 0;
const fresh = (ext: string) => path.join(tmp, `f${n++}${ext}`);
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-fuzz-"));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const line = `fuzz: ${total} inputs (${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(", ")}), seed ${SEED}${LONG ? `, ${LONG} s` : ""}`;
  process.stderr.write(line + "\n");
  if (process.env.GRADMM_FUZZ_REPORT) fs.writeFileSync(process.env.GRADMM_FUZZ_REPORT, JSON.stringify({ seed: SEED, seconds: LONG || null, total, counts }, null, 2) + "\n");
});

/** Calls f; anything thrown must be a GradmmError (whose message names what is wrong). */
function typedOrOk(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof GradmmError)) throw new Error(`untyped error: ${(e as Error)?.stack ?? String(e)}`);
    expect(e.message.length).toBeGreaterThan(0);
  }
}

// ---------------------------------------------------------------- configs
const validConfig = () => ({
  data: { path: imdb, examples_per_class: 6, text_field: "text", label_field: "label" },
  classes: [
    { label: 0, name: "negative", label_word: " bad", instruction: "Write a negative movie review:" },
    { label: 1, name: "positive", label_word: " great", instruction: "Write a positive movie review:" },
  ],
  template: " It was",
  model: tinyLM,
  method: { batch_size: 2, batches_per_class: 1, length: 4, outer_steps: 2, inner_steps: 2, top_k: 10, init_candidates: 4 },
  dp: { enabled: false, epsilon: 1 },
  filter: { few_shot: 0, keep_per_class: 4 },
  output: "out",
  seed: 1,
});

/** A weird value: wrong types, extreme numbers, huge and odd strings. */
const weirdValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(0, -1, 1, 2 ** 31, 2 ** 53, 1e308, -0, 0.5, 1e7, 10_000_000, null, true, false, "", " ", "\u0000", "NaN", "~", [], {}),
  fc.integer(),
  fc.double(),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 20 }),
  fc.constant("x".repeat(100_000)),
  fc.anything({ maxDepth: 2, maxKeys: 3 }),
);

/** A typo of a key: one edit (drop, swap, double, replace a letter). */
const typo = (key: string) =>
  fc.tuple(fc.nat(key.length), fc.constantFrom("drop", "swap", "double", "x")).map(([i, op]) => {
    const j = Math.min(i, key.length - 1);
    if (op === "drop") return key.slice(0, j) + key.slice(j + 1) || "k";
    if (op === "swap" && j + 1 < key.length) return key.slice(0, j) + key[j + 1] + key[j] + key.slice(j + 2);
    if (op === "double") return key.slice(0, j) + key[j] + key.slice(j);
    return key.slice(0, j) + "x" + key.slice(j + 1);
  });

type Mutation = { path: string[]; kind: "set" | "delete" | "typo"; value?: unknown };
const configMutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ path: fc.constantFrom(["data", "path"], ["data", "examples_per_class"], ["data", "encoding"], ["data", "format"], ["method", "batch_size"], ["method", "length"], ["method", "top_k"], ["method", "rho"], ["method", "lr"], ["dp", "enabled"], ["dp", "epsilon"], ["dp", "delta"], ["filter", "few_shot"], ["filter", "demonstrations"], ["template"], ["model"], ["output"], ["seed"], ["threads"], ["classes"]), kind: fc.constant("set" as const), value: weirdValue }),
  fc.record({ path: fc.constantFrom(["data"], ["classes"], ["data", "path"], ["method"], ["dp"], ["model"]), kind: fc.constant("delete" as const) }),
  fc.record({ path: fc.constantFrom(["data", "examples_per_class"], ["dp", "enabled"], ["method", "batch_size"], ["output"], ["filter", "few_shot"], ["template"]), kind: fc.constant("typo" as const) }),
);

function mutate(obj: Record<string, unknown>, muts: Mutation[], typos: string[]): Record<string, unknown> {
  muts.forEach((m, i) => {
    let o = obj as Record<string, unknown>;
    for (const p of m.path.slice(0, -1)) {
      if (typeof o[p] !== "object" || o[p] === null) return;
      o = o[p] as Record<string, unknown>;
    }
    const last = m.path[m.path.length - 1];
    if (m.kind === "set") o[last] = m.value;
    else if (m.kind === "delete") delete o[last];
    else if (last in o) {
      o[typos[i] ?? last + "x"] = o[last];
      if ((typos[i] ?? "") !== last) delete o[last];
    }
  });
  return obj;
}

const yamlText: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(fc.array(configMutation, { maxLength: 4 }), fc.array(fc.string({ minLength: 1, maxLength: 12 }), { maxLength: 4 })).map(([m, t]) => toYaml(mutate(validConfig(), m, t))),
  fc.string({ maxLength: 300 }),
  fc.constantFrom("a: &a [1,2]\nb: *a\n", "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n", "data: {path: x}\ndata: {path: y}\n", "- 1\n- 2\n", "!!binary aGk=\n", "? [a]\n: 1\n", "\ufeffdata:\n  path: x\n", ""),
);

describe("fuzz: configs", () => {
  it(
    "YAML configs: success or a typed error with the file name",
    () => {
      fc.assert(
        fc.property(yamlText, fc.constantFrom("utf8", "latin1", "utf16le"), fc.boolean(), (text, enc, bom) => {
          count("config-yaml");
          const file = fresh(".yaml");
          fs.writeFileSync(file, Buffer.concat([bom ? Buffer.from([0xef, 0xbb, 0xbf]) : Buffer.alloc(0), Buffer.from(text, enc as BufferEncoding)]));
          try {
            loadConfigFile(file);
          } catch (e) {
            if (!(e instanceof GradmmError)) throw new Error(`untyped: ${(e as Error).stack}`);
            expect(e.message).toContain(file);
          } finally {
            fs.rmSync(file, { force: true });
          }
        }),
        budget(2000, 1),
      );
    },
    timeout(60_000, 1),
  );

  it(
    "config objects: unknown keys never pass, and every error is a ConfigError naming a field",
    () => {
      fc.assert(
        fc.property(fc.array(configMutation, { maxLength: 5 }), fc.array(fc.string({ minLength: 1, maxLength: 12 }), { maxLength: 5 }), (m, t) => {
          count("config-object");
          const obj = mutate(validConfig(), m, t);
          try {
            const c = parseConfig(obj, tmp, "cfg");
            // whatever was accepted has only known keys at the top level and in each section
            for (const k of Object.keys(obj)) expect(Object.keys(c)).toContain(k);
          } catch (e) {
            if (!(e instanceof ConfigError)) throw new Error(`not a ConfigError: ${(e as Error).stack}`);
            expect(e.issues.length).toBeGreaterThan(0);
            for (const i of e.issues) expect(i.field).toMatch(/\S/);
          }
        }),
        budget(3000, 1),
      );
    },
    timeout(60_000, 1),
  );
});

// ---------------------------------------------------------------- data files
const fieldText: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 60 }) },
  { weight: 2, arbitrary: fc.string({ unit: "grapheme", maxLength: 30 }) },
  { weight: 1, arbitrary: fc.constantFrom("", " ", '"', '""', "a,b", "line\nbreak", "cr\r\nlf", "\u200b", "\ufeff", "\u2028", "\\", "é", "💥") },
  { weight: 1, arbitrary: fc.nat(3).map((k) => "long ".repeat(10 ** (k + 1))) },
);
const row = fc.record({ text: fieldText, label: fc.oneof(fc.constantFrom(0, 1, "0", "1", 2, null), fc.string({ maxLength: 3 })), extra: fc.option(fc.string({ maxLength: 5 })) });

function csvField(v: unknown): string {
  const s = v === null || v === undefined ? "" : String(v);
  return /[",\r\n]/.test(s) || s !== s.trim() ? `"${s.replace(/"/g, '""')}"` : s;
}

describe("fuzz: labelled data", () => {
  it(
    "JSONL and CSV in any encoding: examples or an InvalidDataError; valid UTF-8 data round-trips",
    () => {
      fc.assert(
        fc.property(
          fc.array(row, { maxLength: 12 }),
          fc.constantFrom("jsonl", "csv"),
          fc.constantFrom("utf8", "utf8-bom", "latin1", "utf16le-bom", "corrupt"),
          fc.nat(),
          fc.boolean(),
          (rows, format, enc, at, declared) => {
            count("data");
            const text =
              format === "jsonl"
                ? rows.map((r) => JSON.stringify(r.extra === null ? { text: r.text, label: r.label } : r)).join("\n") + "\n"
                : "text,label\n" + rows.map((r) => `${csvField(r.text)},${csvField(r.label)}`).join("\n") + "\n";
            let bytes: Buffer;
            if (enc === "utf8-bom") bytes = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]);
            else if (enc === "latin1") bytes = Buffer.from(text, "latin1");
            else if (enc === "utf16le-bom") bytes = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, "utf16le")]);
            else bytes = Buffer.from(text);
            if (enc === "corrupt" && bytes.length) bytes[at % bytes.length] = [0xff, 0xc0, 0x80, 0xed][at % 4];
            const file = fresh("." + format);
            fs.writeFileSync(file, bytes);
            const encoding = declared ? (enc === "latin1" ? "latin1" : enc === "utf16le-bom" ? "utf-16le" : "utf-8") : undefined;
            try {
              const ex = readLabelledFile(file, { textField: "text", labelField: "label", classLabels: [0, 1], encoding });
              // what was read is what was written (no replacement characters, no BOM in the first field)
              for (const e of ex) expect(e.text.includes("\ufffd") && !text.includes("\ufffd")).toBe(false);
              if ((enc === "utf8" || enc === "utf8-bom") && format === "jsonl") {
                const good = rows.filter((r) => r.label !== null && ["0", "1"].includes(String(r.label)));
                expect(ex.map((e) => e.text)).toEqual(good.map((r) => r.text));
              }
            } catch (e) {
              if (!(e instanceof GradmmError)) throw new Error(`untyped: ${(e as Error).stack}`);
              expect(e.code).toBe("INVALID_DATA");
            } finally {
              fs.rmSync(file, { force: true });
            }
          },
        ),
        budget(1500, 1),
      );
    },
    timeout(60_000, 1),
  );
});

// ---------------------------------------------------------------- checkpoints and model headers
const goodCheckpoint = () =>
  JSON.stringify({
    fingerprint: "a".repeat(64),
    batches: { "0/0/0": { tokens: [[1, 2], [3, 4]], perSampleLoss: [0.5, 0.4], decodedLoss: 0.4, bestXLoss: 0.3, initLoss: 0.9, xLossPerOuter: [0.5], zLossPerOuter: [0.6], texts: ["ab", "cd"], perplexity: [10, 11], seconds: 1 } },
  });

describe("fuzz: checkpoints and model file headers", () => {
  it(
    "checkpoints (truncated, mutated, random JSON): read or an InvalidCheckpointError naming the file",
    () => {
      fc.assert(
        fc.property(
          fc.oneof(
            fc.nat().map((k) => goodCheckpoint().slice(0, k % goodCheckpoint().length)),
            fc.tuple(fc.nat(), fc.string({ maxLength: 3 })).map(([k, s]) => {
              const g = goodCheckpoint();
              const i = k % g.length;
              return g.slice(0, i) + s + g.slice(i + 1);
            }),
            fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
          ),
          (text) => {
            count("checkpoint");
            const file = fresh(".json");
            fs.writeFileSync(file, text);
            try {
              readCheckpoint(file);
            } catch (e) {
              if (!(e instanceof GradmmError)) throw new Error(`untyped: ${(e as Error).stack}`);
              expect(e.code).toBe("INVALID_CHECKPOINT");
              expect(e.message).toContain(file);
            } finally {
              fs.rmSync(file, { force: true });
            }
          },
        ),
        budget(2000, 1),
      );
    },
    timeout(60_000, 1),
  );

  it(
    "GGUF and safetensors headers (mutated, truncated): parsed or a typed error",
    () => {
      const gguf = fs.readFileSync(path.join(__dirname, "fixtures", "gguf", "llama_tiny.gguf"));
      const ggufHead = gguf.subarray(0, Math.min(gguf.length, parseGGUFBuffer(gguf).dataStart + 64));
      const st = fs.readFileSync(path.join(tinyLM, "model.safetensors"));
      const stHead = st.subarray(0, Math.min(st.length, 8 + Number(st.readBigUInt64LE(0)) + 64));
      const edit = fc.record({ at: fc.nat(), kind: fc.nat(4), v: fc.nat(255), big: fc.constantFrom(0n, 1n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 63n, 2n ** 64n - 1n) });
      fc.assert(
        fc.property(fc.constantFrom("gguf", "safetensors"), fc.array(edit, { minLength: 1, maxLength: 4 }), fc.option(fc.nat()), (kind, edits, cut) => {
          count("model-header");
          const base = kind === "gguf" ? ggufHead : stHead;
          let b = Buffer.from(base);
          for (const e of edits) {
            const at = e.at % b.length;
            if (e.kind === 0) b[at] ^= 1 << (e.v % 8);
            else if (e.kind === 1) b[at] = e.v;
            else if (e.kind === 2 && at + 8 <= b.length) b.writeBigUInt64LE(e.big, at);
            else if (e.kind === 3) b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + (e.v % 16)))]);
            else b = Buffer.concat([b.subarray(0, at), Buffer.alloc(1 + (e.v % 8), e.v), b.subarray(at)]);
          }
          if (cut !== null) b = b.subarray(0, cut % (b.length + 1));
          typedOrOk(() => (kind === "gguf" ? parseGGUFBuffer(b, "fuzz.gguf", b.length) : parseSafetensorsBuffer(b, "fuzz.safetensors")));
        }),
        budget(6000, 1),
      );
    },
    timeout(60_000, 1),
  );
});

// ---------------------------------------------------------------- the CLI
function runCli(args: string[]) {
  return spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", env: { ...process.env, GRADMM_DEBUG: "" }, timeout: 60_000 });
}
function listTree(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true }).map(String).sort();
}

describe("fuzz: the CLI", () => {
  it(
    "synth on fuzzed configs and data: a documented exit code, one line of error, no stack trace, nothing written on failure",
    () => {
      const codes = new Set<number>([EXIT_CODES.ok, EXIT_CODES.usage, EXIT_CODES.input]);
      fc.assert(
        fc.property(
          fc.array(configMutation, { maxLength: 3 }),
          fc.array(fc.string({ minLength: 1, maxLength: 10 }), { maxLength: 3 }),
          fc.option(fc.array(row, { minLength: 1, maxLength: 8 }), { freq: 2 }),
          fc.constantFrom([], ["--resume"], ["--overwrite"], ["--json"], ["--bogus"]),
          (muts, typos, rows, flags) => {
            count("cli");
            const dir = fresh("");
            fs.mkdirSync(dir);
            const cfg = mutate(validConfig(), muts, typos);
            if (rows && typeof cfg.data === "object" && cfg.data) {
              const data = path.join(dir, "data.jsonl");
              fs.writeFileSync(data, rows.map((r) => JSON.stringify(r)).join("\n"));
              (cfg.data as Record<string, unknown>).path = data;
            }
            if (typeof cfg.output === "string") cfg.output = path.join(dir, "out", path.basename(cfg.output) || "o");
            const file = path.join(dir, "c.yaml");
            fs.writeFileSync(file, toYaml(cfg));
            const before = listTree(dir);
            const dry = runCli(["synth", file, "--dry-run", "--no-progress", ...flags]);
            for (const r of [dry]) {
              expect(codes.has(r.status ?? -1), `exit ${r.status}: ${r.stderr}`).toBe(true);
              expect(r.stderr).not.toMatch(/\n\s+at .+:\d+:\d+|internal error/);
            }
            expect(listTree(dir)).toEqual(before); // a dry run writes nothing
            if (dry.status !== 0) {
              // the real run fails the same way, before writing anything
              const real = runCli(["synth", file, "--no-progress", ...flags]);
              expect(real.status).toBe(dry.status);
              expect(real.stderr).not.toMatch(/\n\s+at .+:\d+:\d+|internal error/);
              expect(listTree(dir)).toEqual(before);
            }
            fs.rmSync(dir, { recursive: true, force: true });
          },
        ),
        budget(40, 3),
      );
    },
    timeout(120_000, 3),
  );
});

// ---------------------------------------------------------------- privacy
function eightGrams(texts: string[]): Set<string> {
  const set = new Set<string>();
  for (const t of texts) {
    const w = t.toLowerCase().split(/[^a-z0-9']+/).filter(Boolean);
    for (let i = 0; i + 8 <= w.length; i++) set.add(w.slice(i, i + 8).join(" "));
  }
  return set;
}
function leaks(hay: string, grams: Set<string>): string | null {
  const w = hay.replace(/\\[nrt"]/g, " ").toLowerCase().split(/[^a-z0-9']+/).filter(Boolean);
  for (let i = 0; i + 8 <= w.length; i++) {
    const g = w.slice(i, i + 8).join(" ");
    if (grams.has(g)) return g;
  }
  return null;
}

describe("fuzz: privacy with DP", () => {
  const privateTexts = fs.readFileSync(imdb, "utf8").trim().split("\n").map((l) => JSON.parse(l).text as string);
  const grams = eightGrams(privateTexts);

  it("the 8-gram check finds a private text (the check itself works)", () => {
    expect(leaks(JSON.stringify({ text: privateTexts[3] }), grams)).not.toBeNull();
  });

  it(
    "with DP on, no 8-gram of any private text appears in the output folder or on stdout/stderr",
    () => {
      fc.assert(
        fc.property(
          fc.record({
            enabled: fc.boolean(),
            few_shot: fc.nat(3),
            keep_per_class: fc.integer({ min: 1, max: 4 }),
            ppl_weight: fc.constantFrom(0, 0.5),
            dedupe: fc.boolean(),
            demos: fc.boolean(),
          }),
          fc.integer({ min: 0, max: 1000 }),
          fc.double({ min: 0.1, max: 8, noNaN: true }),
          fc.constantFrom([], ["--json"]),
          (f, seed, epsilon, flags) => {
            count("privacy");
            const dir = fresh("");
            fs.mkdirSync(dir);
            const cfg = validConfig() as Record<string, unknown>;
            cfg.dp = { enabled: true, epsilon, delta: 1e-5, clip_norm: 1 };
            cfg.seed = seed;
            cfg.output = path.join(dir, "out");
            cfg.filter = {
              enabled: f.enabled,
              few_shot: f.few_shot,
              keep_per_class: f.keep_per_class,
              ppl_weight: f.ppl_weight,
              dedupe: f.dedupe,
              ...(f.demos ? { demonstrations: [{ text: "A public example of a dull film", class: 0 }, { text: "A public example of a fine film", class: 1 }] } : {}),
            };
            const file = path.join(dir, "c.yaml");
            fs.writeFileSync(file, toYaml(cfg));
            const r = runCli(["synth", file, "--no-progress", ...flags]);
            const forbidden = f.enabled && f.few_shot > 0 && !f.demos;
            if (forbidden) {
              // private demonstrations where DP forbids them: an error, never a silent fallback
              expect(r.status).toBe(EXIT_CODES.input);
              expect(r.stderr).toMatch(/filter\.demonstrations/);
              expect(fs.existsSync(cfg.output as string)).toBe(false);
            } else expect(r.status, r.stderr).toBe(0);
            let leak = leaks(r.stdout + "\n" + r.stderr, grams);
            for (const f of listTree(cfg.output as string)) leak ??= leaks(fs.readFileSync(path.join(cfg.output as string, f), "utf8"), grams);
            expect(leak).toBeNull();
            fs.rmSync(dir, { recursive: true, force: true });
          },
        ),
        budget(10, 4),
      );
    },
    timeout(120_000, 4),
  );

  it("a DP config that would use private data is a ConfigError, never a fallback", () => {
    fc.assert(
      fc.property(fc.boolean(), fc.integer({ min: 1, max: 5 }), fc.boolean(), (lengthNull, fewShot, filterOn) => {
        count("privacy-config");
        const c = validConfig() as Record<string, Record<string, unknown>>;
        c.dp = { enabled: true };
        if (lengthNull) c.method.length = null;
        c.filter = { enabled: filterOn, few_shot: fewShot };
        const forbidden = lengthNull || filterOn;
        if (forbidden) expect(() => parseConfig(c, tmp, "cfg")).toThrow(ConfigError);
        else expect(() => parseConfig(c, tmp, "cfg")).not.toThrow();
      }),
      budget(100, 0.01),
    );
  });
});
