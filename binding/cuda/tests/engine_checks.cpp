// The one engine end to end on a backend against the same engine on the CPU backend (the CPU ops are the
// specification): GPT-2, two Llama-family shapes and Gemma 3 (forward, backward, parameter gradients, AdamW, decoding with a
// shared prefix), then the method (the target, the matcher, a batch's x-update, projection, z lookup and dual update).
// On the CPU ops behind device-style memory (cpu_table_backend) everything must be equal bit for bit: that tests the
// engine's host mirror and residency without a GPU.
#include <cstring>
#include <memory>

#include "harness.h"
#include "host_model.h"

namespace gradmm {
namespace check {
namespace {

// norm weights near 1, everything else (biases included) N(0, 0.15²); the same values into both models
void init_params(HostModel& ref, HostModel& dev, Rng& r) {
  float* p = ref.params();
  for (const auto& t : ref.param_table()) {
    const bool norm_w = (t.name.find("ln_") != std::string::npos || t.name.find("norm") != std::string::npos) &&
                        t.name.find(".weight") != std::string::npos;
    for (size_t i = 0; i < t.numel(); ++i) p[t.offset + i] = norm_w ? 1.f + 0.1f * r.normal() : 0.15f * r.normal();
  }
  std::memcpy(dev.params(), p, sizeof(float) * ref.num_params());
  ref.params_changed();
  dev.params_changed();
}

std::vector<float> copy(const float* p, size_t n) { return std::vector<float>(p, p + n); }

GPT2Config gpt2_config(int V, int C, int NH) {
  GPT2Config cfg;
  cfg.vocab_size = V;
  cfg.max_seq_len = 16;
  cfg.channels = C;
  cfg.num_layers = 2;
  cfg.num_heads = NH;
  return cfg;
}
// Qwen2-like: grouped-query (6 query heads, 2 kv heads), q/k/v biases, untied lm_head, llama3-scaled RoPE
LlamaConfig qwen2_like(int V) {
  LlamaConfig cfg;
  cfg.vocab_size = V;
  cfg.hidden_size = 48;
  cfg.intermediate_size = 80;
  cfg.num_layers = 2;
  cfg.num_heads = 6;
  cfg.num_kv_heads = 2;
  cfg.max_seq_len = 16;
  cfg.rms_norm_eps = 1e-5f;
  cfg.rope_scaling.llama3 = true;
  cfg.rope_scaling.original_max_position_embeddings = 8;
  cfg.attention_bias = true;
  return cfg;
}
// Llama with one kv head (multi-query), head_dim 14 (q width ≠ channels), every bias, tied lm_head, plain RoPE
LlamaConfig llama_mqa_tied(int V) {
  LlamaConfig cfg = qwen2_like(V);
  cfg.hidden_size = 40;
  cfg.intermediate_size = 72;
  cfg.num_heads = 4;
  cfg.num_kv_heads = 1;
  cfg.head_dim = 14;
  cfg.rope_theta = 500000.0;
  cfg.rope_scaling = RopeScaling();
  cfg.tie_word_embeddings = true;
  cfg.o_proj_bias = cfg.mlp_bias = true;
  return cfg;
}

// Gemma 3: scaled token lookup, (1 + w) sandwich and per-head q/k norms, GeGLU, one kv head, head_dim 12 (q width ≠
// channels), a sliding-window layer (window 4 < T) between full ones, linear rope scaling on the local layers
Gemma3Config gemma3_like(int V) {
  Gemma3Config cfg;
  cfg.vocab_size = V;
  cfg.hidden_size = 32;
  cfg.intermediate_size = 64;
  cfg.num_layers = 3;
  cfg.num_heads = 4;
  cfg.num_kv_heads = 1;
  cfg.head_dim = 12;
  cfg.max_seq_len = 16;
  cfg.rope_local_scaling_factor = 2;
  cfg.sliding_window = 4;
  cfg.sliding = {false, true, false};
  return cfg;
}

void check_model(HostModel& ref, HostModel& dev, Rng& r, const std::string& name, double tol) {
  init_params(ref, dev, r);
  const int B = 3, T = 11, C = ref.dims().channels, V = ref.dims().vocab_size;
  const std::string s = name + " (B=3,T=11,C=" + std::to_string(C) + ",V=" + std::to_string(V) + ")";
  auto both = [&](auto&& fn) { return std::make_pair(fn(dev), fn(ref)); };

  // input embeddings, the loss at the last position: forward, then backward from the loss + d_logits + d_hidden
  auto X = randn(r, (size_t)B * T * C, 0.5f);
  auto labels = randint(r, B, V);
  std::vector<float> mask((size_t)B * T, 0.f);
  std::vector<int> targets((size_t)B * T, 0);
  for (int b = 0; b < B; ++b) mask[(size_t)b * T + T - 1] = 1.f, targets[(size_t)b * T + T - 1] = labels[b];
  ForwardArgs fa;
  fa.embeds = X.data();
  fa.B = B;
  fa.T = T;
  fa.targets = targets.data();
  fa.loss_mask = mask.data();
  const float loss_ref = ref.forward(fa), loss = dev.forward(fa);
  report(s + " forward loss (embeds, last position)", rel2(loss, loss_ref), tol);
  report(s + " forward probs", nmse(copy(dev.probs(), (size_t)B * V), copy(ref.probs(), (size_t)B * V)), tol);
  report(s + " forward hidden", nmse(copy(dev.hidden(), (size_t)B * T * C), copy(ref.hidden(), (size_t)B * T * C)), tol);
  auto dlog = randn(r, (size_t)B * V, 0.1f), dhid = randn(r, (size_t)B * T * C, 0.01f);
  auto res = both([&](HostModel& m) {
    std::vector<float> dE((size_t)B * T * C, 0.f);
    m.zero_grads();
    BackwardArgs ba;
    ba.d_logits = dlog.data();
    ba.d_hidden = dhid.data();
    ba.d_embeds = dE.data();
    m.backward(ba);
    auto g = copy(m.grads(), m.num_params());
    dE.insert(dE.end(), g.begin(), g.end());
    return dE;
  });
  report(s + " backward d_embeds and parameter grads", nmse(res.first, res.second), tol);
  res = both([&](HostModel& m) {  // the input gradient alone, as the matcher runs it
    std::vector<float> dE((size_t)B * T * C, 0.f);
    BackwardArgs ba;
    ba.from_loss = false;
    ba.param_grads = false;
    ba.d_logits = dlog.data();
    ba.d_embeds = dE.data();
    m.backward(ba);
    return dE;
  });
  report(s + " backward d_embeds (no parameter grads)", nmse(res.first, res.second), tol);

  // tokens, logits everywhere, the loss gradient into the parameters, then an AdamW step (clipped)
  auto tokens = randint(r, (size_t)B * T, V), tg = randint(r, (size_t)B * T, V);
  res = both([&](HostModel& m) {
    ForwardArgs fb;
    fb.tokens = tokens.data();
    fb.B = B;
    fb.T = T;
    fb.targets = tg.data();
    std::vector<float> out = {m.forward(fb)};
    m.zero_grads();
    m.backward(BackwardArgs{});
    auto g = copy(m.grads(), m.num_params());
    out.insert(out.end(), g.begin(), g.end());
    out.push_back((float)m.engine().adamw_step(1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 0.5f, 1));
    m.engine().sync_host();
    auto p = copy(m.params(), m.num_params());
    out.insert(out.end(), p.begin(), p.end());
    return out;
  });
  report(s + " tokens: loss, parameter grads, AdamW step", nmse(res.first, res.second), tol);

  // logits at listed positions (a loss mask), an inference forward
  std::vector<int> tg3((size_t)B * T, 0);
  std::vector<float> mask3((size_t)B * T, 0.f);
  for (int b = 0; b < B; ++b) mask3[b * T + T - 1 - 2 * b] = 1.f, tg3[b * T + T - 1 - 2 * b] = labels[b];
  res = both([&](HostModel& m) {
    ForwardArgs fc;
    fc.tokens = tokens.data();
    fc.B = B;
    fc.T = T;
    fc.targets = tg3.data();
    fc.loss_mask = mask3.data();
    fc.keep_activations = false;
    std::vector<float> out = {m.forward(fc)};
    auto p = copy(m.probs(), (size_t)B * V), h = copy(m.hidden(), (size_t)B * T * C);
    out.insert(out.end(), p.begin(), p.end());
    out.insert(out.end(), h.begin(), h.end());
    return out;
  });
  report(s + " inference forward at listed positions: loss, probs, hidden", nmse(res.first, res.second), tol);

  // KV-cached decoding continuing a shared 5-token prefix: 2 new positions, then 1, then 1
  auto ptok = randint(r, 5, V);
  std::vector<std::vector<int>> steps;
  for (int Tn : {2, 1, 1}) steps.push_back(randint(r, (size_t)B * Tn, V));
  res = both([&](HostModel& m) {
    auto prefix = m.cache(1, 5);
    std::vector<float> out(V), lg((size_t)B * V), h((size_t)B * C);
    m.decode(prefix, ptok.data(), nullptr, 5, out.data());
    auto rows = m.cache(B, 4, prefix);
    for (const auto& st : steps) {
      m.decode(rows, st.data(), nullptr, (int)(st.size() / B), lg.data(), h.data());
      out.insert(out.end(), lg.begin(), lg.end());
      out.insert(out.end(), h.begin(), h.end());
    }
    return out;
  });
  report(s + " decode logits and hidden (prefix 5, 2 + 1 + 1 positions)", nmse(res.first, res.second), tol);
}

void check_method(HostModel& ref, HostModel& dev, Rng& r, const std::string& name, double tol_f, double tol_x,
                  double tol_tok) {
  init_params(ref, dev, r);
  const int n = 6, T = 9, B = 4, L = 7, free_len = 5, C = ref.dims().channels, V = ref.dims().vocab_size, label = 17;
  auto tokens = randint(r, (size_t)n * T, V);
  std::vector<int> last_pos(n), labels(n);
  for (int i = 0; i < n; ++i) last_pos[i] = 3 + r.below(T - 3), labels[i] = r.below(V);
  std::vector<uint8_t> allowed(V);
  for (int v = 0; v < V; ++v) allowed[v] = v % 7 != 3;
  const std::vector<int> tmpl = {3, 5};
  auto prompt = randint(r, 4, V);
  // variant 2: the target restricted to a few lm_head rows (method.target_rows label_words), with DP noise
  for (int variant = 0; variant < 3; ++variant) {
    const bool noisy = variant > 0;
    const std::string s = name + (variant == 2 ? " (n=6,B=4,L=7,DP noise,label rows)" : noisy ? " (n=6,B=4,L=7,DP noise)" : " (n=6,B=4,L=7)");
    TargetOptions opts;
    opts.clip_norm = 0.5f;
    opts.noise_std = noisy ? 0.001f : 0.f;
    opts.noise_seed = 11;
    if (variant == 2) opts.rows = {label, labels[0] == label ? (label + 1) % V : labels[0]};
    auto tr = ref.build_target(tokens.data(), n, T, last_pos.data(), labels.data(), opts);
    auto td = dev.build_target(tokens.data(), n, T, last_pos.data(), labels.data(), opts);
    report("build_target A, H " + s, std::max(nmse(td->A, tr->A), nmse(td->H, tr->H)), tol_f);
    report("build_target norm " + s, rel2(td->norm, tr->norm), tol_f);
    auto X = randn(r, (size_t)B * L * C, 0.7f);
    std::vector<float> dX_ref(X.size()), dX(X.size()), per_ref(B), per(B);
    const double f_ref = ref.match_loss(tr, X.data(), B, L, label, dX_ref.data(), per_ref.data());
    const double f = dev.match_loss(tr == td ? tr : td, X.data(), B, L, label, dX.data(), per.data());
    report("match_loss f " + s, rel2(f, f_ref), tol_f);
    report("match_loss per-sample " + s, nmse(per, per_ref), tol_f);
    report("match_loss dX " + s, nmse(dX, dX_ref), tol_x);

    // a batch's state: init, one outer step of ADMM (projection, z lookup, f(z), x-update, dual update), the final
    // projection from the best x
    const int topk = noisy ? V : 6;
    auto res = [&](HostModel& m, const std::shared_ptr<MatchTarget>& t) {
      ModelEngine& e = m.engine();
      auto prefix = m.cache(1, 4);
      std::vector<float> plog(V), out, per_z(B), losses(3);
      m.decode(prefix, prompt.data(), nullptr, 4, plog.data());
      auto batch = e.new_batch(t, B, L, free_len, label, tmpl);
      out.push_back((float)e.batch_init(*batch, t, 3, 7, 1.4f, nullptr));
      std::vector<int> tok((size_t)B * free_len);
      e.batch_project(*batch, false, 0.1, allowed.data(), topk, *prefix, plog.data(), tok.data(), nullptr);
      out.insert(out.end(), tok.begin(), tok.end());
      out.push_back((float)e.batch_z_loss(*batch, t, per_z.data(), nullptr));
      XUpdateArgs a;
      a.steps = 3, a.rho = 0.1f, a.lr = 0.01f, a.max_grad_norm = noisy ? 1e-3f : 1.f;  // the second run clips
      out.push_back((float)e.batch_x_update(*batch, t, a, losses.data(), nullptr));
      out.insert(out.end(), losses.begin(), losses.end());
      batch->dual_update(0.1);
      batch->keep_best();
      e.batch_project(*batch, true, 0.1, allowed.data(), topk, *prefix, plog.data(), tok.data(), nullptr);
      out.insert(out.end(), tok.begin(), tok.end());
      std::vector<float> st((size_t)B * L * C);
      for (const char* w : {"x", "z", "lam", "m"}) {
        batch->read(w, st.data());
        out.insert(out.end(), st.begin(), st.end());
      }
      return out;
    };
    auto got = res(dev, td), want = res(ref, tr);
    report("batch: init, projection, f(z), x-update, dual update, state " + s, nmse(got, want), tol_x);
    int differ = 0, total = 0;
    for (size_t i = 0; i < got.size() && i < want.size(); ++i) (void)i;
    // projected tokens: positions 1 .. B·free of the first projection
    for (int i = 1; i <= B * free_len; ++i) differ += got[i] != want[i], ++total;
    report("project tokens (fraction differing, top-k " + std::to_string(topk) + ") " + s, (double)differ / total, tol_tok);
  }
}

}  // namespace

void check_engine_models(const Backend* be, Rng& r, double tol) {
  {
    HostModel ref(gpt2_config(97, 48, 4)), dev(gpt2_config(97, 48, 4), be);
    check_model(ref, dev, r, "GPT2", tol);
  }
  {
    HostModel ref(qwen2_like(97)), dev(qwen2_like(97), be);
    check_model(ref, dev, r, "Llama GQA q/k/v bias untied", tol);
  }
  {
    HostModel ref(llama_mqa_tied(89)), dev(llama_mqa_tied(89), be);
    check_model(ref, dev, r, "Llama MQA hd=14 biases tied", tol);
  }
  {
    HostModel ref(gemma3_like(83)), dev(gemma3_like(83), be);
    check_model(ref, dev, r, "Gemma3 sliding+full hd=12 tied", tol);
  }
}

void check_engine_method(const Backend* be, Rng& r, double tol_f, double tol_x, double tol_tok) {
  {
    HostModel ref(gpt2_config(211, 40, 5)), dev(gpt2_config(211, 40, 5), be);
    check_method(ref, dev, r, "GPT2", tol_f, tol_x, tol_tok);
  }
  {
    HostModel ref(qwen2_like(211)), dev(qwen2_like(211), be);
    check_method(ref, dev, r, "Llama GQA", tol_f, tol_x, tol_tok);
  }
  {
    HostModel ref(llama_mqa_tied(199)), dev(llama_mqa_tied(199), be);
    check_method(ref, dev, r, "Llama MQA tied", tol_f, tol_x, tol_tok);
  }
  {
    HostModel ref(gemma3_like(199)), dev(gemma3_like(199), be);
    check_method(ref, dev, r, "Gemma3", tol_f, tol_x, tol_tok);
  }
}

}  // namespace check
}  // namespace gradmm
