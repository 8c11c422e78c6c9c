// The CPU specification of GRADMM's own ops (besides the model's: ops.h, llama_ops.h): row gathers and scatters,
// the gradient-matching pieces (a = p − e_y, the Gram combination into the cosine and its gradient coefficients, the
// softmax Jacobian-vector product), the Adam step on X, the dual updates and the projection's choice. The CPU backend
// (binding/engine/backend_cpu.cpp) calls these; the CUDA kernels (binding/cuda/gradmatch.cuh, project.cuh) are tested
// against them (binding/cuda/tests/). Plain loops in a fixed order, so every run gives the same bits.
#pragma once
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define GRADMM_HOST_DEVICE __host__ __device__
#else
#define GRADMM_HOST_DEVICE
#endif

namespace gradmm {

// Scalars of one gradient-matching evaluation, written by gm_combine into backend memory (the method's inner step
// reads only these back).
struct GmScalars {
  double S, Q, cosine, f;  // S = ⟨G_syn − M, G_t⟩, Q = ‖G_syn − M‖² (M = 0 but for GmMean), f = 1 − cosine
  double SM;               // ⟨G_syn, M⟩ (0 without GmMean)
  float cS, cN, cQ, cM;    // coefficients of the gradient: on the Gram part of dS, on its noise part, on dQ, on dSM
  // With an lm_head bias (gm_bias_combine): the bias part's coefficients, df/da_j += cb1·g_bt + cb2·Σ_k a_k (0 without)
  float cb1, cb2;
};

// The mean M of the whitened, class-contrastive objective (gradmatch.h whitened_contrastive_targets): the distance
// becomes 1 − cos(G_syn − M, G_t), with G_t = that class's whitened target minus M. RAm [n,B]: the Gram matrix of
// M's factor rows (MatchTarget::mean_A; M shares the target's h rows, so RH serves both) with the batch's a's;
// norm2 = ‖M‖², dot = ⟨M, G_t⟩. RAm null: no mean, the paper's 1 − cos(G_syn, G_t), the same bits as without.
struct GmMean {
  const float* RAm = nullptr;
  double norm2 = 0, dot = 0;
};

// gm_combine's scalar arithmetic, shared by the CPU op and the CUDA kernel: from S = (1/B) Σ_j s_j,
// Q = (1/B²) Σ SA ⊙ SH and SM = (1/B) Σ_j m_j: S' = S − ⟨M,G_t⟩, Q' = Q − 2 SM + ‖M‖², f = 1 − S'/(√Q' R),
// df = −dS/(√Q' R) + S'/(2 Q'^{3/2} R) (dQ − 2 dSM).
GRADMM_HOST_DEVICE inline double gm_floor(double x) { return x < 1e-30 ? 1e-30 : x; }
GRADMM_HOST_DEVICE inline GmScalars gm_scalars(double S, double Q, double SM, int n, int B, double target_norm,
                                               double mean_norm2, double mean_dot) {
  S = S - mean_dot;
  Q = Q - 2.0 * SM + mean_norm2;
  const double qn = sqrt(gm_floor(Q)), R = gm_floor(target_norm);
  const double cosine = S / (qn * R);
  GmScalars g;
  g.S = S;
  g.Q = Q;
  g.SM = SM;
  g.cosine = cosine;
  g.f = 1.0 - cosine;
  g.cS = (float)(-1.0 / (qn * R) / ((double)n * B));  // on the Gram-form part of dS (which carries 1/(nB))
  g.cN = (float)(-1.0 / (qn * R) / B);                 // on the noise part of dS (1/B)
  g.cQ = (float)(S / (2.0 * Q * qn * R) * 2.0 / ((double)B * B));
  g.cM = (float)(S / (2.0 * Q * qn * R) * -2.0 / ((double)n * B));  // on the Gram-form part of dSM
  g.cb1 = g.cb2 = 0.f;
  return g;
}
// The lm_head bias's part (models whose lm_head has a bias): the distance becomes the mean over the two tensors,
// f = ½(f_W + f_b), f_b = 1 − cos(g_b, g_bt) with g_b = (1/B) Σ_j a_j and g_bt the target's bias gradient (its DP
// noise included). From dot_t = Σ_j a_j·g_bt and dot_s = ‖Σ_j a_j‖²: S_b = dot_t/B, Q_b = dot_s/B²; the weight
// part's f and coefficients are halved, and df_b/da_j = −g_bt/(B √Q_b R_b) + S_b/(Q_b^{3/2} R_b B²) Σ_k a_k (the
// same row for every j), halved into cb1, cb2.
GRADMM_HOST_DEVICE inline void gm_bias_scalars(GmScalars& g, double dot_t, double dot_s, int B, double bias_norm) {
  const double Sb = dot_t / B, Qb = dot_s / ((double)B * B), qb = sqrt(gm_floor(Qb)), Rb = gm_floor(bias_norm);
  const double cos_b = Sb / (qb * Rb);
  g.cosine = 0.5 * (g.cosine + cos_b);
  g.f = 0.5 * (g.f + (1.0 - cos_b));
  g.cS *= 0.5f;
  g.cN *= 0.5f;
  g.cQ *= 0.5f;
  g.cb1 = (float)(0.5 * (-1.0 / (qb * Rb * B)));
  g.cb2 = (float)(0.5 * (Sb / (gm_floor(Qb) * qb * Rb * (double)B * B)));
}
// a sequence's own bias part 1 − cos(a_j, g_bt) from own_j = a_j·g_bt and sa_jj = ‖a_j‖²
GRADMM_HOST_DEVICE inline float gm_own_bias_loss(float own_j, float sa_jj, double bias_norm) {
  return (float)(1.0 - (double)own_j / (gm_floor(sqrt((double)sa_jj)) * gm_floor(bias_norm)));
}
// a sequence's own 1 − cos(a_j h_jᵀ − M, G_t) from s_j = ⟨a_j h_jᵀ, G_t⟩, m_j = ⟨a_j h_jᵀ, M⟩ and the diagonal Gram
// entries (M = 0: m_j, mean_norm2, mean_dot 0)
GRADMM_HOST_DEVICE inline float gm_own_loss(double s_j, float sa_jj, float sh_jj, double target_norm, double m_j,
                                            double mean_norm2, double mean_dot) {
  const double own = sqrt(fmax((double)sa_jj * sh_jj - 2.0 * m_j + mean_norm2, 0.0));
  return (float)(1.0 - (s_j - mean_dot) / (gm_floor(own) * gm_floor(target_norm)));
}

// dst[r,:] = src[(r·stride + offset), :]   (rows of C floats)
void gather_rows(float* dst, const float* src, int R, int C, long stride, long offset);
// dst[(r·stride + offset), :] (+)= src[r,:]
void scatter_rows(float* dst, const float* src, int R, int C, long stride, long offset, bool accumulate);
// dst[r,:] = src[idx[r], :]  /  dst[idx[r], :] (+)= src[r,:]   (distinct rows for the scatter)
void gather_rows_at(float* dst, const float* src, const int* idx, int R, int C);
void scatter_rows_at(float* dst, const float* src, const int* idx, int R, int C, bool accumulate);
// A[r,:] = P[r,:] − e_{labels[r]}   (a = p − e_y; A may alias P)
void onehot_sub(float* A, const float* P, const int* labels, int R, int V);
// X[r,v] *= m[v]   (the restricted rows' mask on factor rows a: method.target_rows, gradmatch.h)
void scale_cols(float* X, const float* m, int R, int V);
// out[r] = Σ_v a[r,v]·b[r,v] in double
void row_dot(double* out, const float* a, const float* b, int R, int V);
// The cosine and its coefficients from the Gram matrices RA, RH [n,B] (target × batch) and SA, SH [B,B] (batch ×
// batch), the noise terms noise_dots [B] (a_j·N h_j, or nullptr) and the contrastive mean (GmMean; RAm null: none):
// *out, per_sample [B] (each sequence's own distance, if non-null) and *loss_out = (float)f (if non-null).
// target_norm = ‖G_target‖.
void gm_combine(GmScalars* out, float* per_sample, float* loss_out, const float* RA, const float* RH, const float* SA,
                const float* SH, const double* noise_dots, int n, int B, double target_norm, GmMean mean);
// After gm_combine, for a model whose lm_head has a bias: *out, per_sample [B] (if non-null) and *loss_out (if
// non-null) become the mean over the weight and bias tensors (gm_bias_scalars); dots [2] = (Σ_j a_j·g_bt,
// ‖Σ_j a_j‖²), own [B] = a_j·g_bt, SA the batch Gram matrix of the a's (its diagonal), bias_norm = ‖g_bt‖.
void gm_bias_combine(GmScalars* out, float* per_sample, float* loss_out, const double* dots, const float* own,
                     const float* SA, int B, double bias_norm);
// x *= *s  /  y += (*a)·x   with the scalar read from memory (a field of GmScalars)
void scale_by(float* x, long n, const float* s);
void axpy_by(float* y, const float* x, long n, const float* a);
// dlogits[r,:] = P[r,:] ⊙ (G[r,:] − ⟨P[r,:], G[r,:]⟩)   (through a = softmax − e_y), inner product in double
void softmax_jvp_rows(float* dlogits, const float* P, const float* G, int R, int V);
// One Adam step of the x-update on the free positions [0, free_n) of each of B rows of row_n floats:
// g = dX + ρ(X − z) + λ, clipped to max_norm by the global norm of g (double), then Adam with the given bias
// corrections (step_size = lr / (1 − β1^t), bc2_sqrt = √(1 − β2^t)). g: B·row_n floats of scratch.
void x_adam_step(float* X, float* m, float* v, const float* dX, const float* z, const float* lam, float* g, int B,
                 long row_n, long free_n, float rho, float max_norm, float beta1, float beta2, float eps,
                 float step_size, float bc2_sqrt);
void fill(float* x, long n, float value);
// The dual variable on the free positions (double arithmetic, rounded once to float, as ts/gradmm/method.ts did):
//   dual_point:   u = x + λ/ρ          dual_update:  λ = λ + ρ(x − z)
void dual_point(float* u, const float* x, const float* lam, int B, long row_n, long free_n, double rho);
void dual_update(float* lam, const float* x, const float* z, int B, long row_n, long free_n, double rho);

// The projection's choice at one position, for every row b < B: among the n_allowed ids of allowed_ids (distinct, in
// [0, V)), the k with the smallest key (−sims[b,v]·inv_norm[v], float, then the token id: ascending = most similar
// first, ties by the smaller id; the float comparison makes −0 and +0 equal), and of those the one with the highest
// logits[b,v] (ties: the smaller id) goes to chosen[b]. sims, logits [B,V]. Throws std::invalid_argument unless
// 1 ≤ n_allowed ≤ V and 1 ≤ k ≤ n_allowed. With finite sims and inv_norm the keys are never NaN; NaN logits are
// unsupported (the scan's result would then depend on the order nth_element leaves the candidates in).
void choose_tokens(int* chosen, const float* sims, const float* logits, const float* inv_norm, const int* allowed_ids,
                   int n_allowed, int B, int V, int k);

}  // namespace gradmm
