/**
 * float16 and bfloat16 <-> float32, bit-exact: decoding by a 65536-entry table, encoding rounded to nearest, ties to
 * even (NaN stays NaN). Used by the safetensors and GGUF readers and the safetensors writer.
 */

let f16ToF32: Float32Array | undefined;

/** All 65536 half-precision values decoded once: a lookup is faster than decoding each element. */
export function f16Table(): Float32Array {
  if (f16ToF32) return f16ToF32;
  const table = new Float32Array(65536);
  const bits = new Uint32Array(table.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) table[h] = (sign ? -1 : 1) * mant * 2 ** -24;
    else if (exp === 31) bits[h] = sign | 0x7f800000 | (mant << 13);
    else bits[h] = sign | ((exp - 15 + 127) << 23) | (mant << 13);
  }
  f16ToF32 = table;
  return table;
}

/** float16 bits to the number they encode. */
export function float16BitsToFloat32(bits: number): number {
  return f16Table()[bits & 0xffff];
}

/** bfloat16 bits to the number they encode. */
export function bfloat16BitsToFloat32(bits: number): number {
  scratchU32[0] = (bits & 0xffff) << 16;
  return scratchF32[0];
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** Rounds a number (first to float32) to the nearest float16, ties to even; overflow gives infinity. */
export function float32ToFloat16Bits(x: number): number {
  scratchF32[0] = x;
  return f32BitsToF16Bits(scratchU32[0]);
}

/** Rounds a number (first to float32) to the nearest bfloat16, ties to even. */
export function float32ToBfloat16Bits(x: number): number {
  scratchF32[0] = x;
  return f32BitsToBf16Bits(scratchU32[0]);
}

/** float32 bits (as a uint32) to float16 bits, rounded to nearest, ties to even. */
export function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127;
  if (e > 15) return sign | 0x7c00;
  if (e >= -14) {
    const h = sign | ((e + 15) << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    // A carry out of the mantissa correctly bumps the exponent (and 0x7bff + 1 is infinity).
    return rem > 0x1000 || (rem === 0x1000 && h & 1) ? h + 1 : h;
  }
  if (e < -25) return sign;
  // Subnormal half: the value in units of 2^-24 is the full 24-bit significand shifted right.
  const m = mant | 0x800000;
  const shift = -e - 1;
  const h = m >>> shift;
  const rem = m & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return sign | (rem > half || (rem === half && h & 1) ? h + 1 : h);
}

/** float32 bits (as a uint32) to bfloat16 bits, rounded to nearest, ties to even; a NaN stays a (quiet) NaN. */
export function f32BitsToBf16Bits(x: number): number {
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}
