// Issue #20: bad input never passes silently. Each case a new user hit (typos in keys, stale outputs, raw stack
// traces, bad encodings, clashing label words, …) gives a typed error (or a correct result), checked before anything
// is computed or written; the CLI prints one line and exits with the documented code.
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, EXIT_CODES, GradmmError, InvalidCheckpointError, InvalidDataError, OutputError, exitCodeOf, typedEngineError } from "../ts/errors";
import { loadConfigFile, parseConfig } from "../ts/gradmm/config";
import { readLabelledFile } from "../ts/gradmm/data";
import { removePreviousRun } from "../ts/gradmm/output";
import { validateRun } from "../ts/gradmm/synthesize";
import { loadPretrainConfig } from "../ts/pretrain/config";
import { didYouMean, strictObject, parseWithSchema } from "../ts/strict";
import { z } from "zod";

const root = path.join(__dirname, "..");
const cli = path.join(root, "dist", "ts", "cli.js");
const tinyLM = path.join(__dirname, "fixtures", "tiny_lm");
const imdb = path.join(root, "examples", "data", "imdb", "train.jsonl");

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-valid-"));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function cfg(out: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    data: { path: imdb, examples_per_class: 6 },
    classes: [
      { label: 0, name: "negative", label_word: " bad", instruction: "Write a negative movie review:" },
      { label: 1, name: "positive", label_word: " great", instruction: "Write a positive movie review:" },
    ],
    model: tinyLM,
    method: { batch_size: 3, batches_per_class: 2, length: 6, outer_steps: 4, inner_steps: 6, top_k: 20, init_candidates: 4 },
    filter: { few_shot: 2, keep_per_class: 4 },
    output: out,
    seed: 7,
    ...extra,
  };
}

function caught(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected an error");
}
async function rejected(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a rejection");
}

/** Runs the CLI; asserts one-line typed errors (no stack trace) on failure. */
function runCli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", env: { ...process.env, GRADMM_DEBUG: "", ...env } });
  expect(r.stderr, "no stack trace").not.toMatch(/\n\s+at .+:\d+:\d+/);
  return r;
}

function writeFile(name: string, content: string | Buffer): string {
  const f = path.join(tmp, name);
  fs.writeFileSync(f, content);
  return f;
}

