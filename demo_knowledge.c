// demo_knowledge.c: see demo_knowledge.h. Three phases, as in `seal demo`:
//   1. the world: fictional places, dealt into pretraining, SEAL-training and
//      held-out splits, written as JSON Lines passages into the run directory;
//   2. the base model (cached): a tokenizer trained on the world's text and a
//      tiny Llama pretrained in one mixed stage: the pretraining places'
//      passages and restatements as documents, closed-book questions about
//      some of them, and on skill places of their own questions with the
//      passage in the prompt and implications of mixed quality after the
//      self-edit prompt;
//   3. SEAL: two reference rows (the oracle self-edit, the passage in the
//      prompt), then the knowledge domain and ReST^EM of a real run, on the
//      held-out places the model has never seen; the table with 95% bootstrap
//      intervals over passages.
#include "demo_knowledge.h"
#include "demo_tasks.h"
#include "knowledge.h"
#include "ranks.h"
#include "train.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct {
    const char *name;
    int n_pretrain, n_train, n_eval, n_merges;
    int dim, layers, heads, kv_heads, hidden;
    int pre_epochs, pre_batch;
    float pre_lr;                             // 1e-2 stalled at a loss of 1-2 for one seed in three at 96 wide (300 warmup steps: two)
    int n_bios;                               // restatements of each pretraining place, in random phrasings
    float qa_share;                           // pretraining places with closed-book questions
    int n_skill;                              // skill places, each with a self-edit example and in-context questions
    int skill_qs;                             // in-context questions a skill place, each about another of its facts
    int rounds, samples, eval_samples, max_edit_tokens;
    int lora_r, epochs;
    float lr;
    int m_epochs;
    float m_lr;
} Scale;

static const Scale FULL = {"full", 150, 32, 48, 1200, 96, 4, 4, 2, 256, 10, 8, 5e-3f, 3, 0.6f, 1200, 3, 2, 6, 2, 96, 32, 20, 5e-3f, 5, 2e-3f};
static const Scale QUICK = {"quick", 30, 2, 2, 150, 32, 1, 2, 1, 64, 1, 4, 2e-3f, 1, 0.5f, 20, 1, 1, 2, 1, 24, 4, 2, 1e-3f, 1, 1e-3f};

// ----------------------------------------------------------------------------
// The world

// A place name is two syllables. All pairs are shuffled once per seed and
// dealt to the splits in blocks, so no name is in two splits or twice in one,
// and nothing about a pair says its split: with the split a function of the
// pair (it was (a + b) mod 6), the model learnt which second syllables follow
// each first one in pretraining names and wrote those instead of copying a
// held-out name. Every syllable is in pretraining names, first and second.
// The skill places take all the pairs left (1,216 for 1,200 places), so that
// a name in a prompt is almost always new: with 192 names for 1,200 skill
// places the model learnt those names rather than to copy one, and wrote a
// held-out place's implications under a name it knew.
static const char *const SYL[] = {"zor", "kel", "vam", "dru", "pel", "sor", "tam", "rin", "gol", "fen", "bra", "mok", "lun", "hes",
                                  "nor", "cal", "qua", "yev", "jor", "wix", "xan", "ulm", "ivo", "oph", "bex", "dak", "fim", "gar", "hul",
                                  "jat", "kip", "lom", "mur", "nex", "pav", "ros", "sib", "tov", "vor", "zed"};
enum { N_SYL = sizeof SYL / sizeof SYL[0], N_PAIRS = N_SYL * N_SYL };
enum { DK_SKILL = DEMO_N_SPLITS, DK_SPLITS };
// each split's block of the shuffled pairs: held-out first, then SEAL-training, pretraining and skill places
static const int PAIR_FROM[DK_SPLITS] = {192, 96, 0, 384}, PAIR_N[DK_SPLITS] = {192, 96, 96, N_PAIRS - 384};
static const char *const KINDS[] = {"town", "port", "village", "fortress"};
static const char *const FOUNDERS[] = {"Ada", "Bram", "Cora", "Dov", "Esk", "Fia", "Gus", "Hal", "Ivy", "Jon", "Kit", "Lev",
                                       "Mae", "Ned", "Ola", "Pim", "Quin", "Rho", "Sol", "Tam", "Uma", "Vic", "Wren", "Yul"};
static const char *const GOODS[] = {"salt", "copper", "wool", "amber", "glass", "figs", "tin", "silk", "rope", "honey", "nails",
                                    "dye", "pots", "timber", "cheese", "oil", "paper", "horses", "lace", "spices", "marble", "linen",
                                    "barley", "furs"};
#define COUNT(a) (int)(sizeof a / sizeof a[0])

// Phrasings of each fact. Passages use the first two, which put the answer
// before the place: a model trained on "Ada founded Velmor." learns what
// follows "Ada founded", not who founded Velmor (the reversal curse). The
// last two follow the question: "Velmor was founded by Ada." and the
// question answered, "Who founded Velmor? Ada.", the restatements that make a
// fact recallable, which a good self-edit writes. No phrasing starts with the
// export: capitalised ("Salt comes from Velmor.", [ S][alt]) it is another
// token than in the answer ([ ][salt]), and up to v9 no row but the oracle's
// could answer an export.
static const char *const FORMS[DK_FACTS][4] = {
    {"%F founded %N.", "%F was the founder of %N.", "%N was founded by %F.", "Who founded %N? %F."},
    {"In %Y, %N was built.", "%Y saw the founding of %N.", "%N was founded in %Y.", "In what year was %N founded? %Y."},
    {"Ships carry %E from %N.", "Traders buy %E in %N.", "The main export of %N is %E.", "What is the main export of %N? %E."},
};
static const char *const QUESTIONS[DK_FACTS] = {"Who founded %N?", "In what year was %N founded?", "What is the main export of %N?"};

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdULL;
}

