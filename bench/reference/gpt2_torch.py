"""Plain-PyTorch GPT-2 shared by bench/reference/gradmm_ref.py and bench/reference/gradmm_torch_fast.py.

No transformers, no safetensors package: the Hugging Face GPT-2 checkpoint (config.json + model.safetensors, Conv1D
weights stored [in, out], lm_head tied to wte) is parsed by hand, so both scripts run exactly the weights our engine
loads. Also here: the raw-file exchange with bench/speed.ts (safetensors in both directions) and a NumPy copy of the
engine's deterministic normal generator (binding/src/gradmatch.cpp: splitmix64 + Box-Muller), so the init candidates
are the same numbers on every side.
"""
import json
import math
import os
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F

_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
           "I32": torch.int32, "I64": torch.int64, "U8": torch.uint8}
_NAMES = {v: k for k, v in _DTYPES.items()}


def read_safetensors(path):
    """All tensors of a .safetensors file as a dict of CPU tensors (F16/BF16 widened to float32)."""
    with open(path, "rb") as f:
        buf = bytearray(f.read())
    (hlen,) = struct.unpack_from("<Q", buf, 0)
    header = json.loads(bytes(buf[8:8 + hlen]).decode("utf8"))
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = _DTYPES[info["dtype"]]
        start, end = info["data_offsets"]
        count = (end - start) // torch.empty((), dtype=dt).element_size()
        t = torch.frombuffer(buf, dtype=dt, count=count, offset=base + start) if count else torch.empty(0, dtype=dt)
        t = t.reshape(info["shape"])
        if dt in (torch.float16, torch.bfloat16):
            t = t.float()
        out[name] = t
    return out


def write_safetensors(path, tensors):
    """Writes a dict of CPU tensors (float32 / int32 / uint8 / float64 / int64) as .safetensors."""
    names = sorted(tensors)
    header, blobs, off = {}, [], 0
    for n in names:
        t = tensors[n].detach().contiguous().cpu()
        b = t.numpy().tobytes()
        header[n] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode("utf8")
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


class GPT2:
    """GPT-2 forward over input embeddings (pre-LN blocks, GELU tanh, causal attention), optionally with a KV cache.

    Weights never require grad: every gradient the scripts take is to the inputs, or to the separate lm_head leaf
    the reference creates for itself.
    """

    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        self.V, self.C = cfg["vocab_size"], cfg["n_embd"]
        self.NL, self.NH = cfg["n_layer"], cfg["n_head"]
        self.ctx = cfg.get("n_positions", cfg.get("n_ctx"))
        self.eps = cfg.get("layer_norm_epsilon", 1e-5)
        raw = read_safetensors(os.path.join(model_dir, "model.safetensors"))
        w = {}
        for k, v in raw.items():
            k = k[len("transformer."):] if k.startswith("transformer.") else k
            if k.endswith(".attn.bias") or k.endswith(".attn.masked_bias") or k == "lm_head.weight":
                continue
            w[k] = v.float().contiguous()
        self.w = w
        self.wte, self.wpe = w["wte.weight"], w["wpe.weight"]
        self.lm_head = self.wte  # tied
        self.layers = [{n: w[f"h.{i}.{n}"] for n in (
            "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
            "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight",
            "mlp.c_proj.bias")} for i in range(self.NL)]
        self.lnf_w, self.lnf_b = w["ln_f.weight"], w["ln_f.bias"]

    @staticmethod
    def _linear(x, weight, bias):  # Conv1D: weight [in, out]
        shp = x.shape
        return torch.addmm(bias, x.reshape(-1, shp[-1]), weight).reshape(*shp[:-1], weight.shape[1])

    def _block(self, p, x, cache=None, pos=0):
        B, T, C = x.shape
        NH, hd = self.NH, C // self.NH
        qkv = self._linear(F.layer_norm(x, (C,), p["ln_1.weight"], p["ln_1.bias"], self.eps),
                           p["attn.c_attn.weight"], p["attn.c_attn.bias"])
        q, k, v = qkv.split(C, dim=2)
        q, k, v = (t.reshape(B, T, NH, hd).transpose(1, 2) for t in (q, k, v))
        if cache is not None:  # cache = (K [B,NH,cap,hd], V): write the new positions, attend to everything so far
            K, Vc = cache
            K[:, :, pos:pos + T] = k
            Vc[:, :, pos:pos + T] = v
            k, v = K[:, :, :pos + T], Vc[:, :, :pos + T]
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        if T > 1:
            S = k.shape[2]
            mask = torch.ones(T, S, dtype=torch.bool).triu(S - T + 1)
            att = att.masked_fill(mask, float("-inf"))
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self._linear(y, p["attn.c_proj.weight"], p["attn.c_proj.bias"])
        hmid = F.gelu(self._linear(F.layer_norm(x, (C,), p["ln_2.weight"], p["ln_2.bias"], self.eps),
                                   p["mlp.c_fc.weight"], p["mlp.c_fc.bias"]), approximate="tanh")
        return x + self._linear(hmid, p["mlp.c_proj.weight"], p["mlp.c_proj.bias"])

    def hidden(self, embeds, caches=None, pos=0):
        """Final hidden states (after ln_f) [B,T,C] of input embeddings [B,T,C] at positions pos..pos+T-1."""
        x = embeds + self.wpe[pos:pos + embeds.shape[1]]
        for i, p in enumerate(self.layers):
            x = self._block(p, x, None if caches is None else caches[i], pos)
        return F.layer_norm(x, (self.C,), self.lnf_w, self.lnf_b, self.eps)

    def embed(self, ids):
        return self.wte[ids]

    def new_cache(self, rows, capacity):
        hd = self.C // self.NH
        return [(torch.zeros(rows, self.NH, capacity, hd), torch.zeros(rows, self.NH, capacity, hd))
                for _ in range(self.NL)]


