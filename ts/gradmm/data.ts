/** Labelled examples from JSONL or CSV, with errors that name the file and line. */
import * as fs from "node:fs";
import { parse as parseCsv } from "csv-parse/sync";
import { InvalidFileError } from "../errors";

export interface Example {
  text: string;
  /** Index into config.classes. */
  cls: number;
}

export function readLabelledFile(
  file: string,
  opts: { format?: "jsonl" | "csv"; textField: string; labelField: string; classLabels: (string | number)[] },
): Example[] {
  const format = opts.format ?? (file.toLowerCase().endsWith(".csv") ? "csv" : "jsonl");
  let src: string;
  try {
    src = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new InvalidFileError(file, `cannot read: ${(e as Error).message}`, { cause: e });
  }
  const rows: { row: Record<string, unknown>; line: number }[] = [];
  if (format === "jsonl") {
    src.split("\n").forEach((l, i) => {
      if (!l.trim()) return;
      try {
        rows.push({ row: JSON.parse(l), line: i + 1 });
      } catch (e) {
        throw new InvalidFileError(file, `line ${i + 1}: invalid JSON (${(e as Error).message})`);
      }
    });
  } else {
    let records: Record<string, unknown>[];
    try {
      records = parseCsv(src, { columns: true, skip_empty_lines: true, relax_column_count: false });
    } catch (e) {
      throw new InvalidFileError(file, `invalid CSV: ${(e as Error).message}`, { cause: e });
    }
    records.forEach((r, i) => rows.push({ row: r, line: i + 2 }));
  }
  const labelIndex = new Map(opts.classLabels.map((l, i) => [String(l), i]));
  const out: Example[] = [];
  for (const { row, line } of rows) {
    const text = row[opts.textField];
    const label = row[opts.labelField];
    if (typeof text !== "string") throw new InvalidFileError(file, `line ${line}: field '${opts.textField}' is missing or not a string`);
    if (label === undefined || label === null) throw new InvalidFileError(file, `line ${line}: field '${opts.labelField}' is missing`);
    const cls = labelIndex.get(String(label));
    if (cls === undefined) throw new InvalidFileError(file, `line ${line}: label '${String(label)}' is not one of the configured classes`);
    out.push({ text, cls });
  }
  if (!out.length) throw new InvalidFileError(file, "no examples");
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
