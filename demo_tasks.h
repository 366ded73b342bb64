// demo_tasks.h: the built-in world of `seal demo`: seeded, procedural ARC-like
// tasks (small grids, families of transformations and compositions of two),
// dealt into disjoint pretraining / SEAL-training / held-out evaluation splits.
//
// A rule is one or two steps; a step is a family and its parameters. Its text,
// e.g. "rot90+cmap(1>2,3>4)", is the tail of every task id
// ("demo-eval-0007-rot90+cmap(1>2,3>4)"), so a task says what it tests.
// Steps as written (the first step is applied first):
//   rot90 rot180 rot270 flipud fliplr transpose antitranspose  (rot90 = clockwise)
//   cmap(a>b,c>d)    colour a becomes b and c becomes d, at once (a < c)
//   shift(dy,dx)     move every cell by dy rows (down +), dx columns; cells leave
//   roll(dy,dx)      the same with wrap-around; dy, dx in -1..1
//   gravity(down|up|left|right)   non-zero cells fall, keeping their order
//   tileRxC, tileRxCm            R copies down, C across; m: mirrored copies
//   crop             the bounding box of the non-zero cells
//   crop(c)          the bounding box of colour c
//   outline4(c), outline8(c)     background cells touching a non-zero cell
//                                (4- or 8-neighbourhood) take colour c
//   scaleRxC         each cell becomes an R x C block (2x2, 2x1, 1x2)
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "arc.h"

enum { DEMO_PRETRAIN, DEMO_TRAIN, DEMO_EVAL, DEMO_N_SPLITS };

enum { DEMO_GEOM, DEMO_CMAP, DEMO_SHIFT, DEMO_GRAVITY, DEMO_TILE, DEMO_CROP, DEMO_OUTLINE, DEMO_SCALE, DEMO_N_FAMILIES };

#define DEMO_MAX_STEPS 2
typedef struct { int fam, p[4]; } DemoStep;
typedef struct { int n; DemoStep step[DEMO_MAX_STEPS]; } DemoRule;

// Task `index` of a split: 3-4 demonstrations and one test pair, a function of
// (seed, split, index) only, so demo_make_tasks(seed, s, n) is a prefix of
// demo_make_tasks(seed, s, n + k). Inputs are 2x2 to 5x5 (mostly 2..4 a side),
// outputs 1x1 to 8x8; colours 0..9 with 0 the background; the test input shows
// no colour the demonstrations do not. Fills *t; its pairs are malloc'd (free
// them with demo_free_task). Task by task, a long pretraining stream never
// needs all its tasks in memory at once (a Pair is 7 KiB).
int demo_make_task(uint64_t seed, int split, int index, Task *t, char *err);
void demo_free_task(Task *t);

// Tasks 0..n-1 of a split into a fresh malloc'd array; demo_free_tasks frees
// the pairs of the first n and the array.
int demo_make_tasks(uint64_t seed, int split, int n, Task **tasks, char *err);
void demo_free_tasks(Task *tasks, int n);

// The split a rule belongs to, independent of the seed. Colour maps are the
// knowledge a task carries: dealt 3:1:1 to pretraining, training and
// evaluation by a fixed hash of their text, so no map is in two splits. Every
// other step (geometry, gravity, shifts, ...) is a prior that pretraining
// teaches. A rule with a map belongs to its map's split, one without to
// pretraining; SEAL-training and held-out tasks are all a map of their split
// alone: the knowledge a tiny base must learn by test-time training (a 0.8M
// model pretrained for minutes learns to copy a grid, not to read a rotation
// off demonstrations in context; see README). -1 when r is not a rule.
int demo_rule_split(const DemoRule *r);

// Applies the rule; -1 when a result would be empty or over GRID_MAX a side,
// or when r is not a rule (unknown family, parameters out of range).
int demo_apply(const DemoRule *r, const Grid *in, Grid *out);

// The rule's text (see above) into out; -1 when it does not fit or r is not a rule.
int demo_rule_name(const DemoRule *r, char *out, size_t n);
// Parses a rule's text or a whole task id; -1 when it names no rule.
int demo_rule_parse(const char *text, DemoRule *r);

const char *demo_family_name(int fam);   // "geom", "cmap", ...; NULL when out of range
const char *demo_split_name(int split);  // "pretrain", "train", "eval"; NULL when out of range
