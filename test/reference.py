#!/usr/bin/env python3
"""Independent PyTorch reference for the C implementation: writes verification fixtures.

Run it with the Debian interpreter (it has torch; the default `python3` may not):

    /usr/bin/python3 test/reference.py OUTDIR                 # all fixtures -> OUTDIR/<name>/
    /usr/bin/python3 test/reference.py OUTDIR --only NAME     # one fixture
    /usr/bin/python3 test/reference.py OUTDIR --selfcheck     # re-read what is in OUTDIR and check it

What it is: a small, readable re-statement of Hugging Face `LlamaForCausalLM`
(RMSNorm, rotate_half RoPE with optional `llama3` frequency scaling, grouped-query
attention, SwiGLU MLP, tied or untied LM head) and of `Qwen2ForCausalLM` (the same,
plus a bias on the q, k and v projections: `nn.Linear(..., bias=True)`), PEFT LoRA (`y = W x + alpha/r * B (A x)`),
the HF causal-LM loss (logits[:, :-1] vs labels[:, 1:], -100 ignored, mean) and
`torch.optim.AdamW`. It needs only torch: no transformers, peft or safetensors package;
safetensors files are written and read by the few lines below.

It deliberately shares no code with the C implementation: it is the thing the C code is
checked against (`seal verify FIXTURE`), so it must stay obviously right rather than fast.
All math is done in float64 starting from the float32 values that are stored, and the
results are stored as F32. The fixture layout is docs/FORMATS.md, "Verification fixture
directory". Seeds are fixed, so regenerating gives the same files.

`--selfcheck` re-reads the files (own safetensors parser), recomputes everything, compares
with a second loop-per-token forward, finite differences and gradcheck, and checks that the
same pipeline run in float32 meets the fp32 tolerance of FORMATS.md (so the fixture is not
ill-conditioned for a float32 implementation). The fixtures were also reproduced once with
Hugging Face transformers 4.46.3 + peft 0.13.2 (LlamaForCausalLM, PeftModel, float64,
torch.optim.AdamW): worst relative difference 6e-6 over all stored tensors.
"""
import argparse
import json
import math
import os
import struct
import sys

import torch

F64 = torch.float64
ALL_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SEAL_MODULES = ["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"]

# ----------------------------------------------------------------------------- safetensors

ST_DTYPES = {"F32": (torch.float32, 4), "I32": (torch.int32, 4), "F64": (torch.float64, 8)}


