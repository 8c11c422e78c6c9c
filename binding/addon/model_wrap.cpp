// Model: a GPT-2, Llama-family, Phi or Gemma 3 model on the engine. Parameter, gradient and Adam-moment memory is exposed as
// Float32Array views over native memory (no copies; on a GPU, over the host mirror); each view keeps the model's
// memory alive, so a view outliving release() stays valid.
#include <cstring>
#include <mutex>

#include "addon.h"

namespace gradmm {
namespace addon {
namespace {

Napi::FunctionReference* g_ctor = nullptr;

GPT2Config gpt2_config(const Napi::Object& c) {
  GPT2Config cfg;
  cfg.vocab_size = int_field(c, "vocabSize", 1);
  cfg.max_seq_len = int_field(c, "maxSeqLen", 1);
  cfg.channels = int_field(c, "channels", 1);
  cfg.num_layers = int_field(c, "numLayers", 1);
  cfg.num_heads = int_field(c, "numHeads", 1);
  if (c.Get("layerNormEps").IsNumber()) cfg.layer_norm_eps = c.Get("layerNormEps").As<Napi::Number>().FloatValue();
  return cfg;
}

// {vocabSize, maxSeqLen, channels (hidden_size), intermediateSize, numLayers, numHeads, numKvHeads?, headDim?,
//  rmsNormEps?, ropeTheta?, ropeScaling?: {type: "llama3", factor, lowFreqFactor, highFreqFactor,
//  originalMaxPositionEmbeddings}, tieWordEmbeddings?, attentionBias? (q,k,v), oProjBias?, mlpBias?}
LlamaConfig llama_config(const Napi::Object& c) {
  Napi::Env env = c.Env();
  LlamaConfig cfg;
  cfg.vocab_size = int_field(c, "vocabSize", 1);
  cfg.max_seq_len = int_field(c, "maxSeqLen", 1);
  cfg.hidden_size = int_field(c, "channels", 1);
  cfg.intermediate_size = int_field(c, "intermediateSize", 1);
  cfg.num_layers = int_field(c, "numLayers", 1);
  cfg.num_heads = int_field(c, "numHeads", 1);
  cfg.num_kv_heads = c.Get("numKvHeads").IsUndefined() ? cfg.num_heads : int_field(c, "numKvHeads", 1);
  cfg.head_dim = c.Get("headDim").IsUndefined() ? 0 : int_field(c, "headDim", 1);
  if (c.Get("rmsNormEps").IsNumber()) cfg.rms_norm_eps = c.Get("rmsNormEps").As<Napi::Number>().FloatValue();
  if (c.Get("ropeTheta").IsNumber()) cfg.rope_theta = c.Get("ropeTheta").As<Napi::Number>().DoubleValue();
  Napi::Value rs = c.Get("ropeScaling");
  if (rs.IsObject()) {
    Napi::Object o = rs.As<Napi::Object>();
    const std::string type = o.Get("type").IsString() ? o.Get("type").As<Napi::String>().Utf8Value() : "";
    if (type == "llama3") {
      auto num = [&](const char* k) {
        if (!o.Get(k).IsNumber()) throw Napi::TypeError::New(env, std::string("ropeScaling.") + k + " must be a number");
        return o.Get(k).As<Napi::Number>().DoubleValue();
      };
      cfg.rope_scaling.llama3 = true;
      cfg.rope_scaling.factor = num("factor");
      cfg.rope_scaling.low_freq_factor = num("lowFreqFactor");
      cfg.rope_scaling.high_freq_factor = num("highFreqFactor");
      cfg.rope_scaling.original_max_position_embeddings = num("originalMaxPositionEmbeddings");
    } else if (type == "longrope") {
      if (!o.Get("shortFactor").IsArray()) throw Napi::TypeError::New(env, "ropeScaling.shortFactor must be an array");
      Napi::Array sf = o.Get("shortFactor").As<Napi::Array>();
      for (uint32_t i = 0; i < sf.Length(); ++i) {
        if (!sf.Get(i).IsNumber()) throw Napi::TypeError::New(env, "ropeScaling.shortFactor must hold numbers");
        cfg.rope_scaling.short_factor.push_back(sf.Get(i).As<Napi::Number>().DoubleValue());
      }
      if (!o.Get("attentionFactor").IsNumber() || !o.Get("originalMaxPositionEmbeddings").IsNumber())
        throw Napi::TypeError::New(env, "ropeScaling.attentionFactor and originalMaxPositionEmbeddings must be numbers");
      cfg.rope_scaling.longrope = true;
      cfg.rope_scaling.attention_factor = o.Get("attentionFactor").As<Napi::Number>().DoubleValue();
      cfg.rope_scaling.original_max_position_embeddings = o.Get("originalMaxPositionEmbeddings").As<Napi::Number>().DoubleValue();
    } else if (type != "none" && type != "default") {
      throw Napi::Error::New(env, "unsupported ropeScaling type '" + type + "'");
    }
  } else if (!rs.IsUndefined() && !rs.IsNull()) {
    throw Napi::TypeError::New(env, "ropeScaling must be an object");
  }
  cfg.tie_word_embeddings = bool_field(c, "tieWordEmbeddings", false);
  cfg.attention_bias = bool_field(c, "attentionBias", false);
  cfg.o_proj_bias = bool_field(c, "oProjBias", false);
  cfg.mlp_bias = bool_field(c, "mlpBias", false);
  cfg.fused_qkv_gate_up = bool_field(c, "fusedQkvGateUp", false);
  return cfg;
}

// {vocabSize, maxSeqLen, channels (hidden_size), intermediateSize, numLayers, numHeads, numKvHeads?, rotaryDim?,
//  layerNormEps?, ropeTheta?, tieWordEmbeddings?}
PhiConfig phi_config(const Napi::Object& c) {
  PhiConfig cfg;
  cfg.vocab_size = int_field(c, "vocabSize", 1);
  cfg.max_seq_len = int_field(c, "maxSeqLen", 1);
  cfg.hidden_size = int_field(c, "channels", 1);
  cfg.intermediate_size = int_field(c, "intermediateSize", 1);
  cfg.num_layers = int_field(c, "numLayers", 1);
  cfg.num_heads = int_field(c, "numHeads", 1);
  cfg.num_kv_heads = c.Get("numKvHeads").IsUndefined() ? cfg.num_heads : int_field(c, "numKvHeads", 1);
  cfg.rotary_dim = c.Get("rotaryDim").IsUndefined() ? 0 : int_field(c, "rotaryDim", 1);
  if (c.Get("layerNormEps").IsNumber()) cfg.layer_norm_eps = c.Get("layerNormEps").As<Napi::Number>().FloatValue();
  if (c.Get("ropeTheta").IsNumber()) cfg.rope_theta = c.Get("ropeTheta").As<Napi::Number>().DoubleValue();
  cfg.tie_word_embeddings = bool_field(c, "tieWordEmbeddings", false);
  return cfg;
}

// {vocabSize, maxSeqLen, channels (hidden_size), intermediateSize, numLayers, numHeads, numKvHeads?, headDim?,
//  rmsNormEps?, ropeTheta? (full layers), ropeLocalTheta? (sliding layers), ropeScalingFactor?,
//  ropeLocalScalingFactor? (linear rope scaling; 1 = none), slidingWindow?, layerTypes?: ("sliding_attention" |
//  "full_attention")[], queryPreAttnScalar?, tieWordEmbeddings? (default true)}
Gemma3Config gemma3_config(const Napi::Object& c) {
  Napi::Env env = c.Env();
  Gemma3Config cfg;
  cfg.vocab_size = int_field(c, "vocabSize", 1);
  cfg.max_seq_len = int_field(c, "maxSeqLen", 1);
  cfg.hidden_size = int_field(c, "channels", 1);
  cfg.intermediate_size = int_field(c, "intermediateSize", 1);
  cfg.num_layers = int_field(c, "numLayers", 1);
  cfg.num_heads = int_field(c, "numHeads", 1);
  cfg.num_kv_heads = c.Get("numKvHeads").IsUndefined() ? cfg.num_heads : int_field(c, "numKvHeads", 1);
  cfg.head_dim = c.Get("headDim").IsUndefined() ? 0 : int_field(c, "headDim", 1);
  cfg.sliding_window = c.Get("slidingWindow").IsUndefined() || c.Get("slidingWindow").IsNull()
                           ? 0
                           : int_field(c, "slidingWindow", 1);
  auto number = [&](const char* k, double& out) {
    if (c.Get(k).IsNumber()) out = c.Get(k).As<Napi::Number>().DoubleValue();
    else if (!c.Get(k).IsUndefined()) throw Napi::TypeError::New(env, std::string(k) + " must be a number");
  };
  double eps = cfg.rms_norm_eps;
  number("rmsNormEps", eps);
  cfg.rms_norm_eps = (float)eps;
  number("ropeTheta", cfg.rope_theta);
  number("ropeLocalTheta", cfg.rope_local_theta);
  number("ropeScalingFactor", cfg.rope_scaling_factor);
  number("ropeLocalScalingFactor", cfg.rope_local_scaling_factor);
  number("queryPreAttnScalar", cfg.query_pre_attn_scalar);
  Napi::Value lt = c.Get("layerTypes");
  if (lt.IsArray()) {
    Napi::Array a = lt.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      const std::string kind = a.Get(i).IsString() ? a.Get(i).As<Napi::String>().Utf8Value() : "";
      if (kind != "sliding_attention" && kind != "full_attention")
        throw Napi::TypeError::New(env, "layerTypes entries must be 'sliding_attention' or 'full_attention'");
      cfg.sliding.push_back(kind == "sliding_attention");
    }
  } else if (!lt.IsUndefined()) {
    throw Napi::TypeError::New(env, "layerTypes must be an array");
  }
  cfg.tie_word_embeddings = bool_field(c, "tieWordEmbeddings", true);
  return cfg;
}

}  // namespace

Napi::Function ModelWrap::Init(Napi::Env env) {
  Napi::Function f = DefineClass(
      env, "Model",
      {InstanceMethod("paramTable", &ModelWrap::ParamTable), InstanceMethod("params", &ModelWrap::Params),
       InstanceMethod("grads", &ModelWrap::Grads), InstanceMethod("zeroGrads", &ModelWrap::ZeroGrads),
       InstanceMethod("adamMoments", &ModelWrap::AdamMoments), InstanceMethod("forward", &ModelWrap::Forward),
       InstanceMethod("backward", &ModelWrap::Backward), InstanceMethod("logits", &ModelWrap::Logits),
       InstanceMethod("selectedRows", &ModelWrap::SelectedRows), InstanceMethod("hidden", &ModelWrap::Hidden),
       InstanceMethod("adamwStep", &ModelWrap::AdamwStep), InstanceMethod("decode", &ModelWrap::Decode),
       InstanceMethod("release", &ModelWrap::Release), InstanceMethod("buildTarget", &ModelWrap::BuildTarget),
       InstanceMethod("whitenedContrastiveTargets", &ModelWrap::WhitenedContrastiveTargets),
       InstanceMethod("matchLoss", &ModelWrap::MatchLoss), InstanceMethod("project", &ModelWrap::Project),
       InstanceMethod("paramsChanged", &ModelWrap::ParamsChanged), InstanceMethod("syncHost", &ModelWrap::SyncHost),
       InstanceMethod("setPrecision", &ModelWrap::SetPrecision), InstanceMethod("precision", &ModelWrap::Precision)});
  g_ctor = new Napi::FunctionReference(Napi::Persistent(f));
  return f;
}

ModelWrap::ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "Model(config) needs a config object");
  Napi::Object c = info[0].As<Napi::Object>();
  Napi::Value arch = c.Get("architecture");
  const std::string architecture = arch.IsString() ? arch.As<Napi::String>().Utf8Value() : "gpt2";
  const Backend* be = backend_choice().backend;
  std::unique_ptr<CausalExec> exec;
  try {
    if (architecture == "gpt2") exec = ModelEngine::make(be, gpt2_config(c));
    else if (architecture == "llama") exec = ModelEngine::make(be, llama_config(c));
    else if (architecture == "phi") exec = ModelEngine::make(be, phi_config(c));
    else if (architecture == "gemma3") exec = ModelEngine::make(be, gemma3_config(c));
    else throw Napi::Error::New(env, "unsupported architecture '" + architecture + "'");
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  engine_ = std::make_shared<ModelEngine>(std::move(exec));
}

