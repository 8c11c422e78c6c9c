// Host-callable launchers of the CUDA kernels (binding/cuda/*.cuh, compiled in ops.cu and matmul.cu) and the CUDA
// runtime facts the addon reports. Plain C++: no CUDA header needed to include this file.
// Every launcher takes device pointers, uses the default stream, checks the launch and throws std::runtime_error
// on a CUDA error. Semantics are exactly those of the same-named op in binding/src/ops.h, llama_ops.h or
// method_ops.h (the specification).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "backend.h"

namespace gradmm {
namespace cuda {

// ---- runtime ----
struct DeviceInfo {
  std::string name;
  size_t memory = 0;  // bytes
  int major = 0, minor = 0;
};
struct Probe {
  bool ok = false;             // at least one device is usable
  std::string error;           // why not (driver missing, no device, ...)
  std::vector<DeviceInfo> devices;
};
// cudaGetDeviceCount once, lazily, then the properties of each device (no context is created). Thread-safe.
const Probe& probe();
struct BuildInfo {
  bool cublas;             // compiled with cuBLAS (GRADMM_HAVE_CUBLAS)
  const char* archs;       // CMAKE_CUDA_ARCHITECTURES
  int cuda_runtime;        // CUDART_VERSION, e.g. 13000
};
BuildInfo build_info();
void check(int cuda_error, const char* what);  // throws std::runtime_error unless cudaSuccess
void check_launch(const char* what);           // cudaGetLastError after a launch
void synchronize();  // waits for every queued kernel (benchmarks)

// ---- matmul (matmul.cu) ----
enum class GemmMode : int {
  Auto,        // cuBLAS TF32 when compiled with cuBLAS, else our TF32 tensor-core kernel (sm_80+), else F32
  F32,         // our exact-f32 tiled kernel (FMA, f32 accumulation): what the tests compare with the CPU
  TF32,        // our WMMA kernel: TF32 inputs, f32 accumulation (sm_80+; falls back to F32 below that)
  CublasF32,   // cublasGemmEx, CUBLAS_COMPUTE_32F
  CublasTF32,  // cublasGemmEx, CUBLAS_COMPUTE_32F_FAST_TF32
};
void set_gemm_mode(GemmMode m);  // process-wide; the initial value comes from GRADMM_CUDA_GEMM (auto|f32|tf32|cublas|cublas-f32)
GemmMode gemm_mode();
GemmMode resolved_gemm_mode();  // what Auto means on this device and build
const char* gemm_mode_name(GemmMode m);
bool have_cublas();

// C (+)= op(A)·op(B), sgemm semantics (gemm.h), in the current mode.
void gemm(bool transA, bool transB, int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C,
          int ldc, bool accumulate);
// Explicit mode; C = alpha·op(A)·op(B) + (accumulate ? C : 0).
void gemm_mode_ex(GemmMode mode, bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
                  const float* B, int ldb, float* C, int ldc, bool accumulate);
// `batch` independent products; product z uses the offsets (z / inner)·s_outer + (z % inner)·s_inner (in floats)
// for A, B and C, e.g. (batch, head) views into a packed qkv buffer. Our kernels (never cuBLAS) in the current mode.
void gemm_batched(bool transA, bool transB, int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                  float* C, int ldc, bool accumulate, int batch, int inner, long sA_outer, long sA_inner,
                  long sB_outer, long sB_inner, long sC_outer, long sC_inner);
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C, int OC);
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int N, int C, int OC);
// out[c] += Σ_r in[r·ld + c] for c < C (rows in order per column: deterministic)
void column_sum(float* out, const float* in, int N, int C, int ld);
// llama_ops.h linear_* (nn.Linear layout, strided rows)
void linear_forward(float* out, int ldo, const float* inp, int ldi, const float* weight, const float* bias, int N,
                    int C, int OC);
void linear_backward(float* dinp, int lddi, float* dweight, float* dbias, const float* dout, int ldd,
                     const float* inp, int ldi, const float* weight, int N, int C, int OC);

// ---- the other ops (ops.cu) ----
void embedding_forward(float* out, const int* tokens, const float* wte, const float* wpe, int B, int T, int C, int pos0,
                       float scale = 1.f);
void embedding_backward(float* dwte, float* dwpe, const float* dout, const int* tokens, int B, int T, int C, int pos0,
                        float scale = 1.f);