describe("strict config: unknown keys are errors naming the nearest valid key and the line", () => {
  it("dp: {enabeld: true} is an error, not a run without DP", () => {
    const file = writeFile("typo.yaml", [`data:`, `  path: ${imdb}`, `  exmples_per_class: 6`, `classes:`, `  - {label: 0, label_word: " bad", instruction: "a"}`, `  - {label: 1, label_word: " great", instruction: "b"}`, `dp:`, `  enabeld: true`, `  epsilon: 1`, `method:`, `  batchsize: 3`, `outptu: x`, ``].join("\n"));
    const e = caught(() => loadConfigFile(file)) as ConfigError;
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.code).toBe("INVALID_CONFIG");
    expect(e.issues).toEqual([
      { field: "data.exmples_per_class", line: 3, message: "unknown key `exmples_per_class` (did you mean `examples_per_class`?)" },
      { field: "dp.enabeld", line: 8, message: "unknown key `enabeld` (did you mean `enabled`?)" },
      { field: "method.batchsize", line: 11, message: "unknown key `batchsize` (did you mean `batch_size`?)" },
      { field: "outptu", line: 12, message: "unknown key `outptu` (did you mean `output`?)" },
    ]);
    expect(e.message).toContain(file);
    const r = runCli(["synth", file]);
    expect(r.status).toBe(EXIT_CODES.input);
    expect(r.stderr).toMatch(/dp\.enabeld \(line 8\): unknown key `enabeld` \(did you mean `enabled`\?\)/);
  });

  it("in class entries, filter demonstrations and the pretrain config too", () => {
    const c = cfg("o");
    (c.classes as Record<string, unknown>[])[1].lable_word = " x";
    expect(caught(() => parseConfig(c, tmp, "cfg")).message).toMatch(/classes\.1\.lable_word: unknown key `lable_word` \(did you mean `label_word`\?\)/);
    const d = cfg("o", { filter: { demonstrations: [{ text: "t", clas: 0 }] } });
    expect(caught(() => parseConfig(d, tmp, "cfg")).message).toMatch(/filter\.demonstrations\.0\.clas: unknown key `clas`/);
    const p = writeFile("pre.yaml", "train:\n  batch_sise: 4\n");
    expect(caught(() => loadPretrainConfig(p)).message).toMatch(/train\.batch_sise \(line 2\): unknown key `batch_sise` \(did you mean `batch_size`\?\)/);
  });

  it("strictObject is reusable (bench/utility can adopt it)", () => {
    const s = strictObject({ steps: z.number().default(1), lrs: z.array(z.number()).default([1]) });
    expect(parseWithSchema(s, { steps: 2 }, "f")).toEqual({ steps: 2, lrs: [1] });
    expect(caught(() => parseWithSchema(s, { stpes: 2 }, "f")).message).toBe("f: invalid config: stpes: unknown key `stpes` (did you mean `steps`?)");
    expect(caught(() => parseWithSchema(s, { zzzzzz: 2 }, "f")).message).toMatch(/valid keys: steps, lrs/);
    expect(didYouMean("outptu", ["output", "seed"])).toBe("output");
    expect(didYouMean("completely_different", ["output", "seed"])).toBe(null);
  });

  it("an unknown key that is empty or blank is shown quoted (found by the fuzzer)", () => {
    const e = caught(() => parseConfig({ ...cfg("o"), " ": "o", "": 1 }, tmp, "cfg")) as ConfigError;
    expect(e.issues.map((i) => i.field)).toEqual(['" "', '""']);
    expect(e.message).toContain('unknown key `" "`');
  });

  it("a demonstration's class must be a configured label", () => {
    expect(caught(() => parseConfig(cfg("o", { filter: { demonstrations: [{ text: "t", class: 7 }] } }), tmp, "cfg")).message).toMatch(/filter\.demonstrations\.0\.class: '7' is not the label/);
  });

  it("a YAML alias bomb is a typed error, quickly", () => {
    const lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
    for (let i = 0; i < 9; i++) lines.push(`${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)}]`);
    const file = writeFile("bomb.yaml", lines.join("\n") + "\n");
    const t0 = Date.now();
    const e = caught(() => loadConfigFile(file));
    expect(e).toBeInstanceOf(GradmmError);
    expect(e.message).toMatch(/alias/);
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it("a non-UTF-8 config names the line and byte", () => {
    const file = writeFile("latin.yaml", Buffer.concat([Buffer.from("data:\n  path: caf"), Buffer.from([0xe9]), Buffer.from(".jsonl\n")]));
    expect(caught(() => loadConfigFile(file)).message).toMatch(/line 2: not UTF-8 \(invalid byte 0xe9 at byte offset 17\)/);
  });
});

describe("data: encodings, BOMs, invisible characters, empty texts", () => {
  const opts = { textField: "text", labelField: "label", classLabels: [0, 1] };
  it("non-UTF-8 data is an error naming line and byte (or read with data.encoding)", () => {
    const f = writeFile("latin1.jsonl", Buffer.concat([Buffer.from('{"text":"ok","label":0}\n{"text":"caf'), Buffer.from([0xe9]), Buffer.from('","label":1}\n')]));
    const e = caught(() => readLabelledFile(f, opts)) as InvalidDataError;
    expect(e).toBeInstanceOf(InvalidDataError);
    expect(e.code).toBe("INVALID_DATA");
    expect(e.line).toBe(2);
    expect(e.message).toMatch(/line 2: not UTF-8 \(invalid byte 0xe9 at byte offset 36\).*data\.encoding/);
    expect(readLabelledFile(f, { ...opts, encoding: "latin1" })[1].text).toBe("café");
    const u16 = writeFile("u16.jsonl", Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('{"text":"été","label":0}\n{"text":"b","label":1}\n', "utf16le")]));
    expect(caught(() => readLabelledFile(u16, opts)).message).toMatch(/UTF-16 byte-order mark.*data\.encoding: utf-16le/);
    expect(readLabelledFile(u16, { ...opts, encoding: "utf-16le" })[0].text).toBe("été");
  });

  it("a UTF-8 BOM is accepted in CSV (header) and JSONL", () => {
    const csv = writeFile("bom.csv", "\ufefftext,label\nhello,0\nworld,1\n");
    expect(readLabelledFile(csv, opts)).toEqual([{ text: "hello", cls: 0, line: 2 }, { text: "world", cls: 1, line: 3 }]);
    const jsonl = writeFile("bom.jsonl", '\ufeff{"text":"a","label":0}\n{"text":"b","label":1}\n');
    expect(readLabelledFile(jsonl, opts).map((x) => x.text)).toEqual(["a", "b"]);
  });

  it("an invisible character in JSONL is named with its column", () => {
    const f = writeFile("zw.jsonl", '{"text":"a","label":0}\n\u200b{"text":"b","label":1}\n');
    expect(caught(() => readLabelledFile(f, opts)).message).toMatch(/line 2: invalid JSON .*invisible character U\+200B at column 1/);
  });

  it("a missing field lists the fields the row has", () => {
    const f = writeFile("fields.jsonl", '{"review":"a","label":0}\n');
    expect(caught(() => readLabelledFile(f, opts)).message).toMatch(/line 1: field 'text' is missing \(its fields: "review", "label"\)/);
  });

  it("all-empty texts blame the text field, not the instruction; before the model loads or the output exists", async () => {
    const f = writeFile("empty.jsonl", '{"text":"","label":0}\n{"text":" ","label":1}\n');
    const out = path.join(tmp, "empty-out");
    const c = parseConfig(cfg(out, { data: { path: f }, model: path.join(tmp, "no-such-model") }), tmp, "cfg");
    const e = await rejected(validateRun(c));
    expect(e).toBeInstanceOf(InvalidDataError);
    expect(e.message).toMatch(/every example of class 'negative' has an empty 'text'/);
    expect(fs.existsSync(out)).toBe(false);
  });
});

