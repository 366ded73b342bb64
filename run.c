// run.c: see run.h.
#include "run.h"
#include "train.h"
#include "util.h"
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int run_path(char *out, size_t n, const char *dir, const char *name, char *err) {
    return path_join(out, n, dir, name, err);
}

// Appends one JSON line and fsyncs. A crash mid-write leaves a torn last line
// without its newline; read_lines drops it. A failed write (a full disk) is
// cut off again at once, so the file is as it was before.
static int append_line(const char *path, const cJSON *line, char *err) {
    char *s = cJSON_PrintUnformatted(line);
    size_t n = strlen(s);
    s = realloc(s, n + 2);
    s[n++] = '\n';
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644), rc = 0;
    if (fd < 0) rc = errf(err, "%s: cannot open for appending: %s", path, strerror(errno));
    else {
        off_t before = lseek(fd, 0, SEEK_END);
        const char *p = s;
        size_t left = n;
        ssize_t w = 0;
        while (left > 0 && ((w = write(fd, p, left)) > 0 || (w < 0 && errno == EINTR)))
            if (w > 0) { p += w; left -= (size_t)w; }
        if (left > 0 || fsync(fd) != 0) {
            rc = errf(err, "%s: append failed: %s", path, strerror(left > 0 && w == 0 ? ENOSPC : errno));
            if (before >= 0 && ftruncate(fd, before) != 0) {}   // a torn line would join the next one
        }
        close(fd);
    }
    free(s);
    return rc;
}

// Reads a JSON-lines file; a last line without a newline (a torn append) is
// cut off the file. Any other malformed line is an error naming it.
static int read_lines(const char *path, cJSON ***out, int *n, char *err) {
    *out = NULL;
    *n = 0;
    size_t len;
    char *text = read_file(path, &len, NULL);
    if (!text) return access(path, F_OK) == 0 ? errf(err, "%s: cannot read", path) : 0;
    size_t keep = len;
    while (keep > 0 && text[keep - 1] != '\n') keep--;
    if (keep < len && truncate(path, (off_t)keep) != 0) { free(text); return errf(err, "%s: cannot cut a torn last line: %s", path, strerror(errno)); }
    int cap = 0, line_no = 0, rc = 0;
    for (char *p = text, *nl; p < text + keep && !rc; p = nl + 1) {
        nl = memchr(p, '\n', text + keep - p);
        *nl = 0;
        line_no++;
        const char *end = NULL;
        char why[80] = "", at[48];
        cJSON *j = cJSON_ParseWithOpts(p, &end, 1);
        if (!j) snprintf(why, sizeof why, " (not valid JSON, %s)", json_why(p, end, at, sizeof at));
        if (!cJSON_IsObject(j)) { cJSON_Delete(j); rc = errf(err, "%s: line %d is not a JSON object%s", path, line_no, why); break; }
        if (*n == cap) { cap = cap ? cap * 2 : 256; *out = realloc(*out, cap * sizeof(cJSON *)); }
        (*out)[(*n)++] = j;
    }
    free(text);
    if (rc) {   // nothing half read is handed back
        for (int i = 0; i < *n; i++) cJSON_Delete((*out)[i]);
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

// NULL, with the reason in err (which may be NULL), when absent or not JSON.
static cJSON *read_json_why(const char *path, char *err) {
    char *s = read_file(path, NULL, err), why[64];
    const char *end = NULL;
    cJSON *j = s ? cJSON_ParseWithOpts(s, &end, 1) : NULL;
    if (s && !j) errf(err, "%s: not valid JSON (%s)", path, json_why(s, end, why, sizeof why));
    free(s);
    return j;
}

static cJSON *read_json(const char *path) { return read_json_why(path, NULL); }

static int write_json(const char *path, const cJSON *j, char *err) {
    char *s = cJSON_Print(j);
    int rc = write_file_atomic(path, s, strlen(s), err);
    free(s);
    return rc;
}

static int check_edit_line(const cJSON *e, const char *path, int line, char *err) {
    const char *ints[] = {"round", "task", "sample", "attempt"};
    if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "phase"))) return errf(err, "%s: line %d: no \"phase\" string", path, line);
    for (int k = 0; k < 4; k++)
        if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(e, ints[k]))) return errf(err, "%s: line %d: no \"%s\" number", path, line, ints[k]);
    if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(e, "reward"))) return errf(err, "%s: line %d: no \"reward\" number", path, line);
    const cJSON *edit = cJSON_GetObjectItemCaseSensitive(e, "edit");
    if (!cJSON_IsString(edit) && !cJSON_IsNull(edit)) return errf(err, "%s: line %d: \"edit\" must be a string or null", path, line);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "accepted")) && !cJSON_IsString(edit))
        return errf(err, "%s: line %d: an accepted line needs its edit", path, line);
    return 0;
}

