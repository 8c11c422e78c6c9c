// N-API surface of the engine. ts/native.ts holds the TypeScript type of everything exported here.
// Heavy calls run on libuv's worker pool (Napi::AsyncWorker) and return Promises; a CancelToken shared with the
// worker stops them between layers. Parameter and gradient memory is exposed as Float32Array views over native
// memory (no copies); each view keeps the model's memory alive, so a view outliving dispose() stays valid.
#include <napi.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>

#include "admm.h"
#include "gemm.h"
#include "gradmatch.h"
#include "gguf_quants.h"
#include "gpt2.h"
#include "llama.h"
#include "threadpool.h"
#ifdef GRADMM_HAVE_CUDA
#include "cuda_ops.h"    // binding/cuda: the CUDA backend, linked when CMake found nvcc
#include "model_exec.h"  // GPT-2, the Llama family and the x-update written against the backend table
#else
namespace gradmm {
struct Backend;  // without CUDA there are no backend tables: exec_backend() is always nullptr
}
#endif
#include <cctype>
#include <cstring>
#include <stdexcept>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

using namespace gradmm;

namespace {

// ---------------------------------------------------------------------------------------------------------------
// Argument helpers: every typed array is checked for type and exact length before native code touches it.
template <typename TA>
constexpr napi_typedarray_type typed_array_kind();
template <>
constexpr napi_typedarray_type typed_array_kind<Napi::Int32Array>() { return napi_int32_array; }
template <>
constexpr napi_typedarray_type typed_array_kind<Napi::Float32Array>() { return napi_float32_array; }
template <>
constexpr napi_typedarray_type typed_array_kind<Napi::Uint8Array>() { return napi_uint8_array; }

template <typename TA>
TA typed_field(const Napi::Object& o, const char* name, size_t expected, bool required) {
  Napi::Env env = o.Env();
  Napi::Value v = o.Get(name);
  if (v.IsUndefined() || v.IsNull()) {
    if (required) throw Napi::TypeError::New(env, std::string("missing field '") + name + "'");
    return TA();
  }
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != typed_array_kind<TA>())
    throw Napi::TypeError::New(env, std::string("field '") + name + "' has the wrong typed-array type");
  TA a = v.As<TA>();
  if (expected != (size_t)-1 && a.ElementLength() != expected)
    throw Napi::RangeError::New(env, std::string("field '") + name + "' has length " + std::to_string(a.ElementLength()) +
                                         ", expected " + std::to_string(expected));
  return a;
}

int int_field(const Napi::Object& o, const char* name, int min_value) {
  Napi::Value v = o.Get(name);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("field '") + name + "' must be a number");
  int x = v.As<Napi::Number>().Int32Value();
  if (x < min_value) throw Napi::RangeError::New(o.Env(), std::string("field '") + name + "' is out of range");
  return x;
}

bool bool_field(const Napi::Object& o, const char* name, bool dflt) {
  Napi::Value v = o.Get(name);
  return v.IsBoolean() ? v.As<Napi::Boolean>().Value() : dflt;
}

// ---------------------------------------------------------------------------------------------------------------
class CancelToken : public Napi::ObjectWrap<CancelToken> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "CancelToken",
                       {InstanceMethod("cancel", &CancelToken::Cancel), InstanceAccessor("cancelled", &CancelToken::Get, nullptr)});
  }
  explicit CancelToken(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CancelToken>(info), flag(std::make_shared<std::atomic<bool>>(false)) {}
  std::shared_ptr<std::atomic<bool>> flag;

 private:
  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    flag->store(true);
    return info.Env().Undefined();
  }
  Napi::Value Get(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), flag->load()); }
};
Napi::FunctionReference* g_cancel_ctor = nullptr;

std::shared_ptr<std::atomic<bool>> cancel_flag(const Napi::Value& v) {
  if (v.IsObject() && v.As<Napi::Object>().InstanceOf(g_cancel_ctor->Value()))
    return CancelToken::Unwrap(v.As<Napi::Object>())->flag;
  return nullptr;
}

