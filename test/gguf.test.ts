// The GGUF reader (ts/gguf.ts) against a file written by the `gguf` package's own writer
// (test/fixtures/gen_gguf_reader.py), hand-built headers for every error, and 10,000+ mutated headers.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { InvalidFileError } from "../ts/errors";
import { GGUFMetadata, isGGUFFile, parseGGUFBuffer, readGGUF, type GGUFMetadataValue } from "../ts/gguf";
import { mulberry32 } from "../ts/random";
import { smollm2GGUF, SMOLLM2_MISSING } from "./helpers/real_model";

const fixture = path.join(__dirname, "fixtures", "gguf", "reader.gguf");
const expected = JSON.parse(fs.readFileSync(path.join(__dirname, "fixtures", "gguf", "reader.expected.json"), "utf8")) as {
  version: number;
  alignment: number;
  metadata: Record<string, unknown>;
  tensors: Record<string, { type: number; dims: number[]; values?: number[]; byteLength?: number }>;
};

function fromJson(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(fromJson);
  if (v && typeof v === "object" && "bigint" in v) return BigInt((v as { bigint: string }).bigint);
  return v;
}

/** A little-endian GGUF writer for hand-made (and deliberately broken) headers. */
class Builder {
  private parts: Buffer[] = [];
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    this.parts.push(b);
    return this;
  }
  u64(v: number | bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.parts.push(b);
    return this;
  }
  bytes(b: Uint8Array): this {
    this.parts.push(Buffer.from(b));
    return this;
  }
  str(s: string): this {
    const b = Buffer.from(s, "utf8");
    return this.u64(b.length).bytes(b);
  }
  header(version: number, tensors: number, kvs: number): this {
    return this.u32(0x46554747).u32(version).u64(tensors).u64(kvs);
  }
  kvU32(key: string, v: number): this {
    return this.str(key).u32(4).u32(v);
  }
  tensor(name: string, dims: number[], type: number, offset: number): this {
    this.str(name).u32(dims.length);
    for (const d of dims) this.u64(d);
    return this.u32(type).u64(offset);
  }
  /** Pads to `align` and appends `dataBytes` zero bytes. */
  data(align: number, dataBytes: number): this {
    const len = this.length;
    return this.bytes(new Uint8Array((Math.ceil(len / align) * align - len) + dataBytes));
  }
  /** Trailing zero bytes, so that the counts of a short header fit in the file. */
  pad(n = 64): this {
    return this.bytes(new Uint8Array(n));
  }
  get length(): number {
    return this.parts.reduce((a, b) => a + b.length, 0);
  }
  build(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function errorOf(bytes: Uint8Array): InvalidFileError {
  try {
    parseGGUFBuffer(bytes, "x.gguf");
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidFileError);
    return e as InvalidFileError;
  }
  throw new Error("expected an InvalidFileError");
}