describe("validation before compute or writes", () => {
  it("two classes whose label words share a first token (or are the same word) are an error", async () => {
    const same = cfg(path.join(tmp, "lw1"));
    (same.classes as Record<string, unknown>[])[1].label_word = " bad";
    expect((await rejected(validateRun(parseConfig(same, tmp, "cfg")))).message).toMatch(/classes\.1\.label_word: " bad" is also the label word of classes\[0\]/);
    const shared = cfg(path.join(tmp, "lw2"));
    (shared.classes as Record<string, unknown>[])[1].label_word = " badly";
    expect((await rejected(validateRun(parseConfig(shared, tmp, "cfg")))).message).toMatch(/" badly" starts with the same token " b" as classes\[0\]'s " bad"/);
  });

  it("a multi-token label word is a warning naming the token it is cut to", async () => {
    const { warnings } = await validateRun(parseConfig(cfg(path.join(tmp, "lw3")), tmp, "cfg"));
    expect(warnings).toContain('classes[0].label_word " bad" is 2 tokens; only its first token " b" is the target');
  });

  it("class sizes below examples_per_class are a warning", async () => {
    const { warnings } = await validateRun(parseConfig(cfg(path.join(tmp, "sz"), { data: { path: imdb, examples_per_class: 100000 } }), tmp, "cfg"));
    expect(warnings.some((w) => /class 'negative' has \d+ examples, fewer than data\.examples_per_class 100000/.test(w))).toBe(true);
  });

  it("top_k above the vocabulary, length above the context, and a batch beyond memory are errors with the numbers", async () => {
    const m = (method: Record<string, unknown>) => parseConfig(cfg(path.join(tmp, "num"), { method: { length: 6, top_k: 20, ...method } }), tmp, "cfg");
    expect((await rejected(validateRun(m({ top_k: 100000, allowed_tokens: "all" })))).message).toMatch(/method\.top_k: 100000 is more than the 400 tokens/);
    expect((await rejected(validateRun(m({ length: 100000 })))).message).toMatch(/method\.length: 100000 free tokens do not fit the model's \d+-token context/);
    const e = await rejected(validateRun(m({ batch_size: 1000000 })));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toMatch(/batch_size 1000000 × \d+ positions .* needs about [\d.]+ GiB .* more than the [\d.]+ GiB of memory/);
    const r = runCli(["synth", writeYaml("huge.yaml", cfg(path.join(tmp, "huge-out"), { method: { batch_size: 1000000, length: 6, top_k: 20 } }))]);
    expect(r.status).toBe(EXIT_CODES.input);
    expect(fs.existsSync(path.join(tmp, "huge-out"))).toBe(false);
  });

  it("an output path that is a file, or a folder that is not writable, fails before anything runs", async () => {
    const file = writeFile("iamafile", "x");
    const e = await rejected(validateRun(parseConfig(cfg(file), tmp, "cfg")));
    expect(e).toBeInstanceOf(OutputError);
    expect((e as OutputError).code).toBe("OUTPUT_NOT_DIR");
    expect((await rejected(validateRun(parseConfig(cfg(path.join(file, "sub")), tmp, "cfg")))).message).toMatch(/a parent of the output folder is a file|is a file, not a folder/);
    let probe = false;
    try {
      fs.accessSync("/proc/1", fs.constants.W_OK);
    } catch {
      probe = true;
    }
    if (probe) {
      const w = await rejected(validateRun(parseConfig(cfg("/proc/1/gradmm-out"), tmp, "cfg")));
      expect((w as OutputError).code).toBe("OUTPUT_NOT_WRITABLE");
      expect(w.message).toMatch(/would be made in \/proc\/1, which (is not writable|is on a read-only file system)/);
    }
  });
});

function writeYaml(name: string, obj: unknown): string {
  return writeFile(name, JSON.stringify(obj, null, 2));
}

describe("checkpoints and --overwrite", () => {
  it("a truncated or incomplete checkpoint on --resume names its file and field, before any compute", () => {
    const out = path.join(tmp, "ck");
    fs.mkdirSync(out, { recursive: true });
    const file = writeYaml("ck.yaml", cfg(out));
    fs.writeFileSync(path.join(out, "checkpoint.json"), '{"fingerprint": "ab');
    let r = runCli(["synth", file, "--resume", "--no-progress"]);
    expect(r.status).toBe(EXIT_CODES.input);
    expect(r.stderr).toMatch(/InvalidCheckpointError \[INVALID_CHECKPOINT\]: .*checkpoint\.json: not valid JSON \(truncated or corrupted/);
    fs.writeFileSync(path.join(out, "checkpoint.json"), JSON.stringify({ fingerprint: "a".repeat(64), batches: { "0/0/0": { tokens: [[1]], texts: ["x"] } } }));
    r = runCli(["synth", file, "--resume", "--no-progress"]);
    expect(r.status).toBe(EXIT_CODES.input);
    expect(r.stderr).toMatch(/checkpoint\.json: field batches\.0\/0\/0\.perSampleLoss: /);
    expect(r.stderr).not.toMatch(/loading model/);
  });

  it("the checkpoint reader reports the field path", async () => {
    const { readCheckpoint } = await import("../ts/gradmm/output");
    const f = writeFile("ck2.json", JSON.stringify({ fingerprint: "a".repeat(64) }));
    const e = caught(() => readCheckpoint(f)) as InvalidCheckpointError;
    expect(e.field).toBe("batches");
  });

  it("--overwrite moves the old run aside before the first batch: a killed run never shows the old results", async () => {
    const out = path.join(tmp, "ow");
    fs.mkdirSync(out, { recursive: true });
    for (const f of ["synthetic.jsonl", "filtered.jsonl", "report.json"]) fs.writeFileSync(path.join(out, f), "OLD\n");
    fs.writeFileSync(path.join(out, "checkpoint.json"), JSON.stringify({ fingerprint: "0".repeat(64), batches: {} }));
    const file = writeYaml("ow.yaml", cfg(out, { method: { batch_size: 3, batches_per_class: 3, length: 6, outer_steps: 6, inner_steps: 40, top_k: 20, init_candidates: 4 } }));
    const child = spawn(process.execPath, [cli, "synth", file, "--overwrite", "--no-progress"], { stdio: "ignore" });
    const ckpt = path.join(out, "checkpoint.json");
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        let fresh = false;
        try {
          fresh = !fs.readFileSync(ckpt, "utf8").includes("0".repeat(64));
        } catch {
          // between the old run's removal and the first batch
        }
        if (fresh) {
          clearInterval(timer);
          child.kill("SIGKILL");
          resolve();
        }
      }, 10);
      child.on("exit", () => {
        clearInterval(timer);
        reject(new Error("the run finished before it could be killed"));
      });
    });
    await new Promise((r) => child.on("exit", r));
    for (const f of ["synthetic.jsonl", "filtered.jsonl", "report.json"]) expect(fs.existsSync(path.join(out, f)), f).toBe(false);
  });

  it("--overwrite keeps files that are not the run's", () => {
    const out = path.join(tmp, "mixed");
    fs.mkdirSync(out, { recursive: true });
    fs.writeFileSync(path.join(out, "notes.txt"), "mine");
    fs.writeFileSync(path.join(out, "report.json"), "old");
    fs.writeFileSync(path.join(out, "checkpoint.json"), "old");
    removePreviousRun(out);
    expect(fs.readdirSync(out)).toEqual(["notes.txt"]);
    const only = path.join(tmp, "only");
    fs.mkdirSync(only);
    fs.writeFileSync(path.join(only, "checkpoint.json"), "old");
    removePreviousRun(only);
    expect(fs.existsSync(only)).toBe(false);
    expect(fs.readdirSync(tmp).filter((f) => f.includes("replaced"))).toEqual([]);
  });
});

