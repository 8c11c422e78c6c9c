// Byte-identical synthetic.jsonl across engine changes: synth runs of examples/quick.yaml (the shipped GPT-2), a
// Llama-family test model (qwen2_tiny.gguf) and SmolLM2-135M-Instruct (where cached) against committed golden files
// (test/fixtures/golden/*.synthetic.jsonl, made before the one-engine change). Regenerate with GRADMM_GOLDEN=write.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { smollm2GGUF } from "./helpers/real_model";

const dir = path.join(__dirname, "fixtures", "golden");
const cli = path.join(__dirname, "..", "dist", "ts", "cli.js");

function synth(name: string): string {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `gradmm-golden-${name}-`));
  try {
    const cfg = fs.readFileSync(path.join(dir, `${name}.yaml`), "utf8").replace(/^output: .*$/m, `output: ${JSON.stringify(path.join(tmp, "out"))}`);
    const file = path.join(dir, `.${name}.run.yaml`);
    fs.writeFileSync(file, cfg);
    try {
      const r = spawnSync(process.execPath, [cli, "synth", file, "--no-progress"], { encoding: "utf8", timeout: 600_000 });
      if (r.status !== 0) throw new Error(`synth ${name} failed:\n${r.stderr}`);
    } finally {
      fs.rmSync(file, { force: true });
    }
    return fs.readFileSync(path.join(tmp, "out", "synthetic.jsonl"), "utf8");
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

function check(name: string): void {
  const got = synth(name);
  const golden = path.join(dir, `${name}.synthetic.jsonl`);
  if (process.env.GRADMM_GOLDEN === "write") fs.writeFileSync(golden, got);
  expect(got).toBe(fs.readFileSync(golden, "utf8"));
}

describe("synthetic.jsonl equals the golden files byte for byte", () => {
  it("examples/quick.yaml (GPT-2, the shipped model)", () => check("quick"), 600_000);
  it.skipIf(!smollm2GGUF())("SmolLM2-135M-Instruct", () => check("smollm2"), 600_000);
});
