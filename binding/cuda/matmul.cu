// Matmul family (ops.h: gemm / matmul_*): sgemm semantics on the device, three ways.
//   F32    our tiled SIMT kernel: 64×64 tile, 16-deep K slices in shared memory, 4×4 outputs per thread, FMA in f32.
//          The exact path the tests compare with the CPU.
//   TF32   our tensor-core kernel: WMMA m16n16k8 TF32 fragments with f32 accumulation, 64×64 tile, 4 warps of
//          32×32 (sm_80+).
//   cuBLAS cublasGemmEx (f32 or fast-TF32 compute) when built with GRADMM_HAVE_CUBLAS.
// Row-major is handled by index mapping in the tile loads (any lda/ldb/ldc, any transposition, any size: edges are
// zero-filled), so no copies. Few output tiles and a long K (Gram matrices, dh = dlogits·W) split K across blocks
// that atomically add their partial products.
#include <mma.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>

#include "common.cuh"

#ifdef GRADMM_HAVE_CUBLAS
#include <cublas_v2.h>
#endif

namespace gradmm {
namespace cuda {

namespace {

struct GemmArgs {
  int M, N, K;
  const float* A;
  const float* B;
  float* C;
  int lda, ldb, ldc;
  int ta, tb;
  float alpha;
  int accumulate;
  int inner;  // batch z → outer z / inner, inner z % inner
  long sAo, sAi, sBo, sBi, sCo, sCi;
  int splits, kchunk;  // split-K: `splits` chunks of `kchunk` (a multiple of the tile depth)
};

__device__ __forceinline__ void batch_pointers(const GemmArgs& g, int bz, const float*& A, const float*& B, float*& C) {
  const long ob = bz / g.inner, ib = bz % g.inner;
  A = g.A + ob * g.sAo + ib * g.sAi;
  B = g.B + ob * g.sBo + ib * g.sBi;
  C = g.C + ob * g.sCo + ib * g.sCi;
}

__device__ __forceinline__ void store_c(const GemmArgs& g, float* c, float acc) {
  const float v = g.alpha * acc;
  if (g.splits > 1) atomicAdd(c, v);
  else *c = g.accumulate ? *c + v : v;
}

// ---- exact f32: 256 threads, thread (ty, tx) owns rows ty + 16·ii and columns tx + 16·jj (ii, jj < 4) ----
constexpr int F_BM = 64, F_BN = 64, F_BK = 16, F_THREADS = 256;

__global__ void __launch_bounds__(F_THREADS) gemm_f32_kernel(GemmArgs g, int z0) {
  __shared__ float As[F_BK][F_BM + 4];  // As[k][i]
  __shared__ float Bs[F_BK][F_BN + 4];  // Bs[k][j]
  const int z = blockIdx.z + z0;
  const int split = z % g.splits, bz = z / g.splits;
  const float *A, *B;
  float* C;
  batch_pointers(g, bz, A, B, C);
  const int m0 = blockIdx.y * F_BM, n0 = blockIdx.x * F_BN;
  const int kbeg = split * g.kchunk;
  const int kend = min(g.K, kbeg + g.kchunk);
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  float acc[4][4];
#pragma unroll
  for (int ii = 0; ii < 4; ++ii)
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) acc[ii][jj] = 0.f;

