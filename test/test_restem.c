// test/test_restem.c: the outer loop on a mock domain: a complete run
// directory, and a run interrupted at many points then resumed that ends
// exactly like an uninterrupted one.
#include "test.h"
#include "ranks.h"
#include "restem.h"
#include "train.h"
#include "util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    int calls, fail_after;        // evaluate fails (a simulated crash) on call fail_after; 0 = never
    int forgetful;                // a trained policy scores 0 on the probe (it "forgot")
    int forget_probes;            // ... only on its first forget_probes probe answers, then remembers
    int diverge;                  // a third of the valid self-edits' training diverges
    int untrained;                // valid self-edits get no training (as a 375-step or 0-epoch one), still rewarded
    uint64_t base_hash;           // nonzero: count the calls whose student is not the base
    int merged_calls, double_adapter;   // ... and those of them that also have an adapter attached
} Mock;

static char *mock_prompt(const Domain *d, int split, int task) {
    (void)d;
    char buf[200];
    snprintf(buf, sizeof buf, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nsplit %d task %d<|eot_id|>"
             "<|start_header_id|>assistant<|end_header_id|>\n\n", split, task);
    return strdup(buf);
}

static const char *mock_name(const Domain *d, int split, int task) {
    (void)d; (void)split;
    static const char *names[] = {"t0", "t1", "t2", "t3"};
    return names[task];
}

// Valid unless the edit hashes to 0 mod 4; reward 1 for half of the valid ones.
static int mock_evaluate(const Domain *d, Model *student, int split, int task, const char *edit, uint64_t seed, Outcome *out, char *err) {
    (void)task;
    Mock *m = d->ctx;
    if (++m->calls == m->fail_after) return errf(err, "injected failure");
    out->metrics = cJSON_CreateObject();
    if (m->base_hash && table_hash(&student->params) != m->base_hash) {
        m->merged_calls++;
        m->double_adapter += student->lora != NULL;
    }
    if (!edit) {
        int forgot = student->lora && (m->forgetful || (split == SPLIT_PROBE && m->forget_probes-- > 0));
        out->valid = 1;
        out->reward = forgot ? 0.0f : 0.5f;
        return 0;
    }
    uint64_t h = fnv1a(seed, edit, strlen(edit));
    out->valid = h % 4 != 0;
    out->trained = out->valid && !m->untrained;
    out->reward = out->valid && (h >> 8) % 2 ? 1.0f : 0.0f;
    if (!out->valid) snprintf(out->why, sizeof out->why, "mock: invalid");
    if (out->valid && m->diverge && (h >> 9) % 3 == 0) {
        out->trained = 0;
        out->reward = 0;
        snprintf(out->why, sizeof out->why, SFT_DIVERGED ": mock");
    }
    cJSON_AddNumberToObject(out->metrics, "h", (double)(h % 1000));
    return 0;
}

static int mock_evaluate_many(const Domain *d, Model *student, int split, int n, const int *task, const char *const *edit, const uint64_t *seed,
                              Outcome *out, char *err) {
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) rc = mock_evaluate(d, student, split, task[i], edit[i], seed[i], &out[i], err);
    return rc;
}

static void tiny_policy(Model *m, const Tokenizer *t) {
    Config c = tiny_config(1, 2, 0);
    c.vocab = tok_vocab_size(t);
    c.eos[0] = tok_find(t, "<|eot_id|>");
    c.n_layers = 1;
    char err[ERR_MAX];
    ck_assert_int_eq(model_init(m, &c, err), 0);
    model_random(m, 11, 0.3f);
}

static RestemOpts tiny_opts(void) {
    RestemOpts o = restem_defaults();
    o.rounds = 2;
    o.samples = 3;
    o.eval_samples = 2;
    o.keep_per_task = 2;
    o.sampling.max_new = 6;
    o.m_epochs = 2;
    o.m_rank = 2;
    o.seed = 5;
    o.quiet = 1;
    return o;
}

// The mock run's configuration: its options and its policy model's folder
// (DIR.model, holding config.json), which rollback checks adapters against.
static cJSON *mock_config(const char *dir) {
    cJSON *config = cJSON_CreateObject();
    RestemOpts o = tiny_opts();
    restem_opts_json(&o, config);
    char path[300];
    snprintf(path, sizeof path, "%s.model", dir);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(config, "model"), "path", path);
    return config;
}

