// util.c: see util.h.
#include "util.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int errf(char *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (err) vsnprintf(err, ERR_MAX, fmt, ap);
    va_end(ap);
    return -1;
}

static void out_of_memory(size_t n) {
    fprintf(stderr, "seal: out of memory (%zu bytes)\n", n);
    exit(1);
}
size_t size_mul(size_t count, size_t size) {
    return size && count > SIZE_MAX / size ? SIZE_MAX : count * size;
}
void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) out_of_memory(n);
    return p;
}
void *xcalloc(size_t count, size_t size) {
    size_t n = size_mul(count, size);
    void *p = n == SIZE_MAX ? NULL : calloc(n ? count : 1, n ? size : 1);
    if (!p) out_of_memory(n);
    return p;
}
void *xrealloc(void *p, size_t count, size_t size) {
    size_t n = size_mul(count, size);
    void *q = n == SIZE_MAX ? NULL : realloc(p, n ? n : 1);
    if (!q) out_of_memory(n);
    return q;
}
char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

static struct { int tty, open; double last; } prog = {-1, 0, -1e9};

void progress(int last, const char *fmt, ...) {
    if (prog.tty < 0) prog.tty = isatty(2);
    double now = now_seconds();
    if (!prog.tty && !last && now - prog.last < PROGRESS_SECONDS) return;
    prog.last = now;
    va_list ap;
    va_start(ap, fmt);
    if (prog.tty) fputc('\r', stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(prog.tty ? "   " : "\n", stderr);
    prog.open = prog.tty;
    fflush(stderr);
}

void progress_end(void) {
    if (prog.open) fputc('\n', stderr);
    prog.open = 0;
}

char *read_file(const char *path, size_t *len, char *err) {
    FILE *f = fopen(path, "rb");
    if (!f) { errf(err, "%s: cannot open: %s", path, strerror(errno)); return NULL; }
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 1 >= cap) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);   // a file's contents: sized by the input
            if (!nb) { free(buf); fclose(f); errf(err, "%s: out of memory (%zu bytes)", path, cap); return NULL; }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); errf(err, "%s: read error", path); return NULL; }
    buf[n] = 0;
    if (len) *len = n;
    fingerprint_note(path, buf, n);
    return buf;
}

// The files read while recording: a short list (a run's inputs), searched by path.
static struct { int on, n; char **path; uint64_t *hash; } seen;

void fingerprints_start(void) { seen.on = 1; }

void fingerprint_note(const char *path, const void *data, size_t n) {
    if (!seen.on) return;
    for (int i = 0; i < seen.n; i++)
        if (!strcmp(seen.path[i], path)) return;
    seen.path = xrealloc(seen.path, seen.n + 1, sizeof *seen.path);
    seen.hash = xrealloc(seen.hash, seen.n + 1, sizeof *seen.hash);
    seen.path[seen.n] = xstrdup(path);
    seen.hash[seen.n++] = fnv1a(FNV1A_BASIS, data, n);
}

cJSON *fingerprints_take(void) {
    cJSON *j = cJSON_CreateObject();
    for (int i = 0; i < seen.n; i++) {
        char hex[20];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)seen.hash[i]);
        cJSON_AddStringToObject(j, seen.path[i], hex);
        free(seen.path[i]);
    }
    free(seen.path);
    free(seen.hash);
    memset(&seen, 0, sizeof seen);
    return j;
}

static int fsync_dir_of(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    int fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int af_open(AtomicFile *f, const char *path, char *err) {
    if (snprintf(f->path, sizeof f->path, "%s", path) >= (int)sizeof f->path) return errf(err, "%s: path too long", path);
    snprintf(f->tmp, sizeof f->tmp, "%s.tmp.%d", path, (int)getpid());
    f->failed = 0;
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (f->fd < 0) return errf(err, "%s: cannot create: %s", f->tmp, strerror(errno));
    return 0;
}

int af_write(AtomicFile *f, const void *data, size_t len, char *err) {
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(f->fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) { f->failed = 1; return errf(err, "%s: write failed: %s", f->path, strerror(errno)); }
        p += w; len -= (size_t)w;
    }
    return 0;
}