// Switches for the v11 experiments (docs/KNOWLEDGE.md) and DK_ONE (two_places,
// below), read once from the environment; none set, everything is v10d's.
// Those that change the base are part of its cache name. DK_ALL=1: every
// self-edit example restates all three facts; DK_LISTS=n: n self-edit examples a skill place; DK_INC_LO=x: a
// list's thoroughness drawn from [x, 1]; DK_NAMEFIRST=1: every line of an
// example in a question-like phrasing, the name first; DK_EXPORTFORMS=1: the
// passage's export phrasings share the question's word "export". For the SEAL
// phase (in the run's config): DK_NTRAIN SEAL-training places, DK_PER_ROUND
// of them a round (each round the next, as SEAL's), DK_EPOCHS the
// inner loop's epochs, DK_TEMP the self-edit temperature, DK_MLR,
// DK_MEPOCHS and DK_MRANK the M-step's lr, epochs and LoRA rank.
#define INC_LO 0.4f   // v10d: a list's thoroughness drawn from [0.4, 1]
typedef struct { int one, all, lists, namefirst, exportforms, n_train, per_round, epochs, m_epochs, m_rank; float inc_lo, temperature, m_lr; } Switches;

// The variable's value in [lo, hi], else v (a value that is not, with a warning).
static float env_or(const char *name, float v, float lo, float hi) {
    const char *s = getenv(name);
    if (!s || !*s) return v;
    char *end;
    const double x = strtod(s, &end);
    if (*end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "seal demo knowledge: ignoring %s=%s (not a number in %g..%g)\n", name, s, lo, hi);
        return v;
    }
    return (float)x;
}

// Read on first use (the world's texts are made on one thread); -1: unset.
static const Switches *switches(void) {
    static Switches sw;
    static int read;
    if (!read) {
        const char *one = getenv("DK_ONE");   // any value but "0"
        sw = (Switches){.one = one && *one && strcmp(one, "0"),.all = env_or("DK_ALL", 0, 0, 1) > 0, .lists = (int)env_or("DK_LISTS", 1, 0, 8), .namefirst = env_or("DK_NAMEFIRST", 0, 0, 1) > 0,
                        .exportforms = env_or("DK_EXPORTFORMS", 0, 0, 1) > 0, .n_train = (int)env_or("DK_NTRAIN", -1, 1, 96),
                        .per_round = (int)env_or("DK_PER_ROUND", -1, 1, 96),
                        .epochs = (int)env_or("DK_EPOCHS", -1, 1, 1000), .m_epochs = (int)env_or("DK_MEPOCHS", -1, 1, 1000),
                        .m_rank = (int)env_or("DK_MRANK", -1, 1, 96),
                        .inc_lo = env_or("DK_INC_LO", INC_LO, 0, 1), .temperature = env_or("DK_TEMP", -1, 0, 100), .m_lr = env_or("DK_MLR", -1, 1e-6f, 1)};
        read = 1;
    }
    return &sw;
}

// Two places a passage (the default; DK_ONE=1: one). A passage of one place
// is recalled after training on it alone (73-78% at v9, 9 points under the
// oracle): whatever it teaches ("the founder is Ada") answers the question
// without binding the value to the name, so no self-edit can add much. With a
// neighbour's facts in the same passage, answer first, the passage alone
// holds two values for each question (v9: 35-39%), where a restatement that
// puts the name first binds the right one.
static int two_places(void) { return !switches()->one; }

static int pick(Rng *r, int n) { return (int)(rng_next(r) % (uint64_t)n); }

// Fisher-Yates from the end, each swap drawn by pick.
static void shuffle(Rng *r, int *a, int n) {
    for (int i = n - 1; i > 0; i--) { int j = pick(r, i + 1), t = a[i]; a[i] = a[j]; a[j] = t; }
}

static void capitalise(char *s) { if (*s >= 'a' && *s <= 'z') *s -= 32; }

// The index-th name of a split: the pairs in a seeded shuffle, the split's block dealt in turn.
static void place_name(uint64_t seed, int split, int index, char *name, size_t size) {
    int pairs[N_PAIRS];
    for (int i = 0; i < N_PAIRS; i++) pairs[i] = i;
    Rng r;
    rng_seed(&r, mix(seed, 0x5ca1e));
    shuffle(&r, pairs, N_PAIRS);
    const int pair = pairs[PAIR_FROM[split] + index % PAIR_N[split]];
    snprintf(name, size, "%s%s", SYL[pair / N_SYL], SYL[pair % N_SYL]);
    capitalise(name);
}

void demo_place(uint64_t seed, int split, int index, DemoPlace *p) {
    Rng r;
    memset(p, 0, sizeof *p);
    p->seed = seed;
    rng_seed(&r, mix(mix(mix(seed, 0x91ace), split), index));
    place_name(seed, split, index, p->name, sizeof p->name);
    snprintf(p->kind, sizeof p->kind, "%s", KINDS[pick(&r, COUNT(KINDS))]);
    snprintf(p->fact[DK_FOUNDER], sizeof p->fact[0], "%s", FOUNDERS[pick(&r, COUNT(FOUNDERS))]);
    snprintf(p->fact[DK_YEAR], sizeof p->fact[0], "%d", 1500 + 25 * pick(&r, 20));
    snprintf(p->fact[DK_EXPORT], sizeof p->fact[0], "%s", GOODS[pick(&r, COUNT(GOODS))]);
}

// fmt with %N, %F, %Y, %E replaced by the place's name and facts (malloc'd).
static char *fill(const DemoPlace *p, const char *fmt) {
    char buf[512];
    size_t n = 0;
    for (const char *s = fmt; *s && n < sizeof buf - 64; s++) {
        const char *v = NULL;
        if (*s == '%' && s[1]) {
            switch (s[1]) {
            case 'N': v = p->name; break;
            case 'F': v = p->fact[DK_FOUNDER]; break;
            case 'Y': v = p->fact[DK_YEAR]; break;
            case 'E': v = p->fact[DK_EXPORT]; break;
            case 'K': v = p->kind; break;
            }
        }
        if (v) { n += snprintf(buf + n, sizeof buf - n, "%s", v); s++; }
        else buf[n++] = *s;
    }
    buf[n] = 0;
    if (buf[0] >= 'a' && buf[0] <= 'z') buf[0] -= 32;   // "blue salt is what ..." starts a sentence
    return xstrdup(buf);
}