  for (int k0 = kbeg; k0 < kend; k0 += F_BK) {
#pragma unroll
    for (int r = 0; r < (F_BM * F_BK) / F_THREADS; ++r) {
      const int idx = tid + r * F_THREADS;
      int i, k;
      if (g.ta) k = idx / F_BM, i = idx % F_BM;  // A stored K×M: consecutive threads read consecutive i
      else i = idx / F_BK, k = idx % F_BK;       // A stored M×K: consecutive threads read consecutive k
      const int gi = m0 + i, gk = k0 + k;
      float v = 0.f;
      if (gi < g.M && gk < kend) v = g.ta ? A[(long)gk * g.lda + gi] : A[(long)gi * g.lda + gk];
      As[k][i] = v;
    }
#pragma unroll
    for (int r = 0; r < (F_BN * F_BK) / F_THREADS; ++r) {
      const int idx = tid + r * F_THREADS;
      int j, k;
      if (g.tb) j = idx / F_BK, k = idx % F_BK;  // B stored N×K
      else k = idx / F_BN, j = idx % F_BN;       // B stored K×N
      const int gj = n0 + j, gk = k0 + k;
      float v = 0.f;
      if (gj < g.N && gk < kend) v = g.tb ? B[(long)gj * g.ldb + gk] : B[(long)gk * g.ldb + gj];
      Bs[k][j] = v;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < F_BK; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int ii = 0; ii < 4; ++ii) a[ii] = As[kk][ty + 16 * ii];
#pragma unroll
      for (int jj = 0; jj < 4; ++jj) b[jj] = Bs[kk][tx + 16 * jj];
#pragma unroll
      for (int ii = 0; ii < 4; ++ii)
#pragma unroll
        for (int jj = 0; jj < 4; ++jj) acc[ii][jj] = fmaf(a[ii], b[jj], acc[ii][jj]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int ii = 0; ii < 4; ++ii)
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) {
      const int i = m0 + ty + 16 * ii, j = n0 + tx + 16 * jj;
      if (i < g.M && j < g.N) store_c(g, C + (long)i * g.ldc + j, acc[ii][jj]);
    }
}

// ---- TF32 tensor cores: 128 threads = 4 warps in 2×2, each 32×32 = 2×2 WMMA 16×16 accumulators ----
constexpr int T_BM = 64, T_BN = 64, T_BK = 16, T_THREADS = 128;
constexpr int T_LDA = T_BK + 4, T_LDB = T_BN + 4;  // padded, multiples of 4 floats as WMMA requires

__global__ void __launch_bounds__(T_THREADS) gemm_tf32_kernel(GemmArgs g, int z0) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using namespace nvcuda;
  // every fragment pointer below is a multiple of 32 bytes from these bases, as load/store_matrix_sync require
  __shared__ __align__(128) float As[T_BM * T_LDA];    // row-major [i][k]
  __shared__ __align__(128) float Bs[T_BK * T_LDB];    // row-major [k][j]
  __shared__ __align__(128) float Cs[T_THREADS / 32][16 * 16];  // per-warp epilogue staging
  const int z = blockIdx.z + z0;
  const int split = z % g.splits, bz = z / g.splits;
  const float *A, *B;
  float* C;
  batch_pointers(g, bz, A, B, C);
  const int m0 = blockIdx.y * T_BM, n0 = blockIdx.x * T_BN;
  const int kbeg = split * g.kchunk;
  const int kend = min(g.K, kbeg + g.kchunk);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, wy = warp / 2, wx = warp % 2;

  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[2][2];
#pragma unroll
  for (int fi = 0; fi < 2; ++fi)
#pragma unroll
    for (int fj = 0; fj < 2; ++fj) wmma::fill_fragment(acc[fi][fj], 0.f);