static RestemOpts *opts_override;   // a test's own options instead of tiny_opts()
static uint64_t *final_hash;        // where a test wants the policy's weights' hash after the run

// Runs the mock SEAL into dir; fail_after > 0 stops it there. Returns restem_run's code.
static int run_mock_with(const char *dir, int resume, Mock *mock_in, cJSON **report_out) {
    Tokenizer *t = byte_tokenizer();
    Model m;
    tiny_policy(&m, t);
    Mock mock = *mock_in;
    if (mock.base_hash) mock.base_hash = table_hash(&m.params);
    Domain d = {.name = "mock", .n_train = 3, .n_eval = 2, .n_probe = 2, .ctx = &mock, .prompt = mock_prompt,
                .task_name = mock_name, .evaluate_many = mock_evaluate_many, .oracle_edit = "oracle",
                .paper = {0, 0.2, 0.725, 1.0}};
    RestemOpts o = opts_override ? *opts_override : tiny_opts();
    cJSON *config = mock_config(dir);
    Run run;
    char err[ERR_MAX], path[400];
    snprintf(path, sizeof path, "%s.model", dir);
    ck_assert_msg(make_dirs(path, err) == 0, "%s", err);
    snprintf(path, sizeof path, "%s.model/config.json", dir);
    ck_assert_msg(config_save(&m.c, path, err) == 0, "%s", err);
    ck_assert_msg(run_open(&run, dir, config, NULL, resume, err) == 0, "%s", err);
    cJSON *report = cJSON_CreateObject();
    int rc = restem_run(&d, &m, &m, t, &run, &o, report, err);
    if (rc) ck_assert_msg(strstr(err, "injected"), "%s", err);
    if (final_hash) *final_hash = table_hash(&m.params);
    *mock_in = mock;
    run_close(&run);
    cJSON_Delete(config);
    if (report_out) *report_out = report; else cJSON_Delete(report);
    tok_free(t);
    model_free(&m);
    return rc;
}

static int run_mock(const char *dir, int resume, int fail_after, cJSON **report_out) {
    Mock mock = {.fail_after = fail_after};
    return run_mock_with(dir, resume, &mock, report_out);
}

// edits.jsonl without the timing fields, which differ between runs.
static char *stable_log(const char *dir) {
    char path[400], err[ERR_MAX];
    snprintf(path, sizeof path, "%s/edits.jsonl", dir);
    char *text = read_file(path, NULL, err), *out = calloc(1, strlen(text) + 1);
    ck_assert_ptr_nonnull(text);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        ck_assert_ptr_nonnull(j);
        cJSON_DeleteItemFromObject(j, "seconds_sample");
        cJSON_DeleteItemFromObject(j, "seconds_total");
        char *s = cJSON_PrintUnformatted(j);
        strcat(out, s);
        strcat(out, "\n");
        free(s);
        cJSON_Delete(j);
    }
    free(text);
    return out;
}

START_TEST(complete_run_directory) {
    char dir[256], path[400];
    temp_dir(dir, sizeof dir, "restem");
    cJSON *report;
    ck_assert_int_eq(run_mock(dir, 0, 0, &report), 0);
    // baseline 2 + eval0 2x2 + oracle 2 + probe 2, then per round: train 3x3, eval 2x2, probe 2 (plus resampled attempts)
    char *log = stable_log(dir);
    int finals = 0;
    for (char *p = log; (p = strstr(p, "\"final\":true")); p++) finals++;
    ck_assert_int_eq(finals, 2 + 4 + 2 + 2 + 2 * (9 + 4 + 2));
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(report, "rows")), 2 + 2 + 1);
    for (int k = 1; k <= 2; k++) {
        snprintf(path, sizeof path, "%s/rounds/%d/metrics.json", dir, k);
        ck_assert_msg(access(path, F_OK) == 0, "%s missing", path);
    }
    ck_assert_int_ge(run_get_current(dir), 0);
    char *buf;
    size_t len;
    FILE *out = open_memstream(&buf, &len);
    char err[ERR_MAX];
    ck_assert_int_eq(run_show(dir, out, err), 0);
    fclose(out);
    ck_assert_msg(strstr(buf, "| 2 | train |"), "%s", buf);
    free(buf);
    ck_assert_int_eq(run_rollback(dir, 1, err), 0);
    ck_assert_int_eq(run_get_current(dir), 1);
    ck_assert_int_eq(run_rollback(dir, 7, err), -1);
    Run r;
    cJSON *other = cJSON_CreateObject();
    ck_assert_int_eq(run_open(&r, dir, other, NULL, 0, err), -1);   // a second fresh run in the same dir
    ck_assert_msg(strstr(err, "already holds a run"), "%s", err);
    ck_assert_int_eq(run_open(&r, dir, other, NULL, 1, err), -1);   // resuming with other settings
    ck_assert_msg(strstr(err, "another configuration"), "%s", err);
    cJSON_Delete(other);
    free(log);
    cJSON_Delete(report);
}
END_TEST

