/**
 * Reader for the safetensors format (the writer is ts/safetensors_write.ts, float16/bfloat16 in ts/half.ts) (https://github.com/huggingface/safetensors):
 *
 *   [u64 little-endian N][N bytes of UTF-8 JSON header][tensor data]
 *
 * The header maps tensor names to {dtype, shape, data_offsets: [begin, end]} with offsets relative to
 * the start of the data section, plus an optional "__metadata__" string map.
 *
 * Model files come from users, so everything in the header is validated before any offset is trusted,
 * and every problem is reported as an InvalidFileError naming the file and the offending tensor/field.
 * Tensor data is streamed from disk in bounded chunks, so loading a multi-GB tensor never needs a second
 * copy of it in memory.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DisposedError, InvalidFileError, UnsupportedModelError } from "./errors";
import { f16Table } from "./half";

/** Bytes per element of every dtype the format defines (sub-byte types are not supported). */
export const DTYPE_SIZES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
} as const;

export type SafetensorsDtype = keyof typeof DTYPE_SIZES;

/** One tensor's entry in the header. `dataOffsets` are relative to the start of the data section. */
export interface SafetensorsEntry {
  dtype: SafetensorsDtype;
  shape: number[];
  dataOffsets: [number, number];
}

export interface SafetensorsHeader {
  /** The path the header was read from; used in error messages. */
  file: string;
  fileSize: number;
  /** Absolute file offset of the data section (8 + header length). */
  dataStart: number;
  metadata: Record<string, string>;
  /** A Map rather than an object so tensor names like "__proto__" cannot alias object internals. */
  tensors: Map<string, SafetensorsEntry>;
}

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Number of elements (product of shape). */
  size: number;
  byteLength: number;
  /** The file holding the data (a shard, for sharded checkpoints). */
  file: string;
}