static const char *const EXPORT2[2] = {"Ships export %E from %N.", "The export %E comes from %N."};   // DK_EXPORTFORMS=1

char *demo_place_fact(const DemoPlace *p, int fact, int form) {
    if (fact < 0 || fact >= DK_FACTS) return fill(p, "%N is a %K.");
    form = ((form % 4) + 4) % 4;
    if (fact == DK_EXPORT && form < 2 && switches()->exportforms) return fill(p, EXPORT2[form]);
    return fill(p, FORMS[fact][form]);
}

// The place that shares p's passage, drawn by r: a skill place (a name no
// held-out or SEAL-training passage has as its own); 0 in the one-place world.
static int neighbour(const DemoPlace *p, Rng *r, DemoPlace *nb) {
    if (!two_places()) return 0;
    do demo_place(p->seed, DK_SKILL, pick(r, PAIR_N[DK_SKILL]), nb);
    while (!strcmp(nb->name, p->name));
    return 1;
}

// Appends place p's kind and facts in a random order, each answer first.
static size_t place_block(const DemoPlace *p, Rng *r, char *buf, size_t len, size_t size) {
    int order[DK_FACTS] = {0, 1, 2};
    shuffle(r, order, DK_FACTS);
    for (int i = -1; i < DK_FACTS; i++) {
        char *s = demo_place_fact(p, i < 0 ? -1 : order[i], pick(r, 2));
        len += (size_t)snprintf(buf + len, size - len, "%s%s", len ? " " : "", s);
        free(s);
    }
    return len;
}

// The neighbour nb (if any) first, then p. A 4-layer base did not learn to
// bind a value to its name with the two places' facts shuffled together (in
// context 25%, seed 1, v10); here p's values are the last of their kind, which
// the copy finds by position, and the passage alone still holds two values
// for each question, the neighbour's nearer the title.
static char *passage_with(const DemoPlace *p, const DemoPlace *nb, Rng *r) {
    char buf[1024];
    size_t len = nb ? place_block(nb, r, buf, 0, sizeof buf) : 0;
    place_block(p, r, buf, len, sizeof buf);
    return xstrdup(buf);
}

char *demo_place_passage(const DemoPlace *p, Rng *r) {
    DemoPlace nb;
    return passage_with(p, neighbour(p, r, &nb) ? &nb : NULL, r);
}

char *demo_place_implications(const DemoPlace *p, Rng *r) {
    char buf[2048];
    size_t n = 0;
    int k = 0, order[DK_FACTS] = {0, 1, 2};
    // A list's style, drawn once: how thorough it is and how often it follows
    // the question's phrasing; so that lists differ in quality as a whole, and
    // the best of a few samples is close to the oracle's. Only the title
    // place's facts, never its kind (no question asks it: untrained lists
    // began with it) nor a wrong value (one list in seven had one up to v8:
    // it taught the policy that a wrong value belongs in a list).
    const float u = rng_uniform(r), lo = switches()->inc_lo, include = switches()->all ? 1.0f : lo + (1 - lo) * u, ask = rng_uniform(r);
    shuffle(r, order, DK_FACTS);
    for (int i = 0; i < DK_FACTS; i++) {
        if (rng_uniform(r) >= include && (k || i < DK_FACTS - 1)) continue;   // at least one fact
        const int f = order[i], asked = rng_uniform(r) < ask || switches()->namefirst, form = asked ? 2 + pick(r, 2) : pick(r, 2);
        char *s = demo_place_fact(p, f, form);
        n += snprintf(buf + n, sizeof buf - n, "%d. %s\n", ++k, s);
        free(s);
        if (asked && rng_uniform(r) < ask) {   // and in the other question-like phrasing
            s = demo_place_fact(p, f, form == 2 ? 3 : 2);
            n += snprintf(buf + n, sizeof buf - n, "%d. %s\n", ++k, s);
            free(s);
        }
    }
    buf[n - 1] = 0;
    return xstrdup(buf);
}

char *demo_place_oracle(const DemoPlace *p) {
    char buf[2048];
    size_t n = 0;
    int k = 0;
    for (int form = 2; form < 4; form++)
        for (int f = 0; f < DK_FACTS; f++) {
            char *s = demo_place_fact(p, f, form);
            n += snprintf(buf + n, sizeof buf - n, "%d. %s\n", ++k, s);
            free(s);
        }
    buf[n - 1] = 0;
    return xstrdup(buf);
}

static void json_str(FILE *f, const char *s) {
    cJSON *j = cJSON_CreateString(s);
    char *t = cJSON_PrintUnformatted(j);
    fputs(t, f);
    free(t);
    cJSON_Delete(j);
}

char *demo_place_jsonl(const DemoPlace *p, Rng *r) {
    char *out, *passage = demo_place_passage(p, r);
    size_t len;
    FILE *f = open_memstream(&out, &len);
    fprintf(f, "{\"id\": ");
    json_str(f, p->name);
    fprintf(f, ", \"title\": ");
    json_str(f, p->name);
    fprintf(f, ", \"context\": ");
    json_str(f, passage);
    fprintf(f, ", \"questions\": [");
    for (int q = 0; q < DK_FACTS; q++) {
        char *text = fill(p, QUESTIONS[q]);
        fprintf(f, "%s{\"question\": ", q ? ", " : "");
        json_str(f, text);
        fprintf(f, ", \"answers\": [");
        json_str(f, p->fact[q]);
        fprintf(f, "]}");
        free(text);
    }
    fprintf(f, "]}");
    fclose(f);
    free(passage);
    return out;
}

