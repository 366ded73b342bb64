// run.c: see run.h.
#include "run.h"
#include "train.h"
#include "util.h"
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

static int run_path(char *out, size_t n, const char *dir, const char *name, char *err) {
    return path_join(out, n, dir, name, err);
}

// Appends one line (text and its newline) and fsyncs. A crash mid-write
// leaves a torn last line without its newline; reading the log drops it. A
// failed write (a full disk) is cut off again at once, so the file is as it was.
static int append_line(const char *path, const char *text, char *err) {
    size_t n = strlen(text);
    char *s = xmalloc(n + 2);   // one line: a copy of text, which is already here
    memcpy(s, text, n);
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

static int append_json(const char *path, const cJSON *line, char *err) {
    char *s = cJSON_PrintUnformatted(line);
    int rc = append_line(path, s, err);
    free(s);
    return rc;
}

// A JSON-lines file as text, each line NUL-terminated in place; *n counts
// them. A last line without a newline (a torn append) is cut off the file.
// NULL with *n = 0 and no error when the file is absent.
static char *read_lines(const char *path, int *n, int cut, char *err) {
    *n = 0;
    size_t len;
    char *text = read_file(path, &len, NULL);
    if (!text) { if (access(path, F_OK) == 0) errf(err, "%s: cannot read", path); return NULL; }
    size_t keep = len;
    while (keep > 0 && text[keep - 1] != '\n') keep--;
    if (cut && keep < len && truncate(path, (off_t)keep) != 0) { free(text); errf(err, "%s: cannot cut a torn last line: %s", path, strerror(errno)); return NULL; }
    text[keep] = 0;
    const char *nul = memchr(text, 0, keep);   // it would cut its line in two
    if (nul) {
        int line = 1;
        for (const char *p = text; p < nul; p++) line += *p == '\n';
        free(text);
        errf(err, "%s: line %d holds a NUL byte", path, line);
        return NULL;
    }
    for (size_t i = 0; i < keep; i++)
        if (text[i] == '\n') { text[i] = 0; (*n)++; }
    return text;
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

// ----------------------------------------------------------------------------
// Edits as JSON lines. Three layouts, by phase: a sampled self-edit, a
// best_per_task choice ("select") and a continued-pretraining group ("cpt-...").

const char *const PHASE_NAME[N_PHASES] = {"baseline", "eval", "oracle", "probe", "train", "train-baseline", "select",
                                          "cpt-passage", "cpt-base", "cpt-seal", "stored", "in-context"};

static int is_cpt(Phase p) { return p >= PHASE_CPT_PASSAGE && p <= PHASE_CPT_SEAL; }

void phase_name(Phase phase, int group, char *buf, size_t n) {
    if (is_cpt(phase)) snprintf(buf, n, "%s-n%d", PHASE_NAME[phase], group);
    else snprintf(buf, n, "%s", PHASE_NAME[phase]);
}

// "cpt-passage-n5" -> PHASE_CPT_PASSAGE, 5; -1 when no phase has this name
static int phase_parse(const char *s, Phase *p, int *group) {
    for (int i = 0; i < N_PHASES; i++) {
        size_t n = strlen(PHASE_NAME[i]);
        if (strncmp(s, PHASE_NAME[i], n)) continue;
        char *end;
        if (!is_cpt(i) && !s[n]) { *p = i; *group = 0; return 0; }
        if (is_cpt(i) && s[n] == '-' && s[n + 1] == 'n' && (*group = (int)strtol(s + n + 2, &end, 10)) > 0 && !*end) { *p = i; return 0; }
    }
    return -1;
}

void edit_free(Edit *e) {
    free(e->task_id);
    free(e->edit);
    cJSON_Delete(e->metrics);
    memset(e, 0, sizeof *e);
}

void edits_push(Edits *es, Edit *e) {
    es->e = xrealloc(es->e, (size_t)es->n + 1, sizeof(Edit));
    es->e[es->n++] = *e;
    memset(e, 0, sizeof *e);
}

void edits_free(Edits *es) {
    for (int i = 0; i < es->n; i++) edit_free(&es->e[i]);
    free(es->e);
    es->e = NULL;
    es->n = 0;
}

static void add_hex(cJSON *j, const char *key, uint64_t v) {
    char buf[20];
    snprintf(buf, sizeof buf, "%016llx", (unsigned long long)v);
    cJSON_AddStringToObject(j, key, buf);
}

static void add_text(cJSON *j, const char *key, const char *s) {
    if (s) cJSON_AddStringToObject(j, key, s); else cJSON_AddNullToObject(j, key);
}

static void add_metrics(cJSON *j, const Edit *e) {
    cJSON_AddItemToObject(j, "metrics", e->metrics ? cJSON_Duplicate(e->metrics, 1) : cJSON_CreateObject());
}

char *edit_to_line(const Edit *e) {
    char phase[48];
    phase_name(e->phase, e->group, phase, sizeof phase);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "phase", phase);
    cJSON_AddNumberToObject(j, "round", e->round);
    cJSON_AddNumberToObject(j, "task", e->task);
    if (e->task_id) cJSON_AddStringToObject(j, "task_id", e->task_id);
    cJSON_AddNumberToObject(j, "sample", e->sample);
    cJSON_AddNumberToObject(j, "attempt", e->attempt);
    cJSON_AddBoolToObject(j, "final", e->final);
    if (e->phase == PHASE_SELECT) {
        cJSON_AddNumberToObject(j, "from_sample", e->from_sample);
        add_text(j, "edit", e->edit);
        cJSON_AddNumberToObject(j, "reward", e->reward);
        cJSON_AddNumberToObject(j, "baseline_reward", e->baseline_reward);
        cJSON_AddBoolToObject(j, "accepted", e->accepted);
    } else if (is_cpt(e->phase)) {
        add_text(j, "edit", e->edit);
        cJSON_AddBoolToObject(j, "valid", e->valid);
        cJSON_AddBoolToObject(j, "trained", e->trained);
        cJSON_AddBoolToObject(j, "accepted", e->accepted);
        add_metrics(j, e);
        cJSON_AddNumberToObject(j, "reward", e->reward);
        cJSON_AddNumberToObject(j, "seconds_total", e->seconds_total);
    } else {
        add_hex(j, "seed", e->seed);
        add_hex(j, "prompt_hash", e->prompt_hash);
        add_text(j, "edit", e->edit);
        cJSON_AddBoolToObject(j, "valid", e->valid);
        cJSON_AddStringToObject(j, "why", e->why);
        cJSON_AddBoolToObject(j, "trained", e->trained);
        cJSON_AddNumberToObject(j, "reward", e->reward);
        cJSON_AddBoolToObject(j, "accepted", e->accepted);
        add_metrics(j, e);
        add_hex(j, "policy_hash", e->policy_hash);
        cJSON_AddNumberToObject(j, "seconds_sample", e->seconds_sample);
        cJSON_AddNumberToObject(j, "seconds_total", e->seconds_total);
    }
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

static const cJSON *member(const cJSON *j, const char *key) { return cJSON_GetObjectItemCaseSensitive(j, key); }
static double number_or(const cJSON *j, const char *key, double def) { return cJSON_IsNumber(member(j, key)) ? member(j, key)->valuedouble : def; }
static uint64_t hex_or_zero(const cJSON *j, const char *key) {
    const cJSON *v = member(j, key);
    return cJSON_IsString(v) ? strtoull(v->valuestring, NULL, 16) : 0;
}

int edit_from_line(const char *line, Edit *e, const char *where, char *err) {
    memset(e, 0, sizeof *e);
    const char *end = NULL;
    char why[80] = "", at[48];
    cJSON *j = cJSON_ParseWithOpts(line, &end, 1);
    if (!j) snprintf(why, sizeof why, " (not valid JSON, %s)", json_why(line, end, at, sizeof at));
    if (!cJSON_IsObject(j)) { cJSON_Delete(j); return errf(err, "%s is not a JSON object%s", where, why); }
    const char *ints[] = {"round", "task", "sample", "attempt"};
    int *slot[] = {&e->round, &e->task, &e->sample, &e->attempt}, rc = 0;
    const cJSON *phase = member(j, "phase"), *edit = member(j, "edit"), *id = member(j, "task_id"), *why_v = member(j, "why");
    if (!cJSON_IsString(phase)) rc = errf(err, "%s: no \"phase\" string", where);
    for (int k = 0; k < 4 && !rc; k++) {
        const cJSON *v = member(j, ints[k]);
        if (!cJSON_IsNumber(v)) rc = errf(err, "%s: no \"%s\" number", where, ints[k]);
        else if (!(v->valuedouble >= 0 && v->valuedouble <= INT_MAX && v->valuedouble == floor(v->valuedouble)))
            rc = errf(err, "%s: \"%s\" = %g, expected a whole number from 0", where, ints[k], v->valuedouble);
        else *slot[k] = v->valueint;
    }
    if (!rc && !cJSON_IsNumber(member(j, "reward"))) rc = errf(err, "%s: no \"reward\" number", where);
    if (!rc && !cJSON_IsString(edit) && !cJSON_IsNull(edit)) rc = errf(err, "%s: \"edit\" must be a string or null", where);
    if (!rc && cJSON_IsTrue(member(j, "accepted")) && !cJSON_IsString(edit)) rc = errf(err, "%s: an accepted line needs its edit", where);
    if (!rc && phase_parse(phase->valuestring, &e->phase, &e->group)) rc = errf(err, "%s: unknown phase \"%.40s\"", where, phase->valuestring);
    if (rc) { cJSON_Delete(j); return -1; }
    e->final = !cJSON_IsFalse(member(j, "final"));   // older logs have no "final": every line counts
    e->task_id = cJSON_IsString(id) ? xstrdup(id->valuestring) : NULL;   // copies of what cJSON already holds
    e->edit = cJSON_IsString(edit) ? xstrdup(edit->valuestring) : NULL;
    e->seed = hex_or_zero(j, "seed");
    e->prompt_hash = hex_or_zero(j, "prompt_hash");
    e->policy_hash = hex_or_zero(j, "policy_hash");
    e->valid = cJSON_IsTrue(member(j, "valid"));
    e->trained = cJSON_IsTrue(member(j, "trained"));
    e->accepted = cJSON_IsTrue(member(j, "accepted"));
    if (cJSON_IsString(why_v)) snprintf(e->why, sizeof e->why, "%s", why_v->valuestring);
    e->reward = member(j, "reward")->valuedouble;
    e->seconds_sample = number_or(j, "seconds_sample", 0);
    e->seconds_total = number_or(j, "seconds_total", 0);
    e->from_sample = (int)number_or(j, "from_sample", -1);
    e->baseline_reward = number_or(j, "baseline_reward", 0);
    if (cJSON_IsObject(member(j, "metrics"))) e->metrics = cJSON_DetachItemFromObjectCaseSensitive(j, "metrics");
    cJSON_Delete(j);
    return 0;
}

// ----------------------------------------------------------------------------
// The index: each (phase, group, round, task, sample) to its final line and
// its number of lines, built once when a run is opened and kept as lines are
// appended.

struct EditSlot { int first, final, attempts; };   // first: a line of this key, -1: an empty slot

static int same_key(const Edit *e, Phase phase, int group, int round, int task, int sample) {
    return e->phase == phase && e->group == group && e->round == round && e->task == task && e->sample == sample;
}

static size_t key_hash(Phase phase, int group, int round, int task, int sample) {
    uint64_t h = 0x9e3779b97f4a7c15ULL;
    const int k[5] = {phase, group, round, task, sample};
    for (int i = 0; i < 5; i++) h = (h ^ (uint32_t)k[i]) * 0xff51afd7ed558ccdULL;
    return (size_t)(h ^ h >> 31);
}

static struct EditSlot *find_slot(const Run *r, Phase phase, int group, int round, int task, int sample) {
    if (!r->index_cap) return NULL;
    for (size_t i = key_hash(phase, group, round, task, sample);; i++) {
        struct EditSlot *s = &r->index[i & (r->index_cap - 1)];
        if (s->first < 0 || same_key(r->edits[s->first], phase, group, round, task, sample)) return s;
    }
}

static void index_add(Run *r, int i) {
    const Edit *e = r->edits[i];
    struct EditSlot *s = find_slot(r, e->phase, e->group, e->round, e->task, e->sample);
    if (s->first < 0) *s = (struct EditSlot){i, -1, 0};
    s->attempts++;
    if (e->final && s->final < 0) s->final = i;
}

// Room for one more line at a load of at most one half.
static void index_reserve(Run *r) {
    if (2 * (r->n_edits + 1) <= r->index_cap) return;
    int cap = r->index_cap ? 2 * r->index_cap : 1024;
    struct EditSlot *fresh = xcalloc((size_t)cap, sizeof *fresh);
    for (int i = 0; i < cap; i++) fresh[i].first = -1;
    free(r->index);
    r->index = fresh;
    r->index_cap = cap;
    for (int i = 0; i < r->n_edits; i++) index_add(r, i);
}

// *e as the run's next line, indexed; the run owns its memory from here on.
static void keep_edit(Run *r, Edit *e) {
    Edit *kept = xmalloc(sizeof *kept);
    if (r->n_edits % 256 == 0) r->edits = xrealloc(r->edits, (size_t)r->n_edits + 256, sizeof(Edit *));
    index_reserve(r);
    *kept = *e;
    memset(e, 0, sizeof *e);
    r->edits[r->n_edits] = kept;
    index_add(r, r->n_edits++);
}

static int append_event(const Run *r, cJSON *event, char *err);
static int round_done(const Run *r, int k);

// ----------------------------------------------------------------------------
// Opening a run: one writer, over the inputs it began with, from a directory
// whose parts agree.

// The pid holding a flock on fd's file, from /proc/locks ("" when unknown).
static void lock_holder(int fd, char *buf, size_t n) {
    struct stat st;
    FILE *f = fopen("/proc/locks", "r");
    *buf = 0;
    if (!f) return;
    char line[256];
    while (fstat(fd, &st) == 0 && fgets(line, sizeof line, f)) {
        int pid;
        unsigned maj, min;
        unsigned long ino;
        if (sscanf(line, "%*d: FLOCK %*s %*s %d %x:%x:%lu", &pid, &maj, &min, &ino) == 4 && ino == st.st_ino &&
            maj == major(st.st_dev) && min == minor(st.st_dev)) { snprintf(buf, n, " (pid %d)", pid); break; }
    }
    fclose(f);
}

// RUN/lock, held with flock while the run is open: the kernel lets go when
// the process ends, however it ends, so a killed run never leaves it stale.
static int run_lock(Run *r, char *err) {
    char path[4096];
    if (run_path(path, sizeof path, r->dir, "lock", err)) return -1;
    r->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (r->lock_fd < 0) return errf(err, "%s: cannot create: %s", path, strerror(errno));
    if (flock(r->lock_fd, LOCK_EX | LOCK_NB) == 0) return 0;
    int e = errno;
    char who[48];
    lock_holder(r->lock_fd, who, sizeof who);
    close(r->lock_fd);
    r->lock_fd = -1;
    if (e == EWOULDBLOCK) return errf(err, "%s: in use by another seal process%s; wait for it to end, or stop it first", r->dir, who);
    return errf(err, "%s: cannot lock: %s", path, strerror(e));
}

// A new run goes into a new or empty directory, never over one that holds
// something else. What a creation killed before run.json leaves (lock,
// current, a temp file) is fine: run.json, written last, marks a run.
static int check_fresh(const char *dir, char *err) {
    char path[4096];
    if (run_path(path, sizeof path, dir, "run.json", err)) return -1;
    if (access(path, F_OK) == 0) return errf(err, "%s: already holds a run; use --resume to continue it or choose another --out", dir);
    DIR *d = opendir(dir);
    if (!d) return errf(err, "%s: cannot list: %s", dir, strerror(errno));
    const struct dirent *e;
    const char *other = NULL;
    while (!other && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "lock") && strcmp(e->d_name, "current") &&
            !strstr(e->d_name, ".tmp."))
            other = e->d_name;
    int rc = other ? errf(err, "%s: not empty (it holds \"%s\") and not a seal run (no run.json); choose a new or empty --out", dir, other) : 0;
    closedir(d);
    return rc;
}

static int run_create(Run *r, const cJSON *config, const cJSON *inputs, char *err) {
    char path[4096];
    if (check_fresh(r->dir, err) || run_path(path, sizeof path, r->dir, "run.json", err)) return -1;   // again, now that we hold the lock
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "config", cJSON_Duplicate(config, 1));
    if (inputs) cJSON_AddItemToObject(j, "inputs", cJSON_Duplicate(inputs, 1));
    cJSON_AddStringToObject(j, "version", SEAL_VERSION);
    cJSON_AddNumberToObject(j, "created", (double)time(NULL));
    int rc = run_set_current(r, 0, err) || write_json(path, j, err);
    cJSON_Delete(j);
    return rc ? -1 : 0;
}

