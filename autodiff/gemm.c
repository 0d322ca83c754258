/* gemm.c -- the library's one matrix-product entry point, ad_gemm.
 *
 * Every matmul, linear layer and convolution computes C = op(A) op(B) (or
 * C += op(A) op(B)) here, row-major, with op transposing when its flag is set.
 * Backends, chosen when the library is built (meson option -Dgemm):
 *   openblas  cblas_sgemm / cblas_dgemm (the default dependency);
 *   onednn    dnnl_sgemm for f32 products (oneDNN has no f64 GEMM: f64 goes
 *             to OpenBLAS when present, else to the built-in kernel);
 *   auto      both when found: f32 products pick per shape by the rule in
 *             prefer_onednn (measured on the MLP's GEMM shapes, see
 *             docs/benchmarks.md), f64 goes to OpenBLAS;
 *   builtin   the library's own packed kernel (gemm_packed.c: an AVX2+FMA
 *             f32 microkernel where the CPU has them, a portable one
 *             otherwise and for f64; also what -Dblas=none gives).
 * The choice depends on the shape only, never on a timing taken at run time,
 * so a run is bit-reproducible. The own kernel is not chosen over OpenBLAS
 * or oneDNN, on any CPU: on the AVX2 machine (AMD EPYC, Zen 3) it ran the
 * MLP's hot shapes (fwd1, fwd2, dW1, dW2, dH1 at batch 32 and 256) at
 * 0.88-0.99 of oneDNN's rate, 3 % faster than the best library on none of
 * them (docs/benchmarks.md, "The own kernel against the libraries, AVX2");
 * on AVX-512 machines oneDNN runs at twice the AVX2 rate. */
#include <string.h>

#include "graph_impl.h"

#ifdef AD_HAVE_BLAS
#include <cblas.h>
/* OpenBLAS's own API (not in cblas.h). */
void openblas_set_num_threads(int num_threads);
#endif
#ifdef AD_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif
#ifdef AD_HAVE_OPENMP
#include <omp.h>
#endif

#ifdef AD_HAVE_DNNL
/* Where oneDNN's sgemm is faster than OpenBLAS's on this project's machines
 * (bench/sgemm_rate --compare, one thread, best of 7): every MLP shape except
 * the thin ones (N < 32 columns: the 10-class output layer and its weight
 * gradient), where OpenBLAS's small-matrix path wins by 10-50 %. Without
 * OpenBLAS every f32 product goes to oneDNN. */
static bool prefer_onednn(bool ta, bool tb, ad_mm_dims d)
{
    (void)ta;
    (void)tb;
#ifdef AD_HAVE_BLAS
    return d.n >= 32;
#else
    (void)d;
    return true;
#endif
}
#endif

/* Threads asked for with ad_set_threads; 0 until it is called. */
int ad_threads_requested = 0;
#ifdef AD_HAVE_OPENMP
_Thread_local bool ad_in_group = false;
/* the OpenMP team was sized by ad_set_threads (omp_set_num_threads) */
static bool omp_team_set;
#endif

#ifdef AD_HAVE_DNNL
/* oneDNN's sgemm runs on an OpenMP team as wide as the machine unless the
 * thread count was set. Its idle threads spin: on a busy machine (parallel
 * test runs, other jobs) they take the CPU from the thread doing the work —
 * measured 30 steps of the LSTM character model at 167 s instead of 0.8 s.
 * So oneDNN is used once ad_set_threads chose the team, or when it is the
 * only fast backend. */
static bool onednn_allowed(void)
{
#ifdef AD_HAVE_BLAS
#ifdef AD_HAVE_OPENMP
    /* oneDNN's team is the OpenMP runtime's: used once its size was set */
    return ad_threads_requested > 0 && omp_team_set;
#else
    return ad_threads_requested > 0;
#endif
#else
    return true;
#endif
}
#endif

/* One block on the calling thread. The backends run single-threaded once
 * ad_set_threads was called (see there), so a block's every element is one
 * dot product in the order of k, the same whichever block it falls in. */
static void gemm_run(ad_dtype dt, const ad_gemm_block *g)
{
#ifdef AD_HAVE_DNNL
    ad_mm_dims d = {g->m, g->k, g->n};
    if (dt == AD_F32 && onednn_allowed() && prefer_onednn(g->ta, g->tb, d) &&
        dnnl_sgemm(g->ta ? 'T' : 'N', g->tb ? 'T' : 'N', g->m, g->n, g->k, (float)g->alpha, g->A,
                   g->lda, g->B, g->ldb, g->acc ? 1.0f : 0.0f, g->C, g->ldc) == dnnl_success)
        return; /* on failure (out of memory) the next backend computes it */
#endif
#ifdef AD_HAVE_BLAS
    const enum CBLAS_TRANSPOSE ta = g->ta ? CblasTrans : CblasNoTrans,
                               tb = g->tb ? CblasTrans : CblasNoTrans;
    const int M = (int)g->m, N = (int)g->n, K = (int)g->k;
    if (dt == AD_F32)
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, (float)g->alpha, g->A, (int)g->lda, g->B,
                    (int)g->ldb, g->acc ? 1.0f : 0.0f, g->C, (int)g->ldc);
    else
        cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, g->alpha, g->A, (int)g->lda, g->B, (int)g->ldb,
                    g->acc ? 1.0 : 0.0, g->C, (int)g->ldc);
