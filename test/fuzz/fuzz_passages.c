// test/fuzz/fuzz_passages.c: the passage readers (SQuAD v1.1, SEAL's lists,
// JSON Lines). Every accepted passage has a context and questions that each
// carry at least one non-empty answer, and the grader takes them.
#include "fuzz.h"
#include "squad.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[ERR_MAX], *text = fuzz_text(data, size);   // files are read NUL-terminated
    Passage *p;
    int n;
    SquadLoad log;
    if (squad_parse(text, size, "fuzz/passages.json", NULL, &p, &n, &log, err) == 0) {
        FUZZ_CHECK(n == log.kept, "%d passages returned, %d counted as kept", n, log.kept);
        for (int i = 0; i < n; i++) {
            FUZZ_CHECK(p[i].context && p[i].context[0] && p[i].n_qs > 0, "passage %d: empty context or no questions", i);
            for (int q = 0; q < p[i].n_qs; q++) {
                const Question *qa = &p[i].qs[q];
                FUZZ_CHECK(qa->n_answers > 0, "passage %d question %d: no answers", i, q);
                for (int a = 0; a < qa->n_answers; a++) FUZZ_CHECK(qa->answers[a][0], "passage %d question %d: an empty answer", i, q);
            }
        }
        squad_free(p, n);
    }
    free(text);
    return 0;
}
