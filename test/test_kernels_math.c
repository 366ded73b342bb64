// test/test_kernels_math.c: the per-element math of the CUDA kernels
// (kernels_math.h), run on the CPU against model.c, train.c and plain
// formulas: bf16 rounding, online softmax, AdamW, RMSNorm, RoPE, SwiGLU,
// cross-entropy, and a whole forward pass composed from them the way
// kernels.cu composes it.
#include "test.h"
#include "kernels_math.h"
#include "train.h"
#include "util.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

// PyTorch's torch.tensor(x, dtype=torch.float32).bfloat16(), as bits.
START_TEST(bf16_rounds_like_torch) {
    const struct { float x; uint16_t bits; } cases[] = {
        {1.0f, 0x3f80},
        {1.00390625f, 0x3f80},      // 1 + 2^-8: a tie, to the even 1.0
        {1.01171875f, 0x3f82},      // 1 + 3 * 2^-8: a tie, to the even 1 + 2^-6
        {3.14159265f, 0x4049},      // 3.140625
        {0.1f, 0x3dcd},             // 0.10009765625
        {-2.7182817f, 0xc02e},      // -2.71875
        {1.0f / 3.0f, 0x3eab},      // 0.333984375
        {65504.0f, 0x4780},         // 65536
        {3.4028235e38f, 0x7f80},    // FLT_MAX rounds up to infinity
        {-INFINITY, 0xff80},
        {1e-40f, 0x0001},           // subnormals stay subnormal
        {-0.0f, 0x8000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) ck_assert_uint_eq(seal_f2bf(cases[i].x), cases[i].bits);
    ck_assert(isnan(seal_bf2f(seal_f2bf(NAN))));
    ck_assert_uint_eq(seal_f2bf(NAN) & 0x7fc0, 0x7fc0);   // quiet
    // Every bf16 value survives the trip through float.
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = seal_bf2f((uint16_t)h);
        if (isnan(f)) continue;
        ck_assert_uint_eq(seal_f2bf(f), h);
    }
    // Rounding is to the nearer neighbour: |x - bf16(x)| <= half an ulp.
    Rng r;
    rng_seed(&r, 1);
    for (int i = 0; i < 100000; i++) {
        const float x = (rng_uniform(&r) - 0.5f) * powf(2.0f, (float)(i % 40) - 20.0f);
        const float y = seal_bf2f(seal_f2bf(x));
        ck_assert(fabsf(x - y) <= fabsf(x) * (1.0f / 256.0f) + 1e-38f);
    }
}
END_TEST

// Online softmax, element by element and block by block, equals the two-pass one.
START_TEST(online_softmax_equals_two_pass) {
    Rng r;
    rng_seed(&r, 2);
    for (int trial = 0; trial < 200; trial++) {
        const int n = 1 + trial % 97;
        float x[97];
        for (int i = 0; i < n; i++) x[i] = rng_uniform(&r) < 0.2f ? -INFINITY : 8.0f * rng_normal(&r);
        double mx = -INFINITY, sum = 0.0;
        for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
        for (int i = 0; i < n; i++) sum += x[i] == -INFINITY ? 0.0 : exp(x[i] - mx);
        float m = -INFINITY, l = 0.0f;   // element by element
        for (int i = 0; i < n; i++) seal_softmax_push(&m, &l, x[i]);
        float bm = -INFINITY, bl = 0.0f;   // blocks of 7, merged
        for (int i0 = 0; i0 < n; i0 += 7) {
            float m2 = -INFINITY, l2 = 0.0f;
            for (int i = i0; i < n && i < i0 + 7; i++) seal_softmax_push(&m2, &l2, x[i]);
            seal_softmax_merge(&bm, &bl, m2, l2);
        }
        float tm = -INFINITY, tl = 0.0f;   // tiles as flash attention walks them: rescale, then add weights
        for (int i0 = 0; i0 < n; i0 += 5) {
            float tile_max = -INFINITY, s = 0.0f;
            for (int i = i0; i < n && i < i0 + 5; i++) tile_max = x[i] > tile_max ? x[i] : tile_max;
            const float m_new = tm > tile_max ? tm : tile_max, alpha = seal_softmax_rescale(tm, m_new);
            for (int i = i0; i < n && i < i0 + 5; i++) s += seal_softmax_weight(x[i], m_new);
            tl = tl * alpha + s;
            tm = m_new;
        }
        if (mx == -INFINITY) {   // all masked
            ck_assert(m == -INFINITY && l == 0.0f && bm == -INFINITY && bl == 0.0f && tl == 0.0f);
            continue;
        }
        ck_assert(m == (float)mx && bm == (float)mx && tm == (float)mx);
        ck_assert_double_le(fabs(l - sum), 1e-5 * sum);
        ck_assert_double_le(fabs(bl - sum), 1e-5 * sum);
        ck_assert_double_le(fabs(tl - sum), 1e-5 * sum);
    }
}
END_TEST

