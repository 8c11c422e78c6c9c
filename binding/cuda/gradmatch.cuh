// Gradient matching and the x-update on the device (the specification: binding/src/method_ops.h):
// the factor rows a = p − e_y and h, the scalar combination of the Gram matrices (S, Q, cosine and the gradient
// coefficients, written to device memory so nothing waits for the host), scaling by those device scalars, the
// Jacobian-vector product through the softmax, and the clipped Adam step on the free positions.
#pragma once
#include "common.cuh"

namespace gradmm {
namespace cuda {

// row r of the compact side is row idx[r] of the strided side, or row r·stride + offset without idx
__global__ void gather_rows_kernel(float* dst, const float* src, const int* idx, int R, int C, long stride,
                                   long offset) {
  GRADMM_GRID_LOOP(i, (long)R * C) {
    const long r = i / C, c = i % C;
    dst[i] = src[(idx ? (long)idx[r] : r * stride + offset) * C + c];
  }
}
__global__ void scatter_rows_kernel(float* dst, const float* src, const int* idx, int R, int C, long stride,
                                    long offset, bool acc) {
  GRADMM_GRID_LOOP(i, (long)R * C) {
    const long r = i / C, c = i % C;
    float* d = dst + (idx ? (long)idx[r] : r * stride + offset) * C + c;
    *d = acc ? *d + src[i] : src[i];
  }
}
__global__ void onehot_sub_kernel(float* A, const float* P, const int* labels, int R, int V) {
  GRADMM_GRID_LOOP(i, (long)R * V) {
    const long r = i / V;
    const int v = (int)(i % V);
    A[i] = v == labels[r] ? P[i] - 1.f : P[i];
  }
}
__global__ void scale_cols_kernel(float* X, const float* m, int R, int V) {
  GRADMM_GRID_LOOP(i, (long)R * V) X[i] *= m[i % V];
}
__global__ void row_dot_kernel(double* out, const float* a, const float* b, int V) {
  const long r = blockIdx.x;
  double s = 0.0;
  for (int v = threadIdx.x; v < V; v += blockDim.x) s += (double)a[r * V + v] * (double)b[r * V + v];
  s = block_sum(s);
  if (threadIdx.x == 0) out[r] = s;
}

// One block. Dynamic shared memory: 2B doubles (s_j, m_j).
__global__ void gm_combine_kernel(GmScalars* out, float* per_sample, float* loss_out, const float* RA, const float* RH,
                                  const float* SA, const float* SH, const double* noise_dots, int n, int B,
                                  double target_norm, GmMean mean) {
  extern __shared__ double s_j[];
  double* m_j = s_j + B;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, nwarps = blockDim.x / kWarp;
  for (int j = warp; j < B; j += nwarps) {  // s_j = (1/n) Σ_i RA_ij RH_ij (+ a_j·N h_j); m_j = (1/n) Σ_i RAm_ij RH_ij
    double s = 0.0, m = 0.0;
    for (int i = lane; i < n; i += kWarp) {
      s += (double)RA[(long)i * B + j] * (double)RH[(long)i * B + j];
      if (mean.RAm) m += (double)mean.RAm[(long)i * B + j] * (double)RH[(long)i * B + j];
    }
    s = warp_sum(s);
    m = warp_sum(m);
    if (lane == 0) {
      s /= n;
      if (noise_dots) s += noise_dots[j];
      s_j[j] = s;
      m_j[j] = mean.RAm ? m / n : 0.0;
    }
  }
  double q = 0.0;  // Σ SA ⊙ SH
  for (long e = threadIdx.x; e < (long)B * B; e += blockDim.x) q += (double)SA[e] * (double)SH[e];
  q = block_sum(q);  // synchronises: s_j and m_j are complete after this
  if (threadIdx.x == 0) {
    double S = 0.0, SM = 0.0;
    for (int j = 0; j < B; ++j) S += s_j[j], SM += m_j[j];
    S /= B;
    SM /= B;
    const GmScalars g = gm_scalars(S, q / ((double)B * B), SM, n, B, target_norm, mean.norm2, mean.dot);
    *out = g;
    if (loss_out) *loss_out = (float)g.f;
  }
  if (per_sample)
    for (int j = threadIdx.x; j < B; j += blockDim.x)
      per_sample[j] = gm_own_loss(s_j[j], SA[(long)j * B + j], SH[(long)j * B + j], target_norm, m_j[j], mean.norm2,
                                  mean.dot);
}

__global__ void scale_by_kernel(float* x, long n, const float* s) {
  const float k = *s;
  GRADMM_GRID_LOOP(i, n) x[i] *= k;
}
__global__ void axpy_by_kernel(float* y, const float* x, long n, const float* a) {
  const float k = *a;
  GRADMM_GRID_LOOP(i, n) y[i] += k * x[i];
}
// one block per row
__global__ void softmax_jvp_rows_kernel(float* dlogits, const float* P, const float* G, int V) {
  const long r = blockIdx.x;
  const float* p = P + r * V;
  const float* g = G + r * V;
  double s = 0.0;
  for (int v = threadIdx.x; v < V; v += blockDim.x) s += (double)p[v] * (double)g[v];
  const float pg = (float)block_sum(s);
  float* d = dlogits + r * V;
  for (int v = threadIdx.x; v < V; v += blockDim.x) d[v] = p[v] * (g[v] - pg);
}

// g = dX + ρ(X − z) + λ on the free positions; partial[blockIdx.x] = Σ g² of this block's share
__global__ void x_grad_kernel(float* g, double* partial, const float* dX, const float* X, const float* z,
                              const float* lam, long total, long row_n, long free_n, float rho) {
  double s = 0.0;
  GRADMM_GRID_LOOP(idx, total) {
    const long i = (idx / free_n) * row_n + idx % free_n;
    const float gi = dX[i] + rho * (X[i] - z[i]) + lam[i];
    g[i] = gi;
    s += (double)gi * (double)gi;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
// Every block adds the same partial sums in the same order (so all agree on the clipping scale), then Adam.
__global__ void x_adam_kernel(float* X, float* m, float* v, const float* g, const double* partial, int nparts,
                              long total, long row_n, long free_n, float max_norm, float beta1, float beta2, float eps,
                              float step_size, float bc2_sqrt) {
  double t = 0.0;
  for (int i = threadIdx.x; i < nparts; i += blockDim.x) t += partial[i];
  const double norm = sqrt(block_sum(t));
  const float scale = max_norm > 0 && norm > max_norm ? (float)(max_norm / (norm + 1e-6)) : 1.f;
  GRADMM_GRID_LOOP(idx, total) {
    const long i = (idx / free_n) * row_n + idx % free_n;
    const float gi = g[i] * scale;
    const float mi = beta1 * m[i] + (1.f - beta1) * gi;
    const float vi = beta2 * v[i] + (1.f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    X[i] -= step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
  }
}

__global__ void fill_kernel(float* x, long n, float value) {
  GRADMM_GRID_LOOP(i, n) x[i] = value;
}

void gather_rows(float* dst, const float* src, int R, int C, long stride, long offset) {
  if (R <= 0 || C <= 0) return;
  gather_rows_kernel<<<grid_for((long)R * C, 256), 256>>>(dst, src, nullptr, R, C, stride, offset);
  check_launch("gather_rows");
}
void scatter_rows(float* dst, const float* src, int R, int C, long stride, long offset, bool accumulate) {
  if (R <= 0 || C <= 0) return;
  scatter_rows_kernel<<<grid_for((long)R * C, 256), 256>>>(dst, src, nullptr, R, C, stride, offset, accumulate);
  check_launch("scatter_rows");
}
void gather_rows_at(float* dst, const float* src, const int* idx, int R, int C) {
  if (R <= 0 || C <= 0) return;
  gather_rows_kernel<<<grid_for((long)R * C, 256), 256>>>(dst, src, idx, R, C, 0, 0);
  check_launch("gather_rows_at");
}
void scatter_rows_at(float* dst, const float* src, const int* idx, int R, int C, bool accumulate) {
  if (R <= 0 || C <= 0) return;
  scatter_rows_kernel<<<grid_for((long)R * C, 256), 256>>>(dst, src, idx, R, C, 0, 0, accumulate);
  check_launch("scatter_rows_at");
}
void onehot_sub(float* A, const float* P, const int* labels, int R, int V) {
  if (R <= 0 || V <= 0) return;
  onehot_sub_kernel<<<grid_for((long)R * V, 256), 256>>>(A, P, labels, R, V);
  check_launch("onehot_sub");
}
void scale_cols(float* X, const float* m, int R, int V) {
  if (R <= 0 || V <= 0) return;
  scale_cols_kernel<<<grid_for((long)R * V, 256), 256>>>(X, m, R, V);
  check_launch("scale_cols");
}
void row_dot(double* out, const float* a, const float* b, int R, int V) {
  if (R <= 0) return;
  row_dot_kernel<<<R, 256>>>(out, a, b, V);
  check_launch("row_dot");
}
void gm_combine(GmScalars* out, float* per_sample, float* loss_out, const float* RA, const float* RH, const float* SA,
                const float* SH, const double* noise_dots, int n, int B, double target_norm, GmMean mean) {
  if (B <= 0 || n <= 0) throw std::invalid_argument("gm_combine: empty batch or target");
  if ((size_t)B * 2 * sizeof(double) > 48 * 1024) throw std::invalid_argument("gm_combine: batch too large");
  gm_combine_kernel<<<1, 256, (size_t)B * 2 * sizeof(double)>>>(out, per_sample, loss_out, RA, RH, SA, SH, noise_dots,
                                                                 n, B, target_norm, mean);
  check_launch("gm_combine");
}
// One thread: the lm_head bias's part (method_ops.h gm_bias_combine; the same host/device scalar arithmetic)
__global__ void gm_bias_combine_kernel(GmScalars* out, float* per_sample, float* loss_out, const double* dots,
                                       const float* own, const float* SA, int B, double bias_norm) {
  gm_bias_scalars(*out, dots[0], dots[1], B, bias_norm);
  if (loss_out) *loss_out = (float)out->f;
  if (per_sample)
    for (int j = 0; j < B; ++j)
      per_sample[j] = 0.5f * (per_sample[j] + gm_own_bias_loss(own[j], SA[(long)j * B + j], bias_norm));
}
void gm_bias_combine(GmScalars* out, float* per_sample, float* loss_out, const double* dots, const float* own,
                     const float* SA, int B, double bias_norm) {
  if (B <= 0) throw std::invalid_argument("gm_bias_combine: empty batch");
  gm_bias_combine_kernel<<<1, 1>>>(out, per_sample, loss_out, dots, own, SA, B, bias_norm);
  check_launch("gm_bias_combine");
}
void scale_by(float* x, long n, const float* s) {
  if (n <= 0) return;
  scale_by_kernel<<<grid_for(n, 256), 256>>>(x, n, s);
  check_launch("scale_by");
}
void axpy_by(float* y, const float* x, long n, const float* a) {
  if (n <= 0) return;
  axpy_by_kernel<<<grid_for(n, 256), 256>>>(y, x, n, a);
  check_launch("axpy_by");
}
void softmax_jvp_rows(float* dlogits, const float* P, const float* G, int R, int V) {
  if (R <= 0) return;
  softmax_jvp_rows_kernel<<<R, 256>>>(dlogits, P, G, V);
  check_launch("softmax_jvp_rows");
}
void x_adam_step(float* X, float* m, float* v, const float* dX, const float* z, const float* lam, float* g_scratch,
                 double* norm_scratch, int B, long row_n, long free_n, float rho, float max_norm, float beta1,
                 float beta2, float eps, float step_size, float bc2_sqrt) {
  const long total = (long)B * free_n;
  if (total <= 0) return;
  const unsigned blocks = grid_for(total, 256, kNormBlocks);
  x_grad_kernel<<<blocks, 256>>>(g_scratch, norm_scratch, dX, X, z, lam, total, row_n, free_n, rho);
  check_launch("x_adam_step (gradient)");
  x_adam_kernel<<<blocks, 256>>>(X, m, v, g_scratch, norm_scratch, (int)blocks, total, row_n, free_n, max_norm, beta1,
                                 beta2, eps, step_size, bc2_sqrt);
  check_launch("x_adam_step (adam)");
}
// double arithmetic rounded once to float, without contraction (method_ops.h)
__global__ void dual_point_kernel(float* u, const float* x, const float* lam, long total, long row_n, long free_n,
                                  double rho) {
  GRADMM_GRID_LOOP(idx, total) {
    const long i = (idx / free_n) * row_n + idx % free_n;
    u[i] = (float)__dadd_rn((double)x[i], __ddiv_rn((double)lam[i], rho));
  }
}
__global__ void dual_update_kernel(float* lam, const float* x, const float* z, long total, long row_n, long free_n,
                                   double rho) {
  GRADMM_GRID_LOOP(idx, total) {
    const long i = (idx / free_n) * row_n + idx % free_n;
    lam[i] = (float)__dadd_rn((double)lam[i], __dmul_rn(rho, __dsub_rn((double)x[i], (double)z[i])));
  }
}
void dual_point(float* u, const float* x, const float* lam, int B, long row_n, long free_n, double rho) {
  const long total = (long)B * free_n;
  if (total <= 0) return;
  dual_point_kernel<<<grid_for(total, 256), 256>>>(u, x, lam, total, row_n, free_n, rho);
  check_launch("dual_point");
}
void dual_update(float* lam, const float* x, const float* z, int B, long row_n, long free_n, double rho) {
  const long total = (long)B * free_n;
  if (total <= 0) return;
  dual_update_kernel<<<grid_for(total, 256), 256>>>(lam, x, z, total, row_n, free_n, rho);
  check_launch("dual_update");
}
void fill(float* x, long n, float value) {
  if (n <= 0) return;
  fill_kernel<<<grid_for(n, 256), 256>>>(x, n, value);
  check_launch("fill");
}

}  // namespace cuda
}  // namespace gradmm