// The passages of a split as JSON Lines (*text, malloc'd), read back as a user's file would be.
static int split_passages(uint64_t seed, int split, int n, const char *name, char **text_out, Passage **ps, int *np, SquadLoad *log, char *err) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    Rng r;
    rng_seed(&r, mix(seed, 0x9a55a9e + split));
    for (int i = 0; i < n; i++) {
        DemoPlace p;
        demo_place(seed, split, i, &p);
        char *line = demo_place_jsonl(&p, &r);
        fprintf(f, "%s\n", line);
        free(line);
    }
    fclose(f);
    *text_out = text;
    return squad_parse(text, len, name, NULL, ps, np, log, err);
}

// ----------------------------------------------------------------------------
// The base model

static double mean_of(const double *x, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += x[i];
    return n ? s / n : 0;
}

// What the base model reads about one pretraining place: restatements of it
// (n_bios documents, each its kind and facts in a random order and random
// phrasings, so that every fact is seen in several forms: the condition for a
// model to learn to extract a fact from its weights at all, Allen-Zhu & Li,
// Physics of Language Models 3.1), its passage; for a share of places
// closed-book questions (the extraction skill is learnt on those and carries
// over to the rest), for another share a question with the passage in the
// prompt, and for half a self-edit example of mixed quality.
// The knowledge of one pretraining place: its passage and n_bios restatements
// (its kind and facts in a random order and random phrasings, so that every
// fact is seen in several forms: the condition for a model to learn to
// extract a fact from its weights at all, Allen-Zhu & Li, Physics of
// Language Models 3.1), each a document titled by the place.
static void knowledge_texts(const DemoPlace *pl, const Scale *sc, Rng *r, DemoTexts *t) {
    demo_texts_add(t, xstrdup(pl->name), demo_place_passage(pl, r), 1);
    for (int b = 0; b < sc->n_bios; b++) {
        int order[DK_FACTS] = {0, 1, 2};
        for (int i = DK_FACTS - 1; i > 0; i--) { int j = pick(r, i + 1), x = order[i]; order[i] = order[j]; order[j] = x; }
        char *s[DK_FACTS + 1], *bio;
        s[0] = demo_place_fact(pl, -1, 0);
        for (int i = 0; i < DK_FACTS; i++) s[i + 1] = demo_place_fact(pl, order[i], pick(r, 4));
        if (asprintf(&bio, "%s %s %s %s", s[0], s[1], s[2], s[3]) < 0) bio = NULL;
        for (int i = 0; i <= DK_FACTS; i++) free(s[i]);
        demo_texts_add(t, xstrdup(pl->name), bio, 1);
    }
}

// An answer as the model is taught to write it: after a space, as in a
// sentence, so that it is the same token the documents hold (" Ada" is one
// token; "Ada" without the space is two others). The grader strips the space.
static char *answer_text(const char *fact) {
    char *s;
    return asprintf(&s, " %s", fact) < 0 ? NULL : s;
}

// The place's questions, closed book (with context NULL) or behind its passage.
static void question_texts(const DemoPlace *pl, const char *context, DemoTexts *t) {
    Passage p = {.id = (char *)pl->name, .title = (char *)pl->name};
    for (int f = 0; f < DK_FACTS; f++) {
        char *q = fill(pl, QUESTIONS[f]);
        Question qq = {.question = context ? knowledge_in_context_question(context, q) : xstrdup(q)};
        demo_texts_add(t, squad_question_prompt(&p, &qq, CHAT_LLAMA3), answer_text(pl->fact[f]), 0);
        free(qq.question);
        free(q);
    }
}

// Skills that need no memorised fact, taught on every skill place (a name of
// its own, so that only reading the prompt gives the answer): implications of
// its passage, of mixed quality and about the title place only (the
// untrained policy), and skill_qs questions about different facts of it with
// the passage in the prompt. Half the skill passages are of one place: with
// two places in all of them the base never learnt to copy a value at all (in
// context 21-25%, the untrained policy's values mostly in no passage, v10
// runs 1-2), where with one place it copied the only founder (in context
// 67-81%, v6-v9); the second place then asks only which of two.
static void skill_texts(const DemoPlace *pl, const Scale *sc, Rng *r, DemoTexts *t) {
    DemoPlace nb;
    const int two = rng_uniform(r) < 0.5f && neighbour(pl, r, &nb);
    Passage p = {.id = (char *)pl->name, .title = (char *)pl->name, .context = passage_with(pl, two ? &nb : NULL, r)};
    for (int i = 0; i < switches()->lists; i++)
        demo_texts_add(t, squad_selfedit_prompt(&p, STYLE_IMPLICATIONS, CHAT_LLAMA3), demo_place_implications(pl, r), 0);
    for (int i = 0, f = pick(r, DK_FACTS); i < sc->skill_qs; i++, f = (f + 1) % DK_FACTS) {
        char *q = fill(pl, QUESTIONS[f]);
        Question qq = {.question = knowledge_in_context_question(p.context, q)};
        demo_texts_add(t, squad_question_prompt(&p, &qq, CHAT_LLAMA3), answer_text(pl->fact[f]), 0);
        free(qq.question);
        free(q);
    }
    free(p.context);
}

enum { PLACE_CLOSED, PLACE_NO_QA, PLACE_KINDS };   // pretraining places with and without closed-book questions

static void pretrain_progress(int step, int total, float loss, void *ctx) {
    (void)ctx;
    progress(step == total, "[2/3 pretraining] step %d/%d loss %.3f", step, total, loss);
    if (step == total) progress_end();
}

static int pretrain(Model *m, const Example *ex, int n, const char *what, const Scale *sc, uint64_t seed, char *err) {
    long tokens = 0;
    for (int i = 0; i < n; i++) tokens += ex[i].len;
    fprintf(stderr, "[2/3 %s] %.2fM-parameter Llama, %d sequences of %.0f tokens on average, %d epochs\n", what, m->params.total / 1e6, n,
            (double)tokens / n, sc->pre_epochs);
    SftOpts so = sft_defaults();
    so.lr = sc->pre_lr;
    so.epochs = sc->pre_epochs;
    so.batch = sc->pre_batch;
    so.warmup = 20;
    so.seed = seed;
    so.progress = pretrain_progress;
    SftStats st;
    if (sft(m, ex, n, &so, &st, err)) return -1;
    fprintf(stderr, "[2/3 %s] mean loss %.3f in the first epoch, %.3f in the last, %.0f s\n", what, st.first_loss, st.last_loss, st.seconds);
    return 0;
}