// Where two configurations first differ: `model.hash (run.json: "ab12", now: "cd34")`.
static void first_difference(const cJSON *was, const cJSON *now, char *buf, size_t n) {
    if (!cJSON_IsObject(was) || !cJSON_IsObject(now)) {
        char *a = cJSON_PrintUnformatted(was), *b = cJSON_PrintUnformatted(now);
        snprintf(buf, n, " (run.json: %.60s, now: %.60s)", a ? a : "?", b ? b : "?");
        free(a);
        free(b);
        return;
    }
    const cJSON *a;
    cJSON_ArrayForEach(a, was) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(now, a->string);
        if (!b) { snprintf(buf, n, "%s (not in these flags)", a->string); return; }
        if (cJSON_Compare(a, b, 1)) continue;
        int k = snprintf(buf, n, "%s%s", a->string, cJSON_IsObject(a) && cJSON_IsObject(b) ? "." : "");
        if (k >= 0 && (size_t)k < n) first_difference(a, b, buf + k, n - k);
        return;
    }
    cJSON_ArrayForEach(a, now)
        if (!cJSON_GetObjectItemCaseSensitive(was, a->string)) { snprintf(buf, n, "%s (not in run.json)", a->string); return; }
}

// A resume goes on only over the inputs the run began with: every file in
// run.json's "inputs" must hash as it did. RUN_RESUME_CHANGED goes on anyway,
// logs what changed (event "inputs-changed") and records the new hashes.
static int check_inputs(const Run *r, cJSON *stored, const cJSON *inputs, RunMode mode, char *err) {
    if (!inputs) return 0;   // the caller reads no files (the tests' runs)
    const cJSON *was = cJSON_GetObjectItemCaseSensitive(stored, "inputs"), *f;
    if (was && !cJSON_IsObject(was)) return errf(err, "%s/run.json: \"inputs\" must be an object of file: hash", r->dir);
    if (!was && mode != RUN_RESUME_CHANGED)
        return errf(err, "%s: run.json records no input fingerprints (an older seal wrote it); pass --accept-changed-inputs to resume over the inputs as they are now", r->dir);
    cJSON *changed = cJSON_CreateArray();
    cJSON_ArrayForEach(f, was) {
        size_t len;
        char *text = read_file(f->string, &len, NULL), now[20] = "gone";
        if (text) snprintf(now, sizeof now, "%016llx", (unsigned long long)fnv1a(FNV1A_BASIS, text, len));
        free(text);
        if (cJSON_IsString(f) && !strcmp(f->valuestring, now)) continue;
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "file", f->string);
        cJSON_AddStringToObject(c, "was", cJSON_IsString(f) ? f->valuestring : "?");
        cJSON_AddStringToObject(c, "now", now);
        cJSON_AddItemToArray(changed, c);
    }
    int n = cJSON_GetArraySize(changed), rc = 0;
    if (n > 0 && mode != RUN_RESUME_CHANGED) {
        const cJSON *c = cJSON_GetArrayItem(changed, 0);
        const char *file = cJSON_GetObjectItemCaseSensitive(c, "file")->valuestring;
        int gone = !strcmp(cJSON_GetObjectItemCaseSensitive(c, "now")->valuestring, "gone");
        char more[48] = "";
        if (n > 1) snprintf(more, sizeof more, " (and %d more file%s)", n - 1, n > 2 ? "s" : "");
        rc = errf(err, "%s: cannot resume: %s %s since the run began%s; restore it, or pass --accept-changed-inputs to go on over the new contents (the log records it)",
                  r->dir, file, gone ? "is gone or unreadable" : "changed", more);
    } else if (n > 0 || !was) {   // accepted: logged, and the new hashes recorded
        char path[4096];
        cJSON *ev = cJSON_CreateObject();
        cJSON_AddStringToObject(ev, "event", "inputs-changed");
        cJSON_AddItemToObject(ev, "files", changed);
        changed = NULL;
        cJSON_DeleteItemFromObjectCaseSensitive(stored, "inputs");
        cJSON_AddItemToObject(stored, "inputs", cJSON_Duplicate(inputs, 1));
        rc = append_event(r, ev, err) || run_path(path, sizeof path, r->dir, "run.json", err) || write_json(path, stored, err) ? -1 : 0;
    }
    cJSON_Delete(changed);
    return rc;
}