void af_abort(AtomicFile *f) {
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    unlink(f->tmp);
}

int af_commit(AtomicFile *f, char *err) {
    if (fsync(f->fd) != 0 || close(f->fd) != 0) {
        int e = errno;
        f->fd = -1;
        unlink(f->tmp);
        return errf(err, "%s: fsync failed: %s", f->path, strerror(e));
    }
    f->fd = -1;
    if (rename(f->tmp, f->path) != 0) {
        int e = errno;
        unlink(f->tmp);
        return errf(err, "%s: rename failed: %s", f->path, strerror(e));
    }
    fsync_dir_of(f->path);
    return 0;
}

int write_file_atomic(const char *path, const void *data, size_t len, char *err) {
    AtomicFile f;
    if (af_open(&f, path, err)) return -1;
    if (af_write(&f, data, len, err)) { af_abort(&f); return -1; }
    return af_commit(&f, err);
}

int make_dirs(const char *path, char *err) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return errf(err, "%s: path too long", path);
    for (char *p = tmp + 1; ; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return errf(err, "%s: cannot create directory: %s", tmp, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    return 0;
}

int path_join(char *out, size_t n, const char *dir, const char *name, char *err) {
    if ((size_t)snprintf(out, n, "%s/%s", dir, name) >= n) return errf(err, "%s/%s: path too long", dir, name);
    return 0;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void rng_seed(Rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) {   // splitmix64 fills the state
        seed += 0x9e3779b97f4a7c15ULL;
        uint64_t z = seed;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        r->s[i] = z ^ (z >> 31);
    }
}

uint64_t rng_next(Rng *r) {   // xoshiro256**
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t; s[3] = rotl(s[3], 45);
    return out;
}

void mt_seed(Mt19937 *m, uint32_t seed) {   // init_genrand
    m->mt[0] = seed;
    for (int k = 1; k < 624; k++) m->mt[k] = 1812433253u * (m->mt[k - 1] ^ (m->mt[k - 1] >> 30)) + (uint32_t)k;
    m->i = 624;
}

uint32_t mt_next(Mt19937 *m) {   // genrand_int32
    if (m->i >= 624) {
        for (int k = 0; k < 624; k++) {
            uint32_t y = (m->mt[k] & 0x80000000u) | (m->mt[(k + 1) % 624] & 0x7fffffffu);
            m->mt[k] = m->mt[(k + 397) % 624] ^ (y >> 1) ^ (y & 1 ? 0x9908b0dfu : 0);
        }
        m->i = 0;
    }
    uint32_t y = m->mt[m->i++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    return y ^ (y >> 18);
}

// numpy's random_interval: a uniform draw in 0..max by masked rejection.
static uint32_t mt_interval(Mt19937 *m, uint32_t max) {
    uint32_t mask = max, v;
    if (max == 0) return 0;
    mask |= mask >> 1; mask |= mask >> 2; mask |= mask >> 4; mask |= mask >> 8; mask |= mask >> 16;
    while ((v = mt_next(m) & mask) > max) {}
    return v;
}

void np_shuffle(uint32_t seed, int *a, int n) {   // RandomState.shuffle: Fisher-Yates from the end
    Mt19937 m;
    mt_seed(&m, seed);
    for (int i = n - 1; i > 0; i--) {
        int j = (int)mt_interval(&m, (uint32_t)i), t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

float rng_uniform(Rng *r) { return (float)(rng_next(r) >> 40) / (float)(1 << 24); }

float rng_normal(Rng *r) {   // Box-Muller
    float u = rng_uniform(r), v = rng_uniform(r);
    return sqrtf(-2.0f * logf(1.0f - u)) * cosf(6.2831853f * v);
}

static int by_value(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void bootstrap_mean(const double *x, const double *w, int n, uint64_t seed, double *mean, double *lo, double *hi) {
    enum { B = 2000 };
    double *means = xcalloc(B, sizeof(double)), s = 0, sw = 0;
    for (int i = 0; i < n; i++) s += w ? w[i] * x[i] : x[i], sw += w ? w[i] : 1;
    *mean = sw > 0 ? s / sw : 0;
    Rng r;
    rng_seed(&r, seed);
    for (int b = 0; b < B && n; b++) {
        double t = 0, tw = 0;
        for (int i = 0; i < n; i++) {
            const int j = (int)(rng_next(&r) % (uint64_t)n);
            t += w ? w[j] * x[j] : x[j];
            tw += w ? w[j] : 1;
        }
        means[b] = tw > 0 ? t / tw : 0;
    }
    qsort(means, B, sizeof(double), by_value);
    *lo = n ? means[(int)(0.025 * B)] : 0;
    *hi = n ? means[(int)(0.975 * B) - 1] : 0;
    free(means);
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ ((const uint8_t *)p)[i]) * 0x100000001b3ULL;
    return h;
}

uint64_t hash_str(const char *s) { return fnv1a(FNV1A_BASIS, s, strlen(s)); }

int utf8_next(const char *str, size_t n, int *len) {
    const unsigned char *s = (const unsigned char *)str;
    unsigned c = s[0], lo = 0x80, hi = 0xBF, cp;
    int need;
    if (c < 0x80) { *len = 1; return (int)c; }
    if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { need = 2; cp = c & 0x0F; lo = c == 0xE0 ? 0xA0 : 0x80; hi = c == 0xED ? 0x9F : 0xBF; }
    else if (c >= 0xF0 && c <= 0xF4) { need = 3; cp = c & 0x07; lo = c == 0xF0 ? 0x90 : 0x80; hi = c == 0xF4 ? 0x8F : 0xBF; }
    else { *len = 1; return -1; }
    for (int i = 1; i <= need; i++) {
        if ((size_t)i >= n || s[i] < lo || s[i] > hi) { *len = i; return -1; }
        cp = (cp << 6) | (s[i] & 0x3F);
        lo = 0x80; hi = 0xBF;
    }
    *len = need + 1;
    return (int)cp;
}

int utf8_put(char *out, unsigned cp) {
    static const unsigned char lead[5] = {0, 0, 0xC0, 0xE0, 0xF0};
    int n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (out) {
        for (int i = n - 1; i > 0; i--, cp >>= 6) out[i] = (char)(0x80 | (cp & 0x3F));
        out[0] = (char)(lead[n] | cp);
    }
    return n;
}

// Length of the valid UTF-8 sequence at s (1..4), or 0 when it is not one.
static int utf8_valid_len(const unsigned char *s) {
    if (s[0] < 0x80) return 1;
    int n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 && s[0] < 0xf0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if (n == 3 && ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0))) return 0;   // overlong, surrogate
    if (n == 4 && ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))) return 0;   // overlong, > U+10FFFF
    return n;
}

