// Batch: one batch's ADMM state (x, z, λ, Adam moments, best x) on the model's backend (binding/engine/batch.h).
// new Batch(model, target, {B, L, freeLen, label, templateTokens: Int32Array [L − freeLen − lead], leadTokens?:
// Int32Array [lead]}): each row is lead tokens (pinned; the tokenizer's <bos>), freeLen free positions, the template
#include <functional>
#include <mutex>

#include "addon.h"

namespace gradmm {
namespace addon {

Napi::Function BatchWrap::Init(Napi::Env env) {
  return DefineClass(env, "Batch",
                     {InstanceMethod("init", &BatchWrap::Init_), InstanceMethod("xUpdate", &BatchWrap::XUpdate),
                      InstanceMethod("project", &BatchWrap::Project), InstanceMethod("zLoss", &BatchWrap::ZLoss),
                      InstanceMethod("dualUpdate", &BatchWrap::DualUpdate),
                      InstanceMethod("keepBest", &BatchWrap::KeepBest), InstanceMethod("read", &BatchWrap::Read),
                      InstanceMethod("write", &BatchWrap::Write),
                      InstanceAccessor("adamStep", &BatchWrap::AdamStep, nullptr)});
}

// Runs fn(engine, batch, target, cancel) on a worker under the model's lock; the Promise resolves to its number (or
// to undefined when `number` is false). `keep`: JS objects the call reads or writes.
Napi::Value BatchWrap::run(const Napi::CallbackInfo& info, size_t cancel_arg, std::vector<Napi::Value> keep, bool number,
                           std::function<double(ModelEngine&, BatchState&, const std::shared_ptr<MatchTarget>&,
                                                const std::atomic<bool>*)> fn) {
  auto s = model_;
  auto t = target_;
  auto b = batch_;
  auto cancel = cancel_flag(info[cancel_arg]);
  auto f = std::make_shared<double>(0);
  return run_async(
      info.Env(),
      [s, t, b, cancel, f, fn] {
        std::lock_guard<std::mutex> lk(s->mutex);
        *f = fn(*s, *b, t, cancel.get());
      },
      [f, number](Napi::Env e) { return number ? (Napi::Value)Napi::Number::New(e, *f) : e.Undefined(); },
      std::move(keep));
}

BatchWrap::BatchWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BatchWrap>(info) {
  Napi::Env env = info.Env();
  model_ = ModelWrap::engine_of(info[0]);
  target_ = MatchTargetWrap::unwrap(info[1], model_);
  Napi::Object a = object_arg(info, 2, "Batch");
  const int B = int_field(a, "B", 1), L = int_field(a, "L", 1), free_len = int_field(a, "freeLen", 0),
            label = int_field(a, "label", 0);
  std::vector<int> lead;
  if (a.Has("leadTokens") && !a.Get("leadTokens").IsUndefined()) {
    auto lt = typed_field<Napi::Int32Array>(a, "leadTokens", (size_t)-1, false);
    lead.assign(lt.Data(), lt.Data() + lt.ElementLength());
  }
  if (free_len + (int)lead.size() > L) throw Napi::RangeError::New(env, "freeLen + leadTokens.length exceeds L");
  if (label >= model_->dims().vocab_size) throw Napi::RangeError::New(env, "label token out of range");
  auto tmpl = typed_field<Napi::Int32Array>(a, "templateTokens", (size_t)(L - free_len - (int)lead.size()), true);
  std::vector<int> ids(tmpl.Data(), tmpl.Data() + tmpl.ElementLength());
  try {
    std::lock_guard<std::mutex> lk(model_->mutex);
    batch_ = model_->new_batch(target_, B, L, free_len, label, std::move(ids), std::move(lead));
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

// init({candidates, seed, tokenNorm}, cancel?) -> Promise<best f>
Napi::Value BatchWrap::Init_(const Napi::CallbackInfo& info) {
  Napi::Object a = object_arg(info, 0, "batch.init");
  const int cands = int_field(a, "candidates", 1);
  const uint64_t seed = (uint64_t)num_field(a, "seed", 0);
  const float norm = (float)num_field(a, "tokenNorm", 1.4);
  return run(info, 1, {}, true, [cands, seed, norm](ModelEngine& e, BatchState& b, const std::shared_ptr<MatchTarget>& t,
                                                      const std::atomic<bool>* c) {
    return e.batch_init(b, t, cands, seed, norm, c);
  });
}

// xUpdate({steps, rho, lr, maxGradNorm, losses?: Float32Array [steps]}, cancel?) -> Promise<f after the last step>
Napi::Value BatchWrap::XUpdate(const Napi::CallbackInfo& info) {
  Napi::Object a = object_arg(info, 0, "batch.xUpdate");
  XUpdateArgs xa;
  xa.steps = int_field(a, "steps", 0);
  xa.rho = (float)num_field(a, "rho", 0.1);
  xa.lr = (float)num_field(a, "lr", 0.008);
  xa.max_grad_norm = (float)num_field(a, "maxGradNorm", 1.0);
  auto losses = typed_field<Napi::Float32Array>(a, "losses", xa.steps, false);
  float* ls = data_or_null<Napi::Float32Array, float>(losses);
  return run(info, 1, {a}, true, [xa, ls](ModelEngine& e, BatchState& b, const std::shared_ptr<MatchTarget>& t,
                                           const std::atomic<bool>* c) { return e.batch_x_update(b, t, xa, ls, c); });
}

// project({from: "dual" | "best", rho, allowed: Uint8Array [V], topk, prefix: KVCache, prefixLogits [V],
//          outTokens: Int32Array [B*freeLen]}, cancel?) -> Promise<void>
Napi::Value BatchWrap::Project(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object a = object_arg(info, 0, "batch.project");
  const int V = model_->dims().vocab_size;
  const std::string from = a.Get("from").IsString() ? a.Get("from").As<Napi::String>().Utf8Value() : "dual";
  if (from != "dual" && from != "best") throw Napi::TypeError::New(env, "batch.project: 'from' must be \"dual\" or \"best\"");
  const double rho = num_field(a, "rho", 0.1);
  const int topk = int_field(a, "topk", 1);
  auto allowed = typed_field<Napi::Uint8Array>(a, "allowed", V, true);
  auto plog = typed_field<Napi::Float32Array>(a, "prefixLogits", V, true);
  auto out = typed_field<Napi::Int32Array>(a, "outTokens", (size_t)batch_->B() * batch_->free_len(), true);
  auto cache = KVCacheWrap::unwrap(a.Get("prefix"), model_, "batch.project: 'prefix'");
  const uint8_t* al = allowed.Data();
  const float* pl = plog.Data();
  int* o = out.Data();
  const bool best = from == "best";
  return run(info, 1, {a}, false,
             [best, rho, al, topk, cache, pl, o](ModelEngine& e, BatchState& b, const std::shared_ptr<MatchTarget>&,
                                                  const std::atomic<bool>* c) {
               e.batch_project(b, best, rho, al, topk, *cache, pl, o, c);
               return 0.0;
             });
}

// zLoss({perSample?: Float32Array [B]}?, cancel?) -> Promise<f(z)>
Napi::Value BatchWrap::ZLoss(const Napi::CallbackInfo& info) {
  Napi::Object a = info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(info.Env());
  auto per = typed_field<Napi::Float32Array>(a, "perSample", batch_->B(), false);
  float* ps = data_or_null<Napi::Float32Array, float>(per);
  return run(info, 1, {a}, true, [ps](ModelEngine& e, BatchState& b, const std::shared_ptr<MatchTarget>& t,
                                       const std::atomic<bool>* c) { return e.batch_z_loss(b, t, ps, c); });
}

// dualUpdate({rho}) -> Promise<void>
Napi::Value BatchWrap::DualUpdate(const Napi::CallbackInfo& info) {
  const double rho = num_field(object_arg(info, 0, "batch.dualUpdate"), "rho", 0.1);
  return run(info, 1, {}, false, [rho](ModelEngine&, BatchState& b, const std::shared_ptr<MatchTarget>&,
                                        const std::atomic<bool>*) {
    b.dual_update(rho);
    return 0.0;
  });
}

// keepBest() -> Promise<void>: best x ← x
Napi::Value BatchWrap::KeepBest(const Napi::CallbackInfo& info) {
  return run(info, 0, {}, false, [](ModelEngine&, BatchState& b, const std::shared_ptr<MatchTarget>&,
                                    const std::atomic<bool>*) {
    b.keep_best();
    return 0.0;
  });
}

// read(which: "x" | "z" | "lam" | "m" | "v" | "best") -> Float32Array [B*L*C] (a copy; for tests and inspection)
Napi::Value BatchWrap::Read(const Napi::CallbackInfo& info) {
  const std::string which = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  std::lock_guard<std::mutex> lk(model_->mutex);
  Napi::Float32Array out =
      Napi::Float32Array::New(info.Env(), (size_t)batch_->B() * batch_->L() * model_->dims().channels);
  try {
    batch_->read(which.c_str(), out.Data());
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
  return out;
}

// write(which, data: Float32Array [B*L*C]): sets a piece of the state (a benchmark's or test's starting point)
Napi::Value BatchWrap::Write(const Napi::CallbackInfo& info) {
  const std::string which = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  const size_t n = (size_t)batch_->B() * batch_->L() * model_->dims().channels;
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
      info[1].As<Napi::Float32Array>().ElementLength() != n)
    throw Napi::TypeError::New(info.Env(), "batch.write(which, data): data must be a Float32Array of B·L·C floats");
  std::lock_guard<std::mutex> lk(model_->mutex);
  try {
    batch_->write(which.c_str(), info[1].As<Napi::Float32Array>().Data());
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
  return info.Env().Undefined();
}

Napi::Value BatchWrap::AdamStep(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), batch_->adam_step());
}

}  // namespace addon
}  // namespace gradmm