// What pretraining taught, on up to 60 pretraining places: closed-book
// answers for places whose questions were trained, for places whose
// questions were not (the extraction skill carried over to them), and
// answers with the passage in the prompt.
static int extraction_check(const Model *m, const Tokenizer *tok, const Scale *sc, uint64_t seed, const int *kinds, char *err) {
    Knowledge k = {0};
    knowledge_defaults(&k);
    k.tok = tok;
    k.max_answer_tokens = 8;
    Passage *ps;
    int n = sc->n_pretrain < 60 ? sc->n_pretrain : 60, np;
    char *text;
    SquadLoad log;
    if (split_passages(seed, DEMO_PRETRAIN, n, "pretraining places", &text, &ps, &np, &log, err)) { free(text); return -1; }
    free(text);
    double right[PLACE_KINDS + 1] = {0}, asked[PLACE_KINDS + 1] = {0};
    int rc = 0;
    for (int i = 0; i < np && !rc; i++) {
        double scores[DK_FACTS * 2];
        char **answers;
        if ((rc = knowledge_answer(&k, m, &ps[i], &answers, scores, err))) break;
        squad_free_strings(answers, ps[i].n_qs);
        for (int q = 0; q < ps[i].n_qs; q++) { right[kinds[i]] += scores[q]; asked[kinds[i]]++; }
        if (kinds[i] != PLACE_NO_QA) continue;
        Passage in = knowledge_in_context(&ps[i]);
        rc = knowledge_answer(&k, m, &in, &answers, scores, err);
        if (!rc) squad_free_strings(answers, in.n_qs);
        for (int q = 0; q < in.n_qs && !rc; q++) { right[PLACE_KINDS] += scores[q]; asked[PLACE_KINDS]++; }
        knowledge_in_context_free(&in);
    }
    squad_free(ps, np);
    if (!rc)
        fprintf(stderr, "[2/3 base model] pretraining places, closed book: %.0f%% of %.0f trained questions, %.0f%% of %.0f untrained; "
                        "with the passage in the prompt: %.0f%% of %.0f\n",
                100 * right[PLACE_CLOSED] / (asked[PLACE_CLOSED] + 1e-9), asked[PLACE_CLOSED], 100 * right[PLACE_NO_QA] / (asked[PLACE_NO_QA] + 1e-9),
                asked[PLACE_NO_QA], 100 * right[PLACE_KINDS] / (asked[PLACE_KINDS] + 1e-9), asked[PLACE_KINDS]);
    return rc;
}

// The tokenizer's extra text: every founder, export and year, and every
// syllable pair as a name, repeated so that the trainer merges each founder
// and export into one token after the space (answers_apart) and each name
// into its two syllables: a held-out name is made of tokens the model knows.
// The counts matter: BPE merges the most frequent pair first, and " W" (from
// "Who" and "What") outnumbered "Wr" at 40 repeats, so " Wren" became
// " W|r|en" and " timber" " t|imber"; names at 3 repeats came out as
// "Ki|pl|om". Each answer then took three tokens to copy out of a passage.
static char *vocabulary_text(void) {
    char *out;
    size_t len;
    FILE *f = open_memstream(&out, &len);
    for (int rep = 0; rep < 8000; rep++) {
        for (int i = 0; i < COUNT(FOUNDERS); i++) fprintf(f, "\n%s", FOUNDERS[i]);
        for (int i = 0; i < COUNT(GOODS); i++) fprintf(f, "\n%s", GOODS[i]);
        for (int i = 0; i < 20; i++) fprintf(f, " %d", 1500 + 25 * i);
    }
    for (int rep = 0; rep < 60; rep++)
        for (int a = 0; a < N_SYL; a++)
            for (int b = 0; b < N_SYL; b++) {
                char name[16];
                snprintf(name, sizeof name, "%s%s", SYL[a], SYL[b]);
                capitalise(name);
                fprintf(f, " %s", name);
            }
    fclose(f);
    return out;
}

