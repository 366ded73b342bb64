// plot.c: `seal runs plot RUN`: the run as one SVG (plot.h). collect() reads
// the log as run_show does; draw() lays out five panels, each a few SVG
// primitives written with fprintf, every piece of text escaped for XML.
#include "plot.h"
#include "arc.h"
#include "run.h"
#include "util.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROUND 100             // rounds drawn: 0..MAX_ROUND
#define MAX_PHASES 24
#define W 900.0
enum { N_DIRECTIVES = 5 };
static const char *const DIRECTIVE[N_DIRECTIVES] = {"basic", "size", "chain", "repeat", "output tokens only"};
static const char *const PALETTE[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1"};
static const char *const TIME_COLOR[] = {"#4e79a7", "#f28e2b", "#59a14f", "#bab0ac"};

typedef struct { double sum; int n; } Mean;
static void add(Mean *m, double v) { m->sum += v; m->n++; }
static double mean_of(Mean m) { return m.n ? m.sum / m.n : NAN; }

typedef struct {
    int last;                                     // the highest round in the log
    Mean baseline, oracle, eval[MAX_ROUND + 1], probe[MAX_ROUND + 1];
    int sampled[MAX_ROUND + 1], accepted[MAX_ROUND + 1];   // the E-step's self-edits
    int held[MAX_ROUND + 1];                      // not promoted (events.jsonl "hold")
    int edits[MAX_ROUND + 1], valid[MAX_ROUND + 1];        // held-out self-edits, as demo.c counts them
    double on[MAX_ROUND + 1][N_DIRECTIVES], log_lr[MAX_ROUND + 1], epochs[MAX_ROUND + 1];
    int n_phases;
    struct { char name[48]; int n; double t[4]; } ph[MAX_PHASES];   // sampling, training, inference, all
} Stats;

static void collect(const Run *r, Stats *s) {
    for (int i = 0; i < r->n_edits; i++) {
        const Edit *e = r->edits[i];
        const int k = e->round;
        if (k < 0 || k > MAX_ROUND) continue;
        char name[48];
        phase_name(e->phase, e->group, name, sizeof name);
        int p = 0;
        while (p < s->n_phases && strcmp(s->ph[p].name, name)) p++;
        if (p == s->n_phases && p < MAX_PHASES) snprintf(s->ph[s->n_phases++].name, sizeof s->ph[p].name, "%s", name);
        if (p < s->n_phases) {   // seconds: every attempt, as run_show counts them; untrained and unsplit: all inference
            double t[4] = {e->seconds_sample, edit_metric(e, "seconds_train"), edit_metric(e, "seconds_infer"), e->seconds_total};
            if (!e->trained && !cJSON_GetObjectItemCaseSensitive(e->metrics, "seconds_infer")) t[2] = fmax(0, t[3] - t[0] - t[1]);
            s->ph[p].n++;
            for (int j = 0; j < 4; j++) s->ph[p].t[j] += t[j];
        }
        if (e->phase == PHASE_EVAL) {   // directives: every attempt, as demo.c's table (only a valid one is final)
            SelfEdit se;
            char why[ERR_MAX];
            s->edits[k]++;
            if (e->edit && !selfedit_parse(e->edit, &se, why)) {
                const int on[N_DIRECTIVES] = {se.basic, se.size, se.chain, se.repeat, se.output_only};
                s->valid[k]++;
                for (int j = 0; j < N_DIRECTIVES; j++) s->on[k][j] += on[j];
                s->log_lr[k] += log10(se.lr);
                s->epochs[k] += se.epochs;
            }
        }
        if (!e->final) continue;   // scores: the attempt that counts
        if (k > s->last) s->last = k;
        if (e->phase == PHASE_BASELINE) add(&s->baseline, e->reward);
        if (e->phase == PHASE_ORACLE) add(&s->oracle, e->reward);
        if (e->phase == PHASE_EVAL) add(&s->eval[k], e->reward);
        if (e->phase == PHASE_PROBE) add(&s->probe[k], e->reward);
        if (e->phase == PHASE_TRAIN) s->sampled[k]++, s->accepted[k] += e->accepted;
    }
}

// The rounds whose policy the retention guard held back; a torn or missing line is skipped.
static void read_holds(const char *dir, Stats *s) {
    char path[4200], err[ERR_MAX];
    size_t len;
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    char *text = read_file(path, &len, err);
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0; else next = line + strlen(line);
        cJSON *ev = cJSON_Parse(line);
        const cJSON *what = cJSON_GetObjectItemCaseSensitive(ev, "event"), *k = cJSON_GetObjectItemCaseSensitive(ev, "round");
        if (cJSON_IsString(what) && !strcmp(what->valuestring, "hold") && cJSON_IsNumber(k) && k->valuedouble >= 0 && k->valuedouble <= MAX_ROUND)
            s->held[(int)k->valuedouble] = 1;
        cJSON_Delete(ev);
    }
    free(text);
}

