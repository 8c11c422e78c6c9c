"""Our GRADMM algorithm written the best way plain PyTorch allows: the fair "same algorithm" baseline of
`npm run bench -- speed`.

Same mathematics as the native engine (binding/src/gradmatch.cpp, admm.cpp), in PyTorch ops:

  target      one batched forward of the n real examples (no grad), logits only at each last position, kept as
              rank-1 factors a_i = softmax(W h_i) - e_y and h_i; ||G*|| from the Gram matrices.
  distance    f = 1 - S / (sqrt(Q) ||G*||) with S, Q from the Gram matrices of the a's and h's: nothing V x C is built.
  x-gradient  ordinary autograd from f to X (no create_graph, no weight gradients), logits only at the last position.
  x-update    Adam, the engine's clipping and bias correction, in place.
  projection  the prefix's KV cache computed once (outside the timed call, as our engine keeps it per class),
              copied to B rows, then one cached decoding step per free position; top-k by cosine among the allowed
              tokens (torch.topk), the LM's best of those.
  init        forward-only scoring of each candidate batch.

Random numbers: the engine's splitmix64 generator (gpt2_torch.fill_normal), so init picks the same candidate.
Usage: python3 gradmm_torch_fast.py '<json args>' (run by bench/speed.ts). Prints one JSON line.
"""
import json
import math
import sys

import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from gpt2_torch import Setup, blas_library, init_candidate, now, settings, write_safetensors  # noqa: E402
from llama_torch import load_model  # noqa: E402


class Fast:
    def __init__(self, model, setup, s):
        self.m, self.S, self.s = model, setup, s
        self.template_embeds = model.embed(setup.template)
        self.allowed_ids = setup.allowed.nonzero().flatten()
        w = model.wte[self.allowed_ids]
        self.allowed_unit = w / w.norm(dim=1, keepdim=True).clamp_min(1e-30)  # [nA, C]
        self.A = self.H = None
        self.norm = None
        self.prefix_cache = None
        self.loss = None  # torch.compile'd _loss (args "compile": true), else the eager one

    # ---- target
    @torch.no_grad()
    def target(self):
        S, m = self.S, self.m
        h = m.hidden(m.embed(S.tokens))[torch.arange(S.n), S.last_pos]  # [n,C]
        a = torch.softmax(h @ m.lm_head.t(), dim=1)
        a[torch.arange(S.n), S.labels] -= 1.0
        self.A, self.H = a, h
        g2 = ((a @ a.t()) * (h @ h.t())).sum().double() / (S.n * S.n)
        self.norm = math.sqrt(max(float(g2), 0.0))
        return a, h

    # ---- distance and its gradient
    def _loss(self, X):
        S, m = self.S, self.m
        B, n = X.shape[0], S.n
        h = m.hidden(X)[:, -1, :]  # logits only at the last position
        a = torch.softmax(h @ m.lm_head.t(), dim=1)
        a = a - torch.nn.functional.one_hot(torch.full((B,), S.label), m.V).to(a.dtype)
        s = ((self.A @ a.t()) * (self.H @ h.t())).sum() / (n * B)
        q = ((a @ a.t()) * (h @ h.t())).sum() / (B * B)
        return 1 - s / (q.clamp_min(1e-30).sqrt() * max(self.norm, 1e-30))

    def compile(self):
        """torch.compile (inductor) of the distance, forward and backward: fixed shapes in the x-update and init."""
        self.loss = torch.compile(self._loss, dynamic=False)

    def f(self, X, grad=False):
        if grad:
            X = X.detach().requires_grad_(True)
        with torch.set_grad_enabled(grad):
            f = (self.loss if self.loss is not None else self._loss)(X)
            if not grad:
                return float(f), None
            (dX,) = torch.autograd.grad(f, X)
        return float(f.detach()), dX

    # ---- x-update
    def new_state(self, X):
        return {"x": X.clone(), "m": torch.zeros_like(X), "v": torch.zeros_like(X), "t": 0}

    @torch.no_grad()
    def step(self, st, z, lam):
        s, fr = self.s, self.S.free
        x = st["x"]
        _, dX = self.f(x, grad=True)
        g = dX[:, :fr] + s["rho"] * (x[:, :fr] - z[:, :fr]) + lam[:, :fr]
        norm = float(g.norm())
        if norm > s["max_grad_norm"]:
            g.mul_(s["max_grad_norm"] / (norm + 1e-6))
        st["t"] += 1
        t, b1, b2 = st["t"], 0.9, 0.999
        m, v = st["m"][:, :fr], st["v"][:, :fr]
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (v.sqrt() / math.sqrt(1 - b2 ** t)).add_(1e-8)
        x[:, :fr].addcdiv_(m, denom, value=-s["lr"] / (1 - b1 ** t))

    def x_update(self, st, z, lam, steps):
        for _ in range(steps):
            self.step(st, z, lam)
        return self.f(st["x"])[0]

    # ---- projection
    @torch.no_grad()
    def make_prefix(self):
        m, S = self.m, self.S
        P = len(S.prefix)
        cache = m.new_cache(1, P)
        h = m.hidden(m.embed(S.prefix).unsqueeze(0), cache, 0)
        self.prefix_cache = cache
        self.prefix_logits = h[:, -1, :] @ m.lm_head.t()  # [1,V]

    @torch.no_grad()
    def project(self, U):
        m, S = self.m, self.S
        B, P, fr = U.shape[0], len(S.prefix), S.free
        k = min(self.s["topk"], len(self.allowed_ids))
        cache = m.new_cache(B, P + fr)
        for (K, V), (pK, pV) in zip(cache, self.prefix_cache):
            K[:, :, :P] = pK
            V[:, :, :P] = pV
        logits = self.prefix_logits.expand(B, -1)
        out = torch.empty(B, fr, dtype=torch.long)
        sims = U[:, :fr] @ self.allowed_unit.t()  # [B, fr, nA] cosine order (|u| is constant per position)
        cand = self.allowed_ids[sims.topk(k, dim=2).indices]  # [B, fr, k]
        for i in range(fr):
            c = cand[:, i]
            chosen = c.gather(1, logits.gather(1, c).argmax(1, keepdim=True)).squeeze(1)
            out[:, i] = chosen
            if i + 1 < fr:
                h = m.hidden(m.embed(chosen).unsqueeze(1), cache, P + i)
                logits = h[:, -1, :] @ m.lm_head.t()
        return out

    def z_of(self, tokens):
        z = torch.empty(self.S.B, self.S.L, self.m.C)
        z[:, : self.S.free] = self.m.embed(tokens)
        z[:, self.S.free:] = self.template_embeds
        return z

    # ---- init
    @torch.no_grad()
    def init(self, candidates):
        S, s = self.S, self.s
        best, best_x = float("inf"), None
        for c in range(candidates):
            cand = init_candidate(c, s["seed"], S.B, S.L, self.m.C, S.free, s["init_token_norm"], self.template_embeds)
            f, _ = self.f(cand)
            if f < best:
                best, best_x = f, cand
        return best_x, best

    def run_batch(self, log):
        """One ADMM batch, in runBatch's order (ts/gradmm/method.ts)."""
        s, S = self.s, self.S
        x0, init_f = self.init(s["init_candidates"])
        st = self.new_state(x0)
        lam = torch.zeros_like(x0)
        best = (float("inf"), x0.clone())
        for outer in range(s["outer"]):
            u = st["x"] + lam / s["rho"]
            z = self.z_of(self.project(u))
            z_loss = self.f(z)[0]
            x_loss = self.x_update(st, z, lam, s["inner"])
            lam[:, : S.free] += s["rho"] * (st["x"][:, : S.free] - z[:, : S.free])
            if x_loss < best[0]:
                best = (x_loss, st["x"].clone())
            log(f"fast batch: outer {outer + 1}/{s['outer']} x {x_loss:.4f} z {z_loss:.4f}")
        z = self.z_of(self.project(best[1]))
        return {"init_f": init_f, "best_x_f": best[0], "decoded_f": self.f(z)[0]}


