/**
 * Reader for GGUF files (llama.cpp's model format, versions 2 and 3):
 *
 *   u32 magic "GGUF" | u32 version | u64 tensor count | u64 metadata count
 *   metadata:  { string key, u32 value type, value }*
 *   tensors:   { string name, u32 n_dims, u64 dims[n_dims], u32 ggml type, u64 offset }*
 *   padding to `general.alignment` (default 32), then the data section; every offset is relative to it.
 *
 * Strings are u64 length + UTF-8 bytes; arrays are u32 element type + u64 count + elements (arrays may nest).
 * Files come from users, so the header is parsed defensively: every count, length and offset is checked against
 * the bytes that are left before anything is allocated (no allocation larger than the file), and every problem is
 * an InvalidFileError naming the file and the field. Only the header is read here; tensor data is streamed by the
 * model loader.
 */
import * as fs from "node:fs";
import { InvalidFileError } from "./errors";

export type GGUFMetadataValue = number | bigint | boolean | string | GGUFMetadataValue[];

/** ggml tensor types: name, elements per block, bytes per block (gguf.constants.GGML_QUANT_SIZES). */
export const GGML_TYPES: ReadonlyMap<number, { name: string; blockElems: number; blockBytes: number }> = new Map(
  (
    [
      [0, "F32", 1, 4],
      [1, "F16", 1, 2],
      [2, "Q4_0", 32, 18],
      [3, "Q4_1", 32, 20],
      [6, "Q5_0", 32, 22],
      [7, "Q5_1", 32, 24],
      [8, "Q8_0", 32, 34],
      [9, "Q8_1", 32, 40],
      [10, "Q2_K", 256, 84],
      [11, "Q3_K", 256, 110],
      [12, "Q4_K", 256, 144],
      [13, "Q5_K", 256, 176],
      [14, "Q6_K", 256, 210],
      [15, "Q8_K", 256, 292],
      [16, "IQ2_XXS", 256, 66],
      [17, "IQ2_XS", 256, 74],
      [18, "IQ3_XXS", 256, 98],
      [19, "IQ1_S", 256, 50],
      [20, "IQ4_NL", 32, 18],
      [21, "IQ3_S", 256, 110],
      [22, "IQ2_S", 256, 82],
      [23, "IQ4_XS", 256, 136],
      [24, "I8", 1, 1],
      [25, "I16", 1, 2],
      [26, "I32", 1, 4],
      [27, "I64", 1, 8],
      [28, "F64", 1, 8],
      [29, "IQ1_M", 256, 56],
      [30, "BF16", 1, 2],
      [34, "TQ1_0", 256, 54],
      [35, "TQ2_0", 256, 66],
      [39, "MXFP4", 32, 17],
    ] as const
  ).map(([id, name, blockElems, blockBytes]) => [id, { name, blockElems, blockBytes }]),
);

/** Name of a ggml type id ("Q4_K"), or "type N" for an id this reader does not know. */
export function ggmlTypeName(type: number): string {
  return GGML_TYPES.get(type)?.name ?? `type ${type}`;
}

export interface GGUFTensorInfo {
  name: string;
  /** ggml type id (GGML_TYPES). */
  type: number;
  typeName: string;
  /** Dimensions in ggml order: dims[0] is the innermost (contiguous) one. */
  dims: number[];
  /** The same dimensions in row-major order as PyTorch/Hugging Face write them (dims reversed). */
  shape: number[];
  elements: number;
  byteLength: number;
  /** Absolute offset of the tensor's first byte in the file. */
  fileOffset: number;
}

export interface GGUFFile {
  file: string;
  fileSize: number;
  version: number;
  alignment: number;
  /** Absolute offset of the data section. */
  dataStart: number;
  /** Metadata in file order. A Map, so keys such as "__proto__" stay plain keys. */
  metadata: Map<string, GGUFMetadataValue>;
  /** Tensor infos in file order, by name. */
  tensors: Map<string, GGUFTensorInfo>;
}

const MAGIC = 0x46554747; // "GGUF" read as a little-endian u32

/** Value types of the metadata section. */
const enum VT {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
}

/** Smallest encoded size of one value of each type (strings: their u64 length; arrays: type + count). */
const MIN_SIZE = [1, 1, 2, 2, 4, 4, 4, 1, 8, 12, 8, 8, 8];

/** Deepest nesting of arrays accepted (the format has no limit; real files use 1). */
const MAX_ARRAY_DEPTH = 8;
/** ggml tensors have at most 4 dimensions. */
const MAX_DIMS = 4;

/**
 * Reads the file through a window that is refilled on demand, so a header of any size is parsed with memory
 * proportional to the largest single value (a string), never to the file.
 */
