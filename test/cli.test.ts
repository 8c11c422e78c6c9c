// The CLI as a new user meets it: help, `gradmm init` on one's own CSV then `gradmm synth` on the config it wrote,
// the -o/--threads/--model overrides, `gradmm report`, `gradmm eval`, --json and the documented exit codes.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { proposeConfig } from "../ts/gradmm/init";
import { tinyReportConfig } from "./helpers/report_config";

const root = path.join(__dirname, "..");
const cli = path.join(root, "dist", "ts", "cli.js");
const tinyLM = path.join(__dirname, "fixtures", "tiny_lm");
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-cli-"));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function run(args: string[], cwd = tmp) {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd, encoding: "utf8", env: { ...process.env, GRADMM_BACKEND: "cpu" }, timeout: 300_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A CSV as a user would have it: an id, a review with commas and quotes, a string label. */
function writeReviewsCsv(file: string, n = 40): void {
  const rows = fs
    .readFileSync(path.join(root, "examples", "data", "imdb", "train.jsonl"), "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { text: string; label: number });
  const pick = [...rows.filter((r) => r.label === 0).slice(0, n / 2), ...rows.filter((r) => r.label === 1).slice(0, n / 2)];
  const q = (s: string) => `"${s.replace(/"/g, '""')}"`;
  fs.writeFileSync(file, ["id,review,sentiment", ...pick.map((r, i) => `${i},${q(r.text.slice(0, 300))},${r.label ? "positive" : "negative"}`)].join("\n") + "\n");
}

describe("help", () => {
  it("gradmm --help lists every command, a start, and the exit codes", () => {
    const r = run(["--help"]);
    expect(r.code).toBe(0);
    for (const c of ["synth", "report", "init", "eval", "models", "fetch-model", "doctor"]) expect(r.stdout).toMatch(new RegExp(`^\\s+${c}\\b`, "m"));
    expect(r.stdout).toContain("gradmm init data.csv");
    expect(r.stdout).toMatch(/Exit codes: 0 success, 2 usage error, 3 bad input.*130 interrupted.*70 internal error/s);
  });

  it("each command's help says what it does and lists its options", () => {
    const synth = run(["synth", "--help"]);
    expect(synth.code).toBe(0);
    for (const o of ["-o, --output <dir>", "--threads <n>", "--model <name|path>", "--json", "--dry-run", "--resume", "--no-report"]) expect(synth.stdout).toContain(o);
    expect(synth.stdout).toMatch(/gradient matching/);
    for (const c of ["report", "init", "eval", "models", "fetch-model"]) {
      const h = run([c, "--help"]);
      expect(h.code, c).toBe(0);
      expect(h.stdout.split("\n").length, c).toBeGreaterThan(4);
    }
  });

  it("usage errors exit 2", () => {
    expect(run(["synth"]).code).toBe(2);
    expect(run(["synth", "x.yaml", "--out", "/tmp/x"]).code).toBe(2);
    const bad = run(["synth", "x.yaml", "--threads", "two"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--threads expects a whole number");
    expect(run(["no-such-command"]).code).toBe(2);
  });
});

describe("gradmm init", () => {
  it("detects the text and label fields and the classes of a CSV, then synth runs the config it wrote", () => {
    const csv = path.join(tmp, "reviews.csv");
    writeReviewsCsv(csv);
    const cfg = path.join(tmp, "reviews.yaml");
    const init = run(["init", csv, "-o", cfg, "--quick", "--json"]);
    expect(init.code, init.stderr).toBe(0);
    const found = JSON.parse(init.stdout);
    expect(found.text_field).toBe("review");
    expect(found.label_field).toBe("sentiment");
    expect(found.classes.map((c: { label: string }) => c.label).sort()).toEqual(["negative", "positive"]);
    expect(found.classes.map((c: { label_word: string }) => c.label_word).sort()).toEqual([" negative", " positive"]);
    const yaml = fs.readFileSync(cfg, "utf8");
    expect(yaml).toMatch(/^# A starter config/);
    expect(yaml).toContain('path: "reviews.csv"');
    expect(yaml).toMatch(/EDIT the label words/);
    // refuses to replace it without --force (exit 3)
    const again = run(["init", csv, "-o", cfg]);
    expect(again.code).toBe(3);
    expect(again.stderr).toMatch(/OUTPUT_EXISTS.*--force/);
    // the config it wrote is valid and runs, with report.html, on the command line's output folder and threads
    expect(run(["synth", cfg, "--dry-run"]).code).toBe(0);
    const out = path.join(tmp, "reviews-run");
    const synth = run(["synth", cfg, "-o", out, "--threads", "1", "--json", "--no-progress"]);
    expect(synth.code, synth.stderr).toBe(0);
    const summary = JSON.parse(synth.stdout);
    expect(summary.output).toBe(out);
    expect(summary.synthetic).toBe(4);
    expect(summary.report).toBe(path.join(out, "report.html"));
    for (const f of ["synthetic.jsonl", "filtered.jsonl", "report.json", "report.html", "checkpoint.json"]) expect(fs.existsSync(path.join(out, f)), f).toBe(true);
    expect(JSON.parse(fs.readFileSync(path.join(out, "report.json"), "utf8")).settings.threads).toBe(1);
    // progress lines for the long steps when stderr is not a terminal
    expect(synth.stderr).toMatch(/targets: 0\/2/);
    expect(synth.stderr).toMatch(/filter: 0\/4/);
    expect(synth.stderr).toMatch(/init: trying 8 initial candidates/);
    // gradmm report makes the page again
    fs.rmSync(path.join(out, "report.html"));
    const rep = run(["report", out, "--json"]);
    expect(rep.code, rep.stderr).toBe(0);
    expect(JSON.parse(rep.stdout)).toEqual({ report: path.join(out, "report.html") });
    expect(fs.readFileSync(path.join(out, "report.html"), "utf8")).toContain('data-plot="loss-curves"');
  });

  it("numeric labels get distinct placeholder words; a file without a label field is a clear error", () => {
    const p = proposeConfig(path.join(root, "examples", "data", "imdb", "train.jsonl"));
    expect(p.textField).toBe("text");
    expect(p.labelField).toBe("label");
    expect(p.classes.map((c) => c.label).sort()).toEqual([0, 1]);
    expect(new Set(p.classes.map((c) => c.labelWord)).size).toBe(2);
    expect(p.notes.join(" ")).toMatch(/placeholders/);
    const cfg = path.join(tmp, "imdb.yaml");
    expect(run(["init", path.join(root, "examples", "data", "imdb", "train.jsonl"), "-o", cfg, "--quick"]).code).toBe(0);
    const dry = run(["synth", cfg, "--dry-run"]);
    expect(dry.code, dry.stderr).toBe(0);

    const nolabel = path.join(tmp, "nolabel.jsonl");
    fs.writeFileSync(nolabel, Array.from({ length: 10 }, (_, i) => JSON.stringify({ text: `text number ${i} is here`, id: i })).join("\n"));
    const r = run(["init", nolabel, "-o", path.join(tmp, "nolabel.yaml")]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/INVALID_DATA.*no field looks like a label.*--label-field/);
    expect(fs.existsSync(path.join(tmp, "nolabel.yaml"))).toBe(false);
    // named fields that do not exist
    const named = run(["init", nolabel, "--label-field", "cls", "-o", path.join(tmp, "n2.yaml")]);
    expect(named.code).toBe(3);
    expect(named.stderr).toMatch(/no field 'cls'/);
  });
});

describe("synth overrides", () => {
  it("--model replaces the config's model (and is part of the run's fingerprint)", () => {
    const cfg = path.join(tmp, "tiny.yaml");
    const conf = tinyReportConfig("out-tiny", { model: "no/such/model" });
    fs.writeFileSync(cfg, JSON.stringify(conf));
    expect(run(["synth", cfg, "--dry-run"]).code).toBe(3);
    const ok = run(["synth", cfg, "--model", tinyLM, "--no-report", "--json"]);
    expect(ok.code, ok.stderr).toBe(0);
    const out = path.join(tmp, "out-tiny");
    expect(JSON.parse(ok.stdout).report).toBeNull();
    expect(fs.existsSync(path.join(out, "report.html"))).toBe(false);
    expect(JSON.parse(fs.readFileSync(path.join(out, "report.json"), "utf8")).settings.model_dir).toBe(tinyLM);
  });
});

describe("gradmm eval", () => {
  it("runs the utility benchmark's config checks (a bad config is exit 3)", () => {
    const cfg = path.join(tmp, "eval.yaml");
    fs.writeFileSync(cfg, JSON.stringify({ ...tinyReportConfig("e"), eval: { seeds: [0], no_such_key: 1 } }));
    const r = run(["eval", cfg, "--no-progress"]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/no_such_key/);
    expect(run(["eval", cfg, "--resume", "--overwrite"]).code).toBe(2);
  });
});
