// precision float32 | bf16 | auto (issue #22): the model API, the matching loss and its x-gradient on the bf16
// products, the config key, the CLI's --precision and doctor, and the typed error where bf16 cannot run
// (GRADMM_BF16=off stands in for a CPU without AVX512_BF16).
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError, PrecisionError } from "../ts/errors";
import { applyOverrides, loadConfigFile, parseConfig } from "../ts/gradmm/config";
import { loadModel } from "../ts/load_model";
import { backendInfo, bf16Support, resolvePrecision } from "../ts/threads";

const root = path.join(__dirname, "..");
const defaultModel = path.join(root, "models", "default");
const cli = path.join(root, "dist", "ts", "cli.js");
const hasBf16 = bf16Support().available;
const saved = process.env.GRADMM_BF16;
afterEach(() => {
  if (saved === undefined) delete process.env.GRADMM_BF16;
  else process.env.GRADMM_BF16 = saved;
});

function cos(a: Float32Array, b: Float32Array): number {
  let d = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) (d += a[i] * b[i]), (na += a[i] * a[i]), (nb += b[i] * b[i]);
  return d / Math.sqrt(na * nb);
}

describe("bf16 support and resolution", () => {
  it("backendInfo reports bf16; bf16Support agrees with it", () => {
    const b = backendInfo();
    expect(typeof b.bf16.available).toBe("boolean");
    expect(typeof b.bf16.native).toBe("boolean");
    const s = bf16Support();
    expect(s.available).toBe(b.bf16.available && b.bf16.native);
    if (s.available) expect(s.kernel).toMatch(/^(amx-bf16|avx512bf16)$/);
    else expect(s.missing).toMatch(/AVX512_BF16|backend/);
  });

  it("float32 by default, auto follows the CPU, bf16 where it cannot run is a PrecisionError naming the field", () => {
    expect(resolvePrecision(undefined)).toBe("float32");
    expect(resolvePrecision("float32")).toBe("float32");
    expect(resolvePrecision("auto")).toBe(hasBf16 ? "bf16" : "float32");
    process.env.GRADMM_BF16 = "off";
    expect(resolvePrecision("auto")).toBe("float32");
    let err: unknown;
    try {
      resolvePrecision("bf16", "--precision");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PrecisionError);
    expect((err as PrecisionError).code).toBe("PRECISION_UNSUPPORTED");
    expect((err as PrecisionError).field).toBe("--precision");
    expect((err as PrecisionError).message).toMatch(/^--precision: bf16 was requested, but .*GRADMM_BF16=off/);
  });

  it("loadModel refuses bf16 before reading the model where bf16 cannot run", () => {
    process.env.GRADMM_BF16 = "off";
    expect(() => loadModel(path.join(root, "no-such-model"), { precision: "bf16" })).toThrow(PrecisionError);
    const m = loadModel(defaultModel, { precision: "auto" });
    expect(m.model.precision).toBe("float32");
    m.dispose();
  });
});

describe.skipIf(!hasBf16)("a model in bf16 (this CPU has AVX512_BF16)", () => {
  it("logits close to float32's, and float32 again gives the float32 bits", async () => {
    const { model } = loadModel(defaultModel);
    const V = model.config.vocabSize, T = 24, B = 2;
    const tokens = new Int32Array(B * T).map((_, i) => (i * 37 + 11) % V);
    expect(model.precision).toBe("float32");
    await model.forward({ tokens, B, T, allLogits: true });
    const f32 = model.logits().slice();
    expect(model.setPrecision("bf16")).toBe("bf16");
    expect(model.precisionInfo().kernel).toMatch(/^(amx-bf16|avx512bf16)$/);
    await model.forward({ tokens, B, T, allLogits: true });
    const bf = model.logits().slice();
    const perParam = model.precisionInfo().bf16Bytes / model.numParams; // the forward's packed copies: ~2 bytes each
    expect(perParam).toBeGreaterThan(1.5);
    expect(perParam).toBeLessThan(3);
    expect(bf).not.toEqual(f32);
    expect(cos(bf, f32)).toBeGreaterThan(0.999);
    model.setPrecision("float32");
    await model.forward({ tokens, B, T, allLogits: true });
    expect(Buffer.from(model.logits().buffer, model.logits().byteOffset, f32.byteLength).equals(Buffer.from(f32.buffer))).toBe(true);
    model.dispose();
  });

  it("the matching loss and its x-gradient in bf16 are close to float32's (GPT-2 products)", async () => {
    const { model } = loadModel(defaultModel, { precision: "float32" });
    const V = model.config.vocabSize, C = model.config.channels, n = 6, T = 20, B = 3, L = 12;
    const tokens = new Int32Array(n * T).map((_, i) => (i * 53 + 7) % V);
    const lastPos = new Int32Array(n).fill(T - 1);
    const labels = new Int32Array(n).map((_, i) => (i * 97 + 5) % V);
    const X = new Float32Array(B * L * C).map((_, i) => Math.sin(i * 0.37) * 0.3);
    const run = async () => {
      const target = await model.native.buildTarget({ tokens, n, T, lastPos, labels });
      const dX = new Float32Array(X.length);
      const f = await model.native.matchLoss(target, { X, B, L, label: labels[0], dX });
      return { f, dX };
    };
    const a = await run();
    model.setPrecision("bf16");
    const b = await run();
    expect(Math.abs(b.f - a.f)).toBeLessThan(0.02 * Math.abs(a.f) + 1e-4);
    expect(cos(a.dX, b.dX)).toBeGreaterThan(0.99);
    model.dispose();
  });
});

