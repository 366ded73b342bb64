// demo_knowledge.h: `seal demo knowledge`: SEAL's knowledge-incorporation
// loop on a built-in world of fictional places (so no model knows them
// beforehand), with a tiny Llama pretrained on the spot, on a laptop CPU.
//
// A place has a kind and three facts: who founded it, the year, its main
// export. A passage states them in one of several phrasings each; the
// questions ask for them in one fixed form ("Who founded Velmor?"). A place
// name is a pair of syllables and the pair says the split, so no held-out
// place was seen in pretraining, though each of its syllables was.
#pragma once
#include <stdint.h>
#include "demo.h"
#include "squad.h"
#include "util.h"

enum { DK_FOUNDER, DK_YEAR, DK_EXPORT, DK_FACTS };

typedef struct {
    char name[48], kind[24], fact[DK_FACTS][40];
    uint64_t seed;   // the world's: a passage draws the neighbour it shares from it
} DemoPlace;

// Place `index` of a split (DEMO_PRETRAIN / DEMO_TRAIN / DEMO_EVAL of
// demo_tasks.h): a function of (seed, split, index) only.
void demo_place(uint64_t seed, int split, int index, DemoPlace *p);
// One fact, or the kind ("Velmor is a port."), in phrasing `form` (any int; taken mod the count).
char *demo_place_fact(const DemoPlace *p, int fact, int form);
// A passage: a neighbour's kind and facts (a skill place's; none when the
// environment sets DK_ONE=1), then the place's, each in a random order and in
// one of the two phrasings that put the answer before the place ("Ada
// founded Velmor."), which a causal model trained on them cannot answer the
// question from.
char *demo_place_passage(const DemoPlace *p, Rng *r);
// The place as one JSON Lines passage ({"id", "title", "context", "questions"}).
char *demo_place_jsonl(const DemoPlace *p, Rng *r);
// A numbered list of implications of mixed quality, as the untrained policy
// learns to write them: each fact with some probability (at least one), in
// some phrasing; only the place's own facts.
char *demo_place_implications(const DemoPlace *p, Rng *r);

// The ideal self-edit: every fact restated in both phrasings that follow the
// question ("Velmor was founded by Ada."), as a numbered list.
char *demo_place_oracle(const DemoPlace *p);

// Every text the base model is pretrained on at this seed and scale, one after another (malloc'd): for tests.
char *demo_knowledge_pretraining_text(uint64_t seed, int quick);

int demo_knowledge_run(const DemoOpts *o, char *err);