// Interrupt at several points (an injected error, then a torn last line),
// resume each time: the log equals that of an uninterrupted run.
START_TEST(resume_matches_uninterrupted) {
    char a[256], b[256], path[400];
    temp_dir(a, sizeof a, "restem-a");
    temp_dir(b, sizeof b, "restem-b");
    ck_assert_int_eq(run_mock(a, 0, 0, NULL), 0);
    const int stops[] = {4, 6, 5, 7};   // evaluate calls before each crash; a whole run makes ~45
    ck_assert_int_ne(run_mock(b, 0, stops[0], NULL), 0);
    for (int i = 1; i < 4; i++) {
        snprintf(path, sizeof path, "%s/edits.jsonl", b);
        FILE *f = fopen(path, "a");
        fputs("{\"phase\":\"train\",\"rou", f);   // a torn append
        fclose(f);
        ck_assert_int_ne(run_mock(b, 1, stops[i], NULL), 0);
    }
    ck_assert_int_eq(run_mock(b, 1, 0, NULL), 0);
    char *la = stable_log(a), *lb = stable_log(b);
    ck_assert_str_eq(la, lb);
    // a line without its keys is refused on resume, naming the file and line
    snprintf(path, sizeof path, "%s/edits.jsonl", b);
    FILE *f = fopen(path, "a");
    fputs("{\"phase\":\"train\",\"round\":\"one\"}\n", f);
    fclose(f);
    Run r;
    char err[ERR_MAX];
    cJSON *cfg = mock_config(b);
    ck_assert_int_eq(run_open(&r, b, cfg, NULL, 1, err), -1);
    ck_assert_msg(strstr(err, "edits.jsonl: line") && strstr(err, "\"round\""), "%s", err);
    cJSON_Delete(cfg);
    ck_assert_str_eq(la, lb);
    free(la);
    free(lb);
}
END_TEST

// A copy of the complete mock run in src, as DST (a fresh directory), for a test to damage.
static void copy_run(const char *src, char *dst, size_t n, const char *tag) {
    char cmd[1600];
    temp_dir(dst, n, tag);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s' && cp -r '%s.model' '%s.model'", dst, src, dst, src, dst);
    ck_assert_int_eq(system(cmd), 0);
}

// Resumes the copy dir of the run in src: -1 with err when refused.
static int resume_err(const char *src, const char *dir, char *err) {
    Run r;
    cJSON *config = mock_config(src);
    int rc = run_open(&r, dir, config, NULL, RUN_RESUME, err);
    if (!rc) run_close(&r);
    cJSON_Delete(config);
    return rc;
}

static void shell(const char *fmt, const char *dir) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, fmt, dir, dir, dir);
    ck_assert_int_eq(system(cmd), 0);
}

