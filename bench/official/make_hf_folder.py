# Writes the SmolLM2 GGUF as float32 Hugging Face folders for bench/official: /tmp/smollm2-hf (tied, as the GGUF) and
# /tmp/smollm2-hf-untied (the same values with lm_head.weight stored as its own tensor: the official code takes the
# gradient of the parameters whose name contains "lm_head", and a tied model lists only model.embed_tokens.weight).
import torch, os
from transformers import AutoModelForCausalLM, AutoTokenizer
d = os.path.expanduser('~/.cache/gradmm/models/smollm2-135m-instruct'); f = 'SmolLM2-135M-Instruct.Q4_1.gguf'
tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
m = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
print(m.config.tie_word_embeddings, m.lm_head.weight.data_ptr() == m.model.embed_tokens.weight.data_ptr())
cfg = m.config
if hasattr(cfg, 'quantization_config'): del cfg.quantization_config
sd = {k: v.detach().clone() for k, v in m.state_dict().items()}
m = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
print(m.load_state_dict(sd, strict=False))
m.tie_weights()
m.save_pretrained('/tmp/smollm2-hf'); tok.save_pretrained('/tmp/smollm2-hf')
# the same weights with the lm_head stored as its own tensor (the official code looks for a parameter named lm_head)
m.config.tie_word_embeddings = False
m.lm_head.weight = torch.nn.Parameter(m.model.embed_tokens.weight.detach().clone())
m.save_pretrained('/tmp/smollm2-hf-untied'); tok.save_pretrained('/tmp/smollm2-hf-untied')
m2 = AutoModelForCausalLM.from_pretrained('/tmp/smollm2-hf-untied', dtype=torch.float32)
print([n for n,_ in m2.named_parameters() if 'lm_head' in n or 'embed' in n])
m1 = AutoModelForCausalLM.from_pretrained('/tmp/smollm2-hf', dtype=torch.float32)
ids = tok("The movie was great. It was ", return_tensors='pt')['input_ids']
print(ids, tok.convert_ids_to_tokens(ids[0]), tok("bad")['input_ids'], tok("great")['input_ids'], tok(" bad")['input_ids'])
with torch.no_grad(): print((m1(ids).logits - m2(ids).logits).abs().max())
