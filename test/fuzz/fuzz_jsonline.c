// test/fuzz/fuzz_jsonline.c: one JSON line of `seal tokenize` ({"text": ...}),
// read by the byte-exact json_string_member, which must agree with cJSON.
#include "fuzz.h"
#include "tokenize.h"
#include <cjson/cJSON.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *line = fuzz_text(data, size), err[ERR_MAX];
    size_t n;
    char *s = json_string_member(line, "text", &n, err);
    if (s) {
        cJSON *root = cJSON_Parse(line);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "text");
        FUZZ_CHECK(cJSON_IsString(v), "json_string_member found what cJSON does not");
        if (!memchr(s, 0, n))   // cJSON stops at an escaped NUL; below it they must agree
            FUZZ_CHECK(strlen(v->valuestring) == n && memcmp(v->valuestring, s, n) == 0,
                       "json_string_member read \"%s\", cJSON \"%s\"", s, v->valuestring);
        cJSON_Delete(root);
        free(s);
    }
    free(line);
    return 0;
}
