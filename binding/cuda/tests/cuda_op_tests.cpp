// Standalone checks of the CUDA backend (no Node): every op of the backend table on the device against its CPU
// specification (binding/src/ops.h, llama_ops.h, method_ops.h), forward and backward, on random shapes including odd
// sizes, compared by normalised MSE  Σ(got − ref)² / Σ ref²  under a per-op tolerance; then the one engine
// (binding/engine) end to end on the device against the engine on the CPU backend: GPT-2 and two Llama-family shapes
// (forward, backward, AdamW, decode) and the method (target, matcher, a batch's x-update, projection and dual update).
// The projection's choice (project_choose) must give choose_tokens' ids exactly, ties included, on every backend.
// The families live in harness.h's files.
//
// The same harness first runs with the CPU ops behind device-style memory (cpu_table_backend) in place of the device
// (no GPU needed): that checks the harness itself, the table wiring and the engine's host mirror, which must
// reproduce the CPU engine exactly (tolerance 0). Without a usable CUDA device the device part prints
// "SKIP: no CUDA device (...)". Last line: "N passed, M failed"; exit status 1 on any failure.
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_ops.h"
#include "harness.h"

using namespace gradmm;
using namespace gradmm::check;

static int g_passed = 0, g_failed = 0;
std::string gradmm::check::g_prefix;

void gradmm::check::report(const std::string& name, double err, double tol) {
  const bool ok = std::isfinite(err) && err <= tol;
  std::printf("%s %s%-52s nmse=%.3e tol=%.1e\n", ok ? "PASS" : "FAIL", g_prefix.c_str(), name.c_str(), err, tol);
  std::fflush(stdout);
  (ok ? g_passed : g_failed)++;
}

static void run_op_checks(const Backend* be, double gemm_tol) {
  Rng r(1234);
  run_model_op_checks(be, r, gemm_tol);
  run_llama_op_checks(be, r, gemm_tol);
  run_method_op_checks(be, r);
}

int main() {
  // ---- 1. host: the harness, the table and the engine's host mirror against the CPU engine, bit for bit ----
  g_prefix = "cpu-table ";
  try {
    run_op_checks(cpu_table_backend(), kTolExact);
    Rng r(99);
    check_engine_models(cpu_table_backend(), r, 0.0);
    check_engine_method(cpu_table_backend(), r, 0.0, 0.0, 0.0);
  } catch (const std::exception& e) {
    std::printf("FAIL cpu-table checks threw: %s\n", e.what());
    g_failed++;
  }

  // ---- 2. device ----
  const cuda::Probe& p = cuda::probe();
  const Backend* dev = cuda_backend();
  if (!dev) {
    std::printf("SKIP: no CUDA device (%s)\n", p.error.c_str());
  } else {
    const auto bi = cuda::build_info();
    std::printf("device: %s, %.1f GiB, compute capability %d.%d; build: archs %s, cuBLAS %s, CUDA runtime %d\n",
                p.devices[0].name.c_str(), p.devices[0].memory / 1073741824.0, p.devices[0].major, p.devices[0].minor,
                bi.archs, bi.cublas ? "yes" : "no", bi.cuda_runtime);
    try {
      g_prefix = "cuda ";
      cuda::set_gemm_mode(cuda::GemmMode::F32);  // exact path for the op checks
      run_op_checks(dev, kTolExact);
      Rng r(4321);
      const std::vector<cuda::GemmMode> modes = {cuda::GemmMode::TF32, cuda::GemmMode::CublasF32, cuda::GemmMode::CublasTF32};
      for (cuda::GemmMode m : modes) {
        if ((m == cuda::GemmMode::CublasF32 || m == cuda::GemmMode::CublasTF32) && !cuda::have_cublas()) continue;
        cuda::set_gemm_mode(m);
        const double tol = m == cuda::GemmMode::CublasF32 ? kTolExact : kTolTF32;
        const char* name = cuda::gemm_mode_name(m);
        check_gemm(dev, r, name, tol, 7, 13, 5);
        check_gemm(dev, r, name, tol, 130, 70, 33);
        check_gemm(dev, r, name, tol, 5, 70, 4099);
        check_gemm(dev, r, name, tol, 256, 192, 128);
        check_gqa_attention(dev, r, 2, 37, 4, 4, 16, tol);
        check_gqa_attention(dev, r, 2, 37, 8, 2, 24, tol);
        check_linear(dev, r, 67, 64, 24, 37, true, tol);
      }
      cuda::set_gemm_mode(cuda::GemmMode::F32);
      check_engine_models(dev, r, 1e-9);
      // x: an Adam step near g = 0 may flip sign (2·lr) on one coordinate; projected tokens: a near-tie among the
      // top-k may fall the other way, and every later position of that row follows it
      check_engine_method(dev, r, 1e-9, 1e-5, 0.2);
      cuda::set_gemm_mode(cuda::GemmMode::Auto);
      g_prefix = std::string("cuda ") + cuda::gemm_mode_name(cuda::resolved_gemm_mode()) + " ";
      check_engine_models(dev, r, 1e-4);
      check_engine_method(dev, r, 1e-4, 1e-2, 1.0);  // tokens under TF32: reported, not judged
    } catch (const std::exception& e) {
      std::printf("FAIL cuda checks threw: %s\n", e.what());
      g_failed++;
    }
  }
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
