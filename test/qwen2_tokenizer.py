#!/usr/bin/env python3
"""Writes test/qwen2_tokenizer/: a small tokenizer.json in Qwen2's layout, and the ids that
Hugging Face `tokenizers` gives for a list of texts (cases.jsonl), so the C tokenizer can be
checked against HF without the real 151k-token Qwen2.5 file.

    python3 test/qwen2_tokenizer.py test/qwen2_tokenizer

Needs the `tokenizers` package (written with 0.23.3). The file is trained by HF
itself (BpeTrainer, 200 merges) on the texts below, then given Qwen2.5's pieces that matter:
the NFC normalizer, the Split regex with single digits (\\p{N}), ByteLevel without its own
regex, the ChatML special tokens (normalized: false) and a ByteLevel decoder.
"""
import json
import os
import sys

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

TRAIN = [
    "The café on the corner serves crème brûlée and naïve résumés for 1234 euros.",
    "Hello world! Hello there, it's 2024 and we'll see what they've done.",
    "Ångström units, São Paulo, Zürich, Straße, façade, jalapeño, piñata.",
    "한국어 텍스트와 日本語のテキスト, 中文文本. Ελληνικά και русский текст.",
    "def f(x):\n    return x * 31415 + 27\n\n\nprint(f(3))",
    "<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n42<|im_end|>",
]

# Texts to encode: NFC-stable ones, and decomposed or otherwise non-NFC ones that HF's NFC
# changes (combining accents, Hangul jamo, a singleton, an excluded composition, reordering).
CASES = [
    ("ascii", "Hello world! it's 2024, we'll see."),
    ("digits", "12345 and 3.14159 and ١٢٣ and ½"),
    ("nfc precomposed", "café crème brûlée São Paulo"),
    ("nfd accents", "cafe\u0301 cre\u0300me bru\u0302le\u0301e Sa\u0303o Paulo"),
    ("nfd at start", "\u0301e\u0301 A\u030a"),
    ("angstrom sign", "\u212b and \u2126 ohm"),
    ("hangul jamo", "\u1112\u1161\u11ab\u1100\u1173\u11af \ud55c\uad6d\uc5b4"),
    ("combining order", "a\u0323\u0307 a\u0307\u0323 q\u0307\u0323"),
    ("excluded composition", "\u0958 \u0915\u093c"),
    ("cjk compatibility", "\uf900\uf901 \U0002F800"),
    ("specials", "<|im_start|>user\nCafe\u0301?<|im_end|>\n"),
    ("newlines and spaces", "a\n\n  b\r\n\tc   \n"),
    ("emoji", "smile \U0001F600 ok \u2764\ufe0f"),
    ("mixed scripts", "日本語のテキスト and русский текст, Ελληνικά."),
]


def build():
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=256 + 200, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[], show_progress=False)
    tok.train_from_iterator(TRAIN * 3, trainer)
    tok.add_special_tokens(SPECIALS)
    return tok


def main(out):
    os.makedirs(out, exist_ok=True)
    tok = build()
    spec = json.loads(tok.to_str())
    for a in spec["added_tokens"]:
        assert a["normalized"] is False, a
    path = os.path.join(out, "tokenizer.json")
    with open(path, "w") as f:
        json.dump(spec, f, ensure_ascii=False, indent=1)
        f.write("\n")
    tok = Tokenizer.from_file(path)   # what is tested is the file as written
    with open(os.path.join(out, "cases.jsonl"), "w") as f:
        for name, text in CASES:
            ids = tok.encode(text, add_special_tokens=False).ids
            f.write(json.dumps({"category": name, "text": text, "ids": ids}, ensure_ascii=False) + "\n")
            print(f"{name}: {len(ids)} ids")


if __name__ == "__main__":
    main(sys.argv[1])
