/**
 * The loss curve as a PNG, drawn by hand on a pixel buffer (lines, dots and a 3×5 pixel font) and encoded with
 * `pngjs` (a dev dependency: without it the curve is skipped).
 */
import type { LogRecord } from "./train";

const W = 800;
const H = 450;
const M = { left: 60, right: 20, top: 30, bottom: 50 };
type RGB = [number, number, number];

const GLYPHS: Record<string, string> = {
  "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
  "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001010010",
  "8": "111101111101111", "9": "111101111001111", ".": "000000000000010", M: "101111111101101",
  k: "100101110101101", a: "000011101101011", e: "000011111100011", i: "010000010010010",
  l: "010010010010010", n: "000110101101101", o: "000010101101010", r: "000101110100100",
  s: "000011110001110", t: "010111010010001", v: "000101101101010", "(": "001010010010001",
  ")": "100010010010100", " ": "000000000000000",
};

class Canvas {
  readonly data = Buffer.alloc(W * H * 4, 255);
  set(x: number, y: number, c: RGB): void {
    x = Math.round(x);
    y = Math.round(y);
    if (x < 0 || y < 0 || x >= W || y >= H) return;
    const i = (y * W + x) * 4;
    this.data[i] = c[0];
    this.data[i + 1] = c[1];
    this.data[i + 2] = c[2];
  }
  line(x0: number, y0: number, x1: number, y1: number, c: RGB, width = 1): void {
    const n = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0)));
    for (let k = 0; k <= n; k++) {
      const x = x0 + ((x1 - x0) * k) / n;
      const y = y0 + ((y1 - y0) * k) / n;
      for (let d = 0; d < width; d++) this.set(x, y + d - (width >> 1), c);
    }
  }
  dot(x: number, y: number, r: number, c: RGB): void {
    for (let dy = -r; dy <= r; dy++) for (let dx = -r; dx <= r; dx++) if (dx * dx + dy * dy <= r * r) this.set(x + dx, y + dy, c);
  }
  text(x: number, y: number, s: string, c: RGB, scale = 2): void {
    for (const ch of s) {
      const g = GLYPHS[ch] ?? GLYPHS[" "];
      for (let r = 0; r < 5; r++)
        for (let col = 0; col < 3; col++)
          if (g[r * 3 + col] === "1") for (let a = 0; a < scale; a++) for (let b = 0; b < scale; b++) this.set(x + col * scale + a, y + r * scale + b, c);
      x += 4 * scale;
    }
  }
}

function loadPng(): { sync: { write(png: unknown): Buffer } } & (new (o: { width: number; height: number }) => { data: Buffer }) | null {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require("pngjs").PNG;
  } catch {
    return null;
  }
}

/** Training loss (per logged interval) and validation loss against tokens seen; null without pngjs or data. */
export function lossCurvePng(log: LogRecord[]): Buffer | null {
  const PNG = loadPng();
  const train = log.filter((r): r is Extract<LogRecord, { kind: "train" }> => r.kind === "train");
  const val = log.filter((r): r is Extract<LogRecord, { kind: "val" }> => r.kind === "val");
  if (!PNG || train.length < 2) return null;
  const xs = [...train, ...val].map((r) => r.tokens);
  const ys = [...train.map((r) => r.loss), ...val.map((r) => r.val_loss)];
  const xMax = Math.max(...xs);
  const yMin = Math.floor(Math.min(...ys));
  const yMax = Math.ceil(Math.min(Math.max(...ys), yMin + 8));
  const px = (x: number) => M.left + (x / xMax) * (W - M.left - M.right);
  const py = (y: number) => M.top + ((yMax - Math.min(y, yMax)) / (yMax - yMin)) * (H - M.top - M.bottom);
  const c = new Canvas();
  const grey: RGB = [220, 220, 220];
  const black: RGB = [0, 0, 0];
  for (let y = yMin; y <= yMax; y++) {
    c.line(M.left, py(y), W - M.right, py(y), grey);
    c.text(M.left - 30, py(y) - 5, String(y), black);
  }
  const unit = xMax >= 2e6 ? 1e6 : 1e3;
  const stepX = niceStep(xMax / unit / 6);
  for (let x = 0; x <= xMax / unit + 1e-9; x += stepX) {
    c.line(px(x * unit), M.top, px(x * unit), H - M.bottom, grey);
    const label = Number.isInteger(x) ? String(x) : x.toFixed(1);
    c.text(px(x * unit) - label.length * 4, H - M.bottom + 8, label, black);
  }
  c.line(M.left, M.top, M.left, H - M.bottom, black);
  c.line(M.left, H - M.bottom, W - M.right, H - M.bottom, black);
  c.text(W / 2 - 40, H - 20, unit === 1e6 ? "tokens (M)" : "tokens (k)", black);
  c.text(8, 6, "loss", black);
  const blue: RGB = [31, 119, 180];
  const red: RGB = [214, 39, 40];
  for (let i = 1; i < train.length; i++) c.line(px(train[i - 1].tokens), py(train[i - 1].loss), px(train[i].tokens), py(train[i].loss), blue, 2);
  for (let i = 0; i < val.length; i++) {
    c.dot(px(val[i].tokens), py(val[i].val_loss), 3, red);
    if (i > 0) c.line(px(val[i - 1].tokens), py(val[i - 1].val_loss), px(val[i].tokens), py(val[i].val_loss), red);
  }
  c.line(W - 150, M.top + 10, W - 120, M.top + 10, blue, 2);
  c.text(W - 110, M.top + 5, "train", black);
  c.dot(W - 135, M.top + 30, 3, red);
  c.text(W - 110, M.top + 25, "val", black);
  const png = new PNG({ width: W, height: H });
  c.data.copy(png.data);
  return PNG.sync.write(png);
}

function niceStep(raw: number): number {
  const p = 10 ** Math.floor(Math.log10(Math.max(raw, 1e-9)));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}