/** A safetensors file or sharded checkpoint opened for random access; file descriptors stay open until close(). */
export interface SafetensorsReader {
  readonly path: string;
  readonly metadata: Readonly<Record<string, string>>;
  names(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  /** Reads a floating-point tensor (F32/F16/BF16/F64) as float32 into `out` (length must equal the element count) or a new array. */
  readF32(name: string, out?: Float32Array): Float32Array;
  /** Reads an integer tensor (I32, or I64 whose values fit in int32) into `out` or a new array. */
  readI32(name: string, out?: Int32Array): Int32Array;
  close(): void;
}

/** The format's 100 MB cap on header size; larger values indicate a corrupt or hostile file. */
export const MAX_HEADER_BYTES = 100_000_000;

/** Tensors are moved between disk and memory in chunks of this size (a multiple of every element size). */
export const CHUNK_BYTES = 4 << 20;

/** Whether this machine stores numbers little-endian, as the format does. */
export const HOST_IS_LE = os.endianness() === "LE";

/** The header key of the string-to-string metadata map. */
export const METADATA_KEY = "__metadata__";

// ---------------------------------------------------------------------------------------------- header

/** Reads and validates the header of the safetensors file at `file`. Reads only the header bytes. */
export function readSafetensorsHeader(file: string): SafetensorsHeader {
  const fd = openForRead(file);
  try {
    return readHeaderFromFd(fd, file);
  } finally {
    fs.closeSync(fd);
  }
}

/** Validates the header of a complete safetensors file held in memory. */
export function parseSafetensorsBuffer(bytes: Uint8Array, file = "<buffer>"): SafetensorsHeader {
  const headerLength = checkHeaderLength(bytes.subarray(0, 8), bytes.byteLength, file);
  return parseHeaderJson(bytes.subarray(8, 8 + headerLength), bytes.byteLength, file);
}

function openForRead(file: string): number {
  try {
    return fs.openSync(file, "r");
  } catch (err) {
    throw new InvalidFileError(file, `cannot open: ${(err as Error).message}`, { cause: err });
  }
}

function readHeaderFromFd(fd: number, file: string): SafetensorsHeader {
  const fileSize = fs.fstatSync(fd).size;
  const lengthField = new Uint8Array(Math.min(8, fileSize));
  readExactly(fd, file, 0, lengthField, "header length");
  const headerLength = checkHeaderLength(lengthField, fileSize, file);
  const headerBytes = new Uint8Array(headerLength);
  readExactly(fd, file, 8, headerBytes, "header");
  return parseHeaderJson(headerBytes, fileSize, file);
}

function checkHeaderLength(lengthField: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < 8 || lengthField.byteLength < 8) {
    throw new InvalidFileError(file, `file is ${fileSize} bytes, too short for the 8-byte safetensors header length`);
  }
  const view = new DataView(lengthField.buffer, lengthField.byteOffset, 8);
  const length = view.getBigUint64(0, true);
  if (length > BigInt(MAX_HEADER_BYTES)) {
    throw new InvalidFileError(file, `header length ${length} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const n = Number(length);
  if (n > fileSize - 8) {
    throw new InvalidFileError(file, `header length ${n} is larger than the ${fileSize - 8} bytes after the length field`);
  }
  return n;
}

function parseHeaderJson(headerBytes: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch (err) {
    throw new InvalidFileError(file, "header is not valid UTF-8", { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new InvalidFileError(file, `header is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!isPlainObject(json)) {
    throw new InvalidFileError(file, "header JSON is not an object");
  }

  const dataStart = 8 + headerBytes.byteLength;
  const dataSize = fileSize - dataStart;
  const metadata: Record<string, string> = Object.create(null);
  const tensors = new Map<string, SafetensorsEntry>();

  for (const name of Object.keys(json)) {
    const value = json[name];
    if (name === METADATA_KEY) {
      if (!isPlainObject(value)) throw new InvalidFileError(file, `"${METADATA_KEY}" is not an object`);
      for (const key of Object.keys(value)) {
        const v = value[key];
        if (typeof v !== "string") {
          throw new InvalidFileError(file, `"${METADATA_KEY}" entry ${JSON.stringify(key)} is not a string`);
        }
        metadata[key] = v;
      }
      continue;
    }
    tensors.set(name, parseEntry(name, value, dataSize, file));
  }

  checkNoOverlap(tensors, file);
  return { file, fileSize, dataStart, metadata, tensors };
}

function parseEntry(name: string, value: unknown, dataSize: number, file: string): SafetensorsEntry {
  const where = `tensor ${JSON.stringify(name)}`;
  if (!isPlainObject(value)) throw new InvalidFileError(file, `${where}: entry is not an object`);
  for (const field of ["dtype", "shape", "data_offsets"]) {
    if (!Object.prototype.hasOwnProperty.call(value, field)) throw new InvalidFileError(file, `${where}: missing "${field}"`);
  }

  const dtype = value.dtype;
  if (typeof dtype !== "string" || !Object.prototype.hasOwnProperty.call(DTYPE_SIZES, dtype)) {
    throw new InvalidFileError(file, `${where}: unknown dtype ${JSON.stringify(dtype)}`);
  }

  const shape = value.shape;
  if (!Array.isArray(shape)) throw new InvalidFileError(file, `${where}: "shape" is not an array`);
  let size = 1;
  for (const dim of shape) {
    if (!Number.isSafeInteger(dim) || dim < 0) {
      throw new InvalidFileError(file, `${where}: "shape" ${JSON.stringify(shape)} has a dimension that is not a non-negative integer`);
    }
    size *= dim;
    // Past 2^53 the product is inexact and could spuriously match the byte range below.
    if (size > Number.MAX_SAFE_INTEGER) throw new InvalidFileError(file, `${where}: "shape" ${JSON.stringify(shape)} is too large`);
  }

  const offsets = value.data_offsets;
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !Number.isSafeInteger(offsets[0]) ||
    !Number.isSafeInteger(offsets[1]) ||
    offsets[0] < 0 ||
    offsets[0] > offsets[1]
  ) {
    throw new InvalidFileError(file, `${where}: "data_offsets" ${JSON.stringify(offsets)} is not [begin, end] integers with 0 <= begin <= end`);
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataSize) {
    throw new InvalidFileError(file, `${where}: "data_offsets" end ${end} is beyond the ${dataSize}-byte data section (file truncated?)`);
  }

  const expected = size * DTYPE_SIZES[dtype as SafetensorsDtype];
  if (expected !== end - begin) {
    throw new InvalidFileError(
      file,
      `${where}: ${dtype} ${JSON.stringify(shape)} needs ${expected} bytes but "data_offsets" [${begin}, ${end}] span ${end - begin}`,
    );
  }
  return { dtype: dtype as SafetensorsDtype, shape: shape.slice(), dataOffsets: [begin, end] };
}

