// squad.c: see squad.h.
#include "squad.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const SKIP_NAME[SKIP_KINDS] = {"malformed item", "empty context", "no questions", "question without answers",
                                           "context over the token limit"};

// ----------------------------------------------------------------------------
// Readers

typedef struct {
    const char *name;             // the file, for messages
    const SquadReadOpts *opts;
    Passage *ps;
    int n, cap;
    SquadLoad *log;
} Reader;

static void skip(Reader *r, int kind, const char *where, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void skip(Reader *r, int kind, const char *where, const char *fmt, ...) {
    SquadLoad *log = r->log;
    log->skipped[kind]++;
    if (log->n_notes == SQUAD_NOTES) return;
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(log->notes[log->n_notes++], sizeof log->notes[0], "%s: %s: %s (skipped)", r->name, where, what);
}

static int blank(const char *s) {
    for (; *s; s++)
        if (!isspace((unsigned char)*s)) return 0;
    return 1;
}

static const cJSON *list_or_null(const cJSON *j) { return cJSON_IsArray(j) ? j : NULL; }

static const char *str_member(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void push_string(char ***list, int *n, const char *s) {
    *list = xrealloc(*list, (size_t)*n + 1, sizeof(char *));
    (*list)[(*n)++] = xstrdup(s);
}

// The gold answers of a question object: "answers" (strings or {"text"}) or "answer".
static int read_answers(const cJSON *q, char ***out) {
    int n = 0;
    *out = NULL;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(q, "answers"), *a;
    cJSON_ArrayForEach(a, list_or_null(list)) {
        const char *text = cJSON_IsString(a) ? a->valuestring : str_member(a, "text");
        if (text && !blank(text)) push_string(out, &n, text);
    }
    const char *one = str_member(q, "answer");
    if (one && !blank(one)) push_string(out, &n, one);
    return n;
}

static void free_passage(Passage *p) {
    free(p->id); free(p->title); free(p->context);
    for (int i = 0; i < p->n_qs; i++) {
        free(p->qs[i].question);
        squad_free_strings(p->qs[i].answers, p->qs[i].n_answers);
    }
    free(p->qs);
    squad_free_strings(p->completions, p->n_completions);
}

// Adds the passage of one item, or skips it (or some of its questions) with a
// note. `where` names the item in messages; index is its place in the file.
static void add_item(Reader *r, const cJSON *item, const char *where, int index, const char *title, const char *default_id) {
    r->log->items++;
    if (!cJSON_IsObject(item)) { skip(r, SKIP_MALFORMED, where, "not a JSON object"); return; }
    const char *context = str_member(item, "context");
    if (!context) { skip(r, SKIP_MALFORMED, where, "no \"context\" string"); return; }
    if (blank(context)) { skip(r, SKIP_EMPTY_CONTEXT, where, "empty context"); return; }
    Passage p = {.index = index};
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "id");
    char idbuf[64];
    if (cJSON_IsNumber(id)) snprintf(idbuf, sizeof idbuf, "%.0f", id->valuedouble);
    p.id = xstrdup(cJSON_IsString(id) && *id->valuestring ? id->valuestring : cJSON_IsNumber(id) ? idbuf : default_id);
    if (!title) title = str_member(item, "title");
    p.title = xstrdup(title ? title : "");
    p.context = xstrdup(context);
    const cJSON *qs = cJSON_GetObjectItemCaseSensitive(item, "questions"), *q;
    if (!qs) qs = cJSON_GetObjectItemCaseSensitive(item, "qas");
    int k = 0;
    cJSON_ArrayForEach(q, list_or_null(qs)) {
        char qwhere[200];
        snprintf(qwhere, sizeof qwhere, "%s: question %d", where, k++);
        const char *text = str_member(q, "question");
        if (!text || blank(text)) { skip(r, SKIP_MALFORMED, qwhere, "no \"question\" string"); continue; }
        Question x = {0};
        if (!(x.n_answers = read_answers(q, &x.answers))) { skip(r, SKIP_NO_ANSWERS, qwhere, "no answers"); continue; }
        x.question = xstrdup(text);
        p.qs = xrealloc(p.qs, (size_t)p.n_qs + 1, sizeof(Question));
        p.qs[p.n_qs++] = x;
    }
    const cJSON *comps = cJSON_GetObjectItemCaseSensitive(item, "completions"), *c;
    cJSON_ArrayForEach(c, list_or_null(comps))
        if (cJSON_IsString(c)) push_string(&p.completions, &p.n_completions, c->valuestring);
    const SquadReadOpts *o = r->opts;
    int tokens = 0;
    if (o && o->tok && o->max_context_tokens > 0) {
        int *ids;
        char err[ERR_MAX];
        tokens = tok_encode(o->tok, context, strlen(context), 0, &ids, err);
        if (tokens >= 0) free(ids);
    }
    if (!p.n_qs) skip(r, SKIP_NO_QUESTIONS, where, cJSON_IsArray(qs) ? "no question with an answer" : "no \"questions\" list");
    else if (o && o->tok && o->max_context_tokens > 0 && tokens > o->max_context_tokens)
        skip(r, SKIP_TOO_LONG, where, "context of %d tokens, over the limit of %d", tokens, o->max_context_tokens);
    else {
        if (r->n == r->cap) { r->cap = r->cap ? 2 * r->cap : 64; r->ps = xrealloc(r->ps, (size_t)r->cap, sizeof(Passage)); }
        r->ps[r->n++] = p;
        r->log->kept++;
        r->log->questions += p.n_qs;
        return;
    }
    free_passage(&p);
}

// Line and column of byte `at` in text, for parse errors.
static void line_col(const char *text, const char *at, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (const char *p = text; p < at && *p; p++) {
        if (*p == '\n') { (*line)++; *col = 1; } else (*col)++;
    }
}

static int parse_error(const char *name, const char *text, const char *at, char *err) {
    int line, col;
    line_col(text, at ? at : text, &line, &col);
    return errf(err, "%s: not valid JSON (line %d, column %d); expected SQuAD v1.1, a SEAL passage list or JSON Lines", name, line, col);
}

static void read_squad_v11(Reader *r, const cJSON *data) {
    r->log->format = "squad-v1.1";
    int i = 0, index = 0;
    const cJSON *art, *par;
    cJSON_ArrayForEach(art, data) {
        const char *title = str_member(art, "title");
        const cJSON *pars = cJSON_GetObjectItemCaseSensitive(art, "paragraphs");
        char where[160], id[200];
        if (!cJSON_IsArray(pars)) {
            snprintf(where, sizeof where, "data[%d]", i);
            r->log->items++;
            skip(r, SKIP_MALFORMED, where, "no \"paragraphs\" list");
        }
        int j = 0;
        cJSON_ArrayForEach(par, list_or_null(pars)) {
            snprintf(where, sizeof where, "data[%d].paragraphs[%d]", i, j);
            snprintf(id, sizeof id, "%s/%d", title ? title : "untitled", j);
            add_item(r, par, where, index++, title ? title : "", id);
            j++;
        }
        i++;
    }
}

static void read_seal_list(Reader *r, const cJSON *list) {
    r->log->format = "seal";
    int i = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, list) {
        char where[32], id[16];
        snprintf(where, sizeof where, "[%d]", i);
        snprintf(id, sizeof id, "%d", i);   // the index: what seal_subsets.json lists
        add_item(r, item, where, i++, NULL, id);
    }
}

