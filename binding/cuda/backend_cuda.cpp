// The CUDA backend table and the runtime facts (host code: compiled by the C++ compiler against the CUDA runtime
// API; the kernels and their launchers are in ops.cu and matmul.cu).
#include <cuda_runtime_api.h>

#include <cctype>
#include <cstdlib>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>

#include "backend.h"
#include "cuda_ops.h"

#ifndef GRADMM_CUDA_ARCHS
#define GRADMM_CUDA_ARCHS "unknown"
#endif

namespace gradmm {
namespace cuda {

void check(int err, const char* what) {
  if (err != cudaSuccess) {
    const cudaError_t e = (cudaError_t)err;
    throw std::runtime_error(std::string("gradmm CUDA: ") + what + ": " + cudaGetErrorName(e) + " (" +
                             cudaGetErrorString(e) + ")");
  }
}
void check_launch(const char* what) { check((int)cudaGetLastError(), what); }
void synchronize() { check((int)cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

BuildInfo build_info() {
  BuildInfo b;
  b.cublas = have_cublas();
  b.archs = GRADMM_CUDA_ARCHS;
  b.cuda_runtime = CUDART_VERSION;
  return b;
}

namespace {
// Lowest numeric architecture in the compiled list ("80,90" → 80; 0 when not numeric, e.g. "native").
int lowest_arch() {
  int lowest = 0;
  const char* s = GRADMM_CUDA_ARCHS;
  while (*s) {
    if (std::isdigit((unsigned char)*s)) {
      int v = 0;
      while (std::isdigit((unsigned char)*s)) v = v * 10 + (*s++ - '0');
      if (lowest == 0 || v < lowest) lowest = v;
      while (*s && *s != ',' && *s != ';') ++s;  // skip suffixes such as "-real"
    } else if (*s == ',' || *s == ';') {
      ++s;
    } else {
      return 0;
    }
  }
  return lowest;
}
}  // namespace

const Probe& probe() {
  static Probe p;
  static std::once_flag once;
  std::call_once(once, [] {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      if (e == cudaErrorInsufficientDriver)
        p.error = "no NVIDIA driver found, or it is older than this build's CUDA runtime " +
                  std::to_string(CUDART_VERSION / 1000) + "." + std::to_string(CUDART_VERSION % 1000 / 10) +
                  " (cudaErrorInsufficientDriver)";
      else if (e == cudaErrorNoDevice)
        p.error = "no CUDA device (cudaErrorNoDevice)";
      else
        p.error = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
      cudaGetLastError();
      return;
    }
    if (n <= 0) {
      p.error = "no CUDA device";
      return;
    }
    const int lowest = lowest_arch();
    std::string too_old;
    for (int i = 0; i < n; ++i) {
      cudaDeviceProp prop;
      if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) {
        cudaGetLastError();
        continue;
      }
      DeviceInfo d;
      d.name = prop.name;
      d.memory = prop.totalGlobalMem;
      d.major = prop.major;
      d.minor = prop.minor;
      p.devices.push_back(d);
      if (lowest && prop.major * 10 + prop.minor < lowest && too_old.empty())
        too_old = d.name + " has compute capability " + std::to_string(d.major) + "." + std::to_string(d.minor) +
                  ", below this build's architectures (" + GRADMM_CUDA_ARCHS + ")";
    }
    if (p.devices.empty()) p.error = "no CUDA device could be queried";
    else if (!too_old.empty()) p.error = too_old;  // device 0 runs our kernels: all must be new enough
    else p.ok = true;
  });
  return p;
}

namespace {

const char* products() {
  switch (resolved_gemm_mode()) {
    case GemmMode::CublasTF32: return "cuBLAS TF32";
    case GemmMode::CublasF32: return "cuBLAS f32";
    case GemmMode::TF32: return "own TF32 tensor-core kernel";
    default: return "own f32 kernel";
  }
}
void* alloc(size_t bytes) {
  void* p = nullptr;
  if (bytes == 0) bytes = 1;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error("gradmm CUDA: cudaMalloc of " + std::to_string(bytes) + " bytes failed: " +
                             cudaGetErrorString(e));
  }
  return p;
}
void release(void* p) {
  if (p) cudaFree(p);
}
void to_device(void* dst, const void* src, size_t bytes) {
  if (bytes) check((int)cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy host→device");
}
void to_host(void* dst, const void* src, size_t bytes) {
  if (bytes) check((int)cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy device→host");
}
void copy(void* dst, const void* src, size_t bytes) {
  if (bytes) check((int)cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), "cudaMemcpy device→device");
}
void zero(void* p, size_t bytes) {
  if (bytes) check((int)cudaMemset(p, 0, bytes), "cudaMemset");
}

Backend make_table() {
  Backend b{};
  b.name = "cuda";
  b.host_memory = false;
  b.products = products;
  b.alloc = alloc;
  b.free = release;
  b.to_device = to_device;
  b.to_host = to_host;
  b.copy = copy;
  b.zero = zero;
  b.embedding_forward = embedding_forward;
  b.embedding_backward = embedding_backward;
  b.input_embedding_forward = input_embedding_forward;
  b.input_embedding_backward = input_embedding_backward;
  b.layernorm_forward = layernorm_forward;
  b.layernorm_backward = layernorm_backward;
  b.gemm = gemm;
  b.matmul_forward = matmul_forward;
  b.matmul_backward = matmul_backward;
  b.gelu_forward = gelu_forward;
  b.gelu_backward = gelu_backward;
  b.residual_forward = residual_forward;
  b.residual_backward = residual_backward;
  b.softmax_crossentropy_forward = softmax_crossentropy_forward;
  b.softmax_crossentropy_backward = softmax_crossentropy_backward;
  b.clip_adamw = clip_adamw;
  b.gather_rows = gather_rows;
  b.scatter_rows = scatter_rows;
  b.onehot_sub = onehot_sub;
  b.scale_cols = scale_cols;
  b.row_dot = row_dot;
  b.gm_combine = gm_combine;
  b.gm_bias_combine = gm_bias_combine;
  b.scale_by = scale_by;
  b.axpy_by = axpy_by;
  b.softmax_jvp_rows = softmax_jvp_rows;
  b.x_adam_step = x_adam_step;
  b.fill = fill;
  b.dual_point = dual_point;
  b.dual_update = dual_update;
  b.gather_rows_at = gather_rows_at;
  b.scatter_rows_at = scatter_rows_at;
  b.rmsnorm_forward = rmsnorm_forward;
  b.rmsnorm_backward = rmsnorm_backward;
  b.rope_forward = rope_forward;
  b.rope_backward = rope_backward;
  b.swiglu_forward = swiglu_forward;
  b.swiglu_backward = swiglu_backward;
  b.geglu_forward = geglu_forward;
  b.geglu_backward = geglu_backward;
  b.linear_forward = linear_forward;
  b.linear_backward = linear_backward;
  b.gqa_attention_forward = gqa_attention_forward;
  b.gqa_attention_backward = gqa_attention_backward;
  b.gqa_attention_decode_forward = gqa_attention_decode_forward;
  b.project_choose = project_choose;
  return b;
}

}  // namespace
}  // namespace cuda

const Backend* cuda_backend() {
  if (!cuda::probe().ok) return nullptr;
  static const Backend table = cuda::make_table();
  return &table;
}

}  // namespace gradmm
