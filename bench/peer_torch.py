"""bench/peer_torch.py: the PyTorch peer of `bench_train train`.

The same ~25M Llama (hidden 512, 8 layers, 8 / 4 heads, head_dim 64, MLP 1536,
vocab 8192, tied embeddings) in plain PyTorch, written as Hugging Face's
LlamaForCausalLM computes it (RMSNorm, rotate_half RoPE, grouped-query causal
attention, SwiGLU), with LoRA r=16 alpha=32 on q, v, gate, up, down over a
frozen base (PEFT's lora_B(lora_A(x)) * scaling) and torch.optim.AdamW on the
adapters. Batch 4 x 256 of random ids, warm-up steps then timed steps of
zero_grad + forward + backward + step, on the same thread count.

Prints "key value" lines; exits 0 with "peer_missing <why>" when torch cannot
be imported, so the caller reports the peer as missing. Runs with
OMP_WAIT_POLICY=PASSIVE unless set (see peer_common.py).

Usage: /usr/bin/python3 bench/peer_torch.py [--threads N] [--steps N] [--warmup N]
"""
import argparse
import math
import os
import sys
import time

from peer_common import cpu_seconds, import_torch

DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, HEAD_DIM, VOCAB = 512, 1536, 8, 8, 4, 64, 8192
EPS, THETA, RANK, ALPHA = 1e-5, 10000.0, 16, 32.0
BATCH, SEQ = 4, 256


def build(torch):
    nn, F = torch.nn, torch.nn.functional

    class LoraLinear(nn.Module):
        def __init__(self, d_in, d_out, lora):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(d_out, d_in) * 0.02, requires_grad=False)
            self.lora = lora
            if lora:
                bound = 1.0 / math.sqrt(d_in)   # PEFT: kaiming-uniform A; B random here so it carries gradient
                self.lora_A = nn.Parameter(torch.empty(RANK, d_in).uniform_(-bound, bound))
                self.lora_B = nn.Parameter(torch.randn(d_out, RANK) * 0.02)
                self.scaling = ALPHA / RANK

        def forward(self, x):
            y = F.linear(x, self.weight)
            if self.lora:
                y = y + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling
            return y

    class RMSNorm(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(d), requires_grad=False)

        def forward(self, x):
            return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS))

    def rotate_half(x):
        x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
        return torch.cat((-x2, x1), dim=-1)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.input_layernorm = RMSNorm(DIM)
            self.q_proj = LoraLinear(DIM, HEADS * HEAD_DIM, True)
            self.k_proj = LoraLinear(DIM, KV_HEADS * HEAD_DIM, False)
            self.v_proj = LoraLinear(DIM, KV_HEADS * HEAD_DIM, True)
            self.o_proj = LoraLinear(HEADS * HEAD_DIM, DIM, False)
            self.post_attention_layernorm = RMSNorm(DIM)
            self.gate_proj = LoraLinear(DIM, HIDDEN, True)
            self.up_proj = LoraLinear(DIM, HIDDEN, True)
            self.down_proj = LoraLinear(HIDDEN, DIM, True)

        def forward(self, x, cos, sin, mask):
            B, T, _ = x.shape
            h = self.input_layernorm(x)
            q = self.q_proj(h).view(B, T, HEADS, HEAD_DIM).transpose(1, 2)
            k = self.k_proj(h).view(B, T, KV_HEADS, HEAD_DIM).transpose(1, 2)
            v = self.v_proj(h).view(B, T, KV_HEADS, HEAD_DIM).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            k = k.repeat_interleave(HEADS // KV_HEADS, dim=1)   # HF repeat_kv
            v = v.repeat_interleave(HEADS // KV_HEADS, dim=1)
            att = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(HEAD_DIM) + mask
            att = torch.softmax(att, dim=-1)
            y = torch.matmul(att, v).transpose(1, 2).reshape(B, T, HEADS * HEAD_DIM)
            x = x + self.o_proj(y)
            h = self.post_attention_layernorm(x)
            return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))

    class Llama(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Parameter(torch.randn(VOCAB, DIM) * 0.02, requires_grad=False)
            self.layers = nn.ModuleList([Block() for _ in range(LAYERS)])
            self.norm = RMSNorm(DIM)
            inv = 1.0 / THETA ** (torch.arange(0, HEAD_DIM, 2).float() / HEAD_DIM)
            ang = torch.outer(torch.arange(SEQ).float(), inv)
            emb = torch.cat((ang, ang), dim=-1)
            self.register_buffer("cos", emb.cos())
            self.register_buffer("sin", emb.sin())
            self.register_buffer("mask", torch.full((SEQ, SEQ), float("-inf")).triu(1))

        def forward(self, ids, labels):
            x = F.embedding(ids, self.embed)
            for layer in self.layers:
                x = layer(x, self.cos, self.sin, self.mask)
            logits = F.linear(self.norm(x), self.embed)
            return F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1))

    return Llama()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    torch = import_torch(args.threads)
    if torch is None:
        return 0
    model = build(torch)
    params = [p for p in model.parameters() if p.requires_grad]
    print("torch_params %d" % sum(p.numel() for p in model.parameters()))
    print("torch_lora_params %d" % sum(p.numel() for p in params))
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    ids = torch.randint(0, VOCAB, (BATCH, SEQ))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(ids, ids)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    t0, c0 = time.perf_counter(), cpu_seconds()
    for _ in range(args.steps):
        loss = step()
    dt = (time.perf_counter() - t0) / args.steps
    cpu = (cpu_seconds() - c0) / args.steps
    if not math.isfinite(loss):
        print("peer_missing the loss is not finite")
        return 0
    print("torch_loss %.4f" % loss)
    print("torch_step_s %.4f" % dt)
    print("torch_tokens_per_s %.1f" % (BATCH * SEQ / dt))
    # below 1: other processes took some of the cores while we measured
    print("torch_cpu_share %.2f" % (cpu / dt / args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
