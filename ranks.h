// ranks.h: the processes of an MPI job (`mpirun -n K ./seal ...`), and the
// one pattern SEAL needs of them: an ordered, dynamic map over a batch of
// jobs. Built with `make MPI=1` (-DSEAL_MPI, mpicc, Open MPI or MPICH);
// without it there is one rank and every call below is plain sequential code,
// so callers need no #ifdefs and the binary needs no MPI library.
//
// Rank 0 owns the run directory and the loop; the other ranks (workers) do
// jobs. A job's result travels as JSON lines (run.h), the only place Edits
// are serialised: with one rank nothing is. For each batch rank 0 hands out one job at a time to whichever worker
// is free and records the results itself, strictly in job order, so what it
// writes does not depend on K or on which rank did what. Rank 0 only
// coordinates when there are workers; alone, it does the jobs itself. Every
// wait sleeps instead of spinning, so an idle rank costs no CPU.
#pragma once
#include <stddef.h>
#include "model.h"
#include "run.h"

int ranks_init(int *argc, char ***argv);   // MPI_Init; 0, or -1 after printing why
// The end of the process with this exit status: MPI_Finalize, or, when a rank
// fails while others may still wait for it, MPI_Abort, which ends the whole job.
int ranks_finish(int status);
int ranks_rank(void);                      // 0 without MPI
int ranks_size(void);                      // 1 without MPI
int ranks_root(void);                      // this is rank 0
int ranks_local_rank(void);                // this rank's index among the ranks on its node
const char *ranks_note(void);              // ", over K MPI ranks (...)" for progress lines; "" with one

// --gpus-per-node N: this rank uses GPU (local rank % N), by narrowing
// CUDA_VISIBLE_DEVICES (or the list already in it) to that one device before
// CUDA starts. N = 0 leaves the devices alone.
int ranks_use_gpus(int per_node, char *err);

// Collectives: every rank calls them in the same order.
void ranks_barrier(void);
// Rank 0's n bytes at p to every rank (a small message: the workers wait for
// it between batches, quietly).
void ranks_bcast(void *p, size_t n);
void ranks_bcast_floats(float *x, size_t n);
// Rank 0's adapter (NULL: none) to every rank: the others get their own copy,
// made for config c, in *l (NULL when rank 0 has none).
int ranks_bcast_lora(Lora **l, const Config *c, char *err);

// A job of a batch: which sample of which task, and its first attempt.
typedef struct { int task, sample, attempt; } RankJob;
// Does a job on any rank: its self-edits (one per attempt) into *result.
typedef int (*RankWork)(void *ctx, const RankJob *job, Edits *result, char *err);
// Records a job's result on rank 0, called for jobs 0, 1, ..., n-1 in order;
// it may take the edits it keeps out of *result (what is left is freed).
typedef int (*RankRecord)(void *ctx, const RankJob *job, Edits *result, char *err);

// Rank 0: every job of a batch done (by the workers, or here when alone) and
// recorded. A job that fails stops the handing out; the results before it
// are still recorded, and err names the rank and its message.
int ranks_map(const RankJob *jobs, int n, RankWork work, RankRecord record, void *ctx, char *err);
// A worker: does the jobs rank 0 hands it until rank 0 ends the batch. A
// failed job is reported to rank 0, which decides; -1 only when MPI fails.
int ranks_serve(RankWork work, void *ctx, char *err);
