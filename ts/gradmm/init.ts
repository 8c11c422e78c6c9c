/**
 * `gradmm init data.csv|data.jsonl`: a starter config from the user's own data. It reads the file, picks the text
 * field (the longest strings, preferring names such as text/review/sentence) and the label field (few distinct values,
 * preferring label/class/category), lists the classes, and proposes label words, a template and instructions for the
 * user to edit. The written YAML explains every choice in comments; `gradmm synth --dry-run` checks it.
 */
import * as path from "node:path";
import { InvalidDataError } from "../errors";
import { readDataRows, type TextEncoding } from "./data";

export interface InitProposal {
  format: "jsonl" | "csv";
  rows: number;
  fields: string[];
  textField: string;
  labelField: string;
  classes: { label: string | number; count: number; name: string; labelWord: string; instruction: string }[];
  template: string;
  examplesPerClass: number;
  notes: string[];
}

const TEXT_NAMES = ["text", "review", "sentence", "content", "body", "message", "document", "comment", "utterance", "question", "title", "fortune"];
const LABEL_NAMES = ["label", "labels", "class", "category", "sentiment", "target", "topic", "y", "tag", "intent"];
const NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"];

function nameScore(field: string, names: string[]): number {
  const f = field.toLowerCase().replace(/[^a-z]/g, "");
  const i = names.indexOf(f);
  if (i >= 0) return 2 - i / names.length;
  return names.some((n) => n.length > 1 && f.includes(n)) ? 0.5 : 0;
}

/** Reads the data and proposes fields, classes and words. Throws InvalidDataError when no text or label field fits. */
export function proposeConfig(file: string, o: { textField?: string; labelField?: string; encoding?: TextEncoding } = {}): InitProposal {
  const format = file.toLowerCase().endsWith(".csv") ? "csv" : "jsonl";
  const rows = readDataRows(file, { format, encoding: o.encoding }).map((r) => r.row);
  if (!rows.length) throw new InvalidDataError(file, "no rows");
  const fields = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const notes: string[] = [];
  const stats = fields.map((f) => {
    const values = rows.map((r) => r[f]).filter((v) => v !== undefined && v !== null && v !== "");
    const strings = values.filter((v): v is string => typeof v === "string");
    const distinct = new Set(values.map((v) => (typeof v === "object" ? JSON.stringify(v) : String(v))));
    const meanLen = strings.length ? strings.reduce((a, s) => a + s.length, 0) / strings.length : 0;
    const scalar = values.every((v) => typeof v === "string" || typeof v === "number" || typeof v === "boolean");
    return { f, present: values.length, distinct: distinct.size, meanLen, strings: strings.length, scalar };
  });
  const need = (field: string | undefined, what: string) => {
    if (field !== undefined && !fields.includes(field)) throw new InvalidDataError(file, `no field '${field}' (${what}); its fields: ${fields.map((x) => JSON.stringify(x)).join(", ")}`, { field });
  };
  need(o.textField, "--text-field");
  need(o.labelField, "--label-field");
  // label: scalar, 2..max(2, min(50, rows/2)) distinct values, present in most rows; names like label/class first
  const maxClasses = Math.max(2, Math.min(50, Math.floor(rows.length / 2)));
  const labelCandidates = stats
    .filter((s) => s.f !== o.textField && s.scalar && s.distinct >= 2 && s.distinct <= maxClasses && s.present >= 0.9 * rows.length)
    .sort((a, b) => nameScore(b.f, LABEL_NAMES) - nameScore(a.f, LABEL_NAMES) || a.distinct - b.distinct || a.meanLen - b.meanLen);
  const labelField = o.labelField ?? labelCandidates[0]?.f;
  if (!labelField)
    throw new InvalidDataError(file, `no field looks like a label (2 to ${maxClasses} distinct values in nearly every row); name it with --label-field (fields: ${fields.map((x) => JSON.stringify(x)).join(", ")})`);
  // text: strings, longest on average; names like text/review first
  const textCandidates = stats
    .filter((s) => s.f !== labelField && s.strings >= 0.9 * rows.length)
    .sort((a, b) => nameScore(b.f, TEXT_NAMES) - nameScore(a.f, TEXT_NAMES) || b.meanLen - a.meanLen);
  const textField = o.textField ?? textCandidates[0]?.f;
  if (!textField) throw new InvalidDataError(file, `no field holds text in nearly every row; name it with --text-field (fields: ${fields.map((x) => JSON.stringify(x)).join(", ")})`);
  if (!o.textField && textCandidates.length > 1) notes.push(`text field: '${textField}' (also possible: ${textCandidates.slice(1, 4).map((s) => `'${s.f}'`).join(", ")})`);
  if (!o.labelField && labelCandidates.length > 1) notes.push(`label field: '${labelField}' (also possible: ${labelCandidates.slice(1, 4).map((s) => `'${s.f}'`).join(", ")})`);

  // classes, most frequent first; keep the label's JSON type (0 stays a number, "spam" a string)
  const counts = new Map<string, { label: string | number; count: number }>();
  for (const r of rows) {
    const v = r[labelField];
    if (v === undefined || v === null || v === "") continue;
    const label = typeof v === "number" ? v : String(v);
    const key = String(label);
    const c = counts.get(key) ?? { label, count: 0 };
    c.count++;
    counts.set(key, c);
  }
  const classes = [...counts.values()].sort((a, b) => b.count - a.count || String(a.label).localeCompare(String(b.label)));
  if (classes.length < 2) throw new InvalidDataError(file, `field '${labelField}' has only one value; GRADMM needs at least two classes`, { field: labelField });
  // label words: the label itself when it is one word (" spam"), else a number word or a letter; all distinct
  const word = (label: string | number): string | null => {
    const s = String(label).trim().toLowerCase();
    if (/^[a-z][a-z-]*$/.test(s)) return s;
    const first = /^[a-z]+/.exec(s)?.[0];
    return first && first.length > 1 ? first : null;
  };
  let words = classes.map((c) => word(c.label));
  if (words.some((w) => !w) || new Set(words).size !== words.length) {
    const numeric = classes.every((c) => /^\d+$/.test(String(c.label)) && Number(c.label) < NUMBER_WORDS.length);
    words = classes.map((c, i) => (numeric ? NUMBER_WORDS[Number(c.label)] : String.fromCharCode(65 + (i % 26))));
    notes.push(`label words: the labels are not distinct single words, so placeholders (${words.map((w) => JSON.stringify(" " + w)).join(", ")}) stand in; replace them with words the model would say after the template`);
  }
  const smallest = Math.min(...classes.map((c) => c.count));
  return {
    format,
    rows: rows.length,
    fields,
    textField,
    labelField,
    classes: classes.map((c, i) => ({
      label: c.label,
      count: c.count,
      name: word(c.label) ?? `class_${String(c.label).replace(/[^A-Za-z0-9]+/g, "_")}`,
      labelWord: " " + words[i],
      instruction: `Write a text labelled "${String(c.label)}":`,
    })),
    template: " Label:",
    examplesPerClass: Math.max(1, Math.min(25, smallest)),
    notes,
  };
}

