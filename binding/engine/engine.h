// A model as the addon serves it, with no N-API in it: the one engine (model.h) on the chosen backend, the host's
// copy of its parameters, gradients and Adam moments (a mirror kept only when the backend's memory is not host
// memory, i.e. a GPU), which copy is newer, and every call in host memory (forward, backward, AdamW, decode, the
// target, the matcher, the projection, the batch state). On the CPU backend the host views are the engine's own
// memory and nothing is ever copied.
#pragma once
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "batch.h"
#include "matcher.h"
#include "model.h"

namespace gradmm {

// Which backend the engine uses and why (backend_choice.cpp): CUDA when compiled in and a device answers, the CPU
// otherwise; GRADMM_BACKEND=cpu|cuda|cpu-table|auto forces one. Decided once per process.
struct BackendChoice {
  bool compiled = false, cublas = false;  // this build has CUDA (and cuBLAS)
  std::string chosen = "cpu", reason, archs, note;
  int cuda_runtime = 0;
  struct Device {
    std::string name;
    double memory;
    int major, minor;
  };
  std::vector<Device> devices;
  const Backend* backend = nullptr;
};
const BackendChoice& backend_choice();

// A KV cache of a model: the engine's cache on the model's backend and the prefix it continues (kept alive).
struct CacheHandle {
  std::shared_ptr<CacheHandle> prefix;
  std::unique_ptr<ExecKVCache> cache;
};

class ModelEngine {
 public:
  // architecture "gpt2" (GPT2Config), "llama" (LlamaConfig), "phi" (PhiConfig) or "gemma3" (Gemma3Config): the model
  // on backend_choice().backend, zeros.
  explicit ModelEngine(std::unique_ptr<CausalExec> exec);
  static std::unique_ptr<CausalExec> make(const Backend* be, const GPT2Config& cfg);
  static std::unique_ptr<CausalExec> make(const Backend* be, const LlamaConfig& cfg);
  static std::unique_ptr<CausalExec> make(const Backend* be, const PhiConfig& cfg);
  static std::unique_ptr<CausalExec> make(const Backend* be, const Gemma3Config& cfg);

  std::mutex mutex;  // one operation at a time touches the model's activations (callers lock)
  const ModelLayout& layout() const { return exec_->layout(); }
  const ModelDims& dims() const { return exec_->dims(); }
  size_t num_params() const { return exec_->num_params(); }
  const Backend* backend() const { return be_; }
  CausalExec& exec() { return *exec_; }  // the engine itself (tests, benchmarks)

  // ---- the host's views (stable pointers for the model's lifetime), each brought up to date when asked ----
  float* host_params();  // the parameters as the host sees them (not pulled: call sync_host() to pull)
  float* host_grads();   // pulled; afterwards written by the host counts as newer
  void host_adam(float** m, float** v);  // pulled; the host may write them (a restored checkpoint)
  void sync_host();      // copies to the host whatever the backend has newer
  void params_changed(); // the host wrote parameters (gradients, moments) through the views
  void zero_grads();

  // ---- the model ----
  float forward(const ForwardArgs& fa, const std::atomic<bool>* cancel);
  void backward(const BackwardArgs& ba, const std::atomic<bool>* cancel);
  double adamw_step(float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm, int t);
  size_t rows_selected() const { return exec_->rows(); }
  size_t hidden_floats() const { return (size_t)exec_->forward_B() * exec_->forward_T() * dims().channels; }
  void logits(float* out) const;  // [rows_selected, V]
  void hidden(float* out) const;  // [B, T, C] of the last forward
  std::vector<int> selected_rows() const { return exec_->selected_rows(); }
  std::shared_ptr<CacheHandle> new_cache(int rows, int capacity, std::shared_ptr<CacheHandle> prefix);
  void decode(CacheHandle& c, const int* tokens, const float* embeds, int Tn, float* logits, float* hidden,
              const std::atomic<bool>* cancel);

  // ---- the method ----
  std::shared_ptr<MatchTarget> build_target(const int* tokens, int n, int T, const int* last_pos, const int* labels,
                                            const TargetOptions& opts, const std::atomic<bool>* cancel);
  double match_loss(const std::shared_ptr<MatchTarget>& t, const float* X, int B, int L, int label, float* dX,
                    float* per_sample, const std::atomic<bool>* cancel);
  void project(const float* U, int B, int L, int free_len, const uint8_t* allowed, int topk, const CacheHandle& prefix,
               const float* prefix_logits, int* out_tokens, const std::atomic<bool>* cancel);
  // A batch's state on the backend, for target t (kept alive by the engine while the batch lives).
  std::shared_ptr<BatchState> new_batch(const std::shared_ptr<MatchTarget>& t, int B, int L, int free_len, int label,
                                        std::vector<int> template_ids, std::vector<int> lead_ids = {});
  double batch_init(BatchState& b, const std::shared_ptr<MatchTarget>& t, int candidates, uint64_t seed,
                    float token_norm, const std::atomic<bool>* cancel);
  double batch_x_update(BatchState& b, const std::shared_ptr<MatchTarget>& t, const XUpdateArgs& a, float* losses,
                        const std::atomic<bool>* cancel);
  void batch_project(BatchState& b, bool from_best, double rho, const uint8_t* allowed, int topk,
                     const CacheHandle& prefix, const float* prefix_logits, int* out_tokens,
                     const std::atomic<bool>* cancel);
  double batch_z_loss(BatchState& b, const std::shared_ptr<MatchTarget>& t, float* per_sample,
                      const std::atomic<bool>* cancel);

 private:
  enum class Newer { Same, Host, Backend };
  void prepare();                   // the backend's parameters brought up to date before it runs
  float* backend_grads();           // the backend's gradients, brought up to date
  void backend_moments();           // the backend's Adam moments, brought up to date
  const float* host_embeddings();   // the input embeddings on the host, current
  ExecMatcher& matcher_for(const std::shared_ptr<MatchTarget>& t);
  // host memory as backend memory: the pointer itself on a host-memory backend, else a copy in buf
  template <typename T>
  T* upload(BackendBuffer<T>& buf, const T* host, size_t n);

  const Backend* be_;
  bool mirror_;  // the backend's memory is not host memory: the host views are a mirror
  std::unique_ptr<CausalExec> exec_;
  std::vector<float> host_params_, host_grads_, host_m_, host_v_;  // the mirror (empty without one)
  uint64_t params_version_ = 1, backend_version_ = 1;
  bool backend_params_newer_ = false;
  Newer grads_newer_ = Newer::Same, moments_newer_ = Newer::Same;
  std::shared_ptr<MatchTarget> target_host_;  // the target the matcher was built for (kept alive)
  std::unique_ptr<ExecTarget> target_;
  std::unique_ptr<ExecMatcher> matcher_;
  BackendBuffer<float> X_, dX_, U_, embeds_, d_logits_, d_hidden_, d_embeds_, dec_logits_;
  BackendBuffer<int> ids_, targets_, rows_, chosen_;
};

}  // namespace gradmm