class Cursor {
  pos = 0;
  private buf: Buffer;
  private bufStart = 0;
  private bufEnd = 0;
  constructor(
    private readonly read: (dest: Buffer, offset: number, length: number, position: number) => number,
    readonly file: string,
    readonly size: number,
  ) {
    this.buf = Buffer.allocUnsafe(Math.min(1 << 20, Math.max(size, 16)));
  }

  get remaining(): number {
    return this.size - this.pos;
  }

  fail(field: string, detail: string): never {
    throw new InvalidFileError(this.file, `${field}: ${detail} (at byte ${this.pos})`);
  }

  /** Makes bytes [pos, pos+n) available in the window; `field` names what is being read in the error. */
  private need(n: number, field: string): number {
    if (n > this.remaining) this.fail(field, `needs ${n} bytes, only ${this.remaining} left in the ${this.size}-byte file`);
    if (this.pos >= this.bufStart && this.pos + n <= this.bufEnd) return this.pos - this.bufStart;
    if (n > this.buf.length) this.buf = Buffer.allocUnsafe(Math.max(n, this.buf.length * 2));
    const want = Math.min(this.buf.length, this.size - this.pos);
    let got = 0;
    while (got < want) {
      const r = this.read(this.buf, got, want - got, this.pos + got);
      if (r === 0) this.fail(field, "file ended while reading (was it truncated while open?)");
      got += r;
    }
    this.bufStart = this.pos;
    this.bufEnd = this.pos + got;
    return 0;
  }

  u8(field: string): number {
    const o = this.need(1, field);
    this.pos += 1;
    return this.buf[o];
  }
  u32(field: string): number {
    const o = this.need(4, field);
    this.pos += 4;
    return this.buf.readUInt32LE(o);
  }
  /** A u64 that must fit a JS number exactly (counts, lengths, offsets, dimensions). */
  u64n(field: string): number {
    const o = this.need(8, field);
    this.pos += 8;
    const v = this.buf.readBigUInt64LE(o);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(field, `value ${v} is too large`);
    return Number(v);
  }

  scalar(type: number, field: string): number | bigint | boolean {
    const size = MIN_SIZE[type];
    const o = this.need(size, field);
    this.pos += size;
    const b = this.buf;
    switch (type) {
      case VT.U8:
        return b.readUInt8(o);
      case VT.I8:
        return b.readInt8(o);
      case VT.U16:
        return b.readUInt16LE(o);
      case VT.I16:
        return b.readInt16LE(o);
      case VT.U32:
        return b.readUInt32LE(o);
      case VT.I32:
        return b.readInt32LE(o);
      case VT.F32:
        return b.readFloatLE(o);
      case VT.F64:
        return b.readDoubleLE(o);
      case VT.BOOL: {
        const v = b[o];
        if (v > 1) {
          this.pos -= 1;
          this.fail(field, `bool byte is ${v} (0 or 1)`);
        }
        return v === 1;
      }
      case VT.U64:
        return safe(b.readBigUInt64LE(o));
      case VT.I64:
        return safe(b.readBigInt64LE(o));
    }
    return this.fail(field, `not a scalar type ${type}`);
  }

  string(field: string): string {
    const n = this.u64n(`${field} length`);
    if (n > this.remaining) this.fail(field, `string length ${n} runs past the end of the file (${this.remaining} bytes left)`);
    const o = this.need(n, field);
    this.pos += n;
    const bytes = this.buf.subarray(o, o + n);
    try {
      return decoder.decode(bytes);
    } catch {
      return this.fail(field, "string is not valid UTF-8");
    }
  }

  value(type: number, field: string, depth: number): GGUFMetadataValue {
    if (type === VT.STRING) return this.string(field);
    if (type === VT.ARRAY) {
      if (depth >= MAX_ARRAY_DEPTH) this.fail(field, `arrays nested deeper than ${MAX_ARRAY_DEPTH}`);
      const elemType = this.u32(`${field} element type`);
      if (elemType >= MIN_SIZE.length) this.fail(field, `unknown array element type ${elemType}`);
      const count = this.u64n(`${field} count`);
      // every element takes at least MIN_SIZE bytes: a count the file cannot hold is rejected before allocating
      if (count * MIN_SIZE[elemType] > this.remaining)
        this.fail(field, `array of ${count} elements cannot fit in the ${this.remaining} bytes left`);
      const out: GGUFMetadataValue[] = new Array(count);
      for (let i = 0; i < count; i++) out[i] = this.value(elemType, `${field}[${i}]`, depth + 1);
      return out;
    }
    if (type >= MIN_SIZE.length) this.fail(field, `unknown value type ${type}`);
    return this.scalar(type, field);
  }
}