static void read_jsonl(Reader *r, const char *text, size_t len) {
    r->log->format = "jsonl";
    int line = 0, index = 0;
    for (const char *p = text, *end = text + len; p < end;) {
        const char *nl = memchr(p, '\n', end - p);
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        line++;
        char *s = strndup(p, n);
        p += n + 1;
        if (blank(s)) { free(s); continue; }
        char where[32], id[32];
        snprintf(where, sizeof where, "line %d", line);
        snprintf(id, sizeof id, "line-%d", line);
        cJSON *j = cJSON_Parse(s);
        free(s);
        if (!j) { r->log->items++; skip(r, SKIP_MALFORMED, where, "not valid JSON"); index++; continue; }
        add_item(r, j, where, index++, NULL, id);
        cJSON_Delete(j);
    }
}

static int some_line_is_object(const char *text, size_t len) {
    for (const char *p = text, *end = text + len; p < end;) {
        const char *nl = memchr(p, '\n', end - p);
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        cJSON *j = cJSON_ParseWithLength(p, n);
        int ok = cJSON_IsObject(j);
        cJSON_Delete(j);
        if (ok) return 1;
        p += n + 1;
    }
    return 0;
}

int squad_parse(const char *text, size_t len, const char *name, const SquadReadOpts *opts, Passage **out, int *n, SquadLoad *log, char *err) {
    memset(log, 0, sizeof *log);
    log->selected = -1;
    *out = NULL;
    *n = 0;
    Reader r = {.name = name, .opts = opts, .log = log};
    const char *p = text;
    while (p < text + len && isspace((unsigned char)*p)) p++;
    if (p == text + len) return errf(err, "%s: empty file; expected SQuAD v1.1, a SEAL passage list or JSON Lines", name);
    const char *nl = memchr(p, '\n', text + len - p), *end = NULL;
    size_t first = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
    cJSON *j = NULL;
    if (*p == '{') {   // JSON Lines, or a SQuAD v1.1 object (one line or many)
        cJSON *one = cJSON_ParseWithLength(p, first);
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(one, "data");
        if (cJSON_IsObject(one) && !cJSON_IsArray(data)) {
            cJSON_Delete(one);
            read_jsonl(&r, text, len);
        } else {
            j = one && first == (size_t)(text + len - p) ? one : (cJSON_Delete(one), cJSON_ParseWithLengthOpts(text, len, &end, 0));
            if (!j && some_line_is_object(text, len)) {   // JSON Lines whose first line is broken
                read_jsonl(&r, text, len);
                *out = r.ps;
                *n = r.n;
                return 0;
            }
            if (!j) return parse_error(name, text, end, err);
            data = cJSON_GetObjectItemCaseSensitive(j, "data");
            if (!cJSON_IsArray(data)) { cJSON_Delete(j); return errf(err, "%s: a JSON object without a \"data\" list; expected SQuAD v1.1 or JSON Lines", name); }
            read_squad_v11(&r, data);
        }
    } else if (*p == '[') {
        if (!(j = cJSON_ParseWithLengthOpts(text, len, &end, 0))) return parse_error(name, text, end, err);
        read_seal_list(&r, j);
    } else return parse_error(name, text, p, err);
    cJSON_Delete(j);
    *out = r.ps;
    *n = r.n;
    return 0;
}