// Runs `work` on a libuv worker thread and settles a Promise with `result` (on the JS thread).
// `keep` holds JS objects (typed arrays) alive while native code reads or writes them.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> result,
                std::vector<Napi::Value> keep)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)), result_(std::move(result)) {
    for (auto& v : keep)
      if (v.IsObject()) keep_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      work_();
    } catch (const Cancelled&) {
      SetError("ABORTED");
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(result_ ? result_(Env()) : Env().Undefined()); }
  void OnError(const Napi::Error& e) override {
    Napi::Error err = Napi::Error::New(Env(), e.Message());
    if (e.Message() == "ABORTED") err.Set("code", Napi::String::New(Env(), "ABORTED"));
    deferred_.Reject(err.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
  std::function<Napi::Value(Napi::Env)> result_;
  std::vector<Napi::ObjectReference> keep_;
};

Napi::Promise run_async(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> result,
                        std::vector<Napi::Value> keep) {
  auto* w = new PromiseWorker(env, std::move(work), std::move(result), std::move(keep));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

const Backend* exec_backend();  // the table matchLoss/xUpdate run on, or nullptr for the CPU engine (below)

#ifdef GRADMM_HAVE_CUDA
// A model's copy on a backend table (CUDA, or the CPU table under GRADMM_BACKEND=cpu-table), used by buildTarget,
// initCandidates, matchLoss, xUpdate and project: weights uploaded once (again only when params_version moves), the
// current target's factors uploaded once per target, X/z/λ/Adam state copied in and out once per call. Every family
// with an executor (model_exec.h: GPT-2 and the Llama family).
struct DeviceExec {
  DeviceExec(const Backend* b, std::unique_ptr<CausalExec> m) : be(b), model_ptr(std::move(m)), model(*model_ptr) {}
  const Backend* be;
  std::unique_ptr<CausalExec> model_ptr;
  CausalExec& model;
  uint64_t params_version = 0;
  std::shared_ptr<MatchTarget> target_host;  // the target the matcher was built for (kept alive)
  std::unique_ptr<ExecTarget> target;
  std::unique_ptr<ExecMatcher> matcher;
  BackendBuffer<float> X, z, lam, m, v, dX;
  // forward / backward / decode / adamwStep called directly: inputs and results passing through, and the AdamW
  // moments of the parameters (allocated at the first device step)
  BackendBuffer<float> embeds, d_logits, d_hidden, d_embeds, dec_logits, opt_m, opt_v;
  BackendBuffer<int> targets;

  ExecMatcher& matcher_for(const std::shared_ptr<MatchTarget>& t) {
    if (t != target_host) {
      matcher.reset();
      target = std::make_unique<ExecTarget>(be, *t);
      matcher = std::make_unique<ExecMatcher>(model, *target);
      target_host = t;
    }
    return *matcher;
  }
  BackendBuffer<int> ids, labels, rows;

  // build_target's factors on the backend: the same forwards as the CPU engine's (the rows in target_chunks' ranges,
  // right-padded to T, logits at each row's last position only), so the CPU table gives the same bits (the CPU GEMM's
  // rounding depends on how many rows a product has).
  MatchTarget target_factors(const int* tokens, int n, int T, const int* last_pos, const int* label_ids, int chunk_tokens,
                             const std::atomic<bool>* cancel) {
    const int V = model.dims().vocab_size, C = model.dims().channels;
    MatchTarget t;
    t.n = n, t.V = V, t.C = C;
    t.A.resize((size_t)n * V);
    t.H.resize((size_t)n * C);
    std::vector<int> rows_host;
    for (const auto& [i0, i1] : target_chunks(n, T, chunk_tokens)) {
      check_cancel(cancel);
      const int rn = i1 - i0;
      rows_host.resize(rn);
      for (int i = i0; i < i1; ++i) rows_host[i - i0] = (i - i0) * T + last_pos[i];
      CausalExec::Forward f;
      f.tokens = upload(ids, tokens + (size_t)i0 * T, (size_t)rn * T);
      f.B = rn;
      f.T = T;
      f.rows = upload(rows, rows_host.data(), rn);
      f.n_rows = rn;
      f.targets = upload(labels, label_ids + i0, rn);
      model.forward(f);
      be->to_host(t.A.data() + (size_t)i0 * V, model.probs(), sizeof(float) * rn * V);
      be->to_host(t.H.data() + (size_t)i0 * C, model.hidden_rows(), sizeof(float) * rn * C);
    }
    for (int i = 0; i < n; ++i) t.A[(size_t)i * V + label_ids[i]] -= 1.f;  // a = p − e_y, as gradmatch.cpp's take_factors
    return t;
  }

  // buf (grown to n elements) with n elements of host memory copied in, if host is given (T comes from buf alone,
  // so host may be nullptr)
  template <typename T>
  T* upload(BackendBuffer<T>& buf, const std::common_type_t<T>* host, size_t n) {
    buf.ensure(be, n);
    if (host) be->to_device(buf.data(), host, n * sizeof(T));
    return buf.data();
  }
};
#else
struct DeviceExec {};
#endif

// Which copy of a piece of state is newer, once the model has a device copy.
enum class Newer { Same, Host, Device };

// The native model plus a lock: one operation at a time touches its activations. params_version counts changes
// to the parameters made through the engine or announced by paramsChanged(), so a device copy knows it is stale.
//
// On the device path every call runs on the device copy (DeviceExec), and training changes it there: after a device
// AdamW step the device's parameters are newer, and gradients and Adam moments may be newer on either side. The
// host copies are brought up to date only when they are read (pull_host: the params/grads/adamMoments views, the
// CPU engine), the device's only when it runs (device_grads / device_moments, params_version).
struct ModelState {
  explicit ModelState(std::unique_ptr<CausalLM> m) : model_ptr(std::move(m)), model(*model_ptr) {}
  std::unique_ptr<CausalLM> model_ptr;
  CausalLM& model;
  std::mutex mutex;
  uint64_t params_version = 1;
  std::unique_ptr<DeviceExec> device;
  bool device_params_newer = false;
  Newer grads_newer = Newer::Same, moments_newer = Newer::Same;
  bool host_grads = false, host_moments = false;  // the host's buffers exist (handed out, or written by the CPU engine)
  bool forward_on_device = false;  // the last forward (forward(), or a method call's) ran on the device copy

  // The model on the exec backend, or nullptr to run on the CPU engine (no such backend, or a family without an
  // executor).
  DeviceExec* device_exec() {
#ifdef GRADMM_HAVE_CUDA
    const Backend* be = exec_backend();
    if (!be) return nullptr;
    if (!device) {
      std::unique_ptr<CausalExec> exec = make_exec(be, model);
      if (!exec) return nullptr;
      device = std::make_unique<DeviceExec>(be, std::move(exec));
      grads_newer = host_grads ? Newer::Host : Newer::Same;
      moments_newer = host_moments ? Newer::Host : Newer::Same;
    } else if (device->params_version != params_version) {
      be->to_device(device->model.params(), model.params(), model.num_params() * sizeof(float));
      device_params_newer = false;
    }
    device->params_version = params_version;
    return device.get();
#else
    return nullptr;
#endif
  }

  // Copies to the host whatever the device copy has newer (parameters, gradients, Adam moments).
  void pull_host() {
#ifdef GRADMM_HAVE_CUDA
    if (!device) return;
    const Backend* be = device->be;
    CausalExec& ex = device->model;
    const size_t bytes = model.num_params() * sizeof(float);
    if (device_params_newer) be->to_host(model.params(), ex.params(), bytes);
    device_params_newer = false;
    if (grads_newer == Newer::Device) {
      be->to_host(model.grads(), ex.grads(), bytes);
      host_grads = true;
      grads_newer = Newer::Same;
    }
    if (moments_newer == Newer::Device) {
      model.ensure_adam_state();
      be->to_host(model.adam_m(), device->opt_m.data(), bytes);
      be->to_host(model.adam_v(), device->opt_v.data(), bytes);
      host_moments = true;
      moments_newer = Newer::Same;
    }
#endif
  }

#ifdef GRADMM_HAVE_CUDA
  // The device's gradient buffer, brought up to date first (device exists).
  float* device_grads() {
    float* g = device->model.grads();
    if (grads_newer == Newer::Host) {
      device->be->to_device(g, model.grads(), model.num_params() * sizeof(float));
      grads_newer = Newer::Same;
    }
    return g;
  }
  // The device's AdamW moments (allocated, zero, at the first use), brought up to date first (device exists).
  void device_moments() {
    const size_t n = model.num_params();
    DeviceExec& d = *device;
    if (d.opt_m.size() != n) {
      d.opt_m.reset(d.be, n);
      d.opt_v.reset(d.be, n);
      d.opt_m.zero();
      d.opt_v.zero();
    }
    if (moments_newer == Newer::Host) {
      d.be->to_device(d.opt_m.data(), model.adam_m(), n * sizeof(float));
      d.be->to_device(d.opt_v.data(), model.adam_v(), n * sizeof(float));
      moments_newer = Newer::Same;
    }
  }
#endif

  // The last forward's selected-row count and hidden-state size, wherever it ran.
  size_t rows_selected() const {
#ifdef GRADMM_HAVE_CUDA
    if (forward_on_device) return device->model.rows();
#endif
    return model.selected_rows().size();
  }
  size_t hidden_floats() const {
#ifdef GRADMM_HAVE_CUDA
    if (forward_on_device)
      return (size_t)device->model.forward_B() * device->model.forward_T() * device->model.dims().channels;
#endif
    return model.hidden_size();
  }
};

// A KV cache as the addon keeps it: the host cache (the CPU engine's, and what a prefix is uploaded from) and, on
// the device path, its copy on the backend. Each copy is brought up to date only when the other side needs it.
// version counts changes (decodes, resets), so a cache continuing this one as its prefix knows when to re-upload it.
struct CacheState {
  CacheState(const ModelDims& dims, int rows, int capacity, std::shared_ptr<CacheState> prefix_state)
      : host(dims, rows, capacity, prefix_state ? &prefix_state->host : nullptr), prefix(std::move(prefix_state)) {}
  KVCache host;
  std::shared_ptr<CacheState> prefix;
  uint64_t version = 0;
#ifdef GRADMM_HAVE_CUDA
  std::unique_ptr<ExecKVCache> dev;
  uint64_t dev_prefix_version = 0;
  bool host_newer = false, dev_newer = false;

  // The host copy, brought up to date (this cache's positions; a prefix is synced by whoever reads it).
  void sync_host() {
    if (!dev_newer) return;
    const Backend* be = dev_backend;
    be->to_host(host.k.data(), dev->k.data(), host.k.size() * sizeof(float));
    be->to_host(host.v.data(), dev->v.data(), host.v.size() * sizeof(float));
    dev_newer = false;
  }
  // The device copy on `be`, brought up to date (the prefix's host copy is synced and uploaded when it changed).
  ExecKVCache& device_copy(const Backend* be, const ModelDims& dims) {
    if (prefix) prefix->sync_host();
    const uint64_t pv = prefix ? prefix->version : 0;
    if (!dev || dev_backend != be || dev_prefix_version != pv) {
      sync_host();
      dev = std::make_unique<ExecKVCache>(be, dims, host.rows, host.capacity, prefix ? &prefix->host : nullptr);
      dev_backend = be;
      dev_prefix_version = pv;
      host_newer = host.length > 0;
    }
    if (host_newer) {
      be->to_device(dev->k.data(), host.k.data(), host.k.size() * sizeof(float));
      be->to_device(dev->v.data(), host.v.data(), host.v.size() * sizeof(float));
      host_newer = false;
    }
    dev->length = host.length;
    return *dev;
  }
  const Backend* dev_backend = nullptr;
#else
  void sync_host() {}
#endif
  // After the CPU engine wrote the host copy.
  void host_written() {
#ifdef GRADMM_HAVE_CUDA
    if (dev) host_newer = true;
#endif
    ++version;
  }
  void reset() {
    host.length = 0;
#ifdef GRADMM_HAVE_CUDA
    if (dev) dev->length = 0;
    host_newer = dev_newer = false;
#endif
    ++version;
  }
};

// A Float32Array over native memory that keeps `owner` alive until the array is garbage collected.
Napi::Float32Array view(Napi::Env env, const std::shared_ptr<ModelState>& owner, float* data, size_t n) {
  auto* hold = new std::shared_ptr<ModelState>(owner);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, data, n * sizeof(float),
                                                [](Napi::Env, void*, std::shared_ptr<ModelState>* h) { delete h; }, hold);
  return Napi::Float32Array::New(env, n, ab, 0);
}

Napi::Float32Array copy_out(Napi::Env env, const float* data, size_t n) {
  Napi::Float32Array a = Napi::Float32Array::New(env, n);
  std::memcpy(a.Data(), data, n * sizeof(float));
  return a;
}

#ifdef GRADMM_HAVE_CUDA
Napi::Float32Array copy_from_device(Napi::Env env, const Backend* be, const float* data, size_t n) {
  Napi::Float32Array a = Napi::Float32Array::New(env, n);
  be->to_host(a.Data(), data, n * sizeof(float));
  return a;
}

// forward() on the device copy with the CPU engine's row selection, checks and loss (lm_head.cpp: logits at the rows
// with loss_mask != 0, or all; loss Σ mask·ce / Σ mask). Returns false, doing nothing, when no row is selected (the
// CPU engine runs that call).
bool device_forward(ModelState& s, DeviceExec& d, const CausalLM::ForwardArgs& fa, float* loss,
                    const std::atomic<bool>* cancel) {
  const int V = s.model.dims().vocab_size, C = s.model.dims().channels;
  const long BT = (long)fa.B * fa.T;
  if ((fa.tokens == nullptr) == (fa.embeds == nullptr))
    throw std::invalid_argument("forward: give exactly one of tokens or embeds");
  if (fa.tokens) check_ids(fa.tokens, BT, V, "forward: token id out of range");
  std::vector<int> rows, targets;  // the targets of rows of weight 0 are not read
  std::vector<float> weights;
  select_loss_rows(fa, BT, V, rows, targets, weights);
  const int R = (int)rows.size();
  if (R == 0) return false;
  CausalExec::Forward f;
  f.B = fa.B;
  f.T = fa.T;
  f.last_only = false;  // every position, or the listed ones
  f.cancel = cancel;
  if (fa.tokens) f.tokens = d.upload(d.ids, fa.tokens, BT);
  else f.embeds = d.upload(d.embeds, fa.embeds, (size_t)BT * C);
  if (R < BT) {
    f.rows = d.upload(d.rows, rows.data(), R);
    f.n_rows = R;
  }
  if (fa.targets) {
    f.targets = d.upload(d.targets, targets.data(), R);
    if (fa.loss_mask) f.row_weights = weights.data();
  }
  d.model.forward(f);
  s.forward_on_device = true;
  *loss = fa.targets ? (float)d.model.mean_loss() : NAN;
  return true;
}

// backward() from a forward that ran on the device copy (host arrays in and out; parameter gradients stay there).
void device_backward(ModelState& s, const CausalLM::BackwardArgs& ba, const std::atomic<bool>* cancel) {
  DeviceExec& d = *s.device;
  const size_t BTC = s.hidden_floats(), RV = (size_t)d.model.rows() * s.model.dims().vocab_size;
  CausalExec::Backward b;
  b.from_loss = ba.from_loss;
  b.param_grads = ba.param_grads;
  b.cancel = cancel;
  if (ba.d_logits) b.d_logits = d.upload(d.d_logits, ba.d_logits, RV);
  if (ba.d_hidden) b.d_hidden = d.upload(d.d_hidden, ba.d_hidden, BTC);
  if (ba.d_embeds) b.d_embeds = d.upload(d.d_embeds, ba.d_embeds, BTC);  // += on the device, as on the host
  if (ba.param_grads) s.device_grads();
  d.model.backward(b);
  if (ba.param_grads) s.grads_newer = Newer::Device;
  if (ba.d_embeds) d.be->to_host(ba.d_embeds, b.d_embeds, BTC * sizeof(float));
}

// adamwStep() on the device copy: the CPU engine's clip_and_adamw through the table (its global norm, clipping
// written back into the gradients, then AdamW: the same bits on the CPU table).
double device_adamw(ModelState& s, float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm,
                    int t) {
  DeviceExec& d = *s.device;
  const Backend* be = d.be;
  const long n = (long)s.model.num_params();
  float* g = s.device_grads();
  s.device_moments();
  const double norm = be->grad_norm(g, n);
  const float grad_scale = max_norm > 0 && norm > max_norm ? (float)(max_norm / (norm + 1e-6)) : 1.f;
  if (grad_scale != 1.f) {
    be->scale(g, n, grad_scale);
    s.grads_newer = Newer::Device;
  }
  be->adamw_update(d.model.params(), g, d.opt_m.data(), d.opt_v.data(), n, lr, beta1, beta2, eps, weight_decay, t);
  s.device_params_newer = true;
  s.moments_newer = Newer::Device;
  return norm;
}

// decode() on the device copy of the cache; the host copy of its keys and values follows only when read.
void device_decode(ModelState& s, DeviceExec& d, CacheState& c, const int* tokens, const float* embeds, int Tn,
                   float* logits, float* hidden, const std::atomic<bool>* cancel) {
  const int R = c.host.rows, V = s.model.dims().vocab_size, C = s.model.dims().channels;
  const long N = (long)R * Tn;
  const Backend* be = d.be;
  if ((tokens == nullptr) == (embeds == nullptr)) throw std::invalid_argument("decode: give exactly one of tokens or embeds");
  if (tokens) check_ids(tokens, N, V, "decode: token id out of range");
  check_cancel(cancel);  // a decoding step is short: checked once, before it starts
  ExecKVCache& dc = c.device_copy(be, s.model.dims());
  const int* tk = tokens ? d.upload(d.ids, tokens, N) : nullptr;
  const float* em = embeds ? d.upload(d.embeds, embeds, (size_t)N * C) : nullptr;
  float* lo = logits ? d.upload(d.dec_logits, nullptr, (size_t)R * V) : nullptr;
  d.model.decode(dc, tk, em, Tn, lo);
  c.host.length = dc.length;
  c.dev_newer = true;
  ++c.version;
  if (logits) be->to_host(logits, lo, sizeof(float) * R * V);
  if (hidden) be->to_host(hidden, d.model.decode_hidden(), sizeof(float) * R * C);
}
#endif

// ---------------------------------------------------------------------------------------------------------------
class KVCacheWrap;

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Model",
                       {InstanceMethod("paramTable", &ModelWrap::ParamTable), InstanceMethod("params", &ModelWrap::Params),
                        InstanceMethod("grads", &ModelWrap::Grads), InstanceMethod("zeroGrads", &ModelWrap::ZeroGrads),
                        InstanceMethod("adamMoments", &ModelWrap::AdamMoments),
                        InstanceMethod("forward", &ModelWrap::Forward), InstanceMethod("backward", &ModelWrap::Backward),
                        InstanceMethod("logits", &ModelWrap::Logits), InstanceMethod("selectedRows", &ModelWrap::SelectedRows),
                        InstanceMethod("hidden", &ModelWrap::Hidden), InstanceMethod("adamwStep", &ModelWrap::AdamwStep),
                        InstanceMethod("decode", &ModelWrap::Decode), InstanceMethod("release", &ModelWrap::Release),
                        InstanceMethod("buildTarget", &ModelWrap::BuildTarget), InstanceMethod("matchLoss", &ModelWrap::MatchLoss),
                        InstanceMethod("xUpdate", &ModelWrap::XUpdate), InstanceMethod("project", &ModelWrap::Project),
                        InstanceMethod("initCandidates", &ModelWrap::InitCandidates),
                        InstanceMethod("paramsChanged", &ModelWrap::ParamsChanged),
                        InstanceMethod("syncHost", &ModelWrap::SyncHost)});
  }

  explicit ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "Model(config) needs a config object");
    Napi::Object c = info[0].As<Napi::Object>();
    Napi::Value arch = c.Get("architecture");
    const std::string architecture = arch.IsString() ? arch.As<Napi::String>().Utf8Value() : "gpt2";
    std::unique_ptr<CausalLM> model;
    try {
      if (architecture == "gpt2") model = std::make_unique<GPT2>(gpt2_config(c));
      else if (architecture == "llama") model = std::make_unique<Llama>(llama_config(c));
      else throw Napi::Error::New(env, "unsupported architecture '" + architecture + "'");
    } catch (const Napi::Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
    state_ = std::make_shared<ModelState>(std::move(model));
  }

  static GPT2Config gpt2_config(const Napi::Object& c) {
    GPT2Config cfg;
    cfg.vocab_size = int_field(c, "vocabSize", 1);
    cfg.max_seq_len = int_field(c, "maxSeqLen", 1);
    cfg.channels = int_field(c, "channels", 1);
    cfg.num_layers = int_field(c, "numLayers", 1);
    cfg.num_heads = int_field(c, "numHeads", 1);
    if (c.Get("layerNormEps").IsNumber()) cfg.layer_norm_eps = c.Get("layerNormEps").As<Napi::Number>().FloatValue();
    return cfg;
  }

  // {vocabSize, maxSeqLen, channels (hidden_size), intermediateSize, numLayers, numHeads, numKvHeads?, headDim?,
  //  rmsNormEps?, ropeTheta?, ropeScaling?: {type: "llama3", factor, lowFreqFactor, highFreqFactor,
  //  originalMaxPositionEmbeddings}, tieWordEmbeddings?, attentionBias? (q,k,v), oProjBias?, mlpBias?}
  static LlamaConfig llama_config(const Napi::Object& c) {
    Napi::Env env = c.Env();
    LlamaConfig cfg;
    cfg.vocab_size = int_field(c, "vocabSize", 1);
    cfg.max_seq_len = int_field(c, "maxSeqLen", 1);
    cfg.hidden_size = int_field(c, "channels", 1);
    cfg.intermediate_size = int_field(c, "intermediateSize", 1);
    cfg.num_layers = int_field(c, "numLayers", 1);
    cfg.num_heads = int_field(c, "numHeads", 1);
    cfg.num_kv_heads = c.Get("numKvHeads").IsUndefined() ? cfg.num_heads : int_field(c, "numKvHeads", 1);
    cfg.head_dim = c.Get("headDim").IsUndefined() ? 0 : int_field(c, "headDim", 1);
    if (c.Get("rmsNormEps").IsNumber()) cfg.rms_norm_eps = c.Get("rmsNormEps").As<Napi::Number>().FloatValue();
    if (c.Get("ropeTheta").IsNumber()) cfg.rope_theta = c.Get("ropeTheta").As<Napi::Number>().DoubleValue();
    Napi::Value rs = c.Get("ropeScaling");
    if (rs.IsObject()) {
      Napi::Object o = rs.As<Napi::Object>();
      const std::string type = o.Get("type").IsString() ? o.Get("type").As<Napi::String>().Utf8Value() : "";
      if (type == "llama3") {
        auto num = [&](const char* k) {
          if (!o.Get(k).IsNumber()) throw Napi::TypeError::New(env, std::string("ropeScaling.") + k + " must be a number");
          return o.Get(k).As<Napi::Number>().DoubleValue();
        };
        cfg.rope_scaling.llama3 = true;
        cfg.rope_scaling.factor = num("factor");
        cfg.rope_scaling.low_freq_factor = num("lowFreqFactor");
        cfg.rope_scaling.high_freq_factor = num("highFreqFactor");
        cfg.rope_scaling.original_max_position_embeddings = num("originalMaxPositionEmbeddings");
      } else if (type != "none" && type != "default") {
        throw Napi::Error::New(env, "unsupported ropeScaling type '" + type + "'");
      }
    } else if (!rs.IsUndefined() && !rs.IsNull()) {
      throw Napi::TypeError::New(env, "ropeScaling must be an object");
    }
    cfg.tie_word_embeddings = bool_field(c, "tieWordEmbeddings", false);
    cfg.attention_bias = bool_field(c, "attentionBias", false);
    cfg.o_proj_bias = bool_field(c, "oProjBias", false);
    cfg.mlp_bias = bool_field(c, "mlpBias", false);
    return cfg;
  }

  std::shared_ptr<ModelState> state(Napi::Env env) {
    if (!state_) throw Napi::Error::New(env, "the model was used after release()");
    return state_;
  }

 private:
  std::shared_ptr<ModelState> state_;

  Napi::Value Release(const Napi::CallbackInfo& info) {
    state_.reset();
    return info.Env().Undefined();
  }

  Napi::Value ParamTable(const Napi::CallbackInfo& info) {
    auto s = state(info.Env());
    const auto& t = s->model.param_table();
    Napi::Array out = Napi::Array::New(info.Env(), t.size());
    for (size_t i = 0; i < t.size(); ++i) {
      Napi::Object o = Napi::Object::New(info.Env());
      o.Set("name", t[i].name);
      o.Set("offset", (double)t[i].offset);
      Napi::Array shape = Napi::Array::New(info.Env(), t[i].shape.size());
      for (size_t d = 0; d < t[i].shape.size(); ++d) shape.Set(d, (double)t[i].shape[d]);
      o.Set("shape", shape);
      out.Set(i, o);
    }
    return out;
  }

  Napi::Value Params(const Napi::CallbackInfo& info) {
    auto s = state(info.Env());
    return view(info.Env(), s, s->model.params(), s->model.num_params());
  }
  // syncHost(): brings the host parameters (and gradients, Adam moments) up to date with a device copy that trained.
  Napi::Value SyncHost(const Napi::CallbackInfo& info) {
    auto s = state(info.Env());
    std::lock_guard<std::mutex> lk(s->mutex);
    s->pull_host();
    return info.Env().Undefined();
  }
  // A view of the gradients, current when called (on the device path: copied from the device if newer there).
  Napi::Value Grads(const Napi::CallbackInfo& info) {
    auto s = state(info.Env());
    std::lock_guard<std::mutex> lk(s->mutex);
    s->pull_host();
    s->host_grads = true;
    return view(info.Env(), s, s->model.grads(), s->model.num_params());
  }
  // {m, v}: views of the AdamW moments (zeros before the first step), for checkpoints. On the device path they are
  // copied from the device if newer there, and copied back before the next device step (a checkpoint may be
  // restored into them).
  Napi::Value AdamMoments(const Napi::CallbackInfo& info) {
    auto s = state(info.Env());
    std::lock_guard<std::mutex> lk(s->mutex);
    s->pull_host();
    s->model.ensure_adam_state();
    s->host_moments = true;
    if (s->device) s->moments_newer = Newer::Host;
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("m", view(info.Env(), s, s->model.adam_m(), s->model.num_params()));
    o.Set("v", view(info.Env(), s, s->model.adam_v(), s->model.num_params()));
    return o;
  }
  Napi::Value ZeroGrads(const Napi::CallbackInfo& info) {
    auto s = state(info.Env());
    std::lock_guard<std::mutex> lk(s->mutex);
    if (!s->device && !exec_backend()) {  // the CPU engine only
      s->model.grads();
      s->model.zero_grads();
      s->host_grads = true;
      return info.Env().Undefined();
    }
    if (s->host_grads) s->model.zero_grads();
#ifdef GRADMM_HAVE_CUDA
    if (s->device) {
      if (s->device->model.has_grads()) s->device->model.zero_grads();
      s->grads_newer = Newer::Same;
    }
#endif
    return info.Env().Undefined();
  }

  // forward({tokens | embeds, B, T, targets?, lossMask?, allLogits?, keepActivations?}, cancelToken?) -> Promise<loss>
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto s = state(env);
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "forward(args) needs an object");
    Napi::Object a = info[0].As<Napi::Object>();
    const int B = int_field(a, "B", 1), T = int_field(a, "T", 1), C = s->model.dims().channels;
    const size_t BT = (size_t)B * T;
    auto tokens = typed_field<Napi::Int32Array>(a, "tokens", BT, false);
    auto embeds = typed_field<Napi::Float32Array>(a, "embeds", BT * C, false);
    auto targets = typed_field<Napi::Int32Array>(a, "targets", BT, false);
    auto mask = typed_field<Napi::Float32Array>(a, "lossMask", BT, false);
    if (tokens.IsEmpty() == embeds.IsEmpty()) throw Napi::TypeError::New(env, "forward: give exactly one of tokens or embeds");
    CausalLM::ForwardArgs fa;
    fa.tokens = tokens.IsEmpty() ? nullptr : tokens.Data();
    fa.embeds = embeds.IsEmpty() ? nullptr : embeds.Data();
    fa.B = B;
    fa.T = T;
    fa.targets = targets.IsEmpty() ? nullptr : targets.Data();
    fa.loss_mask = mask.IsEmpty() ? nullptr : mask.Data();
    fa.all_logits = bool_field(a, "allLogits", false);
    fa.keep_activations = bool_field(a, "keepActivations", true);
    auto cancel = cancel_flag(info[1]);
    auto loss = std::make_shared<float>(0.f);
    return run_async(
        env,
        [s, fa, cancel, loss] {
          std::lock_guard<std::mutex> lk(s->mutex);
#ifdef GRADMM_HAVE_CUDA
          if (DeviceExec* d = s->device_exec())
            if (device_forward(*s, *d, fa, loss.get(), cancel.get())) return;
#endif
          s->pull_host();
          *loss = s->model.forward(fa, cancel.get());
          s->forward_on_device = false;
        },
        [loss](Napi::Env e) { return Napi::Number::New(e, *loss); }, {a});
  }

  // backward({fromLoss?, dLogits?, dHidden?, paramGrads?, dEmbeds?}, cancelToken?) -> Promise<void>
  Napi::Value Backward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto s = state(env);
    Napi::Object a = info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
    size_t BTC, R;
    {
      std::lock_guard<std::mutex> lk(s->mutex);
      BTC = s->hidden_floats();
      R = s->rows_selected();
    }
    auto d_logits = typed_field<Napi::Float32Array>(a, "dLogits", R * (size_t)s->model.dims().vocab_size, false);
    auto d_hidden = typed_field<Napi::Float32Array>(a, "dHidden", BTC, false);
    auto d_embeds = typed_field<Napi::Float32Array>(a, "dEmbeds", BTC, false);
    CausalLM::BackwardArgs ba;
    ba.from_loss = bool_field(a, "fromLoss", true);
    ba.d_logits = d_logits.IsEmpty() ? nullptr : d_logits.Data();
    ba.d_hidden = d_hidden.IsEmpty() ? nullptr : d_hidden.Data();
    ba.param_grads = bool_field(a, "paramGrads", true);
    ba.d_embeds = d_embeds.IsEmpty() ? nullptr : d_embeds.Data();
    auto cancel = cancel_flag(info[1]);
    return run_async(
        env,
        [s, ba, cancel] {
          std::lock_guard<std::mutex> lk(s->mutex);
#ifdef GRADMM_HAVE_CUDA
          if (s->forward_on_device) {
            device_backward(*s, ba, cancel.get());
            return;
          }
#endif
          s->pull_host();
          s->model.backward(ba, cancel.get());
          if (ba.param_grads) {
            s->host_grads = true;
            if (s->device) s->grads_newer = Newer::Host;
          }
        },
        nullptr, {a});
  }

  Napi::Value Logits(const Napi::CallbackInfo& info) {
    auto s = state(info.Env());
    std::lock_guard<std::mutex> lk(s->mutex);
    const size_t n = s->rows_selected() * (size_t)s->model.dims().vocab_size;
#ifdef GRADMM_HAVE_CUDA
    if (s->forward_on_device) return copy_from_device(info.Env(), s->device->be, s->device->model.logits(), n);
#endif
    return copy_out(info.Env(), s->model.logits(), n);
  }
  Napi::Value SelectedRows(const Napi::CallbackInfo& info) {
    auto s = state(info.Env());
    std::lock_guard<std::mutex> lk(s->mutex);
    std::vector<int> r;
#ifdef GRADMM_HAVE_CUDA
    if (s->forward_on_device) r = s->device->model.selected_rows();
    else
#endif
      r = s->model.selected_rows();
    Napi::Int32Array a = Napi::Int32Array::New(info.Env(), r.size());
    std::memcpy(a.Data(), r.data(), r.size() * sizeof(int));
    return a;
  }
  Napi::Value Hidden(const Napi::CallbackInfo& info) {
    auto s = state(info.Env());
    std::lock_guard<std::mutex> lk(s->mutex);
#ifdef GRADMM_HAVE_CUDA
    if (s->forward_on_device) return copy_from_device(info.Env(), s->device->be, s->device->model.hidden(), s->hidden_floats());
#endif
    return copy_out(info.Env(), s->model.hidden(), s->model.hidden_size());
  }

  // adamwStep({lr, beta1, beta2, eps, weightDecay, maxGradNorm, step}) -> Promise<grad norm before clipping>
  Napi::Value AdamwStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto s = state(env);
    Napi::Object a = info[0].As<Napi::Object>();
    auto num = [&](const char* k, double d) { return a.Get(k).IsNumber() ? a.Get(k).As<Napi::Number>().DoubleValue() : d; };
    float lr = (float)num("lr", 1e-3), b1 = (float)num("beta1", 0.9), b2 = (float)num("beta2", 0.999), eps = (float)num("eps", 1e-8),
          wd = (float)num("weightDecay", 0.0), clip = (float)num("maxGradNorm", 0.0);
    int t = int_field(a, "step", 1);
    auto norm = std::make_shared<double>(0);
    return run_async(
        env,
        [s, lr, b1, b2, eps, wd, clip, t, norm] {
          std::lock_guard<std::mutex> lk(s->mutex);
#ifdef GRADMM_HAVE_CUDA
          if (s->device_exec()) {
            *norm = device_adamw(*s, lr, b1, b2, eps, wd, clip, t);
            return;
          }
#endif
          s->pull_host();
          *norm = s->model.adamw_step(lr, b1, b2, eps, wd, clip, t);
          s->host_grads = s->host_moments = true;
          ++s->params_version;
        },
        [norm](Napi::Env e) { return Napi::Number::New(e, *norm); }, {});
  }

  Napi::Value Decode(const Napi::CallbackInfo& info);
  Napi::Value BuildTarget(const Napi::CallbackInfo& info);
  Napi::Value MatchLoss(const Napi::CallbackInfo& info);
  Napi::Value XUpdate(const Napi::CallbackInfo& info);
  // paramsChanged(): the parameters were written from JavaScript; a device copy re-uploads them before its next use.
  // Gradients or Adam moments written through their views are copied to the device too (unless the device has
  // newer ones, which those views cannot have held).
  Napi::Value ParamsChanged(const Napi::CallbackInfo& info) {
    auto s = state(info.Env());
    std::lock_guard<std::mutex> lk(s->mutex);
    ++s->params_version;
    s->device_params_newer = false;
    if (s->device) {
      if (s->host_grads && s->grads_newer == Newer::Same) s->grads_newer = Newer::Host;
      if (s->host_moments && s->moments_newer == Newer::Same) s->moments_newer = Newer::Host;
    }
    return info.Env().Undefined();
  }
  Napi::Value Project(const Napi::CallbackInfo& info);
  Napi::Value InitCandidates(const Napi::CallbackInfo& info);
};

