// test/test_demo_knowledge.c: `seal demo knowledge`'s reference rows and
// table: the oracle self-edit restates every fact in the question's
// phrasing, and a quick demo on a tiny world reports every row with its n and
// interval (the in-context question and the bootstrap: test_squad.c).
#include "demo_knowledge.h"
#include "demo_tasks.h"
#include "test.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// A founder "Tam" in the place "Tamzor": the text searches below would find the name.
static int name_holds_fact(const DemoPlace *p) {
    for (int f = 0; f < DK_FACTS; f++)
        if (strcasestr(p->name, p->fact[f])) return 1;
    return 0;
}

// Every oracle statement names the place before the answer (so a causal
// model trained on it learns place -> fact, what the question asks) and
// together they hold every fact twice.
START_TEST(oracle_restates_every_fact) {
    for (int i = 0; i < 20; i++) {
        DemoPlace p;
        demo_place(3, DEMO_EVAL, i, &p);
        if (name_holds_fact(&p)) continue;
        char *edit = demo_place_oracle(&p), **st;
        int n = squad_split_edit(edit, &st);
        ck_assert_int_eq(n, 2 * DK_FACTS);
        for (int f = 0; f < DK_FACTS; f++) {
            int found = 0;
            for (int s = 0; s < n; s++) {
                const char *name = strstr(st[s], p.name), *fact = strcasestr(st[s], p.fact[f]);
                if (!fact) continue;
                ck_assert_msg(name && name < fact, "'%s': the answer comes before the place", st[s]);
                found++;
            }
            ck_assert_msg(found == 2, "%s: fact %d (%s) in %d statements of\n%s", p.name, f, p.fact[f], found, edit);
        }
        squad_free_strings(st, n);
        free(edit);
    }
}
END_TEST

// The passage states each fact answer first, in a sentence that names the
// place (a second place's facts are in the same passage): that is what
// separates the "passage only" row from the oracle.
START_TEST(passage_puts_answers_first) {
    Rng r;
    rng_seed(&r, 5);
    for (int i = 0; i < 20; i++) {
        DemoPlace p;
        demo_place(3, DEMO_EVAL, i, &p);
        if (name_holds_fact(&p)) continue;
        char *passage = demo_place_passage(&p, &r), *save = NULL;
        ck_assert_msg(strstr(passage, "Ships carry") || strstr(passage, "Traders buy"), "%s: no export sentence", passage);
        int stated[DK_FACTS] = {0}, sentences = 0;
        for (char *s = strtok_r(passage, ".", &save); s; s = strtok_r(NULL, ".", &save), sentences++) {
            const char *name = strstr(s, p.name);
            for (int f = 0; f < DK_FACTS && name; f++) {
                const char *fact = strcasestr(s, p.fact[f]);
                if (fact && fact < name) stated[f]++;
            }
        }
        for (int f = 0; f < DK_FACTS; f++) ck_assert_msg(stated[f] == 1, "%s: fact %s stated before %s %d times", p.name, p.fact[f], p.name, stated[f]);
        ck_assert_int_eq(sentences, 2 * (1 + DK_FACTS));   // the neighbour's kind and facts, then the place's
        free(passage);
    }
}
END_TEST

// No held-out or SEAL-training place name occurs anywhere in the base
// model's pretraining text, and the held-out places' names are all
// different (a name shared by two passages would have two answers).
START_TEST(held_out_names_never_pretrained) {
    char *text = demo_knowledge_pretraining_text(1, 0);   // the full scale's
    ck_assert(text && strlen(text) > 1000);
    DemoPlace p, q;
    demo_place(1, DEMO_PRETRAIN, 0, &p);
    ck_assert_msg(strstr(text, p.name), "the pretraining place %s is not in the text", p.name);   // the search can find a name
    for (int split = DEMO_TRAIN; split <= DEMO_EVAL; split++)
        for (int i = 0; i < 48; i++) {
            demo_place(1, split, i, &p);
            ck_assert_msg(!strstr(text, p.name), "%s is in pretraining", p.name);
            for (int j = 0; j < i; j++) {
                demo_place(1, split, j, &q);
                ck_assert_msg(strcmp(p.name, q.name), "places %d and %d are both %s", j, i, p.name);
            }
        }
    free(text);
}
END_TEST

// The quick demo end to end on a tiny world: every row of the table, each with
// n = passages x questions (x samples) and an interval around its mean.
START_TEST(quick_demo_reports_every_row) {
    char dir[256], cache[300], out[300], json[300], err[ERR_MAX];
    temp_dir(dir, sizeof dir, "demo-knowledge");
    snprintf(cache, sizeof cache, "%s/cache", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(json, sizeof json, "%s/report.json", dir);
    DemoOpts o = {.seed = 2, .quick = 1, .cache = cache, .out = out, .json = json};
    ck_assert_msg(demo_knowledge_run(&o, err) == 0, "%s", err);
    char *text = read_file(json, NULL, err);
    ck_assert_msg(text, "%s", err);
    cJSON *report = cJSON_Parse(text), *row;
    free(text);
    const char *want[] = {"no passage (base model)", "passage only", "passage + implications of the untrained policy", "SEAL, round 1",
                          "oracle self-edit", "in context (passage in the prompt, no training)"};
    int found[6] = {0};
    cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(report, "demo_rows")) {
        const char *method = cJSON_GetObjectItemCaseSensitive(row, "method")->valuestring;
        double mean = cJSON_GetObjectItemCaseSensitive(row, "ours")->valuedouble, lo = cJSON_GetObjectItemCaseSensitive(row, "ci_low")->valuedouble,
               hi = cJSON_GetObjectItemCaseSensitive(row, "ci_high")->valuedouble;
        int n = cJSON_GetObjectItemCaseSensitive(row, "n")->valueint, passages = cJSON_GetObjectItemCaseSensitive(row, "passages")->valueint;
        ck_assert_msg(lo <= mean + 1e-12 && mean <= hi + 1e-12 && lo >= 0 && hi <= 1, "%s: %g not in [%g, %g]", method, mean, lo, hi);
        ck_assert_msg(passages > 0 && n % (passages * DK_FACTS) == 0, "%s: n %d for %d passages", method, n, passages);
        for (int i = 0; i < 6; i++) found[i] += !strcmp(method, want[i]);
    }
    for (int i = 0; i < 6; i++) ck_assert_msg(found[i] == 1, "row '%s' appears %d times", want[i], found[i]);
    char md[400];
    snprintf(md, sizeof md, "%s/report.md", out);
    text = read_file(md, NULL, err);
    ck_assert_msg(text && strstr(text, "| oracle self-edit |") && strstr(text, "95% CI") && strstr(text, "seconds per self-edit evaluation"),
                  "%s", text ? text : err);
    free(text);
    cJSON_Delete(report);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

Suite *demo_knowledge_suite(void) {
    Suite *s = suite_create("demo knowledge");
    add_case(s, "world", 0, oracle_restates_every_fact, passage_puts_answers_first, held_out_names_never_pretrained);
    add_case(s, "quick demo", 120, quick_demo_reports_every_row);
    return s;
}