#else
    ad_gemm_packed(dt, g);
#endif
}

/* Blocks start at multiples of these rows or columns of C: whole register
 * tiles of the backends' kernels (both are column-major inside: a row-major
 * C's columns are their 16-float vectors, its rows their 4- or 8-wide
 * unroll), small enough to keep the blocks even (784 rows: 392 + 392). */
#define GEMM_SPLIT_ALIGN_ROWS 8
#define GEMM_SPLIT_ALIGN_COLS 16

#ifdef AD_HAVE_OPENMP
/* The split rule's thresholds (see gemm_split): at least 2^17
 * multiply-adds (AD_SPLIT_MIN_MACS, graph_impl.h: about 1 µs on one core;
 * the MLP's 256 x 10 products at batch 256, 2.6·10^5, took 6-7 µs split on
 * two threads against 9-10 µs on one, best per step), and at least 64 rows
 * (else 64 columns) per thread (its 100 x 10 weight gradient split as
 * 48 + 52 rows was slower). */
#define GEMM_SPLIT_ROWS 64
#define GEMM_SPLIT_COLS 64

/* How a product is split over t > 1 threads: 'r' (blocks of rows of C), 'c'
 * (blocks of columns) or 0 (one thread computes it). Never over k, so every
 * element is summed by one thread in the order one thread would use: the
 * result is the same for any thread count. The rule is measured with
 * bench/sgemm_rate (SGEMM_THREADS=2; docs/benchmarks.md, "Two threads"). */
static char gemm_split(ad_mm_dims d, int t)
{
    /* a block's work must pay for waking a thread (a few microseconds) */
    if ((double)d.m * (double)d.n * (double)d.k < AD_SPLIT_MIN_MACS)
        return 0;
    if (d.m >= (int64_t)t * GEMM_SPLIT_ROWS)
        return 'r';
    if (d.n >= (int64_t)t * GEMM_SPLIT_COLS)
        return 'c';
    return 0;
}
#endif

void ad_gemm(ad_dtype dt, bool ta, bool tb, bool acc, ad_mm_dims d, const void *A, const void *B,
             void *C)
{
    ad_gemm_rows(dt, ta, tb, 1.0, acc, d, A, B, C, NULL);
}

/* The hook's pre or post pass over rows [lo, hi), if it has one. */
static void run_hook(const ad_gemm_hook *h, bool post, int64_t lo, int64_t hi)
{
    void (*fn)(void *, int64_t, int64_t) = !h ? NULL : post ? h->post : h->pre;
    if (fn && hi > lo)
        fn(h->ctx, lo, hi);
}

void ad_gemm_rows(ad_dtype dt, bool ta, bool tb, double alpha, bool acc, ad_mm_dims d,
                  const void *A, const void *B, void *C, const ad_gemm_hook *hook)
{
    const size_t es = dt == AD_F32 ? sizeof(float) : sizeof(double);
    if (d.m == 0 || d.n == 0)
        return; /* rows of no element: nothing for the hook either */
    if (d.k == 0) {
        run_hook(hook, false, 0, d.m);
        if (!acc)
            memset(C, 0, es * (size_t)(d.m * d.n));
        run_hook(hook, true, 0, d.m);
        return;
    }
    const ad_gemm_block whole = {ta,  tb, acc, alpha, d.m, d.n, d.k, ta ? d.m : d.k, tb ? d.k : d.n,
                                 d.n, A,  B,   C};
#ifdef AD_HAVE_OPENMP
    const int t = ad_threads_requested;
    const char split = AD_SPLIT_HERE() ? gemm_split(d, t) : 0;
    if (split) {
        if (split == 'c')
            run_hook(hook, false, 0, d.m);
        const int64_t len = split == 'r' ? d.m : d.n;
        const int64_t align = split == 'r' ? GEMM_SPLIT_ALIGN_ROWS : GEMM_SPLIT_ALIGN_COLS;
        AD_OMP_TEAM(t);
#pragma omp parallel
        {
            /* block i of nt (the team may be smaller than asked for):
               [len·i/nt, len·(i+1)/nt) with inner bounds rounded down to
               whole tiles */
            const int i = omp_get_thread_num(), nt = omp_get_num_threads();
            const int64_t lo = len * i / nt / align * align;
            const int64_t hi = i == nt - 1 ? len : len * (i + 1) / nt / align * align;
            ad_gemm_block g = whole;
            if (split == 'r') {
                g.m = hi - lo;
                g.A = (const char *)A + es * (size_t)(ta ? lo : lo * whole.lda);
                g.C = (char *)C + es * (size_t)(lo * whole.ldc);
            } else {
                g.n = hi - lo;
                g.B = (const char *)B + es * (size_t)(tb ? lo * whole.ldb : lo);
                g.C = (char *)C + es * (size_t)lo;
            }
            /* by rows, the hook's passes over this thread's rows run here,
               unsplit (ad_in_group), while the block is in this core's cache */
            ad_in_group = true;
            if (split == 'r')
                run_hook(hook, false, lo, hi);
            if (hi > lo)
                gemm_run(dt, &g);
            if (split == 'r')
                run_hook(hook, true, lo, hi);
            ad_in_group = false;
        }
        AD_OMP_TEAM_END();
        if (split == 'c')
            run_hook(hook, true, 0, d.m);
        return;
    }
#endif
    run_hook(hook, false, 0, d.m);
    gemm_run(dt, &whole);
    run_hook(hook, true, 0, d.m);
}

