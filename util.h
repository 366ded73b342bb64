// util.h: the few helpers every file shares: error messages, whole-file I/O,
// atomic writes, a seeded RNG, a stable hash, UTF-8, a thread's share of work.
#pragma once
#include <stddef.h>
#include <stdint.h>

// Errors travel as text in a caller-owned buffer of ERR_MAX bytes. A function
// that can fail returns 0 on success and -1 after filling err with a message
// that names the file, tensor or key and what was expected. main() prints it as
// "seal: <message>". Nothing below main() exits or prints on its own, with one
// exception: running out of memory for bookkeeping (below).
#define ERR_MAX 512
int errf(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Out of memory, one policy. Bookkeeping (a record, a list of names, one
// sequence's ids) is small next to the model it serves: when even that cannot
// be had, nothing sensible is left to do, so x* print "seal: out of memory
// (N bytes)" and exit(1). Whatever is sized by an input (weights, activations,
// a file's contents, a tokenizer's tables, a batch) uses plain malloc and
// returns an error naming what it was for. xcalloc and xrealloc (count, size)
// also refuse a product that overflows size_t.
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t count, size_t size);
char *xstrdup(const char *s);
// count * size, or SIZE_MAX when it overflows (which no malloc grants).
size_t size_mul(size_t count, size_t size);

// Reads a whole file into a fresh NUL-terminated buffer (*len excludes the NUL).
char *read_file(const char *path, size_t *len, char *err);

// Input fingerprints. Between fingerprints_start() and fingerprints_take(),
// read_file notes every path it reads with the FNV-1a hash of its bytes (loaders
// that map a file instead call fingerprint_note). A run keeps them in run.json
// ("inputs") so a resume can tell when a task, passage or tokenizer file changed.
struct cJSON;
void fingerprints_start(void);
void fingerprint_note(const char *path, const void *data, size_t n);
struct cJSON *fingerprints_take(void);   // {"path": "hex hash"}, and recording stops

// Writes data to path atomically: a temp file beside it, fsync, rename, fsync dir.
int write_file_atomic(const char *path, const void *data, size_t len, char *err);

// mkdir -p; existing directories are fine.
int make_dirs(const char *path, char *err);

// path joined with name into out (size n); fails when it does not fit.
int path_join(char *out, size_t n, const char *dir, const char *name, char *err);

// xoshiro-style seeded RNG: same seed, same stream on every machine.
typedef struct { uint64_t s[4]; } Rng;
void rng_seed(Rng *r, uint64_t seed);
uint64_t rng_next(Rng *r);
float rng_uniform(Rng *r);   // [0, 1)
float rng_normal(Rng *r);    // mean 0, std 1

// numpy's legacy RandomState: MT19937 seeded as np.random.seed(seed) does
// (init_genrand), and RandomState.shuffle of a list of n items. Only to
// reproduce a choice the official SEAL code makes with numpy (fewshot.c's
// task selection), so that the same seed picks the same items.
typedef struct { uint32_t mt[624]; int i; } Mt19937;
void mt_seed(Mt19937 *m, uint32_t seed);
uint32_t mt_next(Mt19937 *m);
void np_shuffle(uint32_t seed, int *a, int n);

// The mean of x[0..n), weighted by w (NULL: all 1), and a 95% percentile
// bootstrap interval for it: 2000 resamples of the n items, seeded (a table's
// rows are resampled over passages, a passage's weight its questions).
void bootstrap_mean(const double *x, const double *w, int n, uint64_t seed, double *mean, double *lo, double *hi);

double now_seconds(void);

// Thread t's share [*a, *b) of n units among nt threads: the parallel
// regions that split a product's outputs by hand.
static inline void share(int n, int t, int nt, int *a, int *b) {
    *a = (int)((long)n * t / nt);
    *b = (int)((long)n * (t + 1) / nt);
}

// Progress of long work on stderr. On a terminal the line is redrawn in place;
// into a file or a pipe, a line goes out every PROGRESS_SECONDS (and always
// when last is set), so a log holds a few lines, not one endless one.
// progress_end finishes an in-place line before other output.
#define PROGRESS_SECONDS 5.0
void progress(int last, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void progress_end(void);

// 64-bit FNV-1a: the stable hash behind seeds and keys that must not move
// between runs or machines. fnv1a continues h over n more bytes; hash_str is
// s's bytes from the standard offset basis.
#define FNV1A_BASIS 0xcbf29ce484222325ULL
uint64_t fnv1a(uint64_t h, const void *p, size_t n);
uint64_t hash_str(const char *s);

// Decodes one UTF-8 character of s (n > 0 bytes left). Returns the code point, or
// -1 for an invalid sequence, with *len its maximal invalid prefix (at least 1),
// the unit that gets one U+FFFD, as Rust's from_utf8_lossy and Python do.
int utf8_next(const char *s, size_t n, int *len);
// Writes cp as UTF-8 into out (NULL: just count); surrogates get their 3-byte
// form. Returns the byte count.
int utf8_put(char *out, unsigned cp);

// A copy of s with every invalid UTF-8 sequence replaced by U+FFFD, so model
// output can go into JSON logs (malloc'd).
char *utf8_sanitize(const char *s);

// Why cJSON refused text, having stopped at `at` (its parse-end pointer):
// "nested deeper than 1000 levels" (cJSON's CJSON_NESTING_LIMIT) or "at byte N".
// Written into buf (n bytes), which is returned.
const char *json_why(const char *text, const char *at, char *buf, size_t n);

// A file written piece by piece and made visible only by af_commit (temp file,
// fsync, rename); af_abort (or a crash) leaves any existing file untouched.
typedef struct { int fd; char path[4096], tmp[4200]; int failed; } AtomicFile;
int af_open(AtomicFile *f, const char *path, char *err);
int af_write(AtomicFile *f, const void *data, size_t len, char *err);
int af_commit(AtomicFile *f, char *err);
void af_abort(AtomicFile *f);

// A growing NUL-terminated string (or byte buffer). After a failed allocation
// it stops growing and remembers it (oom); sb_done then frees it.
typedef struct { char *s; size_t n, cap; int oom; } StrBuf;
void sb_add(StrBuf *b, const char *s, size_t n);
void sb_str(StrBuf *b, const char *s);
char *sb_done(StrBuf *b);   // the string ("" when nothing was added), or NULL when out of memory
