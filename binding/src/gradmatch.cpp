#include "gradmatch.h"

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "ops.h"
#include "threadpool.h"

namespace gradmm {
namespace {

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double dot(const float* a, const float* b, long n) {
  double s = 0;
  for (long i = 0; i < n; ++i) s += (double)a[i] * b[i];
  return s;
}

// The gradient-matching factors of the last forward into A [rows,V] and H [rows,C]: a_j = p_j − e_y (rows the
// forward selected) and h_j.
void take_factors(CausalLM& model, int rows, int V, int C, const int* labels, float* A, float* H) {
  std::memcpy(A, model.probs(), sizeof(float) * rows * V);
  for (int j = 0; j < rows; ++j) A[(size_t)j * V + labels[j]] -= 1.f;
  const auto& sel = model.selected_rows();
  for (int j = 0; j < rows; ++j) std::memcpy(H + (size_t)j * C, model.hidden() + (size_t)sel[j] * C, C * sizeof(float));
}

}  // namespace

void fill_normal(float* out, long n, uint64_t seed, float std) {
  uint64_t s = seed;
  for (long i = 0; i < n; i += 2) {
    double u1 = ((splitmix64(s) >> 11) + 1.0) * (1.0 / 9007199254740993.0);  // (0,1]
    double u2 = (splitmix64(s) >> 11) * (1.0 / 9007199254740992.0);
    double r = std::sqrt(-2.0 * std::log(u1)), th = 6.283185307179586 * u2;
    out[i] = (float)(r * std::cos(th)) * std;
    if (i + 1 < n) out[i + 1] = (float)(r * std::sin(th)) * std;
  }
}

std::vector<std::pair<int, int>> target_chunks(int n, int T, int chunk_tokens) {
  const int rows = std::max(1, chunk_tokens / std::max(T, 1));
  std::vector<std::pair<int, int>> out;
  for (int i0 = 0; i0 < n; i0 += rows) out.emplace_back(i0, std::min(n, i0 + rows));
  return out;
}

MatchTarget build_target(CausalLM& model, const int* tokens, int n, int T, const int* last_pos, const int* labels,
                         const TargetOptions& opts, const std::atomic<bool>* cancel) {
  const int V = model.dims().vocab_size, C = model.dims().channels;
  if (n <= 0) throw std::invalid_argument("build_target: no real examples");
  check_ids(last_pos, n, T, "build_target: last position out of range");
  MatchTarget t;
  t.n = n;
  t.V = V;
  t.C = C;
  t.A.resize((size_t)n * V);
  t.H.resize((size_t)n * C);
  std::vector<float> mask;
  std::vector<int> targets;
  for (const auto& [i0, i1] : target_chunks(n, T, opts.chunk_tokens)) {
    const int rows = i1 - i0;
    mask.assign((size_t)rows * T, 0.f);
    targets.assign((size_t)rows * T, 0);
    for (int i = i0; i < i1; ++i) {
      mask[(size_t)(i - i0) * T + last_pos[i]] = 1.f;
      targets[(size_t)(i - i0) * T + last_pos[i]] = labels[i];
    }
    CausalLM::ForwardArgs fa;
    fa.tokens = tokens + (size_t)i0 * T;
    fa.B = rows;
    fa.T = T;
    fa.targets = targets.data();
    fa.loss_mask = mask.data();
    fa.keep_activations = false;  // the target needs no backward: one layer's activations at a time
    model.forward(fa, cancel);
    take_factors(model, rows, V, C, labels + i0, t.A.data() + (size_t)i0 * V, t.H.data() + (size_t)i0 * C);
  }
  finish_target(t, opts);
  return t;
}

void finish_target(MatchTarget& t, const TargetOptions& opts) {
  const int n = t.n, V = t.V, C = t.C;
  // Per-example clipping in factor space: ‖a hᵀ‖ = ‖a‖·‖h‖, scaled through a.
  t.example_norms.resize(n);
  for (int i = 0; i < n; ++i) {
    float* a = &t.A[(size_t)i * V];
    double norm = std::sqrt(dot(a, a, V) * dot(&t.H[(size_t)i * C], &t.H[(size_t)i * C], C));
    t.example_norms[i] = (float)norm;
    if (opts.clip_norm > 0 && norm > opts.clip_norm) {
      const float s = (float)(opts.clip_norm / norm);
      for (int v = 0; v < V; ++v) a[v] *= s;
    }
  }
  // ‖G‖² = (1/n²) Σ_ik (a_i·a_k)(h_i·h_k)
  std::vector<float> AA((size_t)n * n), HH((size_t)n * n);
  gemm<float>(false, true, n, n, V, t.A.data(), V, t.A.data(), V, AA.data(), n, false);
  gemm<float>(false, true, n, n, C, t.H.data(), C, t.H.data(), C, HH.data(), n, false);
  double g2 = 0;
  for (size_t i = 0; i < AA.size(); ++i) g2 += (double)AA[i] * HH[i];
  g2 /= (double)n * n;
  if (opts.noise_std > 0) {
    // ‖G + N‖² = ‖G‖² + 2⟨G,N⟩ + ‖N‖², ⟨G,N⟩ = (1/n) Σ_i a_iᵀ N h_i
    t.noise.resize((size_t)V * C);
    fill_normal(t.noise.data(), (long)t.noise.size(), opts.noise_seed, opts.noise_std);
    std::vector<float> NH((size_t)n * V);
    gemm<float>(false, true, n, V, C, t.H.data(), C, t.noise.data(), C, NH.data(), V, false);  // rows: N h_i
    double gn = 0;
    for (int i = 0; i < n; ++i) gn += dot(&t.A[(size_t)i * V], &NH[(size_t)i * V], V);
    gn /= n;
    g2 += 2 * gn + dot(t.noise.data(), t.noise.data(), (long)t.noise.size());
  }
  t.norm = std::sqrt(std::max(g2, 0.0));
}

double match_loss(CausalLM& model, const MatchTarget& t, const float* X, int B, int L, int label, float* dX,
                  float* per_sample, const std::atomic<bool>* cancel) {
  const int V = t.V, C = t.C, n = t.n;
  std::vector<float> mask((size_t)B * L, 0.f);
  std::vector<int> targets((size_t)B * L, 0), labels(B, label);
  for (int j = 0; j < B; ++j) {
    mask[(size_t)j * L + L - 1] = 1.f;
    targets[(size_t)j * L + L - 1] = label;
  }
  CausalLM::ForwardArgs fa;
  fa.embeds = X;
  fa.B = B;
  fa.T = L;
  fa.targets = targets.data();
  fa.loss_mask = mask.data();
  model.forward(fa, cancel);
  std::vector<float> A((size_t)B * V), H((size_t)B * C);
  take_factors(model, B, V, C, labels.data(), A.data(), H.data());

  // Gram matrices against the target (n×B) and within the batch (B×B)
  std::vector<float> RA((size_t)n * B), RH((size_t)n * B), SA((size_t)B * B), SH((size_t)B * B);
  gemm<float>(false, true, n, B, V, t.A.data(), V, A.data(), V, RA.data(), B, false);
  gemm<float>(false, true, n, B, C, t.H.data(), C, H.data(), C, RH.data(), B, false);
  gemm<float>(false, true, B, B, V, A.data(), V, A.data(), V, SA.data(), B, false);
  gemm<float>(false, true, B, B, C, H.data(), C, H.data(), C, SH.data(), B, false);
  std::vector<float> NH, NtA;  // N h_j [B,V] and Nᵀ a_j [B,C]
  if (!t.noise.empty()) {
    NH.resize((size_t)B * V);
    NtA.resize((size_t)B * C);
    gemm<float>(false, true, B, V, C, H.data(), C, t.noise.data(), C, NH.data(), V, false);
    gemm<float>(false, false, B, C, V, A.data(), V, t.noise.data(), C, NtA.data(), C, false);
  }
  // S = ⟨G_syn, G_t⟩, Q = ‖G_syn‖²
  double S = 0, Q = 0;
  std::vector<double> s_j(B, 0.0);  // ⟨a_j h_jᵀ, G_t⟩, for the per-sample loss
  for (int j = 0; j < B; ++j) {
    double s = 0;
    for (int i = 0; i < n; ++i) s += (double)RA[(size_t)i * B + j] * RH[(size_t)i * B + j];
    s /= n;
    if (!NH.empty()) s += dot(&A[(size_t)j * V], &NH[(size_t)j * V], V);
    s_j[j] = s;
    S += s;
  }
  S /= B;
  for (int j = 0; j < B * B; ++j) Q += (double)SA[j] * SH[j];
  Q /= (double)B * B;
  const double qn = std::sqrt(std::max(Q, 1e-30)), R = std::max(t.norm, 1e-30);
  const double cosine = S / (qn * R);
  if (per_sample)
    for (int j = 0; j < B; ++j) {
      double own = std::sqrt((double)SA[(size_t)j * B + j] * SH[(size_t)j * B + j]);
      per_sample[j] = (float)(1.0 - s_j[j] / (std::max(own, 1e-30) * R));
    }
  if (!dX) return 1.0 - cosine;

  // f = 1 − S/(√Q R):  df = −dS/(√Q R) + S/(2 Q^{3/2} R) dQ
  const float cS = (float)(-1.0 / (qn * R) / ((double)n * B));  // on the Gram-form part of dS (which carries 1/(nB))
  const float cN = (float)(-1.0 / (qn * R) / B);                 // on the noise part of dS (1/B)
  const float cQ = (float)(S / (2.0 * Q * qn * R) * 2.0 / ((double)B * B));
  std::vector<float> gA((size_t)B * V, 0.f), gH((size_t)B * C, 0.f);
  // coefficient matrices so each gradient is one GEMM: gA_j = Σ_i t.A_i · (cS RH_ij) + Σ_k A_k · (cQ SH_kj)
  std::vector<float> wRH((size_t)n * B), wRA((size_t)n * B), wSH((size_t)B * B), wSA((size_t)B * B);
  for (size_t i = 0; i < wRH.size(); ++i) wRH[i] = cS * RH[i], wRA[i] = cS * RA[i];
  for (size_t i = 0; i < wSH.size(); ++i) wSH[i] = cQ * SH[i], wSA[i] = cQ * SA[i];
  gemm<float>(true, false, B, V, n, wRH.data(), B, t.A.data(), V, gA.data(), V, false);
  gemm<float>(true, false, B, V, B, wSH.data(), B, A.data(), V, gA.data(), V, true);
  gemm<float>(true, false, B, C, n, wRA.data(), B, t.H.data(), C, gH.data(), C, false);
  gemm<float>(true, false, B, C, B, wSA.data(), B, H.data(), C, gH.data(), C, true);
  if (!NH.empty()) {
    for (size_t i = 0; i < gA.size(); ++i) gA[i] += cN * NH[i];
    for (size_t i = 0; i < gH.size(); ++i) gH[i] += cN * NtA[i];
  }
  // through a = softmax(logits) − e_y:  dlogits = p ⊙ (gA − ⟨p, gA⟩)
  const float* P = model.probs();
  std::vector<float> dlogits((size_t)B * V);
  for (int j = 0; j < B; ++j) {
    const float* p = P + (size_t)j * V;
    const float* g = &gA[(size_t)j * V];
    double pg = dot(p, g, V);
    for (int v = 0; v < V; ++v) dlogits[(size_t)j * V + v] = p[v] * (g[v] - (float)pg);
  }
  std::vector<float> d_hidden((size_t)B * L * C, 0.f);
  for (int j = 0; j < B; ++j) std::memcpy(&d_hidden[((size_t)j * L + L - 1) * C], &gH[(size_t)j * C], C * sizeof(float));
  std::memset(dX, 0, sizeof(float) * (size_t)B * L * C);
  CausalLM::BackwardArgs ba;
  ba.from_loss = false;
  ba.d_logits = dlogits.data();
  ba.d_hidden = d_hidden.data();
  ba.param_grads = false;
  ba.d_embeds = dX;
  model.backward(ba, cancel);
  return 1.0 - cosine;
}

}  // namespace gradmm
