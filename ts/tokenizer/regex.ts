/**
 * Hugging Face `tokenizers` compiles `Split`/`Replace` patterns with Oniguruma (Ruby syntax). This module
 * translates the subset of that syntax tokenizer files use into an equivalent JavaScript `u` regex:
 *
 * - `\s` is Unicode White_Space in Oniguruma (and in Python's `regex`, which GPT-2 used); JavaScript's `\s`
 *   differs (it adds U+FEFF and lacks U+0085), so it becomes `\p{White_Space}`.
 * - `\d`, `\w`, `\h` get their Oniguruma Unicode meanings; `.` does not match `\n`.
 * - `(?i:...)` (no JavaScript support in Node 20) is expanded by spelling out the case variants of each letter.
 * - Things with no JavaScript equivalent (atomic groups, possessive quantifiers, nested classes,
 *   POSIX brackets, \G, \K, ...) throw {@link RegexTranslationError}.
 */

export class RegexTranslationError extends Error {}

const WS = "\\p{White_Space}";
const WORD = "\\p{L}\\p{M}\\p{Nd}\\p{Pc}";
const JS_SYNTAX = new Set("^$\\.*+?()[]{}|/".split(""));

function isAsciiAlnum(c: string): boolean {
  return /^[A-Za-z0-9]$/.test(c);
}

/** Single-code-point strings that `c` matches case-insensitively (simple case folding, as Oniguruma's default). */
function caseVariants(c: string): string[] {
  const set = new Set<string>([c]);
  for (const v of [c.toLowerCase(), c.toUpperCase(), c.toUpperCase().toLowerCase(), c.toLowerCase().toUpperCase()]) {
    if ([...v].length === 1) set.add(v);
  }
  const low = c.toLowerCase();
  if (low === "s" || low === "\u017f") ["s", "S", "\u017f"].forEach((x) => set.add(x));
  if (low === "k" || c === "\u212a") ["k", "K", "\u212a"].forEach((x) => set.add(x));
  return [...set];
}

function escapeClassChar(c: string): string {
  return c === "\\" || c === "]" || c === "[" || c === "^" || c === "-" ? "\\" + c : c;
}

function propertyEscape(name: string, negated: boolean): string {
  const p = negated ? "P" : "p";
  for (const candidate of [name, `Script=${name}`, `General_Category=${name}`]) {
    try {
      new RegExp(`\\${p}{${candidate}}`, "u");
      return `\\${p}{${candidate}}`;
    } catch {
      /* try the next spelling */
    }
  }
  throw new RegexTranslationError(`unknown Unicode property \\p{${name}}`);
}