#ifdef AD_HAVE_DNNL
/* Products against held weights (ad_graph_hold_leaves): oneDNN's matmul
 * primitive with its weights reordered, once per hold, into the blocked
 * layout its kernel reads, bias added and ReLU applied in its epilogue.
 * Against dnnl_sgemm, which packs B again on every call, on the MLP's
 * evaluation chunks (220 x 784 x 300, one thread): 0.60 against 0.66 ms
 * (docs/benchmarks.md, "Inference with held weights").
 *
 * Split over t threads (when gemm_split splits the product), always by rows
 * of C: the weights are packed into one buffer, each thread reordering its
 * share of their rows (of k), and each thread multiplies its rows of A by
 * them. The kernel sums every element in the same order whatever block of
 * rows it falls in, so the results are the same for any thread count (split
 * by columns they were not; a product with fewer than 16 rows per thread
 * runs on one thread). One
 * entry per call site, block shape and block; a graph computes a handful,
 * so the table is small and searched in order. An entry is used by one
 * thread at a time (its block's), with its own memory objects, scratchpad
 * and stream: oneDNN's memory objects take each call's pointers, and its
 * shared scratchpad belongs to the thread that made the primitive. */
#define GEMM_HELD_ENTRIES 32
#define GEMM_HELD_SLOTS 4       /* threads a held product splits over at most */
#define GEMM_HELD_SPLIT_ROWS 16 /* rows per thread at least, else one thread */

typedef struct {
    /* the key: call site (weights and bias), block shape, block */
    const void *B, *bias;
    int64_t m, k, n;
    int slot, parts;  /* block slot of parts */
    int64_t batch;    /* > 0: an ad_gemm_batched entry (B, bias, relu unused) */
    bool ta, tb, acc; /* a batched entry's transposes and accumulation */
    bool relu;
    uint64_t epoch; /* the hold whose weights it packed; 0: none yet */
    /* part: this block's share of the packing, rows [klo, khi) of B into
       slot 0's `wei` (NULL: an empty share); wei: the packed weights the
       product reads, slot 0's own buffer */
    dnnl_primitive_t matmul, part;
    dnnl_memory_t src, plain, packed_part, wei, bias_mem, dst, scratch; /* batched: src, plain
                                                                           (B), dst */
} gemm_held;

struct gemm_cache {
    dnnl_engine_t engine;
    dnnl_stream_t stream[GEMM_HELD_SLOTS];
    int used;
    gemm_held e[GEMM_HELD_ENTRIES];
};

/* One thread's block of rows of a held product: C (m, n) = A (m, k) B + bias;
 * of a batched product: its share of the batch, C_b = op(A_b) op(B_b). */
typedef struct {
    const void *A, *B; /* B: a batched block's (a held product's is packed) */
    void *C;
} held_block;

/* Destroys h's oneDNN objects (its key stays: an entry without a primitive
 * is one oneDNN refused). */
static void held_free(gemm_held *h)
{
    dnnl_primitive_destroy(h->matmul);
    dnnl_primitive_destroy(h->part);
    dnnl_memory_destroy(h->src);
    dnnl_memory_destroy(h->plain);
    dnnl_memory_destroy(h->packed_part);
    dnnl_memory_destroy(h->wei);
    dnnl_memory_destroy(h->bias_mem);
    dnnl_memory_destroy(h->dst);
    dnnl_memory_destroy(h->scratch);
    h->matmul = h->part = NULL;
    h->src = h->plain = h->packed_part = h->wei = h->bias_mem = h->dst = h->scratch = NULL;
}

/* The end of making entry h: what only the making needed destroyed, and h
 * emptied when it failed (!ok); returns ok */
static bool made(gemm_held *h, bool ok, dnnl_primitive_desc_t pd, dnnl_post_ops_t po,
                 dnnl_primitive_attr_t attr)
{
    dnnl_primitive_desc_destroy(pd);
    dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    if (!ok)
        held_free(h);
    return ok;
}

/* The reorder of entry h's share of the weights, rows [lo, hi) of k: whole
 * blocks of the packed layout pmd's rows; false when oneDNN cannot. */
