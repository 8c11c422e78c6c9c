"""Plain-PyTorch Llama (LlamaForCausalLM; Qwen2 and Mistral share it) for the speed benchmark's PyTorch peers.

The same interface as gpt2_torch.GPT2 (V, C, wte, lm_head, embed, hidden, new_cache), so bench/reference/
gradmm_torch_fast.py and gradmm_ref.py run either family. No transformers and no safetensors package: it runs on
Debian's PyTorch 1.13 as well as on PyTorch 2.13, and reads exactly the float32 Hugging Face folder that
bench/speed.ts writes from the weights our engine loaded (a GGUF model included).

RMSNorm, rotary embeddings in Hugging Face's rotate-half layout (with the llama3 frequency adjustment when the
config has one), grouped-query attention, SwiGLU MLP; optional q/k/v, o_proj and MLP biases; a tied or untied lm_head.
"""
import json
import math
import os

import torch
import torch.nn.functional as F

from gpt2_torch import GPT2, read_safetensors


def _inv_freq(cfg, hd):
    rp = cfg.get("rope_parameters") or {}  # transformers 5 writes rope_theta / rope_type here
    theta = cfg.get("rope_theta", rp.get("rope_theta", 10000.0))
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    rs = cfg.get("rope_scaling") or (rp if rp.get("rope_type", "default") != "default" else None)
    if rs is None:
        return inv.float()
    kind = rs.get("rope_type", rs.get("type"))
    if kind != "llama3":
        raise ValueError(f"rope_scaling {kind!r} is not supported by the benchmark's PyTorch Llama")
    factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old = rs["original_max_position_embeddings"]
    lo_wl, hi_wl = old / lo, old / hi
    wl = 2 * math.pi / inv
    out = torch.where(wl > lo_wl, inv / factor, inv)
    smooth = (old / wl - lo) / (hi - lo)
    mid = (1 - smooth) * out / factor + smooth * out
    is_mid = (wl >= hi_wl) & (wl <= lo_wl)
    return torch.where(is_mid, mid, out).float()


def _rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Llama:
    """Llama forward over input embeddings, optionally with a KV cache ([rows, kv_heads, capacity, head_dim])."""

    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        self.V, self.C = cfg["vocab_size"], cfg["hidden_size"]
        self.NL, self.NH = cfg["num_hidden_layers"], cfg["num_attention_heads"]
        self.NKV = cfg.get("num_key_value_heads") or self.NH
        self.hd = cfg.get("head_dim") or self.C // self.NH
        self.ctx = cfg.get("max_position_embeddings", 2048)
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        w = {k: v.float().contiguous() for k, v in read_safetensors(os.path.join(model_dir, "model.safetensors")).items()}
        self.wte = w["model.embed_tokens.weight"]
        self.lm_head = w.get("lm_head.weight", self.wte)
        names = ("input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                 "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
                 "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")
        optional = ("self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias", "self_attn.o_proj.bias",
                    "mlp.gate_proj.bias", "mlp.up_proj.bias", "mlp.down_proj.bias")
        self.layers = []
        for i in range(self.NL):
            p = {n: w[f"model.layers.{i}.{n}"] for n in names}
            p.update({n: w[f"model.layers.{i}.{n}"] for n in optional if f"model.layers.{i}.{n}" in w})
            self.layers.append(p)
        self.norm_w = w["model.norm.weight"]
        self.inv_freq = _inv_freq(cfg, self.hd)

    def _rms(self, x, weight):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * weight

    @staticmethod
    def _linear(x, p, name):
        return F.linear(x, p[name + ".weight"], p.get(name + ".bias"))

    def _rope(self, pos, T):
        f = torch.outer(torch.arange(pos, pos + T, dtype=torch.float32), self.inv_freq)
        emb = torch.cat((f, f), dim=-1)
        return emb.cos(), emb.sin()

    def _block(self, p, x, cos, sin, cache=None, pos=0):
        B, T, _ = x.shape
        NH, NKV, hd = self.NH, self.NKV, self.hd
        h = self._rms(x, p["input_layernorm.weight"])
        q = self._linear(h, p, "self_attn.q_proj").reshape(B, T, NH, hd).transpose(1, 2)
        k = self._linear(h, p, "self_attn.k_proj").reshape(B, T, NKV, hd).transpose(1, 2)
        v = self._linear(h, p, "self_attn.v_proj").reshape(B, T, NKV, hd).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if cache is not None:
            K, Vc = cache
            K[:, :, pos:pos + T] = k
            Vc[:, :, pos:pos + T] = v
            k, v = K[:, :, :pos + T], Vc[:, :, :pos + T]
        if NKV != NH:
            k = k.repeat_interleave(NH // NKV, dim=1)
            v = v.repeat_interleave(NH // NKV, dim=1)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        if T > 1:
            S = k.shape[2]
            mask = torch.ones(T, S, dtype=torch.bool).triu(S - T + 1)
            att = att.masked_fill(mask, float("-inf"))
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, NH * hd)
        x = x + self._linear(y, p, "self_attn.o_proj")
        h = self._rms(x, p["post_attention_layernorm.weight"])
        m = F.silu(self._linear(h, p, "mlp.gate_proj")) * self._linear(h, p, "mlp.up_proj")
        return x + self._linear(m, p, "mlp.down_proj")

    def hidden(self, embeds, caches=None, pos=0):
        """Final hidden states (after the last RMSNorm) [B,T,C] of input embeddings [B,T,C] at pos..pos+T-1."""
        cos, sin = self._rope(pos, embeds.shape[1])
        x = embeds
        for i, p in enumerate(self.layers):
            x = self._block(p, x, cos, sin, None if caches is None else caches[i], pos)
        return self._rms(x, self.norm_w)

    def embed(self, ids):
        return self.wte[ids]

    def new_cache(self, rows, capacity):
        return [(torch.zeros(rows, self.NKV, capacity, self.hd), torch.zeros(rows, self.NKV, capacity, self.hd))
                for _ in range(self.NL)]


def load_model(model_dir):
    """GPT2 or Llama by config.json's model_type (the families bench/speed.ts writes)."""
    with open(os.path.join(model_dir, "config.json")) as f:
        kind = json.load(f).get("model_type", "gpt2")
    if kind == "gpt2":
        return GPT2(model_dir)
    if kind in ("llama", "qwen2", "mistral"):
        return Llama(model_dir)
    raise ValueError(f"model_type {kind!r}: the benchmark's PyTorch peers know gpt2 and llama/qwen2/mistral")
