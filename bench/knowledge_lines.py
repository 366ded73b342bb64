#!/usr/bin/env python3
# bench/knowledge_lines.py RUN: reads a `seal demo knowledge` run directory.
# For each phase and round: the held-out answers right by fact (baseline: no
# passage; oracle: the passage only row; eval 0, 1, 2: the untrained policy,
# SEAL rounds 1 and 2), and for the eval rows what the self-edits' lines hold:
# lines a list, lines without the title's name, and by fact the lines with
# the title's name and the right value / another value, the other values
# split into the neighbour's (in the passage) and ones in no passage.
import collections, json, re, sys

FOUNDERS = set("Ada Bram Cora Dov Esk Fia Gus Hal Ivy Jon Kit Lev Mae Ned Ola Pim Quin Rho Sol Tam Uma Vic Wren Yul".split())
GOODS = set("salt copper wool amber glass figs tin silk rope honey nails dye pots timber cheese oil paper horses lace spices "
            "marble linen barley furs".split())


def values(text, fact):
    words = re.findall(r"[A-Za-z0-9]+", text)
    if fact == 0:
        return [w for w in words if w in FOUNDERS]
    if fact == 1:
        return [w for w in words if re.fullmatch(r"1[5-9]\d\d", w)]
    return [w.lower() for w in words if w.lower() in GOODS]


run = sys.argv[1]
places = {p["id"]: p for p in map(json.loads, open(run + "/eval.jsonl"))}
right = collections.defaultdict(lambda: [0, 0, 0, 0])
lines = collections.defaultdict(collections.Counter)
for e in map(json.loads, open(run + "/edits.jsonl")):
    if e["phase"] not in ("baseline", "oracle", "eval") or e["task_id"] not in places:
        continue
    p, key = places[e["task_id"]], (e["phase"], e["round"])
    gold = [q["answers"][0].lower() for q in p["questions"]]
    for q, a in enumerate(e["metrics"].get("answers") or []):
        right[key][q] += a.strip().lower() == gold[q]
    right[key][3] += 1
    if e["phase"] != "eval" or not e.get("edit"):
        continue
    c = lines[key]
    c["lists"] += 1
    for line in filter(str.strip, e["edit"].split("\n")):
        c["lines"] += 1
        if p["title"] not in line:
            c["other name"] += 1
            continue
        for f in range(3):
            for v in values(line, f):
                c[f, "right" if v.lower() == gold[f] else "neighbour" if v in values(p["context"], f) else "in no passage"] += 1
for key in sorted(right):
    r = right[key]
    n = r[3] or 1
    print("%s %d: %d answers' sets, founder %.0f%%, year %.0f%%, export %.0f%%" % (key[0], key[1], r[3], 100 * r[0] / n, 100 * r[1] / n,
                                                                                  100 * r[2] / n))
    if key in lines:
        c = lines[key]
        L = c["lists"]
        print("  a list: %.2f lines, %.2f without the title's name, %.2f right values, %.2f wrong" %
              (c["lines"] / L, c["other name"] / L, sum(c[f, "right"] for f in range(3)) / L,
               sum(c[f, w] for f in range(3) for w in ("neighbour", "in no passage")) / L))
        for f, name in enumerate(("founder", "year", "export")):
            print("  %s: right %d, the neighbour's %d, in no passage %d" % (name, c[f, "right"], c[f, "neighbour"], c[f, "in no passage"]))
