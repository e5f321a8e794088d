/*
 * bench_tbl: fixed-workload benchmark of the partition hash table (engine/tbl).
 *
 * For each table size N (default 1M and 10M keys; 16-byte keys, 32-byte values), and
 * for each of R repetitions (default 5), it builds a fresh table on a fresh mimalloc
 * heap and measures, with hashes precomputed as the server does (one tbl_hash per
 * request, outside the table):
 *   put     ns per insert of N new keys (the table grows from empty)
 *   get-hit ns per lookup of a present key, random order
 *   get-hit batch16  the same in batches of 16 keys, as a server would run one read of
 *           pipelined commands: tbl_prefetch(slot) for all 16, tbl_prefetch(entry) for
 *           all 16, then the 16 lookups
 *   get-miss ns per lookup of an absent key
 *   del     ns per delete, random order, until the table is empty (it shrinks)
 *   worst   the slowest single put while growing to N (timed call by call, separate
 *           build), by kind: plain, segment split, directory doubling; in wall-clock
 *           time and in thread CPU time (which excludes time spent descheduled); the
 *           median and p99 wall time of splitting puts; puts over 100 us and over 1 ms
 * and after the build: bytes per key (table's own accounting, split into payload,
 * entry header, allocator rounding, slots, directory) and the process RSS growth per
 * key as a cross-check. Medians over the repetitions are printed last.
 *   mem-lat ns  the machine's memory latency at that moment, measured just before the
 *           gets: one dependent load after the other along a random cycle over 256 MiB
 *           (in the same 2 MiB pages). On a shared VM it moves by 2x within minutes,
 *           and the gets at 10M keys move with it: read them together.
 *
 * The timed lookups and deletes read their keys and hashes from a query stream laid out
 * in query order (the random permutation of the table's keys copied out before timing),
 * as a server reads each key from its receive buffer: the only random memory accesses
 * timed are the table's own.
 *
 * Memory comes in 2 MiB pages, as in kvd (MIMALLOC_LARGE_OS_PAGES=0 for 4 KiB pages).
 *
 * Usage: taskset -c 1 bench_tbl [-r reps] [N ...]
 * Single-threaded; it reads the clock itself (engine/ does not).
 */
#include <inttypes.h>
#include <mimalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv_assert.h"
#include "kv_clock.h"
#include "tbl.h"

#define KEY_BYTES 16
#define VAL_BYTES 32
#define REPS_MAX  16
#define SIZES_MAX 8

enum {
    M_PUT,
    M_GET_HIT,
    M_GET_BATCH,
    M_GET_MISS,
    M_DEL,
    M_WORST_PLAIN_US,
    M_WORST_SPLIT_US,
    M_WORST_DOUBLE_US,
    M_SPLIT_MED_US,
    M_SPLIT_P99_US,
    M_CPU_PLAIN_US,
    M_CPU_SPLIT_US,
    M_CPU_DOUBLE_US,
    M_SLOW,
    M_VSLOW,
    M_BYTES,
    M_MEM_LAT,
    M_N
};

static const char *metric_name[M_N] = {
    "put ns",
    "get-hit ns",
    "get-hit batch16 ns",
    "get-miss ns",
    "del ns",
    "worst plain put us",
    "worst split put us",
    "worst dir-doubling put us",
    "split put median us",
    "split put p99 us",
    "worst plain put cpu-us",
    "worst split put cpu-us",
    "worst dir-doubling put cpu-us",
    "puts >100us",
    "puts >1ms",
    "bytes/key",
    "mem-lat ns",
};

/* A random cycle over CHASE_LINES cache lines: each line holds the index of the next. */
#define CHASE_LINES (1u << 22) /* 256 MiB */
#define CHASE_STEPS 500000u