int run_open(Run *r, const char *dir, const cJSON *config, int resume, char *err) {
    memset(r, 0, sizeof *r);
    if (snprintf(r->dir, sizeof r->dir, "%s", dir) >= (int)sizeof r->dir) return errf(err, "%s: path too long", dir);
    char path[4096];
    if (run_path(path, sizeof path, dir, "run.json", err)) return -1;
    char why[ERR_MAX];
    cJSON *stored = read_json_why(path, why);
    if (!resume) {   // an unreadable run.json is a run too: never written over
        if (stored || access(path, F_OK) == 0) { cJSON_Delete(stored); return errf(err, "%s: already holds a run; use --resume to continue it or choose another --out", dir); }
        if (make_dirs(dir, err)) return -1;
        cJSON *j = cJSON_CreateObject();
        cJSON_AddItemToObject(j, "config", cJSON_Duplicate(config, 1));
        cJSON_AddStringToObject(j, "version", SEAL_VERSION);
        cJSON_AddNumberToObject(j, "created", (double)time(NULL));
        int rc = write_json(path, j, err);
        cJSON_Delete(j);
        if (rc) return -1;
        return run_set_current(r, 0, err);
    }
    if (!stored && access(path, F_OK) == 0) return errf(err, "%s: cannot resume: %s", dir, why);
    if (!stored) return errf(err, "%s: no run.json to resume", dir);
    int same = cJSON_Compare(cJSON_GetObjectItemCaseSensitive(stored, "config"), config, 1);
    cJSON_Delete(stored);
    if (!same) return errf(err, "%s: a run directory from another configuration (run.json differs from these flags)", dir);
    int rc = run_path(path, sizeof path, dir, "edits.jsonl", err) || read_lines(path, &r->edits, &r->n_edits, err);
    for (int i = 0; i < r->n_edits && !rc; i++)   // what resume reads back must be there
        rc = check_edit_line(r->edits[i], path, i + 1, err);
    if (rc) run_close(r);   // a failed open holds nothing
    return rc ? -1 : 0;
}

void run_close(Run *r) {
    for (int i = 0; i < r->n_edits; i++) cJSON_Delete(r->edits[i]);
    free(r->edits);
    memset(r, 0, sizeof *r);
}

int run_append_edit(Run *r, cJSON *line, char *err) {
    char path[4096];
    if (run_path(path, sizeof path, r->dir, "edits.jsonl", err) || append_line(path, line, err)) { cJSON_Delete(line); return -1; }
    r->edits = realloc(r->edits, (r->n_edits + 1) * sizeof(cJSON *));
    r->edits[r->n_edits++] = line;
    return 0;
}

static int get_int(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

static int same_sample(const cJSON *e, const char *phase, int round, int task, int sample) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(e, "phase");
    return cJSON_IsString(p) && !strcmp(p->valuestring, phase) && get_int(e, "round") == round &&
           get_int(e, "task") == task && get_int(e, "sample") == sample;
}

const cJSON *run_find_edit(const Run *r, const char *phase, int round, int task, int sample) {
    for (int i = 0; i < r->n_edits; i++)
        if (same_sample(r->edits[i], phase, round, task, sample) && !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r->edits[i], "final")))
            return r->edits[i];
    return NULL;
}

int run_attempts(const Run *r, const char *phase, int round, int task, int sample) {
    int n = 0;
    for (int i = 0; i < r->n_edits; i++) n += same_sample(r->edits[i], phase, round, task, sample);
    return n;
}

int run_log_event(const Run *r, cJSON *event, char *err) {
    char path[4096];
    cJSON_AddNumberToObject(event, "time", (double)time(NULL));
    int rc = run_path(path, sizeof path, r->dir, "events.jsonl", err) || append_line(path, event, err);
    cJSON_Delete(event);
    return rc ? -1 : 0;
}

static void round_dir(char *out, size_t n, const char *dir, int k) {
    snprintf(out, n, "%s/rounds/%d", dir, k);
}

int run_save_round(const Run *r, int k, const Lora *adapter, const cJSON *metrics, char *err) {
    char d[4096], path[4200];
    round_dir(d, sizeof d, r->dir, k);
    if (adapter && lora_save(adapter, d, "policy", err)) return -1;
    if (make_dirs(d, err)) return -1;
    snprintf(path, sizeof path, "%s/metrics.json", d);
    return write_json(path, metrics, err);   // last: its presence marks the round complete
}

cJSON *run_round_metrics(const char *dir, int k) {
    char path[4200];
    snprintf(path, sizeof path, "%s/rounds/%d/metrics.json", dir, k);
    return read_json(path);
}

int run_round_done(const Run *r, int k) {
    cJSON *m = run_round_metrics(r->dir, k);
    cJSON_Delete(m);
    return m != NULL;
}

int run_set_current(const Run *r, int k, char *err) {
    char path[4096], text[32];
    if (run_path(path, sizeof path, r->dir, "current", err)) return -1;
    int n = snprintf(text, sizeof text, "%d\n", k);
    return write_file_atomic(path, text, n, err);
}

int run_get_current(const char *dir) {
    char path[4096];
    if (path_join(path, sizeof path, dir, "current", NULL)) return -1;
    char *s = read_file(path, NULL, NULL);
    if (!s) return -1;
    char *end;
    long k = strtol(s, &end, 10);
    int ok = end != s && (*end == '\n' || !*end) && k >= 0 && k < 100000;
    free(s);
    return ok ? (int)k : -1;
}

