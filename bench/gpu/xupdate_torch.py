"""PyTorch side of bench/gpu/run.sh: the x-update of GRADMM on the GPU, written the best way plain PyTorch allows,
on the same random GPT-2-shaped model, target and batch shapes as binding/cuda/tests/gpu_bench.cpp.

Same mathematics as the engine (binding/src/gradmatch.cpp, admm.cpp; bench/reference/gradmm_torch_fast.py on the
CPU): f = 1 - S / (sqrt(Q) ||G*||) from the Gram matrices of the a = softmax(W h) - e_y and h factors, autograd to
the input embeddings X (no weight gradients), then Adam with global-norm clipping on the free positions. Fused
scaled-dot-product attention; clipping without a host sync.
With --structure reference: the paper's released structure instead (full V×C gradients, double backprop,
projection by a full forward per token), also timing its projection and estimating a paper-settings batch.
Usage: python3 xupdate_torch.py --model gpt2 --B 16 --L 32 --free 24 --n 64 --steps 10 [--tf32 1] [--structure reference]
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
    # "ours": our algorithm written the best way PyTorch allows; "reference": the released code's structure, with the
    # projection and a paper-settings batch estimate (the same formula as gpu_bench)
    ap.add_argument("--structure", choices=["ours", "reference"], default="ours")
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
        Lq = q.shape[2]
        att = att.masked_fill(torch.ones(Lq, Lq, dtype=torch.bool, device=dev).triu(1), float("-inf"))
        return att.softmax(-1) @ v

    def hidden_all(X):  # final-norm hidden states of every position [B', L', C]
        Bx, Lx = X.shape[0], X.shape[1]
        x = X + wpe[:Lx]
        for p in layers:
            h = F.layer_norm(x, (C,), p["ln1w"], p["ln1b"], 1e-5)
            qkv = torch.addmm(p["qkvb"], h.reshape(-1, C), p["qkvw"]).reshape(Bx, Lx, 3, NH, hd)
            q, k, v = qkv.unbind(2)
            y = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
            y = y.transpose(1, 2).reshape(-1, C)
            x = x + torch.addmm(p["projb"], y, p["projw"]).reshape(Bx, Lx, C)
            h = F.layer_norm(x, (C,), p["ln2w"], p["ln2b"], 1e-5).reshape(-1, C)
            h = F.gelu(torch.addmm(p["fcb"], h, p["fcw"]), approximate="tanh")
            x = x + torch.addmm(p["fcprojb"], h, p["fcprojw"]).reshape(Bx, Lx, C)
        return F.layer_norm(x, (C,), lnfw, lnfb, 1e-5)

    def hidden_last(X):
        return hidden_all(X)[:, -1]

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

    if a.structure == "reference":
        # The released code's structure (bench/reference/gradmm_ref.py on the CPU): the target as a full V×C tensor
        # (the mean of the per-example gradients, here from the same factors), logits at every position as the HF
        # forward computes them, the batch gradient of the last-position CE w.r.t. the (tied) lm_head weight as a
        # V×C tensor, f = 1 − cos over the flattened tensors, and the X-gradient by double backprop through it.
        Gt = (At.t() @ Ht).flatten() / n
        head = wte.detach().requires_grad_(True)
        labels_b = torch.full((B,), label, device=dev)

        def f(X, grad):  # noqa: F811 (replaces the factor form above)
            X = X.detach().requires_grad_(grad)
            with torch.enable_grad():
                logits = hidden_all(X) @ head.t()  # [B, L, V]
                loss = F.cross_entropy(logits[:, -1], labels_b)
                (g,) = torch.autograd.grad(loss, head, create_graph=grad)
                fx = 1 - F.cosine_similarity(g.flatten(), Gt, dim=0)
                if not grad:
                    return fx.detach(), None
                (dX,) = torch.autograd.grad(fx, X)
            return fx.detach(), dX

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
    extra = {}
    if a.structure == "reference":
        prompt = (torch.arange(16, device=dev) * 7919) % V  # gpu_bench's 16-token prompt length
        wn = F.normalize(wte, dim=1)

        @torch.no_grad()
        def project(U):
            chosen = torch.empty(B, 0, dtype=torch.long, device=dev)
            for i in range(fr):
                sims = F.normalize(U[:, i], dim=1) @ wn.t()
                top = sims.argsort(dim=1, descending=True)[:, :200]
                seq = torch.cat([prompt.expand(B, -1), chosen], 1)
                logits = hidden_all(wte[seq]) @ wte.t()  # a full forward, no cache, logits everywhere
                lm_order = logits[:, -1].argsort(dim=1, descending=True)
                in_top = torch.zeros(B, V, dtype=torch.bool, device=dev).scatter_(1, top, True)
                first = in_top.gather(1, lm_order).float().argmax(dim=1, keepdim=True)
                chosen = torch.cat([chosen, lm_order.gather(1, first)], 1)
            return chosen

        project(X)
        sync()
        t1 = time.perf_counter()
        project(X)
        sync()
        ms_proj = (time.perf_counter() - t1) * 1e3
        batch_s = (500 * ms_eval + 30 * (50 * ms_step + ms_proj) + ms_proj) / 1000
        extra = {"ms_project": round(ms_proj, 3), "paper_batch_s": round(batch_s, 2), "s_per_sample": round(batch_s / B, 3)}
    print(json.dumps({"engine": "torch-reference" if a.structure == "reference" else "torch", "torch": torch.__version__,
                      "model": a.model, "params": nparams, "B": B, "L": L,
                      "free": fr, "n": n, "steps": a.steps, "gemm": "tf32" if a.tf32 else "f32", **extra,
                      "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu", "ms_per_step": round(ms_step, 3),
                      "ms_f_eval": round(ms_eval, 3), "setup_ms": round(setup_ms), "f_first": float(losses[0]),
                      "f_last": fl, "f_eval": fe}))


if __name__ == "__main__":
    main()