static bool held_make_part(struct gemm_cache *c, gemm_held *h, const dnnl_memory_desc_t *wmd,
                           const dnnl_memory_desc_t *pmd, const_dnnl_primitive_attr_t attr,
                           dnnl_primitive_desc_t *rpd)
{
    int64_t kb = 1; /* the packed layout's block of rows */
    if (pmd->format_kind == dnnl_blocked)
        for (int i = 0; i < pmd->format_desc.blocking.inner_nblks; i++)
            if (pmd->format_desc.blocking.inner_idxs[i] == 0)
                kb *= pmd->format_desc.blocking.inner_blks[i];
    const int64_t lo = h->k * h->slot / h->parts / kb * kb;
    const int64_t hi = h->slot == h->parts - 1 ? h->k : h->k * (h->slot + 1) / h->parts / kb * kb;
    if (hi <= lo)
        return true;
    dnnl_dims_t dims = {hi - lo, h->n}, offs = {lo, 0};
    dnnl_memory_desc_t from, to;
    return dnnl_memory_desc_init_submemory(&from, wmd, dims, offs) == dnnl_success &&
           dnnl_memory_desc_init_submemory(&to, pmd, dims, offs) == dnnl_success &&
           dnnl_reorder_primitive_desc_create(rpd, &from, c->engine, &to, c->engine, attr) ==
               dnnl_success &&
           dnnl_primitive_create(&h->part, *rpd) == dnnl_success &&
           dnnl_memory_create(&h->plain, &from, c->engine, DNNL_MEMORY_NONE) == dnnl_success &&
           dnnl_memory_create(&h->packed_part, &to, c->engine, DNNL_MEMORY_NONE) == dnnl_success;
}

/* One scratchpad for entry h's product (pd) and reorder (rpd, may be NULL),
 * the larger of the two. */
static bool held_make_scratch(struct gemm_cache *c, gemm_held *h, const_dnnl_primitive_desc_t pd,
                              const_dnnl_primitive_desc_t rpd)
{
    const dnnl_memory_desc_t *sm = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    const dnnl_memory_desc_t *rm =
        rpd ? dnnl_primitive_desc_query_md(rpd, dnnl_query_scratchpad_md, 0) : NULL;
    if (!sm || (rm && dnnl_memory_desc_get_size(rm) > dnnl_memory_desc_get_size(sm)))
        sm = rm;
    return !sm || dnnl_memory_desc_get_size(sm) == 0 ||
           dnnl_memory_create(&h->scratch, sm, c->engine, DNNL_MEMORY_ALLOCATE) == dnnl_success;
}

/* Creates the primitives and memories of entry h for its key; false (h left
 * empty) when oneDNN cannot (no kernel for the shape, out of memory). */
static bool held_make(struct gemm_cache *c, gemm_held *h)
{
    dnnl_dims_t sd = {h->m, h->k}, wd = {h->k, h->n}, dd = {h->m, h->n}, bd = {1, h->n};
    dnnl_memory_desc_t smd, wmd, wany, dmd, bmd;
    dnnl_matmul_desc_t desc;
    dnnl_primitive_attr_t attr = NULL, rattr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL, rpd = NULL;
    /* scratchpads given per entry (user mode), not oneDNN's per-thread one;
       the reorder's attributes without the product's ReLU */
    bool ok =
        dnnl_memory_desc_init_by_tag(&smd, 2, sd, dnnl_f32, dnnl_ab) == dnnl_success &&
        dnnl_memory_desc_init_by_tag(&wmd, 2, wd, dnnl_f32, dnnl_ab) == dnnl_success &&
        dnnl_memory_desc_init_by_tag(&wany, 2, wd, dnnl_f32, dnnl_format_tag_any) == dnnl_success &&
        dnnl_memory_desc_init_by_tag(&dmd, 2, dd, dnnl_f32, dnnl_ab) == dnnl_success &&
        dnnl_memory_desc_init_by_tag(&bmd, 2, bd, dnnl_f32, dnnl_ab) == dnnl_success &&
        dnnl_matmul_desc_init(&desc, &smd, &wany, &bmd, &dmd) == dnnl_success &&
        dnnl_primitive_attr_create(&attr) == dnnl_success &&
        dnnl_primitive_attr_create(&rattr) == dnnl_success &&
        dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success &&
        dnnl_primitive_attr_set_scratchpad_mode(rattr, dnnl_scratchpad_mode_user) == dnnl_success &&
        dnnl_post_ops_create(&po) == dnnl_success &&
        (!h->relu ||
         (dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f) == dnnl_success &&
          dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success)) &&
        dnnl_primitive_desc_create(&pd, &desc, attr, c->engine, NULL) == dnnl_success;
    const dnnl_memory_desc_t *pmd =
        ok ? dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0) : NULL;
    ok = ok && pmd && dnnl_primitive_create(&h->matmul, pd) == dnnl_success &&
         dnnl_memory_create(&h->wei, pmd, c->engine,
                            h->slot == 0 ? DNNL_MEMORY_ALLOCATE : DNNL_MEMORY_NONE) ==
             dnnl_success &&
         held_make_part(c, h, &wmd, pmd, rattr, &rpd) && held_make_scratch(c, h, pd, rpd) &&
         dnnl_memory_create(&h->src, &smd, c->engine, DNNL_MEMORY_NONE) == dnnl_success &&
         dnnl_memory_create(&h->bias_mem, &bmd, c->engine, DNNL_MEMORY_NONE) == dnnl_success &&
         dnnl_memory_create(&h->dst, &dmd, c->engine, DNNL_MEMORY_NONE) == dnnl_success;
    dnnl_primitive_desc_destroy(rpd);
    dnnl_primitive_attr_destroy(rattr);
    return made(h, ok, pd, po, attr);
}