// One writer per run directory; a new run only into a new or empty folder;
// a resume only when current, rounds/ and the log agree; rollback only onto
// a round whose adapter loads and is finite.
START_TEST(run_directory_guards) {
    char dir[256], bad[256], err[ERR_MAX], pid[32];
    temp_dir(dir, sizeof dir, "restem-guards");
    ck_assert_int_eq(run_mock(dir, 0, 0, NULL), 0);
    Run a, b;
    cJSON *config = mock_config(dir);
    ck_assert_msg(run_open(&a, dir, config, NULL, RUN_RESUME, err) == 0, "%s", err);
    ck_assert_int_eq(run_open(&b, dir, config, NULL, RUN_RESUME, err), -1);   // a second writer, even in this process
    snprintf(pid, sizeof pid, "(pid %d)", (int)getpid());
    ck_assert_msg(strstr(err, "in use by another seal process") && strstr(err, pid), "%s", err);
    ck_assert_int_eq(run_rollback(dir, 1, err), -1);
    ck_assert_msg(strstr(err, "in use"), "%s", err);
    ck_assert_msg(run_open(&b, dir, config, NULL, RUN_READ, err) == 0, "%s", err);   // reading needs no lock
    ck_assert_int_eq(b.n_edits, a.n_edits);
    run_close(&b);
    run_close(&a);
    ck_assert_msg(run_open(&a, dir, config, NULL, RUN_RESUME, err) == 0, "%s", err);   // closing let go
    run_close(&a);
    cJSON_Delete(config);
    // a folder holding something else is not a new run's
    temp_dir(bad, sizeof bad, "restem-notrun");
    shell("echo precious > '%s/notes.txt'", bad);
    config = mock_config(bad);
    ck_assert_int_eq(run_open(&a, bad, config, NULL, RUN_NEW, err), -1);
    ck_assert_msg(strstr(err, "not empty") && strstr(err, "notes.txt"), "%s", err);
    ck_assert_int_eq(run_open(&a, bad, config, NULL, RUN_RESUME, err), -1);
    ck_assert_msg(strstr(err, "no run.json"), "%s", err);
    cJSON_Delete(config);
    // parts that disagree: each refused, with the reason
    const struct { const char *damage, *why; } cases[] = {
        {"rm '%s/edits.jsonl'", "holds no self-edit of round 0"},
        {"grep -v '\"round\":2' '%s/edits.jsonl' > '%s/e' && mv '%s/e' '%s/edits.jsonl'", "holds no self-edit of round 2"},
        {"rm '%s/current'", "\"current\" is missing"},
        {"echo 5 > '%s/current'", "names round 5, which is not complete"},
        {"rm '%s/rounds/1/metrics.json'", "rounds/ has a gap"},
        {"rm '%s/rounds/2/adapter_model.safetensors'", "round 2's policy adapter is missing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        copy_run(dir, bad, sizeof bad, "restem-damaged");
        char cmd[1400];
        snprintf(cmd, sizeof cmd, cases[i].damage, bad, bad, bad, bad);
        ck_assert_int_eq(system(cmd), 0);
        ck_assert_int_eq(resume_err(dir, bad, err), -1);
        ck_assert_msg(strstr(err, cases[i].why), "case %zu: %s", i, err);
    }
    // rollback onto a damaged adapter: refused, current unchanged
    const char *adapters[] = {"truncate -s 100 '%s/rounds/1/adapter_model.safetensors'", "rm '%s/rounds/1/adapter_config.json'",
                              "printf '\\377\\377\\377\\177' | dd of='%s/rounds/1/adapter_model.safetensors' bs=1 seek=$(( $(stat -c %%s '%s/rounds/1/adapter_model.safetensors') - 4 )) conv=notrunc 2>/dev/null"};
    const char *adapter_why[] = {"adapter_model.safetensors", "adapter_config.json", "NaN or Inf"};
    for (int i = 0; i < 3; i++) {
        copy_run(dir, bad, sizeof bad, "restem-rollback");
        int before = run_get_current(bad);
        shell(adapters[i], bad);
        ck_assert_int_eq(run_rollback(bad, 1, err), -1);
        ck_assert_msg(strstr(err, adapter_why[i]), "case %d: %s", i, err);
        ck_assert_int_eq(run_get_current(bad), before);
        ck_assert_int_eq(run_rollback(bad, 0, err), 0);   // the base policy needs no adapter
    }
}
END_TEST

// A resume goes on only over the input files the run began with; accepting a
// change is logged and records the new hashes.
START_TEST(resume_checks_inputs) {
    char dir[256], file[300], err[ERR_MAX];
    temp_dir(dir, sizeof dir, "restem-inputs");
    snprintf(file, sizeof file, "%s.task.json", dir);
    ck_assert_int_eq(write_file_atomic(file, "{\"train\": []}", 13, err), 0);
    fingerprints_start();
    free(read_file(file, NULL, err));
    cJSON *inputs = fingerprints_take(), *config = cJSON_CreateObject();
    ck_assert_int_eq(cJSON_GetArraySize(inputs), 1);
    Run r;
    ck_assert_msg(run_open(&r, dir, config, inputs, RUN_NEW, err) == 0, "%s", err);
    run_close(&r);
    ck_assert_msg(run_open(&r, dir, config, inputs, RUN_RESUME, err) == 0, "%s", err);
    run_close(&r);
    ck_assert_int_eq(write_file_atomic(file, "{\"train\": [1]}", 14, err), 0);   // the task changed
    ck_assert_int_eq(run_open(&r, dir, config, inputs, RUN_RESUME, err), -1);
    ck_assert_msg(strstr(err, file) && strstr(err, "changed since the run began") && strstr(err, "--accept-changed-inputs"), "%s", err);
    fingerprints_start();
    free(read_file(file, NULL, err));
    cJSON *now = fingerprints_take();
    ck_assert_msg(run_open(&r, dir, config, now, RUN_RESUME_CHANGED, err) == 0, "%s", err);
    run_close(&r);
    char path[400];
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    char *events = read_file(path, NULL, err);
    ck_assert_msg(events && strstr(events, "\"inputs-changed\"") && strstr(events, file), "%s", events ? events : err);
    free(events);
    ck_assert_msg(run_open(&r, dir, config, now, RUN_RESUME, err) == 0, "%s", err);   // the new contents are the run's now
    run_close(&r);
    unlink(file);
    ck_assert_int_eq(run_open(&r, dir, config, now, RUN_RESUME, err), -1);
    ck_assert_msg(strstr(err, "is gone"), "%s", err);
    cJSON *other = cJSON_CreateObject();   // another configuration: the message names the key
    cJSON_AddNumberToObject(other, "rounds", 3);
    ck_assert_int_eq(run_open(&r, dir, other, NULL, RUN_RESUME, err), -1);
    ck_assert_msg(strstr(err, "another configuration: rounds (not in run.json)"), "%s", err);
    cJSON_Delete(other);
    cJSON_Delete(now);
    cJSON_Delete(inputs);
    cJSON_Delete(config);
}
END_TEST

// Self-edits whose training diverged are counted in the report, not hidden.
START_TEST(diverged_counted) {
    char dir[256], err[ERR_MAX];
    temp_dir(dir, sizeof dir, "restem-diverged");
    cJSON *report;
    ck_assert_int_eq(run_mock_with(dir, 0, &(Mock){.diverge = 1}, &report), 0);
    Run r;
    ck_assert_msg(run_open(&r, dir, NULL, NULL, RUN_READ, err) == 0, "%s", err);
    int n = 0;
    for (int i = 0; i < r.n_edits; i++) n += r.edits[i]->final && strstr(r.edits[i]->why, SFT_DIVERGED) && !r.edits[i]->trained;
    run_close(&r);
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(cJSON_GetObjectItem(report, "diverged")->valueint, n);
    char *md;
    size_t len;
    FILE *f = open_memstream(&md, &len);
    restem_report_markdown(report, f);
    fclose(f);
    char want[64];
    snprintf(want, sizeof want, "%d self-edits' training diverged", n);
    ck_assert_msg(strstr(md, want), "%s", md);
    free(md);
    cJSON_Delete(report);
}
END_TEST

// A policy whose probe score falls is kept in shadow: not promoted, and said so.
START_TEST(retention_guard_holds) {
    char dir[256], path[400], err[ERR_MAX];
    temp_dir(dir, sizeof dir, "restem-guard");
    ck_assert_int_eq(run_mock_with(dir, 0, &(Mock){.forgetful = 1}, NULL), 0);
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    char *events = read_file(path, NULL, err);
    ck_assert_ptr_nonnull(events);
    ck_assert_msg(strstr(events, "\"event\":\"hold\""), "%s", events);
    ck_assert_int_eq(run_get_current(dir), 0);   // the base policy stays current
    free(events);
    temp_dir(dir, sizeof dir, "restem-noguard");
    ck_assert_int_eq(run_mock_with(dir, 0, &(Mock){0}, NULL), 0);
    ck_assert_int_eq(run_get_current(dir), 2);   // the same run without forgetting promotes
}
END_TEST

// Shadow mode: round 1's policy forgets (its probe falls below the bar) and is
// held; it still writes round 2's self-edits, RUN/current stays at 0, and
// round 2's policy, which passes, is promoted.
START_TEST(shadow_policy_until_it_passes) {
    char dir[256], path[400], err[ERR_MAX];
    temp_dir(dir, sizeof dir, "restem-shadow");
    ck_assert_int_eq(run_mock_with(dir, 0, &(Mock){.forget_probes = 2}, NULL), 0);   // round 1's two probe tasks
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    char *events = read_file(path, NULL, err);
    ck_assert_ptr_nonnull(events);
    char *hold = strstr(events, "\"event\":\"hold\",\"round\":1"), *promote = strstr(events, "\"event\":\"promote\",\"round\":2");
    ck_assert_msg(hold && promote && hold < promote, "%s", events);
    ck_assert_int_eq(run_get_current(dir), 2);
    cJSON *m1 = run_round_metrics(dir, 1);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(m1, "adapter")));   // round 1 trained a policy, else nothing is shown
    cJSON_Delete(m1);
    Run r;
    cJSON *config = mock_config(dir);
    ck_assert_msg(run_open(&r, dir, config, NULL, 1, err) == 0, "%s", err);
    uint64_t held = run_find(&r, PHASE_EVAL, 1, 0, 0)->policy_hash;   // round 1's policy
    ck_assert(held != 0);
    for (int t = 0; t < 3; t++)
        for (int k = 0; k < 3; k++) ck_assert(run_find(&r, PHASE_TRAIN, 2, t, k)->policy_hash == held);
    run_close(&r);
    cJSON_Delete(config);
    free(events);
}
END_TEST

