// bench/demo_directives.c: how much each self-edit's directives matter in the
// demo's world. For each configuration read from stdin, one per line
//   basic size chain repeat output_only learning_rate epochs   (e.g. 0 0 0 0 1 0.003 8)
// it applies the self-edit to a demo base (a fresh TTT LoRA per task, the
// demo's inner loop) on the first N SEAL-training and N held-out tasks of the
// seed's world and prints the share solved (pass@2 with voting) and the mean
// final TTT loss, as a markdown table.
//   build/demo_directives BASE_DIR SEED N < configs
#include "demo.h"
#include "demo_tasks.h"
#include "fewshot.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s BASE_DIR SEED N < configs\n", argv[0]); return 2; }
    uint64_t seed = strtoull(argv[2], NULL, 10);
    int n = atoi(argv[3]);
    char err[ERR_MAX], tpath[4200];
    snprintf(tpath, sizeof tpath, "%s/tokenizer.json", argv[1]);
    Model m;
    Tokenizer *tok = NULL;
    FewShot fs = {.n_train = n, .n_eval = n};
    if (model_load(&m, argv[1], err) || !(tok = tok_load(tpath, err)) || demo_make_tasks(seed, DEMO_TRAIN, n, &fs.train, err) ||
        demo_make_tasks(seed, DEMO_EVAL, n, &fs.eval, err)) {
        fprintf(stderr, "demo_directives: %s\n", err);
        return 1;
    }
    demo_fewshot(&fs, 0, tok);
    Domain d;
    fewshot_domain(&d, &fs);
    printf("| basic | size | chain | repeat | tokens | lr | epochs | solved | final TTT loss |\n|---|---|---|---|---|---|---|---|---|\n");
    char line[256];
    for (int lineno = 1; fgets(line, sizeof line, stdin); lineno++) {
        SelfEdit se;
        if (sscanf(line, "%d %d %d %d %d %f %d", &se.basic, &se.size, &se.chain, &se.repeat, &se.output_only, &se.lr, &se.epochs) != 7) {
            fprintf(stderr, "demo_directives: stdin:%d: expected 7 numbers: basic size chain repeat output_only lr epochs\n", lineno);
            return 1;
        }
        char *edit = selfedit_to_json(&se);
        double solved = 0, loss = 0;
        for (int split = SPLIT_TRAIN; split <= SPLIT_EVAL; split++)
            for (int t = 0; t < n; t++) {
                Outcome out = {0};
                if (domain_evaluate(&d, &m, split, t, edit, 1000 + (uint64_t)t, &out, err)) { fprintf(stderr, "demo_directives: %s\n", err); return 1; }
                const cJSON *l = cJSON_GetObjectItemCaseSensitive(out.metrics, "last_loss");
                solved += out.reward;
                loss += cJSON_IsNumber(l) ? l->valuedouble : 0;
                cJSON_Delete(out.metrics);
            }
        printf("| %d | %d | %d | %d | %s | %g | %d | %.0f%% | %.3f |\n", se.basic, se.size, se.chain, se.repeat, se.output_only ? "output" : "all",
               se.lr, se.epochs, 100 * solved / (2 * n), loss / (2 * n));
        fflush(stdout);
        free(edit);
    }
    tok_free(tok);
    model_free(&m);
    demo_free_tasks(fs.train, n);
    demo_free_tasks(fs.eval, n);
    return 0;
}
