// backend.h: where the SEAL loop's model operations run. The loop (restem.c,
// fewshot.c, knowledge.c) trains and samples through these two calls and
// reads the same on every backend; a NULL Backend is the CPU (model.c,
// train.c, generate.c), a CUDA one runs kernels.cu in bf16.
//
// On CUDA each Model's base weights go to the device once, the first time the
// backend sees it, and stay there until backend_close (they are frozen in the
// loop: only adapters train). Its attached adapter goes up with each call
// (LoRA tables are small); training leaves the trained adapter in the host's
// Lora again, and only the losses and the generated ids travel per step.
#pragma once
#include "generate.h"
#include "train.h"

typedef struct Backend Backend;

// cuda = 1: the CUDA backend (NULL with err when the binary or the machine has
// none); 0: the CPU, also returned as a Backend so callers hold one kind of thing.
Backend *backend_new(int cuda, char *err);
void backend_close(Backend *b);
int backend_is_cuda(const Backend *b);
const char *backend_name(const Backend *b);   // "cpu" or "cuda"
// m's base weights changed on the host (an adapter merged in or taken out):
// the device copy is dropped, and the next call uploads them again.
void be_forget(Backend *b, const Model *m);

// sft() on b. CUDA trains adapters only: m must have one attached.
int be_sft(Backend *b, Model *m, const Example *ex, int n, const SftOpts *o, SftStats *st, char *err);
// sft_many() on b: K adapters trained together over m's frozen base, each
// step one pass over every run's rows (on CUDA through cuda_forward_many, the
// K adapters on the device at once); each run's adapter comes back trained.
int be_sft_many(Backend *b, Model *m, SftRun *runs, int K, char *err);
// generate() on b: the same prompts, per-sequence RNG streams, sampling, stops
// and callbacks; greedy decoding takes the argmax on the device.
int be_generate(Backend *b, const Model *m, const int *const *prompts, const int *lens, int B, const SampleOpts *o, const int *stop_ids,
                int n_stop, TokenFn on_token, void *ctx, int **out, int *out_lens, char *err);
