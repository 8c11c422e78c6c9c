// The engine as the standalone tests drive it: host arrays in and out (engine.h ModelEngine) on a backend table (the
// CPU's by default), with the old direct-call shape (forward, backward, decode, logits, probs, hidden, grads).
#pragma once
#include <cstring>
#include <memory>
#include <vector>

#include "check.h"
#include "engine.h"
#include "threadpool.h"

namespace gradmm {

class HostModel {
 public:
  template <typename Config>
  explicit HostModel(const Config& cfg, const Backend* be = cpu_backend())
      : e_(std::make_shared<ModelEngine>(ModelEngine::make(be, cfg))) {}
  ModelEngine& engine() { return *e_; }
  CausalExec& exec() { return e_->exec(); }
  const ModelDims& dims() const { return e_->dims(); }
  const std::vector<ParamInfo>& param_table() const { return e_->layout().param_table(); }
  size_t num_params() const { return e_->num_params(); }
  float* params() { return e_->host_params(); }
  void params_changed() { e_->params_changed(); }
  float* grads() { return e_->host_grads(); }
  void zero_grads() { e_->zero_grads(); }
  float forward(const ForwardArgs& fa) { return e_->forward(fa, nullptr); }
  void backward(const BackwardArgs& ba) { e_->backward(ba, nullptr); }
  // the last forward's logits [rows, V] (a host copy)
  const float* logits() {
    logits_.resize(e_->rows_selected() * (size_t)dims().vocab_size);
    e_->logits(logits_.data());
    return logits_.data();
  }
  // the last forward's probabilities [rows, V] and final hidden states [B, T, C] (host copies)
  const float* probs() {
    probs_.resize(e_->rows_selected() * (size_t)dims().vocab_size);
    exec().backend()->to_host(probs_.data(), exec().probs(), sizeof(float) * probs_.size());
    return probs_.data();
  }
  const float* hidden() {
    hidden_.resize(e_->hidden_floats());
    e_->hidden(hidden_.data());
    return hidden_.data();
  }
  std::vector<int> selected_rows() const { return e_->selected_rows(); }
  size_t hidden_size() const { return e_->hidden_floats(); }
  std::shared_ptr<CacheHandle> cache(int rows, int capacity, std::shared_ptr<CacheHandle> prefix = nullptr) {
    return e_->new_cache(rows, capacity, std::move(prefix));
  }
  void decode(const std::shared_ptr<CacheHandle>& c, const int* tokens, const float* embeds, int Tn, float* logits,
              float* hidden = nullptr) {
    e_->decode(*c, tokens, embeds, Tn, logits, hidden, nullptr);
  }
  std::shared_ptr<MatchTarget> build_target(const int* tokens, int n, int T, const int* last_pos, const int* labels,
                                            const TargetOptions& opts) {
    return e_->build_target(tokens, n, T, last_pos, labels, opts, nullptr);
  }
  double match_loss(const std::shared_ptr<MatchTarget>& t, const float* X, int B, int L, int label, float* dX,
                    float* per_sample) {
    return e_->match_loss(t, X, B, L, label, dX, per_sample, nullptr);
  }
  void project(const float* U, int B, int L, int free_len, const uint8_t* allowed, int topk,
               const std::shared_ptr<CacheHandle>& prefix, const float* prefix_logits, int* out) {
    e_->project(U, B, L, free_len, allowed, topk, *prefix, prefix_logits, out, nullptr);
  }

 private:
  std::shared_ptr<ModelEngine> e_;
  std::vector<float> logits_, probs_, hidden_;
};

// match_loss's df/dX against central differences (h = 1e-2, a float model) at 24 random entries of X: the relative
// error (rel_err) of the analytic entries against the numeric ones
inline double match_loss_dX_fd_error(HostModel& m, const std::shared_ptr<MatchTarget>& tp, std::vector<float>& X,
                                     int B, int L, int label, Rng& rng) {
  std::vector<float> dX(X.size());
  m.match_loss(tp, X.data(), B, L, label, dX.data(), nullptr);
  std::vector<double> num, ana;
  for (int s = 0; s < 24; ++s) {
    int i = rng.below((int)X.size());
    float orig = X[i];
    X[i] = orig + 1e-2f;
    double fp = m.match_loss(tp, X.data(), B, L, label, nullptr, nullptr);
    X[i] = orig - 1e-2f;
    double fm = m.match_loss(tp, X.data(), B, L, label, nullptr, nullptr);
    X[i] = orig;
    num.push_back((fp - fm) / 2e-2);
    ana.push_back(dX[i]);
  }
  return rel_err(num, ana);
}

// Whether a model's forward + backward (token loss at every position) gives the same bits in four runs at 1, 2, 1 and
// 2 threads: the loss, the logits and every parameter gradient. make() builds the (same) model each time.
template <typename Make>
bool same_bits_across_threads(Make make, int B, int T, int V) {
  Rng rng(3);
  std::vector<int> tok(B * T), tgt(B * T);
  for (auto& t : tok) t = rng.below(V);
  for (auto& t : tgt) t = rng.below(V);
  std::vector<std::vector<float>> results;
  for (int threads : {1, 2, 1, 2}) {
    set_num_threads(threads);
    HostModel m = make();
    ForwardArgs fa;
    fa.tokens = tok.data();
    fa.B = B;
    fa.T = T;
    fa.targets = tgt.data();
    float loss = m.forward(fa);
    m.zero_grads();
    m.backward(BackwardArgs{});
    std::vector<float> r(m.grads(), m.grads() + m.num_params());
    r.push_back(loss);
    r.insert(r.end(), m.logits(), m.logits() + (size_t)B * T * V);
    results.push_back(r);
  }
  set_num_threads(0);
  bool same = true;
  for (auto& r : results) same = same && r.size() == results[0].size() && !std::memcmp(r.data(), results[0].data(), r.size() * 4);
  return same;
}

}  // namespace gradmm