// ---------------------------------------------------------------------------------------------------------------
class KVCacheWrap : public Napi::ObjectWrap<KVCacheWrap> {
 public:
  static Napi::FunctionReference* ctor;
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "KVCache",
                       {InstanceAccessor("length", &KVCacheWrap::Length, nullptr),
                        InstanceAccessor("rows", &KVCacheWrap::Rows, nullptr),
                        InstanceAccessor("capacity", &KVCacheWrap::Capacity, nullptr),
                        InstanceMethod("reset", &KVCacheWrap::Reset)});
  }
  // new KVCache(model, rows, capacity, prefix?)
  explicit KVCacheWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<KVCacheWrap>(info) {
    Napi::Env env = info.Env();
    ModelWrap* m = ModelWrap::Unwrap(info[0].As<Napi::Object>());
    model_ = m->state(env);
    int rows = info[1].As<Napi::Number>().Int32Value(), cap = info[2].As<Napi::Number>().Int32Value();
    std::shared_ptr<CacheState> prefix;
    if (info.Length() > 3 && info[3].IsObject()) {
      KVCacheWrap* p = KVCacheWrap::Unwrap(info[3].As<Napi::Object>());
      if (p->model_ != model_) throw Napi::Error::New(env, "KVCache: prefix cache belongs to another model");
      prefix = p->cache_;
    }
    try {
      cache_ = std::make_shared<CacheState>(model_->model.dims(), rows, cap, prefix);
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
  }
  std::shared_ptr<ModelState> model_;
  std::shared_ptr<CacheState> cache_;

 private:
  Napi::Value Length(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), cache_->host.length); }
  Napi::Value Rows(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), cache_->host.rows); }
  Napi::Value Capacity(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), cache_->host.capacity); }
  Napi::Value Reset(const Napi::CallbackInfo& info) {
    std::lock_guard<std::mutex> lk(model_->mutex);
    cache_->reset();
    return info.Env().Undefined();
  }
};
Napi::FunctionReference* KVCacheWrap::ctor = nullptr;

