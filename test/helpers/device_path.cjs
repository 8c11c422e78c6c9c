// Runs every native model call (the method's buildTarget, matchLoss, project, and a batch's init, xUpdate, project, zLoss,
// dualUpdate; then forward, backward, adamwStep and decode called directly, and the method again on the trained
// weights) on a tiny model and prints every result as JSON. test/device_path.test.ts runs it under
// GRADMM_BACKEND=cpu (the engine on host memory) and GRADMM_BACKEND=cpu-table (the same engine behind device-style
// memory: the host mirror and residency a GPU uses, here with CPU ops) and compares the two.
// argv[2] picks the model: "gpt2" (the tiny GPT-2 fixture), "qwen2" (a random tiny Llama-family model: grouped-query
// attention, biases on q/k/v, untied lm_head, llama3 RoPE) or "llama-tied" (one kv head, head_dim ≠ C/NH, biases on
// every projection, tied lm_head) or "phi" (Phi: parallel attention/MLP, partial rotary, lm_head bias) or "gemma3"
// (Gemma 3: scaled token lookup, (1 + w) sandwich and q/k norms, GeGLU, a sliding-window layer, linear rope scaling).
const path = require("node:path");
const { createHash } = require("node:crypto");
const root = path.join(__dirname, "..", "..");
const { CausalLMModel } = require(path.join(root, "dist", "ts", "model.js"));
const { mulberry32 } = require(path.join(root, "dist", "ts", "random.js"));
const { native } = require(path.join(root, "dist", "ts", "native.js"));

const llamaConfigs = {
  qwen2: {
    architecture: "llama", modelType: "qwen2", vocabSize: 173, maxSeqLen: 32, channels: 48, intermediateSize: 88, numLayers: 2,
    numHeads: 6, numKvHeads: 2, rmsNormEps: 1e-6, ropeTheta: 10000,
    ropeScaling: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 16 },
    tieWordEmbeddings: false, attentionBias: true, oProjBias: false, mlpBias: false,
  },
  "llama-tied": {
    architecture: "llama", modelType: "llama", vocabSize: 131, maxSeqLen: 32, channels: 40, intermediateSize: 72, numLayers: 2,
    numHeads: 4, numKvHeads: 1, headDim: 14, rmsNormEps: 1e-5, ropeTheta: 500000, ropeScaling: null,
    tieWordEmbeddings: true, attentionBias: true, oProjBias: true, mlpBias: true,
  },
  phi: {
    architecture: "phi", vocabSize: 151, maxSeqLen: 32, channels: 32, intermediateSize: 56, numLayers: 2, numHeads: 4,
    numKvHeads: 2, rotaryDim: 4, layerNormEps: 1e-5, ropeTheta: 10000, tieWordEmbeddings: false,
  },
  gemma3: {
    architecture: "gemma3", vocabSize: 149, maxSeqLen: 32, channels: 32, intermediateSize: 56, numLayers: 2, numHeads: 4,
    numKvHeads: 1, headDim: 12, rmsNormEps: 1e-6, ropeTheta: 1e6, ropeLocalTheta: 1e4, ropeScalingFactor: 1,
    ropeLocalScalingFactor: 2, slidingWindow: 3, layerTypes: ["sliding_attention", "full_attention"],
    queryPreAttnScalar: 12, tieWordEmbeddings: true,
  },
};

/** The model under test; `changed` names a tensor the weight-change step scales. */
function makeModel(kind) {
  if (kind === "gpt2") return { model: CausalLMModel.load(path.join(root, "test", "fixtures", "gpt2_tiny")), changed: "h.0.mlp.c_fc.weight" };
  const model = CausalLMModel.create(llamaConfigs[kind]);
  model.initRandom(21);
  // initRandom zeroes biases and sets norm weights to 1: give both random values so every term counts
  const rng = mulberry32(22);
  for (const p of model.paramTable) {
    if (!p.name.endsWith(".bias") && !p.name.endsWith("norm.weight")) continue;
    const t = model.tensor(p.name);
    for (let i = 0; i < t.length; i++) t[i] = p.name.endsWith(".bias") ? (rng() - 0.5) * 0.2 : 1 + (rng() - 0.5) * 0.4;
  }
  model.markParamsChanged();
  return { model, changed: kind === "phi" ? "model.layers.0.mlp.fc1.weight" : "model.layers.0.mlp.gate_proj.weight" };
}

