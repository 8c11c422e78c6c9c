// GRADMM on the engine (model.h), written once for every backend:
//   build_target   the target's factors (a = p − e_y, h) from inference forwards in target_chunks' ranges
//   ExecMatcher    f(X) = 1 − cos(G_syn(X), G_target) and df/dX (gradmatch.h), and the x-update's Adam steps
//   project        the z-update: per free position, the top-k vocabulary rows by cosine to u_i (allowed tokens
//                  only), choosing the one the LM scores highest after the prefix and the tokens chosen so far
// Similarities, logits, the target's factors and the x-update's state live on the model's backend: an inner step
// reads back only scalars (the losses, once per x_update call) and a projection only the chosen ids (once per call).
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "admm.h"
#include "gradmatch.h"
#include "model.h"

namespace gradmm {

// The target of n real sequences (right-padded to T; last_pos[i] = index of the last real token; labels[i] = the
// label word's first token; host memory): inference forwards over target_chunks' row ranges, logits at each row's last
// position only, then finish_target on the host (clipping, DP noise, norms; opts.rows: the restricted lm_head rows).
MatchTarget build_target(CausalExec& model, const int* tokens, int n, int T, const int* last_pos, const int* labels,
                         const TargetOptions& opts, const std::atomic<bool>* cancel = nullptr);

// A MatchTarget on a backend.
struct ExecTarget {
  ExecTarget(const Backend* be, const MatchTarget& t);
  int n, V, C;
  double norm, bias_norm;
  BackendBuffer<float> A, H, noise;  // noise empty (size 0) when the target has none
  BackendBuffer<float> bias;         // the lm_head bias's target gradient [V]; empty without an lm_head bias
  BackendBuffer<float> row_mask;     // [V] the rows' weights (MatchTarget::row_mask); empty: all rows, weight 1
  BackendBuffer<float> hidden_scale; // [C] the whitening's w_h (MatchTarget::hidden_scale); empty: none
  BackendBuffer<float> mean_A;       // [n,V] the contrastive mean's factor rows (MatchTarget::mean_A); empty: none
  double mean_norm2 = 0, mean_dot = 0;
};

// match_loss and x_update on the model's backend. X, dX, z, lam, adam_m, adam_v are backend memory [B,L,C]; host
// results are noted per call.
class ExecMatcher {
 public:
  ExecMatcher(CausalExec& model, const ExecTarget& target);
  // f(X) (returned: waits) and, if dX, df/dX (overwritten); per_sample [B] host memory, optional.
  double match_loss(const float* X, int B, int L, int label, float* dX, float* per_sample_host = nullptr,
                    const std::atomic<bool>* cancel = nullptr);
  // args.steps Adam steps on X in place (method_ops.h x_adam_step); losses_host[s] = f before step s (optional);
  // returns f after the last step. Reads back only the losses, once. cancel: checked between layers and steps.
  double x_update(float* X, const float* z, const float* lam, const XUpdateArgs& args, float* adam_m, float* adam_v,
                  int* adam_t, float* losses_host, const std::atomic<bool>* cancel = nullptr);

 private:
  // One evaluation; writes scalars_ and (float) f to loss_out (backend memory, optional); per_sample backend memory.
  void evaluate(const float* X, int B, int L, int label, float* dX, float* per_sample, float* loss_out,
                const std::atomic<bool>* cancel);
  void ensure(int B, int L, int label);

  CausalExec& m_;
  const ExecTarget& t_;
  const Backend* be_;
  int B_ = 0, L_ = 0, label_ = -1;
  BackendBuffer<int> labels_;
  BackendBuffer<float> A_, RA_, RH_, SA_, SH_, NH_, NtA_, gA_, gH_, dlogits_, d_hidden_, g_scratch_, losses_, per_, dX_;
  BackendBuffer<float> Hs_, RAm_, RHm_;  // the whitened h's [B,C]; the contrastive mean's Gram RAm [n,B] and cM·RH
  BackendBuffer<double> noise_dots_, norm_scratch_;
  // the lm_head bias's part: ones [B], Σ_j a_j [V], the row added to every gA row [V], a_j·g_bt [B], the two dots
  BackendBuffer<float> ones_, asum_, brow_, own_;
  BackendBuffer<double> bias_dots_;
  BackendBuffer<GmScalars> scalars_;
};

// The projection of U [B,L,C] (backend memory) onto tokens: chosen [free_len, B] (backend memory, position-major)
// and, if out_tokens is given, the same ids on the host as [B, free_len]. `prefix` is a filled one-row cache of the
// model holding the instruction prompt, prefix_logits [V] (host) the logits after it; allowed [V] (host): 1 = may be
// chosen; host_wte: the model's input embeddings on the host (the vocabulary norms, projection_tables).
void project(CausalExec& model, const float* host_wte, const float* U, int B, int L, int free_len,
             const uint8_t* allowed, int topk, const ExecKVCache& prefix, const float* prefix_logits, int* chosen,
             int* out_tokens, const std::atomic<bool>* cancel = nullptr);

}  // namespace gradmm
