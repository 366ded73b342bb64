// ranks.c: see ranks.h. With -DSEAL_MPI the ranks are MPI processes; without
// it, one process is rank 0 of 1 and ranks_map runs the jobs in a loop.
#include "ranks.h"
#include "util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// One rank: each job done here and recorded before the next one starts.
static int map_here(const RankJob *jobs, int n, RankWork work, RankRecord record, void *ctx, char *err) {
    for (int i = 0; i < n; i++) {
        Edits result = {0};
        int rc = work(ctx, &jobs[i], &result, err) || record(ctx, &jobs[i], &result, err);
        edits_free(&result);
        if (rc) return -1;
    }
    return 0;
}

// The device of this rank: the (local rank % per_node)-th of CUDA_VISIBLE_DEVICES,
// or of all devices when it is unset.
int ranks_use_gpus(int per_node, char *err) {
    if (per_node <= 0) return 0;
    int gpu = ranks_local_rank() % per_node;
    const char *list = getenv("CUDA_VISIBLE_DEVICES");
    char id[64];
    if (list && *list) {
        const char *p = list;
        for (int i = 0; i < gpu && p; i++) p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL;
        size_t len = p ? strcspn(p, ",") : 0;
        if (!len || len >= sizeof id)
            return errf(err, "--gpus-per-node %d: CUDA_VISIBLE_DEVICES=%s has no device %d for local rank %d", per_node, list, gpu, ranks_local_rank());
        memcpy(id, p, len);
        id[len] = 0;
    } else snprintf(id, sizeof id, "%d", gpu);
    setenv("CUDA_VISIBLE_DEVICES", id, 1);
    return 0;
}

#ifndef SEAL_MPI

int ranks_init(int *argc, char ***argv) { (void)argc; (void)argv; return 0; }
int ranks_finish(int status) { return status; }
int ranks_rank(void) { return 0; }
int ranks_size(void) { return 1; }
int ranks_root(void) { return 1; }
int ranks_local_rank(void) { return 0; }
const char *ranks_note(void) { return ""; }
void ranks_barrier(void) {}
void ranks_bcast(void *p, size_t n) { (void)p; (void)n; }
void ranks_bcast_floats(float *x, size_t n) { (void)x; (void)n; }
int ranks_bcast_lora(Lora **l, const Config *c, char *err) { (void)l; (void)c; (void)err; return 0; }

int ranks_map(const RankJob *jobs, int n, RankWork work, RankRecord record, void *ctx, char *err) {
    return map_here(jobs, n, work, record, ctx, err);
}

int ranks_serve(RankWork work, void *ctx, char *err) { (void)work; (void)ctx; return errf(err, "built without MPI: no rank serves another"); }

#else
#include <mpi.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

// Set once by ranks_init: MPI's own answers, kept at hand.
static int g_rank, g_size = 1, g_local;
static char g_note[96];

enum { TAG_JOB = 1, TAG_RESULT = 2 };

// Open MPI's mpirun stops the whole job when a rank dies: it sends the others
// SIGTERM, waits (odls_base_sigkill_timeout, 1 s), then SIGKILL. Rank 0 says
// what that means for the run before it goes. The wait ends early when any
// rank exits (its SIGCHLD cuts mpirun's sleep): a worker dying at SIGTERM would
// get rank 0 SIGKILLed before its message whenever the worker ran first, as it
// may on a busy machine. Workers hold nothing of the run, so they ignore
// SIGTERM and go at the SIGKILL (or kill -9; killing mpirun stops them all).
static void on_term(int sig) {
    static const char msg[] = "\nseal: rank 0 stopped by mpirun (a rank failed or died, or the job was cancelled); the run directory keeps "
                              "every result recorded so far: run the same command with --resume (any number of ranks) to continue\n";
    if (write(2, msg, sizeof msg - 1) < 0) {}
    signal(sig, SIG_DFL);
    raise(sig);
}