// ---------------------------------------------------------------- SVG pieces

// Text as XML character data or an attribute value: valid UTF-8, & < > " ' escaped, control characters dropped.
static void put_escaped(FILE *f, const char *s) {
    char *clean = utf8_sanitize(s);
    for (const char *c = clean; *c; c++) {
        if (*c == '&') fputs("&amp;", f);
        else if (*c == '<') fputs("&lt;", f);
        else if (*c == '>') fputs("&gt;", f);
        else if (*c == '"') fputs("&quot;", f);
        else if (*c == '\'') fputs("&apos;", f);
        else if ((unsigned char)*c >= 0x20 || *c == '\n' || *c == '\t') fputc(*c, f);
    }
    free(clean);
}

__attribute__((format(printf, 3, 0))) static void put_tag(FILE *f, const char *tag, const char *fmt, va_list ap) {
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    fprintf(f, "<%s>", tag);
    put_escaped(f, buf);
    fprintf(f, "</%s>", tag);
}

// <text x y ATTRS>...</text>
__attribute__((format(printf, 5, 6))) static void text(FILE *f, double x, double y, const char *attrs, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" %s>", x, y, attrs);
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    put_escaped(f, buf);
    fputs("</text>\n", f);
    va_end(ap);
}

// A mark's tooltip: <title>...</title>, the exact numbers behind it.
__attribute__((format(printf, 2, 3))) static void tip(FILE *f, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    put_tag(f, "title", fmt, ap);
    va_end(ap);
}

typedef struct { double x, y, w, h; } Box;   // a panel's plot area
static double ymap(Box b, double v, double max) { return b.y + b.h * (1 - v / max); }
static double xcat(Box b, int i, int n) { return b.x + b.w * (i + 0.5) / n; }

// A panel's frame and title; the plot area inside, `left` and `bottom` kept for labels.
static Box panel(FILE *f, double x, double y, double w, double h, double left, double bottom, const char *title) {
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#fff\" stroke=\"#ccc\"/>\n", x, y, w, h);
    text(f, x + 10, y + 18, "class=\"title\"", "%s", title);
    return (Box){x + left, y + 34, w - left - 16, h - 34 - bottom};
}

static void note(FILE *f, Box b, const char *msg) { text(f, b.x + b.w / 2, b.y + b.h / 2, "class=\"note\" text-anchor=\"middle\"", "%s", msg); }

// Grid lines and labels from 0 to max (fmt gets v * scale), and the axes.
static void y_axis(FILE *f, Box b, double max, int ticks, const char *fmt, double scale) {
    for (int i = 0; i <= ticks; i++) {
        double y = ymap(b, max * i / ticks, max);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>\n", b.x, y, b.x + b.w, y);
        text(f, b.x - 5, y + 3.5, "class=\"tick\" text-anchor=\"end\"", fmt, max * i / ticks * scale);
    }
    fprintf(f, "<path d=\"M%.1f %.1fV%.1fH%.1f\" class=\"axis\"/>\n", b.x, b.y, b.y + b.h, b.x + b.w);
}

static void x_rounds(FILE *f, Box b, int first, int n, const char *caption) {
    for (int i = 0; i < n; i++) text(f, xcat(b, i, n), b.y + b.h + 13, "class=\"tick\" text-anchor=\"middle\"", "%d", first + i);
    text(f, b.x + b.w / 2, b.y + b.h + 27, "class=\"tick\" text-anchor=\"middle\"", "%s", caption);
}

