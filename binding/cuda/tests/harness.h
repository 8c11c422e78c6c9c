// The harness of the CUDA backend's standalone checks (cuda_op_tests): reporting, random inputs, normalised MSE,
// backend buffers from and to host vectors, and the check families, one file each:
//   ops_model_tests.cpp    the GPT-2 ops and the optimizer (ops.h)
//   ops_llama_tests.cpp    the Llama family's ops and the (grouped-query) attention (llama_ops.h)
//   ops_method_tests.cpp   the method's ops and the projection's choice (method_ops.h)
//   engine_checks.cpp      the one engine end to end on a backend against the engine on the CPU backend
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "backend.h"

namespace gradmm {
namespace check {

void report(const std::string& name, double err, double tol);
extern std::string g_prefix;  // "cpu-table " or "cuda ", before every check's name

struct Rng {
  std::mt19937_64 gen;
  explicit Rng(uint64_t seed) : gen(seed) {}
  float normal() { return (float)std::normal_distribution<double>(0.0, 1.0)(gen); }
  int below(int n) { return std::uniform_int_distribution<int>(0, n - 1)(gen); }
};
inline std::vector<float> randn(Rng& r, size_t n, float scale = 1.f) {
  std::vector<float> v(n);
  for (auto& x : v) x = r.normal() * scale;
  return v;
}
inline std::vector<int> randint(Rng& r, size_t n, int below) {
  std::vector<int> v(n);
  for (auto& x : v) x = r.below(below);
  return v;
}

// Σ(a − b)² / max(Σ b², tiny); sizes must agree.
template <typename A, typename B>
double nmse(const A& a, const B& b) {
  if (a.size() != b.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = (double)a[i] - (double)b[i];
    num += d * d;
    den += (double)b[i] * b[i];
  }
  return num / std::max(den, 1e-30);
}
// relative squared error of two scalars
inline double rel2(double got, double ref) { return (got - ref) * (got - ref) / std::max(ref * ref, 1e-30); }

template <typename T>
BackendBuffer<T> up(const Backend* be, const std::vector<T>& v) {
  BackendBuffer<T> b(be, v.size());
  if (!v.empty()) be->to_device(b.data(), v.data(), v.size() * sizeof(T));
  return b;
}
template <typename T>
std::vector<T> down(const Backend* be, const BackendBuffer<T>& b) {
  std::vector<T> v(b.size());
  if (!v.empty()) be->to_host(v.data(), b.data(), v.size() * sizeof(T));
  return v;
}

// Tolerances (normalised MSE). f32 elementwise and reductions agree to rounding (~1e-14); the exact-f32 GEMM to
// ~1e-13; TF32 inputs (10-bit mantissa) to ~1e-7.
constexpr double kTolExact = 1e-10;
constexpr double kTolTF32 = 1e-5;

// the families: `be` runs each op, the CPU specification is the reference
void run_model_op_checks(const Backend* be, Rng& r, double gemm_tol);
void run_llama_op_checks(const Backend* be, Rng& r, double gemm_tol);
void run_method_op_checks(const Backend* be, Rng& r);
// the products in another mode (after the exact checks)
void check_gemm(const Backend* be, Rng& r, const char* mode, double tol, int M, int N, int K);
void check_gqa_attention(const Backend* be, Rng& r, int B, int T, int NH, int NKV, int hd, double tol, int window = 0);
void check_linear(const Backend* be, Rng& r, int N, int C, int OC, int pad, bool bias, double tol);
// the engine on `be` against the engine on the CPU backend: three model shapes (forward, backward, decode), then the
// method (target, matcher, batch state: x-update, projection, dual update). tol_tok: the fraction of projected
// tokens allowed to differ.
void check_engine_models(const Backend* be, Rng& r, double tol);
void check_engine_method(const Backend* be, Rng& r, double tol_f, double tol_x, double tol_tok);

}  // namespace check
}  // namespace gradmm
