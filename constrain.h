// constrain.h: grammar-constrained decoding (`--constrain`, off by default;
// beyond SEAL's code, which samples freely).
//
// A small model rarely writes what the protocol can read: SmolLM2-135M puts
// prose before a self-edit's JSON and a sentence before a grid, and every
// such sample scores 0. A grammar here is a character automaton over bytes;
// a Constraint applies it at the token level. At each step of decode()
// (generate.c) every token whose bytes would leave the automaton's language
// gets logit -inf, and the chosen token advances the sequence's state. A
// sequence whose grammar is complete stops, as at a stop token.
//
// Speed: the automaton has few states that occur in practice, and the set of
// tokens allowed in a state is computed once (walking only the tokens whose
// first byte the state accepts) and cached, so a step costs a table lookup
// and one pass over the logits.
#pragma once
#include <stdint.h>
#include "tokenizer.h"

// A state is a small struct packed into 64 bits (each grammar its own).
#define GRAMMAR_DEAD UINT64_MAX   // no accepted string has this prefix

typedef struct Grammar {
    const char *name;             // "arc-edit", "arc-grid"
    const char *what;             // one line for --help and errors
    uint64_t start;
    uint64_t (*next)(uint64_t state, unsigned char byte);   // GRAMMAR_DEAD when byte cannot follow
    int (*complete)(uint64_t state);                        // the bytes so far are an accepted string
} Grammar;

// arc-edit: a JSON object of SEAL's ARC self-edit schema (fields in any
// order, each once; booleans; the two strategies; learning_rate in
// [1e-6, 1e-2] written as 0.00ddd or d[.ddd]e-N; num_train_epochs 1..1000),
// whitespace runs of at most 16 bytes. Every accepted string passes
// selfedit_parse (arc.h).
extern const Grammar GRAMMAR_ARC_EDIT;
// arc-grid: an answer as the TTT prompt writes it (arc_answer, numpy's
// print): "[[0 1]\n [2 3]]#", rectangular, 1..30 per side. Every accepted
// string passes grid_parse.
extern const Grammar GRAMMAR_ARC_GRID;

const Grammar *grammar_find(const char *name);   // NULL when unknown
// The state after text (GRAMMAR_DEAD once a byte is refused).
uint64_t grammar_walk(const Grammar *g, uint64_t state, const char *text, size_t len);
int grammar_accepts(const Grammar *g, const char *text);   // the whole text is an accepted string

typedef struct Constraint Constraint;
// A constraint of grammar g over tok's tokens, for logits of `vocab` ids (the
// model's; ids the tokenizer lacks are never allowed). NULL with err.
Constraint *constraint_new(const Grammar *g, const Tokenizer *tok, int vocab, char *err);
void constraint_free(Constraint *c);
const Grammar *constraint_grammar(const Constraint *c);
// Starts B sequences at the grammar's start (decode calls it).
void constraint_begin(Constraint *c, int B);
// Sets logits (vocab) of the tokens sequence b may not write next to -inf.
// Returns how many it may write; 0 only for a vocabulary that lacks some
// byte (byte-level BPE has them all): then logits are left as they are and
// the sequence stops after its next token.
int constraint_mask(Constraint *c, int b, float *logits);
void constraint_advance(Constraint *c, int b, int token);   // sequence b wrote token
int constraint_done(const Constraint *c, int b);            // complete (or stuck): stop sequence b
// Seconds spent in constraint_mask and constraint_advance so far (the cache's
// first visits included), the masks applied, and the states cached.
double constraint_seconds(const Constraint *c, long *steps, int *states);
// Allowed tokens of a state (sorted ids into *ids, owned by c): for tests.
int constraint_allowed(Constraint *c, uint64_t state, const int **ids);