// A key above the plot: a short line (dashed or not) and its label; *x moves past it.
static void key(FILE *f, double *x, double y, const char *color, int dashed, const char *label) {
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", *x, y - 3.5, *x + 18, y - 3.5,
            color, dashed ? " stroke-dasharray=\"5 3\"" : "");
    char attrs[64];
    snprintf(attrs, sizeof attrs, "class=\"label\" style=\"fill:%s\"", color);
    text(f, *x + 22, y, attrs, "%s", label);
    *x += 34 + 5.6 * strlen(label);
}

// A dashed horizontal line at score v, named with its value in the key.
static void ref_line(FILE *f, Box b, Mean m, const char *color, const char *label, double *kx) {
    if (!m.n) return;
    double v = mean_of(m), y = ymap(b, v, 1);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\">",
            b.x, y, b.x + b.w, y, color);
    tip(f, "%s: %.4f (mean of %d)", label, v, m.n);
    fprintf(f, "</line>\n");
    char name[96];
    snprintf(name, sizeof name, "%s %.2f", label, v);
    key(f, kx, b.y - 10, color, 1, name);
}

// A score per round: a line through its points, each labelled "%.2f" (held: a red ring and "held").
static void series(FILE *f, Box b, const Mean *m, const int *held, int n, const char *color, const char *what) {
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
    for (int k = 0; k < n; k++)
        if (m[k].n) fprintf(f, "%.1f,%.1f ", xcat(b, k, n), ymap(b, mean_of(m[k]), 1));
    fputs("\"/>\n", f);
    for (int k = 0; k < n; k++) {
        if (!m[k].n) continue;
        double x = xcat(b, k, n), y = ymap(b, mean_of(m[k]), 1);
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"%s>", x, y, color, held && held[k] ? " stroke=\"#d62728\" stroke-width=\"3\"" : "");
        tip(f, "round %d: %s %.4f (mean of %d)%s", k, what, mean_of(m[k]), m[k].n, held && held[k] ? ", not promoted" : "");
        fputs("</circle>\n", f);
        text(f, x, y - 9, "class=\"label\" text-anchor=\"middle\"", "%.2f", mean_of(m[k]));
        if (held && held[k]) text(f, x, y + 16, "class=\"label\" text-anchor=\"middle\" style=\"fill:#d62728\"", "held");
    }
}

static void legend(FILE *f, double x, double y, const char *const *names, const char *const *colors, int n) {
    for (int i = 0; i < n; i++) {
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"9\" height=\"9\" fill=\"%s\"/>\n", x, y - 8, colors[i]);
        text(f, x + 12, y, "class=\"tick\"", "%s", names[i]);
        x += 22 + 5.6 * strlen(names[i]);
    }
}

