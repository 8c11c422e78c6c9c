// The addon's module: its classes and functions (sgemm, threads, dequantize, backendInfo).
#include <napi.h>

#include "addon.h"
#include "gemm.h"
#include "gemm_bf16.h"
#include "gguf_quants.h"
#include "threadpool.h"

namespace gradmm {
namespace addon {
namespace {

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
// forceBf16Kernel("amx-bf16" | "avx512bf16" | "scalar" | "auto") -> false where unsupported (benchmarks, tests)
Napi::Value ForceBf16Kernel(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) throw Napi::TypeError::New(info.Env(), "forceBf16Kernel: expected a kernel name");
  return Napi::Boolean::New(info.Env(), gemm_bf16_force_kernel(info[0].As<Napi::String>().Utf8Value().c_str()));
}
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
// backendInfo() — which backend the engine uses and why (engine.h backend_choice).
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
  o.Set("products", c.backend->products());
  // bf16 products (a model's precision "bf16"): whether this backend has them, on bf16 hardware (AVX512_BF16), and
  // the kernel
  Napi::Object bf = Napi::Object::New(env);
  bf.Set("available", c.backend->gemm_bf16_packed != nullptr);
  bf.Set("native", c.backend->bf16_native ? c.backend->bf16_native() : false);
  bf.Set("cpuAvx512bf16", cpu_has_avx512bf16());
  if (c.backend->bf16_products) bf.Set("kernel", c.backend->bf16_products());
  else bf.Set("kernel", env.Null());
  o.Set("bf16", bf);
  Napi::Object b = Napi::Object::New(env);
  b.Set("cuda", c.compiled);
  b.Set("cublas", c.cublas);
  b.Set("archs", c.archs);
  if (c.cuda_runtime) b.Set("cudaRuntime", std::to_string(c.cuda_runtime / 1000) + "." + std::to_string(c.cuda_runtime % 1000 / 10));
  else b.Set("cudaRuntime", env.Null());
  o.Set("build", b);
  return o;
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("CancelToken", CancelToken::Init(env));
  exports.Set("KVCache", KVCacheWrap::Init(env));
  exports.Set("MatchTarget", MatchTargetWrap::Init(env));
  exports.Set("Model", ModelWrap::Init(env));
  exports.Set("Batch", BatchWrap::Init(env));
  exports.Set("sgemm", Napi::Function::New(env, Sgemm));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("getThreads", Napi::Function::New(env, GetThreads));
  exports.Set("sgemmKernel", Napi::Function::New(env, KernelName));
  exports.Set("forceSgemmKernel", Napi::Function::New(env, ForceKernel));
  exports.Set("backendInfo", Napi::Function::New(env, BackendInfo));
  exports.Set("forceBf16Kernel", Napi::Function::New(env, ForceBf16Kernel));
  exports.Set("dequantize", Napi::Function::New(env, Dequantize));
  return exports;
}

}  // namespace addon
}  // namespace gradmm

static Napi::Object InitGradmm(Napi::Env env, Napi::Object exports) { return gradmm::addon::Init(env, exports); }
NODE_API_MODULE(gradmm, InitGradmm)
