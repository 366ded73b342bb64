// test/fuzz/fuzz_tokenizer.c: a Hugging Face tokenizer.json. A tokenizer that
// loads must encode text (a fixed sample and the input's own first bytes) into
// ids that decode.
#include "fuzz.h"
#include "tokenizer.h"

static void encode_decode(const Tokenizer *t, const char *text, size_t n, int allow_special) {
    char err[ERR_MAX];
    int *ids, k = tok_encode(t, text, n, allow_special, &ids, err);
    if (k < 0) return;
    size_t len;
    char *back = tok_decode(t, ids, k, &len, err);
    FUZZ_CHECK(back != NULL, "encode gave ids that do not decode: %s", err);
    free(back);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char sample[] = "<|begin_of_text|>Hello, world! [[0 1 2]\n [3 4 5]]#<|eot_id|> 12345 h\xc3\xa9llo he\xcc\x81llo \xff\xfe ";
    char *json = fuzz_text(data, size), err[ERR_MAX];
    Tokenizer *t = tok_load_json(json, "tokenizer.json", err);
    if (t) {
        int n = tok_vocab_size(t);
        FUZZ_CHECK(n >= 0, "vocab size %d", n);
        for (int id = 0; id < n && id < 4096; id++) {
            const char *bytes;
            int len = tok_token_bytes(t, id, &bytes);
            FUZZ_CHECK(len < 0 || bytes != NULL, "id %d", id);
        }
        tok_find(t, "<|eot_id|>");
        encode_decode(t, sample, sizeof sample - 1, 1);
        encode_decode(t, sample, sizeof sample - 1, 0);
        encode_decode(t, (const char *)data, size < 64 ? size : 64, 1);
        tok_free(t);
    }
    free(json);
    return 0;
}