static double nice_step(double max, int ticks) {
    double raw = max / ticks, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

// ---------------------------------------------------------------- the panels

static void held_out_panel(FILE *f, const Stats *s, double x, double y) {
    Box b = panel(f, x, y, 435, 230, 42, 34, "Held-out success per round");
    double kx = b.x;
    b.y += 8, b.h -= 8;   // room for the key
    y_axis(f, b, 1, 4, "%.2f", 1);
    key(f, &kx, b.y - 10, "#1f77b4", 0, "the policy's self-edits");
    ref_line(f, b, s->baseline, "#7f7f7f", "no adaptation", &kx);
    ref_line(f, b, s->oracle, "#2ca02c", "oracle", &kx);
    series(f, b, s->eval, NULL, s->last + 1, "#1f77b4", "held-out success");
    x_rounds(f, b, 0, s->last + 1, "round (0: the untrained policy's self-edits)");
}

static void accepted_panel(FILE *f, const Stats *s, double x, double y) {
    Box b = panel(f, x, y, 435, 230, 42, 34, "Self-edits accepted in the E-step (reward passed the filter)");
    y_axis(f, b, 1, 4, "%.0f%%", 100);
    const int n = s->last;
    if (n < 1) { note(f, b, "no E-step in this run"); return; }
    const double bw = fmin(48, 0.6 * b.w / n);
    for (int k = 1; k <= n; k++) {
        double share = s->sampled[k] ? (double)s->accepted[k] / s->sampled[k] : 0, cx = xcat(b, k - 1, n), top = ymap(b, share, 1);
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#ff7f0e\">", cx - bw / 2, top, bw, b.y + b.h - top);
        tip(f, "round %d: %d of %d self-edits accepted (%.1f%%)", k, s->accepted[k], s->sampled[k], 100 * share);
        fputs("</rect>\n", f);
        text(f, cx, top - 4, "class=\"label\" text-anchor=\"middle\"", "%d/%d", s->accepted[k], s->sampled[k]);
    }
    x_rounds(f, b, 1, n, "round");
}

static void directives_panel(FILE *f, const Stats *s, double x, double y) {
    Box b = panel(f, x, y, 435, 230, 42, 46, "Directives in valid held-out self-edits (% using each)");
    const int n = s->last + 1;
    int any = 0;
    for (int k = 0; k < n; k++) any += s->valid[k];
    if (any) legend(f, b.x, b.y - 2, DIRECTIVE, PALETTE, N_DIRECTIVES);
    b.y += 8, b.h -= 8;
    y_axis(f, b, 1, 4, "%.0f%%", 100);
    if (!any) { note(f, b, "no valid few-shot (ARC) self-edit to read directives from"); return; }
    const double gw = b.w / n, bw = 0.8 * gw / N_DIRECTIVES;
    for (int k = 0; k < n; k++) {
        double cx = xcat(b, k, n);
        text(f, cx, b.y + b.h + 13, "class=\"tick\" text-anchor=\"middle\"", "round %d: %d/%d valid", k, s->valid[k], s->edits[k]);
        if (!s->valid[k]) continue;
        if (gw > 80) text(f, cx, b.y + b.h + 25, "class=\"tick\" text-anchor=\"middle\"", "lr %.1e, %.1f epochs", pow(10, s->log_lr[k] / s->valid[k]), s->epochs[k] / s->valid[k]);
        for (int j = 0; j < N_DIRECTIVES; j++) {
            double share = s->on[k][j] / s->valid[k], top = ymap(b, share, 1);
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\">", cx - 0.4 * gw + j * bw, top, bw - 1, b.y + b.h - top, PALETTE[j]);
            tip(f, "round %d: %s in %.0f%% of %d valid self-edits", k, DIRECTIVE[j], 100 * share, s->valid[k]);
            fputs("</rect>\n", f);
            if (bw >= 13) text(f, cx - 0.4 * gw + (j + 0.5) * bw, top - 3, "class=\"small\" text-anchor=\"middle\"", "%.0f", 100 * share);
        }
    }
    text(f, b.x + b.w / 2, b.y + b.h + 38, "class=\"tick\" text-anchor=\"middle\"", "learning rate: geometric mean; epochs: mean");
}

static void probe_panel(FILE *f, const Stats *s, double x, double y) {
    Box b = panel(f, x, y, 435, 230, 42, 34, "Retention probe: the policy answers itself");
    double kx = b.x;
    b.y += 8, b.h -= 8;
    y_axis(f, b, 1, 4, "%.2f", 1);
    if (!s->probe[0].n) { note(f, b, "no probe in this run"); return; }
    key(f, &kx, b.y - 10, "#9467bd", 0, "the round's policy");
    ref_line(f, b, s->probe[0], "#7f7f7f", "base policy", &kx);
    series(f, b, s->probe, s->held, s->last + 1, "#9467bd", "probe score");
    x_rounds(f, b, 0, s->last + 1, "round (0: the base policy; held: not promoted)");
}

static void seconds_panel(FILE *f, const Stats *s, double y, double h) {
    static const char *const PART[] = {"sampling", "training", "inference", "other"};
    Box b = panel(f, 10, y, W - 20, h, 130, 34, "Mean seconds per self-edit by phase: sampling it, training on it, inference (every attempt)");
    legend(f, b.x, b.y - 2, PART, TIME_COLOR, 4);
    b.y += 8, b.h -= 8, b.w -= 50;   // room for the totals
    double max = 0;
    for (int p = 0; p < s->n_phases; p++) max = fmax(max, s->ph[p].t[3] / s->ph[p].n);
    if (!s->n_phases) { note(f, b, "no self-edit logged"); return; }
    const double step = nice_step(max > 0 ? max : 1, 6), top = step * ceil((max > 0 ? max : 1) / step - 1e-9), row = b.h / s->n_phases;
    for (int i = 0; i * step <= top * (1 + 1e-9); i++) {
        double v = i * step, x = b.x + b.w * v / top;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>\n", x, b.y, x, b.y + b.h);
        text(f, x, b.y + b.h + 13, "class=\"tick\" text-anchor=\"middle\"", "%g", v);
    }
    text(f, b.x + b.w / 2, b.y + b.h + 27, "class=\"tick\" text-anchor=\"middle\"", "seconds");
    for (int p = 0; p < s->n_phases; p++) {
        const double n = s->ph[p].n, *t = s->ph[p].t, cy = b.y + (p + 0.5) * row, bh = fmin(16, 0.7 * row);
        const double part[4] = {t[0] / n, t[1] / n, t[2] / n, fmax(0, t[3] - t[0] - t[1] - t[2]) / n};
        text(f, b.x - 6, cy + 4, "class=\"tick\" text-anchor=\"end\"", "%s (%d)", s->ph[p].name, s->ph[p].n);
        double x = b.x;
        for (int j = 0; j < 4; j++) {
            double w = b.w * part[j] / top;
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\">", x, cy - bh / 2, w, bh, TIME_COLOR[j]);
            tip(f, "%s: %.4f s %s per self-edit", s->ph[p].name, part[j], PART[j]);
            fputs("</rect>\n", f);
            x += w;
        }
        text(f, x + 4, cy + 4, "class=\"label\"", "%.2f s", t[3] / n);
    }
    fprintf(f, "<path d=\"M%.1f %.1fV%.1f\" class=\"axis\"/>\n", b.x, b.y, b.y + b.h);
}

