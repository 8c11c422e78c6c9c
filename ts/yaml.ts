/** Reading YAML config files so that validation errors can name the line of the offending field. */
import * as fs from "node:fs";
import { isMap, isNode, isPair, isScalar, isSeq, LineCounter, parseDocument, visit, type Node } from "yaml";
import { InvalidFileError } from "./errors";

export interface YamlFile {
  /** The document as plain data ({} for an empty file). */
  data: unknown;
  /** " (line N)" for the deepest node on `path` that exists, or "" — for error messages. */
  locate: (path: PropertyKey[]) => string;
  /** The 1-based line of `path`'s key (or of the deepest part of it that exists); undefined when none does. */
  line: (path: PropertyKey[]) => number | undefined;
}

/** Aliases a document may expand (a "billion laughs" alias bomb is an error, not minutes of CPU and GBs of memory). */
const MAX_ALIAS_COUNT = 100;

export function readYamlFile(file: string): YamlFile {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new InvalidFileError(file, `cannot read: ${err.code === "EISDIR" ? "it is a folder" : err.message}`, { cause: e });
  }
  let src: string;
  try {
    src = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    const { line, byte } = firstInvalidUtf8(bytes);
    throw new InvalidFileError(file, `line ${line}: not UTF-8 (invalid byte 0x${(bytes[byte] ?? 0).toString(16).padStart(2, "0")} at byte offset ${byte})`, { line });
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(src, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length) {
    const e = doc.errors[0];
    const line = lineCounter.linePos(e.pos[0]).line;
    throw new InvalidFileError(file, `YAML syntax error at line ${line}: ${e.message.split("\n")[0]}`, { line });
  }
  visit(doc, {
    Pair(_, pair) {
      if (isNode(pair.key) && !isScalar(pair.key)) {
        const line = pair.key.range ? lineCounter.linePos(pair.key.range[0]).line : undefined;
        throw new InvalidFileError(file, `${line ? `line ${line}: ` : ""}a key must be a plain value, not a list or mapping`, { line });
      }
    },
  });
  const line = (p: PropertyKey[]): number | undefined => {
    let node: unknown = doc.contents;
    let found: number | undefined = isNode(node) && (node as Node).range ? lineCounter.linePos((node as Node).range![0]).line : undefined;
    for (const seg of p) {
      if (isMap(node)) {
        const pair = node.items.find((it) => isPair(it) && (isScalar(it.key) ? String(it.key.value) : String(it.key)) === String(seg));
        if (!pair) break;
        const key = pair.key as Node | null;
        if (isNode(key) && key.range) found = lineCounter.linePos(key.range[0]).line;
        node = pair.value;
      } else if (isSeq(node)) {
        const item = node.items[Number(seg)];
        if (!isNode(item)) break;
        if (item.range) found = lineCounter.linePos(item.range[0]).line;
        node = item;
      } else break;
    }
    return found;
  };
  const locate = (p: PropertyKey[]): string => {
    const n = line(p);
    return n === undefined ? "" : ` (line ${n})`;
  };
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT }) ?? {};
  } catch (e) {
    throw new InvalidFileError(file, `YAML: ${(e as Error).message} (more than ${MAX_ALIAS_COUNT} alias expansions)`, { cause: e });
  }
  return { data, locate, line };
}

/** The line (1-based) and byte offset of the first byte that breaks UTF-8 in `bytes` (which must contain one). */
export function firstInvalidUtf8(bytes: Uint8Array): { line: number; byte: number } {
  let line = 1;
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i];
    let n = 0, min = 0;
    if (b < 0x80) {
      if (b === 0x0a) line++;
      i++;
      continue;
    } else if (b >= 0xc2 && b <= 0xdf) [n, min] = [1, 0x80];
    else if (b >= 0xe0 && b <= 0xef) [n, min] = [2, 0x800];
    else if (b >= 0xf0 && b <= 0xf4) [n, min] = [3, 0x10000];
    else return { line, byte: i };
    let cp = b & (0x3f >> n);
    for (let k = 1; k <= n; k++) {
      const c = bytes[i + k];
      if (c === undefined || (c & 0xc0) !== 0x80) return { line, byte: i };
      cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return { line, byte: i };
    i += n + 1;
  }
  return { line, byte: bytes.length };
}
