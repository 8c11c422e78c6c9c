#include "matcher.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>

#include "lm_head.h"

namespace gradmm {

MatchTarget build_target(CausalExec& model, const int* tokens, int n, int T, const int* last_pos, const int* labels,
                         const TargetOptions& opts, const std::atomic<bool>* cancel) {
  const Backend* be = model.backend();
  const int V = model.dims().vocab_size, C = model.dims().channels;
  if (n <= 0) throw std::invalid_argument("build_target: no real examples");
  check_ids(last_pos, n, T, "build_target: last position out of range");
  check_ids(tokens, (long)n * T, V, "forward: token id out of range");
  check_ids(labels, n, V, "forward: target out of range");
  check_target_rows(opts.rows, V);  // before the forwards: a bad row fails at once
  MatchTarget t;
  t.n = n, t.V = V, t.C = C;
  t.A.resize((size_t)n * V);
  t.H.resize((size_t)n * C);
  const auto chunks = target_chunks(n, T, opts.chunk_tokens);
  const int max_rows = chunks.empty() ? 0 : chunks[0].second - chunks[0].first;
  BackendBuffer<int> ids(be, (size_t)max_rows * T), rows(be, max_rows), targets(be, max_rows);
  std::vector<int> rows_host;
  for (const auto& [i0, i1] : chunks) {
    check_cancel(cancel);
    const int rn = i1 - i0;
    rows_host.resize(rn);
    for (int i = i0; i < i1; ++i) rows_host[i - i0] = (i - i0) * T + last_pos[i];
    be->to_device(ids.data(), tokens + (size_t)i0 * T, sizeof(int) * rn * T);
    be->to_device(rows.data(), rows_host.data(), sizeof(int) * rn);
    be->to_device(targets.data(), labels + i0, sizeof(int) * rn);
    CausalExec::Forward f;
    f.tokens = ids.data();
    f.B = rn;
    f.T = T;
    f.rows = CausalExec::Rows::Listed;
    f.row_ids = rows.data();
    f.n_rows = rn;
    f.targets = targets.data();
    f.keep_activations = false;  // the target needs no backward: one layer's activations at a time
    f.cancel = cancel;
    model.forward(f);
    be->to_host(t.A.data() + (size_t)i0 * V, model.probs(), sizeof(float) * rn * V);
    be->to_host(t.H.data() + (size_t)i0 * C, model.hidden_rows(), sizeof(float) * rn * C);
  }
  for (int i = 0; i < n; ++i) t.A[(size_t)i * V + labels[i]] -= 1.f;  // a = p − e_y
  finish_target(t, opts, model.lm_head_bias() != nullptr);
  return t;
}

ExecTarget::ExecTarget(const Backend* be, const MatchTarget& t)
    : n(t.n), V(t.V), C(t.C), norm(t.norm), bias_norm(t.bias_norm) {
  if (!t.bias.empty()) {
    bias.reset(be, V);
    be->to_device(bias.data(), t.bias.data(), sizeof(float) * V);
  }
  A.reset(be, (size_t)n * V);
  H.reset(be, (size_t)n * C);
  be->to_device(A.data(), t.A.data(), sizeof(float) * A.size());
  be->to_device(H.data(), t.H.data(), sizeof(float) * H.size());
  if (!t.row_mask.empty()) {
    row_mask.reset(be, V);
    be->to_device(row_mask.data(), t.row_mask.data(), sizeof(float) * V);
  }
  if (!t.noise.empty()) {
    noise.reset(be, t.noise.size());
    be->to_device(noise.data(), t.noise.data(), sizeof(float) * t.noise.size());
  }
  if (!t.hidden_scale.empty()) {
    if (t.hidden_scale.size() != (size_t)C) throw std::invalid_argument("ExecTarget: the target's hidden scale is not C long");
    hidden_scale.reset(be, C);
    be->to_device(hidden_scale.data(), t.hidden_scale.data(), sizeof(float) * C);
  }
  if (!t.mean_A.empty()) {
    if (t.mean_A.size() != (size_t)n * V) throw std::invalid_argument("ExecTarget: the target's mean rows are not n × V");
    mean_A.reset(be, (size_t)n * V);
    be->to_device(mean_A.data(), t.mean_A.data(), sizeof(float) * mean_A.size());
    mean_norm2 = t.mean_norm2, mean_dot = t.mean_dot;
  }
}

ExecMatcher::ExecMatcher(CausalExec& model, const ExecTarget& target) : m_(model), t_(target), be_(model.backend()) {
  if (target.V != model.dims().vocab_size || target.C != model.dims().channels)
    throw std::invalid_argument("ExecMatcher: target belongs to a different model shape");
  if (target.row_mask.size() != 0 && target.row_mask.size() != (size_t)target.V)
    throw std::invalid_argument("ExecMatcher: the target's row mask is not V long");
  if ((target.bias.size() != 0) != (model.lm_head_bias() != nullptr))
    throw std::invalid_argument("ExecMatcher: the target's lm_head bias part does not match the model's lm_head");
  if (target.mean_A.size() != 0 && model.lm_head_bias() != nullptr)
    throw std::invalid_argument("ExecMatcher: the whitened contrastive objective does not support an lm_head bias");
  scalars_.reset(be_, 1);
  norm_scratch_.reset(be_, 1024);
}

void ExecMatcher::ensure(int B, int L, int label) {
  const size_t V = t_.V, C = t_.C, n = t_.n;
  if (B != B_ || L != L_) {
    A_.reset(be_, B * V);
    RA_.reset(be_, n * B);
    RH_.reset(be_, n * B);
    SA_.reset(be_, (size_t)B * B);
    SH_.reset(be_, (size_t)B * B);
    if (t_.noise.size()) {
      NH_.reset(be_, B * V);
      NtA_.reset(be_, B * C);
      noise_dots_.reset(be_, B);
    }
    gA_.reset(be_, B * V);
    gH_.reset(be_, B * C);
    if (t_.hidden_scale.size()) Hs_.reset(be_, B * C);
    if (t_.mean_A.size()) {
      RAm_.reset(be_, n * B);
      RHm_.reset(be_, n * B);
    }
    dlogits_.reset(be_, B * V);
    d_hidden_.reset(be_, (size_t)B * L * C);
    g_scratch_.reset(be_, (size_t)B * L * C);
    per_.reset(be_, B);
    labels_.reset(be_, B);
    if (t_.bias.size()) {
      ones_.reset(be_, B);
      be_->fill(ones_.data(), B, 1.f);
      asum_.reset(be_, V);
      brow_.reset(be_, V);
      own_.reset(be_, B);
      bias_dots_.reset(be_, 2);
    }
    B_ = B;
    L_ = L;
    label_ = -1;
  }
  if (label != label_) {
    if (label < 0 || label >= (int)V) throw std::invalid_argument("label token out of range");
    std::vector<int> l(B, label);
    be_->to_device(labels_.data(), l.data(), sizeof(int) * B);
    label_ = label;
  }
}

void ExecMatcher::evaluate(const float* X, int B, int L, int label, float* dX, float* per_sample, float* loss_out,
                           const std::atomic<bool>* cancel) {
  const int V = t_.V, C = t_.C, n = t_.n;
  ensure(B, L, label);
  const Backend& be = *be_;
  CausalExec::Forward fa;
  fa.embeds = X;
  fa.B = B;
  fa.T = L;
  fa.rows = CausalExec::Rows::Last;
  fa.targets = labels_.data();
  fa.cancel = cancel;
  m_.forward(fa);
  float* A = A_.data();
  const float* H = m_.hidden_rows();
  be.onehot_sub(A, m_.probs(), labels_.data(), B, V);
  const float* mask = t_.row_mask.size() ? t_.row_mask.data() : nullptr;
  if (mask) be.scale_cols(A, mask, B, V);  // weighted rows: a = m ⊙ (p − e_y)
  const float* hscale = t_.hidden_scale.size() ? t_.hidden_scale.data() : nullptr;
  if (hscale) {  // whitened: h = w_h ⊙ h
    be.copy(Hs_.data(), H, sizeof(float) * (size_t)B * C);
    be.scale_cols(Hs_.data(), hscale, B, C);
    H = Hs_.data();
  }
  const bool contrastive = t_.mean_A.size() != 0;
  // Gram matrices against the target (n×B) and within the batch (B×B)
  be.gemm(false, true, n, B, V, t_.A.data(), V, A, V, RA_.data(), B, false);
  be.gemm(false, true, n, B, C, t_.H.data(), C, H, C, RH_.data(), B, false);
  be.gemm(false, true, B, B, V, A, V, A, V, SA_.data(), B, false);
  be.gemm(false, true, B, B, C, H, C, H, C, SH_.data(), B, false);
  GmMean mean;
  if (contrastive) {  // the mean's Gram with the batch's a's (it shares the target's h rows: RH serves both)
    be.gemm(false, true, n, B, V, t_.mean_A.data(), V, A, V, RAm_.data(), B, false);
    mean.RAm = RAm_.data(), mean.norm2 = t_.mean_norm2, mean.dot = t_.mean_dot;
  }
  const bool noisy = t_.noise.size() != 0;
  if (noisy) {  // N h_j [B,V], Nᵀ a_j [B,C], a_j·N h_j
    be.gemm(false, true, B, V, C, H, C, t_.noise.data(), C, NH_.data(), V, false);
    be.gemm(false, false, B, C, V, A, V, t_.noise.data(), C, NtA_.data(), C, false);
    be.row_dot(noise_dots_.data(), A, NH_.data(), B, V);
  }
  GmScalars* s = scalars_.data();  // backend memory: only addresses of its fields are taken below
  auto field = [s](size_t off) { return reinterpret_cast<const float*>(reinterpret_cast<const char*>(s) + off); };
  be.gm_combine(s, per_sample, loss_out, RA_.data(), RH_.data(), SA_.data(), SH_.data(),
                noisy ? noise_dots_.data() : nullptr, n, B, t_.norm, mean);
  const bool bias = t_.bias.size() != 0;
  if (bias) {  // the bias tensor's half: Σ_j a_j, its dots with g_bt and itself, and each a_j·g_bt
    be.gemm(true, false, 1, V, B, ones_.data(), 1, A, V, asum_.data(), V, false);
    be.row_dot(bias_dots_.data(), asum_.data(), t_.bias.data(), 1, V);
    be.row_dot(bias_dots_.data() + 1, asum_.data(), asum_.data(), 1, V);
    be.gemm(false, true, B, 1, V, A, V, t_.bias.data(), V, own_.data(), 1, false);
    be.gm_bias_combine(s, per_sample, loss_out, bias_dots_.data(), own_.data(), SA_.data(), B, t_.bias_norm);
  }
  if (!dX) return;

  // the contrastive mean's part first, while RH is still plain: gA_j += Σ_i M.A_i cM·RH_ij, gH_j += Σ_i H_i cM·RAm_ij
  // (after the Gram parts below, which overwrite gA and gH)
  if (contrastive) {
    be.copy(RHm_.data(), RH_.data(), sizeof(float) * (size_t)n * B);
    be.scale_by(RHm_.data(), (long)n * B, field(offsetof(GmScalars, cM)));
    be.scale_by(RAm_.data(), (long)n * B, field(offsetof(GmScalars, cM)));
  }
  // coefficient matrices in place (the Gram matrices are not needed again): wRH = cS·RH, wRA = cS·RA, wSH = cQ·SH,
  // wSA = cQ·SA; then gA_j = Σ_i t.A_i wRH_ij + Σ_k A_k wSH_kj and gH likewise
  be.scale_by(RH_.data(), (long)n * B, field(offsetof(GmScalars, cS)));
  be.scale_by(RA_.data(), (long)n * B, field(offsetof(GmScalars, cS)));
  be.scale_by(SH_.data(), (long)B * B, field(offsetof(GmScalars, cQ)));
  be.scale_by(SA_.data(), (long)B * B, field(offsetof(GmScalars, cQ)));
  be.gemm(true, false, B, V, n, RH_.data(), B, t_.A.data(), V, gA_.data(), V, false);
  be.gemm(true, false, B, V, B, SH_.data(), B, A, V, gA_.data(), V, true);
  be.gemm(true, false, B, C, n, RA_.data(), B, t_.H.data(), C, gH_.data(), C, false);
  be.gemm(true, false, B, C, B, SA_.data(), B, H, C, gH_.data(), C, true);
  if (contrastive) {
    be.gemm(true, false, B, V, n, RHm_.data(), B, t_.mean_A.data(), V, gA_.data(), V, true);
    be.gemm(true, false, B, C, n, RAm_.data(), B, t_.H.data(), C, gH_.data(), C, true);
  }
  if (noisy) {
    be.axpy_by(gA_.data(), NH_.data(), (long)B * V, field(offsetof(GmScalars, cN)));
    be.axpy_by(gH_.data(), NtA_.data(), (long)B * C, field(offsetof(GmScalars, cN)));
  }
  if (bias) {  // gA_j += cb1·g_bt + cb2·Σ_k a_k, the same row for every j
    be.copy(brow_.data(), t_.bias.data(), sizeof(float) * V);
    be.scale_by(brow_.data(), V, field(offsetof(GmScalars, cb1)));
    be.axpy_by(brow_.data(), asum_.data(), V, field(offsetof(GmScalars, cb2)));
    be.gemm(false, false, B, V, 1, ones_.data(), 1, brow_.data(), V, gA_.data(), V, true);
  }
  // through a = m ⊙ (softmax(logits) − e_y): the row weights first; through h = w_h ⊙ h: the hidden scale
  if (mask) be.scale_cols(gA_.data(), mask, B, V);
  if (hscale) be.scale_cols(gH_.data(), hscale, B, C);
  be.softmax_jvp_rows(dlogits_.data(), m_.probs(), gA_.data(), B, V);
  d_hidden_.zero();
  be.scatter_rows(d_hidden_.data(), gH_.data(), B, C, L, L - 1, false);
  be.zero(dX, sizeof(float) * (size_t)B * L * C);
  CausalExec::Backward ba;
  ba.d_logits = dlogits_.data();
  ba.d_hidden = d_hidden_.data();
  ba.param_grads = false;
  ba.d_embeds = dX;
  ba.cancel = cancel;
  m_.backward(ba);
}

double ExecMatcher::match_loss(const float* X, int B, int L, int label, float* dX, float* per_sample_host,
                               const std::atomic<bool>* cancel) {
  ensure(B, L, label);  // before taking per_.data()
  evaluate(X, B, L, label, dX, per_sample_host ? per_.data() : nullptr, nullptr, cancel);
  if (per_sample_host) be_->to_host(per_sample_host, per_.data(), sizeof(float) * B);
  GmScalars s;
  be_->to_host(&s, scalars_.data(), sizeof(s));
  return s.f;
}

double ExecMatcher::x_update(float* X, const float* z, const float* lam, const XUpdateArgs& a, float* adam_m,
                             float* adam_v, int* adam_t, float* losses_host, const std::atomic<bool>* cancel) {
  const int C = t_.C;
  if (a.free_len < 0 || a.lead < 0 || a.lead + a.free_len > a.L) throw std::invalid_argument("x_update: lead + free_len out of range");
  const long row_n = (long)a.L * C, free_n = (long)a.free_len * C, off = (long)a.lead * C;  // the free positions
  ensure(a.B, a.L, a.label);
  losses_.ensure(be_, (size_t)std::max(a.steps, 1));
  dX_.ensure(be_, (size_t)a.B * row_n);
  for (int s = 0; s < a.steps; ++s) {
    check_cancel(cancel);
    evaluate(X, a.B, a.L, a.label, dX_.data(), nullptr, losses_.data() + s, cancel);
    const int t = ++*adam_t;  // the bias corrections
    const float step_size = a.lr / (1.f - std::pow(a.beta1, (float)t));
    const float bc2_sqrt = std::sqrt(1.f - std::pow(a.beta2, (float)t));
    be_->x_adam_step(X + off, adam_m + off, adam_v + off, dX_.data() + off, z + off, lam + off, g_scratch_.data(),
                     norm_scratch_.data(), a.B, row_n, free_n,
                     a.rho, a.max_grad_norm, a.beta1, a.beta2, a.eps, step_size, bc2_sqrt);
  }
  evaluate(X, a.B, a.L, a.label, nullptr, nullptr, nullptr, cancel);
  if (losses_host && a.steps > 0) be_->to_host(losses_host, losses_.data(), sizeof(float) * a.steps);
  GmScalars s;
  be_->to_host(&s, scalars_.data(), sizeof(s));
  return s.f;
}

void project(CausalExec& model, const float* host_wte, const float* U, int B, int L, int free_len,
             const uint8_t* allowed, int topk, const ExecKVCache& prefix, const float* prefix_logits, int* chosen,
             int* out_tokens, const std::atomic<bool>* cancel) {
  const Backend* be = model.backend();
  const int V = model.dims().vocab_size, C = model.dims().channels;
  if (prefix.rows != 1 || prefix.length <= 0) throw std::invalid_argument("project: prefix must be a filled one-row cache");
  // the tables, computed once per call on the host
  std::vector<float> inv_norm_host;
  std::vector<int> allowed_host;
  projection_tables(host_wte, V, C, allowed, inv_norm_host, allowed_host);
  if (topk < 1) throw std::invalid_argument("project: topk must be at least 1");
  const int n_allowed = (int)allowed_host.size(), k = std::min(topk, n_allowed);
  if (free_len <= 0 || B <= 0) return;
  ExecKVCache rows(be, model.dims(), B, free_len, &prefix);
  BackendBuffer<float> ui(be, (size_t)B * C), sims(be, (size_t)B * V), logits(be, (size_t)B * V), inv_norm(be, V);
  BackendBuffer<int> ids(be, n_allowed);
  be->to_device(inv_norm.data(), inv_norm_host.data(), sizeof(float) * V);
  be->to_device(ids.data(), allowed_host.data(), sizeof(int) * n_allowed);
  for (int b = 0; b < B; ++b) be->to_device(logits.data() + (size_t)b * V, prefix_logits, sizeof(float) * V);
  const float* wte = model.input_embeddings();
  // Nothing is read back until the end: each position's ids stay on the backend for the next decoding step, so the
  // host only queues work (no wait per position: on a GPU the decoding steps are launch-bound).
  for (int i = 0; i < free_len; ++i) {
    check_cancel(cancel);
    int* chosen_i = chosen + (size_t)i * B;
    be->gather_rows(ui.data(), U, B, C, L, i);  // ui[b] = U[b, i]
    be->gemm(false, true, B, V, C, ui.data(), C, wte, C, sims.data(), V, false);  // u_i · e_v
    be->project_choose(chosen_i, sims.data(), logits.data(), inv_norm.data(), ids.data(), n_allowed, B, V, k);
    if (i + 1 < free_len) model.decode(rows, chosen_i, nullptr, 1, logits.data(), cancel);
  }
  if (!out_tokens) return;
  std::vector<int> chosen_host((size_t)free_len * B);
  be->to_host(chosen_host.data(), chosen, sizeof(int) * chosen_host.size());  // the one download
  for (int i = 0; i < free_len; ++i)
    for (int b = 0; b < B; ++b) out_tokens[(long)b * free_len + i] = chosen_host[(size_t)i * B + b];
}

}  // namespace gradmm