function checkNoOverlap(tensors: Map<string, SafetensorsEntry>, file: string): void {
  // Empty tensors own no bytes, so they may sit anywhere, including inside another tensor's range.
  const ranges = [...tensors]
    .filter(([, e]) => e.dataOffsets[1] > e.dataOffsets[0])
    .sort((a, b) => a[1].dataOffsets[0] - b[1].dataOffsets[0]);
  for (let i = 1; i < ranges.length; i++) {
    const [prevName, prev] = ranges[i - 1];
    const [name, cur] = ranges[i];
    if (cur.dataOffsets[0] < prev.dataOffsets[1]) {
      throw new InvalidFileError(
        file,
        `tensor ${JSON.stringify(name)} [${cur.dataOffsets}] overlaps tensor ${JSON.stringify(prevName)} [${prev.dataOffsets}]`,
      );
    }
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------------------------- tensor data

/** Reads one tensor as float32, touching only its bytes on disk. `file` is a path or an open file descriptor. */
export function readTensorF32(file: string | number, header: SafetensorsHeader, name: string, out?: Float32Array): Float32Array {
  return withFd(file, header, (fd) => readF32FromFd(fd, header, name, out));
}

/** Reads one integer tensor (I32, or I64 within int32 range) as int32. `file` is a path or an open file descriptor. */
export function readTensorI32(file: string | number, header: SafetensorsHeader, name: string, out?: Int32Array): Int32Array {
  return withFd(file, header, (fd) => readI32FromFd(fd, header, name, out));
}

function withFd<T>(file: string | number, header: SafetensorsHeader, fn: (fd: number) => T): T {
  if (typeof file === "number") return fn(file);
  const fd = openForRead(file);
  try {
    // The header may have been read from another version of the file; a size change means offsets are stale.
    const size = fs.fstatSync(fd).size;
    if (size !== header.fileSize) {
      throw new InvalidFileError(file, `file is ${size} bytes but its header was read when it was ${header.fileSize} bytes`);
    }
    return fn(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function lookup(header: SafetensorsHeader, name: string): SafetensorsEntry {
  const entry = header.tensors.get(name);
  if (!entry) throw new InvalidFileError(header.file, `no tensor named ${JSON.stringify(name)}`);
  return entry;
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function checkOut(out: { length: number } | undefined, n: number, name: string): void {
  if (out && out.length !== n) {
    throw new RangeError(`output array for tensor ${JSON.stringify(name)} has length ${out.length}, expected ${n}`);
  }
}

function readF32FromFd(fd: number, header: SafetensorsHeader, name: string, out?: Float32Array): Float32Array {
  const entry = lookup(header, name);
  const n = elementCount(entry.shape);
  checkOut(out, n, name);
  const result = out ?? new Float32Array(n);
  const position = header.dataStart + entry.dataOffsets[0];

  switch (entry.dtype) {
    case "F32": {
      // Same layout on little-endian hosts: read straight into the destination, no scratch buffer.
      const bytes = new Uint8Array(result.buffer, result.byteOffset, n * 4);
      for (let off = 0; off < bytes.byteLength; off += CHUNK_BYTES) {
        const chunk = bytes.subarray(off, Math.min(off + CHUNK_BYTES, bytes.byteLength));
        readExactly(fd, header.file, position + off, chunk, name);
        if (!HOST_IS_LE) Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).swap32();
      }
      return result;
    }
    case "F16": {
      const table = f16Table();
      streamChunks(fd, header.file, name, position, n, 2, (chunk, first) => {
        const src = new Uint16Array(chunk.buffer, chunk.byteOffset, chunk.byteLength / 2);
        for (let i = 0; i < src.length; i++) result[first + i] = table[src[i]];
      });
      return result;
    }
    case "BF16": {
      const bits = new Uint32Array(result.buffer, result.byteOffset, n);
      streamChunks(fd, header.file, name, position, n, 2, (chunk, first) => {
        const src = new Uint16Array(chunk.buffer, chunk.byteOffset, chunk.byteLength / 2);
        for (let i = 0; i < src.length; i++) bits[first + i] = src[i] << 16;
      });
      return result;
    }
    case "F64": {
      streamChunks(fd, header.file, name, position, n, 8, (chunk, first) => {
        const src = new Float64Array(chunk.buffer, chunk.byteOffset, chunk.byteLength / 8);
        for (let i = 0; i < src.length; i++) result[first + i] = src[i];
      });
      return result;
    }
    default:
      throw new UnsupportedModelError(
        `${header.file}: tensor ${JSON.stringify(name)} has dtype ${entry.dtype}; only F32, F16, BF16 and F64 can be read as float32`,
      );
  }
}

function readI32FromFd(fd: number, header: SafetensorsHeader, name: string, out?: Int32Array): Int32Array {
  const entry = lookup(header, name);
  const n = elementCount(entry.shape);
  checkOut(out, n, name);
  const result = out ?? new Int32Array(n);
  const position = header.dataStart + entry.dataOffsets[0];

  switch (entry.dtype) {
    case "I32":
      streamChunks(fd, header.file, name, position, n, 4, (chunk, first) => {
        result.set(new Int32Array(chunk.buffer, chunk.byteOffset, chunk.byteLength / 4), first);
      });
      return result;
    case "I64":
      streamChunks(fd, header.file, name, position, n, 8, (chunk, first) => {
        const src = new BigInt64Array(chunk.buffer, chunk.byteOffset, chunk.byteLength / 8);
        for (let i = 0; i < src.length; i++) {
          const v = src[i];
          if (v < -2147483648n || v > 2147483647n) {
            throw new InvalidFileError(header.file, `tensor ${JSON.stringify(name)}: element ${first + i} = ${v} does not fit in int32`);
          }
          result[first + i] = Number(v);
        }
      });
      return result;
    default:
      throw new UnsupportedModelError(
        `${header.file}: tensor ${JSON.stringify(name)} has dtype ${entry.dtype}; only I32 and I64 can be read as int32`,
      );
  }
}

/**
 * Reads `n` elements of `elemSize` bytes starting at `position`, handing each chunk (already in host byte
 * order, aligned for typed-array views) to `consume` with the index of its first element.
 */
function streamChunks(
  fd: number,
  file: string,
  name: string,
  position: number,
  n: number,
  elemSize: number,
  consume: (chunk: Uint8Array, firstElement: number) => void,
): void {
  const total = n * elemSize;
  // allocUnsafeSlow: an unpooled buffer starts at byteOffset 0, so 8-byte typed views over it are aligned.
  const scratch = Buffer.allocUnsafeSlow(Math.min(CHUNK_BYTES, total));
  for (let off = 0; off < total; off += CHUNK_BYTES) {
    const chunk = scratch.subarray(0, Math.min(CHUNK_BYTES, total - off));
    readExactly(fd, file, position + off, chunk, name);
    if (!HOST_IS_LE) swapInPlace(chunk, elemSize);
    consume(chunk, off / elemSize);
  }
}

function readExactly(fd: number, file: string, position: number, dest: Uint8Array, what: string): void {
  let done = 0;
  while (done < dest.byteLength) {
    const got = fs.readSync(fd, dest, done, dest.byteLength - done, position + done);
    if (got === 0) {
      throw new InvalidFileError(file, `unexpected end of file reading ${what} at byte ${position + done}`);
    }
    done += got;
  }
}

/** Reverses the byte order of every element (big-endian hosts). */
export function swapInPlace(bytes: Uint8Array, elemSize: number): void {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (elemSize === 2) buf.swap16();
  else if (elemSize === 4) buf.swap32();
  else if (elemSize === 8) buf.swap64();
}

// ---------------------------------------------------------------------------------------------- object API

/** Opens one safetensors file, validating its header; the descriptor stays open until close(). */
export function openSafetensors(file: string): SafetensorsReader {
  const fd = openForRead(file);
  let header: SafetensorsHeader;
  try {
    header = readHeaderFromFd(fd, file);
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  let open = true;
  const live = (): number => {
    if (!open) throw new DisposedError(`safetensors reader for ${file}`);
    return fd;
  };
  return {
    path: file,
    metadata: header.metadata,
    names: () => {
      live();
      return [...header.tensors.keys()].sort();
    },
    has: (name) => {
      live();
      return header.tensors.has(name);
    },
    info: (name) => {
      live();
      return entryInfo(name, lookup(header, name), file);
    },
    readF32: (name, out) => readF32FromFd(live(), header, name, out),
    readI32: (name, out) => readI32FromFd(live(), header, name, out),
    close: () => {
      if (open) {
        open = false;
        fs.closeSync(fd);
      }
    },
  };
}

function entryInfo(name: string, e: SafetensorsEntry, file: string): TensorInfo {
  return {
    name,
    dtype: e.dtype,
    shape: e.shape.slice(),
    size: elementCount(e.shape),
    byteLength: e.dataOffsets[1] - e.dataOffsets[0],
    file,
  };
}

/**
 * Opens a checkpoint directory as one view: `model.safetensors` if present, else the shards listed by
 * `model.safetensors.index.json`. A path to a .safetensors file or an index file is also accepted.
 */
export function openSafetensorsDir(dir: string): SafetensorsReader {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(dir);
  } catch (err) {
    throw new InvalidFileError(dir, `cannot open: ${(err as Error).message}`, { cause: err });
  }
  if (stat.isFile()) return dir.endsWith(".json") ? openIndex(dir) : openSafetensors(dir);

  const single = path.join(dir, "model.safetensors");
  if (fs.existsSync(single)) return openSafetensors(single);
  const index = path.join(dir, "model.safetensors.index.json");
  if (fs.existsSync(index)) return openIndex(index);
  throw new InvalidFileError(dir, "contains neither model.safetensors nor model.safetensors.index.json");
}

function openIndex(indexPath: string): SafetensorsReader {
  const weightMap = readWeightMap(indexPath);
  const dir = path.dirname(indexPath);
  const shards = new Map<string, SafetensorsReader>();
  const owner = new Map<string, SafetensorsReader>();
  try {
    for (const [name, shardName] of weightMap) {
      let shard = shards.get(shardName);
      if (!shard) {
        const shardPath = path.join(dir, shardName);
        if (!fs.existsSync(shardPath)) {
          throw new InvalidFileError(indexPath, `shard ${JSON.stringify(shardName)} (holding tensor ${JSON.stringify(name)}) does not exist`);
        }
        shard = openSafetensors(shardPath);
        shards.set(shardName, shard);
      }
      if (!shard.has(name)) {
        throw new InvalidFileError(indexPath, `tensor ${JSON.stringify(name)} is mapped to shard ${JSON.stringify(shardName)}, which does not contain it`);
      }
      owner.set(name, shard);
    }
  } catch (err) {
    for (const s of shards.values()) s.close();
    throw err;
  }

  let open = true;
  const live = (): void => {
    if (!open) throw new DisposedError(`safetensors reader for ${indexPath}`);
  };
  const shardFor = (name: string): SafetensorsReader => {
    live();
    const shard = owner.get(name);
    if (!shard) throw new InvalidFileError(indexPath, `no tensor named ${JSON.stringify(name)} in "weight_map"`);
    return shard;
  };
  const metadata: Record<string, string> = Object.create(null);
  for (const s of shards.values()) Object.assign(metadata, s.metadata);
  return {
    path: indexPath,
    metadata,
    names: () => {
      live();
      return [...owner.keys()].sort();
    },
    has: (name) => {
      live();
      return owner.has(name);
    },
    info: (name) => shardFor(name).info(name),
    readF32: (name, out) => shardFor(name).readF32(name, out),
    readI32: (name, out) => shardFor(name).readI32(name, out),
    close: () => {
      if (open) {
        open = false;
        for (const s of shards.values()) s.close();
      }
    },
  };
}

function readWeightMap(indexPath: string): Map<string, string> {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(indexPath, "utf8"));
  } catch (err) {
    throw new InvalidFileError(indexPath, `cannot read index JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!isPlainObject(json) || !isPlainObject(json.weight_map)) {
    throw new InvalidFileError(indexPath, `missing "weight_map" object`);
  }
  const map = new Map<string, string>();
  for (const name of Object.keys(json.weight_map)) {
    const shard = json.weight_map[name];
    // Shards must be plain file names next to the index: an index must not make us read arbitrary paths.
    if (typeof shard !== "string" || shard === "" || shard !== path.basename(shard) || shard === "." || shard === "..") {
      throw new InvalidFileError(indexPath, `"weight_map" entry for tensor ${JSON.stringify(name)} is not a shard file name: ${JSON.stringify(shard)}`);
    }
    map.set(name, shard);
  }
  return map;
}
