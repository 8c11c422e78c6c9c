// The backend table (ggml style): memory management plus one function pointer per engine op, so model and method
// code is written once against it and runs on whichever backend holds its buffers.
//
//   cpu_backend()   every op calls its CPU specification: binding/src/ops.h (the GPT-2 ops), llama_ops.h (the Llama
//                   family's and the attention), method_ops.h (the method's own); memory is host memory. Always built.
//   cuda_backend()  every op launches the CUDA kernel of binding/cuda/*.cuh on the device; memory is device memory.
//                   nullptr when this build has no CUDA or no usable device exists.
// The model families, the matcher, the projection and the x-update are written once against this table
// (binding/engine/), for every backend.
//
// Semantics are those of ops.h / llama_ops.h: explicit shapes, row-major, backward ops ACCUMULATE (+=) into gradient
// buffers (rope_backward's accumulate = false is the one exception) and skip a null gradient pointer. All pointers passed to an op are the backend's memory (alloc() of the same table).
// Calls are ordered (one stream); results are visible to to_host() and to later ops without explicit syncs.
// No CUDA header is needed to use this file.
#pragma once
#include <cstddef>
#include <cstdint>

#include "method_ops.h"  // GmScalars

namespace gradmm {

struct Backend {
  // ---- what the backend is ----
  const char* name;  // "cpu" | "cuda" | "cpu-table" (the CPU ops behind device-style memory: see cpu_table_backend)
  // Memory is host memory the caller may read and write directly (the CPU backend): a model on it needs no host
  // mirror. false: memory is only reached through to_device / to_host.
  bool host_memory;
  // How the large matrix products run ("AVX2 + FMA tiles", "cuBLAS TF32", ...): backendInfo() reports it.
  const char* (*products)();

  // ---- memory ----
  void* (*alloc)(size_t bytes);  // uninitialised; throws std::bad_alloc / std::runtime_error on failure
  void (*free)(void* p);
  void (*to_device)(void* dst, const void* host_src, size_t bytes);
  void (*to_host)(void* host_dst, const void* src, size_t bytes);  // waits for earlier ops
  void (*copy)(void* dst, const void* src, size_t bytes);          // within the backend
  void (*zero)(void* p, size_t bytes);

  // ---- model ops (ops.h) ----
  // out[b,t,:] = scale·wte[tokens[b,t]] + wpe[pos0+t]; wpe may be nullptr: the token lookup alone (the Llama
  // family); scale: Gemma's sqrt(hidden_size), 1 elsewhere; embedding_backward (dwte += scale·dout) skips a null
  // dwpe as every backward op skips a null gradient
  void (*embedding_forward)(float* out, const int* tokens, const float* wte, const float* wpe, int B, int T, int C,
                            int pos0, float scale);
  void (*embedding_backward)(float* dwte, float* dwpe, const float* dout, const int* tokens, int B, int T, int C,
                             int pos0, float scale);
  void (*input_embedding_forward)(float* out, const float* inp, const float* wpe, int B, int T, int C, int pos0);
  void (*input_embedding_backward)(float* dinp, float* dwpe, const float* dout, int B, int T, int C, int pos0);
  void (*layernorm_forward)(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                            const float* bias, int N, int C, float eps);
  void (*layernorm_backward)(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                             const float* weight, const float* mean, const float* rstd, int N, int C);
  // sgemm semantics (gemm.h): C[M,N] (+)= op(A)·op(B), row-major, transA: A stored K×M, transB: B stored N×K.
  void (*gemm)(bool transA, bool transB, int M, int N, int K, const float* A, int lda, const float* B, int ldb,
               float* C, int ldc, bool accumulate);
  void (*matmul_forward)(float* out, const float* inp, const float* weight, const float* bias, int N, int C, int OC);
  void (*matmul_backward)(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                          const float* weight, int N, int C, int OC);
  void (*gelu_forward)(float* out, const float* inp, long N);
  void (*gelu_backward)(float* dinp, const float* inp, const float* dout, long N);
  void (*residual_forward)(float* out, const float* a, const float* b, long N);
  void (*residual_backward)(float* da, float* db, const float* dout, long N);
  void (*softmax_crossentropy_forward)(float* losses, float* probs, const float* logits, const int* targets,
                                       const float* mask, int N, int V);
  void (*softmax_crossentropy_backward)(float* dlogits, const float* dlosses, const float* probs, const int* targets,
                                        const float* mask, int N, int V);
  // A whole optimizer step (ops.h clip_and_adamw): the global gradient norm (returned, waits), clipping to max_norm
  // (max_norm <= 0: none; the clipped gradients are written back) and AdamW. t counts from 1.
  double (*clip_adamw)(float* params, float* grads, float* m, float* v, long n, float lr, float beta1, float beta2,
                       float eps, float weight_decay, float max_norm, int t);

