// KV-cached decoding against a full forward, for the standalone tests (engine_tests, llama_tests).
#pragma once
#include <algorithm>
#include <vector>

#include "check.h"
#include "host_model.h"
namespace gradmm {
// KV-cached decoding against a full forward: a P-token prefix decoded once into a one-row cache, then R rows
// continuing it (the first two continuation tokens as one chunk, then one at a time). Returns the largest relative
// error of the logits and of the final hidden states (hidden_out) against the full forward's.
struct KVCacheErrors {
  double logits = 0, hidden = 0;
};
inline KVCacheErrors kv_cache_errors(HostModel& m, const std::vector<int>& prefix, const std::vector<int>& cont, int R) {
  const int V = m.dims().vocab_size, C = m.dims().channels, P = (int)prefix.size(), Tc = (int)cont.size() / R,
            S = P + Tc;
  std::vector<int> full((size_t)R * S);
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < P; ++t) full[(size_t)r * S + t] = prefix[t];
    for (int t = 0; t < Tc; ++t) full[(size_t)r * S + P + t] = cont[(size_t)r * Tc + t];
  }
  ForwardArgs fa;
  fa.tokens = full.data();
  fa.B = R;
  fa.T = S;
  fa.all_logits = true;
  m.forward(fa);
  std::vector<float> ref(m.logits(), m.logits() + (size_t)R * S * V), ref_h(m.hidden(), m.hidden() + m.hidden_size());
  auto at = [](const std::vector<float>& v, size_t row, int width) {
    return std::vector<float>(v.begin() + row * width, v.begin() + (row + 1) * width);
  };
  KVCacheErrors e;
  auto pre = m.cache(1, P);
  std::vector<float> lg(V);
  m.decode(pre, prefix.data(), nullptr, P, lg.data());
  e.logits = rel_err(lg, at(ref, P - 1, V));
  auto rows = m.cache(R, Tc, pre);
  std::vector<float> out((size_t)R * V), hid((size_t)R * C);
  for (int t = 0; t < Tc;) {
    const int Tn = t == 0 ? 2 : 1;
    std::vector<int> step((size_t)R * Tn);
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < Tn; ++j) step[(size_t)r * Tn + j] = cont[(size_t)r * Tc + t + j];
    m.decode(rows, step.data(), nullptr, Tn, out.data(), hid.data());
    t += Tn;
    for (int r = 0; r < R; ++r) {
      e.logits = std::max(e.logits, rel_err(at(out, r, V), at(ref, (size_t)r * S + P + t - 1, V)));
      e.hidden = std::max(e.hidden, rel_err(at(hid, r, C), at(ref_h, (size_t)r * S + P + t - 1, C)));
    }
  }
  return e;
}
}  // namespace gradmm
