// Argument checking and async/cancel plumbing shared by the addon's classes: every typed array is checked for type
// and exact length before native code touches it; heavy calls run on libuv's worker pool and settle a Promise; a
// CancelToken shared with the worker stops them between layers.
#pragma once
#include <napi.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace gradmm {
namespace addon {

template <typename TA>
constexpr napi_typedarray_type typed_array_kind();
template <>
constexpr napi_typedarray_type typed_array_kind<Napi::Int32Array>() { return napi_int32_array; }
template <>
constexpr napi_typedarray_type typed_array_kind<Napi::Float32Array>() { return napi_float32_array; }
template <>
constexpr napi_typedarray_type typed_array_kind<Napi::Uint8Array>() { return napi_uint8_array; }

// o[name] as a typed array of exactly `expected` elements ((size_t)-1: any), or an empty one when absent and not
// required.
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
template <typename TA, typename T>
T* data_or_null(TA& a) {
  return a.IsEmpty() ? nullptr : a.Data();
}

int int_field(const Napi::Object& o, const char* name, int min_value);
bool bool_field(const Napi::Object& o, const char* name, bool dflt);
double num_field(const Napi::Object& o, const char* name, double dflt);
// info[i] as an object, or a TypeError naming the call
Napi::Object object_arg(const Napi::CallbackInfo& info, size_t i, const char* call);

class CancelToken : public Napi::ObjectWrap<CancelToken> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit CancelToken(const Napi::CallbackInfo& info);
  std::shared_ptr<std::atomic<bool>> flag;

 private:
  Napi::Value Cancel(const Napi::CallbackInfo& info);
  Napi::Value Get(const Napi::CallbackInfo& info);
};
// The flag of a CancelToken argument, or nullptr.
std::shared_ptr<std::atomic<bool>> cancel_flag(const Napi::Value& v);

// Runs `work` on a libuv worker thread and settles a Promise with `result` (on the JS thread): a Cancelled exception
// rejects with an Error whose code is "ABORTED", any other with its message. `keep` holds JS objects (typed arrays)
// alive while native code reads or writes them.
Napi::Promise run_async(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> result,
                        std::vector<Napi::Value> keep);

// A Float32Array over native memory that keeps `owner` alive until the array is garbage collected.
Napi::Float32Array view(Napi::Env env, std::shared_ptr<void> owner, float* data, size_t n);
Napi::Float32Array copy_out(Napi::Env env, const float* data, size_t n);

}  // namespace addon
}  // namespace gradmm
