// tokenizer.h: byte-level BPE from a Hugging Face tokenizer.json (Llama 3,
// GPT-2, SmolLM2, Qwen2 kind) and the Llama-3.x chat template.
#pragma once
#include <stddef.h>

typedef struct Tokenizer Tokenizer;

// Loads tokenizer.json (or the same text from memory). Unsupported kinds
// (WordPiece, Unigram, normalizers other than NFC, non-byte-level
// pre-tokenizers) are refused;
// errors name the JSON path, e.g. "tokenizer.json: model.merges[12]: ...".
Tokenizer *tok_load(const char *path, char *err);
Tokenizer *tok_load_json(const char *json_text, const char *name_for_errors, char *err);
void tok_free(Tokenizer *t);

int tok_vocab_size(const Tokenizer *t);   // max id + 1, added tokens included
// The token Hugging Face's tokenizer puts before a text (add_special_tokens):
// the special token that tokenizer.json's TemplateProcessing post-processor
// opens "single" with, else <|begin_of_text|> when the vocabulary has it (a
// Llama-3 GGUF, seal demo's tokenizers); -1 when none (Qwen2, SmolLM2).
int tok_bos(const Tokenizer *t);

// Encodes len bytes of text (any bytes: invalid UTF-8 becomes byte tokens).
// allow_special=1 maps the literal text of a special added token to its id;
// 0 treats it as plain text (non-special added tokens still match). No BOS.
// Returns the number of ids written into a malloc'd *ids, or -1 with err.
// Safe to call from several threads on one Tokenizer. With an NFC normalizer
// (Qwen2) the text between added tokens is NFC-normalized first (ICU). Added
// tokens are always matched in the raw text: HF's rule for "normalized": false
// ones (all of Qwen2's and Llama 3's); HF would match a "normalized": true one
// in the normalized text, which differs only for a non-NFC spelling of it.
int tok_encode(const Tokenizer *t, const char *text, size_t len, int allow_special, int **ids, char *err);

// Concatenated token bytes (added tokens give their content), malloc'd and
// NUL-terminated, *len set (it may hold NULs and invalid UTF-8). An id that is
// not a token gives NULL and err.
char *tok_decode(const Tokenizer *t, const int *ids, int n, size_t *len, char *err);

// One token's raw bytes for streaming output: the length, with *bytes pointing
// into the tokenizer; -1 (and *bytes = NULL) when id is not a token.
int tok_token_bytes(const Tokenizer *t, int id, const char **bytes);

// Id of an added token's content or a vocab entry written as in tokenizer.json
// ("<|eot_id|>", "Ġthe"); -1 if none.
int tok_find(const Tokenizer *t, const char *token_text);

// Llama-3.x chat template (tokenizer_config.json "chat_template", no tools,
// date "26 Jul 2024"), character for character. malloc'd; NULL when out of memory.
typedef struct { const char *role, *content; } ChatMsg;
char *chat_render_llama3(const ChatMsg *msgs, int n, int add_generation_prompt);

// ---------------------------------------------------------------- making tokenizers
// `seal demo` writes its own tokenizer.json with these, so the demo runs the
// same loader and encoder as a real checkpoint.

// The text of a tokenizer.json (malloc'd; NULL when out of memory or when a
// merge half is not a token). Llama-3's layout: a BPE model with ignore_merges,
// the Llama-3 Split regex then ByteLevel (no prefix space, no regex), a
// ByteLevel decoder. Ids: 0..255 are the single bytes, id = byte value; then
// one token per merge, in merge order, for each merge whose result is new; then
// the specials as special added tokens. merges[i] = {a, b} are raw bytes (not
// the byte-level form), each a byte or an earlier merge's result.
// Meant for small vocabularies: token lookups are linear.
char *tok_bytelevel_json(const char *const (*merges)[2], int n_merges, const char *const *specials, int n_special);

// Trains byte-level BPE on texts and returns tok_bytelevel_json of the result.
// As the encoder does, special tokens in a text are cut out first, then each
// stretch is cut by the Llama-3 regex (digits in runs of at most 3); the
// pieces are counted, and the most frequent adjacent pair is merged, again and
// again, up to n_merges times or until no pair occurs twice. Ties go to the
// pair whose halves' bytes sort first, so the result depends on nothing else.
// NULL when out of memory.
char *tok_train_bytelevel(const char *const *texts, int n_texts, int n_merges, const char *const *specials, int n_special);

// The same with flags. TOK_TRAIN_SINGLE_DIGITS leaves runs of ASCII digits out
// of training, so every digit stays one token: an ARC grid written as rows of
// digits then costs one token per cell and one per row end, the cell-aligned
// form a tiny model learns geometry from.
#define TOK_TRAIN_SINGLE_DIGITS 1
char *tok_train_bytelevel_ex(const char *const *texts, int n_texts, int n_merges, const char *const *specials,
                             int n_special, int flags);
