// Runs the standalone C++ engine checks (finite-difference gradient checks of every op, float vs double, SGEMM for
// every kernel and transpose, determinism across thread counts, KV cache) and asserts every one passed.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";

const binary = path.join(__dirname, "..", "build", "engine_tests");

describe("native engine checks (binding/tests/engine_tests.cpp)", () => {
  it("builds with the addon", () => {
    expect(fs.existsSync(binary)).toBe(true);
  });

  it("every op passes its gradient and reference checks", () => {
    const run = spawnSync(binary, { encoding: "utf8", timeout: 120_000 });
    const out = run.stdout;
    const failures = out.split("\n").filter((l) => l.startsWith("FAIL"));
    expect(failures, out).toEqual([]);
    const summary = /^(\d+) passed, (\d+) failed$/m.exec(out);
    expect(summary, out).not.toBeNull();
    expect(Number(summary![2])).toBe(0);
    // the op set this file must cover: one finite-difference check per op backward
    for (const op of ["embedding", "input_embedding", "layernorm", "matmul", "attention", "gelu", "residual", "softmax_crossentropy"])
      expect(out).toMatch(new RegExp(`^PASS ${op}_backward .*\\(fd\\)`, "m"));
    expect(out).toMatch(/^PASS KV cache/m);
    expect(out).toMatch(/^PASS model forward\+backward bit-identical/m);
    expect(run.status).toBe(0);
  });
});

// The AVX-512 kernel on SIMDe's emulation (built only where libsimde-dev is installed: not in CI). Here it is the
// default kernel, so every check above runs on it too.
const emulated = path.join(__dirname, "..", "build", "engine_tests_avx512_emulated");
describe.skipIf(!fs.existsSync(emulated))("native engine checks with the AVX-512 kernel emulated (SIMDe)", () => {
  it("passes every check with the AVX-512 kernel chosen", () => {
    const run = spawnSync(emulated, { encoding: "utf8", timeout: 300_000 });
    const out = run.stdout ?? "";
    expect(out).toMatch(/^sgemm kernel: avx512/m);
    expect(out.split("\n").filter((l) => l.startsWith("FAIL")), out).toEqual([]);
    expect(out).toMatch(/^PASS sgemm avx512 37x300x513 At Bt \+=/m);
    expect(out).toMatch(/^PASS model forward\+backward bit-identical/m);
    expect(/^(\d+) passed, 0 failed$/m.test(out), out).toBe(true);
    expect(run.status).toBe(0);
  });
});

describe("native Llama checks (binding/tests/llama_tests.cpp)", () => {
  it("every Llama op and the model pass their gradient and reference checks", () => {
    const run = spawnSync(path.join(__dirname, "..", "build", "llama_tests"), { encoding: "utf8", timeout: 120_000 });
    const out = run.stdout ?? "";
    expect(out.split("\n").filter((l) => l.startsWith("FAIL")), out).toEqual([]);
    const summary = /^(\d+) passed, (\d+) failed$/m.exec(out);
    expect(summary, out).not.toBeNull();
    expect(Number(summary![2])).toBe(0);
    for (const op of ["rmsnorm", "rope", "swiglu", "gqa_attention", "linear"]) expect(out).toMatch(new RegExp(`^PASS ${op}_backward .*\\(fd`, "m"));
    expect(out).toMatch(/^PASS llama KV cache/m);
    expect(out).toMatch(/^PASS llama bf16 d_embeds vs f32 \(tied\)/m);
    expect(run.status).toBe(0);
  });
});

// The bf16 GEMM (binding/tests/gemm_bf16_tests.cpp): rounding, the portable kernel against the documented arithmetic,
// the AVX512_BF16 kernel bit for bit against it where the CPU has it.
describe("native bf16 GEMM checks (binding/tests/gemm_bf16_tests.cpp)", () => {
  it("the bf16 kernels pass their reference checks", () => {
    const run = spawnSync(path.join(__dirname, "..", "build", "gemm_bf16_tests"), { encoding: "utf8", timeout: 120_000 });
    const out = run.stdout ?? "";
    expect(out.split("\n").filter((l) => l.startsWith("FAIL")), out).toEqual([]);
    expect(out).toMatch(/^PASS f32_to_bf16 round to nearest even/m);
    expect(out).toMatch(/^PASS gemm_bf16 scalar = reference bits 37x300x513 At Bt \+=/m);
    if (/^avx512bf16 kernel: yes/m.test(out)) expect(out).toMatch(/^PASS gemm_bf16 avx512bf16 = scalar bits 37x300x513 At Bt \+=/m);
    if (/^amx-bf16 kernel: yes/m.test(out)) expect(out).toMatch(/^PASS gemm_bf16 amx-bf16 ~ reference and double 37x300x513 At Bt \+=/m);
    expect(/^(\d+) passed, 0 failed$/m.test(out), out).toBe(true);
    expect(run.status).toBe(0);
  });
});

const emulatedBf16 = path.join(__dirname, "..", "build", "gemm_bf16_tests_emulated");
describe.skipIf(!fs.existsSync(emulatedBf16))("bf16 GEMM checks with the AVX512_BF16 kernel emulated (SIMDe)", () => {
  it("passes every check with the emulated kernel", () => {
    const run = spawnSync(emulatedBf16, { encoding: "utf8", timeout: 300_000 });
    const out = run.stdout ?? "";
    expect(out).toMatch(/^avx512bf16 kernel: emulated/m);
    expect(out.split("\n").filter((l) => l.startsWith("FAIL")), out).toEqual([]);
    expect(/^(\d+) passed, 0 failed$/m.test(out), out).toBe(true);
    expect(run.status).toBe(0);
  });
});

describe("native Phi and lm_head-bias matching checks (binding/tests/phi_tests.cpp)", () => {
  it("partial rotary, the Phi model's gradients and the matching loss with an lm_head bias pass their checks", () => {
    const run = spawnSync(path.join(__dirname, "..", "build", "phi_tests"), { encoding: "utf8", timeout: 120_000 });
    const out = run.stdout ?? "";
    expect(out.split("\n").filter((l) => l.startsWith("FAIL")), out).toEqual([]);
    const summary = /^(\d+) passed, (\d+) failed$/m.exec(out);
    expect(summary, out).not.toBeNull();
    expect(Number(summary![2])).toBe(0);
    expect(out).toMatch(/^PASS partial rotary backward \(fd/m);
    expect(out).toMatch(/^PASS phi lm_head bias gradient vs finite differences/m);
    expect(out).toMatch(/^PASS match_loss with lm_head bias = mean over \(W, b\)/m);
    expect(out).toMatch(/^PASS match_loss dX with lm_head bias vs finite differences \(DP clip\+noise\)/m);
    // method.target_rows label_words with a bias: explicit restricted tensors, noise placement, finite differences
    expect(out).toMatch(/^PASS DP noise only on the label rows/m);
    expect(out).toMatch(/^PASS match_loss restricted to label rows = explicit mean over \(W, b\) \(label rows, DP clip\+noise\)/m);
    expect(out).toMatch(/^PASS match_loss dX restricted to label rows vs finite differences \(label rows, DP clip\+noise\)/m);
    expect(run.status).toBe(0);
  });
});