  for (int k0 = kbeg; k0 < kend; k0 += T_BK) {
#pragma unroll
    for (int r = 0; r < (T_BM * T_BK) / T_THREADS; ++r) {
      const int idx = tid + r * T_THREADS;
      int i, k;
      if (g.ta) k = idx / T_BM, i = idx % T_BM;
      else i = idx / T_BK, k = idx % T_BK;
      const int gi = m0 + i, gk = k0 + k;
      float v = 0.f;
      if (gi < g.M && gk < kend) v = g.ta ? A[(long)gk * g.lda + gi] : A[(long)gi * g.lda + gk];
      As[i * T_LDA + k] = v;
    }
#pragma unroll
    for (int r = 0; r < (T_BN * T_BK) / T_THREADS; ++r) {
      const int idx = tid + r * T_THREADS;
      int j, k;
      if (g.tb) j = idx / T_BK, k = idx % T_BK;
      else k = idx / T_BN, j = idx % T_BN;
      const int gj = n0 + j, gk = k0 + k;
      float v = 0.f;
      if (gj < g.N && gk < kend) v = g.tb ? B[(long)gj * g.ldb + gk] : B[(long)gk * g.ldb + gj];
      Bs[k * T_LDB + j] = v;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < T_BK; kk += 8) {
      wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> b[2];
#pragma unroll
      for (int fi = 0; fi < 2; ++fi) {
        wmma::load_matrix_sync(a[fi], As + (wy * 32 + fi * 16) * T_LDA + kk, T_LDA);
#pragma unroll
        for (int t = 0; t < a[fi].num_elements; ++t) a[fi].x[t] = wmma::__float_to_tf32(a[fi].x[t]);
      }
#pragma unroll
      for (int fj = 0; fj < 2; ++fj) {
        wmma::load_matrix_sync(b[fj], Bs + kk * T_LDB + wx * 32 + fj * 16, T_LDB);
#pragma unroll
        for (int t = 0; t < b[fj].num_elements; ++t) b[fj].x[t] = wmma::__float_to_tf32(b[fj].x[t]);
      }
#pragma unroll
      for (int fi = 0; fi < 2; ++fi)
#pragma unroll
        for (int fj = 0; fj < 2; ++fj) wmma::mma_sync(acc[fi][fj], a[fi], b[fj], acc[fi][fj]);
    }
    __syncthreads();
  }
  float* st = Cs[warp];
#pragma unroll
  for (int fi = 0; fi < 2; ++fi)
#pragma unroll
    for (int fj = 0; fj < 2; ++fj) {
      wmma::store_matrix_sync(st, acc[fi][fj], 16, wmma::mem_row_major);
      __syncwarp();
      for (int e = lane; e < 256; e += 32) {
        const int i = m0 + wy * 32 + fi * 16 + e / 16, j = n0 + wx * 32 + fj * 16 + e % 16;
        if (i < g.M && j < g.N) store_c(g, C + (long)i * g.ldc + j, st[e]);
      }
      __syncwarp();
    }
#endif
}

__global__ void zero_matrix_kernel(float* C, int M, int N, int ldc) {
  GRADMM_GRID_LOOP(e, (long)M * N) C[(e / N) * ldc + e % N] = 0.f;
}
// out[r·ld + o] += bias[o] for r < N, o < OC
__global__ void add_bias_kernel(float* out, const float* bias, long N, int OC, int ld) {
  GRADMM_GRID_LOOP(i, N * OC) out[(i / OC) * ld + i % OC] += bias[i % OC];
}
// block (32, 8): out[c] += Σ_r in[r·ld + c]
__global__ void column_sum_kernel(float* out, const float* in, int N, int C, int ld) {
  __shared__ float s[8][33];
  const int tx = threadIdx.x, ty = threadIdx.y, c = blockIdx.x * 32 + tx;
  float a = 0.f;
  if (c < C)
    for (long r = ty; r < N; r += 8) a += in[r * ld + c];
  s[ty][tx] = a;
  __syncthreads();
  if (ty == 0 && c < C) {
    for (int y = 1; y < 8; ++y) a += s[y][tx];
    out[c] += a;
  }
}

// ---- device facts and the mode ----
struct DeviceFacts {
  int sms = 1, cc_major = 0;
};
const DeviceFacts& facts() {
  static DeviceFacts f;
  static std::once_flag once;
  std::call_once(once, [] {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) dev = 0;
    if (cudaDeviceGetAttribute(&f.sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) f.sms = 1;
    if (cudaDeviceGetAttribute(&f.cc_major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) f.cc_major = 0;
    cudaGetLastError();  // clear a sticky-free error from a failed query
  });
  return f;
}

GemmMode mode_from_env() {
  const char* e = std::getenv("GRADMM_CUDA_GEMM");
  if (!e || !*e || !std::strcmp(e, "auto")) return GemmMode::Auto;
  if (!std::strcmp(e, "f32")) return GemmMode::F32;
  if (!std::strcmp(e, "tf32")) return GemmMode::TF32;
  if (!std::strcmp(e, "cublas")) return GemmMode::CublasTF32;
  if (!std::strcmp(e, "cublas-f32")) return GemmMode::CublasF32;
  return GemmMode::Auto;
}
std::atomic<int> g_mode{-1};

// Our-kernel mode for a requested mode (cuBLAS modes map to the same precision of ours when cuBLAS is absent or
// for batched products).
GemmMode own_mode(GemmMode m) {
  if (m == GemmMode::Auto || m == GemmMode::CublasTF32) m = GemmMode::TF32;
  if (m == GemmMode::CublasF32) m = GemmMode::F32;
  if (m == GemmMode::TF32 && facts().cc_major < 8) m = GemmMode::F32;
  return m;
}

void launch_own(GemmMode mode, GemmArgs g, int batch) {
  const bool tf32 = own_mode(mode) == GemmMode::TF32;
  const int BM = tf32 ? T_BM : F_BM, BN = tf32 ? T_BN : F_BN, BK = tf32 ? T_BK : F_BK;
  const long tiles = (long)((g.M + BM - 1) / BM) * ((g.N + BN - 1) / BN);
  g.splits = 1;
  g.kchunk = ((g.K + BK - 1) / BK) * BK;
  if (batch == 1 && g.K >= 8 * 256) {  // few tiles, long K: split K so every SM has work
    const long want = 2L * facts().sms;
    if (tiles < want) {
      long splits = (want + tiles - 1) / tiles;
      splits = std::min<long>(splits, g.K / 256);  // at least 256 of K per block
      if (splits > 1) {
        g.kchunk = (int)(((g.K + splits - 1) / splits + BK - 1) / BK * BK);
        g.splits = (g.K + g.kchunk - 1) / g.kchunk;
      }
    }
  }
  if (g.splits > 1 && !g.accumulate) {
    zero_matrix_kernel<<<grid_for((long)g.M * g.N, 256), 256>>>(g.C, g.M, g.N, g.ldc);
    check_launch("gemm (split-K zero)");
  }
  const dim3 grid((g.N + BN - 1) / BN, (g.M + BM - 1) / BM);
  const long zs = (long)batch * g.splits;
  for (long z0 = 0; z0 < zs; z0 += 65535) {
    dim3 gz = grid;
    gz.z = (unsigned)std::min<long>(65535, zs - z0);
    if (tf32) gemm_tf32_kernel<<<gz, T_THREADS>>>(g, (int)z0);
    else gemm_f32_kernel<<<gz, F_THREADS>>>(g, (int)z0);
    check_launch(tf32 ? "gemm (tf32)" : "gemm (f32)");
  }
}

#ifdef GRADMM_HAVE_CUBLAS
cublasHandle_t cublas() {
  static cublasHandle_t h = nullptr;
  static std::once_flag once;
  static std::string err;
  std::call_once(once, [] {
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
      h = nullptr;
      err = "cublasCreate failed";
    }
  });
  if (!h) throw std::runtime_error("gradmm CUDA: " + err);
  return h;
}
// Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: swap the operands, keep each one's transposition.
void gemm_cublas(bool tf32, bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float* C, int ldc, bool accumulate) {
  const float beta = accumulate ? 1.f : 0.f;
  const cublasStatus_t s =
      cublasGemmEx(cublas(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B,
                   CUDA_R_32F, ldb, A, CUDA_R_32F, lda, &beta, C, CUDA_R_32F, ldc,
                   tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error("gradmm CUDA: cublasGemmEx failed with status " + std::to_string((int)s));
}
#endif

}  // namespace

bool have_cublas() {
#ifdef GRADMM_HAVE_CUBLAS
  return true;
#else
  return false;
#endif
}

void set_gemm_mode(GemmMode m) { g_mode.store((int)m); }
GemmMode gemm_mode() {
  int m = g_mode.load();
  if (m < 0) {
    m = (int)mode_from_env();
    int expected = -1;
    g_mode.compare_exchange_strong(expected, m);
    m = g_mode.load();
  }
  return (GemmMode)m;
}
GemmMode resolved_gemm_mode() {
  GemmMode m = gemm_mode();
  if (m == GemmMode::Auto) m = have_cublas() ? GemmMode::CublasTF32 : GemmMode::TF32;
  if ((m == GemmMode::CublasTF32 || m == GemmMode::CublasF32) && !have_cublas()) m = own_mode(m);
  if (m == GemmMode::TF32) m = own_mode(m);
  return m;
}
const char* gemm_mode_name(GemmMode m) {
  switch (m) {
    case GemmMode::Auto: return "auto";
    case GemmMode::F32: return "f32";
    case GemmMode::TF32: return "tf32";
    case GemmMode::CublasF32: return "cublas-f32";
    case GemmMode::CublasTF32: return "cublas-tf32";
  }
  return "?";
}

void gemm_mode_ex(GemmMode mode, bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
                  const float* B, int ldb, float* C, int ldc, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {  // C = 0 (or unchanged when accumulating)
    if (!accumulate) {
      zero_matrix_kernel<<<grid_for((long)M * N, 256), 256>>>(C, M, N, ldc);
      check_launch("gemm (K = 0)");
    }
    return;
  }
  if (mode == GemmMode::Auto) mode = have_cublas() ? GemmMode::CublasTF32 : GemmMode::TF32;
#ifdef GRADMM_HAVE_CUBLAS
  if (mode == GemmMode::CublasF32 || mode == GemmMode::CublasTF32) {
    gemm_cublas(mode == GemmMode::CublasTF32, transA, transB, M, N, K, alpha, A, lda, B, ldb, C, ldc, accumulate);
    return;
  }
#endif
  GemmArgs g{};
  g.M = M, g.N = N, g.K = K, g.A = A, g.B = B, g.C = C, g.lda = lda, g.ldb = ldb, g.ldc = ldc;
  g.ta = transA, g.tb = transB, g.alpha = alpha, g.accumulate = accumulate, g.inner = 1;
  launch_own(mode, g, 1);
}

void gemm(bool transA, bool transB, int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C,
          int ldc, bool accumulate) {
  gemm_mode_ex(gemm_mode(), transA, transB, M, N, K, 1.f, A, lda, B, ldb, C, ldc, accumulate);
}

void gemm_batched(bool transA, bool transB, int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                  float* C, int ldc, bool accumulate, int batch, int inner, long sA_outer, long sA_inner,
                  long sB_outer, long sB_inner, long sC_outer, long sC_inner) {
  if (M <= 0 || N <= 0 || batch <= 0) return;
  if (inner <= 0) throw std::invalid_argument("gemm_batched: inner must be positive");
  if (K <= 0) {
    if (!accumulate)
      for (int z = 0; z < batch; ++z) {
        float* c = C + (long)(z / inner) * sC_outer + (long)(z % inner) * sC_inner;
        zero_matrix_kernel<<<grid_for((long)M * N, 256), 256>>>(c, M, N, ldc);
        check_launch("gemm_batched (K = 0)");
      }
    return;
  }
  GemmArgs g{};
  g.M = M, g.N = N, g.K = K, g.A = A, g.B = B, g.C = C, g.lda = lda, g.ldb = ldb, g.ldc = ldc;
  g.ta = transA, g.tb = transB, g.alpha = 1.f, g.accumulate = accumulate, g.inner = inner;
  g.sAo = sA_outer, g.sAi = sA_inner, g.sBo = sB_outer, g.sBi = sB_inner, g.sCo = sC_outer, g.sCi = sC_inner;
  launch_own(gemm_mode(), g, batch);
}

void column_sum(float* out, const float* in, int N, int C, int ld) {
  if (C <= 0) return;
  column_sum_kernel<<<(C + 31) / 32, dim3(32, 8)>>>(out, in, N, C, ld);
  check_launch("column_sum");
}

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C, int OC) {
  gemm(false, false, N, OC, C, inp, C, weight, OC, out, OC, false);
  if (bias && N > 0 && OC > 0) {
    add_bias_kernel<<<grid_for((long)N * OC, 256), 256>>>(out, bias, N, OC, OC);
    check_launch("matmul_forward (bias)");
  }
}

void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int N, int C, int OC) {
  if (dinp) gemm(false, true, N, C, OC, dout, OC, weight, OC, dinp, C, true);     // dinp += dout · Wᵀ
  if (dweight) gemm(true, false, C, OC, N, inp, C, dout, OC, dweight, OC, true);  // dW += inpᵀ · dout
  if (dbias) column_sum(dbias, dout, N, OC, OC);
}

// llama_ops.h linear_*: nn.Linear layout (W [OC, C]), strided rows; the same products as the CPU op
void linear_forward(float* out, int ldo, const float* inp, int ldi, const float* weight, const float* bias, int N,
                    int C, int OC) {
  gemm(false, true, N, OC, C, inp, ldi, weight, C, out, ldo, false);
  if (bias && N > 0 && OC > 0) {
    add_bias_kernel<<<grid_for((long)N * OC, 256), 256>>>(out, bias, N, OC, ldo);
    check_launch("linear_forward (bias)");
  }
}
void linear_backward(float* dinp, int lddi, float* dweight, float* dbias, const float* dout, int ldd,
                     const float* inp, int ldi, const float* weight, int N, int C, int OC) {
  if (dinp) gemm(false, false, N, C, OC, dout, ldd, weight, C, dinp, lddi, true);     // dinp += dout · W
  if (dweight) gemm(true, false, OC, C, N, dout, ldd, inp, ldi, dweight, C, true);    // dW += doutᵀ · inp
  if (dbias) column_sum(dbias, dout, N, OC, ldd);
}

}  // namespace cuda
}  // namespace gradmm
