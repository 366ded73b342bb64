#!/usr/bin/env python3
"""test/bad_inputs.py: edits one input file in place for test/bad_inputs.sh
(standard library only).

    bad_inputs.py json FILE CODE    j = the file's JSON; CODE edits j (or sets j); written back
    bad_inputs.py st FILE CODE      h = safetensors header (dict), d = data (bytearray); CODE edits
                                    them; hlen / htext override the length field / the header bytes
    bad_inputs.py batch FILE        each NUL-separated (kind, FILE, CODE) triple of FILE, in order
    bad_inputs.py gguf FILE CODE    g = {"version", "kvs": [[key, type, value]], "ts": [{"name",
                                    "dims", "type", "offset"}], "data", "align"}; CODE edits g;
                                    n_tensors / n_kv / magic override the header's counts and magic

CODE may call the helpers below (f32, kv, setkv, delkv, tensor, first, ...).
"""
import json
import math
import struct
import sys

NAN, INF = math.nan, math.inf

# ---------------------------------------------------------------- safetensors


def st_read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), bytearray(b[8 + n:])


def st_write(path, h, d, hlen=None, htext=None):
    t = htext if htext is not None else json.dumps(h).encode()
    if htext is None:
        t += b" " * (-len(t) % 8)
    if isinstance(t, str):
        t = t.encode()
    open(path, "wb").write(struct.pack("<Q", len(t) if hlen is None else hlen) + t + bytes(d))


def first(h, sub):
    """The first tensor name of header h containing sub."""
    return next(k for k in h if k != "__metadata__" and sub in k)


def f32(h, d, name, value, i=0):
    """Sets element i of F32 tensor name to value."""
    struct.pack_into("<f", d, h[name]["data_offsets"][0] + 4 * i, value)


def retype(h, d, name, dtype):
    """Stores F32 tensor name as dtype (F64, I64, I32, F16, ...: its values converted), the
    data region laid out again around it. Returns the new data."""
    fmt = {"F64": "d", "I64": "q", "I32": "i", "F16": "e", "I16": "h", "I8": "b", "U8": "B", "BOOL": "?"}[dtype]
    out = bytearray()
    for k, e in sorted(((k, e) for k, e in h.items() if k != "__metadata__"), key=lambda x: x[1]["data_offsets"][0]):
        b, en = e["data_offsets"]
        raw = bytes(d[b:en])
        if k == name:
            vals = struct.unpack("<%df" % ((en - b) // 4), raw)
            if fmt in "qihbB?":
                vals = [int(v) for v in vals]
            raw = struct.pack("<%d%s" % (len(vals), fmt), *vals)
            e["dtype"] = dtype
        e["data_offsets"] = [len(out), len(out) + len(raw)]
        out += raw
    return out


# ---------------------------------------------------------------- GGUF

FMT = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)


def gguf_read(path):
    b = open(path, "rb").read()
    pos = 4

    def rd(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, b, pos)[0]
        pos += struct.calcsize("<" + fmt)
        return v

    def rs():
        nonlocal pos
        n = rd("Q")
        s = b[pos:pos + n]
        pos += n
        return s

    def rv(t):
        if t == STR:
            return rs()
        if t == ARR:
            et, n = rd("I"), rd("Q")
            return [et, [rv(et) for _ in range(n)]]
        return rd(FMT[t])

    g = {"magic": b[:4], "version": rd("I")}
    nt, nkv = rd("Q"), rd("Q")
    g["kvs"] = []
    for _ in range(nkv):
        k = rs().decode()
        t = rd("I")
        g["kvs"].append([k, t, rv(t)])
    g["ts"] = []
    for _ in range(nt):
        name = rs().decode()
        nd = rd("I")
        dims = [rd("Q") for _ in range(nd)]
        g["ts"].append({"name": name, "dims": dims, "type": rd("I"), "offset": rd("Q")})
    g["align"] = next((v for k, t, v in g["kvs"] if k == "general.alignment"), 32)
    g["data"] = bytearray(b[(pos + g["align"] - 1) // g["align"] * g["align"]:])
    return g


def gguf_write(path, g, n_tensors=None, n_kv=None, magic=None):
    out = bytearray(magic if magic is not None else g["magic"])

    def ws(s):
        s = s.encode() if isinstance(s, str) else s
        out.extend(struct.pack("<Q", len(s)) + s)

    def wv(t, v):
        if t == STR:
            ws(v)
        elif t == ARR:
            out.extend(struct.pack("<IQ", v[0], len(v[1])))
            for x in v[1]:
                wv(v[0], x)
        elif t in FMT:
            out.extend(struct.pack("<" + FMT[t], v))
        else:   # a type the format does not have: the bytes given, if any
            out.extend(v or b"")

    out.extend(struct.pack("<IQQ", g["version"], len(g["ts"]) if n_tensors is None else n_tensors,
                           len(g["kvs"]) if n_kv is None else n_kv))
    for k, t, v in g["kvs"]:
        ws(k)
        out.extend(struct.pack("<I", t))
        wv(t, v)
    for x in g["ts"]:
        ws(x["name"])
        out.extend(struct.pack("<I", len(x["dims"])))
        for d in x["dims"]:
            out.extend(struct.pack("<Q", d))
        out.extend(struct.pack("<IQ", x["type"], x["offset"]))
    out.extend(b"\0" * (-len(out) % g["align"]))
    open(path, "wb").write(bytes(out) + bytes(g["data"]))


def kv(g, key):
    return next(e for e in g["kvs"] if e[0] == key)


def setkv(g, key, t, v):
    for e in g["kvs"]:
        if e[0] == key:
            e[1], e[2] = t, v
            return
    g["kvs"].append([key, t, v])


def delkv(g, key):
    g["kvs"] = [e for e in g["kvs"] if e[0] != key]


def tensor(g, name):
    return next(x for x in g["ts"] if x["name"] == name)


def gguf_f32(g, name, value, i=0):
    x = tensor(g, name)
    assert x["type"] == 0, "%s is not F32" % name
    struct.pack_into("<f", g["data"], x["offset"] + 4 * i, value)


def edit(kind, path, code):
    if kind == "json":
        env = {"j": json.load(open(path, encoding="utf-8"))}
        exec(code, globals(), env)
        open(path, "w", encoding="utf-8").write(json.dumps(env["j"]))
    elif kind == "st":
        h, d = st_read(path)
        env = {"h": h, "d": d, "hlen": None, "htext": None}
        exec(code, globals(), env)
        st_write(path, env["h"], env["d"], env["hlen"], env["htext"])
    elif kind == "gguf":
        env = {"g": gguf_read(path), "n_tensors": None, "n_kv": None, "magic": None}
        exec(code, globals(), env)
        gguf_write(path, env["g"], env["n_tensors"], env["n_kv"], env["magic"])
    else:
        sys.exit("unknown kind " + kind)


def main():
    if sys.argv[1] == "batch":   # batch FILE: NUL-separated kind, path, code triples
        items = open(sys.argv[2], encoding="utf-8").read().split("\0")
        for i in range(0, len(items) - 2, 3):
            try:
                edit(*items[i:i + 3])
            except Exception as e:
                sys.exit("%s %s: %r: %s" % (items[i], items[i + 1], items[i + 2], e))
    else:
        edit(*sys.argv[1:4])


if __name__ == "__main__":
    main()
