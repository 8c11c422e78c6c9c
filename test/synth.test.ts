// The GRADMM pipeline end to end on a tiny model (test/fixtures/tiny_lm): config validation, a full run with its
// output files, ADMM lowering the matching loss, resume after a kill giving byte-identical output, and DP.
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InvalidFileError } from "../ts/errors";
import { loadConfigFile, parseConfig } from "../ts/gradmm/config";
import { analyticGaussianSigma, classicGaussianSigma, dpParameters } from "../ts/gradmm/dp";
import { fingerprint, fingerprintWithFilter, OutputExistsError } from "../ts/gradmm/output";
import { synthesize, validateRun } from "../ts/gradmm/synthesize";
import { pickDemonstrations } from "../ts/gradmm/filter";
import { native } from "../ts/native";
import { makeTinyLM } from "./fixtures/make_tiny_lm";
import { tinySynthBase } from "./helpers/tiny_synth";

const root = path.join(__dirname, "..");
const tinyLM = path.join(__dirname, "fixtures", "tiny_lm");
if (process.env.GRADMM_REGENERATE_FIXTURES) makeTinyLM(tinyLM);

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-synth-"));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function tinyConfig(out: string, extra: Record<string, unknown> = {}) {
  return {
    ...tinySynthBase(),
    method: { batch_size: 3, batches_per_class: 2, length: 6, outer_steps: 4, inner_steps: 6, top_k: 20, init_candidates: 4 },
    filter: { few_shot: 2, keep_per_class: 4 },
    output: out,
    seed: 7,
    ...extra,
  };
}

function writeYaml(file: string, obj: unknown) {
  // JSON is valid YAML
  fs.writeFileSync(file, JSON.stringify(obj, null, 2));
}

describe("config", () => {
  it("spreads the filter's demonstrations over the classes, and warns when some class gets none", async () => {
    const byClass = [["a1", "a2", "a3"], ["b1", "b2"], ["c1", "c2"]];
    const pick = (n: number) => pickDemonstrations(byClass, n).map((d) => d.item);
    expect(pick(2)).toEqual(["a1", "b1"]);
    expect(pick(3)).toEqual(["a1", "b1", "c1"]);
    // 4 over 3 classes: 2, 1, 1 (not 2, 2, 0)
    expect(pick(4)).toEqual(["a1", "a2", "b1", "c1"]);
    expect(pickDemonstrations([["x1", "x2"], ["y1", "y2"]], 4).map((d) => [d.item, d.cls])).toEqual([["x1", 0], ["x2", 0], ["y1", 1], ["y2", 1]]);
    const data = path.join(tmp, "three.jsonl");
    fs.writeFileSync(data, ["a", "b", "c"].flatMap((l, k) => [1, 2, 3].map((i) => JSON.stringify({ text: `text ${l} ${i}`, label: k }))).join("\n") + "\n");
    const three = (fewShot: number) =>
      parseConfig(
        {
          ...tinyConfig(path.join(tmp, `three-${fewShot}`)),
          data: { path: data, examples_per_class: 3 },
          classes: [0, 1, 2].map((k) => ({ label: k, name: `c${k}`, label_word: [" bad", " great", " fine"][k], instruction: "Write:" })),
          filter: { few_shot: fewShot },
        },
        tmp,
        "cfg",
      );
    const { warnings } = await validateRun(three(2));
    expect(warnings.filter((w) => w.startsWith("filter.few_shot"))).toEqual(["filter.few_shot 2 is less than the 3 classes: 'c2' get no demonstration in the label-agreement prompt (set few_shot to 3 or more)"]);
    expect((await validateRun(three(3))).warnings.filter((w) => w.startsWith("filter.few_shot"))).toEqual([]);
  });

  it("names the field and its line in validation errors", () => {
    const file = path.join(tmp, "bad.yaml");
    fs.writeFileSync(file, ["data:", "  path: x.jsonl", "classes:", "  - label: 0", "    label_word: 5", "    instruction: hi", "method:", "  top_k: -3", ""].join("\n"));
    let err: unknown;
    try {
      loadConfigFile(file);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidFileError);
    const msg = (err as Error).message;
    expect(msg).toContain(file);
    expect(msg).toMatch(/classes\.0\.label_word \(line 5\)/);
    expect(msg).toMatch(/method\.top_k \(line 8\)/);
  });

  it("fills omitted sections with the paper's defaults", () => {
    const c = parseConfig({ data: { path: "x.jsonl" }, classes: tinyConfig("o").classes }, tmp, "cfg");
    expect(c.method).toMatchObject({ batch_size: 10, outer_steps: 30, inner_steps: 50, lr: 0.008, rho: 0.1, top_k: 200, init_candidates: 500, init_token_norm: 1.4, length: null });
    expect(c.filter).toMatchObject({ enabled: true, few_shot: 2 });
    expect(c.dp).toMatchObject({ enabled: false, delta: 1e-5 });
  });

  it("reports YAML syntax errors with a line", () => {
    const file = path.join(tmp, "syntax.yaml");
    fs.writeFileSync(file, "data:\n  path: [unclosed\n");
    expect(() => loadConfigFile(file)).toThrow(/line \d+/);
  });

  it("refuses DP without an explicit length (the real mean length would leak)", () => {
    const c = tinyConfig(path.join(tmp, "dp0"), { dp: { enabled: true } });
    (c.method as Record<string, unknown>).length = null;
    expect(() => parseConfig(c, tmp, "cfg")).toThrow(/method\.length/);
  });
});

