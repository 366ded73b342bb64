// test/fuzz/fuzz.h: what every libFuzzer target shares. A target is one file,
// test/fuzz/fuzz_NAME.c, that includes this header and defines
//
//     int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
//
// feeding the input to one reader; it aborts (FUZZ_CHECK) when the reader
// accepts something it then misreads. Adding a target: write that file, add
// NAME to FUZZ_TARGETS in the Makefile and a few seeds to test/fuzz/seeds.c.
// Readers that take a path get the input through fuzz_file (a per-process
// scratch directory on tmpfs when there is one).
#pragma once
#include "util.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// A failed invariant: libFuzzer sees the abort as a crash and saves the input.
#define FUZZ_CHECK(cond, ...)                                              \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "fuzz invariant failed: %s: ", #cond);         \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
            abort();                                                       \
        }                                                                  \
    } while (0)

// The input as a NUL-terminated string (malloc'd); text readers stop at the
// first NUL as they would in a file read with read_file.
static inline char *fuzz_text(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) abort();
    memcpy(s, data, size);
    s[size] = 0;
    return s;
}

// This process's scratch directory, made on first use (under $SEAL_FUZZ_TMP,
// which test/fuzz/run.sh removes even after a crash) and removed at exit.
static char fuzz_scratch[256];
static void fuzz_scratch_rm(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_scratch);
    if (system(cmd)) {}
}
static inline const char *fuzz_dir(void) {
    if (!fuzz_scratch[0]) {
        struct stat st;
        const char *root = getenv("SEAL_FUZZ_TMP");
        if (!root) root = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
        snprintf(fuzz_scratch, sizeof fuzz_scratch, "%s/seal-fuzz-XXXXXX", root);
        if (!mkdtemp(fuzz_scratch)) { perror("mkdtemp"); abort(); }
        atexit(fuzz_scratch_rm);
    }
    return fuzz_scratch;
}

// Writes bytes to NAME in the scratch directory (NAME may hold '/': the
// directories are made) and returns the path (a static buffer).
static inline const char *fuzz_file(const char *name, const void *data, size_t size) {
    static char path[512];
    char err[ERR_MAX];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    char *slash = strrchr(path, '/');
    *slash = 0;
    if (make_dirs(path, err)) { fprintf(stderr, "%s\n", err); abort(); }
    *slash = '/';
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f)) { perror(path); abort(); }
    return path;
}
