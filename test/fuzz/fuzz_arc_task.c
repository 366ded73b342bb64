// test/fuzz/fuzz_arc_task.c: an ARC task file and the Kaggle challenges file.
// Every grid of an accepted task is valid, and prompts built from it hold
// answers that parse back.
#include "fuzz.h"
#include "arc.h"

static void check_grid(const Grid *g, int may_be_empty) {
    FUZZ_CHECK(grid_valid(g) || (may_be_empty && g->h == 0), "accepted a %dx%d grid", g->h, g->w);
    if (g->h == 0) return;
    Grid back;
    char *answer = arc_answer(g);
    FUZZ_CHECK(grid_parse(answer, &back) == 0 && grid_equal(g, &back), "answer does not parse back: %s", answer);
    free(answer);
}

static void check_task(const Task *t) {
    FUZZ_CHECK(t->n_train >= 1 && t->n_test >= 1, "%d train, %d test pairs", t->n_train, t->n_test);
    for (int i = 0; i < t->n_train; i++) { check_grid(&t->train[i].in, 0); check_grid(&t->train[i].out, 0); }
    for (int i = 0; i < t->n_test; i++) { check_grid(&t->test[i].in, 0); check_grid(&t->test[i].out, 1); }
    for (int f = 0; f < CHAT_N_FORMATS; f++) {
        free(arc_selfedit_prompt(t, (ChatFormat)f));
        free(arc_prompt(t->train, t->n_train, &t->test[0].in, (ChatFormat)f));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *json = fuzz_text(data, size), err[ERR_MAX];
    Task t;
    if (arc_parse_task(json, "fuzz/task.json", &t, err) == 0) {
        check_task(&t);
        arc_free_task(&t);
    }
    const char *path = fuzz_file("challenges.json", data, size);
    Task *tasks;
    int n;
    if (arc_load_kaggle(path, NULL, NULL, 0, &tasks, &n, err) == 0) {
        for (int i = 0; i < n; i++) check_task(&tasks[i]);
        arc_free_tasks(tasks, n);
    }
    free(json);
    return 0;
}