// seal_adamw over a table equals train.c's adamw_step, bit for bit, with and
// without weight decay and gradient clipping.
START_TEST(adamw_matches_train_c) {
    Table params = {0};
    table_add(&params, "a", 7, 13);
    table_add(&params, "b", 1, 29);
    table_alloc(&params);
    Table grads, p2, m2, v2;
    table_like(&grads, &params);
    table_like(&p2, &params);
    table_like(&m2, &params);
    table_like(&v2, &params);
    Rng r;
    rng_seed(&r, 3);
    for (size_t i = 0; i < params.total; i++) p2.mem[i] = params.mem[i] = rng_normal(&r);
    const float wds[2] = {0.0f, 0.1f};
    for (int k = 0; k < 2; k++) {
        AdamW opt;
        adamw_init(&opt, &params, 0.9f, 0.95f, 1e-8f, wds[k]);
        memset(m2.mem, 0, m2.total * sizeof(float));
        memset(v2.mem, 0, v2.total * sizeof(float));
        for (int t = 1; t <= 5; t++) {
            for (size_t i = 0; i < grads.total; i++) grads.mem[i] = (i % 17 == 0 ? 1e-7f : 1e-2f) * rng_normal(&r);
            float *g = malloc(grads.total * sizeof(float));
            memcpy(g, grads.mem, grads.total * sizeof(float));
            const float lr = 1e-3f * t, max_norm = t % 2 ? 0.01f : 0.0f;
            float scale = 1.0f;
            if (max_norm > 0) {   // clip_grad_norm scales the gradients; the GPU folds the factor into AdamW
                const float norm = clip_grad_norm(&grads, max_norm), coef = max_norm / (norm + 1e-6f);
                scale = coef < 1.0f ? coef : 1.0f;
            }
            adamw_step(&opt, &params, &grads, lr);
            const SealAdamW a = seal_adamw_consts(lr, 0.9f, 0.95f, 1e-8f, wds[k], t, scale);
            for (size_t i = 0; i < p2.total; i++) seal_adamw(&p2.mem[i], &m2.mem[i], &v2.mem[i], g[i], &a);
            for (size_t i = 0; i < p2.total; i++) {
                ck_assert_float_eq(p2.mem[i], params.mem[i]);
                ck_assert_float_eq(m2.mem[i], opt.m.mem[i]);
                ck_assert_float_eq(v2.mem[i], opt.v.mem[i]);
            }
            free(g);
        }
        adamw_free(&opt);
    }
    table_free(&params);
    table_free(&grads);
    table_free(&p2);
    table_free(&m2);
    table_free(&v2);
}
END_TEST

