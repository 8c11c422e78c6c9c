// The backend table (ggml style): memory management plus one function pointer per engine op, so model and method
// code is written once against it and runs on whichever backend holds its buffers.
//
//   cpu_backend()   every op calls the CPU op of binding/src/ops.h or binding/src/llama_ops.h (the specification;
//                   the projection's choice: admm.h choose_tokens); "memory" is host memory.
//   cuda_backend()  every op launches the CUDA kernel of binding/cuda/*.cuh on the device; memory is device memory.
//                   nullptr when no usable CUDA device exists (see backend_select.h for the runtime choice).
//
// Semantics are those of ops.h / llama_ops.h: explicit shapes, row-major, backward ops ACCUMULATE (+=) into gradient
// buffers (rope_backward's accumulate = false is the one exception) and skip a null gradient pointer. All pointers passed to an op are the backend's memory (alloc() of the same table).
// Calls are ordered (one stream); results are visible to to_host() and to later ops without explicit syncs.
// No CUDA header is needed to use this file.
#pragma once
#include <cstddef>
#include <cstdint>

namespace gradmm {

enum class Op : int {
  EmbeddingForward, EmbeddingBackward, InputEmbeddingForward, InputEmbeddingBackward,
  LayernormForward, LayernormBackward, Gemm, MatmulForward, MatmulBackward, AttentionForward, AttentionBackward,
  AttentionDecodeForward,
  GeluForward, GeluBackward, ResidualForward, ResidualBackward, SoftmaxCrossentropyForward,
  SoftmaxCrossentropyBackward, AdamW, GradNorm, Scale,
  // gradient matching (binding/src/gradmatch.cpp) and the x-update (binding/src/admm.cpp)
  GatherRows, ScatterRows, OnehotSub, RowDot, GmCombine, ScaleBy, AxpyBy, SoftmaxJvpRows, XAdamStep, Fill,
  GatherRowsAt, ScatterRowsAt,
  // the Llama family (binding/src/llama_ops.h)
  RmsnormForward, RmsnormBackward, RopeForward, RopeBackward, SwigluForward, SwigluBackward, LinearForward,
  LinearBackward, GqaAttentionForward, GqaAttentionBackward, GqaAttentionDecodeForward,
  // the projection's choice (admm.cpp choose_tokens)
  ProjectChoose,
  Count
};
const char* op_name(Op op);

// Scalars of one gradient-matching evaluation, written by gm_combine into backend memory (the method's inner step
// reads only these back). Same formulas and order as match_loss in gradmatch.cpp.
struct GmScalars {
  double S, Q, cosine, f;  // f = 1 − cosine
  float cS, cN, cQ, pad;   // coefficients of the gradient (see gradmatch.cpp)
};

struct Backend {
  const char* name;  // "cpu" | "cuda"
  bool (*supports)(Op op);

  // ---- memory ----
  void* (*alloc)(size_t bytes);  // uninitialised; throws std::bad_alloc / std::runtime_error on failure
  void (*free)(void* p);
  void (*to_device)(void* dst, const void* host_src, size_t bytes);
  void (*to_host)(void* host_dst, const void* src, size_t bytes);  // waits for earlier ops
  void (*copy)(void* dst, const void* src, size_t bytes);          // within the backend
  void (*zero)(void* p, size_t bytes);
  void (*synchronize)();

