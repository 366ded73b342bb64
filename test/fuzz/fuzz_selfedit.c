// test/fuzz/fuzz_selfedit.c: what a model writes: a self-edit (SEAL's JSON)
// and a grid answer. What parses must print and parse back the same.
#include "fuzz.h"
#include "arc.h"
#include <locale.h>
#include <wchar.h>

// glibc's own UTF-8 decoder as the judge of utf8_sanitize, which makes model
// output fit for the JSON logs.
static void check_sanitized(const char *text) {
    static int once;
    if (!once++ && !setlocale(LC_CTYPE, "C.UTF-8")) abort();
    char *clean = utf8_sanitize(text);
    mbstate_t st = {0};
    for (const char *p = clean; *p;) {
        size_t k = mbrtowc(NULL, p, strlen(p), &st);
        FUZZ_CHECK(k != (size_t)-1 && k != (size_t)-2, "utf8_sanitize left invalid UTF-8 at byte %ld", (long)(p - clean));
        p += k;
    }
    free(clean);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_text(data, size), why[ERR_MAX];
    SelfEdit se, back;
    if (selfedit_parse(text, &se, why) == 0) {
        char *json = selfedit_to_json(&se);
        FUZZ_CHECK(selfedit_parse(json, &back, why) == 0, "%s: %s", json, why);
        FUZZ_CHECK(memcmp(&se, &back, sizeof se) == 0, "self-edit does not read back as printed: %s", json);
        free(json);
    }
    check_sanitized(text);
    Grid g, g2;
    if (grid_parse(text, &g) == 0) {
        FUZZ_CHECK(grid_valid(&g), "grid_parse accepted a %dx%d grid", g.h, g.w);
        char *answer = arc_answer(&g);
        FUZZ_CHECK(grid_parse(answer, &g2) == 0 && grid_equal(&g, &g2), "answer does not parse back: %s", answer);
        free(answer);
    }
    free(text);
    return 0;
}
