/** The safetensors writer (ts/safetensors.ts is the reader and describes the format). */
import * as fs from "node:fs";
import { f32BitsToBf16Bits, f32BitsToF16Bits } from "./half";
import { CHUNK_BYTES, DTYPE_SIZES, elementCount, HOST_IS_LE, METADATA_KEY, swapInPlace } from "./safetensors";

/** The dtypes writeSafetensors writes. */
export type WritableDtype = "F32" | "F16" | "BF16" | "I32" | "I64";

/** One tensor to write: its dtype, shape and data (converted while writing where the dtype asks for it). */
export interface WritableTensor {
  dtype: WritableDtype;
  shape: number[];
  /**
   * F32: Float32Array. F16/BF16: Float32Array (rounded to nearest even) or Uint16Array of raw bits.
   * I32: Int32Array. I64: BigInt64Array or Int32Array (widened).
   */
  data: Float32Array | Uint16Array | Int32Array | BigInt64Array;
}

/**
 * Writes tensors to `file` atomically (a temporary file renamed into place), names sorted, header padded
 * to 8 bytes so the data section is aligned.
 */
export function writeSafetensors(file: string, tensors: Record<string, WritableTensor>, metadata?: Record<string, string>): void {
  const names = Object.keys(tensors).sort();
  const entries: string[] = [];
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") throw new TypeError(`metadata value for ${JSON.stringify(k)} is not a string`);
    }
    entries.push(`${JSON.stringify(METADATA_KEY)}:${JSON.stringify(metadata)}`);
  }
  let offset = 0;
  for (const name of names) {
    if (name === METADATA_KEY) throw new TypeError(`"${METADATA_KEY}" cannot be used as a tensor name`);
    const t = tensors[name];
    checkWritable(name, t);
    const end = offset + elementCount(t.shape) * DTYPE_SIZES[t.dtype];
    entries.push(`${JSON.stringify(name)}:${JSON.stringify({ dtype: t.dtype, shape: t.shape, data_offsets: [offset, end] })}`);
    offset = end;
  }
  // Built by hand: an object literal would move integer-like tensor names ahead of the sorted order.
  let headerText = `{${entries.join(",")}}`;
  headerText += " ".repeat((8 - (Buffer.byteLength(headerText) % 8)) % 8);
  const header = Buffer.from(headerText, "utf8");
  const lengthField = Buffer.alloc(8);
  lengthField.writeBigUInt64LE(BigInt(header.byteLength));

  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, "w");
  try {
    writeAll(fd, lengthField);
    writeAll(fd, header);
    for (const name of names) writeTensorData(fd, tensors[name]);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  } catch (err) {
    try {
      fs.closeSync(fd);
    } catch {
      // already closed
    }
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

function checkWritable(name: string, t: WritableTensor): void {
  const where = `tensor ${JSON.stringify(name)}`;
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new TypeError(`${where}: shape ${JSON.stringify(t.shape)} must be non-negative integers`);
  }
  const ok =
    (t.dtype === "F32" && t.data instanceof Float32Array) ||
    ((t.dtype === "F16" || t.dtype === "BF16") && (t.data instanceof Float32Array || t.data instanceof Uint16Array)) ||
    (t.dtype === "I32" && t.data instanceof Int32Array) ||
    (t.dtype === "I64" && (t.data instanceof BigInt64Array || t.data instanceof Int32Array));
  if (!ok) throw new TypeError(`${where}: ${t.data?.constructor?.name} data cannot be written as ${t.dtype}`);
  const n = elementCount(t.shape);
  if (t.data.length !== n) throw new RangeError(`${where}: shape ${JSON.stringify(t.shape)} needs ${n} elements, data has ${t.data.length}`);
}

function writeTensorData(fd: number, t: WritableTensor): void {
  const elemSize = DTYPE_SIZES[t.dtype];
  const data = t.data;
  const sameLayout = data.BYTES_PER_ELEMENT === elemSize;
  if (sameLayout) {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (HOST_IS_LE) return writeAll(fd, bytes);
    for (let off = 0; off < bytes.byteLength; off += CHUNK_BYTES) {
      const chunk = Buffer.from(bytes.subarray(off, off + CHUNK_BYTES));
      swapInPlace(chunk, elemSize);
      writeAll(fd, chunk);
    }
    return;
  }

  // Converting cases (f32 -> f16/bf16, i32 -> i64): convert chunk by chunk to bound memory.
  const perChunk = CHUNK_BYTES / elemSize;
  const scratch = Buffer.allocUnsafeSlow(Math.min(CHUNK_BYTES, data.length * elemSize));
  for (let first = 0; first < data.length; first += perChunk) {
    const count = Math.min(perChunk, data.length - first);
    const chunk = scratch.subarray(0, count * elemSize);
    if (t.dtype === "I64") {
      const src = data as Int32Array;
      for (let i = 0; i < count; i++) chunk.writeBigInt64LE(BigInt(src[first + i]), i * 8);
    } else {
      const src = data as Float32Array;
      const srcBits = new Uint32Array(src.buffer, src.byteOffset + first * 4, count);
      const convert = t.dtype === "F16" ? f32BitsToF16Bits : f32BitsToBf16Bits;
      for (let i = 0; i < count; i++) chunk.writeUInt16LE(convert(srcBits[i]), i * 2);
    }
    writeAll(fd, chunk);
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.byteLength) done += fs.writeSync(fd, bytes, done, bytes.byteLength - done);
}