/* The position of the entry with key's key in c's table, -1 when none. */
static int held_find(const struct gemm_cache *c, const gemm_held *key)
{
    for (int i = 0; i < c->used; i++) {
        const gemm_held *h = &c->e[i];
        if (h->B == key->B && h->bias == key->bias && h->relu == key->relu && h->m == key->m &&
            h->k == key->k && h->n == key->n && h->slot == key->slot && h->parts == key->parts &&
            h->batch == key->batch && h->ta == key->ta && h->tb == key->tb && h->acc == key->acc)
            return i;
    }
    return -1;
}

/* g's table with its engine and t streams, made on first use; NULL for an
 * f64 graph or when oneDNN cannot make them */
static struct gemm_cache *cache_ready(ad_graph *g, int t)
{
    struct gemm_cache *c = g->gemm_cache;
    if (!c) /* an f64 graph */
        return NULL;
    if (!c->engine && dnnl_engine_create(&c->engine, dnnl_cpu, 0) != dnnl_success)
        return NULL;
    for (int i = 0; i < t; i++)
        if (!c->stream[i] &&
            dnnl_stream_create(&c->stream[i], c->engine, dnnl_stream_default_flags) != dnnl_success)
            return NULL;
    return c;
}

/* The entries matching keys[0..t) (same call site or batch, shape, flags
 * and block), made by `make` where there is none, the oldest entries going
 * when the table is full, into h; false when oneDNN cannot compute one of
 * them (the caller's usual product computes the whole; an entry oneDNN
 * refused stays refused). Runs on the calling thread, before a split
 * product's threads start: the table changes only here. */
static bool cache_entries(struct gemm_cache *c, const gemm_held *keys, int t,
                          bool (*make)(struct gemm_cache *, gemm_held *), gemm_held **h)
{
    int missing = 0;
    for (int i = 0; i < t; i++)
        missing += held_find(c, &keys[i]) < 0;
    if (c->used + missing > GEMM_HELD_ENTRIES) { /* full: the oldest entries go */
        const int drop = c->used + missing - GEMM_HELD_ENTRIES;
        for (int i = 0; i < drop; i++)
            held_free(&c->e[i]);
        memmove(c->e, c->e + drop, sizeof c->e[0] * (size_t)(c->used - drop));
        c->used -= drop;
    }
    bool ok = true;
    for (int i = 0; i < t; i++) {
        int at = held_find(c, &keys[i]);
        if (at < 0) {
            at = c->used++;
            c->e[at] = keys[i];
            make(c, &c->e[at]); /* refused: remembered without a primitive */
        }
        ok = ok && c->e[at].matmul;
    }
    /* pointers only once the table no longer moves */
    for (int i = 0; ok && i < t; i++)
        h[i] = &c->e[held_find(c, &keys[i])];
    return ok;
}

/* Creates the batched matmul of entry h: (batch, m, k) times (batch, k, n)
 * into (batch, m, n), every matrix dense row-major (a transposed operand:
 * its transpose is), the batch's matrices side by side; C += through a sum
 * post-op when acc. oneDNN's brgemm kernel takes such dense layouts only (a
 * gap between the matrices, or rows longer than the matrix, and it falls
 * back to a loop of its sgemm). False (h left empty) when oneDNN cannot. */
static bool batched_make(struct gemm_cache *c, gemm_held *h)
{
    const int64_t m = h->m, k = h->k, n = h->n;
    dnnl_dims_t ad = {h->batch, m, k}, bd = {h->batch, k, n}, cd = {h->batch, m, n};
    dnnl_dims_t as = {m * k, h->ta ? 1 : k, h->ta ? m : 1};
    dnnl_dims_t bs = {k * n, h->tb ? 1 : n, h->tb ? k : 1}, cs = {m * n, n, 1};
    dnnl_memory_desc_t amd, bmd, cmd;
    dnnl_matmul_desc_t desc;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    /* a scratchpad per entry (user mode), as held_make: each slot's entry
       runs on its own thread */
    bool ok =
        dnnl_memory_desc_init_by_strides(&amd, 3, ad, dnnl_f32, as) == dnnl_success &&
        dnnl_memory_desc_init_by_strides(&bmd, 3, bd, dnnl_f32, bs) == dnnl_success &&
        dnnl_memory_desc_init_by_strides(&cmd, 3, cd, dnnl_f32, cs) == dnnl_success &&
        dnnl_matmul_desc_init(&desc, &amd, &bmd, NULL, &cmd) == dnnl_success &&
        dnnl_primitive_attr_create(&attr) == dnnl_success &&
        dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success &&
        dnnl_post_ops_create(&po) == dnnl_success &&
        (!h->acc || (dnnl_post_ops_append_sum(po, 1.0f) == dnnl_success &&
                     dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success)) &&
        dnnl_primitive_desc_create(&pd, &desc, attr, c->engine, NULL) == dnnl_success &&
        dnnl_primitive_create(&h->matmul, pd) == dnnl_success &&
        held_make_scratch(c, h, pd, NULL) &&
        dnnl_memory_create(&h->src, &amd, c->engine, DNNL_MEMORY_NONE) == dnnl_success &&
        dnnl_memory_create(&h->plain, &bmd, c->engine, DNNL_MEMORY_NONE) == dnnl_success &&
        dnnl_memory_create(&h->dst, &cmd, c->engine, DNNL_MEMORY_NONE) == dnnl_success;
    return made(h, ok, pd, po, attr);
}

