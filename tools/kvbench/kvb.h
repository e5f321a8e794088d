/*
 * kvb: the internals of kvbench, the project's RESP load generator.
 *
 * kvbench.c parses options, starts one worker thread per --threads, prints progress
 * and the final report; kvb_loop.c is a worker's io_uring loop (its connections,
 * sends, receives, reply checks); kvb_workload.c chooses keys and values and encodes
 * requests; kvb_hist.c is the latency histogram. Workers share only the read-only
 * configuration and a few relaxed atomic counters that the progress line reads.
 *
 * The limits below are the tool's own (a client's, not the server's), so they live
 * here rather than in common/kv_limits.h.
 */
#ifndef KVB_H
#define KVB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Worker threads: more than the cores of any machine this runs on makes no sense. */
#define KVB_THREADS_MAX 64
/* Connections in total; each costs two buffers sized from the pipeline and values. */
#define KVB_CONNS_MAX 10000
/* Requests in flight per connection (pipeline depth). */
#define KVB_PIPELINE_MAX 1024
/* Largest value: request and receive buffers are sized from it at start-up. */
#define KVB_VALUE_MAX (1024 * 1024)
/* Key names are "key:" and 12 digits (redis-benchmark's form), so 10^12 keys at most. */
#define KVB_KEY_DIGITS   12
#define KVB_KEYSPACE_MAX 1000000000000ULL

/* ---- histogram (kvb_hist.c) ------------------------------------------------------- */

/*
 * Log-linear: values below 2^KVB_HIST_SUB_BITS exactly, above that 2^KVB_HIST_SUB_BITS
 * buckets per power of two, so a bucket's width is at most 1/128 of its lower bound
 * and reporting its midpoint is within 0.4% of any value in it (the budget is 1%).
 */
#define KVB_HIST_SUB_BITS 7
#define KVB_HIST_SUB      (1u << KVB_HIST_SUB_BITS)
#define KVB_HIST_BUCKETS  (KVB_HIST_SUB + (64 - KVB_HIST_SUB_BITS) * KVB_HIST_SUB)

struct kvb_hist {
    uint64_t count;
    uint64_t max;
    uint64_t sum; /* for the mean; wraps only after ~584 years of total latency in ns */
    uint64_t buckets[KVB_HIST_BUCKETS];
};

void kvb_hist_reset(struct kvb_hist *h);
void kvb_hist_record(struct kvb_hist *h, uint64_t v);
void kvb_hist_merge(struct kvb_hist *into, const struct kvb_hist *from);
/* The value at quantile q (0..1]: a bucket midpoint, or max for q = 1. 0 if empty. */
uint64_t kvb_hist_quantile(const struct kvb_hist *h, double q);
/* Bucket index and the value range of a bucket (exposed for the self-check). */
uint32_t kvb_hist_index(uint64_t v);
uint64_t kvb_hist_bucket_low(uint32_t idx);
uint64_t kvb_hist_bucket_high(uint32_t idx);

/* ---- configuration (kvbench.c) ------------------------------------------------------ */

enum kvb_dist { KVB_DIST_UNIFORM, KVB_DIST_ZIPF, KVB_DIST_SEQ };

struct kvb_config {
    const char *host;
    int port;
    const char *password;
    int threads;
    int conns;    /* total, spread over threads */
    int pipeline; /* requests in flight per connection */
    uint32_t set_weight, get_weight;
    uint64_t keyspace;
    enum kvb_dist dist;
    double theta;
    uint32_t value_min, value_max;
    double duration_s; /* 0: run until requests are done */
    uint64_t requests; /* 0: run for duration_s */
    double rate;       /* requests/s in total; 0 = closed loop */
    int load;          /* SET every key once before the run */
    int verify;        /* check GET values against what SET wrote */
    uint64_t seed;
    int progress; /* print a progress line each second */
    /* derived */
    double zipf_zetan, zipf_eta, zipf_alpha, zipf_half_pow_theta;
};