describe("typed errors and exit codes", () => {
  it("usage errors exit 2, bad input 3, and --debug adds the stack", () => {
    expect(runCli(["synth"]).status).toBe(EXIT_CODES.usage);
    expect(runCli(["synth", "x.yaml", "--resume", "--overwrite"]).status).toBe(EXIT_CODES.usage);
    const missing = runCli(["synth", path.join(tmp, "nope.yaml")]);
    expect(missing.status).toBe(EXIT_CODES.input);
    expect(missing.stderr.trim().split("\n")).toHaveLength(1);
    const dbg = spawnSync(process.execPath, [cli, "--debug", "synth", path.join(tmp, "nope.yaml")], { encoding: "utf8" });
    expect(dbg.stderr).toMatch(/\n\s+at /);
  });

  it("Ctrl-C before the first batch finishes says that nothing was saved, and exits 130", async () => {
    const out = path.join(tmp, "sigint");
    const file = writeYaml("sigint.yaml", cfg(out, { method: { batch_size: 3, batches_per_class: 3, length: 6, outer_steps: 30, inner_steps: 200, top_k: 20, init_candidates: 4 } }));
    const child = spawn(process.execPath, [cli, "synth", file, "--no-progress"], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => {
      stderr += String(d);
      if (/class 'positive'/.test(stderr) && !child.killed) child.kill("SIGINT");
    });
    const code = await new Promise((r) => child.on("exit", r));
    expect(code).toBe(EXIT_CODES.interrupted);
    expect(stderr).toMatch(/no batch has finished yet, so nothing will be saved/);
    expect(stderr).toMatch(/stopped before the first batch finished; nothing was saved/);
    expect(stderr).not.toMatch(/Completed batches are saved/);
  });

  it("--dry-run validates without writing", () => {
    const out = path.join(tmp, "dry");
    const r = runCli(["synth", writeYaml("dry.yaml", cfg(out)), "--dry-run", "--json"]);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ valid: true, warnings: expect.any(Array) });
    expect(fs.existsSync(out)).toBe(false);
  });

  it("the addon's argument errors become EngineArgumentErrors with the numbers", async () => {
    const { loadModel } = await import("../ts/load_model");
    const m = loadModel(tinyLM);
    try {
      const V = m.config.vocabSize, T = m.config.maxSeqLen;
      const e1 = typedEngineError(await rejected(m.model.forward({ tokens: Int32Array.from([1, V + 5]), B: 1, T: 2 }))) as GradmmError;
      expect(e1.code).toBe("ENGINE_ARGUMENT");
      expect(e1.message).toBe(`forward: token id out of range (${V + 5} at index 1; valid: 0 to ${V - 1})`);
      const e2 = typedEngineError(await rejected(m.model.forward({ tokens: new Int32Array(T + 1), B: 1, T: T + 1 }))) as GradmmError;
      expect(e2.message).toBe(`sequence length exceeds the model's max_seq_len (${T + 1} > ${T})`);
      expect(exitCodeOf(e2)).toBe(EXIT_CODES.internal);
    } finally {
      m.dispose();
    }
  });
});