// The threshold filter keeps, per task and round, the first keep_per_task of
// the rewarded self-edits by sample index.
START_TEST(filter_keeps_first_rewarded) {
    char dir[256], err[ERR_MAX];
    temp_dir(dir, sizeof dir, "restem-filter");
    ck_assert_int_eq(run_mock(dir, 0, 0, NULL), 0);
    Run r;
    cJSON *config = mock_config(dir);
    RestemOpts o = tiny_opts();
    ck_assert_msg(run_open(&r, dir, config, NULL, 1, err) == 0, "%s", err);
    int accepted = 0;
    for (int round = 1; round <= o.rounds; round++)
        for (int t = 0; t < 3; t++)
            for (int k = 0, rewarded = 0; k < o.samples; k++) {
                const Edit *e = run_find(&r, PHASE_TRAIN, round, t, k);
                ck_assert_ptr_nonnull(e);
                int good = e->valid && e->trained && e->reward >= o.threshold;
                ck_assert_int_eq(e->accepted, good && rewarded < o.keep_per_task);
                accepted += e->accepted;
                rewarded += good;
            }
    ck_assert_int_gt(accepted, 0);
    run_close(&r);
    cJSON_Delete(config);
}
END_TEST

// merge_policy (SEAL merges the M-step LoRA into the model): once the policy
// has an adapter, the student of the train and held-out phases (and the probe)
// is the policy with it merged in, never merged and attached at once; the base
// weights come back bit for bit. Without it the student stays the base.
START_TEST(merged_policy_is_the_student) {
    char dir[256];
    for (int merge = 0; merge < 2; merge++) {
        temp_dir(dir, sizeof dir, merge ? "restem-merge" : "restem-attach");
        RestemOpts o = tiny_opts();
        o.merge_policy = merge;
        Mock mock = {.base_hash = 1};
        uint64_t after = 0;
        opts_override = &o;
        final_hash = &after;
        ck_assert_int_eq(run_mock_with(dir, 0, &mock, NULL), 0);
        opts_override = NULL;
        final_hash = NULL;
        if (merge) ck_assert_int_gt(mock.merged_calls, 0);
        else ck_assert_int_eq(mock.merged_calls, 0);
        ck_assert_int_eq(mock.double_adapter, 0);
        ck_assert(after == mock.base_hash);
    }
}
END_TEST