std::shared_ptr<ModelEngine> ModelWrap::engine(Napi::Env env) {
  if (!engine_) throw Napi::Error::New(env, "the model was used after release()");
  return engine_;
}
std::shared_ptr<ModelEngine> ModelWrap::engine_of(const Napi::Value& v) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(g_ctor->Value()))
    throw Napi::TypeError::New(v.Env(), "expected a Model");
  return ModelWrap::Unwrap(v.As<Napi::Object>())->engine(v.Env());
}

Napi::Value ModelWrap::Release(const Napi::CallbackInfo& info) {
  engine_.reset();
  return info.Env().Undefined();
}

Napi::Value ModelWrap::ParamTable(const Napi::CallbackInfo& info) {
  auto s = engine(info.Env());
  const auto& t = s->layout().param_table();
  Napi::Array out = Napi::Array::New(info.Env(), t.size());
  for (size_t i = 0; i < t.size(); ++i) {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("name", t[i].name);
    o.Set("offset", (double)t[i].offset);
    Napi::Array shape = Napi::Array::New(info.Env(), t[i].shape.size());
    for (size_t d = 0; d < t[i].shape.size(); ++d) shape.Set(d, (double)t[i].shape[d]);
    o.Set("shape", shape);
    out.Set(i, o);
  }
  return out;
}