// RMSNorm's forward against the formula, its backward against central differences.
START_TEST(rmsnorm_forward_and_backward) {
    enum { D = 24 };
    Rng r;
    rng_seed(&r, 4);
    float x[D], w[D], dout[D];
    for (int i = 0; i < D; i++) {
        x[i] = rng_normal(&r);
        w[i] = 1.0f + 0.1f * rng_normal(&r);
        dout[i] = rng_normal(&r);
    }
    const float eps = 1e-5f;
    float ss = 0.0f, dwx = 0.0f;
    for (int i = 0; i < D; i++) ss += x[i] * x[i];
    const float rstd = seal_rmsnorm_rstd(ss, D, eps);
    double ssd = 0.0;
    for (int i = 0; i < D; i++) ssd += (double)x[i] * x[i];
    for (int i = 0; i < D; i++) {
        const double want = x[i] / sqrt(ssd / D + eps) * w[i];
        ck_assert_double_le(fabs(seal_rmsnorm_out(x[i], rstd, w[i]) - want), 1e-5 * fabs(want) + 1e-7);
        dwx += dout[i] * w[i] * x[i];
    }
    const float k = seal_rmsnorm_k(dwx, rstd, D);
    for (int j = 0; j < D; j++) {   // d/dx_j of sum_i dout_i * out_i, in double
        double f[2];
        for (int s = 0; s < 2; s++) {
            double xs[D], q = 0.0, acc = 0.0;
            for (int i = 0; i < D; i++) xs[i] = x[i] + (i == j ? (s ? 1e-4 : -1e-4) : 0.0);
            for (int i = 0; i < D; i++) q += xs[i] * xs[i];
            for (int i = 0; i < D; i++) acc += dout[i] * xs[i] / sqrt(q / D + eps) * w[i];
            f[s] = acc;
        }
        const double want = (f[1] - f[0]) / 2e-4;
        ck_assert_double_le(fabs(seal_rmsnorm_dx(dout[j], w[j], x[j], rstd, k) - want), 1e-3 * (fabs(want) + 1.0));
    }
}
END_TEST

START_TEST(swiglu_and_its_derivatives) {
    for (float g = -8.0f; g <= 8.0f; g += 0.37f)
        for (float u = -2.0f; u <= 2.0f; u += 0.9f) {
            const double sg = 1.0 / (1.0 + exp(-(double)g));
            ck_assert_double_le(fabs(seal_swiglu(g, u) - g * sg * u), 1e-5 * (fabs(g * u) + 1e-3));
            float dg, du;
            seal_swiglu_backward(1.5f, g, u, &dg, &du);
            const double h = 1e-3;
            const double want_dg = 1.5 * ((g + h) / (1 + exp(-(g + h))) - (g - h) / (1 + exp(-(g - h)))) / (2 * h) * u;
            ck_assert_double_le(fabs(dg - want_dg), 1e-3 * (fabs(want_dg) + 1.0));
            ck_assert_double_le(fabs(du - 1.5 * g * sg), 1e-5 * (fabs(g) + 1.0));
        }
}
END_TEST

// RoPE turns a pair like a complex multiplication; sign -1 turns it back.
START_TEST(rope_rotates_and_unrotates) {
    Rng r;
    rng_seed(&r, 5);
    for (int i = 0; i < 1000; i++) {
        const float x1 = rng_normal(&r), x2 = rng_normal(&r), ang = 100.0f * rng_normal(&r), c = cosf(ang), s = sinf(ang);
        float y1, y2, z1, z2;
        seal_rope(x1, x2, c, s, 1.0f, &y1, &y2);
        ck_assert_double_le(fabs(y1 - (x1 * c - x2 * s)), 1e-6);
        ck_assert_double_le(fabs(y2 - (x2 * c + x1 * s)), 1e-6);
        seal_rope(y1, y2, c, s, -1.0f, &z1, &z2);
        ck_assert_double_le(fabs(z1 - x1) + fabs(z2 - x2), 1e-5 * (fabs(x1) + fabs(x2) + 1.0));
    }
}
END_TEST

// The cross-entropy gradient of a row sums to zero and is softmax - onehot.
START_TEST(cross_entropy_gradient) {
    enum { V = 50 };
    Rng r;
    rng_seed(&r, 6);
    float x[V], m = -INFINITY, l = 0.0f;
    for (int i = 0; i < V; i++) seal_softmax_push(&m, &l, x[i] = 3.0f * rng_normal(&r));
    const int y = 17, n_valid = 3;
    double sum = 0.0, z = 0.0;
    for (int i = 0; i < V; i++) z += exp((double)x[i]);
    for (int i = 0; i < V; i++) {
        const float g = seal_ce_grad(x[i], m, 1.0f / (l * n_valid), i == y, 1.0f / n_valid);
        const double want = (exp((double)x[i]) / z - (i == y)) / n_valid;
        ck_assert_double_le(fabs(g - want), 1e-6);
        sum += g;
    }
    ck_assert_double_le(fabs(sum), 1e-6);
    ck_assert_double_le(fabs(m + logf(l) - x[y] - (log(z) - x[y])), 1e-5);
}
END_TEST