// keep_untrained and keep_per_task 0 (SEAL's BC-self-edit.py): every rewarded
// self-edit is kept, trained or not; without keep_untrained none that did not
// train is. The report counts the draws the self-edits took.
START_TEST(filter_keeps_every_correct_one) {
    char dir[256], err[ERR_MAX];
    for (int keep_untrained = 0; keep_untrained < 2; keep_untrained++) {
        temp_dir(dir, sizeof dir, keep_untrained ? "restem-keepall" : "restem-trainedonly");
        RestemOpts o = tiny_opts();
        o.keep_per_task = 0;
        o.keep_untrained = keep_untrained;
        o.rounds = 1;
        Mock mock = {.untrained = 1};
        cJSON *report;
        opts_override = &o;
        ck_assert_int_eq(run_mock_with(dir, 0, &mock, &report), 0);
        opts_override = NULL;
        const cJSON *draws = cJSON_GetObjectItem(report, "draws");
        ck_assert_int_eq(cJSON_GetObjectItem(draws, "self_edits")->valueint, 3 * 3 + 2 * 2 * 2);   // train, then eval in rounds 0 and 1
        ck_assert_int_ge(cJSON_GetObjectItem(draws, "draws")->valueint, 3 * 3 + 2 * 2 * 2);
        cJSON_Delete(report);
        Run r;
        cJSON *config = mock_config(dir);
        ck_assert_msg(run_open(&r, dir, config, NULL, RUN_RESUME_CHANGED, err) == 0, "%s", err);
        int accepted = 0, rewarded = 0;
        for (int t = 0; t < 3; t++)
            for (int k = 0; k < o.samples; k++) {
                const Edit *e = run_find(&r, PHASE_TRAIN, 1, t, k);
                ck_assert_ptr_nonnull(e);
                rewarded += e->valid && e->reward >= 1;
                accepted += e->accepted;
            }
        ck_assert_int_eq(accepted, keep_untrained ? rewarded : 0);
        if (keep_untrained) ck_assert_int_gt(accepted, 0);
        run_close(&r);
        cJSON_Delete(config);
    }
}
END_TEST