/* Entry h's share of packing the weights B into `packed` (slot 0's buffer). */
static bool held_pack(gemm_held *h, dnnl_stream_t s, const void *B, void *packed)
{
    if (!h->part) /* an empty share */
        return true;
    dnnl_exec_arg_t ra[3] = {{DNNL_ARG_FROM, h->plain},
                             {DNNL_ARG_TO, h->packed_part},
                             {DNNL_ARG_SCRATCHPAD, h->scratch}};
    return dnnl_memory_set_data_handle(h->packed_part, packed) == dnnl_success &&
           dnnl_memory_set_data_handle(h->plain, (void *)(uintptr_t)B) == dnnl_success &&
           dnnl_primitive_execute(h->part, s, h->scratch ? 3 : 2, ra) == dnnl_success &&
           dnnl_stream_wait(s) == dnnl_success;
}

/* Block b's products by batched entry h. */
static bool batched_product(gemm_held *h, dnnl_stream_t s, const held_block *b)
{
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, h->src},
                               {DNNL_ARG_WEIGHTS, h->plain},
                               {DNNL_ARG_DST, h->dst},
                               {DNNL_ARG_SCRATCHPAD, h->scratch}};
    return dnnl_memory_set_data_handle(h->src, (void *)(uintptr_t)b->A) == dnnl_success &&
           dnnl_memory_set_data_handle(h->plain, (void *)(uintptr_t)b->B) == dnnl_success &&
           dnnl_memory_set_data_handle(h->dst, b->C) == dnnl_success &&
           dnnl_primitive_execute(h->matmul, s, h->scratch ? 4 : 3, args) == dnnl_success &&
           dnnl_stream_wait(s) == dnnl_success;
}

/* Block b's product by entry h on the weights packed in `packed` (a batched
 * entry: its products, bias and packed unused). */
static bool held_product(gemm_held *h, dnnl_stream_t s, const held_block *b, const void *bias,
                         void *packed)
{
    if (h->batch > 0)
        return batched_product(h, s, b);
    dnnl_exec_arg_t ma[5] = {{DNNL_ARG_SRC, h->src},
                             {DNNL_ARG_WEIGHTS, h->wei},
                             {DNNL_ARG_BIAS, h->bias_mem},
                             {DNNL_ARG_DST, h->dst},
                             {DNNL_ARG_SCRATCHPAD, h->scratch}};
    return (h->slot == 0 || dnnl_memory_set_data_handle(h->wei, packed) == dnnl_success) &&
           dnnl_memory_set_data_handle(h->src, (void *)(uintptr_t)b->A) == dnnl_success &&
           dnnl_memory_set_data_handle(h->bias_mem, (void *)(uintptr_t)bias) == dnnl_success &&
           dnnl_memory_set_data_handle(h->dst, b->C) == dnnl_success &&
           dnnl_primitive_execute(h->matmul, s, h->scratch ? 5 : 4, ma) == dnnl_success &&
           dnnl_stream_wait(s) == dnnl_success;
}

#ifdef AD_HAVE_OPENMP
/* The t blocks of a product: each thread packs its share of the weights
 * (when pack), all wait, then each multiplies its rows (a batched
 * product's blocks: their shares of the batch); ok[i]: block i computed.
 * Block i on thread i mod nt (the team may be smaller than asked for);
 * oneDNN runs on one thread inside. */
static bool held_run_split(struct gemm_cache *c, gemm_held **h, const held_block *blk, int t,
                           const void *B, const void *bias, bool pack, void *packed,
                           bool ok[GEMM_HELD_SLOTS])
{
    AD_OMP_TEAM(t);
#pragma omp parallel
    {
        const int i = omp_get_thread_num(), nt = omp_get_num_threads();
        AD_OMP_TEAM_END();
        ad_in_group = true;
        for (int j = i; j < t; j += nt)
            ok[j] = !pack || held_pack(h[j], c->stream[j], B, packed);
        if (pack) {
#pragma omp barrier
        }
        for (int j = i; j < t; j += nt)
            ok[j] = ok[j] && held_product(h[j], c->stream[j], &blk[j], bias, packed);
        ad_in_group = false;
    }
    AD_OMP_TEAM_END();
    for (int j = 0; j < t; j++)
        if (!ok[j])
            return false;
    return true;
}
#endif
#endif