// The complete rounds, 1..*last with no gap (a round is complete when its
// metrics.json is written, last of its files).
static int complete_rounds(const Run *r, int *last, char *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/rounds", r->dir);
    *last = 0;
    DIR *d = opendir(path);
    if (!d) return errno == ENOENT ? 0 : errf(err, "%s: cannot list: %s", path, strerror(errno));
    const struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        char *end;
        long k = strtol(e->d_name, &end, 10);
        if (*end || end == e->d_name || k < 1 || k > 100000 || !round_done(r, (int)k)) continue;
        n++;
        if (k > *last) *last = (int)k;
    }
    closedir(d);
    return n == *last ? 0 : errf(err, "%s: cannot resume: round %d is complete but an earlier round is not (rounds/ has a gap)", r->dir, *last);
}

// What a resume reads back must agree: "current" names round 0 or a complete
// round, a complete round whose policy is an adapter has its files, and the log
// holds self-edits of round 0 and of every complete round.
static int check_consistent(const Run *r, char *err) {
    int last, cur = run_get_current(r->dir);
    if (complete_rounds(r, &last, err)) return -1;
    if (cur < 0) return errf(err, "%s: cannot resume: \"current\" is missing or unreadable", r->dir);
    if (cur > last) return errf(err, "%s: cannot resume: \"current\" names round %d, which is not complete (no rounds/%d/metrics.json)", r->dir, cur, cur);
    for (int k = 0; k <= last && last > 0; k++) {
        int logged = 0;
        for (int i = 0; i < r->n_edits && !logged; i++) logged = r->edits[i]->round == k;
        if (!logged)
            return errf(err, "%s: cannot resume: edits.jsonl holds no self-edit of round %d, though round %d is complete: the log is missing or cut short", r->dir, k, last);
        Round m;
        char path[4200];
        snprintf(path, sizeof path, "%s/rounds/%d/adapter_model.safetensors", r->dir, k);
        if (k > 0 && run_load_round(r, k, &m, err) < 0) return -1;
        if (k > 0 && m.adapter && access(path, R_OK) != 0)
            return errf(err, "%s: cannot resume: round %d's policy adapter is missing (%s)", r->dir, k, path);
    }
    return 0;
}