def timed(fn, reps):
    out = []
    for _ in range(reps):
        t = now()
        fn()
        out.append(now() - t)
    return out


def main():
    args = json.loads(sys.argv[1])
    torch.set_num_threads(args["threads"])
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.get("verbose") else (lambda m: None)
    model = load_model(args["model_dir"])
    S = Setup(args["inputs"], args)
    fast = Fast(model, S, settings(args))
    result = {"torch_version": torch.__version__, "torch_blas": blas_library(), "threads": torch.get_num_threads()}
    if args.get("compile"):
        fast.compile()
        result["compiled"] = True
    mode = args["mode"]
    fast.make_prefix()
    if mode == "check":
        A, H = fast.target()
        f, dX = fast.f(S.X, grad=True)
        tokens = fast.project(S.X)
        init_x, init_f = fast.init(args["check_init_candidates"])
        write_safetensors(args["out"], {"A": A, "H": H, "dX": dX, "proj": tokens.int(), "init_X": init_x})
        result.update({"f": f, "target_norm": fast.norm, "init_f": init_f})
    elif mode == "bench":
        st = args["stages"]
        t = {}
        t["setup_target"] = timed(fast.target, 1)
        fast.f(S.X, grad=True)  # warm-up (and, compiled, the compilation of both graphs)
        fast.f(S.X)
        if "target" in st:
            t["target"] = timed(fast.target, st["target"]["reps"])
        if "f_eval" in st:
            t["f_eval"] = timed(lambda: fast.f(S.X), st["f_eval"]["reps"])
        if "x_update" in st:
            k = st["x_update"]["steps"]
            z, lam = S.X.clone(), torch.zeros_like(S.X)
            times = []
            for _ in range(st["x_update"]["reps"]):
                state = fast.new_state(S.X)
                t0 = now()
                for _ in range(k):
                    fast.step(state, z, lam)
                times.append((now() - t0) / k)
            t["x_update"] = times
        if "projection" in st:
            t["projection"] = timed(lambda: fast.project(S.X), st["projection"]["reps"])
        if "init" in st:
            k = st["init"]["candidates"]
            t["init"] = [v / k for v in timed(lambda: fast.init(k), st["init"]["reps"])]  # per candidate
        result["times"] = t
    elif mode == "batch":
        fast.target()
        t0 = now()
        r = fast.run_batch(log)
        result.update(r)
        result["batch_s"] = now() - t0
    print(json.dumps(result))


if __name__ == "__main__":
    main()