Napi::Value ModelWrap::Params(const Napi::CallbackInfo& info) {
  auto s = engine(info.Env());
  return view(info.Env(), s, s->host_params(), s->num_params());
}
// syncHost(): brings the host parameters (and gradients, Adam moments) up to date with a backend copy that trained.
Napi::Value ModelWrap::SyncHost(const Napi::CallbackInfo& info) {
  auto s = engine(info.Env());
  std::lock_guard<std::mutex> lk(s->mutex);
  s->sync_host();
  return info.Env().Undefined();
}
// A view of the gradients, current when called.
Napi::Value ModelWrap::Grads(const Napi::CallbackInfo& info) {
  auto s = engine(info.Env());
  std::lock_guard<std::mutex> lk(s->mutex);
  return view(info.Env(), s, s->host_grads(), s->num_params());
}
// {m, v}: views of the AdamW moments (zeros before the first step), for checkpoints (a checkpoint may be restored
// into them).
Napi::Value ModelWrap::AdamMoments(const Napi::CallbackInfo& info) {
  auto s = engine(info.Env());
  std::lock_guard<std::mutex> lk(s->mutex);
  float *m, *v;
  s->host_adam(&m, &v);
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("m", view(info.Env(), s, m, s->num_params()));
  o.Set("v", view(info.Env(), s, v, s->num_params()));
  return o;
}
Napi::Value ModelWrap::ZeroGrads(const Napi::CallbackInfo& info) {
  auto s = engine(info.Env());
  std::lock_guard<std::mutex> lk(s->mutex);
  s->zero_grads();
  return info.Env().Undefined();
}
// paramsChanged(): the parameters were written from JavaScript (gradients or Adam moments too, through their views).
Napi::Value ModelWrap::ParamsChanged(const Napi::CallbackInfo& info) {
  auto s = engine(info.Env());
  std::lock_guard<std::mutex> lk(s->mutex);
  s->params_changed();
  return info.Env().Undefined();
}

