// MatchTarget: a class's gradient-matching target (gradmatch.h), created by model.buildTarget().
#include "addon.h"

namespace gradmm {
namespace addon {
namespace {
Napi::FunctionReference* g_ctor = nullptr;
}

Napi::Function MatchTargetWrap::Init(Napi::Env env) {
  Napi::Function f = DefineClass(env, "MatchTarget",
                                 {InstanceAccessor("norm", &MatchTargetWrap::Norm, nullptr),
                                  InstanceAccessor("count", &MatchTargetWrap::Count, nullptr),
                                  InstanceMethod("exampleNorms", &MatchTargetWrap::ExampleNorms)});
  g_ctor = new Napi::FunctionReference(Napi::Persistent(f));
  return f;
}
MatchTargetWrap::MatchTargetWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MatchTargetWrap>(info) {}

Napi::Object MatchTargetWrap::wrap(const std::shared_ptr<MatchTarget>& t, const std::shared_ptr<ModelEngine>& model) {
  Napi::Object o = g_ctor->New({});
  MatchTargetWrap* w = MatchTargetWrap::Unwrap(o);
  w->target = t;
  w->model = model;
  return o;
}

std::shared_ptr<MatchTarget> MatchTargetWrap::unwrap(const Napi::Value& v, const std::shared_ptr<ModelEngine>& model) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(g_ctor->Value()))
    throw Napi::TypeError::New(v.Env(), "expected a MatchTarget from model.buildTarget()");
  MatchTargetWrap* w = MatchTargetWrap::Unwrap(v.As<Napi::Object>());
  if (!w->target) throw Napi::TypeError::New(v.Env(), "expected a MatchTarget from model.buildTarget()");
  if (w->model != model) throw Napi::Error::New(v.Env(), "the MatchTarget belongs to another model");
  return w->target;
}

Napi::Value MatchTargetWrap::Norm(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), target->norm); }
Napi::Value MatchTargetWrap::Count(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), target->n); }
Napi::Value MatchTargetWrap::ExampleNorms(const Napi::CallbackInfo& info) {
  return copy_out(info.Env(), target->example_norms.data(), target->example_norms.size());
}

}  // namespace addon
}  // namespace gradmm
