// tokenize.c: `seal tokenize`, JSON Lines in and out (see tokenize.h). cJSON
// reads the lines; the "text" member is read again here because cJSON ends a
// string at "\u0000" and a tokenizer must see every byte.
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L   // getline
#endif
#include "tokenize.h"
#include "tokenizer.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *skip_ws(const char *p) {   // as cJSON does: every byte 1..32
    while (*p && (unsigned char)*p <= 32) p++;
    return p;
}

// The 4 hex digits at p, or -1 (cJSON reads "\u00zz" as "\u0000"; we refuse it).
static long hex4(const char *p) {
    long v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i], l = (char)(c | 0x20);
        if (!((c >= '0' && c <= '9') || (l >= 'a' && l <= 'f'))) return -1;
        v = v * 16 + (c <= '9' ? c - '0' : l - 'a' + 10);
    }
    return v;
}

// Unescapes the JSON string whose opening quote is p[-1] into out (NULL: skip),
// *n its length; returns the position after the closing quote, or NULL at a
// \u escape without 4 hex digits (or at the text's end: never past it).
static const char *json_unescape(const char *p, char *out, size_t *n) {
    size_t k = 0;
    while (*p != '"') {
        if (!*p) return NULL;
        if (*p != '\\') { if (out) out[k] = *p; k++; p++; continue; }
        char c = p[1];
        if (!c) return NULL;
        unsigned cp = (unsigned char)c;
        p += 2;
        if (c == 'b') cp = '\b';
        else if (c == 'f') cp = '\f';
        else if (c == 'n') cp = '\n';
        else if (c == 'r') cp = '\r';
        else if (c == 't') cp = '\t';
        else if (c == 'u') {
            if (hex4(p) < 0) return NULL;
            cp = (unsigned)hex4(p);
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && p[0] == '\\' && p[1] == 'u' && hex4(p + 2) >= 0xDC00 && hex4(p + 2) < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4(p + 2) - 0xDC00);
                p += 6;
            }
        }
        k += (size_t)utf8_put(out ? out + k : NULL, cp);
    }
    *n = k;
    return p + 1;
}

static const char *json_skip_value(const char *p) {
    size_t n;
    if (*p == '"') return json_unescape(p + 1, NULL, &n);   // NULL: a bad escape
    if (*p != '{' && *p != '[') {
        while ((unsigned char)*p > 32 && !strchr(",}]", *p)) p++;
        return p;
    }
    int depth = 0;
    do {
        if (!*p) return NULL;
        if (*p == '"') { if (!(p = json_unescape(p + 1, NULL, &n))) return NULL; continue; }
        if (*p == '{' || *p == '[') depth++;
        if (*p == '}' || *p == ']') depth--;
        p++;
    } while (depth > 0);
    return p;
}

char *json_string_member(const char *json, const char *key, size_t *len, char *err) {
    const char *end = NULL;
    char why[64];
    cJSON *root = cJSON_ParseWithOpts(json, &end, 1);
    int ok = cJSON_IsObject(root), is_str = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(root, key));
    cJSON_Delete(root);
    if (!root) { errf(err, "expected a JSON object: not valid JSON (%s)", json_why(json, end, why, sizeof why)); return NULL; }
    if (!ok) { errf(err, "expected a JSON object"); return NULL; }
    if (!is_str) { errf(err, "\"%s\": expected a string member", key); return NULL; }
    // cJSON found it; walk the members again to unescape it byte-exact.
    char *buf = malloc(strlen(json) + 1);   // as long as the line
    if (!buf) { errf(err, "out of memory (%zu bytes)", strlen(json) + 1); return NULL; }
    const char *p = strncmp(json, "\xEF\xBB\xBF", 3) ? json : json + 3;   // cJSON skips a byte-order mark
    p = skip_ws(p) + 1;   // past '{'
    for (;;) {
        size_t n;
        p = skip_ws(p);
        if (*p != '"' || !(p = json_unescape(p + 1, buf, &n))) break;
        int hit = n == strlen(key) && memcmp(buf, key, n) == 0;
        if (*(p = skip_ws(p)) != ':') break;
        p = skip_ws(p + 1);
        if (hit) {
            if (*p != '"' || !json_unescape(p + 1, buf, &n)) break;
            buf[n] = 0;
            if (len) *len = n;
            return buf;
        }
        if (!(p = json_skip_value(p)) || *(p = skip_ws(p)) != ',') break;
        p++;
    }
    // Where cJSON is laxer than JSON: it reads "\u00zz" and a key's "\u0000" as a string's end.
    free(buf);
    errf(err, "\"%s\": not readable byte-exact (a \\u escape without 4 hex digits, or \\u0000 in a key)", key);
    return NULL;
}