describe("differential privacy parameters", () => {
  it("uses σ = (C/n)√(2 ln(1.25/δ))/ε for ε ≤ 1 and the analytic Gaussian mechanism above", () => {
    const p = dpParameters(0.5, 1e-5, 2, 25);
    expect(p.mechanism).toBe("classic");
    expect(p.sigma).toBeCloseTo(((2 / 25) * Math.sqrt(2 * Math.log(1.25 / 1e-5))) / 0.5, 10);
    const q = dpParameters(4, 1e-5, 2, 25);
    expect(q.mechanism).toBe("analytic");
    expect(q.sigma).toBeLessThan(classicGaussianSigma(2 / 25, 4, 1e-5));
    // the analytic σ is also no larger than the classic one where both apply
    expect(analyticGaussianSigma(1, 0.9, 1e-5)).toBeLessThanOrEqual(classicGaussianSigma(1, 0.9, 1e-5));
  });
});

describe("synthesize (tiny model)", () => {
  it("runs the method end to end and writes every output file", async () => {
    const out = path.join(tmp, "run1");
    const config = parseConfig(tinyConfig(out), tmp, "cfg");
    const r = await synthesize(config);
    expect(r.samples.length).toBe(2 * 2 * 3);
    for (const f of ["synthetic.jsonl", "filtered.jsonl", "report.json", "checkpoint.json"]) expect(fs.existsSync(path.join(out, f)), f).toBe(true);
    const rows = fs.readFileSync(path.join(out, "synthetic.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(rows[0]).toEqual(expect.objectContaining({ text: expect.any(String), label: 0, matching_loss: expect.any(Number), perplexity: expect.any(Number), batch: 0, rho: 0.1 }));
    // every sampled token is alphabetic (the default allowed set): letters and spaces only
    for (const row of rows) expect(row.text).toMatch(/^[A-Za-z ]*$/);
    const report = JSON.parse(fs.readFileSync(path.join(out, "report.json"), "utf8"));
    for (const cls of ["negative", "positive"]) {
      const c = report.classes[cls];
      expect(c.batches).toHaveLength(2);
      for (const b of c.batches) {
        expect(b.x_loss_per_outer).toHaveLength(4);
        // ADMM lowers the matching loss below the best random initialisation
        expect(b.best_x_loss).toBeLessThan(b.init_loss);
      }
      expect(c.gradient_cosine_all).toBeGreaterThan(-1);
      expect(c.gradient_cosine_all).toBeLessThanOrEqual(1);
    }
    // filtered set is balanced
    const filtered = fs.readFileSync(path.join(out, "filtered.jsonl"), "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
    const counts = [0, 1].map((l) => filtered.filter((x) => x.label === l).length);
    expect(counts[0]).toBe(counts[1]);
    // a second run into the same folder must not silently overwrite it
    await expect(synthesize(config)).rejects.toBeInstanceOf(OutputExistsError);
  });

  it("is deterministic: the same seed gives the same bytes", async () => {
    const a = path.join(tmp, "det-a"), b = path.join(tmp, "det-b");
    await synthesize(parseConfig(tinyConfig(a), tmp, "cfg"));
    await synthesize(parseConfig(tinyConfig(b), tmp, "cfg"));
    for (const f of ["synthetic.jsonl", "filtered.jsonl"]) expect(fs.readFileSync(path.join(a, f)).equals(fs.readFileSync(path.join(b, f)))).toBe(true);
  });

  it("method.decode best_z: the same ADMM run, the lowest-f(z) projection kept (Π(best x) included); best_x keeps the fingerprint", async () => {
    const px = path.join(tmp, "dec-x"), pz = path.join(tmp, "dec-z");
    const base = tinyConfig(px);
    const cx = parseConfig(base, tmp, "cfg");
    const cz = parseConfig({ ...tinyConfig(pz), method: { ...base.method, decode: "best_z" } }, tmp, "cfg");
    expect(cx.method.decode).toBe("best_x");
    // the paper's recipe is the default, and naming it changes nothing
    expect(fingerprint(parseConfig({ ...base, method: { ...base.method, decode: "best_x" } }, tmp, "cfg"))).toBe(fingerprint(cx));
    expect(fingerprint(cz)).not.toBe(fingerprint(cx));
    await synthesize(cx);
    await synthesize(cz);
    const rx = JSON.parse(fs.readFileSync(path.join(px, "report.json"), "utf8")), rz = JSON.parse(fs.readFileSync(path.join(pz, "report.json"), "utf8"));
    let earlier = 0;
    for (const cls of ["negative", "positive"])
      rx.classes[cls].batches.forEach((bx: Record<string, number[] & number>, i: number) => {
        const bz = rz.classes[cls].batches[i];
        // the optimisation is the same: identical trajectories
        expect(bz.x_loss_per_outer).toEqual(bx.x_loss_per_outer);
        expect(bz.z_loss_per_outer).toEqual(bx.z_loss_per_outer);
        expect(bx.decoded_from_outer).toBeUndefined();
        // best_z returns the lowest of Π(best x) and every projection made
        expect(bz.decoded_loss).toBe(Math.min(bx.decoded_loss, ...bx.z_loss_per_outer));
        if (bz.decoded_from_outer > 0) {
          earlier++;
          expect(bz.decoded_loss).toBe(bx.z_loss_per_outer[bz.decoded_from_outer - 1]);
        } else expect(bz.decoded_from_outer).toBe(0);
      });
    // each sample's own loss comes with its tokens
    const samples = fs.readFileSync(path.join(pz, "synthetic.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(samples.every((s) => s.matching_loss > 0 && s.matching_loss < 2)).toBe(true);
    console.log(`decode best_z: ${earlier} of 4 batches kept an earlier projection`);
  });

  it("changing only the filter resumes every batch (checkpoints from before, with the filter in the fingerprint, too)", async () => {
    const out = path.join(tmp, "refilter");
    const filtered = parseConfig(tinyConfig(out), tmp, "cfg");
    const unfiltered = parseConfig(tinyConfig(out, { filter: { enabled: false } }), tmp, "cfg");
    expect(fingerprint(unfiltered)).toBe(fingerprint(filtered));
    expect(fingerprintWithFilter(unfiltered)).not.toBe(fingerprintWithFilter(filtered));
    // the fingerprint checkpoints carried before the filter left it, frozen here as it was computed then
    const { createHash } = await import("node:crypto");
    const before = (c: typeof filtered) => {
      const { output: _o, threads: _t, resolved, precision: _p, ...rest } = c;
      const { decode: _d, target_rows: _r, objective: _ob, whitening_shrinkage: _ws, ...method } = rest.method;  // settings added later, defaults unhashed
      const h = createHash("sha256").update(JSON.stringify({ ...rest, method }));
      for (const f of [resolved.dataPath, path.join(resolved.modelDir, "model.safetensors"), path.join(resolved.modelDir, "tokenizer.json")]) h.update(fs.readFileSync(f));
      return h.digest("hex");
    };
    expect(fingerprintWithFilter(filtered)).toBe(before(filtered));
    const first = await synthesize(filtered);
    const ckptFile = path.join(out, "checkpoint.json");
    const ckpt = JSON.parse(fs.readFileSync(ckptFile, "utf8"));
    fs.writeFileSync(ckptFile, JSON.stringify({ ...ckpt, fingerprint: before(filtered) }));
    const messages: string[] = [];
    let admmSteps = 0;
    const second = await synthesize(unfiltered, { resume: true, onProgress: (p) => (p.phase === "batch" ? admmSteps++ : "message" in p && messages.push(p.message)) });
    expect(messages).toContain("resuming: 4 batches already done");
    expect(admmSteps).toBe(0);
    // (accepted through the filter the finished run recorded in its report.json; without it, only the same filter)
    const bare = path.join(tmp, "refilter-bare");
    fs.mkdirSync(bare);
    fs.writeFileSync(path.join(bare, "checkpoint.json"), JSON.stringify({ ...ckpt, fingerprint: before(filtered) }));
    await expect(synthesize(parseConfig(tinyConfig(bare, { filter: { enabled: false } }), tmp, "cfg"), { resume: true })).rejects.toThrow(/different config, model or data/);
    // the same batches, every sample kept in decoding order
    expect(second.samples).toEqual(first.samples);
    expect(second.filtered).toEqual(second.samples);
    expect(first.filtered.length).toBeLessThan(first.samples.length);
    // a checkpoint of another batch config is still refused
    const other = parseConfig(tinyConfig(out, { method: { ...tinyConfig(out).method, rho: 0.5 } }), tmp, "cfg");
    await expect(synthesize(other, { resume: true })).rejects.toThrow(/different config, model or data/);
  });

  it("with DP keeps private text out of the output folder and reports ε, δ, C, n, σ", async () => {
    const out = path.join(tmp, "dp");
    const config = parseConfig(tinyConfig(out, { dp: { enabled: true, epsilon: 2, delta: 1e-5, clip_norm: 1 }, filter: { few_shot: 0, keep_per_class: 4 } }), tmp, "cfg");
    await synthesize(config);
    const report = JSON.parse(fs.readFileSync(path.join(out, "report.json"), "utf8"));
    expect(report.dp).toEqual(expect.objectContaining({ epsilon: 2, delta: 1e-5, clip_norm: 1 }));
    expect(report.dp.per_class[0]).toEqual(expect.objectContaining({ n: 6, sigma: expect.any(Number), mechanism: "analytic" }));
    const everything = fs.readdirSync(out).map((f) => fs.readFileSync(path.join(out, f), "utf8")).join("\n");
    const privateTexts = fs.readFileSync(path.join(root, "examples", "data", "imdb", "train.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l).text as string);
    for (const t of privateTexts) expect(everything.includes(t.slice(0, 40))).toBe(false);
  });

  // The whole pipeline (target, init, x-updates, projections, the prompt's decode, the filter's forwards) through the
  // backend-table executor that a GPU runs, here with CPU ops: the same bytes as the CPU engine.
  it.skipIf(!native().backendInfo().compiled)("gives the same bytes through the device path (GRADMM_BACKEND=cpu-table)", () => {
    const cli = path.join(root, "dist", "ts", "cli.js");
    const outputs: Record<string, string> = {};
    for (const backend of ["cpu", "cpu-table"]) {
      outputs[backend] = path.join(tmp, `backend-${backend}`);
      writeYaml(path.join(tmp, `backend-${backend}.yaml`), tinyConfig(outputs[backend]));
      const r = spawnSync(process.execPath, [cli, "synth", path.join(tmp, `backend-${backend}.yaml`), "--no-progress"], {
        encoding: "utf8",
        env: { ...process.env, GRADMM_BACKEND: backend },
      });
      expect(r.status, r.stderr).toBe(0);
    }
    for (const f of ["synthetic.jsonl", "filtered.jsonl"])
      expect(fs.readFileSync(path.join(outputs["cpu-table"], f)).equals(fs.readFileSync(path.join(outputs.cpu, f))), f).toBe(true);
  });

  it("resumes a killed CLI run to the same bytes as an uninterrupted run", async () => {
    const cli = path.join(root, "dist", "ts", "cli.js");
    expect(fs.existsSync(cli), "dist/ is built by npm ci (prepare)").toBe(true);
    const full = path.join(tmp, "full"), killed = path.join(tmp, "killed");
    const slow = { method: { batch_size: 3, batches_per_class: 3, length: 6, outer_steps: 6, inner_steps: 40, top_k: 20, init_candidates: 4 } };
    writeYaml(path.join(tmp, "full.yaml"), tinyConfig(full, slow));
    writeYaml(path.join(tmp, "killed.yaml"), tinyConfig(killed, slow));
    const ok = spawnSync(process.execPath, [cli, "synth", path.join(tmp, "full.yaml"), "--no-progress"], { encoding: "utf8" });
    expect(ok.status, ok.stderr).toBe(0);
    // start the second run, kill it once a batch is checkpointed
    const child = spawn(process.execPath, [cli, "synth", path.join(tmp, "killed.yaml"), "--no-progress"], { stdio: "ignore" });
    const ckpt = path.join(killed, "checkpoint.json");
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        if (fs.existsSync(ckpt)) {
          clearInterval(timer);
          child.kill("SIGKILL");
          resolve();
        }
      }, 20);
      child.on("exit", () => {
        clearInterval(timer);
        reject(new Error("the run finished before it could be killed"));
      });
    });
    await new Promise((r) => child.on("exit", r));
    expect(fs.existsSync(path.join(killed, "synthetic.jsonl"))).toBe(false);
    const resumed = spawnSync(process.execPath, [cli, "synth", path.join(tmp, "killed.yaml"), "--resume", "--no-progress"], { encoding: "utf8" });
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/resuming: [1-5] batches already done/);
    for (const f of ["synthetic.jsonl", "filtered.jsonl"]) expect(fs.readFileSync(path.join(killed, f)).equals(fs.readFileSync(path.join(full, f))), f).toBe(true);
  });
});
