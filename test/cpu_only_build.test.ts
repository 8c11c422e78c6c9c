// The addon must build and work without CUDA (machines without nvcc, or `GRADMM_CUDA=OFF npm ci`). CI machines have
// nvcc, so the regular build never compiles the CPU-only variant: this test configures and builds it with plain CMake
// in a temp folder (the same CMakeLists that cmake-js uses, with the N-API headers cmake-js would pass) and loads it.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";

const root = path.join(__dirname, "..");

describe("CPU-only build (GRADMM_CUDA=OFF)", () => {
  it("compiles the addon without CUDA, loads it, and its engine runs", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-cpu-only-"));
    try {
      const headers = path.join(root, "node_modules", "node-api-headers", "include");
      const configure = spawnSync("cmake", ["-S", path.join(root, "binding"), "-B", dir, "-DCMAKE_BUILD_TYPE=Release",
        "-DGRADMM_CUDA=OFF", `-DCMAKE_JS_INC=${headers}`, `-DCMAKE_LIBRARY_OUTPUT_DIRECTORY=${path.join(dir, "Release")}`],
        { encoding: "utf8", cwd: root, env: { ...process.env, GRADMM_CUDA: "" } });
      expect(configure.status, configure.stdout + configure.stderr).toBe(0);
      expect(configure.stdout).toMatch(/building the CPU engine only/);
      const build = spawnSync("cmake", ["--build", dir, "--target", "gradmm_addon", "-j", String(os.cpus().length)],
        { encoding: "utf8", cwd: root });
      expect(build.status, (build.stdout + build.stderr).slice(-4000)).toBe(0);
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const addon = require(path.join(dir, "Release", "gradmm.node"));
      const info = addon.backendInfo();
      expect(info.build.cuda).toBe(false);
      expect(info.chosen).toBe("cpu");
      // a product through the CPU engine of this build: [[1,2],[3,4]]·[[5,6],[7,8]] = [[19,22],[43,50]]
      const c = new Float32Array(4);
      addon.sgemm(false, false, 2, 2, 2, Float32Array.of(1, 2, 3, 4), 2, Float32Array.of(5, 6, 7, 8), 2, c, 2, false);
      expect(Array.from(c)).toEqual([19, 22, 43, 50]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 600_000);
});