def write_safetensors(path, tensors, metadata=None):
    """tensors: ordered dict name -> torch tensor (float32 or int32). Raw little-endian data."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        dtype, np_dtype = {torch.float32: ("F32", "<f4"), torch.int32: ("I32", "<i4")}[t.dtype]
        raw = t.detach().contiguous().numpy().astype(np_dtype).tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_safetensors(path):
    """Returns (dict name -> tensor, metadata dict). Checks the layout strictly."""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n].decode())
    data = buf[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    out, spans = {}, []
    for name, e in header.items():
        dt, size = ST_DTYPES[e["dtype"]]
        a, b = e["data_offsets"]
        assert b - a == size * math.prod(e["shape"]), f"{path}: {name}: size/shape mismatch"
        spans.append((a, b))
        out[name] = torch.frombuffer(bytearray(data[a:b]), dtype=dt).reshape(e["shape"]) if b > a \
            else torch.zeros(e["shape"], dtype=dt)
    spans.sort()
    assert spans[0][0] == 0 and spans[-1][1] == len(data), f"{path}: data section not covered exactly"
    assert all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1)), f"{path}: gaps/overlaps"
    return out, meta

# ----------------------------------------------------------------------------- the model


def head_dim(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def qkv_bias(cfg):
    """Qwen2 (model_type "qwen2") has biases on q_proj, k_proj and v_proj; Llama has none."""
    return cfg.get("model_type") == "qwen2"


def rope_inv_freq(cfg):
    """inv_freq[j] = theta^(-2j/hd), j < hd/2, then the llama3 scaling. Returns (inv_freq, regimes)."""
    hd = head_dim(cfg)
    inv = 1.0 / cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=F64) / hd)
    rs = cfg.get("rope_scaling")
    if not rs:
        return inv, ["none"] * len(inv)
    assert (rs.get("rope_type") or rs.get("type")) == "llama3"
    factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    orig = rs["original_max_position_embeddings"]
    low_wl, high_wl = orig / low, orig / high
    out, regimes = [], []
    for f in inv.tolist():
        wl = 2 * math.pi / f
        if wl < high_wl:
            out.append(f), regimes.append("high: kept")
        elif wl > low_wl:
            out.append(f / factor), regimes.append("low: divided by factor")
        else:
            s = (orig / wl - low) / (high - low)
            out.append((1 - s) * f / factor + s * f), regimes.append(f"medium: smoothed, s={s:.3f}")
    return torch.tensor(out, dtype=F64), regimes


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def linear(x, P, name, adapter, scale):
    """y = x W^T (+ b when the model has `name`.bias), plus the LoRA term scale * (x A^T) B^T
    when `name` is adapted (PEFT adds it to the output of the base layer, bias included)."""
    y = x @ P[name + ".weight"].T
    if name + ".bias" in P:
        y = y + P[name + ".bias"]
    key = "base_model.model." + name
    if adapter is not None and key + ".lora_A.weight" in adapter:
        y = y + scale * (x @ adapter[key + ".lora_A.weight"].T) @ adapter[key + ".lora_B.weight"].T
    return y


def forward(cfg, P, ids, adapter=None, scale=0.0):
    """Logits [B, T, V] of LlamaForCausalLM. P: model tensors by HF name; adapter: PEFT keys."""
    B, T = ids.shape
    H, KV, hd, eps = cfg["num_attention_heads"], cfg["num_key_value_heads"], head_dim(cfg), cfg["rms_norm_eps"]
    ang = torch.arange(T, dtype=F64)[:, None] * rope_inv_freq(cfg)[0][None, :]   # [T, hd/2]
    dt = P["model.embed_tokens.weight"].dtype
    cos, sin = torch.cat((ang, ang), -1).cos().to(dt), torch.cat((ang, ang), -1).sin().to(dt)  # [T, hd]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    x = P["model.embed_tokens.weight"][ids.long()]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms_norm(x, P[p + "input_layernorm.weight"], eps)
        q = linear(h, P, p + "self_attn.q_proj", adapter, scale).view(B, T, H, hd).transpose(1, 2)
        k = linear(h, P, p + "self_attn.k_proj", adapter, scale).view(B, T, KV, hd).transpose(1, 2)
        v = linear(h, P, p + "self_attn.v_proj", adapter, scale).view(B, T, KV, hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(H // KV, dim=1), v.repeat_interleave(H // KV, dim=1)  # head h -> kv h//(H/KV)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        a = torch.softmax(s.masked_fill(~causal, float("-inf")), dim=-1) @ v           # [B, H, T, hd]
        x = x + linear(a.transpose(1, 2).reshape(B, T, H * hd), P, p + "self_attn.o_proj", adapter, scale)
        h = rms_norm(x, P[p + "post_attention_layernorm.weight"], eps)
        g = torch.nn.functional.silu(linear(h, P, p + "mlp.gate_proj", adapter, scale))
        x = x + linear(g * linear(h, P, p + "mlp.up_proj", adapter, scale), P, p + "mlp.down_proj", adapter, scale)
    x = rms_norm(x, P["model.norm.weight"], eps)
    head = P["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else P["lm_head.weight"]
    return x @ head.T


def causal_lm_loss(logits, labels):
    """HF: logits at t predict labels[t+1]; -100 ignored; mean over the kept positions of the batch."""
    lg, lb = logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1).long()
    keep = lb != -100
    nll = torch.logsumexp(lg[keep], -1) - lg[keep].gather(1, lb[keep][:, None])[:, 0]
    return nll.mean()

# ----------------------------------------------------------------------------- random tiny models


def model_shapes(cfg):
    D, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    H, KV, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], head_dim(cfg)
    s = {"model.embed_tokens.weight": [V, D]}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        s.update({p + "input_layernorm.weight": [D], p + "self_attn.q_proj.weight": [H * hd, D],
                  p + "self_attn.k_proj.weight": [KV * hd, D], p + "self_attn.v_proj.weight": [KV * hd, D],
                  p + "self_attn.o_proj.weight": [D, H * hd], p + "post_attention_layernorm.weight": [D],
                  p + "mlp.gate_proj.weight": [F, D], p + "mlp.up_proj.weight": [F, D],
                  p + "mlp.down_proj.weight": [D, F]})
        if qkv_bias(cfg):
            s.update({p + "self_attn.q_proj.bias": [H * hd], p + "self_attn.k_proj.bias": [KV * hd],
                      p + "self_attn.v_proj.bias": [KV * hd]})
    s["model.norm.weight"] = [D]
    if not cfg["tie_word_embeddings"]:
        s["lm_head.weight"] = [V, D]
    return s


def random_model(cfg, gen):
    """float32 tensors with O(1) activations: norms 1+N(0,0.1); q,k,v,gate,up ~N(0,1/in);
    o,down ~N(0,0.25/in); embeddings and head ~N(0,0.2^2) so logits have std ~1; Qwen2's
    q,k,v biases ~N(0,0.5^2), as large as the products they are added to."""
    out = {}
    for name, shape in model_shapes(cfg).items():
        r = torch.randn(shape, generator=gen, dtype=F64)
        if name.endswith("norm.weight"):
            t = 1 + 0.1 * r
        elif name.endswith(".bias"):
            t = 0.5 * r
        elif "embed" in name or "lm_head" in name:
            t = 0.2 * r
        elif "o_proj" in name or "down_proj" in name:
            t = 0.5 * r / math.sqrt(shape[1])
        else:
            t = r / math.sqrt(shape[1])
        out[name] = t.float()
    return out


def random_adapter(cfg, r, targets, gen):
    """PEFT keys; lora_A ~N(0,1/in), lora_B ~N(0,0.01/r) (non-zero, so every gradient is non-trivial)."""
    shapes, out = model_shapes(cfg), {}
    for i in range(cfg["num_hidden_layers"]):
        for m in targets:
            name = f"model.layers.{i}.{'mlp' if m in ('gate_proj', 'up_proj', 'down_proj') else 'self_attn'}.{m}"
            o, n = shapes[name + ".weight"]
            a = torch.randn(r, n, generator=gen, dtype=F64) / math.sqrt(n)
            b = 0.1 * torch.randn(o, r, generator=gen, dtype=F64) / math.sqrt(r)
            out[f"base_model.model.{name}.lora_A.weight"] = a.float()
            out[f"base_model.model.{name}.lora_B.weight"] = b.float()
    return out

# ----------------------------------------------------------------------------- fixtures


def config(hidden, inter, heads, kv, vocab, tie, rope_theta, rope_scaling=None, hd=None, eos=2):
    c = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
         "intermediate_size": inter, "num_hidden_layers": 2, "num_attention_heads": heads,
         "num_key_value_heads": kv, "vocab_size": vocab, "rms_norm_eps": 1e-5, "rope_theta": rope_theta,
         "rope_scaling": rope_scaling, "tie_word_embeddings": tie, "max_position_embeddings": 256,
         "bos_token_id": 1, "eos_token_id": eos, "hidden_act": "silu", "attention_bias": False,
         "mlp_bias": False, "torch_dtype": "float32"}
    if hd is not None:
        c["head_dim"] = hd
    return c


def qwen2_config(hidden, inter, heads, kv, vocab, tie, rope_theta=1000000.0):
    """The keys of a Qwen2.5 config.json (Qwen2Config), at a tiny size."""
    return {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": hidden,
            "intermediate_size": inter, "num_hidden_layers": 2, "num_attention_heads": heads,
            "num_key_value_heads": kv, "vocab_size": vocab, "rms_norm_eps": 1e-6, "rope_theta": rope_theta,
            "rope_scaling": None, "tie_word_embeddings": tie, "max_position_embeddings": 256,
            "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "use_sliding_window": False,
            "sliding_window": 256, "max_window_layers": 2, "attention_dropout": 0.0, "torch_dtype": "float32"}


# What the small LoRA fixtures share: r 4 (alpha 8), AdamW at lr 1e-2 without
# weight decay, batch 2 with a few -100 labels.
LORA_R4 = dict(B=2, labels="scattered", trainable="lora", r=4, alpha=8, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, wd=0.0)

FIXTURES = {
    # tied head, H = KV = 4, LoRA on all seven modules, no rope scaling, a few -100 labels.
    "tied_lora_kv1": dict(LORA_R4, seed=1001, T=12, steps=3, targets=ALL_MODULES,
                          cfg=config(32, 64, 4, 4, 64, True, 10000.0, hd=8)),
    # untied, H 4 / KV 2, full training, llama3 scaling (rope_type) with 2 kept / 1 smoothed / 1 divided freq.
    "untied_full_kv2_llama3": dict(
        seed=2002, B=2, T=16, labels="scattered",
        cfg=config(32, 48, 4, 2, 48, False, 100.0, hd=8, eos=[2, 3], rope_scaling={
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 3.0,
            "original_max_position_embeddings": 100}),
        trainable="full", steps=3, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, wd=0.1),
    # untied, H 8 / KV 2, head_dim 8 != hidden/heads = 4, SEAL's LoRA set, llama3 scaling spelled
    # with the older "type" key, prompt-masked row 0 and a padded (-100) tail in row 1.
    "untied_lora_kv4_hd": dict(
        seed=3003, B=2, T=14, labels="prompt_and_pad",
        cfg=config(32, 64, 8, 2, 64, False, 50.0, hd=8, rope_scaling={
            "type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 2.0,
            "original_max_position_embeddings": 64}),
        trainable="lora", r=8, alpha=16, targets=SEAL_MODULES,
        steps=2, lr=5e-3, betas=(0.9, 0.999), eps=1e-6, wd=0.01),
    # T = 80: attention runs in several blocks of query rows, as it does for real sequence lengths.
    "long_lora_kv2": dict(LORA_R4, seed=5005, T=80, steps=2, targets=ALL_MODULES,
                          cfg=config(32, 48, 4, 2, 48, True, 10000.0, hd=8)),
    # tied head, H 4 / KV 2, full training, rope_scaling null, no head_dim key (hidden/heads), no -100.
    "tied_full_kv2": dict(
        seed=4004, B=2, T=10, labels="all",
        cfg=config(32, 48, 4, 2, 48, True, 10000.0),
        # lr * wd * steps = 1.5e-2: decoupled weight decay moves weights well past the tolerance
        trainable="full", steps=3, lr=1e-2, betas=(0.8, 0.99), eps=1e-8, wd=0.5),
    # Qwen2 (q/k/v biases, rope_theta 1e6, no head_dim key), tied head as Qwen2.5-0.5B..3B,
    # H 4 / KV 2, LoRA on q_proj and v_proj as SEAL's knowledge runs: the biases stay frozen.
    "qwen2_lora_qv": dict(LORA_R4, seed=6006, T=10, steps=2, targets=["q_proj", "v_proj"],
                          cfg=qwen2_config(32, 48, 4, 2, 48, True)),
    # Qwen2, untied head as Qwen2.5-7B, full training: grad.* and after.* hold the biases too.
    "qwen2_full": dict(
        seed=7007, B=2, T=10, labels="prompt_and_pad",
        cfg=qwen2_config(32, 48, 4, 2, 48, False),
        trainable="full", steps=3, lr=2e-3, betas=(0.9, 0.95), eps=1e-8, wd=0.1),
}


def make_batch(spec, gen):
    B, T, V = spec["B"], spec["T"], spec["cfg"]["vocab_size"]
    ids = torch.randint(3, V, (B, T), generator=gen, dtype=torch.int64)   # 0..2 kept for pad/bos/eos
    ids[:, 0] = 1                                                          # bos
    labels = ids.clone()
    if spec["labels"] == "scattered":                                      # ~20% ignored
        labels[torch.rand(B, T, generator=gen) < 0.2] = -100
    elif spec["labels"] == "prompt_and_pad":
        labels[0, :4] = -100                                               # row 0: prompt not trained
        ids[1, T - 5:] = 2                                                 # row 1: 5 padding tokens (eos)
        labels[1, T - 5:] = -100
    return ids.to(torch.int32), labels.to(torch.int32)


def trainable_names(spec, model, adapter):
    return list(adapter) if spec["trainable"] == "lora" else list(model)


def run(spec, model, adapter, ids, labels, dtype=F64):
    """Forward, backward, S AdamW steps in `dtype`. Returns dict of results (float tensors)."""
    cfg = spec["cfg"]
    P = {n: t.to(dtype, copy=True).requires_grad_(spec["trainable"] == "full") for n, t in model.items()}
    A = {n: t.to(dtype, copy=True).requires_grad_(True) for n, t in adapter.items()} if adapter else None
    scale = spec["alpha"] / spec["r"] if adapter else 0.0
    params = A if spec["trainable"] == "lora" else P
    opt = torch.optim.AdamW(list(params.values()), lr=spec["lr"], betas=spec["betas"], eps=spec["eps"],
                            weight_decay=spec["wd"])
    res, losses = {}, []
    for step in range(spec["steps"]):
        opt.zero_grad()
        logits = forward(cfg, P, ids, A, scale)
        loss = causal_lm_loss(logits, labels)
        loss.backward()
        if step == 0:
            res["logits"], res["loss"] = logits.detach().clone(), loss.detach().reshape(1).clone()
            res.update({"grad." + n: t.grad.detach().clone() for n, t in params.items()})
        losses.append(loss.item())
        opt.step()
    res["steps.loss"] = torch.tensor(losses, dtype=dtype)
    res.update({"after." + n: t.detach().clone() for n, t in params.items()})
    return res


def greedy(cfg, model, adapter, scale, prompt, n_new=12, margin=1e-3):
    """Greedy continuation by full forwards (no cache). Stops early where the top two logits are
    within `margin`, so a float32 implementation cannot pick the other one by rounding."""
    P = {k: v.to(F64) for k, v in model.items()}
    A = {k: v.to(F64) for k, v in adapter.items()} if adapter else None
    seq, out = prompt.tolist(), []
    for _ in range(n_new):
        logits = forward(cfg, P, torch.tensor([seq]), A, scale)[0, -1]
        top = torch.topk(logits, 2).values
        if (top[0] - top[1]).item() < margin:
            break
        out.append(int(logits.argmax()))
        seq.append(out[-1])
    return torch.tensor(out, dtype=torch.int32)


def metadata(spec):
    return {"trainable": spec["trainable"], "optimizer": "adamw", "lr": repr(spec["lr"]),
            "beta1": repr(spec["betas"][0]), "beta2": repr(spec["betas"][1]), "eps": repr(spec["eps"]),
            "weight_decay": repr(spec["wd"]), "steps": str(spec["steps"]), "generator": "test/reference.py"}


def generate(outdir, name):
    spec = FIXTURES[name]
    cfg = spec["cfg"]
    gen = torch.Generator().manual_seed(spec["seed"])
    model = random_model(cfg, gen)
    adapter = random_adapter(cfg, spec["r"], spec["targets"], gen) if spec["trainable"] == "lora" else None
    ids, labels = make_batch(spec, gen)
    res = run(spec, model, adapter, ids, labels)

    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    write_safetensors(os.path.join(d, "model.safetensors"), model, {"format": "pt"})
    if adapter:
        os.makedirs(os.path.join(d, "adapter"), exist_ok=True)
        acfg = {"peft_type": "LORA", "r": spec["r"], "lora_alpha": spec["alpha"], "target_modules": spec["targets"],
                "lora_dropout": 0.0, "bias": "none", "use_rslora": False, "fan_in_fan_out": False,
                "base_model_name_or_path": f"seal-fixture/{name}", "task_type": "CAUSAL_LM"}
        with open(os.path.join(d, "adapter", "adapter_config.json"), "w") as f:
            json.dump(acfg, f, indent=2)
            f.write("\n")
        write_safetensors(os.path.join(d, "adapter", "adapter_model.safetensors"), adapter, {"format": "pt"})
    expected = {"input_ids": ids, "labels": labels}
    expected.update({k: v.float() for k, v in res.items()})
    # Greedy continuation of the first half of row 0 (before any training step), for KV-cache decoding.
    prompt = ids[0, : spec["T"] // 2].clone()
    expected["generate.prompt"] = prompt
    expected["generate.greedy"] = greedy(cfg, model, adapter, spec["alpha"] / spec["r"] if adapter else 0.0, prompt)
    order = ["input_ids", "labels", "logits", "loss"] + [k for k in expected if k.startswith("grad.")] + \
        ["steps.loss"] + [k for k in expected if k.startswith("after.")] + ["generate.prompt", "generate.greedy"]
    write_safetensors(os.path.join(d, "expected.safetensors"), {k: expected[k] for k in order}, metadata(spec))

    grads = [v for k, v in res.items() if k.startswith("grad.")]
    nz = torch.cat([g.abs().flatten() for g in grads])
    nz = nz[nz > 0]
    print(f"{name}: B={spec['B']} T={spec['T']} D={cfg['hidden_size']} F={cfg['intermediate_size']} "
          f"V={cfg['vocab_size']} H={cfg['num_attention_heads']} KV={cfg['num_key_value_heads']} hd={head_dim(cfg)} "
          f"tied={cfg['tie_word_embeddings']} trainable={spec['trainable']} S={spec['steps']} "
          f"kept labels={int((labels[:, 1:] != -100).sum())}/{labels[:, 1:].numel()}")
    print(f"  loss={res['loss'].item():.6f} steps.loss={[round(x, 6) for x in res['steps.loss'].tolist()]} "
          f"|logits|max={res['logits'].abs().max().item():.3f} min nonzero |grad|={nz.min().item():.3g}")
    print(f"  greedy: {len(expected['generate.greedy'])} tokens after a {len(prompt)}-token prompt")
    if cfg.get("rope_scaling"):
        inv, regimes = rope_inv_freq(cfg)
        base = 1.0 / cfg["rope_theta"] ** (torch.arange(0, head_dim(cfg), 2, dtype=F64) / head_dim(cfg))
        for j, (f0, f, r) in enumerate(zip(base.tolist(), inv.tolist(), regimes)):
            print(f"  rope freq {j}: wavelen {2 * math.pi / f0:8.2f}  inv_freq {f0:.6g} -> {f:.6g}  ({r})")
        assert {r.split(":")[0] for r in regimes} == {"high", "medium", "low"}, "want all three llama3 regimes"

# ----------------------------------------------------------------------------- self-check


def load_fixture(d):
    """Re-reads a fixture through the files alone (config.json, safetensors, adapter_config.json)."""
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    model, _ = read_safetensors(os.path.join(d, "model.safetensors"))
    exp, meta = read_safetensors(os.path.join(d, "expected.safetensors"))
    adapter, r, alpha = None, 1, 0
    if meta["trainable"] == "lora":
        with open(os.path.join(d, "adapter", "adapter_config.json")) as f:
            acfg = json.load(f)
        adapter, _ = read_safetensors(os.path.join(d, "adapter", "adapter_model.safetensors"))
        r, alpha = acfg["r"], acfg["lora_alpha"]
    spec = {"cfg": cfg, "trainable": meta["trainable"], "r": r, "alpha": alpha, "lr": float(meta["lr"]),
            "betas": (float(meta["beta1"]), float(meta["beta2"])), "eps": float(meta["eps"]),
            "wd": float(meta["weight_decay"]),
            "steps": int(meta["steps"])}
    return spec, model, adapter, exp, meta


def naive_logits(cfg, P, ids, adapter, scale):
    """A second, loop-per-token/per-head statement of the forward pass (pairs j, j+hd/2 rotated as
    complex numbers; LoRA merged into W) to cross-check `forward`."""
    H, KV, hd, eps = cfg["num_attention_heads"], cfg["num_key_value_heads"], head_dim(cfg), cfg["rms_norm_eps"]
    inv = rope_inv_freq(cfg)[0]
    W = {}
    for n, t in P.items():
        if n.endswith(".bias"):   # Qwen2's q/k/v biases: LoRA does not touch them
            W[n] = t
            continue
        key = "base_model.model." + n[:-len(".weight")]
        W[n] = t + (scale * adapter[key + ".lora_B.weight"] @ adapter[key + ".lora_A.weight"]
                    if adapter is not None and key + ".lora_A.weight" in adapter else 0)

    def norm(v, w):
        return v / math.sqrt(float((v * v).sum()) / len(v) + eps) * w

    def rope(v, pos):
        z = torch.complex(v[:hd // 2], v[hd // 2:]) * torch.polar(torch.ones_like(inv), pos * inv)
        return torch.cat((z.real, z.imag))
    out = []
    for b in range(ids.shape[0]):
        xs = [W["model.embed_tokens.weight"][int(t)] for t in ids[b]]
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            hs = [norm(x, W[p + "input_layernorm.weight"]) for x in xs]
            bq, bk, bv = (W.get(p + f"self_attn.{x}_proj.bias", 0) for x in "qkv")
            qs = [(W[p + "self_attn.q_proj.weight"] @ h + bq).view(H, hd) for h in hs]
            ks = [(W[p + "self_attn.k_proj.weight"] @ h + bk).view(KV, hd) for h in hs]
            vs = [(W[p + "self_attn.v_proj.weight"] @ h + bv).view(KV, hd) for h in hs]
            new = []
            for t in range(len(xs)):
                heads = []
                for hh in range(H):
                    g = hh // (H // KV)
                    sc = torch.stack([rope(qs[t][hh], t) @ rope(ks[u][g], u) / math.sqrt(hd) for u in range(t + 1)])
                    w = torch.exp(sc - sc.max())
                    w = w / w.sum()
                    heads.append(sum(w[u] * vs[u][g] for u in range(t + 1)))
                x = xs[t] + W[p + "self_attn.o_proj.weight"] @ torch.cat(heads)
                h = norm(x, W[p + "post_attention_layernorm.weight"])
                gt, up = W[p + "mlp.gate_proj.weight"] @ h, W[p + "mlp.up_proj.weight"] @ h
                new.append(x + W[p + "mlp.down_proj.weight"] @ (gt / (1 + torch.exp(-gt)) * up))
            xs = new
        head = W["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
        out.append(torch.stack([head @ norm(x, W["model.norm.weight"]) for x in xs]))
    return torch.stack(out)


def selfcheck(d, fd_elems=2):
    name = os.path.basename(os.path.normpath(d))
    spec, model, adapter, exp, meta = load_fixture(d)
    cfg, ok = spec["cfg"], True
    ids, labels = exp["input_ids"], exp["labels"]

    def report(what, err, tol):
        nonlocal ok
        ok &= err <= tol
        print(f"  {'ok  ' if err <= tol else 'FAIL'} {what}: {err:.3g} (tol {tol:.3g})")

    # 1. names: the trainable set is exactly what grad.* and after.* hold; model names are HF's.
    train = list(adapter) if spec["trainable"] == "lora" else list(model)
    assert sorted(model) == sorted(model_shapes(cfg)), "model tensor names"
    for pre in ("grad.", "after."):
        assert sorted(k[len(pre):] for k in exp if k.startswith(pre)) == sorted(train), pre + " names"
        assert all(exp[pre + n].shape == (adapter or model)[n].shape for n in train), pre + " shapes"
    # 2. round trip: recompute everything in float64 from the files just read.
    res = run(spec, model, adapter, ids, labels)
    worst = max((res[k].float() - exp[k]).abs().max().item() / (exp[k].abs().max().item() + 1e-30)
                for k in res)
    report("float64 recompute vs stored (max rel err over all tensors)", worst, 1e-6)
    # 3. an independently written loop forward gives the same logits and loss.
    P = {n: t.double() for n, t in model.items()}
    A = {n: t.double() for n, t in adapter.items()} if adapter else None
    scale = spec["alpha"] / spec["r"] if adapter else 0.0
    nl = naive_logits(cfg, P, ids, A, scale)
    report("naive loop forward vs logits", (nl - exp["logits"].double()).abs().max().item(), 1e-5)
    lf = torch.nn.functional.cross_entropy(nl[:, :-1].reshape(-1, nl.shape[-1]), labels[:, 1:].reshape(-1).long(),
                                           ignore_index=-100)
    report("F.cross_entropy on naive logits vs loss", abs(lf.item() - exp["loss"].item()), 1e-5)
    # 4. finite differences (float64, central, h=1e-6) on the largest and a random element of each
    #    trainable tensor, against the stored gradient.
    params = A if spec["trainable"] == "lora" else P
    gen = torch.Generator().manual_seed(7)
    worst = 0.0
    for n in train:
        g = exp["grad." + n].double().flatten()
        for idx in [int(g.abs().argmax())] + torch.randint(0, g.numel(), (fd_elems - 1,), generator=gen).tolist():
            t0, lv = params[n].flatten()[idx].item(), []
            for h in (1e-6, -1e-6):
                params[n].view(-1)[idx] = t0 + h
                lv.append(causal_lm_loss(forward(cfg, P, ids, A, scale), labels).item())
            params[n].view(-1)[idx] = t0
            fd = (lv[0] - lv[1]) / 2e-6
            worst = max(worst, abs(fd - g[idx].item()) / (g.abs().max().item()))
    report(f"finite differences vs grad ({fd_elems} elems x {len(train)} tensors, rel to max|grad|)", worst, 1e-5)
    # 5. torch.autograd.gradcheck on the smallest trainable tensor.
    small = min(train, key=lambda n: params[n].numel())

    def f(t):
        q = dict(params, **{small: t})
        return causal_lm_loss(forward(cfg, q if spec["trainable"] == "full" else P, ids,
                                      q if spec["trainable"] == "lora" else A, scale), labels)
    gc = torch.autograd.gradcheck(f, (params[small].clone().requires_grad_(True),), eps=1e-6, atol=1e-7, rtol=1e-5)
    report(f"gradcheck on {small} ({params[small].numel()} elems)", 0.0 if gc else 1.0, 0.0)
    # 6. conditioning: the same pipeline run in float32 meets the C fp32 tolerance of FORMATS.md
    #    (|a-b| <= 1e-5 + 1e-3*max|b| per tensor); reports the worst err/tol ratio.
    r32 = run(spec, model, adapter, ids, labels, dtype=torch.float32)
    ratio = max(((r32[k] - exp[k]).abs().max() / (1e-5 + 1e-3 * exp[k].abs().max())).item() for k in r32)
    report("float32 run vs fixture, worst err/tol (FORMATS fp32 tolerance)", ratio, 0.1)
    print(f"{name}: {'selfcheck passed' if ok else 'SELFCHECK FAILED'}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--only", choices=sorted(FIXTURES))
    ap.add_argument("--selfcheck", action="store_true", help="re-read the fixtures in OUTDIR and check them")
    a = ap.parse_args()
    torch.set_num_threads(1)   # same summation order every run
    names = [a.only] if a.only else list(FIXTURES)
    if a.selfcheck:
        sys.exit(0 if all([selfcheck(os.path.join(a.outdir, n)) for n in names]) else 1)
    for n in names:
        generate(a.outdir, n)


if __name__ == "__main__":
    main()
