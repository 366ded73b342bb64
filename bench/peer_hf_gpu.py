"""bench/peer_hf_gpu.py: the peer of bench/bench_gpu.c: Hugging Face
transformers + peft in bf16 with SDPA attention, on the same GPU and the same
shapes, random weights from a LlamaConfig (nothing is downloaded).

  train   LoRA r=128 (alpha 256) on q,v,gate,up,down, batch 2 x 1024: forward
          with labels, backward, clip_grad_norm_(1.0), torch.optim.AdamW.
  decode  batch 1 and 64, 1024-token prompts, greedy model.generate with the
          KV cache: decode tokens/s = B * G / (time of G + 1 new tokens - time
          of 1 new token), prefill tokens/s from the 1-token run.

Prints one "key value" line per measure (bench/run_gpu.sh reads them), or
"peer_missing WHY" when the stack is not there.
"""
import argparse
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--prompt", type=int, default=1024)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--sample", type=int, default=15)
    ap.add_argument("--sample-prompt", type=int, default=2048)
    args = ap.parse_args()
    try:
        import peft
        import torch
        import transformers
    except Exception as e:  # the peer is missing, not failed
        print(f"peer_missing import failed: {e}")
        return 0
    if not torch.cuda.is_available():
        print("peer_missing torch sees no CUDA device")
        return 0
    print(f"version transformers {transformers.__version__}, peft {peft.__version__}, torch {torch.__version__}")
    dev = torch.device("cuda")
    shape = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                 num_key_value_heads=8, head_dim=64, vocab_size=128256, rms_norm_eps=1e-5, rope_theta=500000.0,
                 tie_word_embeddings=True, max_position_embeddings=131072, bos_token_id=128000, eos_token_id=128001)
    llama3 = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 8192}
    try:
        cfg = transformers.LlamaConfig(rope_scaling=llama3, **shape)
    except Exception:  # a transformers that spells RoPE settings differently: the speed is the same
        cfg = transformers.LlamaConfig(**shape)

    def make_model():
        torch.manual_seed(0)
        with torch.device(dev):
            try:
                m = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", torch_dtype=torch.bfloat16)
            except TypeError:
                m = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")
        return m.to(dev, torch.bfloat16)

    def mem_in_use_gib():
        free, total = torch.cuda.mem_get_info()
        return (total - free) / 2**30

    # LoRA training step
    model = make_model()
    lcfg = peft.LoraConfig(r=128, lora_alpha=256, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                           target_modules=["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"])
    model = peft.get_peft_model(model, lcfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    B, T = 2, 1024
    g = torch.Generator(device=dev).manual_seed(7)
    ids = torch.randint(0, cfg.vocab_size, (B, T), device=dev, generator=g)
    torch.cuda.reset_peak_memory_stats()

    def step():
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.loss

    for _ in range(2):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / args.steps
    print(f"train_step_s {dt:.4f}")
    print(f"train_tokens_per_s {B * T / dt:.0f}")
    print(f"train_mean_loss {loss.item():.4f}")
    print(f"train_mem_gib {mem_in_use_gib():.2f}")
    print(f"train_max_allocated_gib {torch.cuda.max_memory_allocated() / 2**30:.2f}")
    sys.stdout.flush()
    del model, opt, params, loss
    torch.cuda.empty_cache()

    # Greedy decoding with the KV cache
    model = make_model()
    model.eval()
    runs = [(f"b{b}", b, args.prompt) for b in [int(x) for x in args.batches.split(",") if x]]
    if args.sample > 0:
        runs.append(("sample", args.sample, args.sample_prompt))  # a task's self-edits as one batch
    G = args.gen
    for key, b, P in runs:
        prompt = torch.randint(0, cfg.vocab_size, (b, P), device=dev, generator=g)
        mask = torch.ones_like(prompt)

        def gen(n):
            torch.cuda.synchronize()
            t = time.perf_counter()
            with torch.no_grad():
                out = model.generate(input_ids=prompt, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                                     do_sample=False, use_cache=True, pad_token_id=0)
            torch.cuda.synchronize()
            assert out.shape[1] == P + n
            return time.perf_counter() - t

        gen(2)  # warm-up
        torch.cuda.reset_peak_memory_stats()
        t1 = gen(1)
        tg = gen(G + 1)
        print(f"{key}_prefill_tokens_per_s {b * P / t1:.0f}")
        print(f"{key}_decode_tokens_per_s {b * G / (tg - t1):.1f}")
        print(f"{key}_decode_step_ms {1e3 * (tg - t1) / G:.3f}")
        print(f"{key}_mem_gib {mem_in_use_gib():.2f}")
        print(f"{key}_max_allocated_gib {torch.cuda.max_memory_allocated() / 2**30:.2f}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
