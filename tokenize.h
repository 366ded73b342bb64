// tokenize.h: `seal tokenize`: JSON lines of text to token ids and back, with
// the byte-exact reader of a line's string member it needs.
#pragma once
#include <stddef.h>

// The string member `key` of a one-line JSON object, byte-exact (cJSON stops
// at "\u0000"; this does not). malloc'd, *len set; NULL + err when the line is
// not a JSON object or key is missing or not a string.
char *json_string_member(const char *json, const char *key, size_t *len, char *err);

// `seal tokenize TOKENIZER_JSON [--decode] [--no-special]` (argv[0] = "tokenize").
// Returns the exit code: 0 ok, 1 bad input, 2 usage.
int tokenize_cmd(int argc, char **argv);
