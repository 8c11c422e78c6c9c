// Runs the method's native inner-loop calls (buildTarget, initCandidates, matchLoss, xUpdate, project) on the tiny GPT-2 fixture and prints every result
// as JSON. test/device_path.test.ts runs it under GRADMM_BACKEND=cpu (the CPU engine) and GRADMM_BACKEND=cpu-table
// (the backend-table executor that CUDA uses, here with CPU ops) and compares the two.
const path = require("node:path");
const root = path.join(__dirname, "..", "..");
const { CausalLMModel, mulberry32 } = require(path.join(root, "dist", "ts", "model.js"));
const { native } = require(path.join(root, "dist", "ts", "native.js"));

(async () => {
  const model = CausalLMModel.load(path.join(root, "test", "fixtures", "gpt2_tiny"));
  const nat = model.native;
  const V = model.config.vocabSize, C = model.config.channels;
  const rng = mulberry32(11);
  const out = { backend: native().backendInfo().chosen };
  const n = 5, T = 9, B = 3, L = 7, free = 5;
  const target = async (noiseStd) => {
    const tokens = Int32Array.from({ length: n * T }, () => Math.floor(rng() * V));
    const lastPos = Int32Array.from({ length: n }, (_, i) => T - 1 - (i % 3));
    const labels = Int32Array.from({ length: n }, (_, i) => 7 + (i % 2));
    return nat.buildTarget({ tokens, n, T, lastPos, labels, clipNorm: noiseStd ? 1 : 0, noiseStd, noiseSeed: 5 });
  };
  const randn = (len, s) => Float32Array.from({ length: len }, () => (rng() - 0.5) * s);
  const t1 = await target(0), t2 = await target(0.01);
  out.targetNorms = [t1.norm, t2.norm];
  out.exampleNorms = [...Array.from(t1.exampleNorms()), ...Array.from(t2.exampleNorms())];
  const X = randn(B * L * C, 0.2), dX = new Float32Array(B * L * C), perSample = new Float32Array(B);
  out.f1 = await nat.matchLoss(t1, { X, B, L, label: 7, dX, perSample });
  out.dX1 = Array.from(dX);
  out.perSample1 = Array.from(perSample);
  const Xinit = new Float32Array(B * L * C);
  out.init = await nat.initCandidates(t2, { X: Xinit, templateEmbeds: randn((L - free) * C, 0.3), B, L, freeLen: free, label: 8, candidates: 6, seed: 3, tokenNorm: 1.4 });
  out.Xinit = Array.from(Xinit);
  const z = randn(B * L * C, 0.2), lam = randn(B * L * C, 0.01);
  const adamM = new Float32Array(B * L * C), adamV = new Float32Array(B * L * C), adamStep = new Int32Array(1);
  const losses = new Float32Array(4);
  const step = (t) => nat.xUpdate(t, { X, z, lam, adamM, adamV, adamStep, losses, B, L, freeLen: free, label: 8, steps: 4, rho: 0.1, lr: 0.01, maxGradNorm: 1 });
  out.x1 = await step(t1);
  out.losses1 = Array.from(losses);
  out.x2 = await step(t2); // another target (with DP noise): the device copy of the target is replaced
  out.losses2 = Array.from(losses);
  out.x3 = await step(t1); // and back
  out.X = Array.from(X);
  out.adam = [Array.from(adamM), Array.from(adamV), adamStep[0]];
  // the projection: KV-cached decoding continuing a shared prompt, top-k by cosine, the LM's choice
  const prompt = Int32Array.from({ length: 6 }, () => Math.floor(rng() * V));
  const prefix = model.createKVCache(1, prompt.length);
  const prefixLogits = await model.decode(prefix, { tokens: prompt, T: prompt.length });
  const allowed = Uint8Array.from({ length: V }, (_, v) => (v % 5 === 0 ? 0 : 1));
  const outTokens = new Int32Array(B * free);
  for (const topk of [1, 7, V]) {
    await nat.project({ U: X, B, L, freeLen: free, allowed, topk, prefix: prefix.handle, prefixLogits, outTokens });
    out[`project${topk}`] = Array.from(outTokens);
  }
  // weights written from JavaScript: the device copy must follow
  const w = model.tensor("h.0.mlp.c_fc.weight");
  for (let i = 0; i < w.length; i += 3) w[i] *= 1.5;
  model.markParamsChanged();
  out.f2 = await nat.matchLoss(t1, { X, B, L, label: 7, dX, perSample });
  out.dX2 = Array.from(dX);
  process.stdout.write(JSON.stringify(out));
  model.dispose();
})().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e));
  process.exit(1);
});
