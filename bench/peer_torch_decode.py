"""bench/peer_torch_decode.py: the PyTorch peer of `bench_infer decode`.

The same Llama shape (bench_train's ~25M config, or Llama-3.2-1B's with llama3
RoPE scaling) with random weights, in plain PyTorch with a KV cache, written
as Hugging Face's LlamaForCausalLM computes it (RMSNorm, rotate_half RoPE,
grouped-query attention, SwiGLU, tied LM head), under torch.inference_mode()
on the same thread count. For batch 1 and 8: random prompts of P tokens
prefilled in one batched forward (logits of the last position only, as
generate() keeps them), then G greedy steps: one token per sequence through
the cache, logits over the whole vocabulary, argmax. Best of N.

A self-check (--check, on by default for 25m) runs the whole sequence
(prompt + the fed tokens) through the prefill path with a fresh cache and
prints the largest difference from the last decode step's logits: the cached
path computes the same function.

Prints "key value" lines with bench_infer's keys; exits 0 with
"peer_missing <why>" when torch cannot be imported. Runs with
OMP_WAIT_POLICY=PASSIVE unless set (see peer_common.py).

Usage: /usr/bin/python3 bench/peer_torch_decode.py 25m|1b [--threads N]
           [--prompt P] [--gen G] [--reps N] [--check 0|1]
"""
import argparse
import math
import os
import sys
import time

from peer_common import cpu_seconds, import_torch

SHAPES = {   # dim, hidden, layers, heads, kv heads, head_dim, vocab, rope theta, llama3 rope scaling
    "25m": dict(D=512, F=1536, L=8, H=8, KV=4, hd=64, V=8192, theta=10000.0, llama3=None),
    "1b": dict(D=2048, F=8192, L=16, H=32, KV=8, hd=64, V=128256, theta=500000.0,
               llama3=dict(factor=32.0, low=1.0, high=4.0, orig=8192)),
}
EPS = 1e-5


def inv_freq(torch, s):
    inv = 1.0 / s["theta"] ** (torch.arange(0, s["hd"], 2).float() / s["hd"])
    r = s["llama3"]
    if r is None:
        return inv
    # transformers' _compute_llama3_parameters
    low_wl, high_wl = r["orig"] / r["low"], r["orig"] / r["high"]
    wl = 2 * math.pi / inv
    out = torch.where(wl > low_wl, inv / r["factor"], inv)
    smooth = (r["orig"] / wl - r["low"]) / (r["high"] - r["low"])
    smoothed = (1 - smooth) * out / r["factor"] + smooth * out
    medium = ~(wl < high_wl) & ~(wl > low_wl)
    return torch.where(medium, smoothed, out)