static void draw(FILE *f, const char *dir, const cJSON *config, int n_edits, const Stats *s) {
    const double h5 = 90 + 22 * (s->n_phases ? s->n_phases : 1), H = 542 + h5;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "viewBox=\"0 0 %.0f %.0f\">\n", W, H, W, H);
    tip(f, "SEAL run %s", dir);
    fputs("\n<style>text{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;font-size:10px;fill:#222} .title{font-size:12.5px;font-weight:bold} "
          ".tick{fill:#555} .small{font-size:8px;fill:#555} .note{font-size:11px;fill:#888;font-style:italic} .grid{stroke:#eee} .axis{stroke:#999;fill:none}</style>\n", f);
    fprintf(f, "<rect width=\"%.0f\" height=\"%.0f\" fill=\"#f7f7f7\"/>\n", W, H);
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(config, "command"), *scale = cJSON_GetObjectItemCaseSensitive(config, "scale"),
                *seed = cJSON_GetObjectItemCaseSensitive(config, "seed");
    text(f, 10, 24, "style=\"font-size:16px;font-weight:bold\"", "SEAL run %s", dir);
    text(f, 10, 42, "class=\"tick\" style=\"font-size:11px\"", "%s%s%s%s, seed %.0f: %d round%s, %d self-edit lines logged",
         cJSON_IsString(cmd) ? "seal " : "", cJSON_IsString(cmd) ? cmd->valuestring : "a run", cJSON_IsString(scale) ? " " : "",
         cJSON_IsString(scale) ? scale->valuestring : "", cJSON_IsNumber(seed) ? seed->valuedouble : 0, s->last, s->last == 1 ? "" : "s", n_edits);
    held_out_panel(f, s, 10, 54);
    accepted_panel(f, s, 455, 54);
    directives_panel(f, s, 10, 294);
    probe_panel(f, s, 455, 294);
    seconds_panel(f, s, 534, h5);
    fputs("</svg>\n", f);
}

int plot_run(const char *dir, const char *out, char *err) {
    Run r;
    if (run_open(&r, dir, NULL, NULL, RUN_READ, err)) return -1;
    Stats *s = xcalloc(1, sizeof *s);
    collect(&r, s);
    const int n_edits = r.n_edits;
    run_close(&r);
    read_holds(dir, s);
    char path[4200];
    size_t len;
    snprintf(path, sizeof path, "%s/run.json", dir);
    char *json = read_file(path, &len, err);
    cJSON *run = json ? cJSON_Parse(json) : NULL;
    free(json);
    char *svg = NULL;
    FILE *f = open_memstream(&svg, &len);
    if (!f) { free(s); cJSON_Delete(run); return errf(err, "out of memory drawing %s", dir); }
    draw(f, dir, cJSON_GetObjectItemCaseSensitive(run, "config"), n_edits, s);
    fclose(f);
    cJSON_Delete(run);
    free(s);
    if (!out && path_join(path, sizeof path, dir, "plot.svg", err)) { free(svg); return -1; }
    int rc = write_file_atomic(out ? out : path, svg, len, err);
    free(svg);
    return rc;
}
