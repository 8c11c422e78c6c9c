// Dequantization of ggml block formats, bit-identical to gguf.quants.dequantize (PyPI `gguf`, numpy float32).
//
// The spec is the Python code, so every value is produced by the same float32 operations in the same order:
//   f16 -> f32        exact (numpy's bit conversion: subnormals exact, Inf kept, NaN payload kept, sNaN NOT quieted)
//   Q4_0, Q5_0        d * float(q - 8 | q - 16)
//   Q4_1, Q5_1        (d * float(q)) + m
//   Q8_0              float(x) * d
//   Q4_K, Q5_K        (d * float(sc)) * float(q) - (dmin * float(m))     [ds and dm rounded to f32 first]
//   Q6_K              (d * float(sc)) * float(q - 32)                    [sc is int8]
//   BF16              bits << 16;  F32: copy
// numpy rounds after every operation, so no fused multiply-add: contraction is off for this file (pragma below, on top
// of the build's -ffp-contract=off) and the AVX2 kernels are compiled for AVX2+F16C without FMA. (In these formats
// every product that feeds an add/sub -- d*q, d*sc, dmin*m, (d*sc)*q -- happens to be exact in f32: at most 22
// significant bits, never subnormal; so a contracted a*b+-c would round the same. The guard keeps it that way for
// any later change.) Vectorized elementwise ops change no bits. Assumes the default MXCSR (no FTZ/DAZ), as numpy.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#endif
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include "gguf_quants.h"

#include <cstring>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(GRADMM_DEQUANT_NO_SIMD)
#define GRADMM_DEQUANT_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

#if defined(__GNUC__)
#define GQ_INLINE inline __attribute__((always_inline))
#else
#define GQ_INLINE inline
#endif

namespace gradmm {

namespace {

constexpr int64_t QK = 32;    // elements per block of Q4_0 .. Q8_0
constexpr int64_t QK_K = 256; // elements per block of the K-quants

GQ_INLINE uint16_t rd16(const uint8_t* p) { return (uint16_t)(p[0] | (p[1] << 8)); }
GQ_INLINE uint32_t rd32(const uint8_t* p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
GQ_INLINE float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// numpy's npy_halfbits_to_floatbits: integer-only, so signaling NaNs stay signaling (hardware vcvtph2ps quiets them).
GQ_INLINE uint32_t f16_to_f32_bits(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  const uint32_t exp = h & 0x7c00u;
  uint32_t sig = h & 0x03ffu;
  if (exp == 0x7c00u) return sign | 0x7f800000u | (sig << 13);        // Inf / NaN (payload kept)
  if (exp != 0) return sign | (((uint32_t)(h & 0x7fffu) + 0x1c000u) << 13);  // normal: rebias 15 -> 127
  if (sig == 0) return sign;                                              // +-0
  // subnormal: value = sig * 2^-24; normalize
  int e = -1;
  do {
    sig <<= 1;
    ++e;
  } while ((sig & 0x0400u) == 0);
  return sign | ((uint32_t)(127 - 15 - e) << 23) | ((sig & 0x03ffu) << 13);
}
GQ_INLINE float f16_to_f32(uint16_t h) { return bits_f32(f16_to_f32_bits(h)); }
GQ_INLINE float rdf16(const uint8_t* p) { return f16_to_f32(rd16(p)); }

// ---- one block each; y receives the block's elements ----

GQ_INLINE void block_q4_0(const uint8_t* b, float* y) {  // d f16 | qs[16]: element j low nibble, j+16 high
  const float d = rdf16(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * (float)((int)(qs[j] & 0x0f) - 8);
    y[j + 16] = d * (float)((int)(qs[j] >> 4) - 8);
  }
}

GQ_INLINE void block_q4_1(const uint8_t* b, float* y) {  // d f16 | m f16 | qs[16]
  const float d = rdf16(b), m = rdf16(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    const float p0 = d * (float)(qs[j] & 0x0f);
    const float p1 = d * (float)(qs[j] >> 4);
    y[j] = p0 + m;
    y[j + 16] = p1 + m;
  }
}

GQ_INLINE void block_q5_0(const uint8_t* b, float* y) {  // d f16 | qh u32 (bit j: 5th bit of element j) | qs[16]
  const float d = rdf16(b);
  const uint32_t qh = rd32(b + 2);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    const int q0 = (int)((qs[j] & 0x0f) | (((qh >> j) & 1u) << 4)) - 16;
    const int q1 = (int)((qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4)) - 16;
    y[j] = d * (float)q0;
    y[j + 16] = d * (float)q1;
  }
}

GQ_INLINE void block_q5_1(const uint8_t* b, float* y) {  // d f16 | m f16 | qh u32 | qs[16]
  const float d = rdf16(b), m = rdf16(b + 2);
  const uint32_t qh = rd32(b + 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    const float p0 = d * (float)((qs[j] & 0x0f) | (((qh >> j) & 1u) << 4));
    const float p1 = d * (float)((qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4));
    y[j] = p0 + m;
    y[j + 16] = p1 + m;
  }
}

GQ_INLINE void block_q8_0(const uint8_t* b, float* y) {  // d f16 | int8[32]
  const float d = rdf16(b);
  const int8_t* x = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < 32; ++j) y[j] = (float)x[j] * d;
}

// The 12 scale bytes of Q4_K/Q5_K: 8 six-bit scales and 8 six-bit mins (ggml get_scale_min_k4).
GQ_INLINE void k4_scales(const uint8_t* s, uint8_t sc[8], uint8_t mn[8]) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = s[j] & 0x3f;
    mn[j] = s[j + 4] & 0x3f;
    sc[j + 4] = (uint8_t)((s[j + 8] & 0x0f) | ((s[j] >> 2) & 0x30));
    mn[j + 4] = (uint8_t)((s[j + 8] >> 4) | ((s[j + 4] >> 2) & 0x30));
  }
}

