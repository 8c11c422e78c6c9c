"""GRADMM as the paper's released code computes it, in plain PyTorch: the reference of `npm run bench -- speed`.

This re-implements the computation structure of the authors' generation loop (their `compute_grads_lm`,
`grad_dist`/`cos_sim`, `get_topk_closest_tokens` and `get_init_lm`) on our GPT-2 weights, without transformers:

  target      every real example on its own: full forward, logits at every position (as GPT2LMHeadModel's forward
              computes them), CE of the last position, torch.autograd.grad w.r.t. the lm_head weight -> a full V x C
              tensor; the n tensors are averaged.
  distance    1 - cos over the flattened full V x C gradients of the synthetic batch (one forward of the batch, mean
              CE of the last positions, autograd.grad w.r.t. lm_head).
  x-update    torch.optim.Adam on the input embeddings; every inner step rebuilds the lm_head gradient with
              create_graph=True and back-propagates through it to X (double backprop), plus rho/2 ||x - z + lam/rho||^2;
              template gradient zeroed; gradient-norm clipping.
  projection  cosine of every position to every vocabulary row (the weight matrix repeated per row, as released),
              a full argsort, then for each free position a fresh forward over prefix + tokens chosen so far (what
              `model.generate(max_new_tokens=1)` costs: no KV cache kept between positions), the LM's argsort, and
              the first LM-ranked token inside the cosine top-k. Logits are taken at the last position only (newer
              transformers' generate does that; older ones computed every position, slower still).
  init        `init_candidates` random batches, each scored by the full lm_head gradient and its cosine.

The lm_head is tied to wte in GPT-2; it enters here as its own leaf tensor (a copy of wte) so that its gradient is
the lm_head term alone, as in our engine. Random numbers: the engine's splitmix64 generator (gpt2_torch.fill_normal),
so every side draws the same init candidates.

Deliberately left out of the released loop, so this reference is a lower bound of its cost: the perplexity forward
inside every inner step, the second projection and the id-based losses computed for logging after every outer step.

Usage: python3 gradmm_ref.py '<json args>' (run by bench/speed.ts). Prints one JSON line.
"""
import json
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, __import__("os").path.dirname(__file__))
from gpt2_torch import Setup, blas_library, init_candidate, now, settings, write_safetensors  # noqa: E402
from llama_torch import load_model  # noqa: E402


def cos_sim(x, y):
    return (x * y).sum() / (x.norm(p=2) * y.norm(p=2)).clamp_min(1e-8)


