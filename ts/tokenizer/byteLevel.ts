/**
 * GPT-2's reversible byte <-> printable-unicode mapping ("bytes_to_unicode"), precomputed once.
 *
 * Printable Latin-1 bytes map to themselves; the 68 others map to U+0100.. in byte order, so every
 * byte sequence becomes a string of visible characters (space 0x20 -> "Ġ", newline 0x0A -> "Ċ").
 */

/** BYTE_TO_CHAR[b] = the single-character string standing for byte b. */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const out = new Array<string>(256);
  for (let i = 0; i < 256; i++) out[bs[i]] = String.fromCharCode(cs[i]);
  return out;
})();

/** CHAR_TO_BYTE[code unit] = byte, or -1 when the code unit is not a byte-level character (table covers U+0000..U+01FF). */
export const CHAR_TO_BYTE: Int16Array = (() => {
  const t = new Int16Array(512).fill(-1);
  for (let b = 0; b < 256; b++) t[BYTE_TO_CHAR[b].charCodeAt(0)] = b;
  return t;
})();

/**
 * UTF-8 encodes `s` into `buf` (grown when needed) and returns [buffer, length].
 * Lone surrogates become U+FFFD, as TextEncoder does.
 */
export function utf8Encode(s: string, buf: Uint8Array): [Uint8Array, number] {
  const n = s.length;
  if (buf.length < n * 3) buf = new Uint8Array(Math.max(n * 3, buf.length * 2));
  let p = 0;
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      buf[p++] = c;
    } else if (c < 0x800) {
      buf[p++] = 0xc0 | (c >> 6);
      buf[p++] = 0x80 | (c & 63);
    } else if (c >= 0xd800 && c <= 0xdfff) {
      const d = i + 1 < n ? s.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
        buf[p++] = 0xf0 | (c >> 18);
        buf[p++] = 0x80 | ((c >> 12) & 63);
        buf[p++] = 0x80 | ((c >> 6) & 63);
        buf[p++] = 0x80 | (c & 63);
      } else {
        buf[p++] = 0xef;
        buf[p++] = 0xbf;
        buf[p++] = 0xbd;
      }
    } else {
      buf[p++] = 0xe0 | (c >> 12);
      buf[p++] = 0x80 | ((c >> 6) & 63);
      buf[p++] = 0x80 | (c & 63);
    }
  }
  return [buf, p];
}

/** The byte-level string (one char per UTF-8 byte) of `s`. */
export function toByteLevel(s: string): string {
  let out = "";
  let ascii = true;
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) {
    for (let i = 0; i < s.length; i++) out += BYTE_TO_CHAR[s.charCodeAt(i)];
    return out;
  }
  const [buf, len] = utf8Encode(s, new Uint8Array(s.length * 3));
  for (let i = 0; i < len; i++) out += BYTE_TO_CHAR[buf[i]];
  return out;
}