char *utf8_sanitize(const char *s) {
    size_t n = strlen(s);
    char *out = xmalloc(3 * n + 1), *o = out;   // model output: small
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int k = utf8_valid_len(p);
        if (k) { memcpy(o, p, k); o += k; p += k; }
        else { memcpy(o, "\xef\xbf\xbd", 3); o += 3; p++; }
    }
    *o = 0;
    return out;
}

const char *json_why(const char *text, const char *at, char *buf, size_t n) {
    int depth = 0, in_string = 0;
    for (const char *p = text; at && p < at && *p; p++) {   // depth where cJSON stopped
        if (in_string) { if (*p == '\\' && p[1]) p++; else if (*p == '"') in_string = 0; }
        else if (*p == '"') in_string = 1;
        else if (*p == '[' || *p == '{') depth++;
        else if (*p == ']' || *p == '}') depth--;
    }
    if (depth >= CJSON_NESTING_LIMIT) snprintf(buf, n, "nested deeper than %d levels", CJSON_NESTING_LIMIT);
    else snprintf(buf, n, "at byte %ld", at ? (long)(at - text) : 0L);
    return buf;
}

void sb_add(StrBuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) { b->oom = 1; return; }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

void sb_str(StrBuf *b, const char *s) { sb_add(b, s, strlen(s)); }

char *sb_done(StrBuf *b) {
    if (!b->oom && !b->s) sb_add(b, "", 0);
    if (b->oom) { free(b->s); return NULL; }
    return b->s;
}
