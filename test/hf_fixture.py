#!/usr/bin/env python3
"""Re-makes a verification fixture with Hugging Face transformers + peft themselves, in float32.

    python test/hf_fixture.py SRC_FIXTURE OUT_DIR

Needs torch, transformers, peft and safetensors (CI does not: it only runs `seal verify` on the
fixtures this writes, test/fixtures_hf/). Written for transformers 4.46 + peft 0.13.

SRC_FIXTURE is a fixture in the format of docs/FORMATS.md, "Verification fixture directory"
(e.g. test/fixtures/NAME, made by test/reference.py). From it this takes only the inputs: the
model (config.json, model.safetensors), the initial adapter (adapter/, when trainable = lora),
the batch (input_ids, labels) and the optimizer settings (__metadata__ of expected.safetensors).
Every expected number is then recomputed by `LlamaForCausalLM` (or `Qwen2ForCausalLM` when
config.json says model_type "qwen2"; eager attention, HF's own causal-LM loss), `PeftModel` and `torch.optim.AdamW`, all in float32 -- the numerics users
compare against -- and OUT_DIR is written as a complete fixture for `seal verify OUT_DIR`.
"""
import json
import os
import shutil
import sys

import peft
import torch
import transformers
from peft import PeftModel
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM


def main(src, out):
    torch.manual_seed(0)  # nothing here is random (lora_dropout = 0); fixed anyway
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    with safe_open(os.path.join(src, "expected.safetensors"), "pt") as f:
        meta = dict(f.metadata())
        ids, labels = f.get_tensor("input_ids").long(), f.get_tensor("labels").long()
    lora = meta["trainable"] == "lora"

    qwen2 = cfg.get("model_type") == "qwen2"
    cfg = {k: v for k, v in cfg.items() if k != "model_type"}   # a class attribute of each config
    Config, Model = (Qwen2Config, Qwen2ForCausalLM) if qwen2 else (LlamaConfig, LlamaForCausalLM)
    model = Model(Config(**cfg, attn_implementation="eager")).float()
    assert model.config._attn_implementation == "eager"
    missing, unexpected = model.load_state_dict(load_file(os.path.join(src, "model.safetensors")), strict=False)
    assert not unexpected and set(missing) == ({"lm_head.weight"} if model.config.tie_word_embeddings else set()), \
        (missing, unexpected)
    if model.config.tie_word_embeddings:
        assert model.lm_head.weight is model.model.embed_tokens.weight
    if lora:
        model = PeftModel.from_pretrained(model, os.path.join(src, "adapter"), is_trainable=True)
    model.train()

    # Trainable tensors under their fixture names: PEFT adapter keys (in-memory names carry the
    # adapter name ".default."), or HF model keys (named_parameters lists a tied weight once, as
    # model.embed_tokens.weight).
    params = {n.replace(".default.", "."): p for n, p in model.named_parameters() if p.requires_grad}
    if not lora:
        assert len(params) == len(list(model.parameters()))
    assert all(p.dtype == torch.float32 for p in params.values())

    opt = torch.optim.AdamW(list(params.values()), lr=float(meta["lr"]), betas=(float(meta["beta1"]), float(meta["beta2"])),
                            eps=float(meta["eps"]), weight_decay=float(meta["weight_decay"]))

    def forward_backward():
        opt.zero_grad()
        o = model(input_ids=ids, labels=labels)
        o.loss.backward()
        return o

    o = forward_backward()
    exp = {"input_ids": ids.int(), "labels": labels.int(), "logits": o.logits.detach().clone(),
           "loss": o.loss.detach().reshape(1).clone()}
    exp.update({"grad." + n: p.grad.detach().clone() for n, p in params.items()})
    losses = []
    for step in range(int(meta["steps"])):           # the loss before each step, on the same batch
        if step > 0:
            o = forward_backward()
        losses.append(o.loss.item())
        opt.step()
    exp["steps.loss"] = torch.tensor(losses, dtype=torch.float32)
    exp.update({"after." + n: p.detach().clone() for n, p in params.items()})

    os.makedirs(out, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(os.path.join(src, name), os.path.join(out, name))
    if lora:
        shutil.copytree(os.path.join(src, "adapter"), os.path.join(out, "adapter"), dirs_exist_ok=True)
    meta["generator"] = f"transformers {transformers.__version__} + peft {peft.__version__}, float32"
    save_file({k: v.contiguous() for k, v in exp.items()}, os.path.join(out, "expected.safetensors"), metadata=meta)
    print(f"{out}: loss {exp['loss'].item():.6f}, steps.loss {[round(x, 6) for x in losses]}, "
          f"{len(params)} trainable tensors ({meta['generator']})")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