/**
 * forward / backward / logits / hidden / adamwStep / decode called directly (on the device path they run on the
 * device copy, with parameters, gradients and moments copied back when read), with every option: weighted and
 * all-logits masks (masked rows with invalid targets), embeddings in, input gradients out, gradients written from
 * JavaScript, clipped steps, a restored checkpoint, KV caches continuing a prefix that grows, resets.
 */
async function direct(model, rng, out) {
  const V = model.config.vocabSize, C = model.config.channels;
  // large arrays are compared by a digest of their bytes (bit for bit), with their sum for a reader; whole under
  // GRADMM_DEVICE_PATH_FULL=1 (bench/gpu/addon_check.sh computes errors against the CPU engine from them)
  const big = (a) => {
    if (process.env.GRADMM_DEVICE_PATH_FULL === "1") return Array.from(a);
    const f = Float32Array.from(a);
    return { sha256: createHash("sha256").update(Buffer.from(f.buffer)).digest("hex"), n: f.length, sum: f.reduce((s, x) => s + x, 0) };
  };
  const B = 2, T = 6, BT = B * T;
  const ints = (n) => Int32Array.from({ length: n }, () => Math.floor(rng() * V));
  const randn = (len, s) => Float32Array.from({ length: len }, () => (rng() - 0.5) * s);
  const tokens = ints(BT), targets = ints(BT);
  const mask = Float32Array.from({ length: BT }, (_, i) => [0, 1, 0.5][i % 3]);
  out.fwdMask = await model.forward({ tokens, targets, lossMask: mask, B, T });
  out.fwdMaskRows = Array.from(model.selectedRows());
  out.fwdMaskLogits = big(model.logits());
  out.fwdMaskHidden = Array.from(model.hidden());
  model.zeroGrads();
  const R = out.fwdMaskRows.length;
  await model.backward({ dLogits: randn(R * V, 0.01), dHidden: randn(BT * C, 0.01) });
  out.grads1 = big(model.grads());
  // gradients written from JavaScript are accumulated into
  const g = model.grads();
  for (let i = 0; i < g.length; i += 7) g[i] = 0.25;
  model.markParamsChanged();
  await model.forward({ tokens, targets, B, T });
  await model.backward();
  out.grads2 = big(model.grads());
  // every position's logits; the masked rows' targets are invalid and must not be read
  const badTargets = Int32Array.from(targets, (t, i) => (mask[i] === 0 ? -100 : t));
  out.fwdAll = await model.forward({ tokens, targets: badTargets, lossMask: mask, allLogits: true, B, T });
  out.fwdAllRows = Array.from(model.selectedRows());
  out.fwdAllLogits = big(model.logits());
  // no row selected (the CPU engine answers), then embeddings in, no targets, the input gradient out (+=)
  out.fwdNone = await model.forward({ tokens, targets, lossMask: new Float32Array(BT), B, T });
  out.fwdEmb = await model.forward({ embeds: randn(BT * C, 0.5), B, T });
  const dEmbeds = randn(BT * C, 0.01);
  await model.backward({ fromLoss: false, dLogits: randn(BT * V, 0.01), paramGrads: false, dEmbeds });
  out.dEmbeds = Array.from(dEmbeds);
  out.fwdEmbHidden = Array.from(model.hidden());
  // training steps (the second one clipped), then a checkpoint restored into the moments and one more step
  out.train = [];
  const trainStep = async (step, maxGradNorm) => {
    model.zeroGrads();
    const loss = await model.forward({ tokens, targets, B, T });
    await model.backward();
    out.train.push(loss, await model.adamwStep({ lr: 1e-2, weightDecay: 0.1, maxGradNorm, step }));
  };
  for (const [step, clip] of [[1, 10], [2, 1e-3], [3, 0]]) await trainStep(step, clip);
  const hostCopy = big(model.native.params()); // the host's view, before syncHost()
  out.trainedParams = big(model.params);
  out.hostCopyBehind = hostCopy.sha256 !== out.trainedParams.sha256; // true where the steps ran on a device copy
  out.clippedGrads = big(model.grads());
  const { m, v } = model.adamMoments();
  out.moments = [big(m), big(v)];
  for (let i = 0; i < m.length; i++) (m[i] *= 0.5), (v[i] *= 2);
  await trainStep(4, 1);
  out.resumedParams = big(model.params);
  // decoding: a prefix, rows continuing it (tokens, embeddings, hidden states out), a reset, a prefix that grows
  const prefix = model.createKVCache(1, 8);
  out.dec = [Array.from(await model.decode(prefix, { tokens: ints(5), T: 5 }))];
  const rows = model.createKVCache(3, 6, prefix);
  const hidden = new Float32Array(3 * C);
  out.dec.push(Array.from(await model.decode(rows, { tokens: ints(6), T: 2 }, { hidden })), Array.from(hidden));
  out.dec.push(Array.from(await model.decode(rows, { embeds: randn(3 * C, 0.5), T: 1 })));
  rows.reset();
  out.dec.push(Array.from(await model.decode(rows, { tokens: ints(3), T: 1 })));
  await model.decode(prefix, { tokens: ints(1), T: 1 });
  out.dec.push(Array.from(await model.decode(rows, { tokens: ints(3), T: 1 })), rows.length, prefix.length);
}

