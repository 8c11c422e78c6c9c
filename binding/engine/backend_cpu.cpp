// The CPU backend table: every op is its CPU specification (ops.h, llama_ops.h, method_ops.h) on host memory, so the
// engine written against the table gives exactly the specification's numbers. cpu_table_backend() is the same ops
// behind device-style memory, for testing the engine's host mirror without a GPU.
#include <cstdlib>
#include <cstring>
#include <new>

#include "backend.h"
#include "gemm.h"
#include "gemm_bf16.h"
#include "llama_ops.h"
#include "method_ops.h"
#include "ops.h"

namespace gradmm {
namespace {

void* alloc(size_t bytes) {
  const size_t rounded = ((bytes ? bytes : 1) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) throw std::bad_alloc();
  return p;
}
void release(void* p) { std::free(p); }
void copy(void* dst, const void* src, size_t bytes) {
  if (bytes && dst != src) std::memmove(dst, src, bytes);
}
void zero(void* p, size_t bytes) {
  if (bytes) std::memset(p, 0, bytes);
}
const char* products() { return sgemm_kernel_name(); }

// wpe == nullptr and no scale: the token lookup alone (the Llama family), row copies
void embedding_fwd(float* out, const int* tokens, const float* wte, const float* wpe, int B, int T, int C, int pos0,
                   float scale) {
  if (wpe || scale != 1.f) return embedding_forward(out, tokens, wte, wpe, B, T, C, pos0, scale);
  for (long i = 0; i < (long)B * T; ++i) std::memcpy(out + i * C, wte + (long)tokens[i] * C, C * sizeof(float));
}
void gelu_fwd(float* out, const float* inp, long N) { gelu_forward(out, inp, N); }
void gelu_bwd(float* dinp, const float* inp, const float* dout, long N) { gelu_backward(dinp, inp, dout, N); }
void gqa_attention_bwd(float* dqkv, float*, const float* dout, const float* qkv, const float* att, int B, int T, int NH,
                       int NKV, int hd, int window) {
  gqa_attention_backward(dqkv, dout, qkv, att, B, T, NH, NKV, hd, window);
}
void rope_bwd(float* dinp, const float* dout, int N, int T, int ld, int n_heads, int hd, const float* cos,
              const float* sin, int pos0, bool accumulate) {
  rope_apply(dinp, dout, N, T, ld, n_heads, hd, cos, sin, pos0, true, accumulate);
}
void gemm_f(bool ta, bool tb, int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
            bool accumulate) {
  if (M <= 0 || N <= 0) return;
  sgemm(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}
void x_adam(float* X, float* m, float* v, const float* dX, const float* z, const float* lam, float* g, double*, int B,
            long row_n, long free_n, float rho, float max_norm, float beta1, float beta2, float eps, float step_size,
            float bc2_sqrt) {
  x_adam_step(X, m, v, dX, z, lam, g, B, row_n, free_n, rho, max_norm, beta1, beta2, eps, step_size, bc2_sqrt);
}

void gemm_bf16_packed_f(bool ta, int M, int N, int K, const float* A, int lda, const uint32_t* Wp, float* C, int ldc,
                        bool accumulate) {
  if (M <= 0 || N <= 0) return;
  gemm_bf16_packed(ta, M, N, K, A, lda, Wp, C, ldc, accumulate);
}
// the loop of linear_forward / matmul_forward's bias (same bits)
void add_bias_rows(float* out, int ldo, const float* bias, int N, int OC) {
  parallel_for(N, [&](long r0, long r1) {
    for (long r = r0; r < r1; ++r)
      for (int o = 0; o < OC; ++o) out[r * ldo + o] += bias[o];
  });
}
bool bf16_native() { return cpu_has_avx512bf16(); }
const char* bf16_products() { return gemm_bf16_kernel_name(); }

Backend make_table(const char* name, bool host_memory) {
  Backend b{};
  b.name = name;
  b.host_memory = host_memory;
  b.products = products;
  b.alloc = alloc;
  b.free = release;
  b.to_device = copy;
  b.to_host = copy;
  b.copy = copy;
  b.zero = zero;
  b.embedding_forward = embedding_fwd;
  b.embedding_backward = embedding_backward<float>;
  b.input_embedding_forward = input_embedding_forward<float>;
  b.input_embedding_backward = input_embedding_backward<float>;
  b.layernorm_forward = layernorm_forward<float>;
  b.layernorm_backward = layernorm_backward<float>;
  b.gemm = gemm_f;
  b.matmul_forward = matmul_forward<float>;
  b.matmul_backward = matmul_backward<float>;
  b.gelu_forward = gelu_fwd;
  b.gelu_backward = gelu_bwd;
  b.residual_forward = residual_forward<float>;
  b.residual_backward = residual_backward<float>;
  b.softmax_crossentropy_forward = softmax_crossentropy_forward<float>;
  b.softmax_crossentropy_backward = softmax_crossentropy_backward<float>;
  b.clip_adamw = clip_and_adamw;
  b.gather_rows = gather_rows;
  b.scatter_rows = scatter_rows;
  b.gather_rows_at = gather_rows_at;
  b.scatter_rows_at = scatter_rows_at;
  b.onehot_sub = onehot_sub;
  b.scale_cols = scale_cols;
  b.row_dot = row_dot;
  b.gm_combine = gm_combine;
  b.gm_bias_combine = gm_bias_combine;
  b.scale_by = scale_by;
  b.axpy_by = axpy_by;
  b.softmax_jvp_rows = softmax_jvp_rows;
  b.x_adam_step = x_adam;
  b.fill = fill;
  b.dual_point = dual_point;
  b.dual_update = dual_update;
  b.project_choose = choose_tokens;
  b.rmsnorm_forward = rmsnorm_forward<float>;
  b.rmsnorm_backward = rmsnorm_backward<float>;
  b.rope_forward = rope_forward<float>;
  b.rope_backward = rope_bwd;
  b.swiglu_forward = swiglu_forward<float>;
  b.swiglu_backward = swiglu_backward<float>;
  b.geglu_forward = geglu_forward<float>;
  b.geglu_backward = geglu_backward<float>;
  b.linear_forward = linear_forward<float>;
  b.linear_backward = linear_backward<float>;
  b.gqa_attention_forward = gqa_attention_forward<float>;
  b.gqa_attention_backward = gqa_attention_bwd;
  b.gqa_attention_decode_forward = gqa_attention_decode_forward;
  b.bf16_packed_size = gemm_bf16_packed_size;
  b.bf16_pack = gemm_bf16_pack;
  b.gemm_bf16_packed = gemm_bf16_packed_f;
  b.add_bias_rows = add_bias_rows;
  b.bf16_native = bf16_native;
  b.bf16_products = bf16_products;
  return b;
}

}  // namespace

const Backend* cpu_backend() {
  static const Backend table = make_table("cpu", true);
  return &table;
}
const Backend* cpu_table_backend() {
  static const Backend table = make_table("cpu-table", false);
  return &table;
}

}  // namespace gradmm