int ranks_init(int *argc, char ***argv) {
    int provided;   // MPI is called from the main thread only; OpenMP threads never call it
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "seal: MPI_Init failed\n");
        return -1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &g_local);
    MPI_Comm_free(&node);
    if (g_size > 1) signal(SIGTERM, g_rank == 0 ? on_term : SIG_IGN);
    if (g_size == 2) snprintf(g_note, sizeof g_note, ", over 2 MPI ranks (rank 0 records, rank 1 scores the self-edits)");
    else if (g_size > 2) snprintf(g_note, sizeof g_note, ", over %d MPI ranks (rank 0 records, ranks 1 to %d score the self-edits)", g_size, g_size - 1);
    return 0;
}

// A rank that fails may leave others waiting for it forever: MPI_Abort ends
// the whole job. Ranks that are done wait, quietly, for the last one (rank 0
// may still be writing its report, or knowledge's continued pretraining).
int ranks_finish(int status) {
    if (status != 0 && g_size > 1) {
        fflush(stdout);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, status);
    }
    if (g_size > 1) ranks_barrier();
    MPI_Finalize();
    return status;
}

int ranks_rank(void) { return g_rank; }
int ranks_size(void) { return g_size; }
int ranks_root(void) { return g_rank == 0; }
int ranks_local_rank(void) { return g_local; }
const char *ranks_note(void) { return g_note; }

// Open MPI's MPI_Wait polls a core flat out; a rank that waits for minutes
// (rank 0 in an M-step, workers between batches) would take it from the ranks
// at work. Waits here nap between tests instead: 0.2 ms, nothing beside jobs
// that take seconds.
static const struct timespec NAP = {0, 200000};

static void wait_quietly(MPI_Request *r) {
    for (int done = 0;;) {
        MPI_Test(r, &done, MPI_STATUS_IGNORE);
        if (done) return;
        nanosleep(&NAP, NULL);
    }
}

void ranks_barrier(void) {
    MPI_Request r;
    MPI_Ibarrier(MPI_COMM_WORLD, &r);
    wait_quietly(&r);
}

// MPI counts in int: large buffers go in pieces of 1 GiB.
static void bcast_bytes(void *p, size_t n) {
    for (size_t off = 0; off < n; off += 1u << 30) {
        size_t len = n - off < (1u << 30) ? n - off : (1u << 30);
        MPI_Bcast((char *)p + off, (int)len, MPI_BYTE, 0, MPI_COMM_WORLD);
    }
}

void ranks_bcast(void *p, size_t n) {
    MPI_Request r;   // the workers wait here between batches: quietly
    MPI_Ibcast(p, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD, &r);
    wait_quietly(&r);
}

void ranks_bcast_floats(float *x, size_t n) { bcast_bytes(x, n * sizeof(float)); }

int ranks_bcast_lora(Lora **l, const Config *c, char *err) {
    struct { int r; unsigned targets; float alpha; } shape = {0, 0, 0};   // r = 0: no adapter
    if (g_rank == 0 && *l) { shape.r = (*l)->r; shape.targets = (*l)->targets; shape.alpha = (*l)->alpha; }
    bcast_bytes(&shape, sizeof shape);
    if (g_rank != 0) {
        *l = NULL;
        if (!shape.r) return 0;
        *l = xcalloc(1, sizeof(Lora));
        if (lora_init(*l, c, shape.r, shape.alpha, shape.targets)) {
            lora_free(*l);
            free(*l);
            *l = NULL;
            return errf(err, "rank %d: out of memory for the policy adapter", g_rank);
        }
    }
    if (shape.r) ranks_bcast_floats((*l)->params.mem, (*l)->params.total);
    return 0;
}

// Job messages: {id, task, sample, attempt}; id -1 ends the batch.
static void send_job(int to, int id, const RankJob *j) {
    int msg[4] = {id, j ? j->task : 0, j ? j->sample : 0, j ? j->attempt : 0};
    MPI_Send(msg, 4, MPI_INT, to, TAG_JOB, MPI_COMM_WORLD);
}

// Result messages: {id, ok} as two ints, then the text with its NUL: the
// result, or the error when ok is 0.
static void send_result(int id, int ok, const char *text) {
    size_t n = strlen(text) + 1;
    char *buf = xmalloc(2 * sizeof(int) + n);
    int head[2] = {id, ok};
    memcpy(buf, head, sizeof head);
    memcpy(buf + sizeof head, text, n);
    MPI_Send(buf, (int)(sizeof head + n), MPI_BYTE, 0, TAG_RESULT, MPI_COMM_WORLD);
    free(buf);
}