static uint64_t *chase_make(void)
{
    uint64_t *lines = mi_malloc_aligned((size_t)CHASE_LINES * 64, 2u << 20);
    uint32_t *order = malloc((size_t)CHASE_LINES * sizeof *order);
    KV_ASSERT(lines != NULL && order != NULL);
    for (uint32_t i = 0; i < CHASE_LINES; i++) {
        order[i] = i;
    }
    uint64_t s = 0x2545f4914f6cdd1dull;
    for (uint32_t i = CHASE_LINES - 1; i > 0; i--) { /* Sattolo: one cycle through all */
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        uint32_t j = (uint32_t)(s % i);
        uint32_t tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    for (uint32_t i = 0; i < CHASE_LINES; i++) {
        lines[(size_t)order[i] * 8] = order[(i + 1) % CHASE_LINES];
    }
    free(order);
    return lines;
}

/* ns per dependent random load now. */
static double chase_ns(const uint64_t *lines)
{
    uint64_t at = 0, t0 = kv_clock_mono_ns();
    for (uint32_t i = 0; i < CHASE_STEPS; i++) {
        at = lines[at * 8];
    }
    double ns = (double)(kv_clock_mono_ns() - t0) / CHASE_STEPS;
    KV_ASSERT(at < CHASE_LINES);
    return ns;
}

/* One step of a permutation walk of [0, n) (see perm_step). */
static size_t perm_next(size_t idx, size_t step, size_t n)
{
    idx += step;
    return idx >= n ? idx - n : idx;
}

struct keys {
    char *bytes; /* n keys of KEY_BYTES */
    uint64_t *hash;
    size_t n;
};

static void keys_make(struct keys *k, size_t n, char prefix)
{
    k->n = n;
    k->bytes = malloc(n * KEY_BYTES + 1);
    k->hash = malloc(n * sizeof(uint64_t));
    KV_ASSERT(k->bytes != NULL && k->hash != NULL);
    for (size_t i = 0; i < n; i++) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%c%015zu", prefix, i % 1000000000000000u);
        memcpy(k->bytes + i * KEY_BYTES, buf, KEY_BYTES);
        k->hash[i] = tbl_hash(buf, KEY_BYTES);
    }
}

static void keys_free(struct keys *k)
{
    free(k->bytes);
    free(k->hash);
}

static const char *key_at(const struct keys *k, size_t i)
{
    return k->bytes + i * KEY_BYTES;
}

/* q = the keys of k in the order of the walk idx -> idx + step (mod k->n), from 0. */
static void keys_stream(struct keys *q, const struct keys *k, size_t step)
{
    size_t n = k->n, idx = 0;
    q->n = n;
    q->bytes = malloc(n * KEY_BYTES + 1);
    q->hash = malloc(n * sizeof(uint64_t));
    KV_ASSERT(q->bytes != NULL && q->hash != NULL);
    for (size_t i = 0; i < n; i++) {
        idx = perm_next(idx, step, n);
        memcpy(q->bytes + i * KEY_BYTES, key_at(k, idx), KEY_BYTES);
        q->hash[i] = k->hash[idx];
    }
}

/* A permutation walk of [0, n): i -> (i * step) mod n, step coprime with n, near
 * frac * n. */
static size_t perm_step(size_t n, double frac)
{
    size_t step = (size_t)((double)n * frac) | 1;
    while (step > 1) {
        size_t a = n, b = step;
        while (b) {
            size_t t = a % b;
            a = b;
            b = t;
        }
        if (a == 1) {
            break;
        }
        step += 2;
    }
    return step;
}

static size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2) {
            rss = 0;
        }
        fclose(f);
    }
    return (size_t)rss * 4096;
}

static double ns_since(uint64_t t0, size_t n)
{
    return (double)(kv_clock_mono_ns() - t0) / (double)n;
}

