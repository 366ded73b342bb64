// train.h: the inner loop's pieces: AdamW, the learning-rate schedule,
// gradient clipping, supervised fine-tuning.
#pragma once
#include "model.h"
#include "tokenizer.h"

// torch.optim.AdamW: decoupled weight decay, bias-corrected moments.
typedef struct {
    float beta1, beta2, eps, weight_decay;
    int t;                        // steps taken
    Table m, v;                   // moments, shaped like the trainable table
} AdamW;

int adamw_init(AdamW *o, const Table *params, float beta1, float beta2, float eps, float weight_decay);   // -1 when out of memory (adamw_free it still)
void adamw_step(AdamW *o, Table *params, const Table *grads, float lr);
void adamw_free(AdamW *o);

// Scales grads so their global L2 norm is at most max_norm (as
// torch.nn.utils.clip_grad_norm_); returns the norm before clipping.
float clip_grad_norm(Table *grads, float max_norm);

// Linear warm-up from 0 to lr over `warmup` steps, then cosine decay to 0 at
// `total` (transformers' get_cosine_schedule_with_warmup). step counts from 0.
float lr_at(float lr, int step, int warmup, int total);

// The trainable tables of a model: the adapter when one is attached, else the
// whole model (which must have had model_train_full).
Table *trainable_params(Model *m);
Table *trainable_grads(Model *m);

// ----------------------------------------------------------------------------
// Supervised fine-tuning: the inner loop of SEAL and its M-step.

// One training sequence; loss[t] = 1 when token t is a target (predicted from
// the tokens before it). The loss follows Hugging Face: labels = ids where
// loss is set, -100 elsewhere, shifted inside the model.
typedef struct {
    int *ids;
    uint8_t *loss;
    int len;
} Example;

typedef struct {
    float lr;
    int epochs, batch, warmup;    // warm-up steps, then cosine decay to 0
    float weight_decay, max_grad_norm;   // max_grad_norm 0: no clipping
    float beta1, beta2, eps;
    uint64_t seed;                // order of examples in each epoch
    int group_by_length;          // batches of similar lengths: the shuffled order sorted by length in windows of 16 batches (beyond SEAL)
    void (*progress)(int step, int total, float loss, void *ctx);   // after each step, or NULL
    void *progress_ctx;
} SftOpts;

// prompt, then target, then the end token `end`: loss on the target and end,
// and on the prompt too when loss_on_prompt is set.
int example_from_text(const Tokenizer *tok, const char *prompt, const char *target, int end, int loss_on_prompt, Example *e, char *err);
void examples_free(Example *ex, int n);

SftOpts sft_defaults(void);       // AdamW(0.9, 0.999, 1e-8), no decay, clip 1.0, batch 1

typedef struct {
    int steps;
    float first_loss, last_loss;  // mean loss of the first and the last epoch
    double seconds;
    int diverged;                 // a loss (or, at the end, a weight) was NaN or Inf: training stopped
                                  // there, the weights are no use, and the caller says so
    float bad_loss;               // that loss
} SftStats;

// "training diverged: loss nan at step 3 of 40" into buf: why a self-edit was not trained.
#define SFT_DIVERGED "training diverged"
void sft_diverged_why(const SftStats *st, int total, char *buf, size_t n);

// Optimizer steps that sft() will take: epochs * ceil(n / batch).
int sft_steps(int n_examples, int batch, int epochs);

// Trains the model's trainable table (the attached adapter, else the full
// model) on the examples with AdamW and the warm-up/cosine schedule. Batches
// are padded on the right to their longest example. Returns 0 or -1 with err.
int sft(Model *m, const Example *ex, int n, const SftOpts *o, SftStats *stats, char *err);

// One of sft_many's runs: its examples, options and adapter in, its stats out.
typedef struct {
    const Example *ex;
    int n;
    SftOpts o;
    Lora *lora;                   // the adapter it trains, shaped as the attached one;
                                  // NULL (one run alone): the model's trainable table
    SftStats st;
} SftRun;

// K runs of sft() in lockstep on one frozen base (K <= MAX_ADAPTERS), each
// with its own adapter, AdamW state, example order and schedule: a step packs
// the next batch of every run that has one into one (sum of batches, longest
// example) pass of model_forward_many, then clips and updates each adapter on
// its own. Each run ends as sft() would have left it (up to the order of
// float sums); a run that diverges stops and the others go on. sft() is
// sft_many with K = 1.
int sft_many(Model *m, SftRun *runs, int K, char *err);

// sft_many's loop with the step left to the caller (the CUDA backend's is on
// the GPU): the epochs, the shuffled orders, packing, the schedules,
// divergence and the stats are the same on every backend. A step trains k
// runs at once: run which[j] on the rows[j] batch rows of ids/labels (sum of
// rows, T) that follow run which[j-1]'s, at learning rate lr[j]; loss[j] gets
// its loss before the update (a NaN or Inf loss: no update, and that run stops
// with st.diverged).
typedef int (*TrainStep)(void *ctx, int k, const int *which, const int *rows, const int *ids, const int *labels, int T, const float *lr,
                         float *loss, char *err);
int sft_loop(SftRun *runs, int K, int vocab, TrainStep step, void *ctx, char *err);