// The next result from any worker: its text (malloc'd), id, ok and rank.
static char *recv_result(int *id, int *ok, int *from) {
    MPI_Status st;
    for (int any = 0;;) {   // MPI_Probe would spin: see wait_quietly
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_RESULT, MPI_COMM_WORLD, &any, &st);
        if (any) break;
        nanosleep(&NAP, NULL);
    }
    int n;
    MPI_Get_count(&st, MPI_BYTE, &n);
    char *buf = xmalloc((size_t)n);
    MPI_Recv(buf, n, MPI_BYTE, st.MPI_SOURCE, TAG_RESULT, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    int head[2];
    memcpy(head, buf, sizeof head);
    *id = head[0];
    *ok = head[1];
    *from = st.MPI_SOURCE;
    memmove(buf, buf + sizeof head, n - sizeof head);
    return buf;
}

// A job's self-edits as text, one JSON line each, and back.
static char *edits_text(const Edits *es) {
    StrBuf b = {0};
    for (int i = 0; i < es->n; i++) {
        char *line = edit_to_line(&es->e[i]);
        sb_str(&b, line);
        sb_str(&b, "\n");
        free(line);
    }
    return sb_done(&b);
}

static int edits_parse(char *text, Edits *es, int from, char *err) {
    int rc = 0;
    for (char *line = text, *nl; !rc && *line; line = nl + 1) {
        if (!(nl = strchr(line, '\n'))) return errf(err, "rank %d: a result without its last newline", from);
        *nl = 0;
        Edit e;
        char where[64];
        snprintf(where, sizeof where, "rank %d: result line", from);
        if (!(rc = edit_from_line(line, &e, where, err))) edits_push(es, &e);
    }
    return rc;
}

int ranks_map(const RankJob *jobs, int n, RankWork work, RankRecord record, void *ctx, char *err) {
    if (g_size == 1) return map_here(jobs, n, work, record, ctx, err);
    char **results = xcalloc((size_t)n, sizeof(char *));
    int *by = xcalloc((size_t)n, sizeof(int));   // the rank that did each job
    int next = 0, recorded = 0, busy = 0, stop = n;   // stop: the first job that failed (n: none)
    for (int w = 1; w < g_size && next < n; w++, next++, busy++) send_job(w, next, &jobs[next]);
    while (busy > 0) {
        int id, ok, from;
        char *text = recv_result(&id, &ok, &from);
        busy--;
        if (ok) results[id] = text, by[id] = from;
        else {
            if (id < stop) { stop = id; errf(err, "rank %d: %s", from, text); }
            free(text);
        }
        if (next < stop) { send_job(from, next, &jobs[next]); next++; busy++; }
        for (; recorded < stop && results[recorded]; recorded++) {   // in job order, whoever did them
            Edits es = {0};
            int rc = edits_parse(results[recorded], &es, by[recorded], err) || record(ctx, &jobs[recorded], &es, err);
            edits_free(&es);
            free(results[recorded]);
            results[recorded] = NULL;
            if (rc) { stop = recorded; break; }
        }
    }
    for (int w = 1; w < g_size; w++) send_job(w, -1, NULL);
    for (int i = 0; i < n; i++) free(results[i]);
    free(results);
    free(by);
    return stop < n ? -1 : 0;
}

int ranks_serve(RankWork work, void *ctx, char *err) {
    (void)err;
    for (;;) {
        int msg[4];
        MPI_Request r;
        MPI_Irecv(msg, 4, MPI_INT, 0, TAG_JOB, MPI_COMM_WORLD, &r);
        wait_quietly(&r);
        if (msg[0] < 0) return 0;
        RankJob job = {msg[1], msg[2], msg[3]};
        Edits es = {0};
        char why[ERR_MAX], *text = NULL;
        int ok = work(ctx, &job, &es, why) == 0;
        if (ok && !(text = edits_text(&es))) ok = 0, snprintf(why, sizeof why, "out of memory for a result");
        send_result(msg[0], ok, ok ? text : why);
        edits_free(&es);
        free(text);
    }
}
#endif
