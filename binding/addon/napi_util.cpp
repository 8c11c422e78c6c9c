#include "napi_util.h"

#include <cstring>

#include "causal_lm.h"  // Cancelled

namespace gradmm {
namespace addon {

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
double num_field(const Napi::Object& o, const char* name, double dflt) {
  Napi::Value v = o.Get(name);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : dflt;
}
Napi::Object object_arg(const Napi::CallbackInfo& info, size_t i, const char* call) {
  if (info.Length() <= i || !info[i].IsObject())
    throw Napi::TypeError::New(info.Env(), std::string(call) + ": argument " + std::to_string(i + 1) + " must be an object");
  return info[i].As<Napi::Object>();
}

namespace {
Napi::FunctionReference* g_cancel_ctor = nullptr;

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
}  // namespace

Napi::Function CancelToken::Init(Napi::Env env) {
  Napi::Function f = DefineClass(env, "CancelToken", {InstanceMethod("cancel", &CancelToken::Cancel),
                                                      InstanceAccessor("cancelled", &CancelToken::Get, nullptr)});
  g_cancel_ctor = new Napi::FunctionReference(Napi::Persistent(f));
  return f;
}
CancelToken::CancelToken(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<CancelToken>(info), flag(std::make_shared<std::atomic<bool>>(false)) {}
Napi::Value CancelToken::Cancel(const Napi::CallbackInfo& info) {
  flag->store(true);
  return info.Env().Undefined();
}
Napi::Value CancelToken::Get(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), flag->load()); }

std::shared_ptr<std::atomic<bool>> cancel_flag(const Napi::Value& v) {
  if (g_cancel_ctor && v.IsObject() && v.As<Napi::Object>().InstanceOf(g_cancel_ctor->Value()))
    return CancelToken::Unwrap(v.As<Napi::Object>())->flag;
  return nullptr;
}

Napi::Promise run_async(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> result,
                        std::vector<Napi::Value> keep) {
  auto* w = new PromiseWorker(env, std::move(work), std::move(result), std::move(keep));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Float32Array view(Napi::Env env, std::shared_ptr<void> owner, float* data, size_t n) {
  auto* hold = new std::shared_ptr<void>(std::move(owner));
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, data, n * sizeof(float),
                                                [](Napi::Env, void*, std::shared_ptr<void>* h) { delete h; }, hold);
  return Napi::Float32Array::New(env, n, ab, 0);
}
Napi::Float32Array copy_out(Napi::Env env, const float* data, size_t n) {
  Napi::Float32Array a = Napi::Float32Array::New(env, n);
  if (n) std::memcpy(a.Data(), data, n * sizeof(float));
  return a;
}

}  // namespace addon
}  // namespace gradmm
