"""Scores both sides' decoded texts with the official code's own functions (compute_average_grads, get_reconstruction_loss_ids,
grad_dist; no copied logic). Usage: python official_score.py real_train_data.jsonl official/synthetic_data.jsonl ours/synthetic.jsonl
Each text is re-encoded and followed by " It was "; the target is the official average over the real file's examples per class."""
import sys, os, json, math, torch
os.environ.setdefault("WANDB_MODE", "disabled")
sys.path.insert(0, os.environ.get("GRADMM_OFFICIAL", "/tmp/gradmm-official/gradmm"))
from transformers import AutoModelForCausalLM, AutoTokenizer
from args_factory import get_args
from generate import compute_average_grads, LAST_LAYERS
from utilities import get_reconstruction_loss_ids, grad_dist
torch.set_num_threads(2)
MODEL = os.environ.get("GRADMM_OFFICIAL_MODEL", "/tmp/smollm2-hf-untied")
real_file, off_file, ours_file = sys.argv[1:4]
args = get_args(["x", "--dataset", "imdb", "--split", "train", "--device", "cpu", "--grad_clip", "1.0"])
model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32)
for name, p in model.named_parameters():
    p.requires_grad = any(s in name for s in LAST_LAYERS)
tok = AutoTokenizer.from_pretrained(MODEL); tok.padding_side = "left"; tok.pad_token_id = 0
rd = lambda f: [json.loads(l) for l in open(f)]
real = rd(real_file)
P = " It was "
sides = {"official": [(r["inputs"][: -len(P)] if r["inputs"].endswith(P) else r["inputs"], r["label"]) for r in rd(off_file)],
         "ours": [(r["text"], r["label"]) for r in rd(ours_file)]}
prompt_ids = tok(P)["input_ids"]
out = {}
for cls in (0, 1):
    seqs = [r["inputs"] for r in real if r["label"] == cls]
    true_grads = compute_average_grads(args, model, tok, seqs, [torch.tensor([cls])] * len(seqs))[0]
    lab = tok("bad" if cls == 0 else "great", return_tensors="pt")["input_ids"].view(-1)
    for side, rows in sides.items():
        texts = [t for t, l in rows if l == cls]
        per, grads, ppl = [], None, []
        for t in texts:
            ids = torch.tensor([tok(t)["input_ids"] + prompt_ids])
            loss, g = get_reconstruction_loss_ids(model, ids, torch.ones_like(ids), lab, true_grads, args, return_grads=True)
            per.append(loss.item())
            grads = [x / len(texts) for x in g] if grads is None else [a + x / len(texts) for a, x in zip(grads, g)]
            with torch.no_grad():
                ppl.append(model(input_ids=ids, labels=ids).loss.item())  # get_loss's "perplexity" (a mean CE over the whole ids)
        out[f"{side}/{cls}"] = {"batch_rec_loss_ids": float(grad_dist(true_grads, grads, args)), "per_sample_rec_loss_ids_mean": sum(per) / len(per),
                                "official_perplexity_ce_mean": sum(ppl) / len(ppl), "exp": math.exp(sum(ppl) / len(ppl))}
print(json.dumps(out, indent=1))
