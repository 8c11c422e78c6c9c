/** Reading YAML config files so that validation errors can name the line of the offending field. */
import * as fs from "node:fs";
import { isNode, LineCounter, parseDocument } from "yaml";
import { InvalidFileError } from "./errors";

export interface YamlFile {
  /** The document as plain data ({} for an empty file). */
  data: unknown;
  /** " (line N)" for the deepest node on `path` that exists, or "" — for error messages. */
  locate: (path: PropertyKey[]) => string;
}

export function readYamlFile(file: string): YamlFile {
  let src: string;
  try {
    src = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new InvalidFileError(file, `cannot read: ${(e as Error).message}`, { cause: e });
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(src, { lineCounter, prettyErrors: false });
  if (doc.errors.length) {
    const e = doc.errors[0];
    throw new InvalidFileError(file, `YAML syntax error at line ${lineCounter.linePos(e.pos[0]).line}: ${e.message.split("\n")[0]}`);
  }
  const locate = (p: PropertyKey[]): string => {
    for (let n = p.length; n > 0; n--) {
      const node = doc.getIn(p.slice(0, n) as (string | number)[], true);
      if (isNode(node) && node.range) return ` (line ${lineCounter.linePos(node.range[0]).line})`;
    }
    return "";
  };
  return { data: doc.toJS() ?? {}, locate };
}
