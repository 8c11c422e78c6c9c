/**
 * Test accuracy by method as a PNG: one bar per method (mean over seeds), an error bar (± std), each seed as a dot,
 * drawn by hand on a pixel buffer with a 3×5 pixel font and encoded with pngjs (without it, no plot).
 */
import type { MethodSummary } from "./report";

type RGB = [number, number, number];

// 3 columns × 5 rows, row-major; upper case is drawn as lower case
const GLYPHS: Record<string, string> = {
  "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111", "4": "101101111001001",
  "5": "111100111001111", "6": "111100111101111", "7": "111001001010010", "8": "111101111101111", "9": "111101111001111",
  a: "000011101101011", b: "100110101101110", c: "000011100100011", d: "001011101101011", e: "010101111100011",
  f: "011100110100100", g: "011100101101011", h: "100110101101101", i: "010000010010010", j: "001000001101010",
  k: "100101110101101", l: "010010010010001", m: "000111111101101", n: "000110101101101", o: "000010101101010",
  p: "110101110100100", q: "011101011001001", r: "000101110100100", s: "011100010001110", t: "010111010010001",
  u: "000101101101011", v: "000101101101010", w: "000101101111111", x: "000101010101101", y: "101101011001110",
  z: "111001010100111", _: "000000000000111", "-": "000000111000000", "+": "000010111010000", ".": "000000000000010",
  ",": "000000000010100", ":": "000010000010000", "%": "101001010100101", "/": "001001010100100", "(": "001010010010001",
  ")": "100010010010100", "=": "000111000111000", " ": "000000000000000",
};

class Canvas {
  readonly data: Buffer;
  constructor(readonly W: number, readonly H: number) {
    this.data = Buffer.alloc(W * H * 4, 255);
  }
  set(x: number, y: number, c: RGB): void {
    x = Math.round(x);
    y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.W || y >= this.H) return;
    const i = (y * this.W + x) * 4;
    this.data[i] = c[0];
    this.data[i + 1] = c[1];
    this.data[i + 2] = c[2];
  }
  rect(x0: number, y0: number, x1: number, y1: number, c: RGB): void {
    for (let y = Math.round(Math.min(y0, y1)); y <= Math.round(Math.max(y0, y1)); y++)
      for (let x = Math.round(Math.min(x0, x1)); x <= Math.round(Math.max(x0, x1)); x++) this.set(x, y, c);
  }
  line(x0: number, y0: number, x1: number, y1: number, c: RGB, dash = 0): void {
    const n = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0)));
    for (let k = 0; k <= n; k++) if (!dash || Math.floor(k / dash) % 2 === 0) this.set(x0 + ((x1 - x0) * k) / n, y0 + ((y1 - y0) * k) / n, c);
  }
  dot(x: number, y: number, r: number, c: RGB): void {
    for (let dy = -r; dy <= r; dy++) for (let dx = -r; dx <= r; dx++) if (dx * dx + dy * dy <= r * r) this.set(x + dx, y + dy, c);
  }
  textWidth(s: string, scale: number): number {
    return s.length * 4 * scale - scale;
  }
  text(x: number, y: number, s: string, c: RGB, scale = 2): void {
    for (const ch of s.toLowerCase()) {
      const g = GLYPHS[ch] ?? GLYPHS[" "];
      for (let r = 0; r < 5; r++)
        for (let col = 0; col < 3; col++) if (g[r * 3 + col] === "1") this.rect(x + col * scale, y + r * scale, x + col * scale + scale - 1, y + r * scale + scale - 1, c);
      x += 4 * scale;
    }
  }
}

type PNGCtor = { new (o: { width: number; height: number }): { data: Buffer }; sync: { write(png: unknown): Buffer } };

function loadPng(): PNGCtor | null {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require("pngjs").PNG as PNGCtor;
  } catch {
    return null;
  }
}

const COLORS: Record<string, RGB> = {
  gradmm: [31, 119, 180], gradmm_dp: [106, 164, 214], real: [44, 160, 44], zero_shot_gen: [255, 127, 14],
  few_shot_gen: [214, 39, 40], continuous_gm: [148, 103, 189], zero_shot_cls: [127, 127, 127],
};

/** The plot, or null when pngjs is not installed. Accuracy axis from 0 to 100%, with the 50% line dashed. */
export function accuracyPng(agg: { methods: Record<string, MethodSummary> }, title: string): Buffer | null {
  const PNG = loadPng();
  if (!PNG) return null;
  const names = Object.keys(agg.methods);
  const W = Math.max(640, 70 + names.length * 120), H = 460;
  const M = { left: 60, right: 20, top: 40, bottom: 60 };
  const c = new Canvas(W, H);
  const black: RGB = [0, 0, 0], grey: RGB = [200, 200, 200];
  const y = (acc: number) => H - M.bottom - acc * (H - M.top - M.bottom);
  c.text(M.left, 12, title, black, 2);
  for (let t = 0; t <= 10; t++) {
    const yy = y(t / 10);
    c.line(M.left, yy, W - M.right, yy, t === 5 ? [150, 150, 150] : grey, t === 5 ? 4 : 0);
    const label = `${t * 10}`;
    c.text(M.left - 8 - c.textWidth(label, 2), yy - 5, label, black, 2);
  }
  c.text(6, M.top - 22, "acc %", black, 2);
  c.line(M.left, y(0), W - M.right, y(0), black);
  c.line(M.left, y(0), M.left, y(1), black);
  const slot = (W - M.left - M.right) / Math.max(1, names.length);
  names.forEach((n, i) => {
    const s = agg.methods[n];
    const cx = M.left + slot * (i + 0.5), half = slot * 0.3;
    const color = COLORS[n] ?? [80, 80, 80];
    if (Number.isFinite(s.accuracy_mean)) c.rect(cx - half, y(0), cx + half, y(s.accuracy_mean), color);
    if (Number.isFinite(s.accuracy_std) && s.accuracy_std > 0) {
      const lo = y(Math.max(0, s.accuracy_mean - s.accuracy_std)), hi = y(Math.min(1, s.accuracy_mean + s.accuracy_std));
      c.line(cx, lo, cx, hi, black);
      c.line(cx - 6, lo, cx + 6, lo, black);
      c.line(cx - 6, hi, cx + 6, hi, black);
    }
    for (const a of s.accuracy_per_seed) c.dot(cx + half * 0.6, y(a), 2, black);
    const value = Number.isFinite(s.accuracy_mean) ? (100 * s.accuracy_mean).toFixed(1) : "-";
    c.text(cx - c.textWidth(value, 2) / 2, y(Math.min(1, s.accuracy_mean + (s.accuracy_std || 0))) - 14, value, black, 2);
    const scale = c.textWidth(n, 2) <= slot - 4 ? 2 : 1;
    c.text(cx - c.textWidth(n, scale) / 2, H - M.bottom + 10, n, black, scale);
  });
  const png = new PNG({ width: W, height: H });
  c.data.copy(png.data);
  return PNG.sync.write(png);
}