// d f16 | dmin f16 | scales[12] | qs[128]: sub-block 2i = low nibbles of qs[32i..32i+32), 2i+1 = high nibbles
GQ_INLINE void block_q4_k(const uint8_t* b, float* y) {
  const float d = rdf16(b), dmin = rdf16(b + 2);
  uint8_t sc[8], mn[8];
  k4_scales(b + 4, sc, mn);
  const uint8_t* qs = b + 16;
  for (int i = 0; i < 4; ++i) {
    const float ds0 = d * (float)sc[2 * i], dm0 = dmin * (float)mn[2 * i];
    const float ds1 = d * (float)sc[2 * i + 1], dm1 = dmin * (float)mn[2 * i + 1];
    const uint8_t* q = qs + 32 * i;
    float* y0 = y + 64 * i;
    float* y1 = y0 + 32;
    for (int l = 0; l < 32; ++l) {
      const float p0 = ds0 * (float)(q[l] & 0x0f);
      const float p1 = ds1 * (float)(q[l] >> 4);
      y0[l] = p0 - dm0;
      y1[l] = p1 - dm1;
    }
  }
}

// d f16 | dmin f16 | scales[12] | qh[32] (bit j of qh[l]: 5th bit of element l of sub-block j) | qs[128]
GQ_INLINE void block_q5_k(const uint8_t* b, float* y) {
  const float d = rdf16(b), dmin = rdf16(b + 2);
  uint8_t sc[8], mn[8];
  k4_scales(b + 4, sc, mn);
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int i = 0; i < 4; ++i) {
    const int j0 = 2 * i, j1 = 2 * i + 1;
    const float ds0 = d * (float)sc[j0], dm0 = dmin * (float)mn[j0];
    const float ds1 = d * (float)sc[j1], dm1 = dmin * (float)mn[j1];
    const uint8_t* q = qs + 32 * i;
    float* y0 = y + 64 * i;
    float* y1 = y0 + 32;
    for (int l = 0; l < 32; ++l) {
      const float p0 = ds0 * (float)((q[l] & 0x0f) | (((qh[l] >> j0) & 1) << 4));
      const float p1 = ds1 * (float)((q[l] >> 4) | (((qh[l] >> j1) & 1) << 4));
      y0[l] = p0 - dm0;
      y1[l] = p1 - dm1;
    }
  }
}

