// arc.h: the ARC domain: tasks and grids, test-time-training data from the
// demonstrations (leave-out tasks, augmentations), prompts, self-edit
// configurations, and augmented inference with voting.
#pragma once
#include <stdint.h>
#include "util.h"

#define GRID_MAX 30               // ARC's largest side; bigger grids are dropped
#define GRID_CAP 60               // storage per side: room for x2 transforms before the check

typedef struct {
    int h, w;
    uint8_t c[GRID_CAP * GRID_CAP];   // row-major, c[r * w + col], colours 0..9
} Grid;

typedef struct { Grid in, out; } Pair;

typedef struct {
    char id[64];
    int n_train, n_test;
    Pair *train, *test;           // malloc'd
} Task;

// The self-edit of SEAL's few-shot domain: which augmentations to generate and
// how to train on them.
typedef struct {
    int basic, size, chain, repeat;   // use_*_augmentations
    int output_only;                  // strategy "train_using_output_tokens"
    float lr;
    int epochs;
} SelfEdit;