const q = (s: string) => JSON.stringify(s); // a JSON string is a valid YAML double-quoted scalar

/** The YAML text of a starter config; `dataPath` relative to the config's folder. `quick`: a one-minute smoke run. */
export function starterConfigYaml(p: InitProposal, o: { dataPath: string; output: string; quick?: boolean; source: string }): string {
  const method = o.quick
    ? [
        "  # a one-minute smoke run (gradmm init --quick); remove these lines for the paper's settings",
        "  batch_size: 2",
        "  batches_per_class: 1",
        "  length: 8",
        "  outer_steps: 2",
        "  inner_steps: 3",
        "  init_candidates: 8",
        "  top_k: 20",
      ]
    : [
        "  # the paper's settings (about 30 × 50 Adam steps per batch): start with fewer batches to see how it goes",
        "  batch_size: 10",
        "  batches_per_class: 2",
        "  length: null          # null: the mean length of the real examples (set it with dp.enabled)",
        "  outer_steps: 30",
        "  inner_steps: 50",
      ];
  return [
    `# A starter config written by \`gradmm init ${o.source}\` from ${p.rows} rows (${p.format}).`,
    "# EDIT the label words, the template and the instructions: they decide what the model is asked and what it",
    "# should answer. Then check it with  gradmm synth THIS.yaml --dry-run  and run it with  gradmm synth THIS.yaml",
    ...p.notes.map((n) => `# note: ${n}`),
    "",
    "data:",
    `  path: ${q(o.dataPath)}`,
    `  text_field: ${q(p.textField)}`,
    `  label_field: ${q(p.labelField)}`,
    `  examples_per_class: ${p.examplesPerClass}   # real examples per class that form the target (smallest class: ${Math.min(...p.classes.map((c) => c.count))})`,
    "",
    `# ${p.classes.length} classes found in '${p.labelField}', most frequent first.`,
    "# label_word: the word the model should predict after text + template (its first token must differ between classes)",
    "# instruction: the prompt the generated text continues; say what a text of this class is like",
    "classes:",
    ...p.classes.flatMap((c) => [
      `  - label: ${typeof c.label === "number" ? c.label : q(c.label)}   # ${c.count} rows`,
      `    name: ${q(c.name)}`,
      `    label_word: ${q(c.labelWord)}`,
      `    instruction: ${q(c.instruction)}`,
    ]),
    "",
    "# appended to every text; the label word follows it (for reviews, e.g. \" It was\" with \" great\" / \" terrible\")",
    `template: ${q(p.template)}`,
    "",
    "# model: smollm2-135m-instruct   # a known model (gradmm models), a GGUF file or a Hugging Face folder; default: the shipped model",
    "",
    "method:",
    ...method,
    "",
    "filter:",
    "  few_shot: 2",
    "  keep_per_class: 100",
    "",
    "dp:",
    "  enabled: false   # true: (ε, δ)-DP targets; then set method.length and filter.demonstrations (or few_shot: 0)",
    "  epsilon: 4",
    "",
    `output: ${q(o.output)}`,
    "seed: 0",
    "",
  ].join("\n");
}

/** Paths for the config: data relative to the config's folder, output beside it. */
export function initPaths(dataFile: string, configFile: string): { dataPath: string; output: string } {
  const rel = path.relative(path.dirname(path.resolve(configFile)), path.resolve(dataFile)).split(path.sep).join("/");
  const base = path.basename(dataFile).replace(/\.(csv|jsonl?)$/i, "");
  return { dataPath: rel, output: `runs/${base}` };
}