// ql[128] | qh[64] | scales int8[16] | d f16. Half h (128 elements), quarter k (32 elements), element l:
// q = ((ql[64h + 32(k&1) + l] >> 4(k>>1)) & 15) | ((qh[32h + l] >> 2k) & 3) << 4, minus 32; scale = sc[idx / 16].
GQ_INLINE void block_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = rdf16(b + 208);
  float ds[16];
  for (int i = 0; i < 16; ++i) ds[i] = d * (float)sc[i];
  for (int h = 0; h < 2; ++h) {
    const uint8_t* lo = ql + 64 * h;
    const uint8_t* hi = qh + 32 * h;
    float* yh = y + 128 * h;
    const float* dsh = ds + 8 * h;
    for (int k = 0; k < 4; ++k) {
      const uint8_t* lq = lo + 32 * (k & 1);
      const int shl = 4 * (k >> 1), shh = 2 * k;
      float* yk = yh + 32 * k;
      const float da = dsh[2 * k], db = dsh[2 * k + 1];
      for (int l = 0; l < 16; ++l)
        yk[l] = da * (float)((int)(((lq[l] >> shl) & 0x0f) | (((hi[l] >> shh) & 3) << 4)) - 32);
      for (int l = 16; l < 32; ++l)
        yk[l] = db * (float)((int)(((lq[l] >> shl) & 0x0f) | (((hi[l] >> shh) & 3) << 4)) - 32);
    }
  }
}

template <void (*Block)(const uint8_t*, float*), int64_t Elems, int64_t Bytes>
GQ_INLINE void blocks(const uint8_t* src, float* dst, int64_t n) {
  const int64_t nb = n / Elems;
  for (int64_t i = 0; i < nb; ++i) Block(src + i * Bytes, dst + i * Elems);
}

GQ_INLINE void f16_portable(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(rd16(src + 2 * i));
}

GQ_INLINE void bf16(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t u = (uint32_t)rd16(src + 2 * i) << 16;
    std::memcpy(dst + i, &u, 4);
  }
}

// Everything but F16, whose fast path differs between the portable and the x86 build.
GQ_INLINE bool dequantize_common(int type, const uint8_t* src, float* dst, int64_t n) {
  switch (type) {
    case GGML_TYPE_F32: std::memcpy(dst, src, (size_t)n * 4); return true;
    case GGML_TYPE_BF16: bf16(src, dst, n); return true;
    case GGML_TYPE_Q4_0: blocks<block_q4_0, QK, 18>(src, dst, n); return true;
    case GGML_TYPE_Q4_1: blocks<block_q4_1, QK, 20>(src, dst, n); return true;
    case GGML_TYPE_Q5_0: blocks<block_q5_0, QK, 22>(src, dst, n); return true;
    case GGML_TYPE_Q5_1: blocks<block_q5_1, QK, 24>(src, dst, n); return true;
    case GGML_TYPE_Q8_0: blocks<block_q8_0, QK, 34>(src, dst, n); return true;
    case GGML_TYPE_Q4_K: blocks<block_q4_k, QK_K, 144>(src, dst, n); return true;
    case GGML_TYPE_Q5_K: blocks<block_q5_k, QK_K, 176>(src, dst, n); return true;
    case GGML_TYPE_Q6_K: blocks<block_q6_k, QK_K, 210>(src, dst, n); return true;
    default: return false;
  }
}

void dequantize_portable(int type, const uint8_t* src, float* dst, int64_t n) {
  if (type == GGML_TYPE_F16) f16_portable(src, dst, n);
  else dequantize_common(type, src, dst, n);
}