  // ---- the method's ops (method_ops.h is the specification), so an inner step reads back only scalars ----
  // dst[r,:] (+)= src[(r·stride + offset), :]  /  dst[(r·stride + offset), :] (+)= src[r,:]   (rows of C floats)
  void (*gather_rows)(float* dst, const float* src, int R, int C, long stride, long offset);
  void (*scatter_rows)(float* dst, const float* src, int R, int C, long stride, long offset, bool accumulate);
  // the same with the rows listed: dst[r,:] = src[idx[r], :]  /  dst[idx[r], :] (+)= src[r,:]   (idx: backend
  // memory [R], distinct rows for the scatter)
  void (*gather_rows_at)(float* dst, const float* src, const int* idx, int R, int C);
  void (*scatter_rows_at)(float* dst, const float* src, const int* idx, int R, int C, bool accumulate);
  // A[r,:] = P[r,:] − e_{labels[r]}   (a = p − e_y)
  void (*onehot_sub)(float* A, const float* P, const int* labels, int R, int V);
  // X[r,v] *= m[v]   (m [V]: the restricted rows' mask, gradmatch.h)
  void (*scale_cols)(float* X, const float* m, int R, int V);
  // out[r] = Σ_v a[r,v]·b[r,v] in double
  void (*row_dot)(double* out, const float* a, const float* b, int R, int V);
  void (*gm_combine)(GmScalars* out, float* per_sample, float* loss_out, const float* RA, const float* RH,
                     const float* SA, const float* SH, const double* noise_dots, int n, int B, double target_norm,
                     GmMean mean);
  // the lm_head bias's part of the distance (method_ops.h gm_bias_combine), after gm_combine; dots: backend memory
  void (*gm_bias_combine)(GmScalars* out, float* per_sample, float* loss_out, const double* dots, const float* own,
                          const float* SA, int B, double bias_norm);
  // x *= *s  /  y += (*a)·x   with the scalar in backend memory (a field of GmScalars, say)
  void (*scale_by)(float* x, long n, const float* s);
  void (*axpy_by)(float* y, const float* x, long n, const float* a);
  // dlogits[r,:] = P[r,:] ⊙ (G[r,:] − ⟨P[r,:], G[r,:]⟩)   (through a = softmax − e_y), inner product in double
  void (*softmax_jvp_rows)(float* dlogits, const float* P, const float* G, int R, int V);
  // g_scratch: B·row_n floats; norm_scratch: 1024 doubles (both backend memory; the CPU backend ignores the latter)
  void (*x_adam_step)(float* X, float* m, float* v, const float* dX, const float* z, const float* lam,
                      float* g_scratch, double* norm_scratch, int B, long row_n, long free_n, float rho,
                      float max_norm, float beta1, float beta2, float eps, float step_size, float bc2_sqrt);
  void (*fill)(float* x, long n, float value);
  void (*dual_point)(float* u, const float* x, const float* lam, int B, long row_n, long free_n, double rho);
  void (*dual_update)(float* lam, const float* x, const float* z, int B, long row_n, long free_n, double rho);

  // ---- the projection's choice (the z-update) ----
  // method_ops.h choose_tokens on backend memory: exactly its ids, ties included, on every backend (the CUDA kernel:
  // radix select on a 64-bit (key, id) composite, binding/cuda/project.cuh), so the projection reads back nothing but
  // the chosen ids, once per call.
  void (*project_choose)(int* chosen, const float* sims, const float* logits, const float* inv_norm,
                         const int* allowed_ids, int n_allowed, int B, int V, int k);

