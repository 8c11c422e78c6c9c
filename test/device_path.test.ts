/**
 * The device path: with a CUDA device, every model call of a GPT-2 or Llama-family model (forward, backward,
 * adamwStep, decode, the method's buildTarget/matchLoss/project and a batch's init/xUpdate/project/zLoss/dualUpdate)
 * runs on the one engine (binding/engine) with weights, activations, KV caches, gradients, Adam moments, the target
 * and the ADMM state on the GPU, and the host holding a mirror. GRADMM_BACKEND=cpu-table runs the same engine on the
 * CPU ops behind device-style memory, so the mirror's wiring (uploads, downloads, which copy is newer, target
 * switches, stale-weight refresh) is tested here without a GPU: results must equal the engine on host memory.
 */
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { native } from "../ts/native";

const script = path.join(__dirname, "helpers", "device_path.cjs");
const run = (backend: string, model: string) => {
  const r = spawnSync(process.execPath, [script, model], { encoding: "utf8", env: { ...process.env, GRADMM_BACKEND: backend }, timeout: 120_000, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`device_path.cjs ${model} under GRADMM_BACKEND=${backend} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
};

const keys = ["targetNorms", "exampleNorms", "init", "Xinit", "f1", "dX1", "perSample1", "x1", "losses1", "x2", "losses2", "x3", "X", "adam", "project1", "project7", "projectAll", "batch", "f2", "dX2"];
// forward / backward / adamwStep / decode called directly (device_path.cjs direct()), then the method on the trained weights
const directKeys = ["fwdMask", "fwdMaskRows", "fwdMaskLogits", "fwdMaskHidden", "grads1", "grads2", "fwdAll", "fwdAllRows", "fwdAllLogits", "fwdNone", "fwdEmb", "dEmbeds", "fwdEmbHidden", "train", "trainedParams", "clippedGrads", "moments", "resumedParams", "dec", "f3", "dX3", "project7Trained"];

describe("every model call through the engine's host mirror (GRADMM_BACKEND=cpu-table)", () => {
  // gpt2: the tiny GPT-2 fixture. qwen2: grouped-query attention (6 heads, 2 kv heads), q/k/v biases, untied lm_head,
  // llama3 RoPE. llama-tied: one kv head, head_dim ≠ channels / heads, biases on every projection, tied lm_head.
  // phi: parallel attention/MLP behind one LayerNorm, partial rotary, an lm_head bias (the matcher's bias term).
  // gemma3: the scaled token lookup (the z-update's and init's rows too), (1 + w) norms, per-head q/k norms, GeGLU,
  // a sliding-window layer (window 3, shorter than the sequences) beside a full one.
  it.each(["gpt2", "qwen2", "llama-tied", "phi", "gemma3"])("%s: equals the CPU engine bit for bit, across target switches and weight changes", (model) => {
    const cpu = run("cpu", model);
    const table = run("cpu-table", model);
    expect(cpu.backend).toBe("cpu");
    expect(table.backend).toBe("cpu-table");
    for (const key of [...keys, ...directKeys]) expect(table[key], key).toEqual(cpu[key]);
    expect(cpu.f2).not.toEqual(cpu.f1); // the weight change mattered, so the refresh was tested
    expect(cpu.project1).not.toEqual(cpu.projectAll); // the LM's choice among the top-k mattered
    const norms = cpu.targetNorms as number[];
    expect(norms[0]).not.toEqual(norms[1]); // with and without DP noise
    expect((cpu.losses1 as number[]).every(Number.isFinite)).toBe(true);
    // the direct calls: training ran on the executor's copy (the host's lagged until read), and each case mattered
    expect(table.hostCopyBehind).toBe(true);
    expect(cpu.hostCopyBehind).toBe(false);
    expect(cpu.grads2).not.toEqual(cpu.grads1);
    expect(cpu.resumedParams).not.toEqual(cpu.trainedParams);
    expect(cpu.fwdNone).toBeNull(); // NaN: no row selected
    expect(cpu.f3).not.toEqual(cpu.f2);
    expect((cpu.train as number[]).every(Number.isFinite)).toBe(true);
    for (const r of [cpu, table]) expect([r.xUpdateAborted, r.buildTargetAborted]).toEqual(["ABORTED", "ABORTED"]);
  });
});
