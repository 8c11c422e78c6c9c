// The native GGUF dequantizer against gguf.quants.dequantize (PyPI `gguf`): the fixtures under
// test/fixtures/gguf_quants/ are raw blocks and the package's float32 output (test/fixtures/gen_gguf_quants.py),
// realistic (quantized data) and adversarial (random bytes; f16 scales that are ±0, subnormal, huge, ±Inf, quiet and
// signaling NaNs). Results are compared as Uint32 bit patterns, NaN payloads included: every output, NaN or not, must
// carry exactly numpy's bits (e.g. F16 signaling NaNs stay signaling, Inf·0 gives x86's default NaN 0xffc00000).
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { GGML_DEQUANTIZABLE, dequantize } from "../ts/gguf_quants";

const DIR = path.join(__dirname, "fixtures", "gguf_quants");

interface FixtureType {
  name: string;
  type: number;
  blockElems: number;
  blockBytes: number;
  blocks: number;
  elems: number;
  q: string;
  f32: string;
  nan: number;
  inf: number;
}

const manifest = JSON.parse(fs.readFileSync(path.join(DIR, "manifest.json"), "utf8")) as { types: FixtureType[] };

function load(t: FixtureType): { q: Uint8Array; expected: Uint32Array } {
  const q = new Uint8Array(fs.readFileSync(path.join(DIR, t.q)));
  const f = fs.readFileSync(path.join(DIR, t.f32));
  const expected = new Uint32Array(f.buffer.slice(f.byteOffset, f.byteOffset + f.byteLength));
  return { q, expected };
}

const hex = (u: number) => "0x" + u.toString(16).padStart(8, "0");

/** Indices and bit patterns of the first few differences (empty when bit-identical). */
function diffs(got: Uint32Array, want: Uint32Array): string[] {
  const out: string[] = [];
  for (let i = 0; i < want.length && out.length < 8; i++)
    if (got[i] !== want[i]) out.push(`[${i}] got ${hex(got[i])} want ${hex(want[i])}`);
  return out;
}

describe("GGUF dequantization (bit-exact against gguf.quants.dequantize)", () => {
  it("the fixtures cover every dequantizable type", () => {
    expect(new Set(manifest.types.map((t) => t.type))).toEqual(GGML_DEQUANTIZABLE);
  });

  for (const t of manifest.types) {
    it(`${t.name}: ${t.blocks} blocks bit-identical, NaN payloads included`, () => {
      const { q, expected } = load(t);
      expect(q.byteLength).toBe(t.blocks * t.blockBytes);
      expect(expected.length).toBe(t.elems);
      const dst = new Float32Array(t.elems);
      dequantize(t.type, q, dst);
      expect(diffs(new Uint32Array(dst.buffer), expected)).toEqual([]);
      // the adversarial blocks did produce the special values
      expect(dst.filter(Number.isNaN).length).toBe(t.nan);
      if (t.blocks > 1) expect(t.nan + t.inf).toBeGreaterThan(0);
    });

    it(`${t.name}: chunked calls (unaligned views, odd splits) give the same bits`, () => {
      const { q, expected } = load(t);
      // whole-block splits of several sizes; src and dst are subarray views at offsets, so unaligned pointers too
      for (const per of [1, 3, 7, Math.max(1, Math.floor(t.blocks / 2) + 1)]) {
        const dst = new Float32Array(t.elems);
        for (let b = 0; b < t.blocks; b += per) {
          const nb = Math.min(per, t.blocks - b);
          dequantize(t.type, q.subarray(b * t.blockBytes, (b + nb) * t.blockBytes),
            dst.subarray(b * t.blockElems, (b + nb) * t.blockElems));
        }
        expect(diffs(new Uint32Array(dst.buffer), expected), `${per} blocks per call`).toEqual([]);
      }
      // a copy of src at an odd byte offset
      const shifted = new Uint8Array(q.byteLength + 1);
      shifted.set(q, 1);
      const dst = new Float32Array(t.elems);
      dequantize(t.type, shifted.subarray(1), dst);
      expect(diffs(new Uint32Array(dst.buffer), expected)).toEqual([]);
    });
  }

  it("empty input is fine", () => {
    for (const type of GGML_DEQUANTIZABLE) dequantize(type, new Uint8Array(0), new Float32Array(0));
  });

  it("bad arguments throw RangeError naming the type", () => {
    expect(() => dequantize(99, new Uint8Array(18), new Float32Array(32))).toThrow(RangeError);
    expect(() => dequantize(99, new Uint8Array(18), new Float32Array(32))).toThrow(/99/);
    expect(() => dequantize(10, new Uint8Array(84), new Float32Array(256))).toThrow(RangeError); // Q2_K
    expect(() => dequantize(10, new Uint8Array(84), new Float32Array(256))).toThrow(/Q2_K/);
    expect(() => dequantize(-1, new Uint8Array(0), new Float32Array(0))).toThrow(RangeError);
    expect(() => dequantize(2.5, new Uint8Array(0), new Float32Array(0))).toThrow(RangeError);
    // src not a whole number of blocks
    expect(() => dequantize(12, new Uint8Array(145), new Float32Array(256))).toThrow(RangeError);
    expect(() => dequantize(12, new Uint8Array(145), new Float32Array(256))).toThrow(/Q4_K/);
    expect(() => dequantize(8, new Uint8Array(33), new Float32Array(32))).toThrow(/Q8_0.*33 bytes/);
    expect(() => dequantize(1, new Uint8Array(3), new Float32Array(1))).toThrow(/F16/);
    // wrong dst length
    expect(() => dequantize(14, new Uint8Array(210), new Float32Array(255))).toThrow(RangeError);
    expect(() => dequantize(14, new Uint8Array(210), new Float32Array(257))).toThrow(/Q6_K/);
    expect(() => dequantize(2, new Uint8Array(36), new Float32Array(32))).toThrow(/Q4_0.*2 blocks hold 64/);
    expect(() => dequantize(0, new Uint8Array(8), new Float32Array(3))).toThrow(RangeError);
  });
});