  // ---- the Llama family (llama_ops.h; NH query heads, NKV key/value heads of hd channels) ----
  // y = (w + w_offset)·x/rms(x) over `heads` groups of C channels in each of N rows of stride ld (llama_ops.h:
  // heads = 1, ld = C, w_offset = 0 is Llama's norm; Gemma's norms have w_offset = 1 and its q/k norms run over the
  // heads of the packed qkv rows); rstd [N·heads]; out may alias inp
  void (*rmsnorm_forward)(float* out, float* rstd, const float* inp, const float* weight, int N, int C, float eps,
                          int heads, int ld, float w_offset);
  void (*rmsnorm_backward)(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                           const float* rstd, int N, int C, int heads, int ld, float w_offset);
  // rotary embeddings on n_heads heads of hd channels in each of N rows of stride ld; row r sits at position
  // pos0 + r % T; cos/sin: tables [positions, hd/2] in backend memory (rope_tables). out may alias inp.
  void (*rope_forward)(float* out, const float* inp, int N, int T, int ld, int n_heads, int hd, const float* cos,
                       const float* sin, int pos0);
  // dinp (+)= Rᵀ·dout: accumulate = true is llama_ops.h's rope_backward; accumulate = false overwrites and may run
  // in place (dinp == dout), as llama.cpp's backward does
  void (*rope_backward)(float* dinp, const float* dout, int N, int T, int ld, int n_heads, int hd, const float* cos,
                        const float* sin, int pos0, bool accumulate);
  void (*swiglu_forward)(float* out, const float* gate, const float* up, long N);
  void (*swiglu_backward)(float* dgate, float* dup, const float* dout, const float* gate, const float* up, long N);
  // GeGLU (Gemma): out = gelu_tanh(gate) ⊙ up
  void (*geglu_forward)(float* out, const float* gate, const float* up, long N);
  void (*geglu_backward)(float* dgate, float* dup, const float* dout, const float* gate, const float* up, long N);
  // nn.Linear layout (W [OC, C]) with strided rows: out[r·ldo + o] = Σ_c inp[r·ldi + c]·W[o·C + c] + bias[o]
  void (*linear_forward)(float* out, int ldo, const float* inp, int ldi, const float* weight, const float* bias, int N,
                         int C, int OC);
  void (*linear_backward)(float* dinp, int lddi, float* dweight, float* dbias, const float* dout, int ldd,
                          const float* inp, int ldi, const float* weight, int N, int C, int OC);
  // causal grouped-query attention over the packed qkv [B,T,(NH+2·NKV)·hd] (q heads | k heads | v heads);
  // out [B,T,NH·hd], probabilities att [B,NH,T,T]. Multi-head attention (GPT-2) is the case NKV = NH, hd = C/NH.
  // window > 0: sliding-window attention (query t sees keys t − window < t2 ≤ t: llama_ops.h first_key); 0: none
  void (*gqa_attention_forward)(float* out, float* att, const float* qkv, int B, int T, int NH, int NKV, int hd,
                                int window);
  // scratch: B·NH·T·T floats of backend memory (the CPU backend ignores it and may take nullptr)
  void (*gqa_attention_backward)(float* dqkv, float* scratch, const float* dout, const float* qkv, const float* att,
                                 int B, int T, int NH, int NKV, int hd, int window);
  // decoding (llama_ops.h gqa_attention_decode_forward): appends the Tn new keys/values of qkv [R,Tn,(NH+2·NKV)·hd]
  // to one layer's kcache/vcache [R,cap,NKV·hd] at [len, len+Tn), then attends over the shared prefix pk/pv
  // [P,NKV·hd] and the cache (window > 0: its last `window` positions only); out [R,Tn,NH·hd]
  void (*gqa_attention_decode_forward)(float* out, float* kcache, float* vcache, const float* pk, const float* pv,
                                       const float* qkv, int R, int Tn, int NH, int NKV, int hd, int P, int len,
                                       int cap, int window);

  // ---- bf16 weights (a model's precision "bf16": model.h); nullptr where the backend has none (CUDA) ----
  // A weight matrix op(W) [K,N] packed once in bf16 for gemm_bf16_packed (gemm_bf16.h): its size in uint32, and
  // the packing (dst: backend memory of that size; W f32, stored N×K when transW)
  size_t (*bf16_packed_size)(int K, int N);
  void (*bf16_pack)(bool transW, const float* W, int ldw, int K, int N, uint32_t* dst);
  // C[M,N] (+)= op(A)·op(W) with op(W) packed: f32 accumulation, A rounded to bf16
  void (*gemm_bf16_packed)(bool transA, int M, int N, int K, const float* A, int lda, const uint32_t* Wp, float* C,
                           int ldc, bool accumulate);
  // out[r·ldo + o] += bias[o] for r < N, o < OC (the bias half of linear_forward / matmul_forward)
  void (*add_bias_rows)(float* out, int ldo, const float* bias, int N, int OC);
  // whether gemm_bf16 runs on bf16 hardware here (the CPU: AVX512_BF16) rather than the portable reference
  bool (*bf16_native)();
  const char* (*bf16_products)();  // the bf16 kernel's name
};

const Backend* cpu_backend();
// The CPU ops behind device-style memory (host_memory = false: separate allocations reached through to_device /
// to_host), so the engine's host mirror and residency logic run without a GPU (GRADMM_BACKEND=cpu-table); same bits
// as cpu_backend().
const Backend* cpu_table_backend();
// The CUDA table, or nullptr when this build has no CUDA or no device is usable (never throws). Defined in
// binding/cuda/backend_cuda.cpp, or as nullptr by binding/engine/no_cuda.cpp in a build without CUDA.
const Backend* cuda_backend();

// RAII buffer of one backend.
template <typename T>
class BackendBuffer {
 public:
  BackendBuffer() = default;
  BackendBuffer(const Backend* be, size_t n) { reset(be, n); }
  ~BackendBuffer() { release(); }
  BackendBuffer(const BackendBuffer&) = delete;
  BackendBuffer& operator=(const BackendBuffer&) = delete;
  BackendBuffer(BackendBuffer&& o) noexcept : be_(o.be_), p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  void reset(const Backend* be, size_t n) {
    release();
    be_ = be;
    n_ = n;
    p_ = n ? static_cast<T*>(be->alloc(n * sizeof(T))) : nullptr;
  }
  // Grows (never shrinks) to at least n elements; contents are lost when it grows.
  void ensure(const Backend* be, size_t n) {
    if (be != be_ || n > n_) reset(be, n);
  }
  void release() {
    if (p_) be_->free(p_);
    p_ = nullptr;
    n_ = 0;
  }
  T* data() const { return p_; }
  size_t size() const { return n_; }
  void zero() {
    if (p_) be_->zero(p_, n_ * sizeof(T));
  }

 private:
  const Backend* be_ = nullptr;
  T* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace gradmm