  // ---- model ops (ops.h) ----
  // wpe may be nullptr: then out[b,t,:] = wte[tokens[b,t]] (the Llama family's token lookup); embedding_backward
  // skips a null dwpe as every backward op skips a null gradient
  void (*embedding_forward)(float* out, const int* tokens, const float* wte, const float* wpe, int B, int T, int C,
                            int pos0);
  void (*embedding_backward)(float* dwte, float* dwpe, const float* dout, const int* tokens, int B, int T, int C,
                             int pos0);
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
  void (*attention_forward)(float* out, float* att, const float* qkv, int B, int T, int C, int NH);
  // scratch: B·NH·T·T floats of backend memory (the CPU backend ignores it and may take nullptr)
  void (*attention_backward)(float* dqkv, float* scratch, const float* dout, const float* qkv, const float* att,
                             int B, int T, int C, int NH);
  // decoding with a KV cache (ops.h attention_decode_forward): appends the Tn new keys/values of qkv [R,Tn,3C] to one
  // layer's kcache/vcache [R,cap,C] at [len, len+Tn), then attends over the shared prefix pk/pv [P,C] and the cache
  void (*attention_decode_forward)(float* out, float* kcache, float* vcache, const float* pk, const float* pv,
                                   const float* qkv, int R, int Tn, int C, int NH, int P, int len, int cap);
  void (*gelu_forward)(float* out, const float* inp, long N);
  void (*gelu_backward)(float* dinp, const float* inp, const float* dout, long N);
  void (*residual_forward)(float* out, const float* a, const float* b, long N);
  void (*residual_backward)(float* da, float* db, const float* dout, long N);
  void (*softmax_crossentropy_forward)(float* losses, float* probs, const float* logits, const int* targets,
                                       const float* mask, int N, int V);
  void (*softmax_crossentropy_backward)(float* dlogits, const float* dlosses, const float* probs, const int* targets,
                                        const float* mask, int N, int V);
  void (*adamw_update)(float* params, const float* grads, float* m, float* v, long n, float lr, float beta1,
                       float beta2, float eps, float weight_decay, int t);
  double (*grad_norm)(const float* grads, long n);  // returns to the host (waits)
  void (*scale)(float* x, long n, float s);

  // ---- gradient matching on the backend (so an inner step reads back only scalars) ----
  // dst[r,:] (+)= src[(r·stride + offset), :]  /  dst[(r·stride + offset), :] (+)= src[r,:]   (rows of C floats)
  void (*gather_rows)(float* dst, const float* src, int R, int C, long stride, long offset);
  void (*scatter_rows)(float* dst, const float* src, int R, int C, long stride, long offset, bool accumulate);
  // the same with the rows listed: dst[r,:] = src[idx[r], :]  /  dst[idx[r], :] (+)= src[r,:]   (idx: backend
  // memory [R], distinct rows for the scatter)
  void (*gather_rows_at)(float* dst, const float* src, const int* idx, int R, int C);
  void (*scatter_rows_at)(float* dst, const float* src, const int* idx, int R, int C, bool accumulate);
  // A[r,:] = P[r,:] − e_{labels[r]}   (a = p − e_y)
  void (*onehot_sub)(float* A, const float* P, const int* labels, int R, int V);
  // out[r] = Σ_v a[r,v]·b[r,v] in double
  void (*row_dot)(double* out, const float* a, const float* b, int R, int V);
  // From the Gram matrices RA, RH [n,B] (target × batch) and SA, SH [B,B] (batch × batch) and the noise terms
  // noise_dots [B] (a_j·N h_j, or nullptr): writes *out, per_sample [B] (if non-null) and *loss_out = (float)f
  // (if non-null). target_norm = ‖G_target‖.
  void (*gm_combine)(GmScalars* out, float* per_sample, float* loss_out, const float* RA, const float* RH,
                     const float* SA, const float* SH, const double* noise_dots, int n, int B, double target_norm);
  // x *= *s  /  y += (*a)·x   with the scalar in backend memory (a field of GmScalars, say)
  void (*scale_by)(float* x, long n, const float* s);
  void (*axpy_by)(float* y, const float* x, long n, const float* a);
  // dlogits[r,:] = P[r,:] ⊙ (G[r,:] − ⟨P[r,:], G[r,:]⟩)   (through a = softmax − e_y), inner product in double
  void (*softmax_jvp_rows)(float* dlogits, const float* P, const float* G, int R, int V);
  // One Adam step of admm.cpp's x_update on the free positions [0, free_n) of each of B rows of row_n floats:
  // g = dX + ρ(X − z) + λ, clipped to max_norm by the global norm of g, then Adam with the given bias corrections.
  // g_scratch: B·row_n floats; norm_scratch: 1024 doubles (both backend memory; the CPU backend ignores them).
  void (*x_adam_step)(float* X, float* m, float* v, const float* dX, const float* z, const float* lam,
                      float* g_scratch, double* norm_scratch, int B, long row_n, long free_n, float rho,
                      float max_norm, float beta1, float beta2, float eps, float step_size, float bc2_sqrt);
  void (*fill)(float* x, long n, float value);

