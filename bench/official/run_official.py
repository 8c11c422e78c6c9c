"""Thin adapter: runs the official GRADMM code (github.com/BigML-CS-UCLA/GRADMM, gradmm/generate.py, unchanged) on the
CPU with a local Hugging Face model folder. It only sets paths and arguments; see bench/README.md, "Official code vs
ours on SmolLM2 (one batch)".

  GRADMM_OFFICIAL        the official checkout's gradmm/ folder (default /tmp/gradmm-official/gradmm)
  GRADMM_OFFICIAL_MODEL  an HF folder whose lm_head is its own tensor (default /tmp/smollm2-hf-untied)

Run it from a folder whose ../data/imdb/train_len256.jsonl is the IMDB file (the official code reads that relative
path); its output goes to ./synthetic_data/<run name>/. Extra arguments are passed on (the last one wins).
Needs datasets, scikit-learn, regex and wandb (WANDB_MODE=disabled is set here).
"""
import os
import sys

official = os.environ.get("GRADMM_OFFICIAL", "/tmp/gradmm-official/gradmm")
model_dir = os.environ.get("GRADMM_OFFICIAL_MODEL", "/tmp/smollm2-hf-untied")
os.environ.setdefault("WANDB_MODE", "disabled")
sys.path.insert(0, official)
import generate  # noqa: E402  the official entry point

generate.MODEL_MAP["smollm2"] = model_dir  # its model table knows only "phi" (microsoft/phi-1_5)
args = [
    "--rng_seed", "42", "--dataset", "imdb", "--split", "train", "--device", "cpu", "--model_name", "smollm2",
    "--n_gen_samples", "30", "--subset_size", "30", "--batch_size", "30",  # 30 real examples, stratified: 17 / 13
    "--n_gen", "1", "--gen_bs", "4",  # one batch of 4 per class
    "--use_auto_gen_tokens", "false", "--gen_max_tokens", "19",  # 16 free tokens + " It was " (3 tokens)
    "--n_steps", "2", "--admm_inner_steps", "10", "--init_candidates", "20", "--topk", "200",
    "--admm_rho", "0.1", "--grad_clip", "1.0", "--opt_alg", "admm",
    "--print_full", "false", "--print_every", "1", "--save_every", "1",
    "--work_base_dir", "./synthetic_data", "--overwrite", "true",
]
sys.argv = ["generate.py"] + args + sys.argv[1:]
generate.main()
