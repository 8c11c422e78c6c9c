"""Times the official GRADMM code (github.com/BigML-CS-UCLA/GRADMM, gradmm/generate.py, unchanged) stage by stage,
for `npm run bench -- speed --model ... --official DIR`.

A thin adapter, like run_official.py: it sets the arguments, and wraps (never edits) four of the official functions
with timers: compute_average_grads (the target gradient of one class), get_init_lm (the init candidates),
torch.optim.Adam.step (one inner x-update step: the official closure runs inside it) and get_topk_closest_tokens
(one projection). The run stops itself once the first class has done its first projection and `inner` Adam steps (at
the start of its second projection), so a batch at the paper's settings (hours on a CPU) is measured in minutes; bench/speed.ts
scales the stage times to the batch's counts.

Usage: python time_official.py '<json>' with keys official (the checkout's gradmm/ folder), model_dir (an HF
folder whose lm_head is its own tensor), tokenizer_source (a GGUF file or an HF folder: the tokenizer when model_dir
has none), data (the IMDB jsonl the official code reads as
../data/imdb/train_len256.jsonl), work (an empty folder), B, gen_max_tokens, subset_size, init_candidates, inner,
topk, threads. Prints one JSON line.
"""
import json
import os
import sys
import time

args = json.loads(sys.argv[1])
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(int(args["threads"]))
sys.path.insert(0, args["official"])
os.makedirs(os.path.join(args["work"], "data", "imdb"), exist_ok=True)
os.makedirs(os.path.join(args["work"], "run"), exist_ok=True)
link = os.path.join(args["work"], "data", "imdb", "train_len256.jsonl")
if not os.path.exists(link):
    os.symlink(os.path.abspath(args["data"]), link)
os.chdir(os.path.join(args["work"], "run"))

# The official code builds its tokenizer with AutoTokenizer from the model folder: give the folder one (from the
# GGUF file the weights came from, by transformers' own GGUF reader) when it has none.
if not os.path.exists(os.path.join(args["model_dir"], "tokenizer_config.json")):
    from transformers import AutoTokenizer

    src = args["tokenizer_source"]
    tok = (AutoTokenizer.from_pretrained(os.path.dirname(src), gguf_file=os.path.basename(src)) if src.endswith(".gguf")
           else AutoTokenizer.from_pretrained(src))
    tok.save_pretrained(args["model_dir"])

import generate  # noqa: E402  the official entry point

times = {"target": [], "init": [], "x_step": [], "projection": []}


class StopTiming(Exception):
    pass


def timer(key, fn, after=None):
    def wrapped(*a, **k):
        if key == "projection" and len(times["projection"]) >= 1:
            raise StopTiming()  # the second projection: every stage has been timed
        t = time.perf_counter()
        out = fn(*a, **k)
        times[key].append({"seconds": time.perf_counter() - t, **(after(a, k, out) if after else {})})
        print(f"[time_official] {key} {times[key][-1]['seconds']:.2f} s", file=sys.stderr, flush=True)
        return out

    return wrapped


# compute_average_grads(args, model, tokenizer, sequences, labels): the number of examples is len(sequences)
generate.compute_average_grads = timer("target", generate.compute_average_grads, lambda a, k, out: {"examples": len(a[3])})
generate.get_init_lm = timer("init", generate.get_init_lm)
generate.get_topk_closest_tokens = timer("projection", generate.get_topk_closest_tokens)
torch.optim.Adam.step = timer("x_step", torch.optim.Adam.step)

generate.MODEL_MAP["local"] = args["model_dir"]  # the official model table knows only "phi" (microsoft/phi-1_5)
sys.argv = ["generate.py",
            "--rng_seed", "42", "--dataset", "imdb", "--split", "train", "--device", "cpu", "--model_name", "local",
            "--n_gen_samples", str(args["subset_size"]), "--subset_size", str(args["subset_size"]),
            "--batch_size", str(args["subset_size"]),
            "--n_gen", "1", "--gen_bs", str(args["B"]),
            "--use_auto_gen_tokens", "false", "--gen_max_tokens", str(args["gen_max_tokens"]),
            "--n_steps", "30", "--admm_inner_steps", str(args["inner"]), "--init_candidates", str(args["init_candidates"]),
            "--topk", str(args["topk"]), "--admm_rho", "0.1", "--grad_clip", "1.0", "--opt_alg", "admm",
            "--print_full", "false", "--print_every", "1", "--save_every", "1",
            "--work_base_dir", "./synthetic_data", "--overwrite", "true"]
t0 = time.perf_counter()
stopped = False
try:
    generate.main()
except StopTiming:
    stopped = True
print(json.dumps({"torch_version": torch.__version__, "threads": torch.get_num_threads(), "stopped_as_planned": stopped,
                  "wall_s": time.perf_counter() - t0, "times": times}))