// decode(cache, {tokens | embeds, T}, logitsOut?, hiddenOut?, cancelToken?) -> Promise<void>
Napi::Value ModelWrap::Decode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = state(env);
  if (!info[0].IsObject() || !info[0].As<Napi::Object>().InstanceOf(KVCacheWrap::ctor->Value()))
    throw Napi::TypeError::New(env, "decode: first argument must be a KVCache");
  KVCacheWrap* cw = KVCacheWrap::Unwrap(info[0].As<Napi::Object>());
  if (cw->model_ != s) throw Napi::Error::New(env, "decode: the cache belongs to another model");
  Napi::Object a = info[1].As<Napi::Object>();
  const int Tn = int_field(a, "T", 1), R = cw->cache_->host.rows, C = s->model.dims().channels, V = s->model.dims().vocab_size;
  auto tokens = typed_field<Napi::Int32Array>(a, "tokens", (size_t)R * Tn, false);
  auto embeds = typed_field<Napi::Float32Array>(a, "embeds", (size_t)R * Tn * C, false);
  if (tokens.IsEmpty() == embeds.IsEmpty()) throw Napi::TypeError::New(env, "decode: give exactly one of tokens or embeds");
  Napi::Float32Array logits, hidden;
  if (info.Length() > 2 && info[2].IsTypedArray()) logits = info[2].As<Napi::Float32Array>();
  if (info.Length() > 3 && info[3].IsTypedArray()) hidden = info[3].As<Napi::Float32Array>();
  if (!logits.IsEmpty() && logits.ElementLength() != (size_t)R * V) throw Napi::RangeError::New(env, "decode: logits buffer must hold rows × vocab floats");
  if (!hidden.IsEmpty() && hidden.ElementLength() != (size_t)R * C) throw Napi::RangeError::New(env, "decode: hidden buffer must hold rows × channels floats");
  auto cache = cw->cache_;
  auto cancel = cancel_flag(info[4]);
  const int* tk = tokens.IsEmpty() ? nullptr : tokens.Data();
  const float* em = embeds.IsEmpty() ? nullptr : embeds.Data();
  float* lo = logits.IsEmpty() ? nullptr : logits.Data();
  float* hi = hidden.IsEmpty() ? nullptr : hidden.Data();
  std::vector<Napi::Value> keep = {a, info[0]};
  if (!logits.IsEmpty()) keep.push_back(logits);
  if (!hidden.IsEmpty()) keep.push_back(hidden);
  return run_async(
      env,
      [s, cache, tk, em, Tn, lo, hi, cancel] {
        std::lock_guard<std::mutex> lk(s->mutex);
#ifdef GRADMM_HAVE_CUDA
        if (DeviceExec* d = s->device_exec()) {
          device_decode(*s, *d, *cache, tk, em, Tn, lo, hi, cancel.get());
          return;
        }
#endif
        s->pull_host();
        cache->sync_host();
        if (cache->prefix) cache->prefix->sync_host();
        s->model.decode(cache->host, tk, em, Tn, lo, hi, cancel.get());
        cache->host_written();
      },
      nullptr, keep);
}