// setPrecision("float32" | "bf16"): the big products in f32, or on a bf16 copy of the weight matrices (model.h
// Precision). bf16 runs on the AVX512_BF16 kernel where the CPU has it, else on the portable bf16 kernel (exact but
// slow: the library refuses bf16 there, ts/model.ts); throws on a backend without bf16 products (CUDA).
Napi::Value ModelWrap::SetPrecision(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = engine(env);
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "setPrecision: expected \"float32\" or \"bf16\"");
  const std::string p = info[0].As<Napi::String>().Utf8Value();
  if (p != "float32" && p != "bf16")
    throw Napi::TypeError::New(env, "setPrecision: expected \"float32\" or \"bf16\", got \"" + p + "\"");
  std::lock_guard<std::mutex> lk(s->mutex);
  try {
    s->exec().set_precision(p == "bf16" ? CausalExec::Precision::BF16 : CausalExec::Precision::Float32);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  return env.Undefined();
}
// precision() -> {precision: "float32" | "bf16", kernel: the bf16 kernel's name or null, bf16Bytes: the bf16 copy's
// size (0 until first used)}
Napi::Value ModelWrap::Precision(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = engine(env);
  std::lock_guard<std::mutex> lk(s->mutex);
  const CausalExec& x = s->exec();
  const bool bf = x.precision() == CausalExec::Precision::BF16;
  Napi::Object o = Napi::Object::New(env);
  o.Set("precision", bf ? "bf16" : "float32");
  if (bf && s->backend()->bf16_products) o.Set("kernel", s->backend()->bf16_products());
  else o.Set("kernel", env.Null());
  o.Set("bf16Bytes", (double)x.bf16_copy_bytes());
  return o;
}

