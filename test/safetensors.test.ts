import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DisposedError, InvalidFileError, UnsupportedModelError } from "../ts/errors";
import { mulberry32 as rng } from "../ts/random";
import {
  openSafetensors,
  openSafetensorsDir,
  parseSafetensorsBuffer,
  readSafetensorsHeader,
  readTensorF32,
  readTensorI32,
} from "../ts/safetensors";
import { bfloat16BitsToFloat32, float16BitsToFloat32, float32ToBfloat16Bits, float32ToFloat16Bits } from "../ts/half";
import { writeSafetensors, type WritableTensor } from "../ts/safetensors_write";

const FIXTURE_DIR = path.join(__dirname, "fixtures", "gpt2_tiny");

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gradmm-safetensors-"));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});


function randomF32(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (r() * 2 - 1) * scale;
  return a;
}

let counter = 0;
function tmpFile(name = "t.safetensors"): string {
  return path.join(tmp, `${counter++}-${name}`);
}

/** Assembles a safetensors file from an arbitrary header value, so tests can build malformed ones. */
function rawFile(header: unknown, dataBytes: number | Uint8Array, lengthOverride?: bigint): Buffer {
  const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header), "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(json.byteLength));
  const data = typeof dataBytes === "number" ? Buffer.alloc(dataBytes) : Buffer.from(dataBytes);
  return Buffer.concat([len, json, data]);
}

/** Bitwise equality; vitest's deep equality is far too slow for million-element arrays. */
function sameBits(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

function writeRaw(bytes: Uint8Array): string {
  const f = tmpFile();
  fs.writeFileSync(f, bytes);
  return f;
}

function expectInvalid(fn: () => unknown, pattern: RegExp): InvalidFileError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(InvalidFileError);
  const err = caught as InvalidFileError;
  expect(err.code).toBe("INVALID_FILE");
  expect(err.message).toMatch(pattern);
  return err;
}

