// Scores both sides' decoded texts the same way with gradmm's scorer (each text re-encoded, then " It was "; target: the
// real file's examples per class, label words "bad" / "great"). Usage (after npm run build):
//   node bench/official/score.js official/synthetic_data.jsonl ours/synthetic.jsonl real_train_data.jsonl ours-config.json [model]
const fs = require('fs');
const { loadModel, setThreads } = require('../../dist/ts/index.js');
const { gradientFactors, gradientCosine } = require('../../dist/bench/utility/metrics.js');
const { continuationLoss } = require('../../dist/ts/gradmm/lm.js');
const [officialFile, oursFile, realFile, cfgFile, modelDir = '/tmp/smollm2-hf'] = process.argv.slice(2);
const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
const rd = (f) => fs.readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
(async () => {
  setThreads(2);
  const { model, tokenizer, dispose } = loadModel(modelDir);
  const tmpl = tokenizer.encode(' It was ');
  const real = rd(realFile);
  const sides = {
    official: rd(officialFile).map((r) => r.inputs ?? r.text).map((t, i) => ({ text: t.endsWith(' It was ') ? t.slice(0, -' It was '.length) : t, label: rd(officialFile)[i].label })),
    ours: rd(oursFile).map((r) => ({ text: r.text, label: r.label })),
  };
  const out = {};
  for (const cls of [0, 1]) {
    const labTok = tokenizer.encode(cls ? 'great' : 'bad')[0];
    const rs = real.filter((r) => r.label === cls).map((r) => [...tokenizer.encode(r.inputs), ...tmpl]);
    const T = await gradientFactors(model, rs, rs.map(() => labTok));
    const longInstr = tokenizer.encode(cfg.classes[cls].instruction), shortInstr = tokenizer.encode(cls ? 'Here is a positive movie review:' : 'Here is a negative movie review:');
    for (const [side, rows] of Object.entries(sides)) {
      const texts = rows.filter((r) => r.label === cls).map((r) => r.text);
      const ids = texts.map((t) => tokenizer.encode(t));
      const S = await gradientFactors(model, ids.map((q) => [...q, ...tmpl]), ids.map(() => labTok));
      const per = S.A.map((a, i) => 1 - gradientCosine({ A: [a], H: [S.H[i]] }, T));
      const lossLong = await continuationLoss(model, longInstr, ids), lossShort = await continuationLoss(model, shortInstr, ids);
      const gm = (l) => Math.exp(l.reduce((a, b) => a + b, 0) / l.length);
      out[`${side}/${cls}`] = { n: texts.length, batch_1mcos: 1 - gradientCosine(S, T), per_sample_1mcos_mean: per.reduce((a, b) => a + b, 0) / per.length,
        per_sample: per, ppl_official_instr: gm(lossLong), ppl_short_instr: gm(lossShort), ppl_each_official_instr: lossLong.map(Math.exp), tokens: ids.map((q) => q.length), texts };
    }
  }
  console.log(JSON.stringify(out, null, 1));
  dispose();
})();
