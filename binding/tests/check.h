// The check harness shared by the standalone test executables: PASS/FAIL lines, a seeded RNG, normwise relative
// error and central finite differences (in double). main() prints "N passed, N failed" from g_passed / g_failed.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

inline int g_passed = 0, g_failed = 0;

inline void report(const std::string& name, double err, double tol) {
  bool ok = std::isfinite(err) && err <= tol;
  std::printf("%s %-60s err=%.3e tol=%.1e\n", ok ? "PASS" : "FAIL", name.c_str(), err, tol);
  (ok ? g_passed : g_failed)++;
}
struct Rng {
  std::mt19937_64 gen;
  explicit Rng(uint64_t seed) : gen(seed) {}
  double normal() { return std::normal_distribution<double>(0.0, 1.0)(gen); }
  int below(int n) { return std::uniform_int_distribution<int>(0, n - 1)(gen); }
};

inline std::vector<double> randn(Rng& rng, size_t n, double scale = 1.0) {
  std::vector<double> v(n);
  for (auto& x : v) x = rng.normal() * scale;
  return v;
}
inline std::vector<float> to_f(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

// Normwise relative error ||a-b|| / max(||a||, ||b||, tiny).
template <typename A, typename B>
inline double rel_err(const A& a, const B& b) {
  double num = 0, da = 0, db = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += ((double)a[i] - (double)b[i]) * ((double)a[i] - (double)b[i]);
    da += (double)a[i] * a[i];
    db += (double)b[i] * b[i];
  }
  return std::sqrt(num) / std::max(1e-30, std::sqrt(std::max(da, db)));
}

// Central differences of loss() w.r.t. x at up to `samples` coordinates, compared with analytic gradient `grad`.
inline double fd_error(std::vector<double>& x, const std::vector<double>& grad, const std::function<double()>& loss,
                       Rng& rng, int samples = 40) {
  std::vector<double> num, ana;
  const double h = 1e-6;
  for (int s = 0; s < samples && s < (int)x.size(); ++s) {
    size_t i = x.size() <= (size_t)samples ? (size_t)s : (size_t)rng.below((int)x.size());
    double orig = x[i];
    x[i] = orig + h;
    double lp = loss();
    x[i] = orig - h;
    double lm = loss();
    x[i] = orig;
    num.push_back((lp - lm) / (2 * h));
    ana.push_back(grad[i]);
  }
  return rel_err(num, ana);
}