def fill_normal(n, seed, std=1.0):
    """The engine's fill_normal (splitmix64 + Box-Muller, doubles, cast to float32) for n numbers from `seed`."""
    m = (n + 1) // 2
    with np.errstate(over="ignore"):
        s = np.uint64(seed % 2 ** 64) + np.arange(1, 2 * m + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = (s ^ (s >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u1 = ((z[0::2] >> np.uint64(11)).astype(np.float64) + 1.0) * (1.0 / 9007199254740993.0)
    u2 = (z[1::2] >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
    r, th = np.sqrt(-2.0 * np.log(u1)), 6.283185307179586 * u2
    out = np.empty(2 * m, np.float32)
    out[0::2] = (r * np.cos(th)).astype(np.float32) * np.float32(std)
    out[1::2] = (r * np.sin(th)).astype(np.float32) * np.float32(std)
    return out[:n]


def init_candidate(c, seed, B, L, C, free, token_norm, template_embeds):
    """Candidate c of the engine's init_candidates: N(0,1) free tokens rescaled to token_norm, template pasted."""
    e = fill_normal(B * L * C, (seed * 1000003 + c) % 2 ** 64).reshape(B, L, C)
    f = e[:, :free].astype(np.float64)
    norms = np.sqrt(np.maximum((f * f).sum(-1, keepdims=True), 1e-30))
    scale = (token_norm / norms).astype(np.float32)
    x = torch.from_numpy(e.copy())
    x[:, :free] *= torch.from_numpy(scale)
    x[:, free:] = template_embeds
    return x


def now():
    return time.perf_counter()


def blas_library():
    """The BLAS shared object this process mapped (Debian's torch uses whatever libblas.so.3 points to)."""
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "blas" in line.lower() and ".so" in line}
    return ", ".join(sorted(libs)) or "unknown"


class Setup:
    """The inputs bench/speed.ts dumped: real examples, prefix, template, allowed mask, a point X."""

    def __init__(self, path, args):
        t = read_safetensors(path)
        self.tokens = t["tokens"].long()          # [n,T] right-padded
        self.last_pos = t["last_pos"].long()      # [n]
        self.labels = t["labels"].long()          # [n]
        self.prefix = t["prefix"].long()          # [P]
        self.template = t["template"].long()      # [Lt]
        self.allowed = t["allowed"].bool()        # [V]
        self.X = t["X"].clone()                   # [B,L,C]
        self.B, self.L, self.free = args["B"], args["L"], args["free"]
        self.label = args["label"]
        self.n = self.tokens.shape[0]


def settings(args):
    s = args["settings"]
    return {k: s[k] for k in ("outer", "inner", "lr", "max_grad_norm", "rho", "topk", "init_candidates",
                              "init_token_norm", "seed")}