/** Translates an Oniguruma (Ruby syntax) pattern into JavaScript regex source meant for flags "gmu". */
export function translateOnigRegex(src: string): string {
  let out = "";
  let i = 0;
  const n = src.length;
  // Case-insensitivity per open group; the last entry is the current one.
  const ci: boolean[] = [false];
  const cur = () => ci[ci.length - 1];

  const readEscape = (inClass: boolean): string => {
    // src[i] === "\\"
    const e = src[i + 1];
    if (e === undefined) throw new RegexTranslationError("pattern ends with a backslash");
    i += 2;
    switch (e) {
      case "s":
        return inClass ? WS : `[${WS}]`;
      case "S":
        if (inClass) throw new RegexTranslationError("\\S inside a character class");
        return `\\P{White_Space}`;
      case "d":
        return "\\p{Nd}";
      case "D":
        if (inClass) throw new RegexTranslationError("\\D inside a character class");
        return "\\P{Nd}";
      case "w":
        return inClass ? WORD : `[${WORD}]`;
      case "W":
        if (inClass) throw new RegexTranslationError("\\W inside a character class");
        return `[^${WORD}]`;
      case "h":
        return inClass ? "0-9a-fA-F" : "[0-9a-fA-F]";
      case "H":
        if (inClass) throw new RegexTranslationError("\\H inside a character class");
        return "[^0-9a-fA-F]";
      case "p":
      case "P": {
        let name: string;
        if (src[i] === "{") {
          const close = src.indexOf("}", i);
          if (close < 0) throw new RegexTranslationError("unterminated \\p{");
          name = src.slice(i + 1, close);
          i = close + 1;
        } else {
          name = src[i] ?? "";
          i += 1;
        }
        let neg = e === "P";
        if (name.startsWith("^")) {
          neg = !neg;
          name = name.slice(1);
        }
        return propertyEscape(name, neg);
      }
      case "A":
        if (inClass) throw new RegexTranslationError("\\A inside a character class");
        return "(?<![\\s\\S])";
      case "z":
        if (inClass) throw new RegexTranslationError("\\z inside a character class");
        return "(?![\\s\\S])";
      case "Z":
        if (inClass) throw new RegexTranslationError("\\Z inside a character class");
        return "(?=\\n?(?![\\s\\S]))";
      case "x": {
        if (src[i] === "{") {
          const close = src.indexOf("}", i);
          if (close < 0) throw new RegexTranslationError("unterminated \\x{");
          const hex = src.slice(i + 1, close);
          i = close + 1;
          return `\\u{${hex}}`;
        }
        const hex = src.slice(i, i + 2);
        if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new RegexTranslationError("bad \\x escape");
        i += 2;
        return `\\x${hex}`;
      }
      case "u": {
        const hex = src.slice(i, i + 4);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw new RegexTranslationError("bad \\u escape");
        i += 4;
        return `\\u${hex}`;
      }
      case "t":
      case "n":
      case "r":
      case "f":
      case "v":
        return "\\" + e;
      case "a":
        return "\\x07";
      case "e":
        return "\\x1B";
      case "b":
        return inClass ? "\\x08" : "\\b";
      case "B":
        if (inClass) throw new RegexTranslationError("\\B inside a character class");
        return "\\B";
      default:
        break;
    }
    if (/[1-9]/.test(e) && !inClass) {
      let digits = e;
      while (i < n && /[0-9]/.test(src[i])) digits += src[i++];
      return "\\" + digits;
    }
    if (e === "k" && src[i] === "<") {
      const close = src.indexOf(">", i);
      if (close < 0) throw new RegexTranslationError("unterminated \\k<");
      const name = src.slice(i, close + 1);
      i = close + 1;
      return "\\k" + name;
    }
    if (isAsciiAlnum(e)) throw new RegexTranslationError(`unsupported escape \\${e}`);
    // An escaped punctuation/other character is that literal character.
    const cp = String.fromCodePoint(src.codePointAt(i - 1)!);
    i += cp.length - 1;
    if (inClass) return escapeClassChar(cp);
    return JS_SYNTAX.has(cp) ? "\\" + cp : cp === "-" ? "-" : cp;
  };

  const readClass = (): string => {
    // src[i] === "["
    i++;
    let body = "";
    let negate = false;
    if (src[i] === "^") {
      negate = true;
      i++;
    }
    let first = true;
    const insensitive = cur();
    while (true) {
      if (i >= n) throw new RegexTranslationError("unterminated character class");
      const c = src[i];
      if (c === "]" && !first) {
        i++;
        break;
      }
      first = false;
      if (c === "[") throw new RegexTranslationError("nested character class or POSIX bracket");
      if (c === "&" && src[i + 1] === "&") throw new RegexTranslationError("character class intersection (&&)");
      if (c === "\\") {
        body += readEscape(true);
        continue;
      }
      if (c === "-") {
        // A range operator between two endpoints; a literal hyphen first or last.
        body += body !== "" && src[i + 1] !== "]" ? "-" : "\\-";
        i++;
        continue;
      }
      const cp = String.fromCodePoint(src.codePointAt(i)!);
      i += cp.length;
      if (insensitive && cp.toLowerCase() !== cp.toUpperCase()) {
        const hi = src[i] === "-" && src[i + 1] !== "]" ? src[i + 1] : undefined;
        if (hi !== undefined && /^[a-z]$/.test(cp) && /^[a-z]$/.test(hi)) {
          body += `${cp}-${hi}${cp.toUpperCase()}-${hi.toUpperCase()}`;
          i += 2;
        } else if (hi !== undefined && /^[A-Z]$/.test(cp) && /^[A-Z]$/.test(hi)) {
          body += `${cp}-${hi}${cp.toLowerCase()}-${hi.toLowerCase()}`;
          i += 2;
        } else if (hi !== undefined) {
          throw new RegexTranslationError("case-insensitive range outside ASCII letters");
        } else {
          body += caseVariants(cp).map(escapeClassChar).join("");
        }
        continue;
      }
      body += escapeClassChar(cp);
    }
    return `[${negate ? "^" : ""}${body}]`;
  };

  const checkNotPossessive = () => {
    if (src[i] === "+") throw new RegexTranslationError("possessive quantifier");
  };

  while (i < n) {
    const c = src[i];
    if (c === "\\") {
      out += readEscape(false);
      continue;
    }
    if (c === "[") {
      out += readClass();
      continue;
    }
    if (c === "(") {
      if (src[i + 1] === "?") {
        const rest = src.slice(i + 2);
        if (rest.startsWith(":")) {
          ci.push(cur());
          out += "(?:";
          i += 3;
        } else if (rest.startsWith("i:")) {
          ci.push(true);
          out += "(?:";
          i += 4;
        } else if (rest.startsWith("-i:")) {
          ci.push(false);
          out += "(?:";
          i += 5;
        } else if (rest.startsWith("i)")) {
          ci[ci.length - 1] = true;
          i += 4;
        } else if (rest.startsWith("-i)")) {
          ci[ci.length - 1] = false;
          i += 5;
        } else if (rest.startsWith("=") || rest.startsWith("!")) {
          ci.push(cur());
          out += "(?" + rest[0];
          i += 3;
        } else if (rest.startsWith("<=") || rest.startsWith("<!")) {
          ci.push(cur());
          out += "(?" + rest.slice(0, 2);
          i += 4;
        } else if (rest.startsWith("<") || rest.startsWith("P<")) {
          const start = rest.startsWith("P<") ? 1 : 0;
          const close = rest.indexOf(">");
          if (close < 0) throw new RegexTranslationError("unterminated group name");
          ci.push(cur());
          out += "(?" + rest.slice(start, close + 1);
          i += 2 + close + 1;
        } else if (rest.startsWith("#")) {
          const close = src.indexOf(")", i);
          if (close < 0) throw new RegexTranslationError("unterminated comment group");
          i = close + 1;
        } else {
          throw new RegexTranslationError(`unsupported group syntax (?${rest.slice(0, 3)}`);
        }
      } else {
        ci.push(cur());
        out += "(";
        i++;
      }
      continue;
    }
    if (c === ")") {
      if (ci.length <= 1) throw new RegexTranslationError("unbalanced parenthesis");
      ci.pop();
      out += ")";
      i++;
      continue;
    }
    if (c === "*" || c === "+" || c === "?") {
      out += c;
      i++;
      if (src[i] === "?") {
        out += "?";
        i++;
      } else checkNotPossessive();
      continue;
    }
    if (c === "{") {
      const m = /^\{(\d*)(,(\d*))?\}/.exec(src.slice(i));
      if (m && (m[1] !== "" || (m[3] ?? "") !== "")) {
        out += m[1] === "" ? `{0${m[2] ?? ""}}` : m[0];
        i += m[0].length;
        if (src[i] === "?") {
          out += "?";
          i++;
        } else checkNotPossessive();
      } else {
        out += "\\{";
        i++;
      }
      continue;
    }
    if (c === "}") {
      out += "\\}";
      i++;
      continue;
    }
    if (c === ".") {
      out += "[^\\n]";
      i++;
      continue;
    }
    if (c === "^" || c === "$" || c === "|") {
      out += c;
      i++;
      continue;
    }
    const cp = String.fromCodePoint(src.codePointAt(i)!);
    i += cp.length;
    if (cur() && cp.toLowerCase() !== cp.toUpperCase()) {
      const vs = caseVariants(cp);
      out += vs.length > 1 ? `[${vs.map(escapeClassChar).join("")}]` : vs[0];
    } else {
      out += cp === "/" ? "\\/" : cp;
    }
  }
  if (ci.length !== 1) throw new RegexTranslationError("unbalanced parenthesis");
  return out;
}

/** Compiles an Oniguruma pattern to a global, unicode, multiline JavaScript RegExp. */
export function compileOnigRegex(src: string): RegExp {
  const js = translateOnigRegex(src);
  try {
    return new RegExp(js, "gmu");
  } catch (e) {
    throw new RegexTranslationError(`translated pattern does not compile: ${(e as Error).message}`);
  }
}

/** Escapes a literal string for use in a JavaScript `u` regex. */
export function escapeRegexLiteral(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&");
}

/** The pattern of HF's ByteLevel pre-tokenizer (GPT-2's), in Oniguruma syntax. */
export const GPT2_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/** The Llama-3 / tiktoken cl100k-style split pattern, in Oniguruma syntax. */
export const LLAMA3_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
