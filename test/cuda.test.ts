// The CUDA backend's standalone checks (binding/cuda/tests/cuda_op_tests.cpp) and the addon's backend report.
// cuda_op_tests exists only when CMake found nvcc; without a GPU it still runs its host checks (the CPU backend
// table and the table-driven GPT-2 / x-update against the CPU engine) and prints "SKIP: no CUDA device".
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { backendInfo } from "../ts/index";
import { native } from "../ts/native";

const build = path.join(__dirname, "..", "build");
const candidates = [path.join(build, "cuda_op_tests"), path.join(build, "cuda", "cuda_op_tests"), path.join(build, "Release", "cuda_op_tests")];
const binary = candidates.find((f) => fs.existsSync(f));

describe("CUDA backend", () => {
  it.skipIf(!binary)("cuda_op_tests passes (or skips without a device)", () => {
    const run = spawnSync(binary!, { encoding: "utf8", timeout: 600_000 });
    const out = run.stdout ?? "";
    expect(run.error, out).toBeUndefined();
    const failures = out.split("\n").filter((l) => l.startsWith("FAIL"));
    expect(failures, out).toEqual([]);
    const summary = /^(\d+) passed, (\d+) failed$/m.exec(out);
    expect(summary !== null || /^SKIP: no CUDA device/m.test(out), out).toBe(true);
    if (summary) expect(Number(summary[2])).toBe(0);
    expect(run.status, out + (run.stderr ?? "")).toBe(0);
  }, 600_000);

  it.runIf(!binary)("cuda_op_tests is not built (no nvcc at build time, or GRADMM_CUDA=OFF): skipped", () => {
    console.log(`cuda_op_tests not found under ${build}: the CUDA backend was not built; skipping its checks`);
  });

  it("backendInfo() reports a consistent choice", () => {
    const b = backendInfo(); // the public API's
    expect(b).toEqual(native().backendInfo());
    // cpu-table only when asked for (GRADMM_BACKEND=cpu-table: the whole suite then runs the device path on the CPU)
    expect(process.env.GRADMM_BACKEND === "cpu-table" && b.compiled ? ["cpu-table"] : ["cpu", "cuda"]).toContain(b.chosen);
    expect(typeof b.reason).toBe("string");
    expect(b.reason.length).toBeGreaterThan(0);
    expect(b.build.cuda).toBe(b.compiled);
    if (b.chosen === "cuda") {
      expect(b.compiled).toBe(true);
      expect(b.devices.length).toBeGreaterThan(0);
    }
    for (const d of b.devices) {
      expect(typeof d.name).toBe("string");
      expect(d.memory).toBeGreaterThan(0);
      expect(d.computeCapability).toMatch(/^\d+\.\d+$/);
    }
    if (!b.compiled) expect(b.devices).toEqual([]);
  });

  // .ci/run unpacks the PyPI cuBLAS wheel and names it by GRADMM_CUBLAS_DIR before the build: where nvcc built the
  // CUDA backend, its cuBLAS path must then have been compiled and linked (build.cublas), not silently left out.
  it.runIf(!!process.env.GRADMM_CUBLAS_DIR && !!binary)("the CUDA backend was built with cuBLAS from GRADMM_CUBLAS_DIR", () => {
    const b = backendInfo();
    expect(b.build.cuda).toBe(true);
    expect(b.build.cublas, `GRADMM_CUBLAS_DIR=${process.env.GRADMM_CUBLAS_DIR}`).toBe(true);
  });
});
