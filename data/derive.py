#!/usr/bin/env python3
"""data/derive.py NAME ROOT OUT: write one derived data file from files that
data/fetch.sh has already fetched under ROOT. fetch.sh checks OUT's sha256
against data/MANIFEST, so these must reproduce the mirror's bytes exactly.

  seal_tasks              arc/seal_tasks.json: SEAL's ARC task selection (ids only)
  squad_train_seal_subset squad/squad_train_seal_subset.json from seal_synthetic/iter{0,1}_train.json
  seal_subsets            squad/seal_subsets.json: SEAL's random.seed(42) order of squad_val.json
"""
import json
import random
import sys

# SEAL's few-shot/data/filter_dataset.py @ 4cb1e7d4350c62403daee8c6723e6184886cb304
# (Continual-Intelligence/SEAL): the eval list is active there, the training list
# commented out. Both keep that file's order. They are also the keys of SEAL's
# arc-agi_*_filtered_1B_*.json files (fetch set seal-arc).
SEAL_TRAIN = ["44f52bb0", "4be741c5", "5582e5ca", "5614dbcf", "5bd6f4ac", "6150a2bd",
              "67e8384a", "6d0aefbc", "6e02f1e3", "8be77c9e", "8d5021e8", "8e1813be"]
SEAL_EVAL = ["59341089", "68b67ca3", "903d1b4a", "af24b4cc", "b1fc8b8e",
             "bc4146bd", "c7d4e6ad", "ce8d95cc", "358ba94e", "66e6c45b"]


def load(root, path):
    with open(f"{root}/{path}", encoding="utf-8") as f:
        return json.load(f)


def seal_tasks(root):
    return json.dumps({
        "train": SEAL_TRAIN,
        "eval": SEAL_EVAL,
        "train_split": "ARC-AGI-1 public training set (training/<id>.json)",
        "eval_split": "ARC-AGI-1 public evaluation set (evaluation/<id>.json)",
        "source": "Continual-Intelligence/SEAL:few-shot/data/filter_dataset.py@4cb1e7d (eval list active, "
                  "training list commented out); same ids as the keys of few-shot/data/"
                  "arc-agi_training_challenges_filtered_1B_training_set.json and "
                  "arc-agi_evaluation_challenges_filtered_1B_eval_set.json",
    }, indent=2) + "\n"


def squad_train_seal_subset(root):
    # The SQuAD train passages of SEAL's two ReST-EM rounds: iter0 (100) then iter1 (50).
    out = []
    for name in ("iter0_train.json", "iter1_train.json"):
        for e in load(root, f"squad/seal_synthetic/{name}"):
            out.append({k: e[k] for k in ("title", "context", "questions")})
    return json.dumps(out, indent=2, ensure_ascii=False)


def seal_subsets(root):
    order = list(range(len(load(root, "squad/squad_val.json"))))
    random.seed(42)
    random.shuffle(order)
    return json.dumps({
        "description": "Indices into squad_val.json, in the order SEAL uses them. SEAL shuffles the list of "
                       "passages with Python random.seed(42); random.shuffle(list) and takes a prefix: 200 "
                       "passages for its single-passage evaluation (base_val/iter1/iter2/gpt4_1 synthetic "
                       "files; iter1_val used 250), 250 for naive_val.",
        "val_shuffled_seed42": order,
        "val_eval_200": order[:200],
        "train_iter0_100": "squad_train_seal_subset.json entries 0-99 (from seal_synthetic/iter0_train.json, in SEAL order)",
        "train_iter1_50": "squad_train_seal_subset.json entries 100-149 (from seal_synthetic/iter1_train.json, in SEAL order)",
    }, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("seal_tasks", "squad_train_seal_subset", "seal_subsets"):
        sys.exit(__doc__)
    name, root, out = sys.argv[1:]
    text = globals()[name](root)
    with open(out, "w", encoding="utf-8", newline="") as f:
        f.write(text)
