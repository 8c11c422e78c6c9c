// The method's ops (method_ops.h) and the projection's choice on a backend against their CPU specification.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "harness.h"
#include "llama_ops.h"
#include "method_ops.h"
#include "ops.h"

namespace gradmm {
namespace check {
// the method's ops: the CPU backend (method_ops.h) is the reference
static void check_gradmatch_ops(const Backend* be, Rng& r, int n, int B, int V, int C, int L, int free_len) {
  const Backend* cpu = cpu_backend();
  const std::string s = "(n=" + std::to_string(n) + ",B=" + std::to_string(B) + ",V=" + std::to_string(V) + ")";
  auto run2 = [&](auto&& fn) {  // returns {device result, cpu result}
    return std::make_pair(fn(be), fn(cpu));
  };
  {  // gather / scatter
    auto src = randn(r, (size_t)B * L * C), rows = randn(r, (size_t)B * C), base = randn(r, (size_t)B * L * C);
    auto res = run2([&](const Backend* k) {
      auto dsrc = up(k, src);
      BackendBuffer<float> dst(k, (size_t)B * C);
      k->gather_rows(dst.data(), dsrc.data(), B, C, L, L - 1);
      return down(k, dst);
    });
    report("gather_rows " + s, nmse(res.first, res.second), kTolExact);
    for (int acc = 0; acc < 2; ++acc) {
      auto res2 = run2([&](const Backend* k) {
        auto drows = up(k, rows), dbase = up(k, base);
        k->scatter_rows(dbase.data(), drows.data(), B, C, L, L - 1, acc);
        return down(k, dbase);
      });
      report(std::string("scatter_rows") + (acc ? " acc " : " ") + s, nmse(res2.first, res2.second), kTolExact);
    }
    std::vector<int> idx(B);  // distinct rows, one per sequence, at varying positions
    for (int b = 0; b < B; ++b) idx[b] = b * L + r.below(L);
    auto res3 = run2([&](const Backend* k) {
      auto dsrc = up(k, src);
      auto didx = up(k, idx);
      BackendBuffer<float> dst(k, (size_t)B * C);
      k->gather_rows_at(dst.data(), dsrc.data(), didx.data(), B, C);
      return down(k, dst);
    });
    report("gather_rows_at " + s, nmse(res3.first, res3.second), kTolExact);
    for (int acc = 0; acc < 2; ++acc) {
      auto res4 = run2([&](const Backend* k) {
        auto drows = up(k, rows), dbase = up(k, base);
        auto didx = up(k, idx);
        k->scatter_rows_at(dbase.data(), drows.data(), didx.data(), B, C, acc);
        return down(k, dbase);
      });
      report(std::string("scatter_rows_at") + (acc ? " acc " : " ") + s, nmse(res4.first, res4.second), kTolExact);
    }
  }
  auto P = randn(r, (size_t)B * V);
  for (auto& x : P) x = std::fabs(x) / V;
  auto labels = randint(r, B, V);
  {
    auto res = run2([&](const Backend* k) {
      auto dP = up(k, P);
      auto dl = up(k, labels);
      BackendBuffer<float> A(k, P.size());
      k->onehot_sub(A.data(), dP.data(), dl.data(), B, V);
      return down(k, A);
    });
    report("onehot_sub " + s, nmse(res.first, res.second), kTolExact);
    std::vector<float> mask(V, 0.f);
    for (int v = 0; v < V; v += 3) mask[v] = 1.f;
    auto res2 = run2([&](const Backend* k) {
      auto dA = up(k, P), dm = up(k, mask);
      k->scale_cols(dA.data(), dm.data(), B, V);
      return down(k, dA);
    });
    report("scale_cols " + s, nmse(res2.first, res2.second), kTolExact);
  }
  auto Gm = randn(r, (size_t)B * V);
  {
    auto res = run2([&](const Backend* k) {
      auto a = up(k, P), b = up(k, Gm);
      BackendBuffer<double> out(k, B);
      k->row_dot(out.data(), a.data(), b.data(), B, V);
      return down(k, out);
    });
    report("row_dot " + s, nmse(res.first, res.second), 1e-20);
    auto res2 = run2([&](const Backend* k) {
      auto a = up(k, P), b = up(k, Gm);
      BackendBuffer<float> out(k, P.size());
      k->softmax_jvp_rows(out.data(), a.data(), b.data(), B, V);
      return down(k, out);
    });
    report("softmax_jvp_rows " + s, nmse(res2.first, res2.second), kTolExact);
  }
  for (int noisy = 0; noisy < 3; ++noisy) {  // 0: plain, 1: DP noise, 2: the contrastive mean (GmMean)
    auto RA = randn(r, (size_t)n * B), RH = randn(r, (size_t)n * B), SA = randn(r, (size_t)B * B),
         SH = randn(r, (size_t)B * B), RAm = randn(r, (size_t)n * B);
    for (int j = 0; j < B; ++j) SA[(size_t)j * B + j] = std::fabs(SA[(size_t)j * B + j]) + 1.f, SH[(size_t)j * B + j] = std::fabs(SH[(size_t)j * B + j]) + 1.f;
    std::vector<double> nd(B);
    for (auto& x : nd) x = r.normal();
    auto res = run2([&](const Backend* k) {
      auto a = up(k, RA), b = up(k, RH), c = up(k, SA), d = up(k, SH), am = up(k, RAm);
      auto e = up(k, nd);
      BackendBuffer<GmScalars> out(k, 1);
      BackendBuffer<float> per(k, B), loss(k, 1);
      GmMean mean;
      if (noisy == 2) mean.RAm = am.data(), mean.norm2 = 40.0, mean.dot = 0.3;
      k->gm_combine(out.data(), per.data(), loss.data(), a.data(), b.data(), c.data(), d.data(),
                    noisy == 1 ? e.data() : nullptr, n, B, 3.7, mean);
      auto o = down(k, out);
      std::vector<double> v = {o[0].S, o[0].Q, o[0].SM, o[0].cosine, o[0].f, o[0].cS, o[0].cN, o[0].cQ, o[0].cM};
      for (float x : down(k, per)) v.push_back(x);
      v.push_back(down(k, loss)[0]);
      return v;
    });
    report(std::string("gm_combine") + (noisy == 1 ? " noise " : noisy == 2 ? " mean " : " ") + s, nmse(res.first, res.second), kTolExact);
    // the lm_head bias's part after it (models with an lm_head bias)
    std::vector<double> dots = {r.normal(), std::fabs(r.normal()) + 1.0};
    auto own = randn(r, B);
    auto resb = run2([&](const Backend* k) {
      auto a = up(k, RA), b = up(k, RH), c = up(k, SA), d = up(k, SH);
      auto e = up(k, nd), dd = up(k, dots);
      auto ow = up(k, own);
      BackendBuffer<GmScalars> out(k, 1);
      BackendBuffer<float> per(k, B), loss(k, 1);
      k->gm_combine(out.data(), per.data(), loss.data(), a.data(), b.data(), c.data(), d.data(),
                    noisy == 1 ? e.data() : nullptr, n, B, 3.7, GmMean{});
      k->gm_bias_combine(out.data(), per.data(), loss.data(), dd.data(), ow.data(), c.data(), B, 2.3);
      auto o = down(k, out);
      std::vector<double> v = {o[0].S, o[0].Q, o[0].cosine, o[0].f, o[0].cS, o[0].cN, o[0].cQ, o[0].cb1, o[0].cb2};
      for (float x : down(k, per)) v.push_back(x);
      v.push_back(down(k, loss)[0]);
      return v;
    });
    report(std::string("gm_bias_combine") + (noisy == 1 ? " noise " : noisy == 2 ? " (mean run) " : " ") + s, nmse(resb.first, resb.second), kTolExact);
  }
  {
    auto x = randn(r, 1000), y = randn(r, 1000);
    std::vector<float> k2 = {-0.37f};
    auto res = run2([&](const Backend* k) {
      auto dx = up(k, x), dy = up(k, y), dk = up(k, k2);
      k->scale_by(dx.data(), 1000, dk.data());
      k->axpy_by(dy.data(), dx.data(), 1000, dk.data());
      k->fill(dx.data(), 7, 2.5f);
      auto a = down(k, dx), b = down(k, dy);
      a.insert(a.end(), b.begin(), b.end());
      return a;
    });
    report("scale_by + axpy_by + fill", nmse(res.first, res.second), kTolExact);
  }
  {
    const long row_n = (long)L * C, free_n = (long)free_len * C, tot = (long)B * row_n;
    auto X = randn(r, tot), dX = randn(r, tot, 0.01f), z = randn(r, tot), lam = randn(r, tot, 0.1f),
         m = randn(r, tot, 0.01f), v = randn(r, tot, 0.01f);
    for (auto& q : v) q = q * q;
    for (float max_norm : {0.f, 1.f}) {
      auto res = run2([&](const Backend* k) {
        auto dXb = up(k, X), ddX = up(k, dX), dz = up(k, z), dl = up(k, lam), dm = up(k, m), dv = up(k, v);
        BackendBuffer<float> g(k, tot);
        BackendBuffer<double> ns(k, 1024);
        k->x_adam_step(dXb.data(), dm.data(), dv.data(), ddX.data(), dz.data(), dl.data(), g.data(), ns.data(), B, row_n,
                       free_n, 0.1f, max_norm, 0.9f, 0.999f, 1e-8f, 0.008f / (1.f - 0.9f), std::sqrt(1.f - 0.999f));
        auto a = down(k, dXb), b = down(k, dm), c = down(k, dv);
        a.insert(a.end(), b.begin(), b.end());
        a.insert(a.end(), c.begin(), c.end());
        return a;
      });
      report(std::string("x_adam_step") + (max_norm > 0 ? " clipped " : " ") + s, nmse(res.first, res.second),
             kTolExact);
    }
  }
  {  // the dual variable: u = x + λ/ρ and λ += ρ(x − z) on the free positions (double arithmetic, one rounding)
    const long row_n = (long)L * C, free_n = (long)free_len * C, tot = (long)B * row_n;
    auto X = randn(r, tot), z = randn(r, tot), lam = randn(r, tot, 0.1f), u0 = randn(r, tot);
    auto res = run2([&](const Backend* k) {
      auto dXb = up(k, X), dz = up(k, z), dl = up(k, lam), du = up(k, u0);
      k->dual_point(du.data(), dXb.data(), dl.data(), B, row_n, free_n, 0.1);
      k->dual_update(dl.data(), dXb.data(), dz.data(), B, row_n, free_n, 0.1);
      auto a = down(k, du), b = down(k, dl);
      a.insert(a.end(), b.begin(), b.end());
      return a;
    });
    report("dual_point + dual_update " + s, nmse(res.first, res.second), 0.0);
  }
}

// The projection's choice: the table's project_choose against admm.cpp choose_tokens (exact ids), and choose_tokens
// itself against a full sort of the (key, id) pairs. Modes: 0 random values; 1 heavy ties (similarities and logits
// from a handful of values, a quarter of the tokens of norm zero so their keys are −0 or +0, some ±inf similarities
// and logits, +0 and −0 logits); 2 every key and every logit equal (the choice falls to the ids alone).
static void check_project_choose(const Backend* be, Rng& r, int B, int V, int n_allowed, int k, int mode) {
  const std::string s = "(B=" + std::to_string(B) + ",V=" + std::to_string(V) + ",allowed=" +
                        std::to_string(n_allowed) + ",k=" + std::to_string(k) +
                        (mode == 1 ? ",ties" : mode == 2 ? ",all equal" : "") + ")";
  std::vector<int> ids(V);
  for (int v = 0; v < V; ++v) ids[v] = v;
  std::shuffle(ids.begin(), ids.end(), r.gen);
  ids.resize(n_allowed);
  std::sort(ids.begin(), ids.end());
  std::vector<float> sims((size_t)B * V), logits((size_t)B * V), inv_norm(V);
  for (int v = 0; v < V; ++v)
    inv_norm[v] = mode == 2 ? 1.f : mode == 1 ? (r.below(4) == 0 ? 0.f : r.below(2) ? 1.f : 0.5f)
                                              : 1.f / (0.1f + std::fabs(r.normal()));
  for (size_t i = 0; i < sims.size(); ++i) {
    const int v = (int)(i % V);
    if (mode == 2) {
      sims[i] = 0.25f, logits[i] = -1.5f;
    } else if (mode == 1) {
      sims[i] = 0.5f * (float)(r.below(5) - 2);  // −1 … 1, zero included (keys −0 for +0 and 0 similarities)
      if (inv_norm[v] > 0 && r.below(61) == 0) sims[i] = r.below(2) ? INFINITY : -INFINITY;  // never inf·0
      const int l = r.below(9);
      logits[i] = l == 0 ? -0.f : l == 1 ? 0.f : l == 2 ? 2.f : l == 3 ? -2.f : l == 4 ? 1.f
                : l == 5 ? -INFINITY : l == 6 && r.below(8) == 0 ? INFINITY : 1.5f;
    } else {
      sims[i] = r.normal();
      logits[i] = 3.f * r.normal();
    }
  }
  std::vector<int> ref(B, -1), brute(B, -1);
  choose_tokens(ref.data(), sims.data(), logits.data(), inv_norm.data(), ids.data(), n_allowed, B, V, k);
  for (int b = 0; b < B; ++b) {
    std::vector<std::pair<float, int>> cand(n_allowed);
    for (int j = 0; j < n_allowed; ++j) cand[j] = {-sims[(size_t)b * V + ids[j]] * inv_norm[ids[j]], ids[j]};
    std::sort(cand.begin(), cand.end());
    int best = cand[0].second;
    for (int j = 1; j < k; ++j) {
      const int v = cand[j].second;
      const float lv = logits[(size_t)b * V + v], lb = logits[(size_t)b * V + best];
      if (lv > lb || (lv == lb && v < best)) best = v;
    }
    brute[b] = best;
  }
  auto differing = [&](const std::vector<int>& got) {
    int d = 0;
    for (int b = 0; b < B; ++b) d += got[b] != ref[b];
    return (double)d / B;
  };
  report("choose_tokens = full sort " + s, differing(brute), 0.0);
  auto dsims = up(be, sims), dlogits = up(be, logits), dinv = up(be, inv_norm);
  auto dids = up(be, ids);
  BackendBuffer<int> dchosen(be, B);
  be->project_choose(dchosen.data(), dsims.data(), dlogits.data(), dinv.data(), dids.data(), n_allowed, B, V, k);
  report("project_choose " + s, differing(down(be, dchosen)), 0.0);
}

// project_choose's argument checks: k outside [1, n_allowed], no token allowed.
static void check_project_choose_args(const Backend* be) {
  BackendBuffer<float> f(be, 8);
  BackendBuffer<int> ids(be, 4), chosen(be, 2);
  auto throws = [&](int n_allowed, int k) {
    try {
      be->project_choose(chosen.data(), f.data(), f.data(), f.data(), ids.data(), n_allowed, 2, 4, k);
    } catch (const std::invalid_argument&) {
      return true;
    }
    return false;
  };
  report("project_choose rejects k = 0, k > n_allowed, n_allowed = 0",
         throws(4, 0) && throws(3, 4) && throws(0, 1) ? 0.0 : 1.0, 0.0);
}

void run_method_op_checks(const Backend* be, Rng& r) {
  check_gradmatch_ops(be, r, 1, 1, 9, 4, 3, 2);
  check_gradmatch_ops(be, r, 37, 6, 1009, 48, 7, 5);
  check_project_choose(be, r, 1, 1, 1, 1, 0);
  check_project_choose(be, r, 3, 50, 50, 1, 1);
  check_project_choose(be, r, 3, 50, 50, 50, 1);
  check_project_choose(be, r, 5, 1009, 700, 6, 1);
  check_project_choose(be, r, 5, 1009, 700, 700, 1);
  check_project_choose(be, r, 5, 1009, 700, 350, 1);  // the k-th key among the ±0 keys
  check_project_choose(be, r, 6, 1009, 1, 1, 1);
  check_project_choose(be, r, 2, 1009, 300, 37, 0);
  check_project_choose(be, r, 3, 1000, 999, 10, 2);
  check_project_choose(be, r, 2, 1000, 999, 999, 2);
  check_project_choose(be, r, 7, 4099, 4099, 4099, 0);
  check_project_choose(be, r, 4, 50257, 50257, 200, 0);
  check_project_choose(be, r, 4, 50257, 40000, 200, 1);
  check_project_choose(be, r, 4, 50257, 40000, 20000, 1);
  check_project_choose(be, r, 2, 128256, 100000, 1000, 1);
  check_project_choose(be, r, 9, 128256, 128256, 200, 0);
  check_project_choose_args(be);
}

}  // namespace check
}  // namespace gradmm