// Reads the log back into r: resume skips the work it records. Reading only
// (RUN_READ), a torn last line is skipped, not cut: its writer may be at work.
static int read_log(Run *r, RunMode mode, char *err) {
    char path[4096];
    if (run_path(path, sizeof path, r->dir, "edits.jsonl", err)) return -1;
    int n, rc = 0;
    char *text = read_lines(path, &n, mode != RUN_READ, err), *p = text;
    if (!text && n == 0 && access(path, F_OK) == 0) return -1;
    for (int i = 0; i < n && !rc; i++, p += strlen(p) + 1) {   // what resume reads back must be there
        Edit e;
        char where[4200];
        snprintf(where, sizeof where, "%s: line %d", path, i + 1);
        if (!(rc = edit_from_line(p, &e, where, err))) keep_edit(r, &e);
    }
    free(text);
    return rc;
}

static int run_reopen(Run *r, const cJSON *config, const cJSON *inputs, RunMode mode, char *err) {
    char path[4096], why[ERR_MAX];
    if (run_path(path, sizeof path, r->dir, "run.json", err)) return -1;
    cJSON *stored = read_json_why(path, why);
    const char *verb = mode == RUN_READ ? "read" : "resume";
    if (!stored) return access(path, F_OK) == 0 ? errf(err, "%s: cannot %s: %s", r->dir, verb, why) : errf(err, "%s: no run.json to %s", r->dir, verb);
    const cJSON *was = cJSON_GetObjectItemCaseSensitive(stored, "config");
    int rc = 0;
    if (mode != RUN_READ && !cJSON_IsObject(was)) rc = errf(err, "%s: cannot resume: run.json holds no \"config\" object", r->dir);
    else if (mode != RUN_READ && !cJSON_Compare(was, config, 1)) {
        char where[400] = "";
        first_difference(was, config, where, sizeof where);
        rc = errf(err, "%s: a run directory from another configuration: %s", r->dir, where);
    }
    if (!rc && mode != RUN_READ) rc = check_inputs(r, stored, inputs, mode, err);
    cJSON_Delete(stored);
    return rc || read_log(r, mode, err) || (mode != RUN_READ && check_consistent(r, err)) ? -1 : 0;
}