static double num(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

int run_write_report(const char *dir, const char *md, const cJSON *report, const char *json_path, char *err) {
    char path[4200], *js = cJSON_Print(report);
    fputs(md, stdout);
    snprintf(path, sizeof path, "%s/report.md", dir);
    int rc = write_file_atomic(path, md, strlen(md), err);
    snprintf(path, sizeof path, "%s/report.json", dir);
    if (!rc) rc = write_file_atomic(path, js, strlen(js), err);
    if (!rc && json_path) rc = write_file_atomic(json_path, js, strlen(js), err);
    free(js);
    return rc;
}

int run_show(const char *dir, FILE *out, char *err) {
    char path[4096];
    if (path_join(path, sizeof path, dir, "run.json", err)) return -1;
    cJSON *run = read_json(path);
    if (!run) return errf(err, "%s: not a run directory (no readable run.json)", dir);
    cJSON_Delete(run);
    cJSON **lines;
    int n;
    if (path_join(path, sizeof path, dir, "edits.jsonl", err) || read_lines(path, &lines, &n, err)) return -1;
    fprintf(out, "run %s: %d self-edits logged, current round %d\n\n", dir, n, run_get_current(dir));
    fprintf(out, "| round | phase | sampled | valid | trained | reward mean | accepted | s/edit | of which: sampling, training, inference |\n"
                 "|---|---|---|---|---|---|---|---|---|\n");
    const char *phases[64];   // every phase the log holds, in order of first appearance
    int n_ph = 0;
    for (int i = 0; i < n && n_ph < 64; i++) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(lines[i], "phase");
        int seen = !cJSON_IsString(p);
        for (int j = 0; j < n_ph && !seen; j++) seen = !strcmp(phases[j], p->valuestring);
        if (!seen) phases[n_ph++] = p->valuestring;
    }
    for (int k = 0; k < 1000; k++) {
        int any = 0;
        for (int ph = 0; ph < n_ph; ph++) {
            int sampled = 0, valid = 0, trained = 0, accepted = 0;
            double reward = 0, t_all = 0, t_sample = 0, t_train = 0, t_infer = 0;
            for (int i = 0; i < n; i++) {
                const cJSON *e = lines[i], *p = cJSON_GetObjectItemCaseSensitive(e, "phase"), *m = cJSON_GetObjectItemCaseSensitive(e, "metrics");
                if (!cJSON_IsString(p) || strcmp(p->valuestring, phases[ph]) || get_int(e, "round") != k) continue;
                sampled++;
                valid += cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "valid"));
                trained += cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "trained"));
                accepted += cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "accepted"));
                reward += num(e, "reward");
                t_all += num(e, "seconds_total");
                t_sample += num(e, "seconds_sample");
                if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(m, "seconds_train"))) t_train += num(m, "seconds_train");
                if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(m, "seconds_infer"))) t_infer += num(m, "seconds_infer");
            }
            if (!sampled) continue;
            any = 1;
            fprintf(out, "| %d | %s | %d | %d | %d | %.3f | %d | %.2f | %.2f, %.2f, %.2f |\n", k, phases[ph], sampled, valid, trained,
                    reward / sampled, accepted, t_all / sampled, t_sample / sampled, t_train / sampled, t_infer / sampled);
        }
        cJSON *m = run_round_metrics(dir, k);
        if (!any && !m) { if (k > 0) break; else continue; }
        if (m) {
            char *js = cJSON_PrintUnformatted(m);
            fprintf(out, "|   | metrics | %s ||||||||\n", js);
            free(js);
            cJSON_Delete(m);
        }
    }
    for (int i = 0; i < n; i++) cJSON_Delete(lines[i]);
    free(lines);
    return 0;
}

int run_rollback(const char *dir, int k, char *err) {
    Run r = {0};
    snprintf(r.dir, sizeof r.dir, "%s", dir);
    char path[4096];
    if (path_join(path, sizeof path, dir, "run.json", err)) return -1;
    cJSON *run = read_json(path);
    if (!run) return errf(err, "%s: not a run directory (no readable run.json)", dir);
    cJSON_Delete(run);
    if (k != 0 && !run_round_done(&r, k)) return errf(err, "%s: round %d is not complete (no rounds/%d/metrics.json)", dir, k, k);
    int from = run_get_current(dir);
    if (run_set_current(&r, k, err)) return -1;
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "event", "rollback");
    cJSON_AddNumberToObject(ev, "from", from);
    cJSON_AddNumberToObject(ev, "to", k);
    return run_log_event(&r, ev, err);
}

uint64_t table_hash(const Table *t) {
    uint64_t h = 0x9e3779b97f4a7c15ULL;
    const uint32_t *w = (const uint32_t *)t->mem;
    for (size_t i = 0; i < t->total; i++) h = (h ^ w[i]) * 0x100000001b3ULL + (h >> 29);
    return h;
}
