"""PyTorch side of `npm run bench -- engine`: the same shapes and work as bench/engine.ts, printed as one JSON line.

Run by bench/engine.ts with /usr/bin/python3 in PyTorch's strongest setup on this machine (OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE unset, OMP_WAIT_POLICY=PASSIVE, MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_=100000000000).
Plain PyTorch GPT-2 (no transformers): pre-LN blocks, GELU(tanh), tied lm_head, fused scaled-dot-product attention
where the installed version has it.
"""
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F

args = json.loads(sys.argv[1])
torch.manual_seed(0)
torch.set_num_threads(args["threads"])


def median_time(fn, reps):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


n = args["sgemm_n"]
a, b = torch.randn(n, n), torch.randn(n, n)
sgemm_s = median_time(lambda: torch.mm(a, b), args["reps"] * 2)


class Block(torch.nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.ln_1 = torch.nn.LayerNorm(C)
        self.c_attn = torch.nn.Linear(C, 3 * C)
        self.c_proj = torch.nn.Linear(C, C)
        self.ln_2 = torch.nn.LayerNorm(C)
        self.c_fc = torch.nn.Linear(C, 4 * C)
        self.mlp_proj = torch.nn.Linear(4 * C, C)
        self.NH = NH

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.NH, C // self.NH).transpose(1, 2) for t in (q, k, v))
        if hasattr(F, "scaled_dot_product_attention"):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
            att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
            y = att @ v
        x = x + self.c_proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(torch.nn.Module):
    def __init__(self, V, maxT, C, L, NH):
        super().__init__()
        self.wte = torch.nn.Embedding(V, C)
        self.wpe = torch.nn.Embedding(maxT, C)
        self.h = torch.nn.ModuleList(Block(C, NH) for _ in range(L))
        self.ln_f = torch.nn.LayerNorm(C)

    def forward(self, embeds):
        x = embeds + self.wpe.weight[: embeds.shape[1]]
        for blk in self.h:
            x = blk(x)
        return self.ln_f(x) @ self.wte.weight.t()


if "model_dir" in args:
    # a real model's weights (bench/reference: plain-PyTorch GPT-2 / Llama over the folder bench/engine.ts wrote)
    sys.path.insert(0, __import__("os").path.join(__import__("os").path.dirname(__file__), "..", "reference"))
    from llama_torch import load_model  # noqa: E402

    net = load_model(args["model_dir"])
    V = net.V
    params = list({id(t): t for t in ([net.wte, net.lm_head] + [v for layer in getattr(net, "layers", []) for v in layer.values()]
                                      + list(getattr(net, "w", {}).values()) + [getattr(net, "norm_w", net.wte)])}.values())

    def logits(x):
        return net.hidden(x) @ net.lm_head.t()

    def embed(ids):
        return net.wte[ids]

    def set_requires_grad(flag):
        for p in params:
            p.requires_grad_(flag)
else:
    m = args["model"]
    model = GPT2(m["vocabSize"], m["maxSeqLen"], m["channels"], m["numLayers"], m["numHeads"])
    V = m["vocabSize"]
    params = list(model.parameters())

    def logits(x):
        return model(x)

    def embed(ids):
        return model.wte(ids)

    def set_requires_grad(flag):
        for p in params:
            p.requires_grad_(flag)

B, T = args["B"], args["T"]
tokens = torch.randint(0, V, (B, T))
targets = torch.randint(0, V, (B, T))


def fwd_bwd_inputs():
    set_requires_grad(False)
    x = embed(tokens).detach().clone().requires_grad_(True)
    loss = F.cross_entropy(logits(x).view(-1, V), targets.view(-1))
    loss.backward()


opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)


def train_step():
    set_requires_grad(True)
    opt.zero_grad(set_to_none=False)
    loss = F.cross_entropy(logits(embed(tokens)).view(-1, V), targets.view(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


fwd_bwd_s = median_time(fwd_bwd_inputs, args["reps"])
train_s = median_time(train_step, args["reps"])
def blas_library():
    """The BLAS shared object this process actually mapped (Debian's torch uses whatever libblas.so.3 points to)."""
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "blas" in line.lower() and ".so" in line}
    return ", ".join(sorted(libs)) or "unknown"


print(json.dumps({
    "torch_version": torch.__version__,
    "torch_blas": blas_library(),
    "sgemm_gflops": 2 * n ** 3 / sgemm_s / 1e9,
    "fwd_bwd_inputs_tok_s": B * T / fwd_bwd_s,
    "train_step_tok_s": B * T / train_s,
}))