bool ad_gemm_held(ad_graph *g, ad_mm_dims d, const void *A, const void *B, const void *bias,
                  bool relu, void *C)
{
#ifdef AD_HAVE_DNNL
    if (!g->leaves_held || g->dtype != AD_F32 || !onednn_allowed() || d.m == 0 || d.n == 0 ||
        d.k == 0)
        return false;
    int t = 1;
#ifdef AD_HAVE_OPENMP
    if (AD_SPLIT_HERE() && gemm_split(d, ad_threads_requested) &&
        d.m >= (int64_t)ad_threads_requested * GEMM_HELD_SPLIT_ROWS)
        t = ad_threads_requested;
#endif
    if (t > GEMM_HELD_SLOTS)
        return false; /* more threads than the table has streams: the usual product */
    gemm_held keys[GEMM_HELD_SLOTS], *h[GEMM_HELD_SLOTS];
    held_block blk[GEMM_HELD_SLOTS];
    for (int i = 0; i < t; i++) {
        /* rows [m·i/t, m·(i+1)/t), inner bounds rounded down to whole tiles
           (as in ad_gemm_rows) */
        const int64_t lo = d.m * i / t / GEMM_SPLIT_ALIGN_ROWS * GEMM_SPLIT_ALIGN_ROWS;
        const int64_t hi =
            i == t - 1 ? d.m : d.m * (i + 1) / t / GEMM_SPLIT_ALIGN_ROWS * GEMM_SPLIT_ALIGN_ROWS;
        blk[i] = (held_block){(const float *)A + lo * d.k, NULL, (float *)C + lo * d.n};
        keys[i] = (gemm_held){.B = B,
                              .bias = bias,
                              .m = hi - lo,
                              .k = d.k,
                              .n = d.n,
                              .slot = i,
                              .parts = t,
                              .relu = relu};
    }
    struct gemm_cache *c = cache_ready(g, t);
    if (!c || !cache_entries(c, keys, t, held_make, h))
        return false;
    void *packed = NULL;
    if (dnnl_memory_get_data_handle(h[0]->wei, &packed) != dnnl_success)
        return false;
    /* every block's kernel must read the weights in the one layout they are
       packed in (oneDNN picks it per primitive; blocks differ in rows only) */
    const dnnl_memory_desc_t *w0 = NULL, *wi = NULL;
    for (int i = 1; i < t; i++)
        if (dnnl_memory_get_memory_desc(h[0]->wei, &w0) != dnnl_success ||
            dnnl_memory_get_memory_desc(h[i]->wei, &wi) != dnnl_success ||
            !dnnl_memory_desc_equal(w0, wi))
            return false;
    /* the blocks pack together (each entry may have been remade alone) */
    bool pack = false, ok = false;
    for (int i = 0; i < t; i++)
        pack = pack || h[i]->epoch != g->held_epoch;
    if (t == 1)
        ok = (!pack || held_pack(h[0], c->stream[0], B, packed)) &&
             held_product(h[0], c->stream[0], &blk[0], bias, packed);
#ifdef AD_HAVE_OPENMP
    else {
        bool done[GEMM_HELD_SLOTS];
        ok = held_run_split(c, h, blk, t, B, bias, pack, packed, done);
    }
#endif
    for (int i = 0; i < t; i++)
        h[i]->epoch = ok ? g->held_epoch : 0;
    return ok; /* false: the usual product writes all of C again */
#else
    (void)g, (void)d, (void)A, (void)B, (void)bias, (void)relu, (void)C;
    return false;
#endif
}

/* The batch's products one at a time, each by ad_gemm (ad_gemm_batched's
 * layout, elements of es bytes) */
static void gemm_each(ad_dtype dt, size_t es, bool ta, bool tb, bool acc, ad_mm_dims d,
                      int64_t batch, const char *A, const char *B, char *C)
{
    for (int64_t b = 0; b < batch; b++)
        ad_gemm(dt, ta, tb, acc, d, A + (size_t)(b * d.m * d.k) * es,
                B + (size_t)(b * d.k * d.n) * es, C + (size_t)(b * d.m * d.n) * es);
}

#ifdef AD_HAVE_DNNL
/* ad_gemm_batched by oneDNN's batched matmul; false, nothing written, when
 * that path does not apply (ad_gemm_batched's list) */