#ifdef GRADMM_DEQUANT_X86
// AVX2 kernels: the same float32 operations per element as the blocks above (exact int -> float conversions, then
// one mul, or mul then add/sub, with the operands in the same order), 8 lanes at a time; F16C for F16 tensors.
// No FMA in the target list: see the top of the file.
#define GQ_AVX2 __attribute__((target("avx2,f16c")))

// 32 int8 lanes -> y[0..32) = d * float(q)
GQ_AVX2 GQ_INLINE void store32_mul(float* y, __m256i q, __m256 d) {
  const __m128i a = _mm256_castsi256_si128(q), b = _mm256_extracti128_si256(q, 1);
  _mm256_storeu_ps(y, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(a))));
  _mm256_storeu_ps(y + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(a, 8)))));
  _mm256_storeu_ps(y + 16, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b))));
  _mm256_storeu_ps(y + 24, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8)))));
}
// 32 int8 lanes -> y[0..16) = d0 * float(q), y[16..32) = d1 * float(q)   (Q6_K: one scale per 16 elements)
GQ_AVX2 GQ_INLINE void store32_mul2(float* y, __m256i q, __m256 d0, __m256 d1) {
  const __m128i a = _mm256_castsi256_si128(q), b = _mm256_extracti128_si256(q, 1);
  _mm256_storeu_ps(y, _mm256_mul_ps(d0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(a))));
  _mm256_storeu_ps(y + 8, _mm256_mul_ps(d0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(a, 8)))));
  _mm256_storeu_ps(y + 16, _mm256_mul_ps(d1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b))));
  _mm256_storeu_ps(y + 24, _mm256_mul_ps(d1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8)))));
}
// y = float(q) * d   (Q8_0's operand order)
GQ_AVX2 GQ_INLINE void store32_mul_qd(float* y, __m256i q, __m256 d) {
  const __m128i a = _mm256_castsi256_si128(q), b = _mm256_extracti128_si256(q, 1);
  _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(a)), d));
  _mm256_storeu_ps(y + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(a, 8))), d));
  _mm256_storeu_ps(y + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)), d));
  _mm256_storeu_ps(y + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8))), d));
}
// y = (d * float(q)) + m
GQ_AVX2 GQ_INLINE void store32_mul_add(float* y, __m256i q, __m256 d, __m256 m) {
  const __m128i a = _mm256_castsi256_si128(q), b = _mm256_extracti128_si256(q, 1);
  _mm256_storeu_ps(y, _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(a))), m));
  _mm256_storeu_ps(y + 8, _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(a, 8)))), m));
  _mm256_storeu_ps(y + 16, _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b))), m));
  _mm256_storeu_ps(y + 24, _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8)))), m));
}
// y = (d * float(q)) - m
GQ_AVX2 GQ_INLINE void store32_mul_sub(float* y, __m256i q, __m256 d, __m256 m) {
  const __m128i a = _mm256_castsi256_si128(q), b = _mm256_extracti128_si256(q, 1);
  _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(a))), m));
  _mm256_storeu_ps(y + 8, _mm256_sub_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(a, 8)))), m));
  _mm256_storeu_ps(y + 16, _mm256_sub_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b))), m));
  _mm256_storeu_ps(y + 24, _mm256_sub_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8)))), m));
}

GQ_AVX2 GQ_INLINE __m256i loadu256(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
// 16 packed bytes -> 32 nibbles: low nibbles in bytes 0..15, high nibbles in bytes 16..31
GQ_AVX2 GQ_INLINE __m256i nibbles16(const uint8_t* p) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i m = _mm_set1_epi8(0x0f);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
}
// bit j of qh -> 0x10 in byte j, else 0 (32 bytes)
GQ_AVX2 GQ_INLINE __m256i qh_bits_0x10(uint32_t qh) {
  const __m256i shuf = _mm256_setr_epi64x(0x0000000000000000LL, 0x0101010101010101LL, 0x0202020202020202LL,
                                          0x0303030303030303LL);
  const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), shuf);
  const __m256i bit = _mm256_set1_epi64x(0x8040201008040201LL);
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit), _mm256_set1_epi8(0x10));
}