describe("GGUF reader", () => {
  it("reads every metadata value type, arrays, a custom alignment and tensor infos as the gguf package wrote them", () => {
    const g = readGGUF(fixture);
    expect(isGGUFFile(fixture)).toBe(true);
    expect(g.version).toBe(3);
    expect(g.alignment).toBe(64);
    expect(g.dataStart % 64).toBe(0);
    const want = new Map(Object.entries(expected.metadata).map(([k, v]) => [k, fromJson(v)]));
    expect(g.metadata).toEqual(want);
    expect(g.metadata.get("t.u64_big")).toBe(2n ** 64n - 1n);
    expect(g.metadata.get("t.i64_big")).toBe(-(2n ** 63n));
    expect(g.metadata.get("t.u64")).toBe(2 ** 53 - 1);
    expect([...g.tensors.keys()]).toEqual(Object.keys(expected.tensors));
    const bytes = fs.readFileSync(fixture);
    for (const [name, t] of Object.entries(expected.tensors)) {
      const info = g.tensors.get(name)!;
      expect(info.type).toBe(t.type);
      expect(info.dims).toEqual(t.dims);
      expect(info.shape).toEqual([...t.dims].reverse());
      expect(info.fileOffset % 64).toBe(0);
      if (t.byteLength !== undefined) expect(info.byteLength).toBe(t.byteLength);
      if (t.values && t.type === 0) {
        const got = new Float32Array(bytes.buffer.slice(bytes.byteOffset + info.fileOffset, bytes.byteOffset + info.fileOffset + info.byteLength));
        expect(Array.from(got)).toEqual(t.values.map((v) => Math.fround(v)));
      }
    }
  });

  it("reads version 2 (same layout as 3) and rejects version 1, big-endian files and unknown versions", () => {
    const bytes = Buffer.from(fs.readFileSync(fixture));
    bytes.writeUInt32LE(2, 4);
    expect(parseGGUFBuffer(bytes).version).toBe(2);
    bytes.writeUInt32LE(1, 4);
    expect(errorOf(bytes).message).toMatch(/version 1 .* not supported/);
    bytes.writeUInt32BE(3, 4);
    expect(errorOf(bytes).message).toMatch(/big-endian/);
    bytes.writeUInt32LE(7, 4);
    expect(errorOf(bytes).message).toMatch(/unknown GGUF version 7/);
    bytes.write("GGML", 0);
    expect(errorOf(bytes).message).toMatch(/not a GGUF file/);
    expect(isGGUFFile(path.join(__dirname, "fixtures", "gguf", "reader.expected.json"))).toBe(false);
  });

  it("names the file and the field in every error", () => {
    const good = () => new Builder().header(3, 1, 1).kvU32("general.alignment", 32).tensor("w", [32, 2], 0, 0);
    expect(parseGGUFBuffer(good().data(32, 256).build()).tensors.get("w")!.shape).toEqual([2, 32]);
    const cases: Array<[string, Buffer, RegExp]> = [
      ["too short", Buffer.alloc(10), /too short/],
      ["string past the end", new Builder().header(3, 0, 1).u64(1e12).pad().build(), /metadata\[0\] key: string length 1000000000000 runs past/],
      ["huge string length", new Builder().header(3, 0, 1).u64(2n ** 63n).pad().build(), /metadata\[0\] key length: value \d+ is too large/],
      ["kv count past the file", new Builder().header(3, 0, 1e9).build(), /metadata_kv_count: 1000000000 entries cannot fit/],
      ["tensor count past the file", new Builder().header(3, 1e9, 0).build(), /tensor_count: 1000000000 tensors cannot fit/],
      ["unknown value type", new Builder().header(3, 0, 1).str("k").u32(13).u32(0).pad().build(), /metadata 'k': unknown value type 13/],
      ["array count past the file", new Builder().header(3, 0, 1).str("k").u32(9).u32(4).u64(1e15).build(), /metadata 'k': array of 1000000000000000 elements cannot fit/],
      ["unknown array element type", new Builder().header(3, 0, 1).str("k").u32(9).u32(99).u64(1).pad().build(), /unknown array element type 99/],
      ["bool not 0/1", new Builder().header(3, 0, 1).str("k").u32(7).bytes(Uint8Array.of(2)).u32(0).pad().build(), /metadata 'k': bool byte is 2/],
      ["invalid UTF-8", new Builder().header(3, 0, 1).u64(2).bytes(Uint8Array.of(0xc3, 0x28)).u32(4).u32(1).pad().build(), /not valid UTF-8/],
      ["duplicate key", new Builder().header(3, 0, 2).kvU32("a", 1).kvU32("a", 2).pad().build(), /metadata 'a': duplicate key/],
      ["alignment not a power of two", new Builder().header(3, 0, 1).kvU32("general.alignment", 48).pad().build(), /general.alignment': 48 is not a power of two/],
      ["alignment zero", new Builder().header(3, 0, 1).kvU32("general.alignment", 0).pad().build(), /general.alignment/],
      ["unknown tensor type", new Builder().header(3, 1, 0).tensor("w", [4], 5, 0).data(32, 64).build(), /tensor 'w' type: unknown ggml type 5/],
      ["zero dimension", new Builder().header(3, 1, 0).tensor("w", [4, 0], 0, 0).data(32, 64).build(), /tensor 'w' dims\[1\]: zero-sized/],
      ["five dimensions", new Builder().header(3, 1, 0).tensor("w", [1, 1, 1, 1, 1], 0, 0).data(32, 64).build(), /tensor 'w' n_dims: 5 dimensions/],
      ["no dimension", new Builder().header(3, 1, 0).tensor("w", [], 0, 0).data(32, 64).build(), /tensor 'w' n_dims: 0 dimensions/],
      ["partial block", new Builder().header(3, 1, 0).tensor("w", [16, 2], 2, 0).data(32, 64).build(), /first dimension 16 is not a multiple of the Q4_0 block size 32/],
      ["misaligned offset", new Builder().header(3, 1, 0).tensor("w", [4], 0, 4).data(32, 64).build(), /tensor 'w' offset: 4 is not a multiple of the alignment 32/],
      ["data past the end", new Builder().header(3, 1, 0).tensor("w", [32], 0, 0).data(32, 100).build(), /tensor 'w': data \[0, 128\) runs past the end of the data section \(100 bytes\)/],
      ["overlap", new Builder().header(3, 2, 0).tensor("a", [16], 0, 0).tensor("b", [16], 0, 32).data(32, 128).build(), /tensors 'a' and 'b' overlap/],
      ["duplicate tensor", new Builder().header(3, 2, 0).tensor("a", [8], 0, 0).tensor("a", [8], 0, 32).data(32, 64).build(), /tensor 'a': duplicate tensor name/],
      ["element count overflow", new Builder().header(3, 1, 0).tensor("w", [2 ** 30, 2 ** 30, 2 ** 30], 0, 0).build(), /tensor 'w': element count is too large/],
      ["nested arrays too deep", (() => {
        const b = new Builder().header(3, 0, 1).str("k").u32(9);
        for (let i = 0; i < 9; i++) b.u32(9).u64(1);
        return b.u32(4).u64(1).u32(0).pad().build();
      })(), /arrays nested deeper than 8/],
    ];
    for (const [what, bytes, re] of cases) {
      const e = errorOf(bytes);
      expect(e.file, what).toBe("x.gguf");
      expect(e.message, what).toMatch(/^x\.gguf: /);
      expect(e.message, what).toMatch(re);
    }
  });

  it("gives an InvalidFileError for every truncation of a valid file", () => {
    const bytes = fs.readFileSync(fixture);
    const g = parseGGUFBuffer(bytes);
    const lastTensorEnd = Math.max(...[...g.tensors.values()].map((t) => t.fileOffset + t.byteLength));
    for (let n = 0; n < lastTensorEnd; n++) errorOf(bytes.subarray(0, n));
  });

  it("survives 12,000 mutated headers with typed errors only (no crash, no hang, bounded memory)", () => {
    const base = fs.readFileSync(fixture);
    const headerEnd = parseGGUFBuffer(base).dataStart;
    const rng = mulberry32(17);
    const int = (n: number) => Math.floor(rng() * n);
    const interesting = [0n, 1n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n, 0xffffffffn, 255n, 64n];
    let accepted = 0, rejected = 0;
    const t0 = performance.now();
    for (let i = 0; i < 12_000; i++) {
      let b = Buffer.from(base);
      const edits = 1 + int(4);
      for (let e = 0; e < edits; e++) {
        const at = int(headerEnd);
        switch (int(5)) {
          case 0: // flip a bit
            b[at] ^= 1 << int(8);
            break;
          case 1: // random byte
            b[at] = int(256);
            break;
          case 2: // an interesting u64 at a random place (hits counts, lengths, offsets and dims)
            if (at + 8 <= b.length) b.writeBigUInt64LE(interesting[int(interesting.length)], at);
            break;
          case 3: // an interesting u32 (types, n_dims, version)
            if (at + 4 <= b.length) b.writeUInt32LE(Number(interesting[int(interesting.length)] & 0xffffffffn), at);
            break;
          case 4: // truncate or cut a piece out
            b = rng() < 0.5 ? b.subarray(0, at) : Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + int(16))]);
            break;
        }
      }
      try {
        parseGGUFBuffer(b, "fuzz.gguf");
        accepted++;
      } catch (e) {
        if (!(e instanceof InvalidFileError)) throw new Error(`mutation ${i}: ${(e as Error).stack}`);
        expect(e.file).toBe("fuzz.gguf");
        rejected++;
      }
    }
    const ms = performance.now() - t0;
    expect(accepted + rejected).toBe(12_000);
    expect(rejected).toBeGreaterThan(6_000); // most mutations break something
    expect(ms / 12_000).toBeLessThan(50); // no mutation makes parsing hang
  });

  it("typed metadata getters name the key", () => {
    const g = readGGUF(fixture);
    const m = new GGUFMetadata("f.gguf", g.metadata);
    expect(m.uint("t.u32")).toBe(4294967295);
    expect(m.string("t.string")).toBe("héllo ✓ 中文 🙂");
    expect(m.string("nope", null)).toBeNull();
    expect(m.bool("t.bool", false)).toBe(true);
    expect(m.stringArray("a.str")).toEqual(["a b", "", "ĠÄ"]);
    expect(() => m.uint("t.i8")).toThrow(/f\.gguf: metadata 't\.i8' must be a non-negative integer \(got number -128\)/);
    expect(() => m.string("missing.key")).toThrow(/metadata 'missing\.key' is missing/);
    expect(() => m.number("t.string")).toThrow(InvalidFileError);
    expect(() => m.uint("t.u64_big")).toThrow(/must be a non-negative integer/);
    const v: GGUFMetadataValue | undefined = g.metadata.get("a.nested");
    expect(v).toEqual([[1, 2], [3]]);
  });

  const real = smollm2GGUF();
  it.skipIf(!real)(`reads the SmolLM2-135M-Instruct GGUF header${real ? "" : ` (skipped: ${SMOLLM2_MISSING})`}`, () => {
    const g = readGGUF(real!);
    const m = new GGUFMetadata(real!, g.metadata);
    expect(m.string("general.architecture")).toBe("llama");
    expect(m.uint("llama.block_count")).toBe(30);
    expect(g.tensors.size).toBe(272);
    expect(g.tensors.get("token_embd.weight")).toMatchObject({ typeName: "Q8_0", shape: [49152, 576] });
    expect(m.stringArray("tokenizer.ggml.tokens").length).toBe(49152);
  });
});