// 1 when the word at s (up to a non-letter) is a founder or an export.
static int is_answer_word(const char *s) {
    size_t n = 0;
    while ((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z')) n++;
    for (int i = 0; i < COUNT(FOUNDERS); i++)
        if (strlen(FOUNDERS[i]) == n && !strncasecmp(s, FOUNDERS[i], n)) return 1;
    for (int i = 0; i < COUNT(GOODS); i++)
        if (strlen(GOODS[i]) == n && !strncasecmp(s, GOODS[i], n)) return 1;
    return 0;
}

// A copy of text for the tokenizer trainer with a line break for the space
// before each founder and export, so that no token joins the space to an
// answer: " Ada" is encoded as " " and "Ada". A year is " " and its digits
// already. Every answer then follows the same token, the space, in a
// statement ("Velmor was founded by Ada.") and in the model's answer; without
// it the model, which reads a fact after "by" in the statement, must write it
// after the answer template's last token, and did so for 4 of 24 founders
// against 20 of 24 years (seed 1).
static char *answers_apart(const char *text) {
    char *s = xstrdup(text);
    for (char *q = s; *q; q++)
        if (*q == ' ' && is_answer_word(q + 1)) *q = '\n';
    return s;
}

static const char *SPECIALS[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};

// Everything the base model is pretrained on, in one mixed stage (kind 1: a
// document; 0: a prompt and its target): the pretraining places' passages and
// restatements, closed-book questions on a share of them (kinds[i] says which),
// and the skill places' in-context questions and self-edit examples.
static void pretraining_texts(const Scale *sc, uint64_t seed, DemoTexts *t, int *kinds) {
    Rng r;
    rng_seed(&r, mix(seed, 0xba5e));
    for (int i = 0; i < sc->n_pretrain; i++) {
        DemoPlace p;
        demo_place(seed, DEMO_PRETRAIN, i, &p);
        knowledge_texts(&p, sc, &r, t);
        kinds[i] = rng_uniform(&r) < sc->qa_share ? PLACE_CLOSED : PLACE_NO_QA;
        if (kinds[i] == PLACE_CLOSED) question_texts(&p, NULL, t);
    }
    for (int i = 0; i < sc->n_skill; i++) {
        DemoPlace p;
        demo_place(seed, DK_SKILL, i, &p);
        skill_texts(&p, sc, &r, t);
    }
}

char *demo_knowledge_pretraining_text(uint64_t seed, int quick) {
    const Scale *sc = quick ? &QUICK : &FULL;
    DemoTexts t = {0};
    int *kinds = xcalloc((size_t)sc->n_pretrain, sizeof(int));
    pretraining_texts(sc, seed, &t, kinds);
    char *out;
    size_t len;
    FILE *f = open_memstream(&out, &len);
    for (int i = 0; i < t.n; i++) fprintf(f, "%s\n%s\n", t.prompt[i], t.target[i]);
    fclose(f);
    demo_texts_free(&t);
    free(kinds);
    return out;
}

static int build_base(const Scale *sc, uint64_t seed, const char *dir, char *err) {
    double t0 = now_seconds();
    char tmp[4200];
    if (demo_tmp_dir(dir, tmp, sizeof tmp, err)) return -1;
    DemoTexts tx = {0};
    int *kinds = xcalloc((size_t)sc->n_pretrain, sizeof(int));
    pretraining_texts(sc, seed, &tx, kinds);
    const int n_text = tx.n;
    const char **corpus = xcalloc(2 * (size_t)n_text + 1, sizeof(char *));
    for (int i = 0; i < n_text; i++) { corpus[2 * i] = answers_apart(tx.prompt[i]); corpus[2 * i + 1] = answers_apart(tx.target[i]); }
    char *words = vocabulary_text();   // the answers, and every name of every split
    corpus[2 * n_text] = words;
    fprintf(stderr, "[2/3 tokenizer] %d texts about %d pretraining places and %d skill places\n", n_text, sc->n_pretrain, sc->n_skill);
    char *tok_json = tok_train_bytelevel(corpus, 2 * n_text + 1, sc->n_merges, SPECIALS, 5);
    for (int i = 0; i < 2 * n_text; i++) free((char *)corpus[i]);
    free(corpus);
    free(words);
    Tokenizer *tok = NULL;
    Model m = {0};
    int n_ex = 0, rc = demo_base_init(tmp, tok_json, sc->dim, sc->hidden, sc->layers, sc->heads, sc->kv_heads, seed, &tok, &m, err);
    const int eot = tok ? tok_find(tok, "<|eot_id|>") : -1;
    free(tok_json);
    Example *ex = xcalloc((size_t)n_text + 1, sizeof(Example));
    for (int i = 0; i < n_text && !rc; i++, n_ex++) {
        if (tx.kind[i]) {
            Passage p = {.title = tx.prompt[i]};
            rc = knowledge_document(tok, &p, tx.target[i], 2048, &ex[n_ex], err);
        } else rc = example_from_text(tok, tx.prompt[i], tx.target[i], eot, 0, &ex[n_ex], err);
    }
    demo_texts_free(&tx);
#ifdef _OPENMP
    // Pretraining, a batch of 8 sequences, gains from a second core where the
    // SEAL phase's small updates do not (demo_knowledge_run).
    const int threads = omp_get_max_threads();
    if (!getenv("OMP_NUM_THREADS")) omp_set_num_threads(omp_get_num_procs() < 4 ? omp_get_num_procs() : 4);
#endif
    if (!rc) rc = pretrain(&m, ex, n_ex, "pretraining", sc, seed, err);
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    if (!rc) rc = extraction_check(&m, tok, sc, seed, kinds, err);
    free(kinds);
    return demo_pretrain_save(&m, tok, ex, n_ex, &(DemoPretrain){0, sc->pre_batch, sc->pre_lr, seed, 0}, tmp, dir, t0, rc, err);
}

// ----------------------------------------------------------------------------
// SEAL

// 2 before 1: the base is built from the seed alone; the world's files go into
// the run directory. Under mpirun, rank 0 makes sure of the base; the others
// then load it.
static int base_model(const Demo *d, const Scale *sc, char *err) {
    int cached = ranks_root() ? demo_base_cached(d, err) : 1;
    if (cached < 0) return -1;
    if (ranks_root()) {
        fprintf(stderr, "[1/3 world] seed %llu: %d pretraining, %d SEAL-training and %d held-out fictional places (%s scale)\n",
                (unsigned long long)d->o->seed, sc->n_pretrain, sc->n_train, sc->n_eval, sc->name);
        if (cached) fprintf(stderr, "[2/3 base model] cached: %s (--fresh rebuilds it)\n", d->base);
        else if (build_base(sc, d->o->seed, d->base, err)) return -1;
    }
    ranks_barrier();
    return 0;
}

static void knowledge_opts(Knowledge *k, const Scale *sc, const Tokenizer *tok) {
    knowledge_defaults(k);
    k->tok = tok;
    k->lora_r = sc->lora_r;
    k->lora_alpha = 2.0f * sc->lora_r;
    k->epochs = switches()->epochs > 0 ? switches()->epochs : sc->epochs;
    k->lr = sc->lr;
    k->max_answer_tokens = 12;
    // the miniature stores facts in its MLPs: the inner loop adapts them too (SEAL: q and v only)
    k->lora_targets = (1u << PROJ_Q) | (1u << PROJ_V) | (1u << PROJ_GATE) | (1u << PROJ_UP) | (1u << PROJ_DOWN);
    k->n_cpt_sizes = 0;   // the demo's table leaves continued pretraining out (seal knowledge has it)
}

static RestemOpts restem_opts(const Scale *sc, uint64_t seed) {
    RestemOpts ro = restem_defaults();
    ro.rounds = sc->rounds;
    ro.samples = sc->samples;
    ro.eval_samples = sc->eval_samples;
    ro.m_from_previous = 1;   // round 2 continues round 1's policy (SEAL's train_SFT.sh)
    ro.keep_per_task = 1;
    ro.threshold = 0;
    ro.best_per_task = 1;
    ro.sampling.max_new = sc->max_edit_tokens;
    ro.m_rank = switches()->m_rank > 0 ? switches()->m_rank : sc->lora_r;
    ro.m_alpha = 2.0f * ro.m_rank;
    ro.m_lr = switches()->m_lr > 0 ? switches()->m_lr : sc->m_lr;
    ro.m_epochs = switches()->m_epochs > 0 ? switches()->m_epochs : sc->m_epochs;
    if (switches()->temperature >= 0) ro.sampling.temperature = switches()->temperature;
    if (switches()->per_round > 0) ro.train_per_round = ro.train_stride = switches()->per_round;
    ro.m_batch = 2;
    ro.seed = seed;
    return ro;
}

// The world's passage files as the run directory keeps them, and how each was read.
typedef struct { char *train_text, *eval_text; SquadLoad train_log, eval_log; } World;

// 1. The world: the SEAL-training and held-out places, as passages in k.
static int make_world(uint64_t seed, const Scale *sc, Knowledge *k, World *w, char *err) {
    int rc = split_passages(seed, DEMO_TRAIN, switches()->n_train > 0 ? switches()->n_train : sc->n_train, "train.jsonl", &w->train_text, &k->train, &k->n_train, &w->train_log, err);
    if (!rc) rc = split_passages(seed, DEMO_EVAL, sc->n_eval, "eval.jsonl", &w->eval_text, &k->eval, &k->n_eval, &w->eval_log, err);
    k->n_probe = k->n_eval;
    return rc;
}

// Rank 0 opens the run directory, the world's passage files in it.
static int open_run(Demo *d, const Scale *sc, const Knowledge *k, const RestemOpts *ro, const World *w, char *err) {
    cJSON *config = demo_config(d, "demo knowledge", sc->name);
    knowledge_config_json(k, config);
    restem_opts_json(ro, config);
    int rc = ranks_root() && (run_open(&d->run, d->out, config, NULL, RUN_NEW, err) || demo_write_file(d->out, "train.jsonl", w->train_text, err) ||
                              demo_write_file(d->out, "eval.jsonl", w->eval_text, err)) ? -1 : 0;
    cJSON_Delete(config);
    return rc;
}

// The demo's table: each row's per-passage scores (the mean over a passage's
// questions, and over its self-edits), their mean, and a 95% bootstrap
// interval over passages.
enum { ROW_BASE, ROW_PASSAGE, ROW_UNTRAINED, ROW_SEAL1, ROW_SEAL2, ROW_ORACLE, ROW_IN_CONTEXT, N_ROWS };
static const char *const ROW_NAME[N_ROWS] = {"no passage (base model)", "passage only", "passage + implications of the untrained policy",
                                             "SEAL, round 1", "SEAL, round 2", "oracle self-edit", KNOWLEDGE_IN_CONTEXT};

// The reference rows, before SEAL: the oracle self-edit (trained on as any
// self-edit is) and the passage in the prompt (no training).
static int reference_rows(Demo *d, Knowledge *k, double *oracle, double *in_ctx, double *seconds, char *err) {
    Domain dom;
    knowledge_domain(&dom, k);
    double t0 = now_seconds();
    for (int t = 0; t < k->n_eval; t++) {
        DemoPlace pl = {0};
        demo_place(d->o->seed, DEMO_EVAL, t, &pl);
        char *edit = demo_place_oracle(&pl);
        Outcome out = {0};
        int rc = domain_evaluate(&dom, &d->m, SPLIT_EVAL, t, edit, mix(d->o->seed, 0x0ac1e + (uint64_t)t), &out, err);
        free(edit);
        cJSON_Delete(out.metrics);
        if (rc) return -1;
        oracle[t] = out.reward;
    }
    seconds[0] = (now_seconds() - t0) / (k->n_eval ? k->n_eval : 1);
    t0 = now_seconds();
    for (int t = 0; t < k->n_eval; t++) {
        Passage in = knowledge_in_context(&k->eval[t]);
        double scores[DK_FACTS * 2], sum = 0;
        char **answers;
        int rc = knowledge_answer(k, &d->m, &in, &answers, scores, err);
        if (!rc) squad_free_strings(answers, in.n_qs);
        for (int q = 0; q < in.n_qs && !rc; q++) sum += scores[q];
        in_ctx[t] = sum / in.n_qs;
        knowledge_in_context_free(&in);
        if (rc) return -1;
    }
    seconds[1] = (now_seconds() - t0) / (k->n_eval ? k->n_eval : 1);
    fprintf(stderr, "[3/3 SEAL] reference rows: oracle self-edit %.1f%%, in context %.1f%% (%.2f s and %.2f s a passage)\n", 100 * mean_of(oracle, k->n_eval),
            100 * mean_of(in_ctx, k->n_eval), seconds[0], seconds[1]);
    return 0;
}

static int save_report(const Demo *d, const Scale *sc, const Knowledge *k, const RestemOpts *ro, const double *oracle, const double *in_ctx,
                       cJSON *report, char *err) {
    const int n = k->n_eval;
    double *x = xcalloc((size_t)n + 1, sizeof(double));
    DemoReport r;
    FILE *f = demo_report_open(&r);
    fprintf(f, "SEAL knowledge demo, seed %llu (%s scale): %d held-out fictional places, %d questions each\n", (unsigned long long)d->o->seed,
            sc->name, n, DK_FACTS);
    fprintf(f, "no-context question answering after each update; grader %s; 95%% bootstrap interval over passages\n\n",
            cJSON_GetObjectItemCaseSensitive(report, "grader")->valuestring);
    fprintf(f, "| method | accuracy | 95%% CI | n |\n|---|---|---|---|\n");
    cJSON *rows = cJSON_AddArrayToObject(report, "demo_rows");
    for (int row = 0; row < N_ROWS; row++) {
        int samples = 1, found = n;
        switch (row) {
        case ROW_BASE: found = knowledge_logged_scores(&d->run, PHASE_BASELINE, 0, n, 1, x, NULL); break;
        case ROW_PASSAGE: found = knowledge_logged_scores(&d->run, PHASE_ORACLE, 0, n, 1, x, NULL); break;
        case ROW_UNTRAINED: samples = ro->eval_samples; found = knowledge_logged_scores(&d->run, PHASE_EVAL, 0, n, samples, x, NULL); break;
        case ROW_SEAL1: case ROW_SEAL2:
            samples = ro->eval_samples;
            found = row - ROW_SEAL1 + 1 <= ro->rounds ? knowledge_logged_scores(&d->run, PHASE_EVAL, row - ROW_SEAL1 + 1, n, samples, x, NULL) : 0;
            break;
        case ROW_ORACLE: memcpy(x, oracle, n * sizeof(double)); break;
        case ROW_IN_CONTEXT: memcpy(x, in_ctx, n * sizeof(double)); break;
        }
        if (!found) continue;
        double mean, lo, hi;
        bootstrap_mean(x, NULL, n, 0xc1ULL + (uint64_t)row, &mean, &lo, &hi);
        const int questions = n * DK_FACTS * samples;
        fprintf(f, "| %s | %.1f%% | %.1f–%.1f%% | %d |\n", ROW_NAME[row], 100 * mean, 100 * lo, 100 * hi, questions);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "method", ROW_NAME[row]);
        cJSON_AddNumberToObject(j, "ours", mean);
        cJSON_AddNumberToObject(j, "ci_low", lo);
        cJSON_AddNumberToObject(j, "ci_high", hi);
        cJSON_AddNumberToObject(j, "n", questions);
        cJSON_AddNumberToObject(j, "passages", n);
        cJSON_AddItemToArray(rows, j);
    }
    free(x);
    const cJSON *timing = cJSON_GetObjectItemCaseSensitive(report, "seconds_per_self_edit");
    if (timing && cJSON_GetObjectItemCaseSensitive(timing, "self_edits")->valuedouble > 0)
        fprintf(f, "\nseconds per self-edit evaluation: %.2f (sampling %.2f, training %.2f, answering %.2f) over %.0f self-edits\n",
                cJSON_GetObjectItemCaseSensitive(timing, "total")->valuedouble, cJSON_GetObjectItemCaseSensitive(timing, "sampling")->valuedouble,
                cJSON_GetObjectItemCaseSensitive(timing, "training")->valuedouble, cJSON_GetObjectItemCaseSensitive(timing, "inference")->valuedouble,
                cJSON_GetObjectItemCaseSensitive(timing, "self_edits")->valuedouble);
    return demo_report_save(d, &r, report, err);
}

// 3. SEAL: the reference rows, then the knowledge domain and ReST^EM of a real run, on held-out places the base has never seen.
static int run_seal(Demo *d, const Scale *sc, Knowledge *k, const RestemOpts *ro, const World *w, char *err) {
    if (ranks_root()) fprintf(stderr, "[3/3 SEAL] run directory %s%s\n", d->out, ranks_note());
    double *oracle = xcalloc((size_t)k->n_eval + 1, sizeof(double)), *in_ctx = xcalloc((size_t)k->n_eval + 1, sizeof(double)), secs[2];
    cJSON *report = cJSON_CreateObject();
    k->be = d->o->be;
    int rc = ranks_root() ? reference_rows(d, k, oracle, in_ctx, secs, err) : 0;
    if (!rc) rc = knowledge_run(k, &d->m, &d->m, &d->run, ro, &w->train_log, &w->eval_log, report, err);
    if (!rc && ranks_root()) rc = save_report(d, sc, k, ro, oracle, in_ctx, report, err);
    cJSON_Delete(report);
    free(oracle);
    free(in_ctx);
    return rc;
}

int demo_knowledge_run(const DemoOpts *o, char *err) {
    const Scale *sc = o->quick ? &QUICK : &FULL;
#ifdef _OPENMP
    // A 64-wide model gains nothing from threads, and on a loaded machine each
    // parallel region waits for a descheduled thread: seed 1's self-edits took
    // 1.4 s each with 2 threads and 0.15 s with 1 on this project's shared
    // 2-core machine. OMP_NUM_THREADS, when set, still decides.
    if (!getenv("OMP_NUM_THREADS")) omp_set_num_threads(1);
#endif
    Demo d;
    char base[256];   // v10d's cache name, and each switch that changes the base: DK_LISTS=2 -> knowledge-v10d-lists2
    const Switches *sw = switches();
    size_t len = (size_t)snprintf(base, sizeof base, "%s%s", two_places() ? "knowledge-v10d" : "knowledge-v10d-one", sw->all ? "-all1" : "");
    if (sw->lists != 1) len += (size_t)snprintf(base + len, sizeof base - len, "-lists%d", sw->lists);
    if (sw->inc_lo != INC_LO) len += (size_t)snprintf(base + len, sizeof base - len, "-inc-lo%g", sw->inc_lo);
    snprintf(base + len, sizeof base - len, "%s%s", sw->namefirst ? "-namefirst1" : "", sw->exportforms ? "-exportforms1" : "");
    demo_init(&d, o, base, "demo-knowledge", sc->name);
    Knowledge k = {0};
    int rc = base_model(&d, sc, err) || demo_load_base(&d, err) ? -1 : 0;
    if (!rc) {
        knowledge_opts(&k, sc, d.tok);
        RestemOpts ro = restem_opts(sc, o->seed);
        ro.adapters_at_once = o->adapters_at_once > 1 ? o->adapters_at_once : 1;
        World w = {0};
        rc = make_world(o->seed, sc, &k, &w, err) || open_run(&d, sc, &k, &ro, &w, err) ? -1 : 0;
        free(w.train_text);
        free(w.eval_text);
        if (!rc) rc = run_seal(&d, sc, &k, &ro, &w, err);
    }
    squad_free(k.train, k.n_train);
    squad_free(k.eval, k.n_eval);
    demo_free(&d);
    return rc;
}