GQ_AVX2 GQ_INLINE void block_q4_0_avx2(const uint8_t* b, float* y) {
  store32_mul(y, _mm256_sub_epi8(nibbles16(b + 2), _mm256_set1_epi8(8)), _mm256_set1_ps(rdf16(b)));
}
GQ_AVX2 GQ_INLINE void block_q4_1_avx2(const uint8_t* b, float* y) {
  store32_mul_add(y, nibbles16(b + 4), _mm256_set1_ps(rdf16(b)), _mm256_set1_ps(rdf16(b + 2)));
}
GQ_AVX2 GQ_INLINE void block_q5_0_avx2(const uint8_t* b, float* y) {
  const __m256i q = _mm256_or_si256(nibbles16(b + 6), qh_bits_0x10(rd32(b + 2)));
  store32_mul(y, _mm256_sub_epi8(q, _mm256_set1_epi8(16)), _mm256_set1_ps(rdf16(b)));
}
GQ_AVX2 GQ_INLINE void block_q5_1_avx2(const uint8_t* b, float* y) {
  const __m256i q = _mm256_or_si256(nibbles16(b + 8), qh_bits_0x10(rd32(b + 4)));
  store32_mul_add(y, q, _mm256_set1_ps(rdf16(b)), _mm256_set1_ps(rdf16(b + 2)));
}
GQ_AVX2 GQ_INLINE void block_q8_0_avx2(const uint8_t* b, float* y) {
  store32_mul_qd(y, loadu256(b + 2), _mm256_set1_ps(rdf16(b)));
}
GQ_AVX2 GQ_INLINE void block_q4_k_avx2(const uint8_t* b, float* y) {
  const float d = rdf16(b), dmin = rdf16(b + 2);
  uint8_t sc[8], mn[8];
  k4_scales(b + 4, sc, mn);
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  for (int i = 0; i < 4; ++i) {
    const __m256i v = loadu256(b + 16 + 32 * i);
    const float ds0 = d * (float)sc[2 * i], dm0 = dmin * (float)mn[2 * i];
    const float ds1 = d * (float)sc[2 * i + 1], dm1 = dmin * (float)mn[2 * i + 1];
    store32_mul_sub(y + 64 * i, _mm256_and_si256(v, m4), _mm256_set1_ps(ds0), _mm256_set1_ps(dm0));
    store32_mul_sub(y + 64 * i + 32, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4), _mm256_set1_ps(ds1),
                    _mm256_set1_ps(dm1));
  }
}
GQ_AVX2 GQ_INLINE void block_q5_k_avx2(const uint8_t* b, float* y) {
  const float d = rdf16(b), dmin = rdf16(b + 2);
  uint8_t sc[8], mn[8];
  k4_scales(b + 4, sc, mn);
  const __m256i qh = loadu256(b + 16);
  const __m256i m4 = _mm256_set1_epi8(0x0f), x10 = _mm256_set1_epi8(0x10);
  for (int i = 0; i < 4; ++i) {
    const __m256i v = loadu256(b + 48 + 32 * i);
    const __m256i bit0 = _mm256_set1_epi8((char)(1 << (2 * i))), bit1 = _mm256_set1_epi8((char)(2 << (2 * i)));
    const __m256i h0 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit0), bit0), x10);
    const __m256i h1 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit1), bit1), x10);
    const float ds0 = d * (float)sc[2 * i], dm0 = dmin * (float)mn[2 * i];
    const float ds1 = d * (float)sc[2 * i + 1], dm1 = dmin * (float)mn[2 * i + 1];
    store32_mul_sub(y + 64 * i, _mm256_or_si256(_mm256_and_si256(v, m4), h0), _mm256_set1_ps(ds0),
                    _mm256_set1_ps(dm0));
    store32_mul_sub(y + 64 * i + 32, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), h1),
                    _mm256_set1_ps(ds1), _mm256_set1_ps(dm1));
  }
}
GQ_AVX2 GQ_INLINE void block_q6_k_avx2(const uint8_t* b, float* y) {
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = rdf16(b + 208);
  float ds[16];
  for (int i = 0; i < 16; ++i) ds[i] = d * (float)sc[i];
  const __m256i m4 = _mm256_set1_epi8(0x0f), c32 = _mm256_set1_epi8(32);
  for (int h = 0; h < 2; ++h) {
    const __m256i lo0 = loadu256(b + 64 * h), lo1 = loadu256(b + 64 * h + 32), hb = loadu256(b + 128 + 32 * h);
    const __m256i q0 = _mm256_or_si256(_mm256_and_si256(lo0, m4),
                                       _mm256_slli_epi16(_mm256_and_si256(hb, _mm256_set1_epi8(0x03)), 4));
    const __m256i q1 = _mm256_or_si256(_mm256_and_si256(lo1, m4),
                                       _mm256_slli_epi16(_mm256_and_si256(hb, _mm256_set1_epi8(0x0c)), 2));
    const __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lo0, 4), m4),
                                       _mm256_and_si256(hb, _mm256_set1_epi8(0x30)));
    const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lo1, 4), m4),
                                       _mm256_srli_epi16(_mm256_and_si256(hb, _mm256_set1_epi8((char)0xc0)), 2));
    const float* dsh = ds + 8 * h;
    float* yh = y + 128 * h;
    store32_mul2(yh, _mm256_sub_epi8(q0, c32), _mm256_set1_ps(dsh[0]), _mm256_set1_ps(dsh[1]));
    store32_mul2(yh + 32, _mm256_sub_epi8(q1, c32), _mm256_set1_ps(dsh[2]), _mm256_set1_ps(dsh[3]));
    store32_mul2(yh + 64, _mm256_sub_epi8(q2, c32), _mm256_set1_ps(dsh[4]), _mm256_set1_ps(dsh[5]));
    store32_mul2(yh + 96, _mm256_sub_epi8(q3, c32), _mm256_set1_ps(dsh[6]), _mm256_set1_ps(dsh[7]));
  }
}