int run_open(Run *r, const char *dir, const cJSON *config, const cJSON *inputs, RunMode mode, char *err) {
    memset(r, 0, sizeof *r);
    r->lock_fd = -1;
    if (snprintf(r->dir, sizeof r->dir, "%s", dir) >= (int)sizeof r->dir) return errf(err, "%s: path too long", dir);
    char path[4096];
    if (run_path(path, sizeof path, dir, "run.json", err)) return -1;
    if (mode == RUN_NEW && (make_dirs(dir, err) || check_fresh(dir, err))) return -1;
    if (mode != RUN_NEW && access(path, F_OK) != 0)
        return errf(err, mode == RUN_READ ? "%s: not a run directory (no run.json)" : "%s: no run.json to resume", dir);
    int rc = (mode != RUN_READ && run_lock(r, err)) ||
             (mode == RUN_NEW ? run_create(r, config, inputs, err) : run_reopen(r, config, inputs, mode, err));
    if (rc) run_close(r);   // a failed open holds nothing, the lock included
    return rc ? -1 : 0;
}

void run_close(Run *r) {
    if (r->lock_fd > 0) close(r->lock_fd);
    for (int i = 0; i < r->n_edits; i++) { edit_free(r->edits[i]); free(r->edits[i]); }
    free(r->edits);
    free(r->index);
    memset(r, 0, sizeof *r);
}