// forward({tokens | embeds, B, T, targets?, lossMask?, allLogits?, keepActivations?}, cancelToken?) -> Promise<loss>
Napi::Value ModelWrap::Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = engine(env);
  Napi::Object a = object_arg(info, 0, "forward");
  const int B = int_field(a, "B", 1), T = int_field(a, "T", 1), C = s->dims().channels;
  const size_t BT = (size_t)B * T;
  auto tokens = typed_field<Napi::Int32Array>(a, "tokens", BT, false);
  auto embeds = typed_field<Napi::Float32Array>(a, "embeds", BT * C, false);
  auto targets = typed_field<Napi::Int32Array>(a, "targets", BT, false);
  auto mask = typed_field<Napi::Float32Array>(a, "lossMask", BT, false);
  if (tokens.IsEmpty() == embeds.IsEmpty()) throw Napi::TypeError::New(env, "forward: give exactly one of tokens or embeds");
  ForwardArgs fa;
  fa.tokens = data_or_null<Napi::Int32Array, int>(tokens);
  fa.embeds = data_or_null<Napi::Float32Array, float>(embeds);
  fa.B = B;
  fa.T = T;
  fa.targets = data_or_null<Napi::Int32Array, int>(targets);
  fa.loss_mask = data_or_null<Napi::Float32Array, float>(mask);
  fa.all_logits = bool_field(a, "allLogits", false);
  fa.keep_activations = bool_field(a, "keepActivations", true);
  auto cancel = cancel_flag(info[1]);
  auto loss = std::make_shared<float>(0.f);
  return run_async(
      env,
      [s, fa, cancel, loss] {
        std::lock_guard<std::mutex> lk(s->mutex);
        *loss = s->forward(fa, cancel.get());
      },
      [loss](Napi::Env e) { return Napi::Number::New(e, *loss); }, {a});
}

// backward({fromLoss?, dLogits?, dHidden?, paramGrads?, dEmbeds?}, cancelToken?) -> Promise<void>
Napi::Value ModelWrap::Backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = engine(env);
  Napi::Object a = info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
  size_t BTC, R;
  {
    std::lock_guard<std::mutex> lk(s->mutex);
    BTC = s->hidden_floats();
    R = s->rows_selected();
  }
  auto d_logits = typed_field<Napi::Float32Array>(a, "dLogits", R * (size_t)s->dims().vocab_size, false);
  auto d_hidden = typed_field<Napi::Float32Array>(a, "dHidden", BTC, false);
  auto d_embeds = typed_field<Napi::Float32Array>(a, "dEmbeds", BTC, false);
  BackwardArgs ba;
  ba.from_loss = bool_field(a, "fromLoss", true);
  ba.d_logits = data_or_null<Napi::Float32Array, float>(d_logits);
  ba.d_hidden = data_or_null<Napi::Float32Array, float>(d_hidden);
  ba.param_grads = bool_field(a, "paramGrads", true);
  ba.d_embeds = data_or_null<Napi::Float32Array, float>(d_embeds);
  auto cancel = cancel_flag(info[1]);
  return run_async(
      env,
      [s, ba, cancel] {
        std::lock_guard<std::mutex> lk(s->mutex);
        s->backward(ba, cancel.get());
      },
      nullptr, {a});
}

