"""bench/peer_hf_arc.py: the peer of bench/bench_arc.c: the same ARC self-edit
evaluation in Hugging Face transformers + peft (SDPA attention; bf16 on a GPU,
fp32 on the CPU).

  peer_hf_arc.py --model DIR --work DIR [--device cuda|cpu]

DIR is what `bench_arc --export DIR` wrote: the model loads from --model (the
same safetensors), the LoRA from DIR/adapter0 (the same initial adapter);
every batch of DIR/arc.bin is trained in its order with its learning rate
(DIR/arc.json: forward with labels, backward, clip_grad_norm_, AdamW), then
each test input's views are answered greedily in one left-padded
model.generate batch with the same stop ids and answer limit. Voting (a few
grids compared on the CPU) is left out.

Prints "key value" lines (ttt_s, infer_s, total_s, answer_tokens, and
answers_equal: how many views got exactly our answer) and "loss STEP VALUE"
per step; or "peer_missing WHY" when the stack or the device is not there.
"""
import argparse
import json
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    try:
        import numpy as np
        import peft
        import safetensors.torch
        import torch
        import transformers
    except Exception as e:  # the peer is missing, not failed
        print(f"peer_missing import failed: {e}")
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("peer_missing torch sees no CUDA device")
        return 0
    print(f"version transformers {transformers.__version__}, peft {peft.__version__}, torch {torch.__version__}")
    dev = torch.device(args.device)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    meta = json.load(open(os.path.join(args.work, "arc.json")))
    data = np.fromfile(os.path.join(args.work, "arc.bin"), dtype="<i4")
    at = 0

    def take(n):
        nonlocal at
        at += n
        return data[at - n:at]

    steps = []
    for _ in range(meta["steps"]):
        B, T = (int(x) for x in take(2))
        ids = torch.from_numpy(take(B * T).reshape(B, T).astype(np.int64))
        labels = torch.from_numpy(take(B * T).reshape(B, T).astype(np.int64))
        steps.append((ids, labels))
    tests = []  # per test input: (prompts, our answers)
    for n in meta["views"]:
        views = []
        for _ in range(n):
            prompt = take(int(take(1)[0])).tolist()
            views.append((prompt, take(int(take(1)[0])).tolist()))
        tests.append(views)
    assert at == len(data), "arc.bin: trailing data"

    t0 = time.perf_counter()
    # our model.safetensors has no "format" metadata, which from_pretrained wants: the weights are loaded here
    cfg = transformers.AutoConfig.from_pretrained(args.model)
    with torch.device(dev):  # the random init that load_state_dict overwrites, on the device (fast there)
        model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", torch_dtype=dtype)
    missing, unexpected = model.load_state_dict(safetensors.torch.load_file(os.path.join(args.model, "model.safetensors")), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    model.tie_weights()
    model = model.to(dev, dtype)
    model = peft.PeftModel.from_pretrained(model, os.path.join(args.work, "adapter0"), is_trainable=True)
    print(f"load_s {time.perf_counter() - t0:.2f}")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=meta["lr"][0], betas=(meta["beta1"], meta["beta2"]), eps=meta["eps"],
                            weight_decay=meta["weight_decay"])
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    # Test-time training: our batches, in our order, at our learning rates
    model.train()
    losses = []
    sync()
    t0 = time.perf_counter()
    for (ids, labels), lr in zip(steps, meta["lr"]):
        for g in opt.param_groups:
            g["lr"] = lr
        out = model(input_ids=ids.to(dev), labels=labels.to(dev))
        out.loss.backward()
        if meta["max_grad_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(params, meta["max_grad_norm"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.item())  # as ours: each step's loss comes back
    sync()
    ttt_s = time.perf_counter() - t0
    print(f"ttt_s {ttt_s:.3f}")

    # Voting inference: each test input's views in one batch, greedy, left-padded
    model.eval()
    stop = set(meta["stop"])
    answer_tokens = equal = n_views = 0
    sync()
    t0 = time.perf_counter()
    for views in tests:
        if not views:
            continue
        P = max(len(p) for p, _ in views)
        ids = torch.zeros((len(views), P), dtype=torch.int64)
        mask = torch.zeros_like(ids)
        for i, (p, _) in enumerate(views):
            ids[i, P - len(p):] = torch.tensor(p)
            mask[i, P - len(p):] = 1
        with torch.no_grad():
            out = model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev), max_new_tokens=meta["max_new"], do_sample=False,
                                 eos_token_id=meta["stop"], pad_token_id=0, use_cache=True)
        for i, (_, ours) in enumerate(views):
            gen = out[i, P:].tolist()
            for j, tok in enumerate(gen):  # up to and including the first stop, as ours
                if tok in stop:
                    gen = gen[:j + 1]
                    break
            answer_tokens += len(gen)
            equal += gen == ours
            n_views += 1
    sync()
    infer_s = time.perf_counter() - t0
    print(f"infer_s {infer_s:.3f}")
    print(f"total_s {ttt_s + infer_s:.3f}")
    print(f"views {n_views}")
    print(f"answer_tokens {answer_tokens}")
    print(f"answers_equal {equal}")
    if args.device == "cuda":
        print(f"peak_mem_gib {torch.cuda.max_memory_allocated() / 2**30:.2f}")
    for i, loss in enumerate(losses):
        print(f"loss {i + 1} {loss:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
