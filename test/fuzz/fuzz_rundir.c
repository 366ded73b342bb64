// test/fuzz/fuzz_rundir.c: the files `seal fewshot --resume` and `seal runs`
// read from a run directory. The first byte of an input picks the file
// (RUNDIR_FILES), the rest replaces it in an otherwise intact run.
#include "fuzz.h"
#include "rundir.h"

static char dir[300];
static char *original[RUNDIR_N_FILES];
static size_t original_len[RUNDIR_N_FILES];
static FILE *devnull;

static void setup(void) {
    char err[ERR_MAX], path[600];
    snprintf(dir, sizeof dir, "%s/run", fuzz_dir());
    if (rundir_make(dir, err)) { fprintf(stderr, "%s\n", err); abort(); }
    for (int i = 0; i < RUNDIR_N_FILES; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, RUNDIR_FILES[i]);
        if (!(original[i] = read_file(path, &original_len[i], err))) { fprintf(stderr, "%s\n", err); abort(); }
    }
    devnull = fopen("/dev/null", "w");
}

static void put(int k, const void *data, size_t size) {
    char name[300];
    snprintf(name, sizeof name, "run/%s", RUNDIR_FILES[k]);
    fuzz_file(name, data, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) setup();
    if (size == 0) return 0;
    for (int i = 0; i < RUNDIR_N_FILES; i++) put(i, original[i], original_len[i]);
    put(data[0] % RUNDIR_N_FILES, data + 1, size - 1);
    char err[ERR_MAX], adapter[400];
    cJSON *config = rundir_config();
    Run r;
    if (run_open(&r, dir, config, NULL, RUN_RESUME, err) == 0) {
        const Phase phases[] = {PHASE_BASELINE, PHASE_TRAIN, PHASE_EVAL, PHASE_PROBE};
        for (int p = 0; p < 4; p++)
            for (int k = 0; k < 3; k++) {
                const Edit *e = run_find(&r, phases[p], k, 0, k % 2);
                FUZZ_CHECK(!e || (e->phase == phases[p] && e->round == k && e->final), "a lookup that found another line");
                FUZZ_CHECK(!e || !e->accepted || e->edit, "an accepted line without its edit");
                FUZZ_CHECK(run_attempts(&r, phases[p], k, 0, 0) >= 0, "a negative count");
            }
        for (int i = 0; i < r.n_edits; i++) {   // every line survives its trip through the JSON line format
            char *line = edit_to_line(r.edits[i]), *again = NULL;
            Edit back;
            if (edit_from_line(line, &back, "fuzz", err) == 0) { again = edit_to_line(&back); edit_free(&back); }
            FUZZ_CHECK(again && !strcmp(line, again), "an edit whose JSON line does not read back the same: %s", line);
            free(line);
            free(again);
        }
    }
    run_close(&r);
    cJSON_Delete(config);
    run_show(dir, devnull, err);
    cJSON_Delete(run_round_metrics(dir, 1));
    int k = run_get_current(dir);
    FUZZ_CHECK(k >= -1 && k < 100000, "current %d", k);
    Config c = rundir_model_config();
    Lora l;
    snprintf(adapter, sizeof adapter, "%s/rounds/1", dir);
    if (lora_load(&l, &c, adapter, err) == 0) lora_free(&l);
    return 0;
}