const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function safe(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Reads and validates the header (metadata and tensor infos) of the GGUF file at `file`. Reads only the header. */
export function readGGUF(file: string): GGUFFile {
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch (err) {
    throw new InvalidFileError(file, `cannot open: ${(err as Error).message}`, { cause: err });
  }
  try {
    const size = fs.fstatSync(fd).size;
    const read = (dest: Buffer, offset: number, length: number, position: number): number => fs.readSync(fd, dest, offset, length, position);
    return parse(new Cursor(read, file, size));
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Parses a GGUF header from bytes in memory. `fileSize` is the size of the whole file when `bytes` holds only its
 * beginning (tensor extents are checked against it); by default the bytes are the whole file.
 */
export function parseGGUFBuffer(bytes: Uint8Array, name = "<buffer>", fileSize = bytes.byteLength): GGUFFile {
  const src = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const read = (dest: Buffer, offset: number, length: number, position: number): number =>
    position >= src.length ? 0 : src.copy(dest, offset, position, Math.min(src.length, position + length));
  return parse(new Cursor(read, name, fileSize));
}

function parse(c: Cursor): GGUFFile {
  if (c.size < 24) c.fail("header", `file is ${c.size} bytes, too short for a GGUF header (24 bytes)`);
  const magic = c.u32("magic");
  if (magic !== MAGIC) c.fail("magic", `not a GGUF file (magic 0x${magic.toString(16).padStart(8, "0")}, expected "GGUF")`);
  const version = c.u32("version");
  if (version === 1) c.fail("version", "GGUF version 1 (2023) is not supported: convert the file again with a current llama.cpp");
  if (version !== 2 && version !== 3) {
    const swapped = ((version & 0xff) << 24) | ((version & 0xff00) << 8) | ((version >>> 8) & 0xff00) | (version >>> 24);
    if (swapped === 2 || swapped === 3) c.fail("version", "big-endian GGUF files are not supported");
    c.fail("version", `unknown GGUF version ${version} (2 and 3 are supported)`);
  }
  const tensorCount = c.u64n("tensor_count");
  const kvCount = c.u64n("metadata_kv_count");
  // the smallest metadata entry is 8 (key length) + 4 (type) + 1 bytes; the smallest tensor info 8 + 4 + 4 + 8
  if (kvCount * 13 > c.remaining) c.fail("metadata_kv_count", `${kvCount} entries cannot fit in the ${c.remaining} bytes left`);
  if (tensorCount * 24 > c.remaining) c.fail("tensor_count", `${tensorCount} tensors cannot fit in the ${c.remaining} bytes left`);

  const metadata = new Map<string, GGUFMetadataValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = c.string(`metadata[${i}] key`);
    if (metadata.has(key)) c.fail(`metadata '${key}'`, "duplicate key");
    const type = c.u32(`metadata '${key}' type`);
    if (type >= MIN_SIZE.length) c.fail(`metadata '${key}'`, `unknown value type ${type}`);
    metadata.set(key, c.value(type, `metadata '${key}'`, 0));
  }

  let alignment = 32;
  if (metadata.has("general.alignment")) {
    const a = metadata.get("general.alignment");
    if (typeof a !== "number" || !Number.isInteger(a) || a <= 0 || (a & (a - 1)) !== 0 || a > 1 << 20)
      throw new InvalidFileError(c.file, `metadata 'general.alignment': ${String(a)} is not a power of two (≤ 1 MiB)`);
    alignment = a;
  }

  const infos: Array<Omit<GGUFTensorInfo, "fileOffset"> & { offset: number }> = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = c.string(`tensor[${i}] name`);
    const field = `tensor '${name}'`;
    if (names.has(name)) c.fail(field, "duplicate tensor name");
    names.add(name);
    const nDims = c.u32(`${field} n_dims`);
    if (nDims < 1 || nDims > MAX_DIMS) c.fail(`${field} n_dims`, `${nDims} dimensions (1 to ${MAX_DIMS})`);
    const dims: number[] = [];
    let elements = 1;
    for (let d = 0; d < nDims; d++) {
      const n = c.u64n(`${field} dims[${d}]`);
      if (n === 0) c.fail(`${field} dims[${d}]`, "zero-sized dimension");
      dims.push(n);
      elements *= n;
      if (elements > Number.MAX_SAFE_INTEGER) c.fail(field, "element count is too large");
    }
    const type = c.u32(`${field} type`);
    const t = GGML_TYPES.get(type);
    if (!t) c.fail(`${field} type`, `unknown ggml type ${type}`);
    if (dims[0] % t.blockElems !== 0)
      c.fail(field, `first dimension ${dims[0]} is not a multiple of the ${t.name} block size ${t.blockElems}`);
    const offset = c.u64n(`${field} offset`);
    if (offset % alignment !== 0) c.fail(`${field} offset`, `${offset} is not a multiple of the alignment ${alignment}`);
    infos.push({
      name,
      type,
      typeName: t.name,
      dims,
      shape: [...dims].reverse(),
      elements,
      byteLength: (elements / t.blockElems) * t.blockBytes,
      offset,
    });
  }

  const dataStart = Math.ceil(c.pos / alignment) * alignment;
  if (dataStart > c.size && infos.length > 0) c.fail("data section", `starts at ${dataStart}, past the end of the ${c.size}-byte file`);
  const dataSize = c.size - dataStart;
  const tensors = new Map<string, GGUFTensorInfo>();
  for (const t of infos) {
    if (t.offset + t.byteLength > dataSize)
      throw new InvalidFileError(
        c.file,
        `tensor '${t.name}': data [${t.offset}, ${t.offset + t.byteLength}) runs past the end of the data section (${dataSize} bytes)`,
      );
    const { offset, ...rest } = t;
    tensors.set(t.name, { ...rest, fileOffset: dataStart + offset });
  }
  const sorted = [...infos].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1], cur = sorted[i];
    if (cur.offset < prev.offset + prev.byteLength)
      throw new InvalidFileError(c.file, `tensors '${prev.name}' and '${cur.name}' overlap in the data section`);
  }
  return { file: c.file, fileSize: c.size, version, alignment, dataStart, metadata, tensors };
}

