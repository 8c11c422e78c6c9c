// Gradient matching on the lm_head (GRADMM), with every per-example gradient kept as its rank-1 factors.
//
// One example's gradient of the last-position cross-entropy w.r.t. the lm_head weight W [V,C] is
//     G = a hᵀ,  a = softmax(W h) − e_y  (V),  h = final hidden state (C).
// A set's mean gradient is (1/n) Σ a_i h_iᵀ, so inner products and norms of such gradients need only the Gram
// matrices of the a's and h's: nothing of size V×C is ever built per example. The optional DP noise N [V,C] is
// the one dense term; it enters through N·h_j and Nᵀ·a_j (one matvec per sequence).
//
// Distance: f(X) = 1 − cos(G_syn(X), G_target) for an lm_head without a bias (GPT-2, the Llama family). With a bias
// b (Phi) each example's gradient is the pair (a hᵀ, a) and the distance is the mean over the two tensors,
// f = ½[(1 − cos(G_syn, G_target)) + (1 − cos(g_syn, g_target))], g = the bias gradients; DP clipping bounds the
// joint norm ‖(a hᵀ, a)‖ = ‖a‖·√(‖h‖² + 1), and the noise covers both tensors (N [V,C] and n_b [V], one stream).
//
// Restricted rows (TargetOptions::rows, method.target_rows label_words): both gradients keep only the lm_head rows
// listed (and those bias entries), i.e. every a becomes m ⊙ a with the V-mask m (MatchTarget::row_mask; p is still
// the softmax over the whole vocabulary), so the Gram-matrix algebra above is unchanged. Clipping bounds the
// restricted norm and the DP noise covers only the restricted entries (N is zero outside those rows).
//
// Whitened, class-contrastive targets (whitened_contrastive_targets, method.objective whitened_contrastive; ours, not
// the paper's): every gradient's entry (v, c) is divided by s_a[v]·s_h[c], the root second moments of the private
// examples' a's and h's over all classes, shrunk towards their means (a separable, diagonal whitening, so each
// example's gradient stays rank 1: a ↦ w_a ⊙ a, h ↦ w_h ⊙ h). With M the mean of the whitened class targets T_k,
// class k's distance is 1 − cos(G_syn − M, T_k − M): only what tells the classes apart is matched.
#pragma once
#include <atomic>
#include <cstdint>
#include <utility>
#include <vector>

#include "causal_lm.h"

namespace gradmm {

struct MatchTarget {
  int n = 0, V = 0, C = 0;
  std::vector<float> A;      // [n,V]  a_i, after DP clipping (scaled)
  std::vector<float> H;      // [n,C]  h_i
  std::vector<float> noise;  // [V,C]  DP noise N, or empty
  double norm = 0;           // ‖G_target‖ = ‖(1/n) Σ a_i h_iᵀ + N‖
  std::vector<float> example_norms;  // ‖a_i h_iᵀ‖ (with a bias: ‖(a_i h_iᵀ, a_i)‖) before clipping
  // With an lm_head bias only (else empty / 0): the target's bias gradient g_t = (1/n) Σ a_i + n_b [V], its norm
  std::vector<float> bias;
  double bias_norm = 0;
  // Weights of the lm_head rows [V], or empty: every row with weight 1. The V-mask of TargetOptions::rows (1 kept,
  // 0 not), or the whitening's w_a. A and the bias are already weighted; the matcher weights the synthetic a's.
  std::vector<float> row_mask;
  // Whitened, class-contrastive targets only (else empty / 0): the whitening's w_h [C] (H is already scaled; the
  // matcher scales the synthetic h's), and the mean M of the class targets as factor rows mean_A [n,V] over the
  // same h rows H (M = (1/n) Σ mean_A_i H_iᵀ), ‖M‖² and ⟨M, G_target⟩.
  std::vector<float> hidden_scale;
  std::vector<float> mean_A;
  double mean_norm2 = 0, mean_dot = 0;
};

struct TargetOptions {
  float clip_norm = 0;      // per-example clipping C (0 = off)
  float noise_std = 0;      // σ of each entry of N (0 = no noise); the caller computes it from ε, δ, C, n
  uint64_t noise_seed = 0;
  int chunk_tokens = 4096;  // tokens per forward while building the target (memory vs. per-call overhead)
  // The lm_head rows the target and the matching are restricted to (distinct ids in [0, V), any order), or empty:
  // all rows (the paper's recipe). Noise: K·C normals (+ K for a bias) of the stream, row by row in ascending id order.
  std::vector<int> rows;
};

// The row ranges [i0, i1) the target is built in, one inference forward each (binding/engine/matcher.h
// build_target): at most chunk_tokens tokens (rows × T) per forward, at least one row, so the activations held at once
// stay bounded however many examples there are and however long.
std::vector<std::pair<int, int>> target_chunks(int n, int T, int chunk_tokens);

// TargetOptions::rows checked against a vocabulary of V and sorted ascending (the order the noise is drawn in).
// Throws std::invalid_argument naming the first id out of [0, V) or listed twice. The one check of the rows: the
// addon calls it before it queues the work, build_target before its forwards, finish_target for what it uses.
std::vector<int> check_target_rows(const std::vector<int>& rows, int V);

// The target's host half, after the engine computed the factors: t.n, t.V, t.C, t.A = p − e_y and t.H filled;
// applies the per-example clipping and the DP noise and sets t.norm and t.example_norms; with lm_head_bias also
// t.bias and t.bias_norm (clipping by the joint norm, noise on both tensors). With opts.rows, t.A is masked to those
// rows first and t.row_mask set (check_target_rows).
void finish_target(MatchTarget& t, const TargetOptions& opts, bool lm_head_bias = false);

// Whitened, class-contrastive targets (see the top of this file) from each class's plain target (built without
// clipping, noise, rows or bias: `raw`, one per class, the same model), whitening shrinkage α in [0, 1]
// (s² = (1 − α)·m² + α·mean(m²) per factor; α = 1: no whitening). Every returned target has the factor rows of all
// N = Σ n_k examples: A_i = N·c_i·(w_a ⊙ a_i), H_i = w_h ⊙ h_i with c_i = [class i = k]/n_k − 1/(K·n_{class i}),
// so (1/N) Σ A_i H_iᵀ = T_k − M; mean_A_i = N/(K·n_{class i})·(w_a ⊙ a_i). Throws std::invalid_argument for fewer
// than two classes, a raw target that is not plain, or mismatched shapes.
std::vector<MatchTarget> whitened_contrastive_targets(const std::vector<const MatchTarget*>& raw, double shrinkage);

// Deterministic standard normals (splitmix64 + Box–Muller) so every platform draws the same numbers from a seed.
void fill_normal(float* out, long n, uint64_t seed, float std = 1.f);

}  // namespace gradmm