Napi::Value ModelWrap::Logits(const Napi::CallbackInfo& info) {
  auto s = engine(info.Env());
  std::lock_guard<std::mutex> lk(s->mutex);
  Napi::Float32Array a = Napi::Float32Array::New(info.Env(), s->rows_selected() * (size_t)s->dims().vocab_size);
  s->logits(a.Data());
  return a;
}
Napi::Value ModelWrap::SelectedRows(const Napi::CallbackInfo& info) {
  auto s = engine(info.Env());
  std::lock_guard<std::mutex> lk(s->mutex);
  const std::vector<int> r = s->selected_rows();
  Napi::Int32Array a = Napi::Int32Array::New(info.Env(), r.size());
  if (!r.empty()) std::memcpy(a.Data(), r.data(), r.size() * sizeof(int));
  return a;
}
Napi::Value ModelWrap::Hidden(const Napi::CallbackInfo& info) {
  auto s = engine(info.Env());
  std::lock_guard<std::mutex> lk(s->mutex);
  Napi::Float32Array a = Napi::Float32Array::New(info.Env(), s->hidden_floats());
  s->hidden(a.Data());
  return a;
}

// adamwStep({lr, beta1, beta2, eps, weightDecay, maxGradNorm, step}) -> Promise<grad norm before clipping>
Napi::Value ModelWrap::AdamwStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = engine(env);
  Napi::Object a = object_arg(info, 0, "adamwStep");
  const float lr = (float)num_field(a, "lr", 1e-3), b1 = (float)num_field(a, "beta1", 0.9),
              b2 = (float)num_field(a, "beta2", 0.999), eps = (float)num_field(a, "eps", 1e-8),
              wd = (float)num_field(a, "weightDecay", 0.0), clip = (float)num_field(a, "maxGradNorm", 0.0);
  const int t = int_field(a, "step", 1);
  auto norm = std::make_shared<double>(0);
  return run_async(
      env,
      [s, lr, b1, b2, eps, wd, clip, t, norm] {
        std::lock_guard<std::mutex> lk(s->mutex);
        *norm = s->adamw_step(lr, b1, b2, eps, wd, clip, t);
      },
      [norm](Napi::Env e) { return Napi::Number::New(e, *norm); }, {});
}

// decode(cache, {tokens | embeds, T}, logitsOut?, hiddenOut?, cancelToken?) -> Promise<void>
Napi::Value ModelWrap::Decode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = engine(env);
  auto cache = KVCacheWrap::unwrap(info[0], s, "decode");
  Napi::Object a = object_arg(info, 1, "decode");
  const int Tn = int_field(a, "T", 1), R = cache->cache->rows, C = s->dims().channels, V = s->dims().vocab_size;
  auto tokens = typed_field<Napi::Int32Array>(a, "tokens", (size_t)R * Tn, false);
  auto embeds = typed_field<Napi::Float32Array>(a, "embeds", (size_t)R * Tn * C, false);
  if (tokens.IsEmpty() == embeds.IsEmpty()) throw Napi::TypeError::New(env, "decode: give exactly one of tokens or embeds");
  Napi::Float32Array logits, hidden;
  if (info.Length() > 2 && info[2].IsTypedArray()) logits = info[2].As<Napi::Float32Array>();
  if (info.Length() > 3 && info[3].IsTypedArray()) hidden = info[3].As<Napi::Float32Array>();
  if (!logits.IsEmpty() && logits.ElementLength() != (size_t)R * V) throw Napi::RangeError::New(env, "decode: logits buffer must hold rows × vocab floats");
  if (!hidden.IsEmpty() && hidden.ElementLength() != (size_t)R * C) throw Napi::RangeError::New(env, "decode: hidden buffer must hold rows × channels floats");
  auto cancel = cancel_flag(info[4]);
  const int* tk = data_or_null<Napi::Int32Array, int>(tokens);
  const float* em = data_or_null<Napi::Float32Array, float>(embeds);
  float* lo = data_or_null<Napi::Float32Array, float>(logits);
  float* hi = data_or_null<Napi::Float32Array, float>(hidden);
  std::vector<Napi::Value> keep = {a, info[0]};
  if (!logits.IsEmpty()) keep.push_back(logits);
  if (!hidden.IsEmpty()) keep.push_back(hidden);
  return run_async(
      env,
      [s, cache, tk, em, Tn, lo, hi, cancel] {
        std::lock_guard<std::mutex> lk(s->mutex);
        s->decode(*cache, tk, em, Tn, lo, hi, cancel.get());
      },
      nullptr, keep);
}

