// bench/knowledge_diag.c: checks the plumbing of `seal demo knowledge`'s
// inner loop on one cached base: the question prompt and the oracle's
// documents as tokens, whether the LoRA memorises the oracle documents
// (greedy continuation of each restatement up to its answer) and what the
// adapted model then answers to the closed-book questions.
//   build/knowledge_diag CACHE_BASE_DIR SEED [places] [epochs] [lr]   (DIAG_R=rank, default 32)
#include "demo_knowledge.h"
#include "demo_tasks.h"
#include "generate.h"
#include "knowledge.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_tokens(const Tokenizer *tok, const char *what, const int *ids, int n) {
    printf("%s (%d tokens):", what, n);
    for (int i = 0; i < n; i++) {
        const char *b;
        int len = tok_token_bytes(tok, ids[i], &b);
        printf(" [");
        for (int j = 0; j < len; j++) putchar(b[j] == '\n' ? '|' : b[j]);
        printf("]");
    }
    printf("\n");
}

// The greedy continuation (max 4 tokens) of text, as the model m says it.
static void continue_text(const Model *m, const Tokenizer *tok, const char *text, int bos) {
    int *body, n = tok_encode(tok, text, strlen(text), 1, &body, NULL), *ids = calloc(n + 1, sizeof(int)), *out, out_len;
    ids[0] = bos;
    memcpy(ids + 1, body, n * sizeof(int));
    n++;
    SampleOpts g = {.max_new = 3, .temperature = 0, .top_p = 1};
    char err[ERR_MAX];
    if (generate(m, (const int *const *)&ids, &n, 1, &g, NULL, 0, NULL, NULL, &out, &out_len, err)) { printf("%s\n", err); return; }
    size_t len;
    char *s = tok_decode(tok, out, out_len, &len, err);
    printf("    '%s' -> '%s'\n", text, s);
    free(s);
    free(out);
    free(ids);
    free(body);
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s BASE_DIR SEED [places] [epochs] [lr]\n", argv[0]); return 2; }
    char err[ERR_MAX], path[4200];
    uint64_t seed = strtoull(argv[2], NULL, 10);
    int places = argc > 3 ? atoi(argv[3]) : 4, epochs = argc > 4 ? atoi(argv[4]) : 10;
    float lr = argc > 5 ? atof(argv[5]) : 3e-3f;
    snprintf(path, sizeof path, "%s/tokenizer.json", argv[1]);
    Tokenizer *tok = tok_load(path, err);
    Model m = {0};
    if (!tok || model_load(&m, argv[1], err)) { fprintf(stderr, "%s\n", err); return 1; }
    Knowledge k = {0};
    knowledge_defaults(&k);
    k.tok = tok;
    k.lora_r = getenv("DIAG_R") ? atoi(getenv("DIAG_R")) : 32;
    k.lora_alpha = 2.0f * k.lora_r;
    k.epochs = epochs;
    k.lr = lr;
    k.max_answer_tokens = 12;
    k.lora_targets = (1u << PROJ_Q) | (1u << PROJ_V) | (1u << PROJ_GATE) | (1u << PROJ_UP) | (1u << PROJ_DOWN);
    if (getenv("DIAG_RAW")) k.chat = CHAT_RAW;
    const char *answers[] = {"Ada", " Ada", "1650", " 1650", "salt", " salt"};
    for (int i = 0; i < 6; i++) {
        int *ids, n = tok_encode(tok, answers[i], strlen(answers[i]), 0, &ids, err);
        print_tokens(tok, answers[i], ids, n);
        free(ids);
    }
    double right = 0, asked = 0;
    for (int t = 0; t < places; t++) {
        DemoPlace pl;
        demo_place(seed, DEMO_EVAL, t, &pl);
        Rng r;
        rng_seed(&r, t);
        char *line = demo_place_jsonl(&pl, &r);
        Passage *ps;
        int np;
        SquadLoad log;
        if (squad_parse(line, strlen(line), "place", NULL, &ps, &np, &log, err)) { fprintf(stderr, "%s\n", err); return 1; }
        char *edit = demo_place_oracle(&pl), *q = squad_question_prompt(&ps[0], &ps[0].qs[0], k.chat);
        Example *ex;
        int n, st;
        if (knowledge_documents(&k, &ps[0], edit, &ex, &n, &st, err)) { fprintf(stderr, "%s\n", err); return 1; }
        if (t == 0) {
            int *ids, nq = tok_encode(tok, q, strlen(q), 1, &ids, err);
            print_tokens(tok, "question prompt", ids, nq);
            free(ids);
            for (int i = 0; i < n; i++) print_tokens(tok, "document", ex[i].ids, ex[i].len);
        }
        Lora l = {0};
        lora_init(&l, &m.c, k.lora_r, k.lora_alpha, k.lora_targets);
        lora_reset(&l, seed + t);
        model_attach_lora(&m, &l);
        SftOpts so = sft_defaults();
        so.lr = k.lr;
        so.epochs = k.epochs;
        so.batch = 1;
        so.seed = seed + t;
        SftStats ss;
        if (sft(&m, ex, n, &so, &ss, err)) { fprintf(stderr, "%s\n", err); return 1; }
        printf("%s (%s %s %s): loss %.3f first epoch, %.3f last\n", pl.name, pl.fact[0], pl.fact[1], pl.fact[2], ss.first_loss, ss.last_loss);
        char prefix[200];
        snprintf(prefix, sizeof prefix, "%s\n1. Who founded %s?", pl.name, pl.name);
        continue_text(&m, tok, prefix, tok_bos(tok));
        snprintf(prefix, sizeof prefix, "%s\n1. %s was founded by", pl.name, pl.name);
        continue_text(&m, tok, prefix, tok_bos(tok));
        char **ans;
        double scores[8];
        if (knowledge_answer(&k, &m, &ps[0], &ans, scores, err)) { fprintf(stderr, "%s\n", err); return 1; }
        for (int i = 0; i < ps[0].n_qs; i++) {
            printf("    Q '%s' gold '%s' answer '%s' %.0f\n", ps[0].qs[i].question, ps[0].qs[i].answers[0], ans[i], scores[i]);
            right += scores[i];
            asked++;
        }
        squad_free_strings(ans, ps[0].n_qs);
        model_attach_lora(&m, NULL);
        lora_free(&l);
        examples_free(ex, n);
        free(edit);
        free(q);
        free(line);
        squad_free(ps, np);
    }
    printf("oracle closed-book: %.1f%% of %.0f\n", 100 * right / asked, asked);
    return 0;
}