// ranks.c in a build without MPI: one rank, which does every job and records
// them in order; a failed job stops the batch after the ones before it.
typedef struct { int fail_at, recorded[8], n; } Jobs;

static int job_work(void *ctx, const RankJob *job, Edits *result, char *err) {
    Jobs *j = ctx;
    if (job->task == j->fail_at) return errf(err, "job %d failed", job->task);
    for (int a = job->attempt; a < 2; a++) {   // attempts job->attempt..1, the last one final
        Edit e = {.phase = PHASE_TRAIN, .task = job->task, .sample = job->sample, .attempt = a, .final = a == 1, .edit = strdup("x")};
        edits_push(result, &e);
    }
    return 0;
}

static int job_record(void *ctx, const RankJob *job, Edits *result, char *err) {
    Jobs *j = ctx;
    if (result->n != 2 - job->attempt || result->e[0].task != job->task || result->e[0].sample != job->sample ||
        result->e[0].attempt != job->attempt || !result->e[result->n - 1].final)
        return errf(err, "job %d: a result of %d edits that is not its own", job->task, result->n);
    j->recorded[j->n++] = job->task;
    return 0;
}

// An Edit survives the trip through its JSON line (the log, and MPI's messages).
START_TEST(edit_line_round_trip) {
    const Phase phases[] = {PHASE_TRAIN, PHASE_SELECT, PHASE_CPT_BASE};
    for (int i = 0; i < 3; i++) {
        Edit e = {.phase = phases[i], .group = phases[i] == PHASE_CPT_BASE ? 5 : 0, .round = 2, .task = 3, .sample = 4, .attempt = 1,
                  .final = 1, .task_id = phases[i] == PHASE_CPT_BASE ? NULL : strdup("t3"), .seed = 0xfedcba9876543210ULL,
                  .prompt_hash = 7, .policy_hash = 0x8000000000000001ULL, .edit = strdup("a \"self-edit\"\n"), .valid = 1,
                  .trained = 1, .accepted = 1, .reward = 1.0 / 3, .metrics = cJSON_CreateObject(), .seconds_sample = 0.25,
                  .seconds_total = 1.5, .from_sample = 2, .baseline_reward = 0.1};
        snprintf(e.why, sizeof e.why, "why");
        cJSON_AddNumberToObject(e.metrics, "steps", 12);
        char *line = edit_to_line(&e), err[ERR_MAX];
        Edit back;
        ck_assert_msg(edit_from_line(line, &back, "test", err) == 0, "%s", err);
        char *again = edit_to_line(&back);
        ck_assert_str_eq(line, again);   // byte for byte
        ck_assert_int_eq(back.phase, e.phase);
        ck_assert_int_eq(back.group, e.group);
        ck_assert_double_eq(back.reward, e.reward);
        ck_assert_str_eq(back.edit, e.edit);
        if (e.phase == PHASE_TRAIN) ck_assert(back.seed == e.seed && back.policy_hash == e.policy_hash);
        free(line);
        free(again);
        edit_free(&back);
        edit_free(&e);
    }
    const char *bad[] = {"[1]", "{\"phase\":\"nope\",\"round\":0,\"task\":0,\"sample\":0,\"attempt\":0,\"reward\":0,\"edit\":null}",
                         "{\"phase\":\"train\",\"round\":0,\"task\":0,\"sample\":0,\"attempt\":0,\"edit\":null}",
                         "{\"phase\":\"cpt-seal-nx\",\"round\":0,\"task\":0,\"sample\":0,\"attempt\":0,\"reward\":0,\"edit\":null}"};
    const char *want[] = {"not a JSON object", "unknown phase", "no \"reward\" number", "unknown phase"};
    for (int i = 0; i < 4; i++) {
        Edit e;
        char err[ERR_MAX] = "";
        ck_assert_int_eq(edit_from_line(bad[i], &e, "x.jsonl: line 1", err), -1);
        ck_assert_msg(strstr(err, want[i]) && strstr(err, "x.jsonl: line 1"), "%s", err);
    }
}
END_TEST

