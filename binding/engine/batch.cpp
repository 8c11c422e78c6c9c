#include "batch.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace gradmm {

BatchState::BatchState(CausalExec& model, int B, int L, int free_len, int label, std::vector<int> template_ids,
                       std::vector<int> lead_ids)
    : m_(model), be_(model.backend()), B_(B), L_(L), free_(free_len), label_(label), C_(model.dims().channels),
      template_ids_(std::move(template_ids)), lead_ids_(std::move(lead_ids)) {
  const int V = model.dims().vocab_size, lead = (int)lead_ids_.size();
  if (B <= 0 || L <= 0 || free_len < 0 || lead + free_len > L) throw std::invalid_argument("batch: bad B, L or freeLen");
  if ((int)template_ids_.size() != L - lead - free_len)
    throw std::invalid_argument("batch: the template must fill L − freeLen − (lead tokens) positions");
  if (label < 0 || label >= V) throw std::invalid_argument("label token out of range");
  check_ids(template_ids_.data(), (long)template_ids_.size(), V, "batch: template token id out of range");
  check_ids(lead_ids_.data(), (long)lead_ids_.size(), V, "batch: lead token id out of range");
  const size_t n = (size_t)B * L * C_;
  for (auto* b : {&x_, &z_, &lam_, &m_buf_, &v_buf_, &best_, &u_}) {
    b->reset(be_, n);
    b->zero();
  }
  chosen_.reset(be_, (size_t)std::max(free_len, 1) * B);
  ids_.reset(be_, (size_t)B * L);
}

double BatchState::init(ExecMatcher& matcher, const float* host_wte, int candidates, uint64_t seed, float token_norm,
                        const std::atomic<bool>* cancel) {
  const int C = C_, nt = L_ - free_, lead = (int)lead_ids_.size();
  // token inputs are the scaled rows (Gemma: sqrt(hidden_size)), and so is the norm of the random token vectors:
  // token_norm is in units of the embedding table
  const float scale = m_.input_embedding_scale();
  // the pinned rows: the lead's, then the template's
  std::vector<float> tmpl((size_t)nt * C), X((size_t)B_ * L_ * C);
  for (int i = 0; i < nt; ++i) {
    const int id = i < lead ? lead_ids_[i] : template_ids_[i - lead];
    for (int c = 0; c < C; ++c) tmpl[(size_t)i * C + c] = host_wte[(size_t)id * C + c] * scale;
  }
  auto loss = [&](const float* cand) {
    be_->to_device(u_.data(), cand, sizeof(float) * X.size());  // u_ as the candidate's buffer
    return matcher.match_loss(u_.data(), B_, L_, label_, nullptr, nullptr, cancel);
  };
  const double f =
      init_candidates(loss, C, B_, L_, lead, free_, tmpl.data(), candidates, seed, token_norm * scale, X.data(), cancel);
  be_->to_device(x_.data(), X.data(), sizeof(float) * X.size());
  be_->copy(best_.data(), x_.data(), sizeof(float) * X.size());
  return f;
}

double BatchState::x_update(ExecMatcher& matcher, XUpdateArgs a, float* losses_host, const std::atomic<bool>* cancel) {
  a.B = B_, a.L = L_, a.free_len = free_, a.label = label_, a.lead = (int)lead_ids_.size();
  return matcher.x_update(x_.data(), z_.data(), lam_.data(), a, m_buf_.data(), v_buf_.data(), &adam_t_, losses_host,
                          cancel);
}

void BatchState::project(CausalExec& model, const float* host_wte, bool from_best, double rho, const uint8_t* allowed,
                         int topk, const ExecKVCache& prefix, const float* prefix_logits, int* out_tokens,
                         const std::atomic<bool>* cancel) {
  const int lead = (int)lead_ids_.size();
  const long row_n = (long)L_ * C_, free_n = (long)free_ * C_, off = (long)lead * C_;  // off: the free positions
  const float* U = best_.data();
  if (!from_best) {
    be_->dual_point(u_.data() + off, x_.data() + off, lam_.data() + off, B_, row_n, free_n, rho);  // u = x + λ/ρ
    U = u_.data();
  }
  std::vector<int> tokens((size_t)B_ * free_);
  // rows of stride L from the first free position: the projection sees the free positions only
  gradmm::project(model, host_wte, U + off, B_, L_, free_, allowed, topk, prefix, prefix_logits, chosen_.data(),
                  tokens.data(), cancel);
  if (out_tokens) std::memcpy(out_tokens, tokens.data(), sizeof(int) * tokens.size());
  // z: the lead's embeddings, the chosen tokens' at the free positions, the template's after them
  std::vector<int> ids((size_t)B_ * L_);
  for (int b = 0; b < B_; ++b) {
    int* row = &ids[(size_t)b * L_];
    for (int i = 0; i < lead; ++i) row[i] = lead_ids_[i];
    for (int i = 0; i < free_; ++i) row[lead + i] = tokens[(size_t)b * free_ + i];
    for (int i = lead + free_; i < L_; ++i) row[i] = template_ids_[i - lead - free_];
  }
  be_->to_device(ids_.data(), ids.data(), sizeof(int) * ids.size());
  model.embed_tokens(z_.data(), ids_.data(), B_ * L_);
}

double BatchState::z_loss(ExecMatcher& matcher, float* per_sample_host, const std::atomic<bool>* cancel) {
  return matcher.match_loss(z_.data(), B_, L_, label_, nullptr, per_sample_host, cancel);
}

void BatchState::dual_update(double rho) {
  const long off = (long)lead_ids_.size() * C_;  // the free positions
  be_->dual_update(lam_.data() + off, x_.data() + off, z_.data() + off, B_, (long)L_ * C_, (long)free_ * C_, rho);
}

void BatchState::keep_best() { be_->copy(best_.data(), x_.data(), sizeof(float) * x_.size()); }

const BackendBuffer<float>& BatchState::buffer(const char* which) const {
  const std::string w = which;
  if (w == "x") return x_;
  if (w == "z") return z_;
  if (w == "lam") return lam_;
  if (w == "m") return m_buf_;
  if (w == "v") return v_buf_;
  if (w == "best") return best_;
  throw std::invalid_argument("batch: no state '" + w + "' (x, z, lam, m, v, best)");
}
void BatchState::read(const char* which, float* host) const {
  const BackendBuffer<float>& b = buffer(which);
  be_->to_host(host, b.data(), sizeof(float) * b.size());
}
void BatchState::write(const char* which, const float* host) {
  const BackendBuffer<float>& b = buffer(which);
  be_->to_device(b.data(), host, sizeof(float) * b.size());
}

}  // namespace gradmm