// Writes s as a JSON string; invalid UTF-8 becomes U+FFFD, as HF's decode does.
static void put_json_string(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        int len, cp = utf8_next(s + i, n - i, &len);
        if (cp < 0) fputs("\xEF\xBF\xBD", f);
        else if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c < 0x20 || cp == 0x85 || cp == 0x2028 || cp == 0x2029) fprintf(f, "\\u%04x", cp);   // line breaks to some readers
        else fwrite(s + i, 1, (size_t)len, f);
        i += (size_t)len;
    }
    fputc('"', f);
}

static void tokenize_usage(FILE *f) {
    fputs("usage: seal tokenize TOKENIZER_JSON [--decode] [--no-special]\n"
          "  Reads JSON lines {\"text\": \"...\"} on stdin, writes {\"ids\": [...]} lines (no BOS).\n"
          "  --decode      read {\"ids\": [...]} lines, write {\"text\": \"...\"} lines\n"
          "  --no-special  encode special-token text such as <|eot_id|> as plain text\n"
          "  -h, --help    show this help\n", f);
}

static int encode_line(const Tokenizer *t, const char *line, int allow_special, char *err) {
    size_t n;
    char *text = json_string_member(line, "text", &n, err);
    if (!text) return -1;
    int *ids, k = tok_encode(t, text, n, allow_special, &ids, err);
    free(text);
    if (k < 0) return -1;
    fputs("{\"ids\": [", stdout);
    for (int i = 0; i < k; i++) printf(i ? ", %d" : "%d", ids[i]);
    fputs("]}\n", stdout);
    free(ids);
    return 0;
}

static int is_int(const cJSON *v) {
    return cJSON_IsNumber(v) && v->valuedouble >= INT_MIN && v->valuedouble <= INT_MAX &&
           (double)(int)v->valuedouble == v->valuedouble;
}

// The ids of a {"ids": [...]} line, malloc'd into *ids; -1 when the line is not that.
static int parse_ids(const char *line, int **ids, int *n) {
    cJSON *root = cJSON_ParseWithOpts(line, NULL, 1);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "ids");
    int rc = cJSON_IsObject(root) && cJSON_IsArray(arr) ? 0 : -1;
    *n = 0;
    *ids = rc ? NULL : xcalloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof **ids);   // smaller than cJSON's items
    for (const cJSON *v = rc ? NULL : arr->child; v && rc == 0; v = v->next) {
        if (is_int(v)) (*ids)[(*n)++] = v->valueint;
        else rc = -1;
    }
    cJSON_Delete(root);
    if (rc) { free(*ids); *ids = NULL; }
    return rc;
}

static int decode_line(const Tokenizer *t, const char *line, char *err) {
    int *ids, n;
    if (parse_ids(line, &ids, &n)) return errf(err, "expected a JSON object {\"ids\": [integer, ...]}");
    size_t len;
    char *text = tok_decode(t, ids, n, &len, err);
    free(ids);
    if (!text) return -1;
    fputs("{\"text\": ", stdout);
    put_json_string(stdout, text, len);
    fputs("}\n", stdout);
    free(text);
    return 0;
}

int tokenize_cmd(int argc, char **argv) {
    const char *path = NULL;
    int decode = 0, special = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { tokenize_usage(stdout); return 0; }
        if (!strcmp(argv[i], "--decode")) decode = 1;
        else if (!strcmp(argv[i], "--no-special")) special = 0;
        else if (argv[i][0] == '-' || path) {
            fprintf(stderr, "seal: tokenize: unexpected argument %s\n", argv[i]);
            tokenize_usage(stderr);
            return 2;
        } else path = argv[i];
    }
    if (!path) {
        fprintf(stderr, "seal: tokenize: missing TOKENIZER_JSON\n");
        tokenize_usage(stderr);
        return 2;
    }
    char err[ERR_MAX];
    Tokenizer *t = tok_load(path, err);
    if (!t) { fprintf(stderr, "seal: %s\n", err); return 1; }
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    int rc = 0;
    while (getline(&line, &cap, stdin) >= 0) {
        lineno++;
        if (*skip_ws(line) == 0) continue;   // blank lines carry nothing
        if ((decode ? decode_line(t, line, err) : encode_line(t, line, special, err)) != 0) {
            fflush(stdout);
            fprintf(stderr, "seal: line %ld: %s\n", lineno, err);
            rc = 1;
            break;
        }
    }
    free(line);
    tok_free(t);
    return rc;
}