// The native loaders' fuzz target (binding/fuzz/fuzz_loaders.cpp: GGUF dequantization of every type, the F16/BF16
// conversions tensors stream through) under AddressSanitizer and UBSan, over the committed corpus
// (binding/fuzz/corpus) plus seeded mutations for a bounded time. Built with libFuzzer where clang has it, else as the
// plain driver with the C++ compiler there is; skipped with a message when there is none.
// GRADMM_FUZZ_NATIVE_SECONDS sets the time (CI: 15 s); `npm run fuzz` runs it longer.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";

const root = path.join(__dirname, "..");
const src = path.join(root, "binding", "fuzz", "fuzz_loaders.cpp");
const quants = path.join(root, "binding", "src", "gguf_quants.cpp");
const corpus = path.join(root, "binding", "fuzz", "corpus");
const seconds = Number(process.env.GRADMM_FUZZ_NATIVE_SECONDS ?? 15);
const env = { ...process.env, ASAN_OPTIONS: "detect_leaks=0:abort_on_error=1", UBSAN_OPTIONS: "halt_on_error=1:print_stacktrace=1" };

function has(cmd: string): boolean {
  return spawnSync(cmd, ["--version"], { encoding: "utf8" }).status === 0;
}

/** Builds the target: [binary, "libfuzzer" | "driver"] or null with the reason. */
function build(dir: string): { bin: string; kind: "libfuzzer" | "driver" } | { reason: string } {
  const common = ["-std=c++17", "-O1", "-g", `-I${path.join(root, "binding", "src")}`, src, quants];
  if (has("clang++")) {
    const bin = path.join(dir, "fuzz_loaders_libfuzzer");
    const r = spawnSync("clang++", [...common, "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=undefined", "-o", bin], { encoding: "utf8" });
    if (r.status === 0) return { bin, kind: "libfuzzer" };
  }
  for (const cxx of [process.env.CXX, "clang++", "g++", "c++"].filter(Boolean) as string[]) {
    if (!has(cxx)) continue;
    const bin = path.join(dir, "fuzz_loaders_driver");
    for (const san of [["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"], []]) {
      const r = spawnSync(cxx, [...common, "-DGRADMM_FUZZ_DRIVER", ...san, "-o", bin], { encoding: "utf8" });
      if (r.status === 0) return { bin, kind: "driver" };
    }
  }
  return { reason: "no C++ compiler (clang++, g++ or c++) could build binding/fuzz/fuzz_loaders.cpp" };
}

describe("native loaders fuzz target", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-nfuzz-"));
  const built = build(dir);
  if ("reason" in built) {
    it.skip(`skipped: ${built.reason}`, () => {});
    return;
  }

  it(
    `runs the committed corpus and ${seconds} s of mutations (${built.kind}) with no sanitizer finding`,
    () => {
      let inputs: number;
      if (built.kind === "libfuzzer") {
        const work = path.join(dir, "work"); // new inputs go here; the committed corpus is only read
        fs.mkdirSync(work);
        const r = spawnSync(built.bin, [`-max_total_time=${Math.ceil(seconds)}`, "-max_len=4096", "-seed=20", "-print_final_stats=1", work, corpus], { encoding: "utf8", env });
        expect(r.status, r.stderr.slice(-4000)).toBe(0);
        inputs = Number(/stat::number_of_executed_units:\s*(\d+)/.exec(r.stderr)?.[1] ?? 0);
      } else {
        const r = spawnSync(built.bin, [corpus, String(seconds), "20"], { encoding: "utf8", env });
        expect(r.status, r.stderr.slice(-4000)).toBe(0);
        inputs = Number(/inputs: (\d+)/.exec(r.stdout)?.[1] ?? 0);
      }
      process.stderr.write(`native fuzz (${built.kind}): ${inputs} inputs in ${seconds} s\n`);
      if (process.env.GRADMM_FUZZ_REPORT && fs.existsSync(process.env.GRADMM_FUZZ_REPORT)) {
        const rep = JSON.parse(fs.readFileSync(process.env.GRADMM_FUZZ_REPORT, "utf8"));
        rep.native = { kind: built.kind, seconds, inputs };
        fs.writeFileSync(process.env.GRADMM_FUZZ_REPORT, JSON.stringify(rep, null, 2) + "\n");
      }
      expect(inputs).toBeGreaterThan(fs.readdirSync(corpus).length);
      fs.rmSync(dir, { recursive: true, force: true });
    },
    (seconds + 120) * 1000,
  );
});