// ---------------------------------------------------------------------------------------------------------------
// Gradient matching and ADMM (binding/src/gradmatch.h, admm.h). A MatchTarget is created by model.buildTarget().
class MatchTargetWrap : public Napi::ObjectWrap<MatchTargetWrap> {
 public:
  static Napi::FunctionReference* ctor;
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "MatchTarget",
                       {InstanceAccessor("norm", &MatchTargetWrap::Norm, nullptr),
                        InstanceAccessor("count", &MatchTargetWrap::Count, nullptr),
                        InstanceMethod("exampleNorms", &MatchTargetWrap::ExampleNorms)});
  }
  explicit MatchTargetWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MatchTargetWrap>(info) {}
  std::shared_ptr<MatchTarget> target;
  std::shared_ptr<ModelState> model;

 private:
  Napi::Value Norm(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), target->norm); }
  Napi::Value Count(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), target->n); }
  Napi::Value ExampleNorms(const Napi::CallbackInfo& info) {
    return copy_out(info.Env(), target->example_norms.data(), target->example_norms.size());
  }
};
Napi::FunctionReference* MatchTargetWrap::ctor = nullptr;

std::shared_ptr<MatchTarget> unwrap_target(const Napi::Value& v, const std::shared_ptr<ModelState>& model) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(MatchTargetWrap::ctor->Value()))
    throw Napi::TypeError::New(v.Env(), "expected a MatchTarget from model.buildTarget()");
  MatchTargetWrap* w = MatchTargetWrap::Unwrap(v.As<Napi::Object>());
  if (w->model != model) throw Napi::Error::New(v.Env(), "the MatchTarget belongs to another model");
  return w->target;
}