void input_embedding_forward(float* out, const float* inp, const float* wpe, int B, int T, int C, int pos0);
void input_embedding_backward(float* dinp, float* dwpe, const float* dout, int B, int T, int C, int pos0);
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       int N, int C, float eps);
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int N, int C);
void gelu_forward(float* out, const float* inp, long N);
void gelu_backward(float* dinp, const float* inp, const float* dout, long N);
void residual_forward(float* out, const float* a, const float* b, long N);
void residual_backward(float* da, float* db, const float* dout, long N);
void softmax_crossentropy_forward(float* losses, float* probs, const float* logits, const int* targets,
                                  const float* mask, int N, int V);
void softmax_crossentropy_backward(float* dlogits, const float* dlosses, const float* probs, const int* targets,
                                   const float* mask, int N, int V);
void adamw_update(float* params, const float* grads, float* m, float* v, long n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int t);
double grad_norm(const float* grads, long n);
void scale(float* x, long n, float s);
// ops.h clip_and_adamw: grad_norm, scale (when clipping), adamw_update; returns the norm before clipping
double clip_adamw(float* params, float* grads, float* m, float* v, long n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, float max_norm, int t);
void fill(float* x, long n, float value);
void dual_point(float* u, const float* x, const float* lam, int B, long row_n, long free_n, double rho);
void dual_update(float* lam, const float* x, const float* z, int B, long row_n, long free_n, double rho);
void gather_rows(float* dst, const float* src, int R, int C, long stride, long offset);
void scatter_rows(float* dst, const float* src, int R, int C, long stride, long offset, bool accumulate);
void gather_rows_at(float* dst, const float* src, const int* idx, int R, int C);
void scatter_rows_at(float* dst, const float* src, const int* idx, int R, int C, bool accumulate);
void onehot_sub(float* A, const float* P, const int* labels, int R, int V);
void scale_cols(float* X, const float* m, int R, int V);
void row_dot(double* out, const float* a, const float* b, int R, int V);
void gm_combine(GmScalars* out, float* per_sample, float* loss_out, const float* RA, const float* RH, const float* SA,
                const float* SH, const double* noise_dots, int n, int B, double target_norm, GmMean mean);
void gm_bias_combine(GmScalars* out, float* per_sample, float* loss_out, const double* dots, const float* own,
                     const float* SA, int B, double bias_norm);
void scale_by(float* x, long n, const float* s);
void axpy_by(float* y, const float* x, long n, const float* a);
void softmax_jvp_rows(float* dlogits, const float* P, const float* G, int R, int V);
void x_adam_step(float* X, float* m, float* v, const float* dX, const float* z, const float* lam, float* g_scratch,
                 double* norm_scratch, int B, long row_n, long free_n, float rho, float max_norm, float beta1,
                 float beta2, float eps, float step_size, float bc2_sqrt);

// ---- the Llama family and Gemma (ops.cu: rmsnorm.cuh, rope.cuh, swiglu.cuh, geglu.cuh, attention.cuh; llama_ops.h
// is the spec) ----
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N, int C, float eps,
                     int heads = 1, int ld = 0, float w_offset = 0.f);
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, int N, int C, int heads = 1, int ld = 0, float w_offset = 0.f);
void rope_forward(float* out, const float* inp, int N, int T, int ld, int n_heads, int hd, const float* cos,
                  const float* sin, int pos0);
void rope_backward(float* dinp, const float* dout, int N, int T, int ld, int n_heads, int hd, const float* cos,
                   const float* sin, int pos0, bool accumulate);
void swiglu_forward(float* out, const float* gate, const float* up, long N);
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, long N);
void geglu_forward(float* out, const float* gate, const float* up, long N);
void geglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, long N);
void gqa_attention_forward(float* out, float* att, const float* qkv, int B, int T, int NH, int NKV, int hd,
                           int window = 0);
void gqa_attention_backward(float* dqkv, float* scratch, const float* dout, const float* qkv, const float* att, int B,
                            int T, int NH, int NKV, int hd, int window = 0);
void gqa_attention_decode_forward(float* out, float* kcache, float* vcache, const float* pk, const float* pv,
                                  const float* qkv, int R, int Tn, int NH, int NKV, int hd, int P, int len, int cap,
                                  int window = 0);

// ---- the projection's choice (ops.cu: project.cuh; admm.cpp choose_tokens is the spec) ----
void project_choose(int* chosen, const float* sims, const float* logits, const float* inv_norm, const int* allowed_ids,
                    int n_allowed, int B, int V, int k);

}  // namespace cuda
}  // namespace gradmm
