// Which backend the engine uses and why: CUDA when compiled in and a device answers, the CPU otherwise;
// GRADMM_BACKEND=cpu|cuda|cpu-table|auto forces one. The CUDA probe (cudaGetDeviceCount, once, lazily) is skipped
// under GRADMM_BACKEND=cpu. A fallback to the CPU prints one line on stderr, once, when CUDA was requested or compiled
// in. Compiled with the addon, where GRADMM_HAVE_CUDA says whether binding/cuda is linked.
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "engine.h"
#ifdef GRADMM_HAVE_CUDA
#include "cuda_ops.h"
#endif

namespace gradmm {

#ifndef GRADMM_HAVE_CUDA
const Backend* cuda_backend() { return nullptr; }
#endif

const BackendChoice& backend_choice() {
  static BackendChoice c;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("GRADMM_BACKEND");
    std::string want = env ? env : "";
    for (auto& ch : want) ch = (char)std::tolower((unsigned char)ch);
    std::string prefix;
    if (!want.empty() && want != "cpu" && want != "cuda" && want != "auto" && want != "cpu-table") {
      prefix = "GRADMM_BACKEND=" + want + " is not cpu|cuda|cpu-table|auto (ignored); ";
      want.clear();
    }
    c.backend = cpu_backend();
    if (want == "cpu-table") {
      c.chosen = "cpu-table";
      c.backend = cpu_table_backend();
      c.reason = prefix + "GRADMM_BACKEND=cpu-table: the CPU ops behind device-style memory (the host mirror and "
                          "residency of the GPU path, tested without a GPU)";
    }
#ifdef GRADMM_HAVE_CUDA
    c.compiled = true;
    const auto bi = cuda::build_info();
    c.cublas = bi.cublas;
    c.archs = bi.archs;
    c.cuda_runtime = bi.cuda_runtime;
    if (want == "cpu") {
      c.reason = prefix + "forced by GRADMM_BACKEND=cpu";
      return;
    }
    if (want == "cpu-table") return;
    const cuda::Probe& p = cuda::probe();
    for (const auto& d : p.devices) c.devices.push_back({d.name, (double)d.memory, d.major, d.minor});
    if (p.ok && cuda_backend()) {
      c.chosen = "cuda";
      c.backend = cuda_backend();
      c.reason = prefix + (want == "cuda" ? "forced by GRADMM_BACKEND=cuda" : "CUDA device found") + " (" +
                 p.devices[0].name + ")";
      c.note = "on CUDA: every model call (forward, backward, adamwStep, decode, buildTarget, matchLoss, project, the "
               "batch's init, xUpdate, project, zLoss); parameters, gradients and Adam moments are copied back to the "
               "host when read";
    } else {
      c.reason = prefix + (want == "cuda" ? "GRADMM_BACKEND=cuda, but CUDA is unavailable: " : "CUDA unavailable: ") + p.error;
      std::fprintf(stderr, "gradmm: CUDA backend unavailable (%s); using the CPU engine\n", p.error.c_str());
    }
#else
    if (want == "cpu-table") return;
    if (want == "cuda") {
      c.reason = prefix + "GRADMM_BACKEND=cuda, but this build has no CUDA (nvcc not found at build time, or GRADMM_CUDA=OFF)";
      std::fprintf(stderr, "gradmm: GRADMM_BACKEND=cuda but this build has no CUDA support; using the CPU engine\n");
    } else {
      c.reason = prefix + "built without CUDA";
    }
#endif
  });
  return c;
}

}  // namespace gradmm
