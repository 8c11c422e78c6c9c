// KVCache: keys and values of a model's layers on its backend, for rows decoded in lockstep, optionally continuing a
// one-row prefix cache (read in place).
#include <mutex>

#include "addon.h"

namespace gradmm {
namespace addon {
namespace {
Napi::FunctionReference* g_ctor = nullptr;
}

Napi::Function KVCacheWrap::Init(Napi::Env env) {
  Napi::Function f = DefineClass(env, "KVCache",
                                 {InstanceAccessor("length", &KVCacheWrap::Length, nullptr),
                                  InstanceAccessor("rows", &KVCacheWrap::Rows, nullptr),
                                  InstanceAccessor("capacity", &KVCacheWrap::Capacity, nullptr),
                                  InstanceMethod("reset", &KVCacheWrap::Reset)});
  g_ctor = new Napi::FunctionReference(Napi::Persistent(f));
  return f;
}

// new KVCache(model, rows, capacity, prefix?)
KVCacheWrap::KVCacheWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<KVCacheWrap>(info) {
  Napi::Env env = info.Env();
  model = ModelWrap::engine_of(info[0]);
  if (!info[1].IsNumber() || !info[2].IsNumber()) throw Napi::TypeError::New(env, "KVCache(model, rows, capacity, prefix?)");
  const int rows = info[1].As<Napi::Number>().Int32Value(), cap = info[2].As<Napi::Number>().Int32Value();
  std::shared_ptr<CacheHandle> prefix;
  if (info.Length() > 3 && info[3].IsObject()) prefix = unwrap(info[3], model, "KVCache: prefix");
  try {
    std::lock_guard<std::mutex> lk(model->mutex);
    cache = model->new_cache(rows, cap, prefix);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

std::shared_ptr<CacheHandle> KVCacheWrap::unwrap(const Napi::Value& v, const std::shared_ptr<ModelEngine>& model,
                                                 const char* what) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(g_ctor->Value()))
    throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected a KVCache");
  KVCacheWrap* w = KVCacheWrap::Unwrap(v.As<Napi::Object>());
  if (w->model != model) throw Napi::Error::New(v.Env(), std::string(what) + ": the cache belongs to another model");
  return w->cache;
}

Napi::Value KVCacheWrap::Length(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), cache->cache->length); }
Napi::Value KVCacheWrap::Rows(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), cache->cache->rows); }
Napi::Value KVCacheWrap::Capacity(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), cache->cache->capacity);
}
Napi::Value KVCacheWrap::Reset(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lk(model->mutex);
  cache->cache->length = 0;
  return info.Env().Undefined();
}

}  // namespace addon
}  // namespace gradmm