  // ---- the projection (admm.cpp project(): the z-update) ----
  // admm.h choose_tokens on backend memory: for each row b < B, among the allowed ids (allowed_ids [n_allowed],
  // distinct, in [0, V)) the k with the smallest (−sims[b,v]·inv_norm[v], v), and of those the highest logits[b,v]
  // (ties: the smaller id) to chosen[b]. sims, logits [B,V], inv_norm [V], chosen [B]. Exactly choose_tokens' ids,
  // ties included, on every backend (the CUDA kernel: radix select on a 64-bit (key, id) composite, binding/cuda/
  // project.cuh), so exec_project reads back nothing but the chosen ids, once per call. Throws std::invalid_argument unless
  // 1 ≤ n_allowed ≤ V and 1 ≤ k ≤ n_allowed.
  void (*project_choose)(int* chosen, const float* sims, const float* logits, const float* inv_norm,
                         const int* allowed_ids, int n_allowed, int B, int V, int k);

  // ---- the Llama family (llama_ops.h; NH query heads, NKV key/value heads of hd channels) ----
  void (*rmsnorm_forward)(float* out, float* rstd, const float* inp, const float* weight, int N, int C, float eps);
  void (*rmsnorm_backward)(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                           const float* rstd, int N, int C);
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
  // nn.Linear layout (W [OC, C]) with strided rows: out[r·ldo + o] = Σ_c inp[r·ldi + c]·W[o·C + c] + bias[o]
  void (*linear_forward)(float* out, int ldo, const float* inp, int ldi, const float* weight, const float* bias, int N,
                         int C, int OC);
  void (*linear_backward)(float* dinp, int lddi, float* dweight, float* dbias, const float* dout, int ldd,
                          const float* inp, int ldi, const float* weight, int N, int C, int OC);
  // causal grouped-query attention over the packed qkv [B,T,(NH+2·NKV)·hd] (q heads | k heads | v heads);
  // out [B,T,NH·hd], probabilities att [B,NH,T,T]. GPT-2's attention_* is the case NKV = NH, hd = C/NH.
  void (*gqa_attention_forward)(float* out, float* att, const float* qkv, int B, int T, int NH, int NKV, int hd);
  // scratch: B·NH·T·T floats of backend memory (the CPU backend ignores it and may take nullptr)
  void (*gqa_attention_backward)(float* dqkv, float* scratch, const float* dout, const float* qkv, const float* att,
                                 int B, int T, int NH, int NKV, int hd);
  // decoding (llama_ops.h gqa_attention_decode_forward): appends the Tn new keys/values of qkv [R,Tn,(NH+2·NKV)·hd]
  // to one layer's kcache/vcache [R,cap,NKV·hd] at [len, len+Tn), then attends over the shared prefix pk/pv
  // [P,NKV·hd] and the cache; out [R,Tn,NH·hd]
  void (*gqa_attention_decode_forward)(float* out, float* kcache, float* vcache, const float* pk, const float* pv,
                                       const float* qkv, int R, int Tn, int NH, int NKV, int hd, int P, int len,
                                       int cap);
};

const Backend* cpu_backend();
// The CUDA table, or nullptr when this build has no CUDA or no device is usable (never throws).
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