class Reference:
    def __init__(self, model, setup, s):
        self.m, self.S, self.s = model, setup, s
        self.W = model.lm_head.clone().requires_grad_(True)  # the lm_head weight, its own leaf
        self.template_embeds = model.embed(setup.template)
        self.unused = (~setup.allowed).nonzero().flatten()
        self.G = None

    def lm_head_grad(self, embeds, labels, create_graph):
        h = self.m.hidden(embeds)
        logits = h @ self.W.t()  # every position, as the HF forward does
        loss = F.cross_entropy(logits[:, -1, :], labels)
        (g,) = torch.autograd.grad(loss, self.W, create_graph=create_graph)
        return g

    def target(self):
        S = self.S
        acc = torch.zeros_like(self.m.lm_head)
        for i in range(S.n):
            ids = S.tokens[i, : S.last_pos[i] + 1]
            acc += self.lm_head_grad(self.m.embed(ids).unsqueeze(0), S.labels[i:i + 1], False)
        self.G = acc / S.n
        return self.G

    def dist(self, X, create_graph=False, float64=False):
        """1 - cos(G*, G_syn(X)); float64=True does the cosine's reductions in double (agreement check only)."""
        labels = torch.full((X.shape[0],), self.S.label, dtype=torch.long)
        g = self.lm_head_grad(X, labels, create_graph)
        if float64:
            return 1 - cos_sim(self.G.double(), g.double())
        return 1 - cos_sim(self.G, g)

    def new_state(self, X):
        x = X.clone().requires_grad_(True)
        return x, torch.optim.Adam([x], lr=self.s["lr"])

    def step(self, x, opt, z, lam):
        """One inner Adam step on f(x) + rho/2 ||x - z + lam/rho||^2 (double backprop through the lm_head gradient)."""
        s, free, rho = self.s, self.S.free, self.s["rho"]

        def closure():
            opt.zero_grad()
            rec = self.dist(x, create_graph=True)
            tot = rec + (rho / 2) * (x - z + (1 / rho) * lam).square().sum()
            tot.backward()
            x.grad[:, free:, :] = 0.0
            with torch.no_grad():
                n = x.grad.norm()
                if n > s["max_grad_norm"]:
                    x.grad.mul_(s["max_grad_norm"] / (n + 1e-6))
            return tot

        opt.step(closure)

    def x_update(self, x, opt, z, lam, steps):
        for _ in range(steps):
            self.step(x, opt, z, lam)
        return float(self.dist(x.detach()))

    @torch.no_grad()
    def project(self, U):
        S, m, topk = self.S, self.m, self.s["topk"]
        B = U.shape[0]
        w = m.wte.unsqueeze(0).repeat(B, 1, 1)
        x = U.float()
        dp = torch.bmm(x, w.transpose(1, 2))
        d = -dp / (x.norm(p=2, dim=2).unsqueeze(2) * w.norm(p=2, dim=2).unsqueeze(1)).clamp_min(1e-8)
        d[:, :, self.unused] = 1e9
        d = torch.argsort(d, dim=2)
        mapped = [S.prefix.tolist() for _ in range(B)]
        for i in range(S.free):
            ids = torch.tensor(mapped, dtype=torch.long)
            h = m.hidden(m.embed(ids))  # from scratch: prefix + every token chosen so far
            score = h[:, -1, :] @ m.lm_head.t()
            order = torch.argsort(score, dim=1, descending=True)
            for row in range(B):
                matches = torch.isin(order[row], d[row, i, :topk]).nonzero(as_tuple=True)[0]
                mapped[row].append(int(order[row, matches[0]]))
        return torch.tensor(mapped, dtype=torch.long)[:, len(S.prefix):]

    def z_of(self, tokens):
        z = torch.empty(self.S.B, self.S.L, self.m.C)
        z[:, : self.S.free] = self.m.embed(tokens)
        z[:, self.S.free:] = self.template_embeds
        return z

    @torch.no_grad()
    def init(self, candidates):
        S, s = self.S, self.s
        best, best_x = float("inf"), None
        for c in range(candidates):
            cand = init_candidate(c, s["seed"], S.B, S.L, self.m.C, S.free, s["init_token_norm"], self.template_embeds)
            with torch.enable_grad():
                f = float(self.dist(cand))
            if f < best:
                best, best_x = f, cand
        return best_x, best

    def run_batch(self, log):
        """One ADMM batch, as ts/gradmm/method.ts runBatch orders it (for completeness: slow)."""
        s, S = self.s, self.S
        x0, init_f = self.init(s["init_candidates"])
        x, opt = self.new_state(x0)
        lam = torch.zeros_like(x0)
        best = (float("inf"), x0.clone())
        for outer in range(s["outer"]):
            with torch.no_grad():
                u = x.detach() + lam / s["rho"]
            z = self.z_of(self.project(u))
            z_loss = float(self.dist(z))
            x_loss = self.x_update(x, opt, z, lam, s["inner"])
            with torch.no_grad():
                lam[:, : S.free] += s["rho"] * (x.detach()[:, : S.free] - z[:, : S.free])
            if x_loss < best[0]:
                best = (x_loss, x.detach().clone())
            log(f"ref batch: outer {outer + 1}/{s['outer']} x {x_loss:.4f} z {z_loss:.4f}")
        z = self.z_of(self.project(best[1]))
        return {"init_f": init_f, "best_x_f": best[0], "decoded_f": float(self.dist(z))}


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
    ref = Reference(model, S, settings(args))
    result = {"torch_version": torch.__version__, "torch_blas": blas_library(), "threads": torch.get_num_threads()}
    mode = args["mode"]
    if mode == "check":
        G = ref.target()
        X = S.X.clone().requires_grad_(True)
        f = ref.dist(X, create_graph=True)
        (dX,) = torch.autograd.grad(f, X)
        # the same gradients with the cosine's reductions in float64: separates float32 summation error from the rest
        X64 = S.X.clone().requires_grad_(True)
        f64 = ref.dist(X64, create_graph=True, float64=True)
        (dX64,) = torch.autograd.grad(f64, X64)
        tokens = ref.project(S.X)
        init_x, init_f = ref.init(args["check_init_candidates"])
        write_safetensors(args["out"], {"G": G, "dX": dX, "dX64": dX64.float(), "proj": tokens.int(), "init_X": init_x})
        result.update({"f": float(f), "f64": float(f64), "target_norm": float(G.norm()),
                       "target_norm64": float(G.double().norm()), "init_f": init_f})
    elif mode == "bench":
        st = args["stages"]
        t = {}
        t["setup_target"] = timed(ref.target, 1)  # also the warm-up; needed by everything after
        if "target" in st:
            t["target"] = timed(ref.target, st["target"]["reps"])
        if "f_eval" in st:
            t["f_eval"] = timed(lambda: ref.dist(S.X), st["f_eval"]["reps"])
        if "x_update" in st:
            k = st["x_update"]["steps"]
            z, lam = S.X.clone(), torch.zeros_like(S.X)
            times = []
            for _ in range(st["x_update"]["reps"]):
                x, opt = ref.new_state(S.X)
                t0 = now()
                for _ in range(k):
                    ref.step(x, opt, z, lam)
                times.append((now() - t0) / k)
            t["x_update"] = times
        if "projection" in st:
            t["projection"] = timed(lambda: ref.project(S.X), st["projection"]["reps"])
        if "init" in st:
            k = st["init"]["candidates"]
            t["init"] = [v / k for v in timed(lambda: ref.init(k), st["init"]["reps"])]  # per candidate
        result["times"] = t
    elif mode == "batch":
        ref.target()
        t0 = now()
        r = ref.run_batch(log)
        result.update(r)
        result["batch_s"] = now() - t0
    print(json.dumps(result))


if __name__ == "__main__":
    main()