int run_append(Run *r, Edit *e, char *err) {
    char path[4096], *line = edit_to_line(e);
    int rc = run_path(path, sizeof path, r->dir, "edits.jsonl", err) || append_line(path, line, err);
    free(line);
    if (rc) { edit_free(e); return -1; }
    keep_edit(r, e);
    return 0;
}

const Edit *run_find_group(const Run *r, Phase phase, int group, int round, int task, int sample) {
    const struct EditSlot *s = find_slot(r, phase, group, round, task, sample);
    return s && s->first >= 0 && s->final >= 0 ? r->edits[s->final] : NULL;
}

const Edit *run_find(const Run *r, Phase phase, int round, int task, int sample) {
    return run_find_group(r, phase, 0, round, task, sample);
}

int run_attempts(const Run *r, Phase phase, int round, int task, int sample) {
    const struct EditSlot *s = find_slot(r, phase, 0, round, task, sample);
    return s && s->first >= 0 ? s->attempts : 0;
}

static int append_event(const Run *r, cJSON *event, char *err) {
    char path[4096];
    cJSON_AddNumberToObject(event, "time", (double)time(NULL));
    int rc = run_path(path, sizeof path, r->dir, "events.jsonl", err) || append_json(path, event, err);
    cJSON_Delete(event);
    return rc ? -1 : 0;
}

int run_log_event(const Run *r, const char *what, int round, double probe, double probe_base, char *err) {
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "event", what);
    cJSON_AddNumberToObject(ev, "round", round);
    if (!isnan(probe)) {
        cJSON_AddNumberToObject(ev, "probe", probe);
        cJSON_AddNumberToObject(ev, "probe_base", probe_base);
    }
    return append_event(r, ev, err);
}

static void round_dir(char *out, size_t n, const char *dir, int k) {
    snprintf(out, n, "%s/rounds/%d", dir, k);
}

