"""bench/peer_llamacpp.py: the llama.cpp peer of `bench_infer decode FILE.gguf`.

llama-cpp-python (PyPI; llama.cpp's own CPU kernels: weights in the file's
blocks, activations quantised to 8 bits) on the same GGUF file, threads,
prompt length and number of greedy steps: a random P-token prompt evaluated
in one call (prefill), then G steps of one token each, the logits of the
vocabulary computed every step and the argmax taken here. Batch 1 only.
Best of N. Prints "key value" lines with bench_infer's keys; exits 0 with
"peer_missing <why>" when llama_cpp cannot be imported.

Usage: PY bench/peer_llamacpp.py FILE.gguf [--threads N] [--prompt P] [--gen G] [--reps N]
"""
import argparse
import os
import random
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    try:
        import llama_cpp
        import numpy as np
    except ImportError as e:
        print("peer_missing llama_cpp not importable: %s" % e)
        return 0
    # llama.cpp's AMX path (an "extra buffer" that repacks Q4_1 weights) dies
    # with SIGSEGV on machines whose CPU reports AMX to a process that the
    # kernel never granted the tile state (this VM): load without extra
    # buffers unless PEER_EXTRA_BUFTS=1. Q4_1 has no other repacked kernel.
    if os.environ.get("PEER_EXTRA_BUFTS") != "1":
        low = llama_cpp.llama_cpp
        default = low.llama_model_default_params

        def no_extra_bufts():
            p = default()
            p.use_extra_bufts = False
            return p

        low.llama_model_default_params = no_extra_bufts
    P, G = args.prompt, args.gen
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=max(512, P + G + 8), n_batch=512, n_threads=args.threads,
                          n_threads_batch=args.threads, logits_all=False, verbose=False)
    V = llm.n_vocab()
    print("version %s (llama-cpp-python)" % llama_cpp.__version__)
    print("prompt %d\ngen %d" % (P, G))
    best_p = best_d = float("inf")
    for r in range(args.reps):
        rng = random.Random(7 + r)
        prompt = [rng.randrange(V) for _ in range(P)]
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        p = time.perf_counter() - t0
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        t0 = time.perf_counter()
        for _ in range(G):
            llm.eval([tok])
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        d = time.perf_counter() - t0
        best_p, best_d = min(best_p, p), min(best_d, d)
    print("b1_prefill_s %.4f" % best_p)
    print("b1_prefill_tokens_per_s %.1f" % (P / best_p))
    print("b1_decode_s %.4f" % best_d)
    print("b1_decode_ms_per_step %.2f" % (best_d / G * 1e3))
    print("b1_decode_tokens_per_s %.1f" % (G / best_d))
    return 0


if __name__ == "__main__":
    sys.exit(main())
