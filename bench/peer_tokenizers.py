"""bench/peer_tokenizers.py: the Hugging Face `tokenizers` peer of
`bench_infer tokenize`.

Loads the same tokenizer.json with Tokenizer.from_file and encodes each text
that bench_infer wrote (DIR/NAME.txt) with encode(text, add_special_tokens=False)
on one thread (RAYON_NUM_THREADS=1), best of N; then compares the ids with
bench_infer's (DIR/NAME.ids, int32). Prints "key value" lines with the same
keys as bench_infer, plus NAME_ids_match (1 or 0) and, on a mismatch, the first
differing position. Exits 0 with "peer_missing <why>" when `tokenizers` cannot
be imported.

Usage: python bench/peer_tokenizers.py TOKENIZER_JSON DIR [--reps N] [NAME ...]
"""
import os

os.environ["RAYON_NUM_THREADS"] = "1"   # before the library starts its thread pool
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse
import array
import sys
import time

from peer_common import import_peer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tokenizer")
    ap.add_argument("dir")
    ap.add_argument("names", nargs="*", default=["squad", "arc"])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    tokenizers = import_peer("tokenizers")
    if tokenizers is None:
        return 0
    print("version %s" % tokenizers.__version__)
    t0 = time.perf_counter()
    tok = tokenizers.Tokenizer.from_file(args.tokenizer)
    print("load_s %.3f" % (time.perf_counter() - t0))
    for name in args.names:
        with open(os.path.join(args.dir, name + ".txt"), "rb") as f:
            raw = f.read()
        text = raw.decode("utf-8")
        best, ids = float("inf"), None
        for _ in range(args.reps):
            t0 = time.perf_counter()
            enc = tok.encode(text, add_special_tokens=False)
            dt = time.perf_counter() - t0
            best = min(best, dt)
            ids = enc.ids
        print("%s_bytes %d" % (name, len(raw)))
        print("%s_tokens %d" % (name, len(ids)))
        print("%s_best_s %.4f" % (name, best))
        print("%s_mb_per_s %.2f" % (name, len(raw) / best / 1e6))
        ours = array.array("i")
        with open(os.path.join(args.dir, name + ".ids"), "rb") as f:
            ours.frombytes(f.read())
        if sys.byteorder != "little":
            ours.byteswap()
        same = len(ours) == len(ids) and all(a == b for a, b in zip(ours, ids))
        print("%s_ids_match %d" % (name, 1 if same else 0))
        if not same:
            i = next((i for i, (a, b) in enumerate(zip(ours, ids)) if a != b), min(len(ours), len(ids)))
            print("%s_first_diff %d ours %s peer %s" % (name, i, list(ours[i:i + 5]), ids[i:i + 5]))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