int run_save_round(const Run *r, const Round *m, const Lora *adapter, char *err) {
    char d[4096], path[4200];
    round_dir(d, sizeof d, r->dir, m->round);
    if (adapter && lora_save(adapter, d, "policy", err)) return -1;
    if (make_dirs(d, err)) return -1;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "round", m->round);
    cJSON_AddNumberToObject(j, "train_reward", m->train_reward);
    if (m->selected >= 0) cJSON_AddNumberToObject(j, "selected", m->selected);
    cJSON_AddNumberToObject(j, "mstep_examples", m->mstep_examples);
    if (m->mstep_examples > 0) {
        cJSON_AddNumberToObject(j, "mstep_steps", m->mstep_steps);
        cJSON_AddNumberToObject(j, "mstep_first_loss", m->mstep_first_loss);
        cJSON_AddNumberToObject(j, "mstep_last_loss", m->mstep_last_loss);
        cJSON_AddNumberToObject(j, "mstep_seconds", m->mstep_seconds);
        if (m->mstep_diverged) cJSON_AddTrueToObject(j, "mstep_diverged");
    }
    cJSON_AddNumberToObject(j, "eval_success", m->eval_success);
    cJSON_AddNumberToObject(j, "probe", m->probe);
    cJSON_AddBoolToObject(j, "adapter", m->adapter);
    snprintf(path, sizeof path, "%s/metrics.json", d);
    int rc = write_json(path, j, err);   // last: its presence marks the round complete
    cJSON_Delete(j);
    return rc;
}

cJSON *run_round_metrics(const char *dir, int k) {
    char path[4200];
    snprintf(path, sizeof path, "%s/rounds/%d/metrics.json", dir, k);
    return read_json(path);
}

int run_load_round(const Run *r, int k, Round *m, char *err) {
    cJSON *j = run_round_metrics(r->dir, k);
    if (!j) return 0;
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(j, "eval_success");   // a hand-edited file may lack it
    int ok = cJSON_IsNumber(ev);
    if (ok) *m = (Round){.round = k, .eval_success = ev->valuedouble, .probe = number_or(j, "probe", NAN),
                         .train_reward = number_or(j, "train_reward", NAN), .selected = (int)number_or(j, "selected", -1),
                         .mstep_examples = (int)number_or(j, "mstep_examples", 0), .mstep_steps = (int)number_or(j, "mstep_steps", 0),
                         .adapter = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "adapter"))};
    cJSON_Delete(j);
    return ok ? 1 : errf(err, "%s/rounds/%d/metrics.json: no \"eval_success\" number", r->dir, k);
}

