// Single-precision matrix multiply, the engine's hot spot.
//   C[M,N] = op(A)[M,K] · op(B)[K,N]   (or C += … when accumulate)
// Row-major storage. transA: A is stored K×M (element (i,k) at A[k*lda+i]); else M×K (A[i*lda+k]).
// transB: B is stored N×K (element (k,j) at B[j*ldb+k]); else K×N (B[k*ldb+j]).
// Packed and cache-blocked (BLIS loop order) around a register-tiled micro-kernel chosen at run time from
// AVX-512, AVX2+FMA or portable scalar code. Threads split rows or columns of C, never K, and the K loop order is
// fixed, so every element of C is the same bits whatever the thread count.
#pragma once

namespace gradmm {

void sgemm(bool transA, bool transB, int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C,
           int ldc, bool accumulate);

// Name of the micro-kernel in use ("avx512", "avx2", "scalar").
const char* sgemm_kernel_name();
// Forces a kernel by name ("avx512" | "avx2" | "scalar" | "auto"); returns false if unsupported on this CPU.
bool sgemm_force_kernel(const char* name);

// Internal: one micro-kernel. Computes a tile C[m×n] (m<=mr, n<=nr) from packed panels:
// a_panel holds kc groups of mr floats (column k of the row panel), b_panel kc groups of nr floats.
struct GemmMicroKernel {
  const char* name;
  int mr, nr;
  void (*run)(int kc, const float* a_panel, const float* b_panel, float* c, long ldc, int m, int n, bool accumulate);
  // Packing into those panels: op(A)[i0:i0+mc, p0:p0+kc] into mr-row panels, op(B)[p0:p0+kc, j0:j0+nc] into nr-column
  // panels, the last panel of each zero-padded (built per ISA: the tile widths are compile-time constants there).
  void (*pack_a)(bool transA, const float* A, int lda, int i0, int mc, int p0, int kc, float* dst);
  void (*pack_b)(bool transB, const float* B, int ldb, int p0, int kc, int j0, int nc, float* dst);
  // Unpacked paths for a few rows of A (decoding: M = rows being decoded), where packing B would cost as much as
  // the product. Columns [j0, j1) of C; K summed in order; B read from memory once per tile of up to 6 rows of A
  // (the drivers in gemm_tile.inc).
  //   small_nn: C[M,N] (+)= A[M,K] · B[K,N]      small_nt: C[M,N] (+)= A[M,K] · B[N,K]ᵀ
  void (*small_nn)(int M, int j0, int j1, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc, bool accumulate);
  void (*small_nt)(int M, int j0, int j1, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc, bool accumulate);
};
const GemmMicroKernel* gemm_kernel_scalar();
const GemmMicroKernel* gemm_kernel_avx2();    // nullptr if not compiled in
const GemmMicroKernel* gemm_kernel_avx512();  // nullptr if not compiled in

}  // namespace gradmm