double num_field(const Napi::Object& o, const char* name, double dflt) {
  Napi::Value v = o.Get(name);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : dflt;
}

// buildTarget({tokens [n*T], n, T, lastPos [n], labels [n], clipNorm?, noiseStd?, noiseSeed?, chunkTokens?}, cancel?) -> Promise<MatchTarget>
Napi::Value ModelWrap::BuildTarget(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = state(env);
  Napi::Object a = info[0].As<Napi::Object>();
  const int n = int_field(a, "n", 1), T = int_field(a, "T", 1);
  auto tokens = typed_field<Napi::Int32Array>(a, "tokens", (size_t)n * T, true);
  auto last = typed_field<Napi::Int32Array>(a, "lastPos", n, true);
  auto labels = typed_field<Napi::Int32Array>(a, "labels", n, true);
  TargetOptions opts;
  opts.clip_norm = (float)num_field(a, "clipNorm", 0);
  opts.noise_std = (float)num_field(a, "noiseStd", 0);
  opts.noise_seed = (uint64_t)num_field(a, "noiseSeed", 0);
  opts.chunk_tokens = (int)num_field(a, "chunkTokens", opts.chunk_tokens);
  if (opts.chunk_tokens < 1) throw Napi::RangeError::New(env, "buildTarget: chunkTokens must be at least 1");
  auto cancel = cancel_flag(info[1]);
  auto result = std::make_shared<std::shared_ptr<MatchTarget>>();
  const int *tk = tokens.Data(), *lp = last.Data(), *lb = labels.Data();
  return run_async(
      env,
      [s, tk, lp, lb, n, T, opts, cancel, result] {
        std::lock_guard<std::mutex> lk(s->mutex);
#ifdef GRADMM_HAVE_CUDA
        if (DeviceExec* d = s->device_exec()) {
          s->forward_on_device = true;  // its forwards replace the last forward's activations, as on the CPU
          const int V = s->model.dims().vocab_size;
          check_ids(lp, n, T, "build_target: last position out of range");
          check_ids(tk, (long)n * T, V, "build_target: token id out of range");
          check_ids(lb, n, V, "build_target: label token out of range");
          auto t = std::make_shared<MatchTarget>(d->target_factors(tk, n, T, lp, lb, opts.chunk_tokens, cancel.get()));
          finish_target(*t, opts);
          *result = t;
          return;
        }
#endif
        *result = std::make_shared<MatchTarget>(build_target(s->model, tk, n, T, lp, lb, opts, cancel.get()));
      },
      [s, result](Napi::Env e) {
        Napi::Object o = MatchTargetWrap::ctor->New({});
        MatchTargetWrap* w = MatchTargetWrap::Unwrap(o);
        w->target = *result;
        w->model = s;
        return (Napi::Value)o;
      },
      {a});
}

// matchLoss(target, {X [B*L*C], B, L, label, dX?, perSample?}, cancel?) -> Promise<f>
Napi::Value ModelWrap::MatchLoss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = state(env);
  auto target = unwrap_target(info[0], s);
  Napi::Object a = info[1].As<Napi::Object>();
  const int B = int_field(a, "B", 1), L = int_field(a, "L", 1), label = int_field(a, "label", 0);
  const size_t n = (size_t)B * L * s->model.dims().channels;
  auto X = typed_field<Napi::Float32Array>(a, "X", n, true);
  auto dX = typed_field<Napi::Float32Array>(a, "dX", n, false);
  auto per = typed_field<Napi::Float32Array>(a, "perSample", B, false);
  if (label >= s->model.dims().vocab_size) throw Napi::RangeError::New(env, "label token out of range");
  const float* x = X.Data();
  float* dx = dX.IsEmpty() ? nullptr : dX.Data();
  float* ps = per.IsEmpty() ? nullptr : per.Data();
  auto cancel = cancel_flag(info[2]);
  auto f = std::make_shared<double>(0);
  return run_async(
      env,
      [s, target, x, B, L, label, dx, ps, cancel, f] {
        std::lock_guard<std::mutex> lk(s->mutex);
#ifdef GRADMM_HAVE_CUDA
        if (DeviceExec* d = s->device_exec()) {
          s->forward_on_device = true;  // its forwards replace the last forward's activations, as on the CPU
          const size_t n = (size_t)B * L * s->model.dims().channels;
          float* dev_dx = dx ? d->upload(d->dX, nullptr, n) : nullptr;
          *f = d->matcher_for(target).match_loss(d->upload(d->X, x, n), B, L, label, dev_dx, ps);
          if (dx) d->be->to_host(dx, dev_dx, n * sizeof(float));
          return;
        }
#endif
        *f = match_loss(s->model, *target, x, B, L, label, dx, ps, cancel.get());
      },
      [f](Napi::Env e) { return Napi::Number::New(e, *f); }, {a, info[0]});
}

