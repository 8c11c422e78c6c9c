/** Labelled examples from JSONL or CSV, with errors that name the file and line. */
import * as fs from "node:fs";
import { parse as parseCsv } from "csv-parse/sync";
import { InvalidDataError } from "../errors";
import { firstInvalidUtf8 } from "../yaml";

export type TextEncoding = "utf-8" | "latin1" | "utf-16le";

/**
 * The text of a data file: UTF-8 with or without a BOM (stripped), or `encoding` when set. Bytes that are not valid
 * in the encoding are an error naming the line and byte offset, never replacement characters.
 */
export function decodeDataFile(file: string, bytes: Uint8Array, encoding: TextEncoding = "utf-8"): string {
  if (encoding === "latin1") return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
  if (encoding === "utf-16le") {
    let src: string;
    try {
      src = new TextDecoder("utf-16le", { fatal: true }).decode(bytes); // drops a BOM
    } catch (e) {
      throw new InvalidDataError(file, `not valid UTF-16LE (${bytes.length % 2 ? "an odd number of bytes" : "an unpaired surrogate"})`, { cause: e });
    }
    return src;
  }
  if (bytes.length >= 2 && ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff)))
    throw new InvalidDataError(file, `starts with a UTF-16 byte-order mark; convert it to UTF-8 or set data.encoding: utf-16le`, { line: 1 });
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes); // ignoreBOM false: a UTF-8 BOM is stripped
  } catch {
    const { line, byte } = firstInvalidUtf8(bytes);
    throw new InvalidDataError(
      file,
      `line ${line}: not UTF-8 (invalid byte 0x${(bytes[byte] ?? 0).toString(16).padStart(2, "0")} at byte offset ${byte}); convert the file to UTF-8 or set data.encoding (latin1, utf-16le)`,
      { line },
    );
  }
}

export interface Example {
  text: string;
  /** Index into config.classes. */
  cls: number;
  /** The line it starts on in its file. */
  line?: number;
}

/** The rows of a JSONL or CSV file (objects, with the line each starts on), decoded and parsed with errors naming the line. */
export function readDataRows(file: string, opts: { format?: "jsonl" | "csv"; encoding?: TextEncoding } = {}): { row: Record<string, unknown>; line: number }[] {
  const format = opts.format ?? (file.toLowerCase().endsWith(".csv") ? "csv" : "jsonl");
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new InvalidDataError(file, `cannot read: ${err.code === "EISDIR" ? "it is a folder" : err.code === "ENOENT" ? "no such file" : err.message}`, { cause: e });
  }
  const src = decodeDataFile(file, bytes, opts.encoding);
  const rows: { row: Record<string, unknown>; line: number }[] = [];
  if (format === "jsonl") {
    src.split("\n").forEach((l, i) => {
      if (!l.trim()) return;
      let row: unknown;
      try {
        row = JSON.parse(l);
      } catch (e) {
        const odd = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u200b-\u200f\u2028\u2029\u2060\ufeff]/.exec(l);
        const hint = odd ? `; it holds an invisible character U+${odd[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")} at column ${odd.index + 1}` : "";
        throw new InvalidDataError(file, `line ${i + 1}: invalid JSON (${(e as Error).message.replace(/, ".*" is not valid JSON$/s, "")})${hint}`, { line: i + 1 });
      }
      if (typeof row !== "object" || row === null || Array.isArray(row)) throw new InvalidDataError(file, `line ${i + 1}: not a JSON object`, { line: i + 1 });
      rows.push({ row: row as Record<string, unknown>, line: i + 1 });
    });
  } else {
    let records: Record<string, unknown>[];
    try {
      records = parseCsv(src, { columns: true, skip_empty_lines: true, relax_column_count: false, info: true }).map((r: { record: Record<string, unknown>; info: { lines: number } }) => {
        rows.push({ row: r.record, line: r.info.lines });
        return r.record;
      });
    } catch (e) {
      const line = (e as { lines?: number }).lines;
      throw new InvalidDataError(file, `invalid CSV${line ? ` at line ${line}` : ""}: ${(e as Error).message.replace(/^Invalid Record Length: /, "")}`, { cause: e, line });
    }
    void records;
  }
  return rows;
}

export function readLabelledFile(
  file: string,
  opts: { format?: "jsonl" | "csv"; textField: string; labelField: string; classLabels: (string | number)[]; encoding?: TextEncoding },
): Example[] {
  const rows = readDataRows(file, opts);
  const labelIndex = new Map(opts.classLabels.map((l, i) => [String(l), i]));
  const out: Example[] = [];
  for (const { row, line } of rows) {
    const text = row[opts.textField];
    const label = row[opts.labelField];
    const fields = () => ` (its fields: ${Object.keys(row).map((k) => JSON.stringify(k)).join(", ") || "none"})`;
    if (typeof text !== "string")
      throw new InvalidDataError(file, `line ${line}: field '${opts.textField}' is ${text === undefined ? "missing" : "not a string"}${text === undefined ? fields() : ""}`, { line, field: opts.textField });
    if (label === undefined || label === null) throw new InvalidDataError(file, `line ${line}: field '${opts.labelField}' is missing${fields()}`, { line, field: opts.labelField });
    const cls = labelIndex.get(String(label));
    if (cls === undefined)
      throw new InvalidDataError(file, `line ${line}: label ${JSON.stringify(label)} is not one of the configured classes (${opts.classLabels.map((l) => JSON.stringify(l)).join(", ")})`, { line, field: opts.labelField });
    out.push({ text, cls, line });
  }
  if (!out.length) throw new InvalidDataError(file, "no examples");
  return out;
}

/** Deterministic shuffle (Fisher–Yates driven by mulberry32). */
export function shuffled<T>(items: readonly T[], rng: () => number): T[] {
  const a = items.slice();
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}