int squad_read(const char *path, const SquadReadOpts *opts, Passage **out, int *n, SquadLoad *log, char *err) {
    size_t len;
    char *text = read_file(path, &len, err);
    if (!text) { memset(log, 0, sizeof *log); log->selected = -1; *out = NULL; *n = 0; return -1; }
    int rc = squad_parse(text, len, path, opts, out, n, log, err);
    free(text);
    return rc;
}

void squad_free(Passage *p, int n) {
    for (int i = 0; p && i < n; i++) free_passage(&p[i]);
    free(p);
}

void squad_keep(Passage *p, int *n, int max) {
    for (int i = max; i < *n; i++) free_passage(&p[i]);
    if (*n > max) *n = max;
}

int squad_select(Passage **ps, int *n, const char *subset_file, const char *key, SquadLoad *log, char *err) {
    char *text = read_file(subset_file, NULL, err);
    if (!text) return -1;
    cJSON *j = cJSON_Parse(text), *list = cJSON_GetObjectItemCaseSensitive(j, key), *e;
    free(text);
    if (!cJSON_IsArray(list)) { cJSON_Delete(j); return errf(err, "%s: expected a JSON object with a \"%s\" list of passage indices", subset_file, key); }
    if (!list->child) { cJSON_Delete(j); return errf(err, "%s: the \"%s\" list is empty", subset_file, key); }
    Passage *kept = xcalloc((size_t)cJSON_GetArraySize(list) + 1, sizeof(Passage));
    char *taken = xcalloc((size_t)*n + 1, 1);
    int k = 0, i = 0, rc = 0;
    cJSON_ArrayForEach(e, list) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble != floor(e->valuedouble)) {
            rc = errf(err, "%s: %s[%d]: expected a passage index (a whole number from 0)", subset_file, key, i);
            break;
        }
        if (e->valuedouble >= log->items) {   // beyond the file, not a passage it skipped: another file's subset
            rc = errf(err, "%s: %s[%d] = %.0f, but the passage file holds %d item%s (indices from 0); is it the file this subset was made for?",
                      subset_file, key, i, e->valuedouble, log->items, log->items == 1 ? "" : "s");
            break;
        }
        int idx = (int)e->valuedouble, at = -1;
        for (int m = 0; m < *n && at < 0; m++)
            if ((*ps)[m].index == idx) at = m;
        i++;
        if (at < 0 || taken[at]) continue;   // skipped when read (counted there), or listed twice
        taken[at] = 1;
        kept[k++] = (*ps)[at];
    }
    cJSON_Delete(j);
    if (rc) { free(kept); free(taken); return -1; }
    for (int m = 0; m < *n; m++)
        if (!taken[m]) free_passage(&(*ps)[m]);
    free(*ps);
    free(taken);
    *ps = kept;
    *n = log->selected = k;
    return 0;
}