// buildTarget({tokens [n*T], n, T, lastPos [n], labels [n], clipNorm?, noiseStd?, noiseSeed?, chunkTokens?, rows?},
//   cancel?) -> Promise<MatchTarget>; rows: the lm_head rows to restrict to (gradmatch.h TargetOptions::rows)
Napi::Value ModelWrap::BuildTarget(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = engine(env);
  Napi::Object a = object_arg(info, 0, "buildTarget");
  const int n = int_field(a, "n", 1), T = int_field(a, "T", 1);
  auto tokens = typed_field<Napi::Int32Array>(a, "tokens", (size_t)n * T, true);
  auto last = typed_field<Napi::Int32Array>(a, "lastPos", n, true);
  auto labels = typed_field<Napi::Int32Array>(a, "labels", n, true);
  TargetOptions opts;
  opts.clip_norm = (float)num_field(a, "clipNorm", 0);
  opts.noise_std = (float)num_field(a, "noiseStd", 0);
  opts.noise_seed = (uint64_t)num_field(a, "noiseSeed", 0);
  opts.chunk_tokens = (int)num_field(a, "chunkTokens", opts.chunk_tokens);
  if (opts.chunk_tokens < 1) throw Napi::RangeError::New(env, "buildTarget: chunkTokens must be at least 1");
  auto rows = typed_field<Napi::Int32Array>(a, "rows", (size_t)-1, false);
  if (!rows.IsEmpty()) opts.rows.assign(rows.Data(), rows.Data() + rows.ElementLength());
  try {
    check_target_rows(opts.rows, s->dims().vocab_size);  // here, not only on the worker: a RangeError at the call
  } catch (const std::invalid_argument& e) {
    throw Napi::RangeError::New(env, e.what());
  }
  auto cancel = cancel_flag(info[1]);
  auto result = std::make_shared<std::shared_ptr<MatchTarget>>();
  const int *tk = tokens.Data(), *lp = last.Data(), *lb = labels.Data();
  return run_async(
      env,
      [s, tk, lp, lb, n, T, opts, cancel, result] {
        std::lock_guard<std::mutex> lk(s->mutex);
        *result = s->build_target(tk, n, T, lp, lb, opts, cancel.get());
      },
      [s, result](Napi::Env) { return (Napi::Value)MatchTargetWrap::wrap(*result, s); }, {a});
}

// whitenedContrastiveTargets([MatchTarget per class], shrinkage) -> Promise<MatchTarget[]>: each class's target for
// method.objective whitened_contrastive (gradmatch.h whitened_contrastive_targets), from plain per-class targets
Napi::Value ModelWrap::WhitenedContrastiveTargets(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = engine(env);
  if (!info[0].IsArray() || !info[1].IsNumber())
    throw Napi::TypeError::New(env, "whitenedContrastiveTargets(targets: MatchTarget[], shrinkage: number)");
  Napi::Array arr = info[0].As<Napi::Array>();
  std::vector<std::shared_ptr<MatchTarget>> raw;
  for (uint32_t k = 0; k < arr.Length(); ++k) raw.push_back(MatchTargetWrap::unwrap(arr.Get(k), s));
  const double shrinkage = info[1].As<Napi::Number>().DoubleValue();
  if (raw.size() < 2) throw Napi::RangeError::New(env, "whitenedContrastiveTargets: at least two classes' targets are needed");
  if (!(shrinkage >= 0 && shrinkage <= 1)) throw Napi::RangeError::New(env, "whitenedContrastiveTargets: shrinkage must lie in [0, 1]");
  auto result = std::make_shared<std::vector<MatchTarget>>();
  return run_async(
      env,
      [raw, shrinkage, result] {
        std::vector<const MatchTarget*> ptrs;
        for (const auto& t : raw) ptrs.push_back(t.get());
        *result = whitened_contrastive_targets(ptrs, shrinkage);
      },
      [s, result](Napi::Env e) {
        Napi::Array out = Napi::Array::New(e, result->size());
        for (size_t k = 0; k < result->size(); ++k)
          out.Set((uint32_t)k, MatchTargetWrap::wrap(std::make_shared<MatchTarget>(std::move((*result)[k])), s));
        return (Napi::Value)out;
      },
      {arr});
}