START_TEST(ranks_without_mpi) {
    ck_assert_int_eq(ranks_size(), 1);
    ck_assert(ranks_root());
    RankJob jobs[5];
    for (int i = 0; i < 5; i++) jobs[i] = (RankJob){i, 10 + i, i % 2};
    char err[ERR_MAX];
    Jobs j = {.fail_at = -1};
    ck_assert_msg(ranks_map(jobs, 5, job_work, job_record, &j, err) == 0, "%s", err);
    ck_assert_int_eq(j.n, 5);
    for (int i = 0; i < 5; i++) ck_assert_int_eq(j.recorded[i], i);
    j = (Jobs){.fail_at = 3};
    ck_assert_int_eq(ranks_map(jobs, 5, job_work, job_record, &j, err), -1);
    ck_assert_str_eq(err, "job 3 failed");
    ck_assert_int_eq(j.n, 3);
    // --gpus-per-node: local rank 0 takes the first device of CUDA_VISIBLE_DEVICES, else device 0
    setenv("CUDA_VISIBLE_DEVICES", "3,5", 1);
    ck_assert_int_eq(ranks_use_gpus(2, err), 0);
    ck_assert_str_eq(getenv("CUDA_VISIBLE_DEVICES"), "3");
    unsetenv("CUDA_VISIBLE_DEVICES");
    ck_assert_int_eq(ranks_use_gpus(4, err), 0);
    ck_assert_str_eq(getenv("CUDA_VISIBLE_DEVICES"), "0");
    setenv("CUDA_VISIBLE_DEVICES", ",", 1);
    ck_assert_int_eq(ranks_use_gpus(1, err), -1);
    ck_assert_msg(strstr(err, "CUDA_VISIBLE_DEVICES=,"), "%s", err);
}
END_TEST

Suite *restem_suite(void) {
    Suite *s = suite_create("restem");
    add_case(s, "run", 120, complete_run_directory, resume_matches_uninterrupted, run_directory_guards, resume_checks_inputs, diverged_counted,
             retention_guard_holds, shadow_policy_until_it_passes, filter_keeps_first_rewarded, ranks_without_mpi, edit_line_round_trip,
             merged_policy_is_the_student, filter_keeps_every_correct_one);
    return s;
}