class Llama:
    def __init__(self, torch, s, max_T):
        self.t, self.s = torch, s
        D, F, H, KV, hd, V = s["D"], s["F"], s["H"], s["KV"], s["hd"], s["V"]
        a = 0.02 * math.sqrt(3.0)   # uniform, std 0.02, as bench_infer's fill

        def w(rows, cols):
            return torch.empty(rows, cols).uniform_(-a, a)

        self.embed = w(V, D)
        self.layers = [dict(attn_norm=torch.ones(D), q=w(H * hd, D), k=w(KV * hd, D), v=w(KV * hd, D),
                            o=w(D, H * hd), mlp_norm=torch.ones(D), gate=w(F, D), up=w(F, D), down=w(D, F))
                       for _ in range(s["L"])]
        self.norm = torch.ones(D)
        ang = torch.outer(torch.arange(max_T).float(), inv_freq(torch, s))
        emb = torch.cat((ang, ang), dim=-1)
        self.cos, self.sin = emb.cos(), emb.sin()   # (max_T, hd)
        self.max_T = max_T

    def params(self):
        n = self.embed.numel() + self.norm.numel()
        return n + sum(x.numel() for l in self.layers for x in l.values())

    def cache(self, B):
        s, z = self.s, self.t.zeros
        return [(z(B, s["KV"], self.max_T, s["hd"]), z(B, s["KV"], self.max_T, s["hd"])) for _ in range(s["L"])]

    def rms(self, x, w):
        return w * (x * self.t.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS))

    @staticmethod
    def rope(t, x, cos, sin):   # x (B, n, T, hd), cos / sin (T, hd)
        half = x.shape[-1] // 2
        return x * cos + t.cat((-x[..., half:], x[..., :half]), dim=-1) * sin

    def forward(self, ids, pos0, cache):
        """ids (B, T) at positions pos0.. into cache; logits (B, V) of the last position."""
        t, s, F = self.t, self.s, self.t.nn.functional
        B, T = ids.shape
        H, KV, hd = s["H"], s["KV"], s["hd"]
        g, S, scale = H // KV, pos0 + T, 1.0 / math.sqrt(hd)
        cos, sin = self.cos[pos0:S], self.sin[pos0:S]
        x = F.embedding(ids, self.embed)
        for l, (K, Vc) in zip(self.layers, cache):
            h = self.rms(x, l["attn_norm"])
            q = F.linear(h, l["q"]).view(B, T, H, hd).transpose(1, 2)
            k = F.linear(h, l["k"]).view(B, T, KV, hd).transpose(1, 2)
            v = F.linear(h, l["v"]).view(B, T, KV, hd).transpose(1, 2)
            q, k = self.rope(t, q, cos, sin), self.rope(t, k, cos, sin)
            K[:, :, pos0:S] = k
            Vc[:, :, pos0:S] = v
            keys, vals = K[:, :, :S], Vc[:, :, :S]
            if T == 1:   # decode: the g query heads of a group share their key / value head, no copy
                att = t.softmax(t.matmul(q.reshape(B, KV, g, hd), keys.transpose(2, 3)) * scale, dim=-1)
                y = t.matmul(att, vals).reshape(B, 1, H * hd)
            else:        # prefill: HF's repeat_kv and a causal mask
                keys, vals = keys.repeat_interleave(g, dim=1), vals.repeat_interleave(g, dim=1)
                mask = t.full((T, S), float("-inf")).triu(pos0 + 1)
                att = t.softmax(t.matmul(q, keys.transpose(2, 3)) * scale + mask, dim=-1)
                y = t.matmul(att, vals).transpose(1, 2).reshape(B, T, H * hd)
            x = x + F.linear(y, l["o"])
            h = self.rms(x, l["mlp_norm"])
            x = x + F.linear(F.silu(F.linear(h, l["gate"])) * F.linear(h, l["up"]), l["down"])
        return F.linear(self.rms(x[:, -1], self.norm), self.embed)


def decode_once(torch, m, B, P, G, seed, check):
    gen = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, m.s["V"], (B, P), generator=gen)
    cache = m.cache(B)
    t0 = time.perf_counter()
    logits = m.forward(prompt, 0, cache)
    prefill = time.perf_counter() - t0
    tok = logits.argmax(-1)
    fed = []
    c0, t0 = cpu_seconds(), time.perf_counter()
    for step in range(G):
        fed.append(tok)
        logits = m.forward(tok.view(B, 1), P + step, cache)
        tok = logits.argmax(-1)
    decode, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    diff = None
    if check:
        whole = torch.cat([prompt, torch.stack(fed, dim=1)], dim=1)
        diff = (m.forward(whole, 0, m.cache(B)) - logits).abs().max().item()
    return prefill, decode, cpu, diff


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=sorted(SHAPES))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--check", type=int, default=None)
    args = ap.parse_args()
    check = args.check if args.check is not None else args.model == "25m"
    torch = import_torch(args.threads)
    if torch is None:
        return 0
    P, G = args.prompt, args.gen
    with torch.inference_mode():
        t0 = time.perf_counter()
        m = Llama(torch, SHAPES[args.model], P + G)
        print("params %d" % m.params())
        print("init_s %.2f" % (time.perf_counter() - t0))
        print("prompt %d\ngen %d" % (P, G))
        sys.stdout.flush()
        for B in (1, 8):
            best_p = best_d = float("inf")
            best_cpu, worst_diff = 0.0, 0.0
            for r in range(args.reps):
                p, d, cpu, diff = decode_once(torch, m, B, P, G, 7 + r, check and r == 0)
                best_p = min(best_p, p)
                if d < best_d:
                    best_d, best_cpu = d, cpu
                if diff is not None:
                    worst_diff = max(worst_diff, diff)
            print("b%d_prefill_s %.4f" % (B, best_p))
            print("b%d_prefill_tokens_per_s %.1f" % (B, B * P / best_p))
            print("b%d_decode_s %.4f" % (B, best_d))
            print("b%d_decode_ms_per_step %.2f" % (B, best_d / G * 1e3))
            print("b%d_decode_tokens_per_s %.1f" % (B, B * G / best_d))
            # below 1: other processes took some of the cores while we measured
            print("b%d_decode_cpu_share %.2f" % (B, best_cpu / best_d / args.threads))
            if check:
                print("b%d_check_max_abs_diff %.2e" % (B, worst_diff))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