// matchLoss(target, {X [B*L*C], B, L, label, dX?, perSample?}, cancel?) -> Promise<f>
Napi::Value ModelWrap::MatchLoss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = engine(env);
  auto target = MatchTargetWrap::unwrap(info[0], s);
  Napi::Object a = object_arg(info, 1, "matchLoss");
  const int B = int_field(a, "B", 1), L = int_field(a, "L", 1), label = int_field(a, "label", 0);
  const size_t n = (size_t)B * L * s->dims().channels;
  auto X = typed_field<Napi::Float32Array>(a, "X", n, true);
  auto dX = typed_field<Napi::Float32Array>(a, "dX", n, false);
  auto per = typed_field<Napi::Float32Array>(a, "perSample", B, false);
  if (label >= s->dims().vocab_size) throw Napi::RangeError::New(env, "label token out of range");
  const float* x = X.Data();
  float* dx = data_or_null<Napi::Float32Array, float>(dX);
  float* ps = data_or_null<Napi::Float32Array, float>(per);
  auto cancel = cancel_flag(info[2]);
  auto f = std::make_shared<double>(0);
  return run_async(
      env,
      [s, target, x, B, L, label, dx, ps, cancel, f] {
        std::lock_guard<std::mutex> lk(s->mutex);
        *f = s->match_loss(target, x, B, L, label, dx, ps, cancel.get());
      },
      [f](Napi::Env e) { return Napi::Number::New(e, *f); }, {a, info[0]});
}

// project({U [B*L*C], B, L, freeLen, allowed: Uint8Array [V], topk, prefix: KVCache, prefixLogits [V],
//          outTokens: Int32Array [B*freeLen]}, cancel?) -> Promise<void>
Napi::Value ModelWrap::Project(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = engine(env);
  Napi::Object a = object_arg(info, 0, "project");
  const int B = int_field(a, "B", 1), L = int_field(a, "L", 1), free_len = int_field(a, "freeLen", 0),
            topk = int_field(a, "topk", 1);
  const int V = s->dims().vocab_size, C = s->dims().channels;
  if (free_len > L) throw Napi::RangeError::New(env, "freeLen exceeds L");
  auto U = typed_field<Napi::Float32Array>(a, "U", (size_t)B * L * C, true);
  auto allowed = typed_field<Napi::Uint8Array>(a, "allowed", V, true);
  auto plog = typed_field<Napi::Float32Array>(a, "prefixLogits", V, true);
  auto out = typed_field<Napi::Int32Array>(a, "outTokens", (size_t)B * free_len, true);
  auto cache = KVCacheWrap::unwrap(a.Get("prefix"), s, "project: 'prefix'");
  const float *u = U.Data(), *pl = plog.Data();
  const uint8_t* al = allowed.Data();
  int* o = out.Data();
  auto cancel = cancel_flag(info[1]);
  return run_async(
      env,
      [s, u, B, L, free_len, al, topk, cache, pl, o, cancel] {
        std::lock_guard<std::mutex> lk(s->mutex);
        s->project(u, B, L, free_len, al, topk, *cache, pl, o, cancel.get());
      },
      nullptr, {a});
}

}  // namespace addon
}  // namespace gradmm