// ----------------------------------------------------------------------------------------- typed metadata getters

/** Typed access to metadata values; a missing or ill-typed required key is an InvalidFileError naming it. */
export class GGUFMetadata {
  constructor(
    readonly file: string,
    readonly map: ReadonlyMap<string, GGUFMetadataValue>,
  ) {}

  has(key: string): boolean {
    return this.map.has(key);
  }

  private bad(key: string, what: string): never {
    throw new InvalidFileError(this.file, `metadata '${key}' must be ${what} (got ${describe(this.map.get(key))})`);
  }

  string(key: string): string;
  string(key: string, fallback: string | null): string | null;
  string(key: string, fallback?: string | null): string | null {
    const v = this.map.get(key);
    if (v === undefined) {
      if (fallback !== undefined) return fallback;
      throw new InvalidFileError(this.file, `metadata '${key}' is missing`);
    }
    if (typeof v !== "string") this.bad(key, "a string");
    return v;
  }

  /** A non-negative integer (any integer value type). */
  uint(key: string): number;
  uint(key: string, fallback: number | null): number | null;
  uint(key: string, fallback?: number | null): number | null {
    const v = this.map.get(key);
    if (v === undefined) {
      if (fallback !== undefined) return fallback;
      throw new InvalidFileError(this.file, `metadata '${key}' is missing`);
    }
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) this.bad(key, "a non-negative integer");
    return v;
  }

  /** A finite number. */
  number(key: string): number;
  number(key: string, fallback: number | null): number | null;
  number(key: string, fallback?: number | null): number | null {
    const v = this.map.get(key);
    if (v === undefined) {
      if (fallback !== undefined) return fallback;
      throw new InvalidFileError(this.file, `metadata '${key}' is missing`);
    }
    if (typeof v !== "number" || !Number.isFinite(v)) this.bad(key, "a finite number");
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.map.get(key);
    if (v === undefined) return fallback;
    if (typeof v !== "boolean") this.bad(key, "true or false");
    return v;
  }

  stringArray(key: string): string[] {
    const v = this.map.get(key);
    if (v === undefined) throw new InvalidFileError(this.file, `metadata '${key}' is missing`);
    if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) this.bad(key, "an array of strings");
    return v as string[];
  }

  numberArray(key: string): number[] | null {
    const v = this.map.get(key);
    if (v === undefined) return null;
    if (!Array.isArray(v) || v.some((x) => typeof x !== "number")) this.bad(key, "an array of numbers");
    return v as number[];
  }
}

function describe(v: GGUFMetadataValue | undefined): string {
  if (v === undefined) return "nothing";
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? v.slice(0, 40) + "…" : v);
  return `${typeof v} ${String(v)}`;
}

/** Whether `file` starts with the GGUF magic (a cheap check for choosing a loader). */
export function isGGUFFile(file: string): boolean {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, "r");
    const b = Buffer.alloc(4);
    return fs.readSync(fd, b, 0, 4, 0) === 4 && b.readUInt32LE(0) === MAGIC;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