describe("writeSafetensors / openSafetensors round trip", () => {
  it("round-trips F32, I32, I64 exactly and preserves metadata", () => {
    const f = tmpFile();
    const a = randomF32(6 * 7, 1, 3);
    const ids = Int32Array.from([0, -1, 2147483647, -2147483648, 5, 6]);
    const big = BigInt64Array.from([1n, -2n, 3n]);
    writeSafetensors(
      f,
      {
        "b.weight": { dtype: "F32", shape: [6, 7], data: a },
        "a.ids": { dtype: "I32", shape: [2, 3], data: ids },
        "c.i64": { dtype: "I64", shape: [3], data: big },
        "d.i64w": { dtype: "I64", shape: [2, 3], data: ids },
        "e.scalar": { dtype: "F32", shape: [], data: Float32Array.of(2.5) },
        "f.empty": { dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
      },
      { format: "pt", note: "héllo" },
    );
    expect(fs.readdirSync(path.dirname(f)).filter((n) => n.includes(".tmp-"))).toEqual([]);

    const r = openSafetensors(f);
    try {
      expect(r.names()).toEqual(["a.ids", "b.weight", "c.i64", "d.i64w", "e.scalar", "f.empty"]);
      expect(r.metadata).toEqual({ format: "pt", note: "héllo" });
      expect(r.info("b.weight")).toMatchObject({ dtype: "F32", shape: [6, 7], size: 42, byteLength: 168, file: f });
      expect(r.readF32("b.weight")).toEqual(a);
      expect(r.readI32("a.ids")).toEqual(ids);
      expect(r.readI32("c.i64")).toEqual(Int32Array.from([1, -2, 3]));
      expect(r.readI32("d.i64w")).toEqual(ids);
      expect(r.readF32("e.scalar")).toEqual(Float32Array.of(2.5));
      expect(r.readF32("f.empty")).toEqual(new Float32Array(0));
    } finally {
      r.close();
    }
  });

  it("writes a header padded to 8 bytes with names in sorted order and metadata first", () => {
    const f = tmpFile();
    writeSafetensors(f, { z: { dtype: "F32", shape: [1], data: Float32Array.of(1) }, "10": { dtype: "F32", shape: [1], data: Float32Array.of(2) }, "9": { dtype: "F32", shape: [1], data: Float32Array.of(3) } }, { k: "v" });
    const bytes = fs.readFileSync(f);
    const n = Number(bytes.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const text = bytes.subarray(8, 8 + n).toString("utf8");
    const keys = [...text.matchAll(/"([^"]+)":\{/g)].map((m) => m[1]);
    expect(keys).toEqual(["__metadata__", "10", "9", "z"]);
    const h = readSafetensorsHeader(f);
    expect(h.tensors.get("10")!.dataOffsets).toEqual([0, 4]);
    expect(h.tensors.get("9")!.dataOffsets).toEqual([4, 8]);
    expect(h.dataStart).toBe(8 + n);
  });

  it("round-trips F16 and BF16 within the formats' rounding", () => {
    const f = tmpFile();
    const r = rng(7);
    const n = 5000;
    // Magnitudes spread over the F16 normal range so every exponent is exercised.
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = (r() < 0.5 ? -1 : 1) * 2 ** (r() * 29 - 14) * (1 + r());
    writeSafetensors(f, { h: { dtype: "F16", shape: [n], data: a }, b: { dtype: "BF16", shape: [n], data: a } });
    const h = readSafetensorsHeader(f);
    expect(fs.statSync(f).size).toBe(h.dataStart + 4 * n);
    const f16 = readTensorF32(f, h, "h");
    const bf16 = readTensorF32(f, h, "b");
    const bad: string[] = [];
    for (let i = 0; i < n; i++) {
      if (!(Math.abs(f16[i] - a[i]) <= Math.abs(a[i]) * 2 ** -11)) bad.push(`F16 ${a[i]} -> ${f16[i]}`);
      if (!(Math.abs(bf16[i] - a[i]) <= Math.abs(a[i]) * 2 ** -8)) bad.push(`BF16 ${a[i]} -> ${bf16[i]}`);
    }
    expect(bad).toEqual([]);
  });

  it("writes raw Uint16Array bits for F16/BF16 unchanged", () => {
    const f = tmpFile();
    const bits = Uint16Array.from([0x3c00, 0xc000, 0x7c00, 0x0001]);
    writeSafetensors(f, { h: { dtype: "F16", shape: [4], data: bits }, b: { dtype: "BF16", shape: [4], data: bits } });
    const r = openSafetensors(f);
    expect(Array.from(r.readF32("h"))).toEqual([1, -2, Infinity, 2 ** -24]);
    expect(Array.from(r.readF32("b"))).toEqual([bfloat16BitsToFloat32(0x3c00), -2, bfloat16BitsToFloat32(0x7c00), bfloat16BitsToFloat32(1)]);
    r.close();
  });

  it("streams tensors larger than one read chunk, into a preallocated array", () => {
    const f = tmpFile();
    const n = 1_300_000; // 5.2 MB as F32, more than the 4 MB chunk
    const a = randomF32(n, 3);
    const b = new Float32Array(n * 2);
    b.set(a, 0);
    b.set(a, n);
    writeSafetensors(f, { a: { dtype: "F32", shape: [n], data: a }, b: { dtype: "BF16", shape: [2 * n], data: b } });
    const r = openSafetensors(f);
    try {
      const out = new Float32Array(n);
      expect(r.readF32("a", out)).toBe(out);
      expect(sameBits(out, a)).toBe(true);
      const ob = r.readF32("b");
      for (const i of [0, 1, n - 1, n, n + 1, 2 * n - 1, 1_048_576, 1_048_577, 2_097_152]) {
        expect(ob[i]).toBe(bfloat16BitsToFloat32(float32ToBfloat16Bits(b[i])));
      }
    } finally {
      r.close();
    }
  });

  it("replaces an existing file atomically", () => {
    const f = tmpFile();
    writeSafetensors(f, { x: { dtype: "F32", shape: [1], data: Float32Array.of(1) } });
    writeSafetensors(f, { y: { dtype: "I32", shape: [2], data: Int32Array.of(4, 5) } });
    expect(openSafetensors(f).names()).toEqual(["y"]);
    expect(fs.readdirSync(path.dirname(f)).filter((n) => n.includes(".tmp-"))).toEqual([]);
  });

  it("rejects data that does not match the dtype or shape", () => {
    const f = tmpFile();
    const bad: Record<string, WritableTensor>[] = [
      { x: { dtype: "F32", shape: [3], data: new Float32Array(2) } },
      { x: { dtype: "F32", shape: [2], data: new Int32Array(2) } },
      { x: { dtype: "I32", shape: [-1], data: new Int32Array(0) } },
    ];
    for (const t of bad) expect(() => writeSafetensors(f, t)).toThrow();
    expect(fs.existsSync(f)).toBe(false);
  });
});

describe("reader API errors", () => {
  const f = () => {
    const file = tmpFile();
    writeSafetensors(file, {
      w: { dtype: "F32", shape: [2, 2], data: Float32Array.of(1, 2, 3, 4) },
      i: { dtype: "I32", shape: [1], data: Int32Array.of(1) },
      big: { dtype: "I64", shape: [1], data: BigInt64Array.of(1n << 40n) },
    });
    return file;
  };

  it("checks the length of a preallocated output", () => {
    const r = openSafetensors(f());
    expect(() => r.readF32("w", new Float32Array(3))).toThrow(RangeError);
    r.close();
  });

  it("names a missing tensor", () => {
    const r = openSafetensors(f());
    expectInvalid(() => r.info("nope"), /no tensor named "nope"/);
    expectInvalid(() => r.readF32("nope"), /"nope"/);
    r.close();
  });

  it("refuses to read integer tensors as float and vice versa", () => {
    const r = openSafetensors(f());
    expect(() => r.readF32("i")).toThrow(UnsupportedModelError);
    expect(() => r.readI32("w")).toThrow(UnsupportedModelError);
    expectInvalid(() => r.readI32("big"), /"big".*does not fit in int32/);
    r.close();
  });

  it("throws DisposedError after close()", () => {
    const r = openSafetensors(f());
    r.close();
    r.close();
    expect(() => r.readF32("w")).toThrow(DisposedError);
    expect(() => r.names()).toThrow(DisposedError);
  });

  it("reports a missing file as InvalidFileError", () => {
    expectInvalid(() => readSafetensorsHeader(path.join(tmp, "absent.safetensors")), /absent\.safetensors: cannot open/);
  });

  it("detects a file truncated after its header was read", () => {
    const file = f();
    const h = readSafetensorsHeader(file);
    fs.truncateSync(file, h.dataStart + 4);
    expectInvalid(() => readTensorF32(file, h, "w"), /header was read/);
    const fd = fs.openSync(file, "r");
    try {
      // With a raw descriptor there is no size check, so the short read itself must be caught.
      expectInvalid(() => readTensorF32(fd, h, "w"), /unexpected end of file reading w/);
    } finally {
      fs.closeSync(fd);
    }
  });
});

describe("float16 / bfloat16 conversion", () => {
  it("decodes and re-encodes every non-NaN F16 and BF16 bit pattern exactly", () => {
    const bad: number[] = [];
    for (let h = 0; h < 65536; h++) {
      const isNaN16 = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (!isNaN16 && float32ToFloat16Bits(float16BitsToFloat32(h)) !== h) bad.push(h);
      const isNaNbf = (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;
      if (!isNaNbf && float32ToBfloat16Bits(bfloat16BitsToFloat32(h)) !== h) bad.push(h + 0x10000);
    }
    expect(bad).toEqual([]);
  });

  it("rounds to nearest, ties to even", () => {
    expect(float16BitsToFloat32(float32ToFloat16Bits(1 + 2 ** -11))).toBe(1);
    expect(float16BitsToFloat32(float32ToFloat16Bits(1 + 3 * 2 ** -11))).toBe(1 + 2 ** -9);
    expect(float16BitsToFloat32(float32ToFloat16Bits(1 + 2 ** -11 + 2 ** -20))).toBe(1 + 2 ** -10);
    expect(float16BitsToFloat32(float32ToFloat16Bits(65519))).toBe(65504);
    expect(float16BitsToFloat32(float32ToFloat16Bits(65520))).toBe(Infinity);
    expect(float16BitsToFloat32(float32ToFloat16Bits(-1e9))).toBe(-Infinity);
    expect(float16BitsToFloat32(float32ToFloat16Bits(2 ** -25))).toBe(0);
    expect(float16BitsToFloat32(float32ToFloat16Bits(2 ** -25 * 1.01))).toBe(2 ** -24);
    expect(float16BitsToFloat32(float32ToFloat16Bits(3 * 2 ** -25))).toBe(2 ** -23);
    expect(float16BitsToFloat32(float32ToFloat16Bits(2 ** -14 - 2 ** -25))).toBe(2 ** -14);
    expect(Object.is(float16BitsToFloat32(float32ToFloat16Bits(-0)), -0)).toBe(true);
    expect(float16BitsToFloat32(float32ToFloat16Bits(NaN))).toBeNaN();

    expect(bfloat16BitsToFloat32(float32ToBfloat16Bits(1 + 2 ** -8))).toBe(1);
    expect(bfloat16BitsToFloat32(float32ToBfloat16Bits(1 + 3 * 2 ** -8))).toBe(1 + 2 ** -6);
    expect(bfloat16BitsToFloat32(float32ToBfloat16Bits(1 + 2 ** -8 + 2 ** -20))).toBe(1 + 2 ** -7);
    expect(bfloat16BitsToFloat32(float32ToBfloat16Bits(3.4028234663852886e38))).toBe(Infinity);
    expect(bfloat16BitsToFloat32(float32ToBfloat16Bits(NaN))).toBeNaN();
  });

  it("picks the nearest representable value for random inputs", () => {
    const r = rng(11);
    const bad: string[] = [];
    for (let i = 0; i < 20000; i++) {
      const x = Math.fround((r() * 2 - 1) * 2 ** (r() * 40 - 26));
      for (const [enc, dec] of [
        [float32ToFloat16Bits, float16BitsToFloat32],
        [float32ToBfloat16Bits, bfloat16BitsToFloat32],
      ] as const) {
        const h = enc(x);
        const err = Math.abs(dec(h) - x);
        // Neighbours in bit order are the adjacent representable values (same sign).
        const worseThanBelow = (h & 0x7fff) !== 0 && err > Math.abs(dec(h - 1) - x);
        const worseThanAbove = Number.isFinite(dec(h + 1)) && err > Math.abs(dec(h + 1) - x);
        if (worseThanBelow || worseThanAbove) bad.push(`${x} -> ${dec(h)}`);
      }
    }
    expect(bad).toEqual([]);
  });
});

describe("malformed headers", () => {
  const good = { w: { dtype: "F32", shape: [2, 3], data_offsets: [0, 24] } };
  const withEntry = (entry: unknown) => rawFile({ w: entry }, 24);

  it("file shorter than 8 bytes", () => {
    const f = writeRaw(Buffer.from([1, 2, 3]));
    const err = expectInvalid(() => readSafetensorsHeader(f), /3 bytes, too short/);
    expect(err.file).toBe(f);
    expect(err.message.startsWith(f)).toBe(true);
  });

  it("header length larger than the file", () => {
    const f = writeRaw(rawFile(good, 24, 1000n));
    expectInvalid(() => readSafetensorsHeader(f), /header length 1000 is larger than/);
  });

  it("header length over 100 MB", () => {
    const f = writeRaw(rawFile(good, 24, 200_000_000n));
    expectInvalid(() => readSafetensorsHeader(f), /header length 200000000 exceeds/);
    const f2 = writeRaw(rawFile(good, 24, 0xffffffffffffffffn));
    expectInvalid(() => readSafetensorsHeader(f2), /exceeds/);
  });

  it("header not valid UTF-8", () => {
    const bytes = rawFile(good, 24);
    bytes[9] = 0xff;
    expectInvalid(() => readSafetensorsHeader(writeRaw(bytes)), /not valid UTF-8/);
  });

  it("header not JSON", () => {
    expectInvalid(() => readSafetensorsHeader(writeRaw(rawFile('{"w": ', 24))), /not valid JSON/);
    expectInvalid(() => readSafetensorsHeader(writeRaw(rawFile("", 24))), /not valid JSON/);
  });

  it("header JSON not an object", () => {
    expectInvalid(() => readSafetensorsHeader(writeRaw(rawFile([good], 24))), /not an object/);
    expectInvalid(() => readSafetensorsHeader(writeRaw(rawFile("null", 24))), /not an object/);
  });

  it("entry not an object", () => {
    expectInvalid(() => readSafetensorsHeader(writeRaw(withEntry(5))), /tensor "w": entry is not an object/);
  });

  for (const field of ["dtype", "shape", "data_offsets"]) {
    it(`entry missing ${field}`, () => {
      const entry: Record<string, unknown> = { ...good.w };
      delete entry[field];
      expectInvalid(() => readSafetensorsHeader(writeRaw(withEntry(entry))), new RegExp(`tensor "w": missing "${field}"`));
    });
  }

  it("unknown dtype", () => {
    expectInvalid(() => readSafetensorsHeader(writeRaw(withEntry({ ...good.w, dtype: "F31" }))), /tensor "w": unknown dtype "F31"/);
    expectInvalid(() => readSafetensorsHeader(writeRaw(withEntry({ ...good.w, dtype: "toString" }))), /unknown dtype/);
    expectInvalid(() => readSafetensorsHeader(writeRaw(withEntry({ ...good.w, dtype: 4 }))), /unknown dtype 4/);
  });

  it("shape with negative or non-integer dims", () => {
    for (const shape of [[-2, -3], [2.5, 3], ["2", 3], 6, [1e400]]) {
      expectInvalid(() => readSafetensorsHeader(writeRaw(withEntry({ ...good.w, shape }))), /tensor "w": "shape"/);
    }
  });

  it("shape whose element count overflows", () => {
    const shape = [2 ** 30, 2 ** 30, 2 ** 30];
    expectInvalid(() => readSafetensorsHeader(writeRaw(withEntry({ ...good.w, shape }))), /tensor "w": "shape".*too large/);
  });

  it("data_offsets malformed", () => {
    for (const data_offsets of [[0], [0, 24, 48], [24, 0], [-24, 0], [0.5, 24.5], "0,24", [0, "24"]]) {
      expectInvalid(() => readSafetensorsHeader(writeRaw(withEntry({ ...good.w, data_offsets }))), /tensor "w": "data_offsets"/);
    }
  });

  it("data_offsets end beyond the data section", () => {
    const f = writeRaw(rawFile(good, 20));
    expectInvalid(() => readSafetensorsHeader(f), /tensor "w": "data_offsets" end 24 is beyond the 20-byte data section/);
  });

  it("dtype size times element count differs from the byte range", () => {
    const f = writeRaw(rawFile({ w: { ...good.w, dtype: "F16" } }, 24));
    expectInvalid(() => readSafetensorsHeader(f), /tensor "w": F16 \[2,3\] needs 12 bytes but "data_offsets" \[0, 24\] span 24/);
  });

  it("overlapping tensors", () => {
    const header = {
      a: { dtype: "F32", shape: [4], data_offsets: [0, 16] },
      b: { dtype: "F32", shape: [4], data_offsets: [12, 28] },
      e: { dtype: "F32", shape: [0], data_offsets: [4, 4] },
    };
    expectInvalid(() => readSafetensorsHeader(writeRaw(rawFile(header, 28))), /tensor "b" \[12,28\] overlaps tensor "a" \[0,16\]/);
  });

  it("metadata that is not a string map", () => {
    expectInvalid(() => readSafetensorsHeader(writeRaw(rawFile({ ...good, __metadata__: { n: 1 } }, 24))), /"__metadata__" entry "n" is not a string/);
    expectInvalid(() => readSafetensorsHeader(writeRaw(rawFile({ ...good, __metadata__: "x" }, 24))), /"__metadata__" is not an object/);
  });

  it("treats a tensor named __proto__ as an ordinary name", () => {
    const h = readSafetensorsHeader(writeRaw(rawFile('{"__proto__":{"dtype":"F32","shape":[6],"data_offsets":[0,24]}}', 24)));
    expect([...h.tensors.keys()]).toEqual(["__proto__"]);
  });

  it("parseSafetensorsBuffer applies the same checks in memory", () => {
    expect(parseSafetensorsBuffer(rawFile(good, 24)).tensors.get("w")!.shape).toEqual([2, 3]);
    expectInvalid(() => parseSafetensorsBuffer(rawFile(good, 20), "mem"), /^mem: tensor "w"/);
  });
});

describe("fuzzing", () => {
  it("rejects 10,000 mutated headers with InvalidFileError only", () => {
    const base = path.join(tmp, "base.safetensors");
    writeSafetensors(
      base,
      {
        "h.0.w": { dtype: "F32", shape: [3, 2], data: randomF32(6, 5) },
        "h.0.b": { dtype: "F16", shape: [4], data: randomF32(4, 6) },
        "h.1.b": { dtype: "BF16", shape: [2, 2], data: randomF32(4, 7) },
        ids: { dtype: "I64", shape: [3], data: Int32Array.of(1, 2, 3) },
        tok: { dtype: "I32", shape: [2], data: Int32Array.of(4, 5) },
      },
      { format: "pt" },
    );
    const original = fs.readFileSync(base);
    const headerEnd = 8 + Number(original.readBigUInt64LE(0));
    // Characters that keep mutants JSON-shaped often enough to reach the deeper validation paths.
    const interesting = Buffer.from('{}[]",:-0123456789e. \\"FIBU_', "latin1");
    const r = rng(20240611);
    const pick = (n: number) => Math.floor(r() * n);
    const mutant = path.join(tmp, "mutant.safetensors");
    let parsed = 0;
    let rejected = 0;

    for (let iter = 0; iter < 10_000; iter++) {
      const bytes = Array.from(original);
      let end = headerEnd;
      for (let k = 1 + pick(4); k > 0; k--) {
        const at = pick(end);
        const byte = r() < 0.5 ? interesting[pick(interesting.length)] : pick(256);
        const op = pick(4);
        if (op === 0) bytes[at] ^= 1 << pick(8);
        else if (op === 1) bytes[at] = byte;
        else if (op === 2) {
          bytes.splice(Math.max(8, at), 0, byte);
          end++;
        } else if (end > 9) {
          bytes.splice(Math.max(8, at), 1);
          end--;
        }
      }
      // Half the time keep the length field consistent so the JSON itself gets exercised.
      const buf = Buffer.from(bytes);
      if (r() < 0.5) buf.writeBigUInt64LE(BigInt(end - 8), 0);
      fs.writeFileSync(mutant, buf);

      let headerOk = false;
      try {
        const h = readSafetensorsHeader(mutant);
        headerOk = true;
        for (const [name, e] of h.tensors) {
          if (["F32", "F16", "BF16", "F64"].includes(e.dtype)) readTensorF32(mutant, h, name);
          else if (e.dtype === "I32") readTensorI32(mutant, h, name);
        }
        parsed++;
      } catch (err) {
        if (!(err instanceof InvalidFileError)) {
          throw new Error(`iteration ${iter}: unexpected ${String(err)}\nheader: ${buf.subarray(0, 200).toString("latin1")}`);
        }
        // Any InvalidFileError names the file.
        expect(err.message.startsWith(mutant)).toBe(true);
        rejected++;
      }
      // The in-memory parser must agree on header validity.
      let bufferOk = true;
      try {
        parseSafetensorsBuffer(buf, "mem");
      } catch (err) {
        if (!(err instanceof InvalidFileError)) throw err;
        bufferOk = false;
      }
      if (headerOk) expect(bufferOk).toBe(true);
    }
    expect(parsed + rejected).toBe(10_000);
    // Sanity: the mutator must actually produce both outcomes.
    expect(rejected).toBeGreaterThan(5000);
    expect(parsed).toBeGreaterThan(50);
  }, 120_000);
});

describe("openSafetensorsDir", () => {
  function shardedDir(): string {
    const dir = fs.mkdtempSync(path.join(tmp, "sharded-"));
    writeSafetensors(path.join(dir, "model-00001-of-00002.safetensors"), {
      a: { dtype: "F32", shape: [2], data: Float32Array.of(1, 2) },
      b: { dtype: "BF16", shape: [1], data: Float32Array.of(3) },
    }, { format: "pt" });
    writeSafetensors(path.join(dir, "model-00002-of-00002.safetensors"), {
      c: { dtype: "I32", shape: [3], data: Int32Array.of(7, 8, 9) },
    });
    const index = {
      metadata: { total_size: 24 },
      weight_map: { a: "model-00001-of-00002.safetensors", b: "model-00001-of-00002.safetensors", c: "model-00002-of-00002.safetensors" },
    };
    fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), JSON.stringify(index));
    return dir;
  }

  it("presents sharded checkpoints as one view", () => {
    const dir = shardedDir();
    const r = openSafetensorsDir(dir);
    try {
      expect(r.path).toBe(path.join(dir, "model.safetensors.index.json"));
      expect(r.names()).toEqual(["a", "b", "c"]);
      expect(r.readF32("a")).toEqual(Float32Array.of(1, 2));
      expect(r.readF32("b")).toEqual(Float32Array.of(3));
      expect(r.readI32("c")).toEqual(Int32Array.of(7, 8, 9));
      expect(r.info("c")).toMatchObject({ dtype: "I32", shape: [3], file: path.join(dir, "model-00002-of-00002.safetensors") });
      expect(r.metadata).toEqual({ format: "pt" });
      expectInvalid(() => r.info("zz"), /model\.safetensors\.index\.json: no tensor named "zz"/);
    } finally {
      r.close();
    }
    expect(() => r.readF32("a")).toThrow(DisposedError);
  });

  it("prefers model.safetensors when present", () => {
    const dir = shardedDir();
    writeSafetensors(path.join(dir, "model.safetensors"), { only: { dtype: "F32", shape: [1], data: Float32Array.of(0) } });
    const r = openSafetensorsDir(dir);
    expect(r.names()).toEqual(["only"]);
    r.close();
  });

  it("names the index and the missing shard", () => {
    const dir = shardedDir();
    fs.rmSync(path.join(dir, "model-00002-of-00002.safetensors"));
    expectInvalid(() => openSafetensorsDir(dir), /index\.json: shard "model-00002-of-00002\.safetensors" \(holding tensor "c"\) does not exist/);
  });

  it("names a tensor missing from its shard", () => {
    const dir = shardedDir();
    const indexPath = path.join(dir, "model.safetensors.index.json");
    const index = JSON.parse(fs.readFileSync(indexPath, "utf8"));
    index.weight_map.d = "model-00002-of-00002.safetensors";
    fs.writeFileSync(indexPath, JSON.stringify(index));
    expectInvalid(() => openSafetensorsDir(dir), /tensor "d" is mapped to shard "model-00002-of-00002\.safetensors", which does not contain it/);
  });

  it("rejects malformed index files and shard paths outside the directory", () => {
    const dir = shardedDir();
    const indexPath = path.join(dir, "model.safetensors.index.json");
    fs.writeFileSync(indexPath, "{not json");
    expectInvalid(() => openSafetensorsDir(dir), /index\.json: cannot read index JSON/);
    fs.writeFileSync(indexPath, JSON.stringify({ metadata: {} }));
    expectInvalid(() => openSafetensorsDir(dir), /missing "weight_map"/);
    fs.writeFileSync(indexPath, JSON.stringify({ weight_map: { a: "../model-00001-of-00002.safetensors" } }));
    expectInvalid(() => openSafetensorsDir(dir), /"weight_map" entry for tensor "a" is not a shard file name/);
    fs.writeFileSync(indexPath, JSON.stringify({ weight_map: { a: 3 } }));
    expectInvalid(() => openSafetensorsDir(dir), /tensor "a"/);
  });

  it("names a corrupt shard", () => {
    const dir = shardedDir();
    fs.writeFileSync(path.join(dir, "model-00001-of-00002.safetensors"), Buffer.from([1, 0]));
    expectInvalid(() => openSafetensorsDir(dir), /model-00001-of-00002\.safetensors: file is 2 bytes/);
  });

  it("reports a directory with no checkpoint", () => {
    const dir = fs.mkdtempSync(path.join(tmp, "empty-"));
    expectInvalid(() => openSafetensorsDir(dir), /neither model\.safetensors nor model\.safetensors\.index\.json/);
  });
});

describe("gpt2_tiny fixture", () => {
  const V = 211, P = 32, C = 64, L = 2, B = 2, T = 16;
  const paramShapes: Record<string, number[]> = { "wte.weight": [V, C], "wpe.weight": [P, C], "ln_f.weight": [C], "ln_f.bias": [C] };
  for (let i = 0; i < L; i++) {
    Object.assign(paramShapes, {
      [`h.${i}.ln_1.weight`]: [C],
      [`h.${i}.ln_1.bias`]: [C],
      [`h.${i}.attn.c_attn.weight`]: [C, 3 * C],
      [`h.${i}.attn.c_attn.bias`]: [3 * C],
      [`h.${i}.attn.c_proj.weight`]: [C, C],
      [`h.${i}.attn.c_proj.bias`]: [C],
      [`h.${i}.ln_2.weight`]: [C],
      [`h.${i}.ln_2.bias`]: [C],
      [`h.${i}.mlp.c_fc.weight`]: [C, 4 * C],
      [`h.${i}.mlp.c_fc.bias`]: [4 * C],
      [`h.${i}.mlp.c_proj.weight`]: [4 * C, C],
      [`h.${i}.mlp.c_proj.bias`]: [C],
    });
  }

  it("model.safetensors has the GPT-2 parameter names and shapes", () => {
    const r = openSafetensorsDir(FIXTURE_DIR);
    try {
      expect(r.names()).toEqual(Object.keys(paramShapes).sort());
      for (const [name, shape] of Object.entries(paramShapes)) {
        expect(r.info(name)).toMatchObject({ dtype: "F32", shape });
      }
      const ln = r.readF32("h.0.ln_1.weight");
      expect(ln.every((x) => Math.abs(x - 1) < 0.6)).toBe(true);
    } finally {
      r.close();
    }
  });

  it("expected.safetensors has every scenario tensor", () => {
    const r = openSafetensors(path.join(FIXTURE_DIR, "expected.safetensors"));
    try {
      const shapes: Record<string, number[]> = {
        input_ids: [B, T],
        targets: [B, T],
        loss_mask: [B, T],
        logits: [B, T, V],
        loss: [1],
        "embeds.input": [B, T, C],
        "embeds.targets": [B, T],
        "embeds.loss_mask": [B, T],
        "embeds.hidden": [B, T, C],
        "embeds.loss": [1],
        "embeds.grad_input": [B, T, C],
        "adamw.losses": [3],
        "adamw.grad_norms": [3],
      };
      for (const [name, shape] of Object.entries(paramShapes)) {
        shapes[`grad.${name}`] = shape;
        shapes[`adamw.${name}`] = shape;
        shapes[`adamw1.${name}`] = shape;
      }
      expect(r.names()).toEqual(Object.keys(shapes).sort());
      for (const [name, shape] of Object.entries(shapes)) expect(r.info(name).shape).toEqual(shape);
      const ids = r.readI32("input_ids");
      expect(ids.every((t) => t >= 0 && t < V)).toBe(true);
      const loss = r.readF32("loss")[0];
      expect(Math.abs(loss - Math.log(V))).toBeLessThan(0.5);
      const embeds = r.readF32("embeds.input");
      const norm = Math.hypot(...embeds.subarray(0, C));
      expect(norm).toBeCloseTo(1.4, 5);
    } finally {
      r.close();
    }
  });
});