// ----------------------------------------------------------------------------
// A forward pass composed from kernels_math.h the way kernels.cu composes it
// (RMSNorm rows, RoPE from rope_inv_freq, causal attention by online softmax
// over tiles of keys, SwiGLU), in fp32 without bf16 roundings, equals
// model_forward's logits.

static void matvec(const float *W, const float *x, float *y, int out, int in) {   // y = W x, W (out, in)
    for (int o = 0; o < out; o++) {
        float s = 0.0f;
        for (int i = 0; i < in; i++) s += W[(size_t)o * in + i] * x[i];
        y[o] = s;
    }
}

static void norm_row(const float *x, const float *w, float *out, int D, float eps) {
    float ss = 0.0f;
    for (int i = 0; i < D; i++) ss += x[i] * x[i];
    const float r = seal_rmsnorm_rstd(ss, D, eps);
    for (int i = 0; i < D; i++) out[i] = seal_rmsnorm_out(x[i], r, w[i]);
}

static void composed_forward(const Model *m, const int *ids, int T, float *logits) {
    const Config *c = &m->c;
    const int D = c->dim, F = c->hidden, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim, half = hd / 2, V = c->vocab;
    const int Dq = H * hd, Dkv = KV * hd, TILE = 3;
    float *x = calloc((size_t)T * D, sizeof(float)), *xn = malloc(D * sizeof(float)), *q = malloc((size_t)T * Dq * sizeof(float));
    float *k = malloc((size_t)T * Dkv * sizeof(float)), *v = malloc((size_t)T * Dkv * sizeof(float)), *o = malloc(Dq * sizeof(float));
    float *tmp = malloc((D > F ? D : F) * sizeof(float)), *gt = malloc(F * sizeof(float)), *up = malloc(F * sizeof(float));
    float *inv = malloc(half * sizeof(float)), *acc = malloc(hd * sizeof(float));
    rope_inv_freq(c, inv);
    for (int t = 0; t < T; t++) memcpy(x + (size_t)t * D, m->embed + (size_t)ids[t] * D, D * sizeof(float));
    for (int l = 0; l < c->n_layers; l++) {
        const Layer *L = &m->layers[l];
        for (int t = 0; t < T; t++) {
            norm_row(x + (size_t)t * D, L->attn_norm, xn, D, c->norm_eps);
            matvec(L->proj[PROJ_Q].w, xn, q + (size_t)t * Dq, Dq, D);
            matvec(L->proj[PROJ_K].w, xn, k + (size_t)t * Dkv, Dkv, D);
            matvec(L->proj[PROJ_V].w, xn, v + (size_t)t * Dkv, Dkv, D);
            for (int j = 0; j < half; j++) {
                const float ang = (float)t * inv[j], cs = cosf(ang), sn = sinf(ang);
                for (int h = 0; h < H + KV; h++) {
                    float *p = h < H ? q + (size_t)t * Dq + h * hd : k + (size_t)t * Dkv + (h - H) * hd;
                    seal_rope(p[j], p[j + half], cs, sn, 1.0f, &p[j], &p[j + half]);
                }
            }
        }
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < H; h++) {   // keys 0..t in tiles of TILE, online softmax as attention_forward_kernel
                const float *qh = q + (size_t)t * Dq + h * hd;
                float mrow = -INFINITY, lrow = 0.0f;
                memset(acc, 0, hd * sizeof(float));
                for (int s0 = 0; s0 <= t; s0 += TILE) {
                    float sc[TILE], mx = -INFINITY;
                    for (int j = 0; j < TILE; j++) {
                        const int s = s0 + j;
                        sc[j] = -INFINITY;
                        if (s <= t) {
                            float d = 0.0f;
                            for (int i = 0; i < hd; i++) d += qh[i] * k[(size_t)s * Dkv + h / (H / KV) * hd + i];
                            sc[j] = d / sqrtf((float)hd);
                        }
                        mx = sc[j] > mx ? sc[j] : mx;
                    }
                    const float m_new = mrow > mx ? mrow : mx, alpha = seal_softmax_rescale(mrow, m_new);
                    float sum = 0.0f;
                    for (int i = 0; i < hd; i++) acc[i] *= alpha;
                    for (int j = 0; j < TILE; j++) {
                        const float p = seal_softmax_weight(sc[j], m_new);
                        sum += p;
                        if (p > 0.0f)
                            for (int i = 0; i < hd; i++) acc[i] += p * v[(size_t)(s0 + j) * Dkv + h / (H / KV) * hd + i];
                    }
                    lrow = lrow * alpha + sum;
                    mrow = m_new;
                }
                for (int i = 0; i < hd; i++) o[h * hd + i] = acc[i] / lrow;
            }
            matvec(L->proj[PROJ_O].w, o, tmp, D, Dq);
            for (int i = 0; i < D; i++) x[(size_t)t * D + i] += tmp[i];
        }
        for (int t = 0; t < T; t++) {
            float *xt = x + (size_t)t * D;
            norm_row(xt, L->mlp_norm, xn, D, c->norm_eps);
            matvec(L->proj[PROJ_GATE].w, xn, gt, F, D);
            matvec(L->proj[PROJ_UP].w, xn, up, F, D);
            for (int i = 0; i < F; i++) gt[i] = seal_swiglu(gt[i], up[i]);
            matvec(L->proj[PROJ_DOWN].w, gt, tmp, D, F);
            for (int i = 0; i < D; i++) xt[i] += tmp[i];
        }
    }
    for (int t = 0; t < T; t++) {
        norm_row(x + (size_t)t * D, m->norm, xn, D, c->norm_eps);
        matvec(m->lm_head, xn, logits + (size_t)t * V, V, D);
    }
    free(x); free(xn); free(q); free(k); free(v); free(o); free(tmp); free(gt); free(up); free(inv); free(acc);
}

