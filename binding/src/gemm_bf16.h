// BF16 matrix multiply with f32 accumulation, for a model whose weight matrices are kept as bf16 copies
// (precision "bf16"; binding/engine/model.h).
//   C[M,N] = op(A)[M,K] · op(B)[K,N]   (or C += … when accumulate)
// A: f32 activations, rounded to bf16 (round to nearest even) when packed. B: bf16 (the weights), stored as uint16
// (the upper half of an f32). Same storage conventions as sgemm (gemm.h): transA: A stored K×M; transB: B stored N×K.
//
// Arithmetic (every kernel, bit for bit): K runs in blocks of KC = 256 (the first block writes C or adds its sum to C,
// later blocks add theirs); within a block each element of C is one f32 chain over pairs of k, each pair (k, k+1)
// added as vdpbf16ps does: acc = fma(a[k+1], b[k+1], acc), then acc = fma(a[k], b[k], acc) (the products are exact in
// f32), with bf16 denormal inputs read as zero and denormal results flushed to zero; an odd K is padded with a zero.
// The portable kernel ("bf16-scalar") is this arithmetic written out; "avx512bf16" runs it with vdpbf16ps
// (_mm512_dpbf16_ps) and is chosen at run time only where CPUID reports AVX512_BF16. Threads split rows or columns
// of C, never K: every element is the same bits whatever the thread count and whichever kernel.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace gradmm {

// f32 → bf16, round to nearest even (NaN stays a quiet NaN), as the weights' copies and the packing of A do.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
inline float bf16_to_f32(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// dst[i] = f32_to_bf16(src[i]) (threaded for large n)
void f32_to_bf16_n(uint16_t* dst, const float* src, long n);

void gemm_bf16(bool transA, bool transB, int M, int N, int K, const float* A, int lda, const uint16_t* B, int ldb,
               float* C, int ldc, bool accumulate);

// A weight matrix packed once for the kernels (the model's bf16 weight storage): op(B) [K,N] rounded to bf16 and laid
// out as gemm_bf16 packs it (blocks of KC values of k; per block, panels of 32 columns of ⌈kc/2⌉ bf16 pairs), so
// a product reads it as it is, with no packing of B and half the bytes of f32. Every kernel has panels 32 wide, so
// one packed matrix serves both. The same bits as gemm_bf16 on the bf16 copy of B.
//   size: uint32 elements for op(B) [K,N]
size_t gemm_bf16_packed_size(int K, int N);
//   dst (64-byte aligned, gemm_bf16_packed_size) = op(B) packed; B f32, storage as in gemm_bf16 (transB: N×K)
void gemm_bf16_pack(bool transB, const float* B, int ldb, int K, int N, uint32_t* dst);
//   C[M,N] (+)= op(A)[M,K] · op(B) with op(B) packed by gemm_bf16_pack(…, K, N, Bp)
void gemm_bf16_packed(bool transA, int M, int N, int K, const float* A, int lda, const uint32_t* Bp, float* C,
                      int ldc, bool accumulate);

// Whether this CPU (CPUID) and this build have the AVX512_BF16 kernel.
bool cpu_has_avx512bf16();
// Name of the bf16 kernel in use ("amx-bf16" | "avx512bf16" | "bf16-scalar"): AMX where the CPU and the OS allow it
// (within rounding of the others: its tile instruction adds a pair's products in its own order), else vdpbf16ps.
const char* gemm_bf16_kernel_name();
// Forces a kernel by name ("amx-bf16" | "avx512bf16" | "scalar" | "auto"); false if unsupported here.
bool gemm_bf16_force_kernel(const char* name);

// Internal: one micro-kernel over packed panels (nr = 32 for every kernel: the packed weights' panel width). A panel holds kp = ⌈kc/2⌉ groups of mr uint32 (row i's bf16 pair
// (k, k+1): k in the low half), a B panel kp groups of nr uint32 (column j's pair). Computes a tile C[m×n] (m<=mr,
// n<=nr), writing or adding.
struct GemmBf16Kernel {
  const char* name;
  int mr, nr;
  void (*run)(int kp, const uint32_t* a_panel, const uint32_t* b_panel, float* c, long ldc, int m, int n,
              bool accumulate);
  void (*pack_a)(bool transA, const float* A, int lda, int i0, int mc, int p0, int kc, uint32_t* dst);
  void (*pack_b)(bool transB, const uint16_t* B, int ldb, int p0, int kc, int j0, int nc, uint32_t* dst);
};
const GemmBf16Kernel* gemm_bf16_kernel_scalar();
const GemmBf16Kernel* gemm_bf16_kernel_avx512();  // nullptr if not compiled in
const GemmBf16Kernel* gemm_bf16_kernel_amx();     // nullptr if not compiled in
bool amx_bf16_usable();  // CPUID has AMX-BF16/AMX-TILE (and AVX512_BF16) and the OS granted the tile state

}  // namespace gradmm