/* ---- workload (kvb_workload.c) ------------------------------------------------------ */

struct kvb_rng {
    uint64_t s[4];
};

void kvb_rng_seed(struct kvb_rng *r, uint64_t seed);
uint64_t kvb_rng_next(struct kvb_rng *r);
/* Uniform double in [0, 1). */
double kvb_rng_unit(struct kvb_rng *r);

/* Precompute what the zipfian generator needs (O(keyspace) once, in the main thread). */
void kvb_zipf_setup(struct kvb_config *cfg);
/* The next key index under the configured distribution; *seq is a worker's cursor. */
uint64_t kvb_key_next(const struct kvb_config *cfg, struct kvb_rng *r, uint64_t *seq);
/* The value length of a key: fixed, or a per-key pick in [value_min, value_max]. */
uint32_t kvb_value_len(const struct kvb_config *cfg, uint64_t key);
/* Fill v[0..len) with the bytes that key's value always holds (for --verify). */
void kvb_value_fill(char *v, uint32_t len, uint64_t key);

/* Largest encoded request, for buffer sizing. */
size_t kvb_request_size_max(const struct kvb_config *cfg);
/* Encode GET key into out (room for kvb_request_size_max); returns bytes written. */
size_t kvb_encode_get(char *out, uint64_t key);
/* Encode SET key value; `filler` holds value_max bytes used when !cfg->verify. */
size_t kvb_encode_set(char *out, const struct kvb_config *cfg, uint64_t key, const char *filler);

/* Set by SIGINT/SIGTERM: workers stop issuing, drain and report (kvbench.c). */
extern _Atomic int kvb_stop_requested;

/* `kvbench --self-test` (kvb_selftest.c): histogram and distribution checks; 0 if ok. */
int kvb_selftest(uint64_t seed);

/* ---- a worker (kvb_loop.c) ---------------------------------------------------------- */

/* Counters a worker publishes for the progress line (relaxed atomics). */
struct kvb_live {
    _Atomic uint64_t done;   /* replies received */
    _Atomic uint64_t p99_ns; /* p99 of the last whole second */
    _Atomic int finished;
};

struct kvb_stats {
    uint64_t requests, gets, sets, hits, misses;
    uint64_t errors;          /* -ERR replies */
    uint64_t unexpected;      /* replies of a type the request cannot get */
    uint64_t verify_failures; /* GET values that differ from what SET wrote */
    uint64_t conn_failures;   /* connections lost or refused */
    uint64_t late;            /* open loop: requests sent after their intended time + 1 ms */
    struct kvb_hist hist;     /* latency, ns */
};

struct kvb_worker {
    int id;
    const struct kvb_config *cfg;
    int conn_first, conn_count;      /* this worker's share of the connections */
    uint64_t quota;                  /* requests to issue (0: unlimited, duration mode) */
    uint64_t load_first, load_count; /* keys this worker SETs in the load phase */
    double rate;                     /* this worker's share of --rate */
    uint64_t start_ns, end_ns;       /* measured phase; end_ns 0 in request-count mode */
    pthread_barrier_t *ready;        /* workers + main: passed when every load phase is over */
    pthread_barrier_t *go;           /* workers + main: passed once main has checked set-up */
    _Atomic int *abort;              /* set by main before `go` when a worker's set-up failed */
    int setup_rc;                    /* 0, or why setup failed */
    char setup_err[256];
    struct kvb_live live;
    struct kvb_stats stats;
    uint64_t load_ns;    /* time the load phase took */
    uint64_t elapsed_ns; /* measured phase, first send to last reply */
};

/*
 * The thread body: set up the ring, connect and authenticate (blocking), run the load
 * phase if any, pass `ready`, pass `go`, then (unless *abort) run and drain. Set-up
 * failures are left in setup_rc/setup_err.
 */
void *kvb_worker_run(void *arg);

#endif