void squad_load_summary(const SquadLoad *log, char *out, size_t n) {
    int len = snprintf(out, n, "%s: kept %d of %d passages (%d questions)", log->format ? log->format : "?", log->kept, log->items, log->questions);
    if (log->selected >= 0 && len < (int)n) len += snprintf(out + len, n - len, ", %d of them selected", log->selected);
    const char *sep = "; skipped:";
    for (int k = 0; k < SKIP_KINDS && len < (int)n; k++)
        if (log->skipped[k]) { len += snprintf(out + len, n - len, "%s %d %s", sep, log->skipped[k], SKIP_NAME[k]); sep = ","; }
}

// ----------------------------------------------------------------------------
// Normalisation: lower, drop punctuation, drop articles, collapse whitespace,
// on code points (invalid UTF-8 bytes pass through as U+FFFD).

static int utf8_decode(const unsigned char *s, int *len) {
    int n = s[0] < 0x80 ? 1 : s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 && s[0] < 0xf0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
    if (!n) { *len = 1; return 0xfffd; }
    int cp = n == 1 ? s[0] : s[0] & (0x7f >> n);
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) { *len = 1; return 0xfffd; }
        cp = cp << 6 | (s[i] & 0x3f);
    }
    *len = n;
    return cp;
}

static int utf8_encode(int cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xc0 | cp >> 6); out[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) { out[0] = (char)(0xe0 | cp >> 12); out[1] = (char)(0x80 | (cp >> 6 & 0x3f)); out[2] = (char)(0x80 | (cp & 0x3f)); return 3; }
    out[0] = (char)(0xf0 | cp >> 18); out[1] = (char)(0x80 | (cp >> 12 & 0x3f)); out[2] = (char)(0x80 | (cp >> 6 & 0x3f)); out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static int lower_cp(int c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c < 0xc0) return c;
    if (c <= 0xde) return c == 0xd7 ? c : c + 32;                                   // Latin-1
    if (c >= 0x100 && c <= 0x137) return c | 1;                                       // Latin Extended-A pairs
    if (c >= 0x139 && c <= 0x148) return c & 1 ? c + 1 : c;
    if (c >= 0x14a && c <= 0x177) return c | 1;
    if (c == 0x178) return 0xff;
    if (c >= 0x179 && c <= 0x17e) return c & 1 ? c + 1 : c;
    if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2) return c + 32;                        // Greek
    if (c >= 0x410 && c <= 0x42f) return c + 32;                                      // Cyrillic
    if (c >= 0x400 && c <= 0x40f) return c + 80;
    return c;
}

