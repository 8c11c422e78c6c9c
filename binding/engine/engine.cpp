#include "engine.h"

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "lm_head.h"

namespace gradmm {

std::unique_ptr<CausalExec> ModelEngine::make(const Backend* be, const GPT2Config& cfg) {
  return std::make_unique<GPT2Exec>(be, cfg);
}
std::unique_ptr<CausalExec> ModelEngine::make(const Backend* be, const LlamaConfig& cfg) {
  return std::make_unique<LlamaExec>(be, cfg);
}
std::unique_ptr<CausalExec> ModelEngine::make(const Backend* be, const PhiConfig& cfg) {
  return std::make_unique<PhiExec>(be, cfg);
}
std::unique_ptr<CausalExec> ModelEngine::make(const Backend* be, const Gemma3Config& cfg) {
  return std::make_unique<Gemma3Exec>(be, cfg);
}

ModelEngine::ModelEngine(std::unique_ptr<CausalExec> exec)
    : be_(exec->backend()), mirror_(!exec->backend()->host_memory), exec_(std::move(exec)) {
  if (mirror_) host_params_.assign(exec_->num_params(), 0.f);
}

template <typename T>
T* ModelEngine::upload(BackendBuffer<T>& buf, const T* host, size_t n) {
  if (!mirror_) return const_cast<T*>(host);
  buf.ensure(be_, n);
  if (host) be_->to_device(buf.data(), host, n * sizeof(T));
  return buf.data();
}

// ---- residency ----

float* ModelEngine::host_params() { return mirror_ ? host_params_.data() : exec_->params(); }

void ModelEngine::sync_host() {
  if (!mirror_) return;
  const size_t bytes = num_params() * sizeof(float);
  if (backend_params_newer_) be_->to_host(host_params_.data(), exec_->params(), bytes);
  backend_params_newer_ = false;
  if (grads_newer_ == Newer::Backend) {
    host_grads_.resize(num_params());
    be_->to_host(host_grads_.data(), exec_->grads(), bytes);
    grads_newer_ = Newer::Same;
  }
  if (moments_newer_ == Newer::Backend) {
    host_m_.resize(num_params());
    host_v_.resize(num_params());
    be_->to_host(host_m_.data(), exec_->adam_m(), bytes);
    be_->to_host(host_v_.data(), exec_->adam_v(), bytes);
    moments_newer_ = Newer::Same;
  }
}

float* ModelEngine::host_grads() {
  if (!mirror_) return exec_->grads();
  sync_host();
  if (host_grads_.empty()) {
    host_grads_.assign(num_params(), 0.f);
    if (exec_->has_grads()) be_->to_host(host_grads_.data(), exec_->grads(), num_params() * sizeof(float));
  }
  return host_grads_.data();
}

void ModelEngine::host_adam(float** m, float** v) {
  if (!mirror_) {
    *m = exec_->adam_m();
    *v = exec_->adam_v();
    return;
  }
  sync_host();
  if (host_m_.empty()) {
    host_m_.assign(num_params(), 0.f);
    host_v_.assign(num_params(), 0.f);
    if (exec_->has_adam()) {
      be_->to_host(host_m_.data(), exec_->adam_m(), num_params() * sizeof(float));
      be_->to_host(host_v_.data(), exec_->adam_v(), num_params() * sizeof(float));
    }
  }
  moments_newer_ = Newer::Host;  // a checkpoint may be restored into them
  *m = host_m_.data();
  *v = host_v_.data();
}

void ModelEngine::params_changed() {
  ++params_version_;
  exec_->params_written();  // a bf16 copy of the parameters is remade before its next use
  backend_params_newer_ = false;
  if (mirror_) {
    if (!host_grads_.empty() && grads_newer_ == Newer::Same) grads_newer_ = Newer::Host;
    if (!host_m_.empty() && moments_newer_ == Newer::Same) moments_newer_ = Newer::Host;
  }
}

void ModelEngine::prepare() {
  if (mirror_ && backend_version_ != params_version_)
    be_->to_device(exec_->params(), host_params_.data(), num_params() * sizeof(float));
  backend_version_ = params_version_;
}

float* ModelEngine::backend_grads() {
  float* g = exec_->grads();
  if (mirror_ && grads_newer_ == Newer::Host) {
    be_->to_device(g, host_grads_.data(), num_params() * sizeof(float));
    grads_newer_ = Newer::Same;
  }
  return g;
}

void ModelEngine::backend_moments() {
  exec_->adam_m();
  if (mirror_ && moments_newer_ == Newer::Host) {
    be_->to_device(exec_->adam_m(), host_m_.data(), num_params() * sizeof(float));
    be_->to_device(exec_->adam_v(), host_v_.data(), num_params() * sizeof(float));
    moments_newer_ = Newer::Same;
  }
}

void ModelEngine::zero_grads() {
  if (mirror_) {
    if (!host_grads_.empty()) std::fill(host_grads_.begin(), host_grads_.end(), 0.f);
    grads_newer_ = Newer::Same;
    if (exec_->has_grads()) exec_->zero_grads();
    return;
  }
  exec_->grads();
  exec_->zero_grads();
}

const float* ModelEngine::host_embeddings() {
  if (!mirror_) return exec_->input_embeddings();
  sync_host();
  return host_params_.data() + (exec_->input_embeddings() - exec_->params());
}

// ---- the model ----

float ModelEngine::forward(const ForwardArgs& fa, const std::atomic<bool>* cancel) {
  const int V = dims().vocab_size, C = dims().channels;
  const long BT = (long)fa.B * fa.T;
  if ((fa.tokens == nullptr) == (fa.embeds == nullptr))
    throw std::invalid_argument("forward: give exactly one of tokens or embeds");
  if (fa.tokens) check_ids(fa.tokens, BT, V, "forward: token id out of range");
  std::vector<int> rows, targets;  // the targets of rows of weight 0 are not read
  std::vector<float> weights;
  select_loss_rows(fa, BT, V, rows, targets, weights);
  const int R = (int)rows.size();
  prepare();
  CausalExec::Forward f;
  f.B = fa.B;
  f.T = fa.T;
  f.rows = R == BT ? CausalExec::Rows::All : CausalExec::Rows::Listed;
  f.keep_activations = fa.keep_activations;
  f.cancel = cancel;
  if (fa.tokens) f.tokens = upload(ids_, fa.tokens, BT);
  else f.embeds = upload(embeds_, fa.embeds, (size_t)BT * C);
  if (f.rows == CausalExec::Rows::Listed) {
    f.row_ids = R ? upload(rows_, rows.data(), R) : nullptr;
    f.n_rows = R;
  }
  if (fa.targets && R > 0) {
    f.targets = upload(targets_, targets.data(), R);
    if (fa.loss_mask) f.row_weights = weights.data();
  }
  exec_->forward(f);
  return fa.targets ? (float)exec_->mean_loss() : NAN;
}

void ModelEngine::backward(const BackwardArgs& ba, const std::atomic<bool>* cancel) {
  const size_t BTC = hidden_floats(), RV = rows_selected() * (size_t)dims().vocab_size;
  prepare();
  CausalExec::Backward b;
  b.from_loss = ba.from_loss;
  b.param_grads = ba.param_grads;
  b.cancel = cancel;
  if (ba.d_logits) b.d_logits = upload(d_logits_, ba.d_logits, RV);
  if (ba.d_hidden) b.d_hidden = upload(d_hidden_, ba.d_hidden, BTC);
  if (ba.d_embeds) b.d_embeds = upload(d_embeds_, (const float*)ba.d_embeds, BTC);  // += there, as asked
  if (ba.param_grads) backend_grads();
  exec_->backward(b);
  if (ba.param_grads && mirror_) grads_newer_ = Newer::Backend;
  if (ba.d_embeds && mirror_) be_->to_host(ba.d_embeds, b.d_embeds, BTC * sizeof(float));
}

double ModelEngine::adamw_step(float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm,
                               int t) {
  prepare();
  backend_grads();
  backend_moments();
  const double norm = exec_->adamw_step(lr, beta1, beta2, eps, weight_decay, max_norm, t);
  if (mirror_) {
    backend_params_newer_ = true;
    grads_newer_ = Newer::Backend;
    moments_newer_ = Newer::Backend;
  }
  return norm;
}

void ModelEngine::logits(float* out) const {
  be_->to_host(out, exec_->logits(), sizeof(float) * rows_selected() * dims().vocab_size);
}
void ModelEngine::hidden(float* out) const { be_->to_host(out, exec_->hidden(), sizeof(float) * hidden_floats()); }

std::shared_ptr<CacheHandle> ModelEngine::new_cache(int rows, int capacity, std::shared_ptr<CacheHandle> prefix) {
  auto h = std::make_shared<CacheHandle>();
  h->cache = std::make_unique<ExecKVCache>(be_, dims(), rows, capacity, prefix ? prefix->cache.get() : nullptr);
  h->prefix = std::move(prefix);
  return h;
}

void ModelEngine::decode(CacheHandle& c, const int* tokens, const float* embeds, int Tn, float* logits, float* hidden,
                         const std::atomic<bool>* cancel) {
  const int R = c.cache->rows, V = dims().vocab_size, C = dims().channels;
  const long N = (long)R * Tn;
  if ((tokens == nullptr) == (embeds == nullptr)) throw std::invalid_argument("decode: give exactly one of tokens or embeds");
  if (tokens) check_ids(tokens, N, V, "decode: token id out of range");
  prepare();
  const int* tk = tokens ? upload(ids_, tokens, N) : nullptr;
  const float* em = embeds ? upload(embeds_, embeds, (size_t)N * C) : nullptr;
  float* lo = logits;  // written in place on a host-memory backend
  if (logits && mirror_) {
    dec_logits_.ensure(be_, (size_t)R * V);
    lo = dec_logits_.data();
  }
  exec_->decode(*c.cache, tk, em, Tn, lo, cancel);
  if (logits && mirror_) be_->to_host(logits, lo, sizeof(float) * R * V);
  if (hidden) be_->to_host(hidden, exec_->decode_hidden(), sizeof(float) * R * C);
}

// ---- the method ----

ExecMatcher& ModelEngine::matcher_for(const std::shared_ptr<MatchTarget>& t) {
  if (t != target_host_) {
    matcher_.reset();
    target_ = std::make_unique<ExecTarget>(be_, *t);
    matcher_ = std::make_unique<ExecMatcher>(*exec_, *target_);
    target_host_ = t;
  }
  return *matcher_;
}

std::shared_ptr<MatchTarget> ModelEngine::build_target(const int* tokens, int n, int T, const int* last_pos,
                                                       const int* labels, const TargetOptions& opts,
                                                       const std::atomic<bool>* cancel) {
  prepare();
  return std::make_shared<MatchTarget>(gradmm::build_target(*exec_, tokens, n, T, last_pos, labels, opts, cancel));
}

double ModelEngine::match_loss(const std::shared_ptr<MatchTarget>& t, const float* X, int B, int L, int label,
                               float* dX, float* per_sample, const std::atomic<bool>* cancel) {
  prepare();
  const size_t n = (size_t)B * L * dims().channels;
  float* dev_dx = dX;  // written in place on a host-memory backend
  if (dX && mirror_) {
    dX_.ensure(be_, n);
    dev_dx = dX_.data();
  }
  const double f = matcher_for(t).match_loss(upload(X_, X, n), B, L, label, dev_dx, per_sample, cancel);
  if (dX && mirror_) be_->to_host(dX, dev_dx, n * sizeof(float));
  return f;
}

void ModelEngine::project(const float* U, int B, int L, int free_len, const uint8_t* allowed, int topk,
                          const CacheHandle& prefix, const float* prefix_logits, int* out_tokens,
                          const std::atomic<bool>* cancel) {
  prepare();
  const float* wte = host_embeddings();
  const float* u = upload(U_, U, (size_t)B * L * dims().channels);
  chosen_.ensure(be_, (size_t)std::max(free_len, 1) * B);
  gradmm::project(*exec_, wte, u, B, L, free_len, allowed, topk, *prefix.cache, prefix_logits, chosen_.data(),
                  out_tokens, cancel);
}

std::shared_ptr<BatchState> ModelEngine::new_batch(const std::shared_ptr<MatchTarget>& t, int B, int L, int free_len,
                                                   int label, std::vector<int> template_ids, std::vector<int> lead_ids) {
  if (t->V != dims().vocab_size || t->C != dims().channels)
    throw std::invalid_argument("the MatchTarget belongs to another model");
  return std::make_shared<BatchState>(*exec_, B, L, free_len, label, std::move(template_ids), std::move(lead_ids));
}

double ModelEngine::batch_init(BatchState& b, const std::shared_ptr<MatchTarget>& t, int candidates, uint64_t seed,
                               float token_norm, const std::atomic<bool>* cancel) {
  prepare();
  const float* wte = host_embeddings();
  return b.init(matcher_for(t), wte, candidates, seed, token_norm, cancel);
}

double ModelEngine::batch_x_update(BatchState& b, const std::shared_ptr<MatchTarget>& t, const XUpdateArgs& a,
                                   float* losses, const std::atomic<bool>* cancel) {
  prepare();
  return b.x_update(matcher_for(t), a, losses, cancel);
}

void ModelEngine::batch_project(BatchState& b, bool from_best, double rho, const uint8_t* allowed, int topk,
                                const CacheHandle& prefix, const float* prefix_logits, int* out_tokens,
                                const std::atomic<bool>* cancel) {
  prepare();
  const float* wte = host_embeddings();
  b.project(*exec_, wte, from_best, rho, allowed, topk, *prefix.cache, prefix_logits, out_tokens, cancel);
}

double ModelEngine::batch_z_loss(BatchState& b, const std::shared_ptr<MatchTarget>& t, float* per_sample,
                                 const std::atomic<bool>* cancel) {
  prepare();
  return b.z_loss(matcher_for(t), per_sample, cancel);
}

}  // namespace gradmm
