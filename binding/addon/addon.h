// The N-API classes of the addon, one file each: Model (model_wrap.cpp), KVCache (kv_cache_wrap.cpp), MatchTarget
// (match_target_wrap.cpp), Batch (batch_wrap.cpp); the module's functions in module.cpp. Each is a thin shell over the
// engine (binding/engine/engine.h), which holds no N-API. ts/native.ts holds the TypeScript type of everything here.
#pragma once
#include <napi.h>

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "engine.h"
#include "napi_util.h"

namespace gradmm {
namespace addon {

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit ModelWrap(const Napi::CallbackInfo& info);
  // The engine of a Model argument (throws a TypeError otherwise, or an Error after release()).
  static std::shared_ptr<ModelEngine> engine_of(const Napi::Value& v);
  std::shared_ptr<ModelEngine> engine(Napi::Env env);

 private:
  std::shared_ptr<ModelEngine> engine_;
  Napi::Value Release(const Napi::CallbackInfo& info);
  Napi::Value ParamTable(const Napi::CallbackInfo& info);
  Napi::Value Params(const Napi::CallbackInfo& info);
  Napi::Value SyncHost(const Napi::CallbackInfo& info);
  Napi::Value Grads(const Napi::CallbackInfo& info);
  Napi::Value AdamMoments(const Napi::CallbackInfo& info);
  Napi::Value ZeroGrads(const Napi::CallbackInfo& info);
  Napi::Value ParamsChanged(const Napi::CallbackInfo& info);
  Napi::Value SetPrecision(const Napi::CallbackInfo& info);
  Napi::Value Precision(const Napi::CallbackInfo& info);
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value Backward(const Napi::CallbackInfo& info);
  Napi::Value Logits(const Napi::CallbackInfo& info);
  Napi::Value SelectedRows(const Napi::CallbackInfo& info);
  Napi::Value Hidden(const Napi::CallbackInfo& info);
  Napi::Value AdamwStep(const Napi::CallbackInfo& info);
  Napi::Value Decode(const Napi::CallbackInfo& info);
  Napi::Value BuildTarget(const Napi::CallbackInfo& info);
  Napi::Value WhitenedContrastiveTargets(const Napi::CallbackInfo& info);
  Napi::Value MatchLoss(const Napi::CallbackInfo& info);
  Napi::Value Project(const Napi::CallbackInfo& info);
};

class KVCacheWrap : public Napi::ObjectWrap<KVCacheWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit KVCacheWrap(const Napi::CallbackInfo& info);
  // The cache of a KVCache argument of `model` (throws otherwise; `what` names the call).
  static std::shared_ptr<CacheHandle> unwrap(const Napi::Value& v, const std::shared_ptr<ModelEngine>& model,
                                             const char* what);
  std::shared_ptr<ModelEngine> model;
  std::shared_ptr<CacheHandle> cache;

 private:
  Napi::Value Length(const Napi::CallbackInfo& info);
  Napi::Value Rows(const Napi::CallbackInfo& info);
  Napi::Value Capacity(const Napi::CallbackInfo& info);
  Napi::Value Reset(const Napi::CallbackInfo& info);
};

class MatchTargetWrap : public Napi::ObjectWrap<MatchTargetWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit MatchTargetWrap(const Napi::CallbackInfo& info);
  static Napi::Object wrap(const std::shared_ptr<MatchTarget>& t, const std::shared_ptr<ModelEngine>& model);
  // The target of a MatchTarget argument of `model` (throws otherwise).
  static std::shared_ptr<MatchTarget> unwrap(const Napi::Value& v, const std::shared_ptr<ModelEngine>& model);
  std::shared_ptr<MatchTarget> target;
  std::shared_ptr<ModelEngine> model;

 private:
  Napi::Value Norm(const Napi::CallbackInfo& info);
  Napi::Value Count(const Napi::CallbackInfo& info);
  Napi::Value ExampleNorms(const Napi::CallbackInfo& info);
};

class BatchWrap : public Napi::ObjectWrap<BatchWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit BatchWrap(const Napi::CallbackInfo& info);

 private:
  std::shared_ptr<ModelEngine> model_;
  std::shared_ptr<MatchTarget> target_;
  std::shared_ptr<BatchState> batch_;
  Napi::Value run(const Napi::CallbackInfo& info, size_t cancel_arg, std::vector<Napi::Value> keep, bool number,
                  std::function<double(ModelEngine&, BatchState&, const std::shared_ptr<MatchTarget>&,
                                       const std::atomic<bool>*)> fn);
  Napi::Value Init_(const Napi::CallbackInfo& info);
  Napi::Value XUpdate(const Napi::CallbackInfo& info);
  Napi::Value Project(const Napi::CallbackInfo& info);
  Napi::Value ZLoss(const Napi::CallbackInfo& info);
  Napi::Value DualUpdate(const Napi::CallbackInfo& info);
  Napi::Value KeepBest(const Napi::CallbackInfo& info);
  Napi::Value Read(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value AdamStep(const Napi::CallbackInfo& info);
};

}  // namespace addon
}  // namespace gradmm
