"""PyTorch side of bench/gpu/run.sh: the x-update of GRADMM on the GPU, written the best way plain PyTorch allows,
on the same random GPT-2-shaped model, target and batch shapes as binding/cuda/tests/gpu_bench.cpp.

Same mathematics as the engine (binding/src/gradmatch.cpp, admm.cpp; bench/reference/gradmm_torch_fast.py on the
CPU): f = 1 - S / (sqrt(Q) ||G*||) from the Gram matrices of the a = softmax(W h) - e_y and h factors, autograd to
the input embeddings X (no weight gradients), then Adam with global-norm clipping on the free positions. Fused
scaled-dot-product attention; clipping without a host sync.
Usage: python3 xupdate_torch.py --model gpt2 --B 16 --L 32 --free 24 --n 64 --steps 10 [--tf32 1]
Prints one JSON line.
"""
import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

SHAPES = {"gpt2": (768, 12, 12), "gpt2-medium": (1024, 24, 16), "gpt2-large": (1280, 36, 20), "gpt2-xl": (1600, 48, 25)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gpt2")
    ap.add_argument("--device", default="cuda")  # "cpu" only for a smoke test of this script
    for k, v in (("B", 16), ("L", 32), ("free", 24), ("n", 64), ("steps", 10), ("tf32", 1)):
        ap.add_argument("--" + k, type=int, default=v)
    a = ap.parse_args()
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.backends.cuda.matmul.allow_tf32 = bool(a.tf32)
    torch.backends.cudnn.allow_tf32 = bool(a.tf32)
    C, NL, NH = SHAPES[a.model]
    V, T_MAX, hd = 50257, 1024, C // NH
    B, L, fr, n, label = a.B, a.L, a.free, a.n, 123
    torch.manual_seed(1)
    amp = 0.02 * math.sqrt(3.0)

    def U(*shape):
        return (torch.rand(*shape, device=dev) * 2 - 1) * amp

    t0 = time.perf_counter()
    wte, wpe = U(V, C), U(T_MAX, C)
    layers = [dict(ln1w=torch.ones(C, device=dev), ln1b=torch.zeros(C, device=dev), qkvw=U(C, 3 * C),
                   qkvb=torch.zeros(3 * C, device=dev), projw=U(C, C), projb=torch.zeros(C, device=dev),
                   ln2w=torch.ones(C, device=dev), ln2b=torch.zeros(C, device=dev), fcw=U(C, 4 * C),
                   fcb=torch.zeros(4 * C, device=dev), fcprojw=U(4 * C, C), fcprojb=torch.zeros(C, device=dev))
              for _ in range(NL)]
    lnfw, lnfb = torch.ones(C, device=dev), torch.zeros(C, device=dev)
    nparams = sum(t.numel() for t in [wte, wpe, lnfw, lnfb]) + sum(t.numel() for l in layers for t in l.values())

    def attention(q, k, v):  # [B,NH,L,hd]
        if hasattr(F, "scaled_dot_product_attention"):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        att = att.masked_fill(torch.ones(L, L, dtype=torch.bool, device=dev).triu(1), float("-inf"))
        return att.softmax(-1) @ v

    def hidden_last(X):
        x = X + wpe[:L]
        for p in layers:
            h = F.layer_norm(x, (C,), p["ln1w"], p["ln1b"], 1e-5)
            qkv = torch.addmm(p["qkvb"], h.reshape(-1, C), p["qkvw"]).reshape(B, L, 3, NH, hd)
            q, k, v = qkv.unbind(2)
            y = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
            y = y.transpose(1, 2).reshape(-1, C)
            x = x + torch.addmm(p["projb"], y, p["projw"]).reshape(B, L, C)
            h = F.layer_norm(x, (C,), p["ln2w"], p["ln2b"], 1e-5).reshape(-1, C)
            h = F.gelu(torch.addmm(p["fcb"], h, p["fcw"]), approximate="tanh")
            x = x + torch.addmm(p["fcprojb"], h, p["fcprojw"]).reshape(B, L, C)
        return F.layer_norm(x[:, -1], (C,), lnfw, lnfb, 1e-5)

    # random target factors (as gpu_bench.cpp: p uniform, minus one-hot; h uniform)
    At = torch.full((n, V), 1.0 / V, device=dev)
    At[torch.arange(n), (torch.arange(n) * 7919) % V] -= 1.0
    Ht = torch.rand(n, C, device=dev) * 2 - 1
    norm = math.sqrt(max(float(((At @ At.t()) * (Ht @ Ht.t())).sum().double()), 0.0)) / n
    onehot = F.one_hot(torch.full((B,), label, device=dev), V).float()

    def f(X, grad):
        if grad:
            X = X.detach().requires_grad_(True)
        with torch.set_grad_enabled(grad):
            h = hidden_last(X)
            a_ = torch.softmax(h @ wte.t(), dim=1) - onehot
            s = ((At @ a_.t()) * (Ht @ h.t())).sum() / (n * B)
            q = ((a_ @ a_.t()) * (h @ h.t())).sum() / (B * B)
            fx = 1 - s / (q.clamp_min(1e-30).sqrt() * max(norm, 1e-30))
            if not grad:
                return fx, None
            (dX,) = torch.autograd.grad(fx, X)
        return fx, dX

    X = (torch.rand(B, L, C, device=dev) * 2 - 1) * 0.5
    z = (torch.rand(B, L, C, device=dev) * 2 - 1) * 0.5
    lam = torch.zeros_like(X)
    st = {"m": torch.zeros_like(X), "v": torch.zeros_like(X), "t": 0}
    rho, lr, max_norm, b1, b2 = 0.1, 0.008, 1.0, 0.9, 0.999
    losses = []

    @torch.no_grad()
    def step():
        fx, dX = f(X, True)
        losses.append(fx)
        gr = dX[:, :fr] + rho * (X[:, :fr] - z[:, :fr]) + lam[:, :fr]
        nrm = gr.norm()
        gr.mul_(torch.where(nrm > max_norm, max_norm / (nrm + 1e-6), torch.ones_like(nrm)))
        st["t"] += 1
        t = st["t"]
        m, v = st["m"][:, :fr], st["v"][:, :fr]
        m.mul_(b1).add_(gr, alpha=1 - b1)
        v.mul_(b2).addcmul_(gr, gr, value=1 - b2)
        denom = (v.sqrt() / math.sqrt(1 - b2 ** t)).add_(1e-8)
        X[:, :fr].addcdiv_(m, denom, value=-lr / (1 - b1 ** t))

    for _ in range(2):  # warm-up
        step()
    sync()
    setup_ms = (time.perf_counter() - t0) * 1e3
    losses.clear()
    t1 = time.perf_counter()
    for _ in range(a.steps):
        step()
    fl = float(f(X, False)[0])
    sync()
    ms_step = (time.perf_counter() - t1) * 1e3 / a.steps
    evals = 5
    t1 = time.perf_counter()
    for _ in range(evals):
        fe = float(f(X, False)[0])
    ms_eval = (time.perf_counter() - t1) * 1e3 / evals
    print(json.dumps({"engine": "torch", "torch": torch.__version__, "model": a.model, "params": nparams, "B": B, "L": L,
                      "free": fr, "n": n, "steps": a.steps, "gemm": "tf32" if a.tf32 else "f32",
                      "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu", "ms_per_step": round(ms_step, 3),
                      "ms_f_eval": round(ms_eval, 3), "setup_ms": round(setup_ms), "f_first": float(losses[0]),
                      "f_last": fl, "f_eval": fe}))


if __name__ == "__main__":
    main()