template <void (*Block)(const uint8_t*, float*), int64_t Elems, int64_t Bytes>
GQ_AVX2 GQ_INLINE void blocks_avx2(const uint8_t* src, float* dst, int64_t n) {
  const int64_t nb = n / Elems;
  for (int64_t i = 0; i < nb; ++i) Block(src + i * Bytes, dst + i * Elems);
}

GQ_AVX2 void f16_avx2(const uint8_t* src, float* dst, int64_t n) {
  // vcvtph2ps is exact except that it quiets signaling NaNs, which numpy keeps: groups of 8 holding any NaN
  // (|h| > 0x7c00) take the integer conversion.
  const __m128i abs_mask = _mm_set1_epi16(0x7fff), inf = _mm_set1_epi16(0x7c00);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    if (_mm_movemask_epi8(_mm_cmpgt_epi16(_mm_and_si128(h, abs_mask), inf))) {
      for (int k = 0; k < 8; ++k) dst[i + k] = f16_to_f32(rd16(src + 2 * (i + k)));
    } else {
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
  }
  for (; i < n; ++i) dst[i] = f16_to_f32(rd16(src + 2 * i));
}

GQ_AVX2 void dequantize_avx2(int type, const uint8_t* src, float* dst, int64_t n) {
  switch (type) {
    case GGML_TYPE_F16: f16_avx2(src, dst, n); return;
    case GGML_TYPE_Q4_0: blocks_avx2<block_q4_0_avx2, QK, 18>(src, dst, n); return;
    case GGML_TYPE_Q4_1: blocks_avx2<block_q4_1_avx2, QK, 20>(src, dst, n); return;
    case GGML_TYPE_Q5_0: blocks_avx2<block_q5_0_avx2, QK, 22>(src, dst, n); return;
    case GGML_TYPE_Q5_1: blocks_avx2<block_q5_1_avx2, QK, 24>(src, dst, n); return;
    case GGML_TYPE_Q8_0: blocks_avx2<block_q8_0_avx2, QK, 34>(src, dst, n); return;
    case GGML_TYPE_Q4_K: blocks_avx2<block_q4_k_avx2, QK_K, 144>(src, dst, n); return;
    case GGML_TYPE_Q5_K: blocks_avx2<block_q5_k_avx2, QK_K, 176>(src, dst, n); return;
    case GGML_TYPE_Q6_K: blocks_avx2<block_q6_k_avx2, QK_K, 210>(src, dst, n); return;
    default: dequantize_common(type, src, dst, n); return;  // F32, BF16 (auto-vectorized)
  }
}