(async () => {
  const kind = process.argv[2] || "gpt2";
  const { model, changed } = makeModel(kind);
  const nat = model.native;
  const V = model.config.vocabSize, C = model.config.channels;
  const rng = mulberry32(11);
  const out = { backend: native().backendInfo().chosen, model: kind };
  const n = 5, T = 9, B = 3, L = 7, free = 5;
  const target = async (noiseStd) => {
    const tokens = Int32Array.from({ length: n * T }, () => Math.floor(rng() * V));
    const lastPos = Int32Array.from({ length: n }, (_, i) => T - 1 - (i % 3));
    const labels = Int32Array.from({ length: n }, (_, i) => 7 + (i % 2));
    // the noisy target also runs its rows in chunks of 2 (chunkTokens 2·T): several forwards on both paths
    return nat.buildTarget({ tokens, n, T, lastPos, labels, clipNorm: noiseStd ? 1 : 0, noiseStd, noiseSeed: 5, chunkTokens: noiseStd ? 2 * T : undefined });
  };
  const randn = (len, s) => Float32Array.from({ length: len }, () => (rng() - 0.5) * s);
  const t1 = await target(0), t2 = await target(0.01);
  out.targetNorms = [t1.norm, t2.norm];
  out.exampleNorms = [...Array.from(t1.exampleNorms()), ...Array.from(t2.exampleNorms())];
  const X = randn(B * L * C, 0.2), dX = new Float32Array(B * L * C), perSample = new Float32Array(B);
  out.f1 = await nat.matchLoss(t1, { X, B, L, label: 7, dX, perSample });
  out.dX1 = Array.from(dX);
  out.perSample1 = Array.from(perSample);
  // a batch's state lives in the engine: init, x-updates (across a target switch), read back for the comparison
  const { Batch } = native();
  const templateTokens = Int32Array.from({ length: L - free }, (_, i) => 3 + i);
  const b0 = new Batch(nat, t2, { B, L, freeLen: free, label: 8, templateTokens });
  out.init = await b0.init({ candidates: 6, seed: 3, tokenNorm: 1.4 });
  out.Xinit = Array.from(b0.read("x"));
  const z = randn(B * L * C, 0.2), lam = randn(B * L * C, 0.01);
  const losses = new Float32Array(4);
  const b1 = new Batch(nat, t1, { B, L, freeLen: free, label: 8, templateTokens });
  const b2 = new Batch(nat, t2, { B, L, freeLen: free, label: 8, templateTokens });
  const move = (from, to) => { for (const w of ["x", "z", "lam", "m", "v"]) to.write(w, from.read(w)); };
  b1.write("x", X);
  b1.write("z", z);
  b1.write("lam", lam);
  const step = (b) => b.xUpdate({ steps: 4, rho: 0.1, lr: 0.01, maxGradNorm: 1, losses });
  out.x1 = await step(b1);
  out.losses1 = Array.from(losses);
  move(b1, b2);
  out.x2 = await step(b2); // another target (with DP noise): the backend's copy of the target is replaced
  out.losses2 = Array.from(losses);
  move(b2, b1);
  out.x3 = await step(b1); // and back
  X.set(b1.read("x"));
  out.X = Array.from(X);
  out.adam = [Array.from(b1.read("m")), Array.from(b1.read("v")), b1.adamStep, b2.adamStep];
  // the projection: KV-cached decoding continuing a shared prompt, top-k by cosine, the LM's choice
  const prompt = Int32Array.from({ length: 6 }, () => Math.floor(rng() * V));
  const prefix = model.createKVCache(1, prompt.length);
  const prefixLogits = await model.decode(prefix, { tokens: prompt, T: prompt.length });
  const allowed = Uint8Array.from({ length: V }, (_, v) => (v % 5 === 0 ? 0 : 1));
  const outTokens = new Int32Array(B * free);
  for (const [key, topk] of [["project1", 1], ["project7", 7], ["projectAll", V]]) {
    await nat.project({ U: X, B, L, freeLen: free, allowed, topk, prefix: prefix.handle, prefixLogits, outTokens });
    out[key] = Array.from(outTokens);
  }
  // the batch's own ADMM step: z ← Π(x + λ/ρ) with the z lookup in the engine, f(z), λ ← λ + ρ(x − z)
  await b1.project({ from: "dual", rho: 0.1, allowed, topk: 7, prefix: prefix.handle, prefixLogits, outTokens });
  const perZ = new Float32Array(B);
  out.batch = [Array.from(outTokens), await b1.zLoss({ perSample: perZ }), Array.from(perZ)];
  await b1.dualUpdate({ rho: 0.1 });
  await b1.keepBest();
  await b1.project({ from: "best", rho: 0.1, allowed, topk: 7, prefix: prefix.handle, prefixLogits, outTokens });
  out.batch.push(Array.from(outTokens), Array.from(b1.read("z")), Array.from(b1.read("lam")), Array.from(b1.read("best")));
  // weights written from JavaScript: the device copy must follow
  const w = model.tensor(changed);
  for (let i = 0; i < w.length; i += 3) w[i] *= 1.5;
  model.markParamsChanged();
  out.f2 = await nat.matchLoss(t1, { X, B, L, label: 7, dX, perSample });
  out.dX2 = Array.from(dX);
  await direct(model, rng, out);
  // the method after training steps: the device's parameters are the trained ones, the projection's norms the host's
  out.f3 = await nat.matchLoss(t1, { X, B, L, label: 7, dX, perSample });
  out.dX3 = Array.from(dX);
  await nat.project({ U: X, B, L, freeLen: free, allowed, topk: 7, prefix: prefix.handle, prefixLogits, outTokens });
  out.project7Trained = Array.from(outTokens);
  // cancellation: a long x-update and a target build stop at their next check (between steps / chunks)
  const aborted = async (call) => {
    const token = new (native().CancelToken)();
    const pending = call(token);
    token.cancel();
    return pending.then(() => "finished", (e) => e.code || String(e));
  };
  out.xUpdateAborted = await aborted((token) => b1.xUpdate({ steps: 1000, rho: 0.1, lr: 0.01, maxGradNorm: 1 }, token));
  const many = 64;
  out.buildTargetAborted = await aborted((token) =>
    nat.buildTarget({ tokens: new Int32Array(many * T), n: many, T, lastPos: new Int32Array(many).fill(T - 1), labels: new Int32Array(many).fill(7), chunkTokens: T }, token),
  );
  process.stdout.write(JSON.stringify(out));
  model.dispose();
})().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e));
  process.exit(1);
});