describe("the precision setting", () => {
  it("config: float32 by default; bf16 and auto accepted; anything else names the field", () => {
    const base = { data: { path: "d.jsonl" }, classes: [{ label: 0, label_word: " bad", instruction: "Negative:" }, { label: 1, label_word: " good", instruction: "Positive:" }] };
    expect(parseConfig(base, "/tmp").precision).toBe("float32");
    expect(parseConfig({ ...base, precision: "bf16" }, "/tmp").precision).toBe("bf16");
    expect(parseConfig({ ...base, precision: "auto" }, "/tmp").precision).toBe("auto");
    expect(() => parseConfig({ ...base, precision: "fp16" }, "/tmp")).toThrow(ConfigError);
    try {
      parseConfig({ ...base, precision: "fp16" }, "/tmp");
    } catch (e) {
      expect((e as ConfigError).issues[0].field).toBe("precision");
    }
    const c = applyOverrides(parseConfig(base, "/tmp"), { precision: "auto" });
    expect(c.precision).toBe("auto");
    expect(c.resolved.precisionField).toBe("--precision");
  });

  it.skipIf(!fs.existsSync(cli))("CLI: --precision bf16 where it cannot run exits 3 with the typed error; a bad value is a usage error; doctor reports bf16", () => {
    const env = { ...process.env, GRADMM_BACKEND: "cpu", GRADMM_BF16: "off" };
    const quick = path.join(root, "examples", "quick.yaml");
    const out = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-precision-"));
    const r = spawnSync(process.execPath, [cli, "synth", quick, "-o", out, "--precision", "bf16", "--dry-run"], { encoding: "utf8", env, timeout: 120_000 });
    expect(r.status, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/PrecisionError \[PRECISION_UNSUPPORTED\]: --precision: bf16 was requested, but bf16 is disabled by GRADMM_BF16=off/);
    const auto = spawnSync(process.execPath, [cli, "synth", quick, "-o", out, "--precision", "auto", "--dry-run"], { encoding: "utf8", env, timeout: 120_000 });
    expect(auto.status, auto.stderr).toBe(0);
    const bad = spawnSync(process.execPath, [cli, "synth", quick, "--precision", "fp8", "--dry-run"], { encoding: "utf8", env, timeout: 60_000 });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--precision expects float32, bf16 or auto/);
    const d = spawnSync(process.execPath, [cli, "doctor"], { encoding: "utf8", env: { ...process.env, GRADMM_BACKEND: "cpu" }, timeout: 60_000 });
    const info = JSON.parse(d.stdout);
    expect(info.bf16.available).toBe(hasBf16);
    expect(info.precision_auto).toBe(hasBf16 ? "bf16" : "float32");
    expect(typeof info.bf16.cpu_avx512bf16).toBe("boolean");
    fs.rmSync(out, { recursive: true, force: true });
  });

  it("a config file's precision: bf16 where it cannot run names the file and line", async () => {
    process.env.GRADMM_BF16 = "off";
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-precision-"));
    const quick = fs.readFileSync(path.join(root, "examples", "quick.yaml"), "utf8");
    const file = path.join(root, "examples", `.precision-test-${process.pid}.yaml`);
    fs.writeFileSync(file, quick + "\nprecision: bf16\n");
    try {
      const config = applyOverrides(loadConfigFile(file), { output: dir });
      const { validateRun } = await import("../ts/gradmm/synthesize");
      await expect(validateRun(config, {})).rejects.toThrow(/^precision \(.*\.precision-test-\d+\.yaml, line \d+\): bf16 was requested/);
    } finally {
      fs.rmSync(file, { force: true });
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