// xUpdate(target, {X, z, lam, adamM, adamV [B*L*C], adamStep: Int32Array(1), losses [steps], B, L, freeLen, label,
//                  steps, rho, lr, maxGradNorm}, cancel?) -> Promise<f after the last step>
Napi::Value ModelWrap::XUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = state(env);
  auto target = unwrap_target(info[0], s);
  Napi::Object a = info[1].As<Napi::Object>();
  XUpdateArgs xa;
  xa.B = int_field(a, "B", 1);
  xa.L = int_field(a, "L", 1);
  xa.free_len = int_field(a, "freeLen", 0);
  xa.label = int_field(a, "label", 0);
  xa.steps = int_field(a, "steps", 0);
  xa.rho = (float)num_field(a, "rho", 0.1);
  xa.lr = (float)num_field(a, "lr", 0.008);
  xa.max_grad_norm = (float)num_field(a, "maxGradNorm", 1.0);
  if (xa.free_len > xa.L) throw Napi::RangeError::New(env, "freeLen exceeds L");
  if (xa.label >= s->model.dims().vocab_size) throw Napi::RangeError::New(env, "label token out of range");
  const size_t n = (size_t)xa.B * xa.L * s->model.dims().channels;
  auto X = typed_field<Napi::Float32Array>(a, "X", n, true);
  auto z = typed_field<Napi::Float32Array>(a, "z", n, true);
  auto lam = typed_field<Napi::Float32Array>(a, "lam", n, true);
  auto m = typed_field<Napi::Float32Array>(a, "adamM", n, true);
  auto v = typed_field<Napi::Float32Array>(a, "adamV", n, true);
  auto t = typed_field<Napi::Int32Array>(a, "adamStep", 1, true);
  auto losses = typed_field<Napi::Float32Array>(a, "losses", xa.steps, false);
  float *x = X.Data(), *mm = m.Data(), *vv = v.Data(), *ls = losses.IsEmpty() ? nullptr : losses.Data();
  const float *zz = z.Data(), *ll = lam.Data();
  int* tt = t.Data();
  auto cancel = cancel_flag(info[2]);
  auto f = std::make_shared<double>(0);
  return run_async(
      env,
      [s, target, x, zz, ll, xa, mm, vv, tt, ls, cancel, f] {
        std::lock_guard<std::mutex> lk(s->mutex);
#ifdef GRADMM_HAVE_CUDA
        if (DeviceExec* d = s->device_exec()) {
          s->forward_on_device = true;  // its forwards replace the last forward's activations, as on the CPU
          const size_t n = (size_t)xa.B * xa.L * s->model.dims().channels;
          float *dx = d->upload(d->X, x, n), *dm = d->upload(d->m, mm, n), *dv = d->upload(d->v, vv, n);
          *f = d->matcher_for(target).x_update(dx, d->upload(d->z, zz, n), d->upload(d->lam, ll, n), xa, dm, dv, tt, ls,
                                               cancel.get());
          d->be->to_host(x, dx, n * sizeof(float));
          d->be->to_host(mm, dm, n * sizeof(float));
          d->be->to_host(vv, dv, n * sizeof(float));
          return;
        }
#endif
        *f = x_update(s->model, *target, x, zz, ll, xa, mm, vv, tt, ls, cancel.get());
      },
      [f](Napi::Env e) { return Napi::Number::New(e, *f); }, {a, info[0]});
}

// project({U [B*L*C], B, L, freeLen, allowed: Uint8Array [V], topk, prefix: KVCache, prefixLogits [V],
//          outTokens: Int32Array [B*freeLen]}, cancel?) -> Promise<void>
Napi::Value ModelWrap::Project(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = state(env);
  Napi::Object a = info[0].As<Napi::Object>();
  const int B = int_field(a, "B", 1), L = int_field(a, "L", 1), free_len = int_field(a, "freeLen", 0), topk = int_field(a, "topk", 1);
  const int V = s->model.dims().vocab_size, C = s->model.dims().channels;
  if (free_len > L) throw Napi::RangeError::New(env, "freeLen exceeds L");
  auto U = typed_field<Napi::Float32Array>(a, "U", (size_t)B * L * C, true);
  auto allowed = typed_field<Napi::Uint8Array>(a, "allowed", V, true);
  auto plog = typed_field<Napi::Float32Array>(a, "prefixLogits", V, true);
  auto out = typed_field<Napi::Int32Array>(a, "outTokens", (size_t)B * free_len, true);
  Napi::Value pv = a.Get("prefix");
  if (!pv.IsObject() || !pv.As<Napi::Object>().InstanceOf(KVCacheWrap::ctor->Value()))
    throw Napi::TypeError::New(env, "project: 'prefix' must be a KVCache");
  KVCacheWrap* cw = KVCacheWrap::Unwrap(pv.As<Napi::Object>());
  if (cw->model_ != s) throw Napi::Error::New(env, "project: the prefix cache belongs to another model");
  auto cache = cw->cache_;
  const float *u = U.Data(), *pl = plog.Data();
  const uint8_t* al = allowed.Data();
  int* o = out.Data();
  auto cancel = cancel_flag(info[1]);
  return run_async(
      env,
      [s, u, B, L, free_len, al, topk, cache, pl, o, cancel] {
        std::lock_guard<std::mutex> lk(s->mutex);
#ifdef GRADMM_HAVE_CUDA
        if (DeviceExec* d = s->device_exec()) {
          cache->sync_host();
          s->pull_host();  // the vocabulary norms are computed from the host's embeddings
          exec_project(d->model, s->model.input_embeddings(), u, B, L, free_len, al, topk, cache->host, pl, o, cancel.get());
          return;
        }
#endif
        project(s->model, u, B, L, free_len, al, topk, cache->host, pl, o, cancel.get());
      },
      nullptr, {a});
}

// initCandidates(target, {X [B*L*C] (out), templateEmbeds [(L-freeLen)*C], B, L, freeLen, label, candidates, seed,
//                         tokenNorm}, cancel?) -> Promise<best f>
Napi::Value ModelWrap::InitCandidates(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = state(env);
  auto target = unwrap_target(info[0], s);
  Napi::Object a = info[1].As<Napi::Object>();
  const int B = int_field(a, "B", 1), L = int_field(a, "L", 1), free_len = int_field(a, "freeLen", 0),
            label = int_field(a, "label", 0), cands = int_field(a, "candidates", 1);
  const int C = s->model.dims().channels;
  if (free_len > L) throw Napi::RangeError::New(env, "freeLen exceeds L");
  if (label >= s->model.dims().vocab_size) throw Napi::RangeError::New(env, "label token out of range");
  auto X = typed_field<Napi::Float32Array>(a, "X", (size_t)B * L * C, true);
  auto tmpl = typed_field<Napi::Float32Array>(a, "templateEmbeds", (size_t)(L - free_len) * C, true);
  const uint64_t seed = (uint64_t)num_field(a, "seed", 0);
  const float norm = (float)num_field(a, "tokenNorm", 1.4);
  float* x = X.Data();
  const float* te = tmpl.Data();
  auto cancel = cancel_flag(info[2]);
  auto f = std::make_shared<double>(0);
  return run_async(
      env,
      [s, target, B, L, free_len, te, label, cands, seed, norm, x, cancel, f] {
        std::lock_guard<std::mutex> lk(s->mutex);
#ifdef GRADMM_HAVE_CUDA
        if (DeviceExec* d = s->device_exec()) {
          s->forward_on_device = true;
          const int C = s->model.dims().channels;
          const size_t n = (size_t)B * L * C;
          ExecMatcher& matcher = d->matcher_for(target);
          auto loss = [&](const float* cand) { return matcher.match_loss(d->upload(d->X, cand, n), B, L, label, nullptr); };
          *f = init_candidates(loss, C, B, L, free_len, te, cands, seed, norm, x, cancel.get());
          return;
        }
#endif
        *f = init_candidates(s->model, *target, B, L, free_len, te, label, cands, seed, norm, x, cancel.get());
      },
      [f](Napi::Env e) { return Napi::Number::New(e, *f); }, {a, info[0]});
}

// ---------------------------------------------------------------------------------------------------------------
// sgemm(transA, transB, M, N, K, A, lda, B, ldb, C, ldc, accumulate) — synchronous, for tests and benchmarks.
Napi::Value Sgemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool ta = info[0].ToBoolean(), tb = info[1].ToBoolean();
  int M = info[2].As<Napi::Number>().Int32Value(), N = info[3].As<Napi::Number>().Int32Value(),
      K = info[4].As<Napi::Number>().Int32Value();
  auto A = info[5].As<Napi::Float32Array>();
  int lda = info[6].As<Napi::Number>().Int32Value();
  auto B = info[7].As<Napi::Float32Array>();
  int ldb = info[8].As<Napi::Number>().Int32Value();
  auto C = info[9].As<Napi::Float32Array>();
  int ldc = info[10].As<Napi::Number>().Int32Value();
  bool acc = info[11].ToBoolean();
  auto need = [](int rows, int cols, int ld) { return rows == 0 ? 0 : (size_t)(rows - 1) * ld + cols; };
  if (A.ElementLength() < (ta ? need(K, M, lda) : need(M, K, lda)) || B.ElementLength() < (tb ? need(N, K, ldb) : need(K, N, ldb)) ||
      C.ElementLength() < need(M, N, ldc))
    throw Napi::RangeError::New(env, "sgemm: a matrix is smaller than its shape and leading dimension say");
  sgemm(ta, tb, M, N, K, A.Data(), lda, B.Data(), ldb, C.Data(), ldc, acc);
  return env.Undefined();
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  set_num_threads(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}
Napi::Value GetThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), get_num_threads()); }
Napi::Value KernelName(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), sgemm_kernel_name()); }
Napi::Value ForceKernel(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), sgemm_force_kernel(info[0].As<Napi::String>().Utf8Value().c_str()));
}