static int is_space_cp(int c) {   // Python's str.isspace
    return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

// Python's \w, near enough: ASCII letters and digits, and non-ASCII letters
// and numbers (everything past U+007F but spaces, Latin-1 signs and common
// punctuation and symbol blocks).
static int is_word_cp(int c) {
    if (c < 0x80) return isalnum(c) || c == '_';
    if (is_space_cp(c)) return 0;
    if (c >= 0xa0 && c <= 0xbf) return c == 0xaa || c == 0xb2 || c == 0xb3 || c == 0xb5 || c == 0xb9 || c == 0xba || c >= 0xbc;
    if (c == 0xd7 || c == 0xf7) return 0;
    if ((c >= 0x2000 && c <= 0x206f) || (c >= 0x20a0 && c <= 0x20cf) || (c >= 0x2190 && c <= 0x2bff) || (c >= 0x3000 && c <= 0x303f) ||
        (c >= 0xff01 && c <= 0xff0f) || c == 0xfffd)
        return 0;
    return 1;
}

static int is_article(const int *w, int n) {
    return (n == 1 && w[0] == 'a') || (n == 2 && w[0] == 'a' && w[1] == 'n') || (n == 3 && w[0] == 't' && w[1] == 'h' && w[2] == 'e');
}

char *squad_normalize(const char *s) {
    size_t n = strlen(s);
    int *cp = xcalloc(n + 1, sizeof(int)), m = 0;   // answers and predictions: short
    for (const unsigned char *p = (const unsigned char *)s; *p;) {   // lower, no ASCII punctuation
        int len, c = lower_cp(utf8_decode(p, &len));
        p += len;
        if (!(c < 0x80 && ispunct(c))) cp[m++] = c;
    }
    for (int i = 0; i < m;) {   // articles, as whole words, become spaces
        if (!is_word_cp(cp[i])) { i++; continue; }
        int j = i;
        while (j < m && is_word_cp(cp[j])) j++;
        if (is_article(cp + i, j - i))
            for (int k = i; k < j; k++) cp[k] = ' ';
        i = j;
    }
    char *out = xmalloc(4 * (size_t)m + 1), *o = out;
    for (int i = 0; i < m;) {   // words joined by one space
        while (i < m && is_space_cp(cp[i])) i++;
        if (i == m) break;
        if (o > out) *o++ = ' ';
        while (i < m && !is_space_cp(cp[i])) o += utf8_encode(cp[i++], o);
    }
    *o = 0;
    free(cp);
    return out;
}

// The words of a normalised text, pointing into it (spaces become NULs).
static int words(char *norm, char ***out) {
    int n = 0;
    *out = NULL;
    for (char *save, *w = strtok_r(norm, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        *out = xrealloc(*out, (size_t)n + 1, sizeof(char *));
        (*out)[n++] = w;
    }
    return n;
}

double squad_exact(const char *pred, const char *gold) {
    char *a = squad_normalize(pred), *b = squad_normalize(gold);
    double r = strcmp(a, b) == 0;
    free(a);
    free(b);
    return r;
}

double squad_f1(const char *pred, const char *gold) {
    char *a = squad_normalize(pred), *b = squad_normalize(gold), **pw, **gw;
    int np = words(a, &pw), ng = words(b, &gw), same = 0;
    char *used = xcalloc((size_t)ng + 1, 1);
    for (int i = 0; i < np; i++)   // the size of the multiset intersection
        for (int j = 0; j < ng; j++)
            if (!used[j] && !strcmp(pw[i], gw[j])) { used[j] = 1; same++; break; }
    double f1 = 0.0;
    if (same > 0) {
        double p = (double)same / np, r = (double)same / ng;
        f1 = 2 * p * r / (p + r);
    }
    free(used); free(pw); free(gw); free(a); free(b);
    return f1;
}

static double contains(const char *pred, const char *gold) {
    char *a = squad_normalize(pred), *b = squad_normalize(gold);
    size_t na = strlen(a), nb = strlen(b);
    char *pa = xmalloc(na + 3), *pb = xmalloc(nb + 3);
    sprintf(pa, " %s ", a);
    sprintf(pb, " %s ", b);
    double r = nb > 0 && strstr(pa, pb) != NULL;
    free(a); free(b); free(pa); free(pb);
    return r;
}

const char *const GRADER_NAME[GRADERS] = {"em", "f1", "em-f1", "contains", "judge"};
const char *const GRADER_ABOUT[GRADERS] = {
    "exact match of the normalised answer (SQuAD v1.1), max over gold answers",
    "token F1 of the normalised answer (SQuAD v1.1), max over gold answers",
    "mean of exact match and token F1 (SQuAD v1.1 normalisation), each max over gold answers",
    "the normalised gold answer appears as whole words in the normalised prediction, max over gold answers",
    ("a local judge model answers SEAL's grading prompt (utils.py SQUAD_GRADE_TEMPLATE, sent to GPT-4.1 in the paper) yes or no, "
     "first gold answer"),
};

// SEAL's grading prompt, word for word: knowledge-incorporation/src/utils.py
// SQUAD_GRADE_TEMPLATE (Continual-Intelligence/SEAL, MIT licence), quoted as
// data because the judge's verdicts depend on its exact wording. The three
// %s are the question, the gold answer and the stripped prediction.
static const char JUDGE_TEMPLATE[] =
    "You are a grading assistant. Your job is to determine whether a student's answer correctly answers the question based solely on the provided gold answer. "
    "Do not use any outside knowledge. The student answer can include additional information, but it must at least fully convey the gold answer and must not contradict it. "
    "Ignore style, phrasing, or extra details that do not affect correctness. Respond ONLY with 'yes' or 'no'.\n\n"
    "Question: %s\nGold answer: %s\nStudent answer: %s\n"
    "Is the student answer correct based solely on the gold answer? Respond 'yes' or 'no'.";

char *squad_judge_prompt(const char *question, const char *gold, const char *pred) {
    const char *b = pred, *e = pred + strlen(pred);
    while (b < e && isspace((unsigned char)*b)) b++;
    while (e > b && isspace((unsigned char)e[-1])) e--;
    char *s;
    char *trimmed = strndup(b, e - b);
    if (!trimmed || asprintf(&s, JUDGE_TEMPLATE, question, gold, trimmed) < 0) s = NULL;
    free(trimmed);
    return s;
}

// A whole word, case-insensitively: \bWORD\b of Python's re for ASCII words.
static int has_word(const char *text, const char *word) {
    size_t n = strlen(word);
    for (const char *p = text; *p; p++) {
        if (strncasecmp(p, word, n)) continue;
        int before = p == text || !(isalnum((unsigned char)p[-1]) || p[-1] == '_');
        int after = !(isalnum((unsigned char)p[n]) || p[n] == '_');
        if (before && after) return 1;
    }
    return 0;
}

int squad_judge_yes(const char *verdict) { return has_word(verdict, "yes") && !has_word(verdict, "no"); }

int squad_grader_parse(const char *name) {
    for (int g = 0; g < GRADERS; g++)
        if (!strcmp(name, GRADER_NAME[g])) return g;
    return -1;
}

double squad_grade(int grader, const char *pred, char *const *golds, int n_golds) {
    double em = 0, f1 = 0, in = 0;
    for (int i = 0; i < n_golds; i++) {
        double e = squad_exact(pred, golds[i]), f = grader == GRADE_EM ? 0 : squad_f1(pred, golds[i]), c = grader == GRADE_CONTAINS ? contains(pred, golds[i]) : 0;
        if (e > em) em = e;
        if (f > f1) f1 = f;
        if (c > in) in = c;
    }
    switch (grader) {
    case GRADE_EM: return em;
    case GRADE_F1: return f1;
    case GRADE_CONTAINS: return in;
    default: return (em + f1) / 2;
    }
}

char *squad_answer_text(const char *g) {
    for (;;) {   // the first line with something on it
        while (*g == ' ' || *g == '\t' || *g == '\r') g++;
        if (*g != '\n') break;
        g++;
    }
    const char *end = strchr(g, '\n');
    if (!end) end = g + strlen(g);
    if (!strncasecmp(g, "answer:", 7)) g += 7;
    while (g < end && isspace((unsigned char)*g)) g++;
    while (end > g && isspace((unsigned char)end[-1])) end--;
    return strndup(g, end - g);
}

// ----------------------------------------------------------------------------
// Prompts

const char *const STYLE_NAME[STYLES] = {"implications", "implications-long", "implications-very-long", "rewrite", "self-qa"};
const char *const STYLE_NOUN[STYLES] = {"implications", "implications", "implications", "rewrites", "question-answer pairs"};

// SEAL's base-model templates (make_squad_data.py): the request, then the
// passage as "TITLE\nCONTEXT", then the cue for the answer.
static const char *const STYLE_ASK[STYLES] = {
    "Let's read the following passage and produce a list of implications derived directly or indirectly from the content.",
    "Let's read the following passage and produce a long list of implications derived directly or indirectly from the content.",
    "Let's read the following passage and produce a very long list of implications derived directly or indirectly from the content.",
    "Let's read the following passage and rewrite it in a few different ways, each one separated by a newline.",
    "Let's read the following passage and rewrite it in a question-answer format.",
};
static const char *const STYLE_CUE[STYLES] = {"Implications:", "Implications:", "Implications:", "Rewritten passages:", "Question 1:"};

int squad_style_parse(const char *name) {
    for (int s = 0; s < STYLES; s++)
        if (!strcmp(name, STYLE_NAME[s])) return s;
    return -1;
}

char *squad_chat(ChatFormat f, const char *user) {
    ChatMsg m = {"user", user};
    return chat_render(f, &m, 1, 1);
}

static char *title_and(const Passage *p, const char *text) {
    char *s;
    if (asprintf(&s, "%s%s%s", p->title, *p->title ? "\n" : "", text) < 0) return NULL;
    return s;
}

char *squad_document(const Passage *p, const char *text) { return title_and(p, text); }

char *squad_selfedit_prompt(const Passage *p, int style, ChatFormat f) {
    char *doc = title_and(p, p->context), *user = NULL, *out = NULL;
    if (doc && asprintf(&user, "%s\n\nPassage:\n%s\n\n%s\n", STYLE_ASK[style], doc, STYLE_CUE[style]) >= 0) out = squad_chat(f, user);
    free(doc);
    free(user);
    return out;
}

// SEAL's answering template (utils.py), with its "Topic: TITLE" line.
char *squad_question_prompt(const Passage *p, const Question *q, ChatFormat f) {
    char *user, *out = NULL;
    if (asprintf(&user, "Let's answer a question directly and concisely.\nQuestion: %s%s%s%s\nAnswer:\n", *p->title ? "Topic: " : "", p->title,
                 *p->title ? "\n" : "", q->question) < 0)
        return NULL;
    out = squad_chat(f, user);
    free(user);
    return out;
}

// ----------------------------------------------------------------------------
// Self-edits into statements

static char *strip(const char *s, size_t n) {
    while (n && isspace((unsigned char)*s)) { s++; n--; }
    while (n && isspace((unsigned char)s[n - 1])) n--;
    return strndup(s, n);
}

static void push_stripped(char ***out, int *n, const char *s, size_t len) {
    char *t = strip(s, len);
    if (*t) { *out = xrealloc(*out, (size_t)*n + 1, sizeof(char *)); (*out)[(*n)++] = t; }
    else free(t);
}

// "Question" whitespace digits ":" at p (the regex Question\s+\d+:).
static int question_header(const char *p) {
    if (strncmp(p, "Question", 8)) return 0;
    p += 8;
    if (!isspace((unsigned char)*p)) return 0;
    while (isspace((unsigned char)*p)) p++;
    if (!isdigit((unsigned char)*p)) return 0;
    while (isdigit((unsigned char)*p)) p++;
    return *p == ':';
}

static int has_answer_label(const char *s) {   // Answer\s*:
    for (const char *p = strstr(s, "Answer"); p; p = strstr(p + 1, "Answer")) {
        const char *q = p + 6;
        while (isspace((unsigned char)*q)) q++;
        if (*q == ':') return 1;
    }
    return 0;
}

static int split_self_qa(const char *edit, char ***out) {
    int n = 0;
    const char *start = edit;
    for (const char *p = edit; *p; p++) {
        if (*p == '\n' && question_header(p + 1)) {
            push_stripped(out, &n, start, p - start);
            start = p + 1;
        }
    }
    push_stripped(out, &n, start, strlen(start));
    if (n && strncmp((*out)[0], "Question", 8)) {   // the prompt ended at "Question 1:"
        char *s;
        if (asprintf(&s, "Question 1: %s", (*out)[0]) >= 0) { free((*out)[0]); (*out)[0] = s; }
    }
    return n;
}

int squad_split_edit(const char *edit, char ***out) {
    *out = NULL;
    int n = 0;
    for (const char *p = edit; *p; p++)
        if (question_header(p) && has_answer_label(edit)) return split_self_qa(edit, out);
    // segments between "---", then their lines
    const char *seg = edit;
    for (;;) {
        const char *dash = strstr(seg, "---"), *end = dash ? dash : seg + strlen(seg);
        for (const char *line = seg; line < end;) {
            const char *nl = memchr(line, '\n', end - line), *le = nl ? nl : end;
            push_stripped(out, &n, line, le - line);
            line = le + 1;
        }
        if (!dash) break;
        seg = dash + 3;
    }
    if (n > 1 && !strncmp((*out)[1], "1.", 2)) {   // "Here are some implications:" before a numbered list
        free((*out)[0]);
        memmove(*out, *out + 1, (n - 1) * sizeof(char *));
        n--;
    }
    return n;
}

int squad_split_segments(const char *edit, char ***out) {
    *out = NULL;
    int n = 0;
    for (const char *seg = edit;;) {
        const char *dash = strstr(seg, "---"), *end = dash ? dash : seg + strlen(seg);
        push_stripped(out, &n, seg, end - seg);
        if (!dash) break;
        seg = dash + 3;
    }
    return n;
}

int squad_attach_completions(Passage *ps, int n, const Passage *from, int n_from) {
    int matched = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n_from; j++) {
            if (strcmp(ps[i].context, from[j].context) || strcmp(ps[i].title, from[j].title) || !from[j].n_completions) continue;
            squad_free_strings(ps[i].completions, ps[i].n_completions);
            ps[i].completions = xcalloc((size_t)from[j].n_completions, sizeof(char *));
            for (int c = 0; c < from[j].n_completions; c++) ps[i].completions[c] = xstrdup(from[j].completions[c]);
            ps[i].n_completions = from[j].n_completions;
            matched++;
            break;
        }
    return matched;
}

void squad_free_strings(char **s, int n) {
    for (int i = 0; s && i < n; i++) free(s[i]);
    free(s);
}