START_TEST(composed_forward_matches_model_forward) {
    for (int variant = 0; variant < 2; variant++) {   // MHA with plain RoPE, GQA with llama3 RoPE
        Config c = tiny_config(variant, variant ? 2 : 1, variant);
        Model m;
        char err[ERR_MAX];
        ck_assert_int_eq(model_init(&m, &c, err), 0);
        model_random(&m, 7 + variant, 0.2f);
        enum { T = 11 };
        int ids[T];
        Rng r;
        rng_seed(&r, 8);
        for (int t = 0; t < T; t++) ids[t] = (int)(rng_next(&r) % (uint64_t)c.vocab);
        Acts a;
        ck_assert_int_eq(acts_init(&a, &m, 1, T, err), 0);
        model_forward(&m, &a, ids, NULL);
        float *ours = malloc((size_t)T * c.vocab * sizeof(float)), mx = 0.0f, diff = 0.0f;
        composed_forward(&m, ids, T, ours);
        for (size_t i = 0; i < (size_t)T * c.vocab; i++) {
            mx = fabsf(a.logits[i]) > mx ? fabsf(a.logits[i]) : mx;
            diff = fabsf(a.logits[i] - ours[i]) > diff ? fabsf(a.logits[i] - ours[i]) : diff;
        }
        ck_assert_float_le(diff, 1e-4f * mx + 1e-6f);
        free(ours);
        acts_free(&a);
        model_free(&m);
    }
}
END_TEST

Suite *kernels_math_suite(void) {
    Suite *s = suite_create("kernels_math");
    add_case(s, "kernels_math", 0, bf16_rounds_like_torch, online_softmax_equals_two_pass, adamw_matches_train_c,
             rmsnorm_forward_and_backward, swiglu_and_its_derivatives, rope_rotates_and_unrotates,
             cross_entropy_gradient, composed_forward_matches_model_forward);
    return s;
}