static void build(struct tbl *t, const struct keys *k, const char *val)
{
    struct tbl_put_args a = {.val = val, .val_len = VAL_BYTES};
    for (size_t i = 0; i < k->n; i++) {
        int rc = tbl_put(t, key_at(k, i), KEY_BYTES, k->hash[i], &a, 0, NULL);
        KV_ASSERT(rc == 0);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void print_bytes(size_t n, const struct tbl_stats *st, size_t rss)
{
    double payload = (double)(st->key_bytes + st->val_bytes) / (double)n;
    double slots = (double)st->slot_bytes / (double)n;
    double ent = (double)(st->mem_bytes - st->slot_bytes) / (double)n; /* + dir, tbl */
    double dir = (double)((sizeof(void *) << st->dir_depth)) / (double)n;
    double header = 6.0; /* flags, 3-byte access clock, 1-byte klen, 1-byte vlen (no expiry) */
    printf("  N=%zu: %.2f bytes/key = payload %.2f + header %.2f + rounding %.2f + "
           "slots %.2f + directory %.2f (segments %zu, depth %u, load %.3f); "
           "process RSS growth %.2f bytes/key\n",
           n, (double)st->mem_bytes / (double)n, payload, header, ent - dir - payload - header,
           slots, dir, st->segments, st->dir_depth, (double)n / ((double)st->segments * 1023.0),
           (double)rss / (double)n);
}

/* Gets of the stream q in batches of B: prefetch all slots, then all entries, then
 * look up. */
static uint64_t get_batched(struct tbl *t, const struct keys *q)
{
    enum { B = 16 };
    uint64_t sum = 0;
    for (size_t i = 0; i + B <= q->n; i += B) {
        for (size_t j = i; j < i + B; j++) {
            tbl_prefetch(t, key_at(q, j), KEY_BYTES, q->hash[j], false);
        }
        for (size_t j = i; j < i + B; j++) {
            tbl_prefetch(t, key_at(q, j), KEY_BYTES, q->hash[j], true);
        }
        for (size_t j = i; j < i + B; j++) {
            const struct tbl_entry *e = tbl_get(t, key_at(q, j), KEY_BYTES, q->hash[j], 0);
            sum += tbl_entry_type(e) + 1;
        }
    }
    return sum;
}

/* CPU time of this thread: unlike the wall clock, it stops while the thread is
 * descheduled, so it shows the table's own work on a shared machine. */
static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Worst single put while growing to n: a build timed call by call, each call classified
 * by what it did (nothing structural, a segment split, a directory doubling), so that
 * preemption by other processes shows up as a slow "plain" put.
 */
static void worst_puts(size_t n, const struct keys *hit, const char *val, double out[M_N])
{
    mi_heap_t *heap = mi_heap_new();
    struct tbl *t = tbl_create(heap);
    struct tbl_put_args a = {.val = val, .val_len = VAL_BYTES};
    uint64_t worst[3] = {0, 0, 0}, worst_cpu[3] = {0, 0, 0};
    size_t nsplit = 0, split_cap = n / 100 + 64;
    double *split_us = malloc(split_cap * sizeof(double));
    KV_ASSERT(split_us != NULL);
    size_t slow = 0, vslow = 0;
    struct tbl_stats before, after;
    tbl_stats(t, &before);
    for (size_t i = 0; i < n; i++) {
        uint64_t u0 = cpu_ns();
        uint64_t c0 = kv_clock_mono_ns();
        int rc = tbl_put(t, key_at(hit, i), KEY_BYTES, hit->hash[i], &a, 0, NULL);
        uint64_t d = kv_clock_mono_ns() - c0;
        uint64_t du = cpu_ns() - u0;
        KV_ASSERT(rc == 0);
        tbl_stats(t, &after);
        int kind = after.dir_depth != before.dir_depth ? 2 : after.segments != before.segments;
        worst[kind] = d > worst[kind] ? d : worst[kind];
        worst_cpu[kind] = du > worst_cpu[kind] ? du : worst_cpu[kind];
        if (kind == 1 && nsplit < split_cap) {
            split_us[nsplit++] = (double)d / 1000.0;
        }
        slow += d > 100000;
        vslow += d > 1000000;
        before = after;
    }
    tbl_destroy(t);
    mi_heap_delete(heap);
    out[M_WORST_PLAIN_US] = (double)worst[0] / 1000.0;
    out[M_WORST_SPLIT_US] = (double)worst[1] / 1000.0;
    out[M_WORST_DOUBLE_US] = (double)worst[2] / 1000.0;
    out[M_CPU_PLAIN_US] = (double)worst_cpu[0] / 1000.0;
    out[M_CPU_SPLIT_US] = (double)worst_cpu[1] / 1000.0;
    out[M_CPU_DOUBLE_US] = (double)worst_cpu[2] / 1000.0;
    out[M_SLOW] = (double)slow;
    out[M_VSLOW] = (double)vslow;
    qsort(split_us, nsplit, sizeof(double), cmp_double);
    out[M_SPLIT_MED_US] = nsplit ? split_us[nsplit / 2] : 0;
    out[M_SPLIT_P99_US] = nsplit ? split_us[nsplit * 99 / 100] : 0;
    free(split_us);
}

static void one_rep(size_t n, const struct keys *hit, const struct keys *miss,
                    const uint64_t *chase, double out[M_N], int verbose)
{
    char val[VAL_BYTES];
    memset(val, 'v', sizeof(val));

    mi_heap_t *heap = mi_heap_new();
    size_t rss0 = rss_bytes();
    struct tbl *t = tbl_create(heap);
    uint64_t t0 = kv_clock_mono_ns();
    build(t, hit, val);
    out[M_PUT] = ns_since(t0, n);
    size_t rss = rss_bytes() - rss0; /* meaningful in the first repetition only */

    struct tbl_stats st;
    tbl_stats(t, &st);
    KV_ASSERT(st.entries == n);
    out[M_BYTES] = (double)st.mem_bytes / (double)n;
    if (verbose) {
        print_bytes(n, &st, rss);
    }

    /* Each timed pass walks the keys in another order, so no pass finds the previous
     * one's entries in cache in the order it needs them. */
    struct keys q;
    keys_stream(&q, hit, perm_step(n, 0.6180339887));
    out[M_MEM_LAT] = chase_ns(chase);
    uint64_t sum = 0;
    t0 = kv_clock_mono_ns();
    for (size_t i = 0; i < n; i++) {
        const struct tbl_entry *e = tbl_get(t, key_at(&q, i), KEY_BYTES, q.hash[i], 0);
        sum += tbl_entry_type(e) + 1;
    }
    out[M_GET_HIT] = ns_since(t0, n);
    KV_ASSERT(sum == n);
    keys_free(&q);

    keys_stream(&q, hit, perm_step(n, 0.4142135624));
    t0 = kv_clock_mono_ns();
    sum = get_batched(t, &q);
    out[M_GET_BATCH] = ns_since(t0, n / 16 * 16);
    KV_ASSERT(sum == n / 16 * 16);
    keys_free(&q);

    keys_stream(&q, miss, perm_step(miss->n, 0.6180339887));
    t0 = kv_clock_mono_ns();
    for (size_t i = 0; i < q.n; i++) {
        sum += tbl_get(t, key_at(&q, i), KEY_BYTES, q.hash[i], 0) != NULL;
    }
    out[M_GET_MISS] = ns_since(t0, q.n);
    KV_ASSERT(sum == n / 16 * 16);
    keys_free(&q);

    keys_stream(&q, hit, perm_step(n, 0.7320508076));
    t0 = kv_clock_mono_ns();
    for (size_t i = 0; i < n; i++) {
        int rc = tbl_del(t, key_at(&q, i), KEY_BYTES, q.hash[i], 0, NULL);
        KV_ASSERT(rc == 0);
    }
    out[M_DEL] = ns_since(t0, n);
    keys_free(&q);
    tbl_stats(t, &st);
    KV_ASSERT(st.entries == 0);
    tbl_destroy(t);
    mi_heap_delete(heap);

    worst_puts(n, hit, val, out);
}

int main(int argc, char **argv)
{
    size_t sizes[SIZES_MAX], nsizes = 0;
    int reps = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (nsizes < SIZES_MAX) {
            sizes[nsizes++] = strtoull(argv[i], NULL, 10);
        }
    }
    KV_ASSERT(reps >= 1 && reps <= REPS_MAX);
    if (getenv("MIMALLOC_LARGE_OS_PAGES") == NULL) {
        /* 2 MiB pages, as kvd uses by default (--large-pages yes); set
         * MIMALLOC_LARGE_OS_PAGES=0 to measure with 4 KiB pages */
        mi_option_enable(mi_option_large_os_pages);
    }
    if (nsizes == 0) {
        sizes[nsizes++] = 1000000;
        sizes[nsizes++] = 10000000;
    }

    /* The hash the caller computes once per request, for reference. */
    struct keys hk;
    keys_make(&hk, 1000000, 'h');
    uint64_t acc = 0, t0 = kv_clock_mono_ns();
    for (size_t i = 0; i < hk.n; i++) {
        acc += tbl_hash(key_at(&hk, i), KEY_BYTES);
    }
    printf("tbl_hash of a 16-byte key: %.2f ns (%" PRIx64 ")\n", ns_since(t0, hk.n), acc & 1);
    keys_free(&hk);

    uint64_t *chase = chase_make();
    for (size_t s = 0; s < nsizes; s++) {
        size_t n = sizes[s];
        struct keys hit, miss;
        keys_make(&hit, n, 'k');
        keys_make(&miss, n < 2000000 ? n : 2000000, 'm');
        double res[REPS_MAX][M_N];
        for (int r = 0; r < reps; r++) {
            one_rep(n, &hit, &miss, chase, res[r], r == 0);
            printf("  N=%zu rep %d:", n, r + 1);
            for (int m = 0; m < M_N; m++) {
                printf(" %s %.1f;", metric_name[m], res[r][m]);
            }
            printf("\n");
            fflush(stdout);
        }
        printf("N=%zu medians of %d:", n, reps);
        for (int m = 0; m < M_N; m++) {
            double col[REPS_MAX];
            for (int r = 0; r < reps; r++) {
                col[r] = res[r][m];
            }
            qsort(col, (size_t)reps, sizeof(double), cmp_double);
            printf(" %s %.1f;", metric_name[m], col[reps / 2]);
        }
        printf("\n");
        keys_free(&hit);
        keys_free(&miss);
    }
    mi_free(chase);
    return 0;
}