bool cpu_avx2_f16c() {
  static const bool yes = [] {
    __builtin_cpu_init();
    // F16C from CPUID leaf 1 (ECX bit 29): older clang's __builtin_cpu_supports does not know "f16c"
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __builtin_cpu_supports("avx2") && __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) != 0;
  }();
  return yes;
}
#endif

}  // namespace

bool ggml_type_dequantizable(int type) { return ggml_block_elems(type) != 0; }

int64_t ggml_block_elems(int type) {
  switch (type) {
    case GGML_TYPE_F32:
    case GGML_TYPE_F16:
    case GGML_TYPE_BF16: return 1;
    case GGML_TYPE_Q4_0:
    case GGML_TYPE_Q4_1:
    case GGML_TYPE_Q5_0:
    case GGML_TYPE_Q5_1:
    case GGML_TYPE_Q8_0: return QK;
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q5_K:
    case GGML_TYPE_Q6_K: return QK_K;
    default: return 0;
  }
}

int64_t ggml_block_bytes(int type) {
  switch (type) {
    case GGML_TYPE_F32: return 4;
    case GGML_TYPE_F16: return 2;
    case GGML_TYPE_BF16: return 2;
    case GGML_TYPE_Q4_0: return 18;
    case GGML_TYPE_Q4_1: return 20;
    case GGML_TYPE_Q5_0: return 22;
    case GGML_TYPE_Q5_1: return 24;
    case GGML_TYPE_Q8_0: return 34;
    case GGML_TYPE_Q4_K: return 144;
    case GGML_TYPE_Q5_K: return 176;
    case GGML_TYPE_Q6_K: return 210;
    default: return 0;
  }
}

const char* ggml_type_name(int type) {
  switch (type) {
    case 0: return "F32";
    case 1: return "F16";
    case 2: return "Q4_0";
    case 3: return "Q4_1";
    case 6: return "Q5_0";
    case 7: return "Q5_1";
    case 8: return "Q8_0";
    case 9: return "Q8_1";
    case 10: return "Q2_K";
    case 11: return "Q3_K";
    case 12: return "Q4_K";
    case 13: return "Q5_K";
    case 14: return "Q6_K";
    case 15: return "Q8_K";
    case 16: return "IQ2_XXS";
    case 17: return "IQ2_XS";
    case 18: return "IQ3_XXS";
    case 19: return "IQ1_S";
    case 20: return "IQ4_NL";
    case 21: return "IQ3_S";
    case 22: return "IQ2_S";
    case 23: return "IQ4_XS";
    case 24: return "I8";
    case 25: return "I16";
    case 26: return "I32";
    case 27: return "I64";
    case 28: return "F64";
    case 29: return "IQ1_M";
    case 30: return "BF16";
    case 34: return "TQ1_0";
    case 35: return "TQ2_0";
    case 39: return "MXFP4";
    default: return nullptr;
  }
}

void dequantize(int type, const uint8_t* src, float* dst, int64_t n) {
  if (n <= 0 || !ggml_type_dequantizable(type)) return;
#ifdef GRADMM_DEQUANT_X86
  if (cpu_avx2_f16c()) {
    dequantize_avx2(type, src, dst, n);
    return;
  }
#endif
  dequantize_portable(type, src, dst, n);
}

}  // namespace gradmm
