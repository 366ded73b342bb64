// test/test_plot.c: `seal runs plot` (plot.c): a run written by hand through
// run_open/run_append (the lines test/fuzz/rundir.h writes), drawn; the SVG is
// well-formed XML with one <svg> root, and its labels are the run's numbers.
#include "test.h"
#include "arc.h"
#include "fuzz/rundir.h"
#include "plot.h"
#include "run.h"
#include "util.h"
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------- a small XML well-formedness check
// Elements nest and close by name, attributes are name="value" (or '), every &
// starts an entity, no raw < or > in text or values, one root, named root. NULL
// when well-formed, else why (a static buffer).
static const char *xml_check(const char *s, const char *root) {
    static char why[160];
    const char *stack[64], *p = s;
    int len[64], depth = 0, roots = 0;
#define BAD(...) return snprintf(why, sizeof why, __VA_ARGS__), why
    if (!strncmp(p, "<?xml", 5)) { if (!(p = strstr(p, "?>"))) BAD("unclosed prolog"); p += 2; }
    while (*p) {
        if (*p != '<') {   // character data: only inside the root
            if (!depth && *p != ' ' && *p != '\n' && *p != '\t' && *p != '\r') BAD("text outside the root at %ld", (long)(p - s));
            if (*p == '>') BAD("raw > in text at %ld", (long)(p - s));
            if (*p == '&') {
                const char *ents[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#"};
                int ok = 0;
                for (int i = 0; i < 6 && !ok; i++) ok = !strncmp(p, ents[i], strlen(ents[i]));
                if (!ok || !strchr(p, ';')) BAD("bare & at %ld", (long)(p - s));
            }
            p++;
            continue;
        }
        if (!strncmp(p, "<!--", 4)) { if (!(p = strstr(p + 4, "-->"))) BAD("unclosed comment"); p += 3; continue; }
        int closing = p[1] == '/';
        const char *name = p + 1 + closing;
        int n = strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:-.");
        if (!n) BAD("tag without a name at %ld", (long)(p - s));
        p = name + n;
        if (closing) {
            if (!depth || len[depth - 1] != n || strncmp(stack[depth - 1], name, n)) BAD("</%.*s> closes nothing open at %ld", n, name, (long)(p - s));
            depth--;
            p += strspn(p, " \n\t");
            if (*p++ != '>') BAD("bad closing tag </%.*s>", n, name);
            continue;
        }
        if (!depth && (roots++ || (int)strlen(root) != n || strncmp(name, root, n))) BAD("a second root, or one not <%s>, at %ld", root, (long)(name - s));
        for (;;) {   // attributes
            int ws = strspn(p, " \n\t");
            p += ws;
            if (*p == '>' || !strncmp(p, "/>", 2)) break;
            int an = strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:-.");
            if (!ws || !an || p[an] != '=' || (p[an + 1] != '"' && p[an + 1] != '\'')) BAD("bad attribute in <%.*s> at %ld", n, name, (long)(p - s));
            char q = p[an + 1];
            const char *end = strchr(p + an + 2, q);
            if (!end) BAD("unclosed attribute value at %ld", (long)(p - s));
            for (const char *c = p + an + 2; c < end; c++)
                if (*c == '<' || *c == '>' || (*c == '&' && strncmp(c, "&amp;", 5) && strncmp(c, "&lt;", 4) && strncmp(c, "&gt;", 4) &&
                                               strncmp(c, "&quot;", 6) && strncmp(c, "&apos;", 6) && strncmp(c, "&#", 2)))
                    BAD("unescaped %c in an attribute at %ld", *c, (long)(c - s));
            p = end + 1;
        }
        if (*p == '/') p += 2;   // empty element
        else {
            if (depth == 64) BAD("nested too deep");
            stack[depth] = name, len[depth++] = n, p++;
        }
    }
    if (depth) BAD("<%.*s> never closed", len[depth - 1], stack[depth - 1]);
    if (!roots) BAD("no root element");
    return NULL;
#undef BAD
}

START_TEST(xml_checker_refuses) {
    ck_assert_ptr_null(xml_check("<?xml version=\"1.0\"?>\n<svg a=\"1 &amp; 2\"><g><text>x &lt; y</text></g><rect/></svg>\n", "svg"));
    const char *bad[] = {"<svg><g></svg>", "<svg a=b/>", "<svg>&</svg>", "<svg/><svg/>", "<svg>a > b</svg>", "<g/>", "<svg a=\"<\"/>", "<svg>", "x<svg/>"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) ck_assert_msg(xml_check(bad[i], "svg") != NULL, "accepted %s", bad[i]);
}
END_TEST

// ---------------------------------------------------------------- a run by hand

static void append(Run *r, cJSON *line) {
    char *text = cJSON_PrintUnformatted(line), err[ERR_MAX];
    Edit e;
    ck_assert_msg(!edit_from_line(text, &e, "test_plot", err) && !run_append(r, &e, err), "%s", err);
    free(text);
    cJSON_Delete(line);
}

// A line of phase for (round, task, sample) with its reward; edit NULL: none.
static void line(Run *r, const char *phase, int round, int task, int sample, const char *edit, double reward, int accepted) {
    append(r, rundir_edit_line(phase, round, task, sample, 0, 1, edit, (float)reward, accepted));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static char *slurp(const char *path) {
    char err[ERR_MAX];
    size_t len;
    char *s = read_file(path, &len, err);
    ck_assert_msg(s != NULL, "%s", err);
    return s;
}

#define HAS(svg, text) ck_assert_msg(strstr(svg, text) != NULL, "the plot lacks %s", text)

// Round 0: no adaptation 0.25, the untrained policy 0.00, the oracle 0.75,
// probe 0.80. Round 1: 2 of 5 train self-edits accepted, held-out 0.4375 from
// 4 valid self-edits (basic in 3) after one invalid attempt, probe 0.60 and
// held back.
START_TEST(plot_shows_the_runs_numbers) {
    char tmp[256], dir[512], err[ERR_MAX];
    temp_dir(tmp, sizeof tmp, "plot");
    snprintf(dir, sizeof dir, "%s/run &<'\">", tmp);   // drawn in the title: escaped
    Run r;
    cJSON *config = rundir_config();
    ck_assert_msg(!run_open(&r, dir, config, NULL, RUN_NEW, err), "%s", err);
    cJSON_Delete(config);
    SelfEdit plain = {.lr = 1e-3f, .epochs = 2}, basic = {.basic = 1, .lr = 1e-3f, .epochs = 2};
    char *e0 = selfedit_to_json(&plain), *e1 = selfedit_to_json(&basic);
    const double none[4] = {0, 0, 1, 0}, oracle[4] = {1, 1, 1, 0}, eval1[4] = {0.5, 1, 0, 0.25};
    for (int t = 0; t < 4; t++) line(&r, "baseline", 0, t, 0, NULL, none[t], 0);
    for (int t = 0; t < 4; t++) line(&r, "eval", 0, t, 0, e0, 0, 0);
    for (int t = 0; t < 4; t++) line(&r, "oracle", 0, t, 0, e0, oracle[t], 0);
    line(&r, "probe", 0, 0, 0, NULL, 0.8, 0);
    for (int t = 0; t < 5; t++) line(&r, "train", 1, t, 0, e1, t < 2, t < 2);
    append(&r, rundir_edit_line("eval", 1, 0, 0, 0, 0, "{\"data_generation\": {", 0, 0));   // an invalid attempt, drawn again
    for (int t = 0; t < 4; t++) line(&r, "eval", 1, t, 0, t < 3 ? e1 : e0, eval1[t], 0);
    line(&r, "probe", 1, 0, 0, NULL, 0.6, 0);
    ck_assert_msg(!run_log_event(&r, "hold", 1, 0.6, 0.8, err), "%s", err);
    run_close(&r);
    free(e0);
    free(e1);

    ck_assert_msg(!plot_run(dir, NULL, err), "%s", err);
    char path[700];
    snprintf(path, sizeof path, "%s/plot.svg", dir);
    char *svg = slurp(path);
    const char *why = xml_check(svg, "svg");
    ck_assert_msg(why == NULL, "not well-formed: %s", why);
    HAS(svg, "xmlns=\"http://www.w3.org/2000/svg\"");
    HAS(svg, "run &amp;&lt;&apos;&quot;&gt;");                  // the title, escaped
    HAS(svg, ">0.00</text>");                                     // held-out, round 0 (untrained)
    HAS(svg, ">0.44</text>");                                     // held-out, round 1
    HAS(svg, "round 1: held-out success 0.4375 (mean of 4)");
    HAS(svg, ">no adaptation 0.25</text>");
    HAS(svg, ">oracle 0.75</text>");
    HAS(svg, ">2/5</text>");                                      // accepted in the E-step
    HAS(svg, "round 1: 2 of 5 self-edits accepted (40.0%)");
    HAS(svg, ">round 1: 4/5 valid</text>");                       // directives: every attempt counted
    HAS(svg, "round 1: basic in 75% of 4 valid self-edits");
    HAS(svg, "round 0: basic in 0% of 4 valid self-edits");
    HAS(svg, "lr 1.0e-03, 2.0 epochs");
    HAS(svg, ">base policy 0.80</text>");                         // the probe
    HAS(svg, ">0.60</text>");
    HAS(svg, ">held</text>");
    HAS(svg, ">train (5)</text>");                                // seconds: rundir_edit_line's 1 s each
    HAS(svg, ">eval (9)</text>");
    HAS(svg, ">1.00 s</text>");
    HAS(svg, "train: 0.2500 s training per self-edit");
    free(svg);

    snprintf(path, sizeof path, "%s/elsewhere.svg", tmp);   // -o
    ck_assert_msg(!plot_run(dir, path, err), "%s", err);
    svg = slurp(path);
    ck_assert_ptr_null(xml_check(svg, "svg"));
    free(svg);
    ck_assert_int_eq(plot_run(tmp, NULL, err), -1);   // not a run directory
    ck_assert_msg(strstr(err, "run.json") != NULL, "%s", err);
    nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
END_TEST

// A run whose self-edits are not few-shot JSON (knowledge's implications), one
// round 0 only: the directive panel says so, and the file is still well-formed.
START_TEST(plot_without_directives) {
    char dir[256], err[ERR_MAX];
    temp_dir(dir, sizeof dir, "plot-kn");
    Run r;
    cJSON *config = rundir_config();
    ck_assert_msg(!run_open(&r, dir, config, NULL, RUN_NEW, err), "%s", err);
    cJSON_Delete(config);
    line(&r, "baseline", 0, 0, 0, NULL, 0.5, 0);
    line(&r, "eval", 0, 0, 0, "The tower is 300 m tall & was built in 1889.", 1, 0);
    run_close(&r);
    ck_assert_msg(!plot_run(dir, NULL, err), "%s", err);
    char path[300];
    snprintf(path, sizeof path, "%s/plot.svg", dir);
    char *svg = slurp(path);
    const char *why = xml_check(svg, "svg");
    ck_assert_msg(why == NULL, "not well-formed: %s", why);
    HAS(svg, "no valid few-shot (ARC) self-edit");
    HAS(svg, "no E-step in this run");
    HAS(svg, "no probe in this run");
    HAS(svg, ">1.00</text>");
    free(svg);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
END_TEST

Suite *plot_suite(void) {
    Suite *s = suite_create("plot");
    add_case(s, "plot", 30, xml_checker_refuses, plot_shows_the_runs_numbers, plot_without_directives);
    return s;
}