static bool batched_onednn(ad_graph *g, bool ta, bool tb, bool acc, ad_mm_dims d, int64_t batch,
                           const void *A, const void *B, void *C)
{
    if (g->dtype != AD_F32 || !onednn_allowed() || batch < 1 || d.m == 0 || d.n == 0 || d.k == 0)
        return false;
    /* on t threads, each one batched product on its share of the batch,
       matrices [batch·i/t, batch·(i+1)/t): every product computed whole by
       one kernel, so the bits do not depend on t. Inside a group (threads
       side by side) the table is not this thread's to change: the products
       one by one. */
    int t = 1;
    if (ad_threads_requested > 1) {
        if (!AD_SPLIT_HERE())
            return false;
#ifdef AD_HAVE_OPENMP
        t = batch < ad_threads_requested ? (int)batch : ad_threads_requested;
#else
        return false;
#endif
    }
    if (t > GEMM_HELD_SLOTS)
        return false; /* more threads than the table has streams: one by one */
    gemm_held keys[GEMM_HELD_SLOTS], *h[GEMM_HELD_SLOTS];
    held_block blk[GEMM_HELD_SLOTS];
    for (int i = 0; i < t; i++) {
        const int64_t lo = batch * i / t, hi = batch * (i + 1) / t;
        blk[i] = (held_block){(const float *)A + lo * d.m * d.k, (const float *)B + lo * d.k * d.n,
                              (float *)C + lo * d.m * d.n};
        keys[i] = (gemm_held){.m = d.m,
                              .k = d.k,
                              .n = d.n,
                              .slot = i,
                              .parts = t,
                              .batch = hi - lo,
                              .ta = ta,
                              .tb = tb,
                              .acc = acc};
    }
    struct gemm_cache *c = cache_ready(g, t);
    if (!c || !cache_entries(c, keys, t, batched_make, h))
        return false;
    if (t == 1)
        return batched_product(h[0], c->stream[0], &blk[0]);
#ifdef AD_HAVE_OPENMP
    bool done[GEMM_HELD_SLOTS];
    if (held_run_split(c, h, blk, t, NULL, NULL, false, NULL, done))
        return true;
    /* a share oneDNN did not compute, one by one here (the others' C, added
       to when acc, must not be computed again) */
    for (int i = 0; i < t; i++)
        if (!done[i])
            gemm_each(AD_F32, sizeof(float), ta, tb, acc, d, h[i]->batch, blk[i].A, blk[i].B,
                      blk[i].C);
    return true;
#else
    return false;
#endif
}
#endif

void ad_gemm_batched(ad_graph *g, bool ta, bool tb, bool acc, ad_mm_dims d, int64_t batch,
                     const void *A, const void *B, void *C)
{
#ifdef AD_HAVE_DNNL
    if (batched_onednn(g, ta, tb, acc, d, batch, A, B, C))
        return;
#endif
    gemm_each(g->dtype, g->elem, ta, tb, acc, d, batch, A, B, C);
}

int ad_gemm_held_entries(const ad_graph *g)
{
#ifdef AD_HAVE_DNNL
    int made = 0; /* entries oneDNN refused are kept, without a primitive */
    for (int i = 0; g->gemm_cache && i < g->gemm_cache->used; i++)
        made += g->gemm_cache->e[i].matmul != NULL;
    return made;
#else
    (void)g;
    return 0;
#endif
}

size_t ad_gemm_cache_bytes(ad_dtype dt)
{
#ifdef AD_HAVE_DNNL
    return dt == AD_F32 ? sizeof(struct gemm_cache) : 0;
#else
    (void)dt;
    return 0;
#endif
}

void ad_gemm_cache_free(ad_graph *g)
{
#ifdef AD_HAVE_DNNL
    struct gemm_cache *c = g->gemm_cache;
    if (!c)
        return;
    for (int i = 0; i < c->used; i++)
        held_free(&c->e[i]);
    for (int i = 0; i < GEMM_HELD_SLOTS; i++)
        dnnl_stream_destroy(c->stream[i]);
    dnnl_engine_destroy(c->engine);
    memset(c, 0, sizeof *c);
#else
    (void)g;
#endif
}

const char *ad_gemm_backend(void)
{
#if defined(AD_HAVE_DNNL) && defined(AD_HAVE_BLAS)
    return "onednn+openblas";
#elif defined(AD_HAVE_DNNL)
    return "onednn";
#elif defined(AD_HAVE_BLAS)
    return "openblas";
#else
    return "builtin";
#endif
}

void ad_set_threads(int threads)
{
    if (threads < 1)
        return;
    ad_threads_requested = threads;
#ifdef AD_HAVE_OPENMP
    /* The library splits products and kernels over its own OpenMP regions
     * (AD_OMP_TEAM(ad_threads_requested)); the backends run on one thread
     * each, so no product's sum is cut along k by a backend's own threading
     * and results do not depend on the thread count. oneDNN's sgemm sizes
     * its team from the OpenMP default, set to 1 here (inside the library's
     * regions it runs on one thread anyway). */
#ifdef AD_HAVE_BLAS
    openblas_set_num_threads(1);
#endif
#ifdef KMP_VERSION_MAJOR
    /* LLVM's libomp (clang builds): one thread never enters a parallel region
     * (AD_FOR_ELEMENTS checks ad_threads_requested), so the runtime is left
     * unstarted; libomp registers itself in a /dev/shm file when it starts,
     * which died by SIGBUS under a small file-size limit (ulimit -f). */
    if (threads > 1 || omp_team_set) {
        omp_set_num_threads(1);
        omp_team_set = true;
    }
#else
    /* GNU libgomp: also the team oneDNN's sgemm runs on (Debian's libdnnl
     * uses libgomp), so it is set for one thread too */
    omp_set_num_threads(1);
    omp_team_set = true;
#endif
#elif defined(AD_HAVE_BLAS)
    openblas_set_num_threads(threads); /* no OpenMP: OpenBLAS threads itself */
#endif
}
