/** The default model's baselines (bench/model): the Kneser-Ney trigram and the bag-of-words classifier. */
import { describe, expect, it } from "vitest";
import { KneserNeyTrigram } from "../bench/model/kneser_ney";
import { predictBow, trainBow } from "../bench/model/bow";
import { mulberry32 } from "../ts/random";

/** Interpolated Kneser-Ney written directly from its definition with string-keyed maps (the independent reference). */
function referenceKN(stream: number[], V: number) {
  const tri = new Map<string, number>();
  for (let i = 0; i + 2 < stream.length; i++) {
    const k = `${stream[i]},${stream[i + 1]},${stream[i + 2]}`;
    tri.set(k, (tri.get(k) ?? 0) + 1);
  }
  const bigramLeft = new Map<string, Set<number>>(); // vw -> distinct u
  for (const k of tri.keys()) {
    const [u, v, w] = k.split(",").map(Number);
    const key = `${v},${w}`;
    if (!bigramLeft.has(key)) bigramLeft.set(key, new Set());
    bigramLeft.get(key)!.add(u);
  }
  const uniLeft = new Map<number, Set<number>>(); // w -> distinct v
  for (const key of bigramLeft.keys()) {
    const [v, w] = key.split(",").map(Number);
    if (!uniLeft.has(w)) uniLeft.set(w, new Set());
    uniLeft.get(w)!.add(v);
  }
  const disc = (counts: number[]) => {
    const n1 = counts.filter((c) => c === 1).length, n2 = counts.filter((c) => c === 2).length;
    return n1 > 0 ? n1 / (n1 + 2 * n2) : 0.5;
  };
  const D3 = disc([...tri.values()]);
  const D2 = disc([...bigramLeft.values()].map((s) => s.size));
  const D1 = disc([...uniLeft.values()].map((s) => s.size));
  const bigramTypes = bigramLeft.size;
  const p1 = (w: number) => (Math.max((uniLeft.get(w)?.size ?? 0) - D1, 0) + (D1 * uniLeft.size) / V) / bigramTypes;
  const p2 = (v: number, w: number) => {
    let ctx = 0, types = 0;
    for (const [key, s] of bigramLeft) if (key.startsWith(`${v},`)) (ctx += s.size), types++;
    if (!ctx) return p1(w);
    return Math.max((bigramLeft.get(`${v},${w}`)?.size ?? 0) - D2, 0) / ctx + ((D2 * types) / ctx) * p1(w);
  };
  const p3 = (u: number, v: number, w: number) => {
    let ctx = 0, types = 0;
    for (const [key, c] of tri) if (key.startsWith(`${u},${v},`)) (ctx += c), types++;
    if (!ctx) return p2(v, w);
    return Math.max((tri.get(`${u},${v},${w}`) ?? 0) - D3, 0) / ctx + ((D3 * types) / ctx) * p2(v, w);
  };
  return { p3, discounts: [D1, D2, D3] };
}

describe("Kneser-Ney trigram", () => {
  const V = 23;
  const rng = mulberry32(7);
  // a skewed stream with repeated phrases, so every order has 1- and 2-counts and some unseen contexts
  const stream: number[] = [];
  while (stream.length < 3000) {
    if (rng() < 0.3) stream.push(3, 4, 5);
    else stream.push(Math.floor(rng() ** 2 * (V - 2)));
  }
  const kn = new KneserNeyTrigram(Uint16Array.from(stream), V);

  it("is a distribution over the vocabulary for seen and unseen contexts", () => {
    for (const [u, v] of [[3, 4], [0, 1], [V - 1, V - 1], [-1, 5], [-1, V - 1]]) {
      let sum = 0;
      for (let w = 0; w < V; w++) {
        const p = kn.prob(u, v, w);
        expect(p).toBeGreaterThan(0);
        sum += p;
      }
      expect(sum).toBeCloseTo(1, 12);
    }
  });

  it("equals a direct implementation of the definition", () => {
    const ref = referenceKN(stream, V);
    expect(kn.stats.discounts).toEqual(ref.discounts.map((d) => expect.closeTo(d, 14)));
    for (let i = 0; i < 200; i++) {
      const u = Math.floor(rng() * V), v = Math.floor(rng() * V), w = Math.floor(rng() * V);
      expect(kn.prob(u, v, w)).toBeCloseTo(ref.p3(u, v, w), 12);
    }
    expect(kn.prob(3, 4, 5)).toBeGreaterThan(0.5); // the repeated phrase dominates its context
  });

  it("sums the negative log-likelihood of a sequence", () => {
    const seq = [3, 4, 5, 1, 2];
    const expected = -Math.log(kn.prob(-1, 3, 4)) - Math.log(kn.prob(3, 4, 5)) - Math.log(kn.prob(4, 5, 1)) - Math.log(kn.prob(5, 1, 2));
    expect(kn.sequenceNats(seq)).toBeCloseTo(expected, 12);
  });
});

describe("bag-of-words logistic regression", () => {
  it("learns word-presence labels and generalises to unseen combinations", () => {
    const pos = ["great", "wonderful", "superb"], neg = ["awful", "boring", "bad"], filler = ["movie", "the", "plot", "actor", "scene"];
    const rng = mulberry32(3);
    const pick = (xs: string[]) => xs[Math.floor(rng() * xs.length)];
    const make = (n: number) =>
      Array.from({ length: n }, (_, i) => {
        const cls = i % 2;
        return { text: `${pick(filler)} ${pick(cls ? pos : neg)} ${pick(filler)} ${pick(filler)}`, cls };
      });
    const train = make(60), test = make(40);
    const model = trainBow(train.map((x) => x.text), train.map((x) => x.cls), 2, { lambda: 1e-3, iterations: 200 });
    expect(test.filter((x) => predictBow(model, x.text) === x.cls).length).toBe(test.length);
    expect(model.vocab.has("great")).toBe(true);
  });
});