// ---------------------------------------------------------------------------------------------------------------
// dequantize(type, src: Uint8Array, dst: Float32Array) — GGUF block data to float32 (gguf_quants.h), synchronous.
Napi::Value Dequantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "dequantize(type, src, dst): type must be a number");
  const double tnum = info[0].As<Napi::Number>().DoubleValue();
  const int type = (tnum >= 0 && tnum <= 1e6 && tnum == (double)(int)tnum) ? (int)tnum : -1;
  const char* tn = ggml_type_name(type);
  const std::string tname = tn ? std::string(tn) + " (" + std::to_string(type) + ")" : "id " + info[0].ToString().Utf8Value();
  if (!ggml_type_dequantizable(type))
    throw Napi::RangeError::New(env, "dequantize: ggml type " + tname + " is not supported (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)");
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw Napi::TypeError::New(env, "dequantize: src must be a Uint8Array");
  if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(env, "dequantize: dst must be a Float32Array");
  auto src = info[1].As<Napi::Uint8Array>();
  auto dst = info[2].As<Napi::Float32Array>();
  const int64_t bb = ggml_block_bytes(type), be = ggml_block_elems(type);
  const int64_t bytes = (int64_t)src.ByteLength();
  if (bytes % bb != 0)
    throw Napi::RangeError::New(env, "dequantize " + tname + ": src has " + std::to_string(bytes) + " bytes, not a whole number of " +
                                         std::to_string(bb) + "-byte blocks");
  const int64_t n = bytes / bb * be;
  if ((int64_t)dst.ElementLength() != n)
    throw Napi::RangeError::New(env, "dequantize " + tname + ": dst has " + std::to_string(dst.ElementLength()) + " elements; " +
                                         std::to_string(bytes / bb) + " blocks hold " + std::to_string(n));
  dequantize(type, src.Data(), dst.Data(), n);
  return env.Undefined();
}

// ---------------------------------------------------------------------------------------------------------------
// backendInfo() — which backend the engine would use and why: CUDA when compiled in and a device answers, the CPU
// otherwise; GRADMM_BACKEND=cpu|cuda forces one. The CUDA probe (cudaGetDeviceCount, once, lazily) is skipped under
// GRADMM_BACKEND=cpu. A fallback to the CPU prints one line on stderr, once, when CUDA was requested or compiled in.
struct BackendChoice {
  bool compiled = false, cublas = false;
  std::string chosen = "cpu", reason, archs, note;
  int cuda_runtime = 0;
  struct Dev {
    std::string name;
    double memory;
    int major, minor;
  };
  std::vector<Dev> devices;
};
const BackendChoice& backend_choice() {
  static BackendChoice c;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("GRADMM_BACKEND");
    std::string want = env ? env : "";
    for (auto& ch : want) ch = (char)std::tolower((unsigned char)ch);
    std::string prefix;
    if (!want.empty() && want != "cpu" && want != "cuda" && want != "auto" && want != "cpu-table") {
      prefix = "GRADMM_BACKEND=" + want + " is not cpu|cuda|cpu-table|auto (ignored); ";
      want.clear();
    }
#ifdef GRADMM_HAVE_CUDA
    c.compiled = true;
    const auto bi = cuda::build_info();
    c.cublas = bi.cublas;
    c.archs = bi.archs;
    c.cuda_runtime = bi.cuda_runtime;
    if (want == "cpu") {
      c.reason = prefix + "forced by GRADMM_BACKEND=cpu";
      return;
    }
    if (want == "cpu-table") {
      c.chosen = "cpu-table";
      c.reason = prefix + "GRADMM_BACKEND=cpu-table: every model call runs through the backend-table executor on the CPU (a test of the device path)";
      return;
    }
    const cuda::Probe& p = cuda::probe();
    for (const auto& d : p.devices) c.devices.push_back({d.name, (double)d.memory, d.major, d.minor});
    if (p.ok) {
      c.chosen = "cuda";
      c.reason = prefix + (want == "cuda" ? "forced by GRADMM_BACKEND=cuda" : "CUDA device found") + " (" +
                 p.devices[0].name + ")";
      c.note = "on CUDA: every model call of GPT-2 and Llama-family models (forward, backward, adamwStep, decode, "
               "buildTarget, initCandidates, matchLoss, xUpdate, project); parameters, gradients and Adam moments are "
               "copied back to the host when read";
    } else {
      c.reason = prefix + (want == "cuda" ? "GRADMM_BACKEND=cuda, but CUDA is unavailable: " : "CUDA unavailable: ") + p.error;
      std::fprintf(stderr, "gradmm: CUDA backend unavailable (%s); using the CPU engine\n", p.error.c_str());
    }
#else
    if (want == "cpu-table") {
      c.reason = prefix + "GRADMM_BACKEND=cpu-table needs the backend tables, built with CUDA only (nvcc not found at build time, or GRADMM_CUDA=OFF); using the CPU engine";
      std::fprintf(stderr, "gradmm: %s\n", c.reason.c_str());
    } else if (want == "cuda") {
      c.reason = prefix + "GRADMM_BACKEND=cuda, but this build has no CUDA (nvcc not found at build time, or GRADMM_CUDA=OFF)";
      std::fprintf(stderr, "gradmm: GRADMM_BACKEND=cuda but this build has no CUDA support; using the CPU engine\n");
    } else {
      c.reason = prefix + "built without CUDA";
    }
#endif
  });
  return c;
}

const Backend* exec_backend() {
#ifdef GRADMM_HAVE_CUDA
  static const Backend* be = [] {
    const BackendChoice& c = backend_choice();
    if (c.chosen == "cuda") return cuda_backend();
    if (c.chosen == "cpu-table") return cpu_backend();
    return (const Backend*)nullptr;
  }();
  return be;
#else
  return nullptr;
#endif
}

Napi::Value BackendInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const BackendChoice& c = backend_choice();
  Napi::Object o = Napi::Object::New(env);
  o.Set("compiled", c.compiled);
  Napi::Array devs = Napi::Array::New(env, c.devices.size());
  for (size_t i = 0; i < c.devices.size(); ++i) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("name", c.devices[i].name);
    d.Set("memory", c.devices[i].memory);
    d.Set("computeCapability", std::to_string(c.devices[i].major) + "." + std::to_string(c.devices[i].minor));
    devs.Set((uint32_t)i, d);
  }
  o.Set("devices", devs);
  o.Set("chosen", c.chosen);
  o.Set("reason", c.reason);
  if (!c.note.empty()) o.Set("note", c.note);
  Napi::Object b = Napi::Object::New(env);
  b.Set("cuda", c.compiled);
  b.Set("cublas", c.cublas);
  b.Set("archs", c.archs);
  if (c.cuda_runtime) b.Set("cudaRuntime", std::to_string(c.cuda_runtime / 1000) + "." + std::to_string(c.cuda_runtime % 1000 / 10));
  else b.Set("cudaRuntime", env.Null());
  o.Set("build", b);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Napi::Function cancel = CancelToken::Init(env);
  g_cancel_ctor = new Napi::FunctionReference(Napi::Persistent(cancel));
  Napi::Function kv = KVCacheWrap::Init(env);
  KVCacheWrap::ctor = new Napi::FunctionReference(Napi::Persistent(kv));
  exports.Set("CancelToken", cancel);
  exports.Set("KVCache", kv);
  Napi::Function mt = MatchTargetWrap::Init(env);
  MatchTargetWrap::ctor = new Napi::FunctionReference(Napi::Persistent(mt));
  exports.Set("MatchTarget", mt);
  exports.Set("Model", ModelWrap::Init(env));
  exports.Set("sgemm", Napi::Function::New(env, Sgemm));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("getThreads", Napi::Function::New(env, GetThreads));
  exports.Set("sgemmKernel", Napi::Function::New(env, KernelName));
  exports.Set("forceSgemmKernel", Napi::Function::New(env, ForceKernel));
  exports.Set("backendInfo", Napi::Function::New(env, BackendInfo));
  exports.Set("dequantize", Napi::Function::New(env, Dequantize));
  return exports;
}

}  // namespace

NODE_API_MODULE(gradmm, Init)