static int round_done(const Run *r, int k) {
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

double edit_metric(const Edit *e, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(e->metrics, key);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

void report_row_interval(const cJSON *row, char *s, size_t size) {
    const cJSON *lo = cJSON_GetObjectItemCaseSensitive(row, "ci_low"), *hi = cJSON_GetObjectItemCaseSensitive(row, "ci_high");
    if (cJSON_IsNumber(lo) && cJSON_IsNumber(hi)) snprintf(s, size, "%.1f–%.1f%%", 100 * lo->valuedouble, 100 * hi->valuedouble);
    else snprintf(s, size, "-");
}

// The table of RUN/report.json, when the run has one: each row's score with
// its 95% interval where the row has one (seal knowledge's), and its n.
static void show_report(const char *dir, FILE *out) {
    char path[4200];
    snprintf(path, sizeof path, "%s/report.json", dir);
    cJSON *report = read_json(path);   // NULL when absent
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(report, "rows"), *grader = cJSON_GetObjectItemCaseSensitive(report, "grader"), *r;
    if (cJSON_GetArraySize(rows) > 0) {
        fprintf(out, "\nreport.json%s%s%s:\n| method | ours | 95%% CI | n |\n|---|---|---|---|\n", cJSON_IsString(grader) ? " (grader: " : "",
                cJSON_IsString(grader) ? grader->valuestring : "", cJSON_IsString(grader) ? ")" : "");
        cJSON_ArrayForEach(r, rows) {
            const cJSON *method = cJSON_GetObjectItemCaseSensitive(r, "method"), *ours = cJSON_GetObjectItemCaseSensitive(r, "ours"),
                        *n = cJSON_GetObjectItemCaseSensitive(r, "n");
            if (!cJSON_IsString(method) || !cJSON_IsNumber(ours)) continue;
            char ci[48];
            report_row_interval(r, ci, sizeof ci);
            fprintf(out, "| %s | %.1f%% | %s | %d |\n", method->valuestring, 100 * ours->valuedouble, ci, cJSON_IsNumber(n) ? n->valueint : 0);
        }
    }
    cJSON_Delete(report);
}

int run_show(const char *dir, FILE *out, char *err) {
    Run r;   // read as it stands, even while its writer is at work
    if (run_open(&r, dir, NULL, NULL, RUN_READ, err)) return -1;
    fprintf(out, "run %s: %d self-edits logged, current round %d\n\n", dir, r.n_edits, run_get_current(dir));
    fprintf(out, "| round | phase | sampled | valid | trained | reward mean | accepted | s/edit | of which: sampling, training, inference |\n"
                 "|---|---|---|---|---|---|---|---|---|\n");
    const Edit *phases[64];   // a line of every phase the log holds, in order of first appearance
    int n_ph = 0;
    for (int i = 0; i < r.n_edits && n_ph < 64; i++) {
        int seen = 0;
        for (int j = 0; j < n_ph && !seen; j++) seen = phases[j]->phase == r.edits[i]->phase && phases[j]->group == r.edits[i]->group;
        if (!seen) phases[n_ph++] = r.edits[i];
    }
    for (int k = 0; k < 1000; k++) {
        int any = 0;
        for (int ph = 0; ph < n_ph; ph++) {
            int sampled = 0, valid = 0, trained = 0, accepted = 0;
            double reward = 0, t_all = 0, t_sample = 0, t_train = 0, t_infer = 0;
            for (int i = 0; i < r.n_edits; i++) {
                const Edit *e = r.edits[i];
                if (e->phase != phases[ph]->phase || e->group != phases[ph]->group || e->round != k) continue;
                sampled++;
                valid += e->valid;
                trained += e->trained;
                accepted += e->accepted;
                reward += e->reward;
                t_all += e->seconds_total;
                t_sample += e->seconds_sample;
                t_train += edit_metric(e, "seconds_train");
                t_infer += edit_metric(e, "seconds_infer");
            }
            if (!sampled) continue;
            any = 1;
            char name[48];
            phase_name(phases[ph]->phase, phases[ph]->group, name, sizeof name);
            fprintf(out, "| %d | %s | %d | %d | %d | %.3f | %d | %.2f | %.2f, %.2f, %.2f |\n", k, name, sampled, valid, trained,
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
    show_report(dir, out);
    run_close(&r);
    return 0;
}

// Round k's policy adapter loads against the run's policy model (its
// teacher, else its model, else the demo's base): shapes and finite numbers.
static int check_round_adapter(const Run *r, int k, char *err) {
    Round m;
    int done = run_load_round(r, k, &m, err);
    if (done <= 0) return done < 0 ? -1 : errf(err, "%s: round %d is not complete (no rounds/%d/metrics.json)", r->dir, k, k);
    if (!m.adapter) return 0;   // its policy is the base policy
    char path[4200];
    snprintf(path, sizeof path, "%s/run.json", r->dir);
    cJSON *run = read_json_why(path, err), *config = cJSON_GetObjectItemCaseSensitive(run, "config");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(config, "teacher");
    if (!model) model = cJSON_GetObjectItemCaseSensitive(config, "model");
    const cJSON *p = model ? cJSON_GetObjectItemCaseSensitive(model, "path") : cJSON_GetObjectItemCaseSensitive(config, "base");
    Config c;
    Lora l;
    int rc = !run ? -1 : !cJSON_IsString(p) ? errf(err, "%s: run.json names no model to check round %d's adapter against", r->dir, k)
                                             : model_config_load(&c, p->valuestring, err);
    snprintf(path, sizeof path, "%s/rounds/%d", r->dir, k);
    if (!rc && !(rc = lora_load(&l, &c, path, err))) lora_free(&l);   // lora_load refuses NaN and Inf too
    cJSON_Delete(run);
    return rc;
}

int run_rollback(const char *dir, int k, char *err) {
    Run r = {.lock_fd = -1};
    char path[4096];
    if (snprintf(r.dir, sizeof r.dir, "%s", dir) >= (int)sizeof r.dir) return errf(err, "%s: path too long", dir);
    if (path_join(path, sizeof path, dir, "run.json", err)) return -1;
    if (access(path, F_OK) != 0) return errf(err, "%s: not a run directory (no run.json)", dir);
    int from = run_get_current(dir), rc = run_lock(&r, err) || (k > 0 && check_round_adapter(&r, k, err)) || run_set_current(&r, k, err);
    if (!rc) {
        cJSON *ev = cJSON_CreateObject();
        cJSON_AddStringToObject(ev, "event", "rollback");
        cJSON_AddNumberToObject(ev, "from", from);
        cJSON_AddNumberToObject(ev, "to", k);
        rc = append_event(&r, ev, err);
    }
    run_close(&r);
    return rc ? -1 : 0;
}

uint64_t table_hash(const Table *t) {
    uint64_t h = 0x9e3779b97f4a7c15ULL;
    const uint32_t *w = (const uint32_t *)t->mem;
    for (size_t i = 0; i < t->total; i++) h = (h ^ w[i]) * 0x100000001b3ULL + (h >> 29);
    return h;
}
