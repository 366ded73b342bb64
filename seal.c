// seal.c: main. Subcommands, flags, progress output.
//
// Results go to stdout; progress and messages to stderr. Errors read
// "seal: <file or flag>: <what was wrong>". Exit status: 0 success, 1 bad
// input or failed check, 2 usage.
#include "model.h"
#include "util.h"
#include "verify.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name, *summary;
    int (*run)(int argc, char **argv);
} Command;

static int usage_error(const char *cmd, const char *msg) {
    fprintf(stderr, "seal: %s: %s (see seal %s --help)\n", cmd, msg, cmd);
    return 2;
}

static int wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

static int cmd_verify(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        printf("usage: seal verify FIXTURE... [--backend cpu]\n\n"
               "Reproduces verification fixtures written by a PyTorch reference (FORMATS.md):\n"
               "forward, backward and the fixture's AdamW steps, then prints one line per\n"
               "compared tensor with its max absolute and max relative error.\n\n"
               "  --backend cpu   the backend to check (default cpu; the only one in this build)\n\n"
               "Exit status: 0 when every tensor is within |ours-ref| <= %g + %g*max|ref|,\n"
               "1 when one is not or a fixture is malformed, 2 on usage errors.\n", VERIFY_ATOL, VERIFY_RTOL);
        return 0;
    }
    int n = 0, worst = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend")) {
            if (i + 1 >= argc) return usage_error("verify", "--backend needs a value");
            if (strcmp(argv[++i], "cpu")) return usage_error("verify", "--backend: only \"cpu\" is built in this binary");
            continue;
        }
        if (argv[i][0] == '-') return usage_error("verify", "unknown flag");
        char err[ERR_MAX];
        int rc = verify_fixture(argv[i], stdout, err);
        if (rc < 0) fprintf(stderr, "seal: %s\n", err);
        if (rc) worst = 1;
        n++;
    }
    if (!n) return usage_error("verify", "give at least one fixture directory");
    return worst;
}

static const Command COMMANDS[] = {
    {"verify", "check forward, backward and AdamW against PyTorch fixtures", cmd_verify},
};

static void print_help(void) {
    printf("seal: SEAL (Self-Adapting Language Models) in C\n\nusage: seal COMMAND [flags]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++) printf("  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    printf("\n`seal COMMAND --help` lists every flag of COMMAND with its default.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        print_help();
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "seal: unknown command \"%s\" (see seal --help)\n", argv[1]);
    return 2;
}
