/*
 * kvbench: a RESP load generator on io_uring.
 *
 * It drives any RESP server (kvd, redis-server) with GET/SET traffic: --threads worker
 * threads share -c connections, each keeping up to -P requests in flight. Closed loop
 * by default (each connection refills its pipeline as replies come back); with --rate
 * it is open loop: requests follow a fixed schedule and latency is measured from each
 * request's intended send time, so a server stall is not hidden by the client slowing
 * down (coordinated omission). Replies are checked with proto/resp_reply; --verify
 * also checks every GET value against what SET writes for that key.
 *
 * This file is the main thread: options, start-up, the progress line, the report. The
 * main thread never touches a worker's connections; it reads only the workers'
 * relaxed progress counters while they run, and their stats after join.
 */
#include "kvb.h"

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kv_assert.h"
#include "kv_clock.h"

_Atomic int kvb_stop_requested;

/* First SIGINT/SIGTERM: finish early but still report; a second one kills. */
static void on_stop_signal(int sig)
{
    (void)sig;
    atomic_store(&kvb_stop_requested, 1);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: kvbench [options]\n"
               "  -h, --host HOST        server address (127.0.0.1)\n"
               "  -p, --port PORT        server port (7379)\n"
               "  -a, --password PASS    send AUTH PASS on every connection\n"
               "  -T, --threads N        worker threads (1)\n"
               "  -c, --conns N          connections in total, spread over the threads (50)\n"
               "  -P, --pipeline N       requests in flight per connection (1)\n"
               "  -t, --type get|set     only GETs or only SETs (shortcut for --ratio)\n"
               "      --ratio S:G        SET:GET weights (1:9)\n"
               "  -r, --keyspace N       number of distinct keys, key:000000000000.. (100000)\n"
               "      --dist D           uniform | zipf | seq (uniform)\n"
               "      --theta X          zipf skew, 0 < X < 1 (0.99)\n"
               "  -d, --value-size N|A-B value bytes, fixed or a per-key size in [A, B] (3)\n"
               "      --duration S       run S seconds (10, unless -n is given)\n"
               "  -n, --requests N       run until N requests are answered\n"
               "      --rate R           open loop: R requests/s in total (0: closed loop)\n"
               "      --load             SET every key once before the measured run\n"
               "      --verify           check GET values against what SET writes\n"
               "      --seed N           random seed (1)\n"
               "      --json             print the result as one JSON object\n"
               "      --no-progress      no progress line (it is shown only on a terminal)\n"
               "      --help\n");
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end != '\0' || v < lo || v > hi || s[0] == '-') {
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v >= lo && v <= hi)) {
        return -1;
    }
    *out = v;
    return 0;
}

static int bad_option(const char *name, const char *val)
{
    fprintf(stderr, "kvbench: bad value for %s: '%s'\n", name, val);
    return -1;
}

enum {
    OPT_RATIO = 256,
    OPT_DIST,
    OPT_THETA,
    OPT_DURATION,
    OPT_RATE,
    OPT_LOAD,
    OPT_VERIFY,
    OPT_SEED,
    OPT_JSON,
    OPT_NO_PROGRESS,
    OPT_HELP,
    OPT_SELF_TEST,
};

static const struct option long_opts[] = {
    {"host", required_argument, 0, 'h'},
    {"port", required_argument, 0, 'p'},
    {"password", required_argument, 0, 'a'},
    {"threads", required_argument, 0, 'T'},
    {"conns", required_argument, 0, 'c'},
    {"pipeline", required_argument, 0, 'P'},
    {"type", required_argument, 0, 't'},
    {"ratio", required_argument, 0, OPT_RATIO},
    {"keyspace", required_argument, 0, 'r'},
    {"dist", required_argument, 0, OPT_DIST},
    {"theta", required_argument, 0, OPT_THETA},
    {"value-size", required_argument, 0, 'd'},
    {"duration", required_argument, 0, OPT_DURATION},
    {"requests", required_argument, 0, 'n'},
    {"rate", required_argument, 0, OPT_RATE},
    {"load", no_argument, 0, OPT_LOAD},
    {"verify", no_argument, 0, OPT_VERIFY},
    {"seed", required_argument, 0, OPT_SEED},
    {"json", no_argument, 0, OPT_JSON},
    {"no-progress", no_argument, 0, OPT_NO_PROGRESS},
    {"help", no_argument, 0, OPT_HELP},
    {"self-test", no_argument, 0, OPT_SELF_TEST},
    {0, 0, 0, 0},
};

static int parse_value_size(struct kvb_config *cfg, const char *s)
{
    uint64_t a, b;
    char tmp[64];
    const char *dash = strchr(s, '-');
    if (dash == NULL) {
        if (parse_u64(s, 0, KVB_VALUE_MAX, &a) != 0) {
            return -1;
        }
        cfg->value_min = cfg->value_max = (uint32_t)a;
        return 0;
    }
    size_t n = (size_t)(dash - s);
    if (n >= sizeof(tmp)) {
        return -1;
    }
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (parse_u64(tmp, 0, KVB_VALUE_MAX, &a) != 0 ||
        parse_u64(dash + 1, a, KVB_VALUE_MAX, &b) != 0) {
        return -1;
    }
    cfg->value_min = (uint32_t)a;
    cfg->value_max = (uint32_t)b;
    return 0;
}

static int parse_ratio(struct kvb_config *cfg, const char *s)
{
    uint64_t a, b;
    char tmp[32];
    const char *colon = strchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= sizeof(tmp)) {
        return -1;
    }
    memcpy(tmp, s, (size_t)(colon - s));
    tmp[colon - s] = '\0';
    if (parse_u64(tmp, 0, 1000000, &a) != 0 || parse_u64(colon + 1, 0, 1000000, &b) != 0 ||
        a + b == 0) {
        return -1;
    }
    cfg->set_weight = (uint32_t)a;
    cfg->get_weight = (uint32_t)b;
    return 0;
}

static int parse_args(struct kvb_config *cfg, int argc, char **argv, int *json, int *self_test)
{
    uint64_t v;
    int opt;
    while ((opt = getopt_long(argc, argv, "h:p:a:T:c:P:t:r:d:n:", long_opts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            cfg->host = optarg;
            break;
        case 'p':
            if (parse_u64(optarg, 1, 65535, &v) != 0) {
                return bad_option("--port", optarg);
            }
            cfg->port = (int)v;
            break;
        case 'a':
            cfg->password = optarg;
            break;
        case 'T':
            if (parse_u64(optarg, 1, KVB_THREADS_MAX, &v) != 0) {
                return bad_option("--threads", optarg);
            }
            cfg->threads = (int)v;
            break;
        case 'c':
            if (parse_u64(optarg, 1, KVB_CONNS_MAX, &v) != 0) {
                return bad_option("--conns", optarg);
            }
            cfg->conns = (int)v;
            break;
        case 'P':
            if (parse_u64(optarg, 1, KVB_PIPELINE_MAX, &v) != 0) {
                return bad_option("--pipeline", optarg);
            }
            cfg->pipeline = (int)v;
            break;
        case 't':
            if (strcmp(optarg, "get") == 0) {
                cfg->set_weight = 0;
                cfg->get_weight = 1;
            } else if (strcmp(optarg, "set") == 0) {
                cfg->set_weight = 1;
                cfg->get_weight = 0;
            } else {
                return bad_option("--type", optarg);
            }
            break;
        case OPT_RATIO:
            if (parse_ratio(cfg, optarg) != 0) {
                return bad_option("--ratio", optarg);
            }
            break;
        case 'r':
            if (parse_u64(optarg, 1, KVB_KEYSPACE_MAX, &cfg->keyspace) != 0) {
                return bad_option("--keyspace", optarg);
            }
            break;
        case OPT_DIST:
            if (strcmp(optarg, "uniform") == 0) {
                cfg->dist = KVB_DIST_UNIFORM;
            } else if (strcmp(optarg, "zipf") == 0 || strcmp(optarg, "zipfian") == 0) {
                cfg->dist = KVB_DIST_ZIPF;
            } else if (strcmp(optarg, "seq") == 0 || strcmp(optarg, "sequential") == 0) {
                cfg->dist = KVB_DIST_SEQ;
            } else {
                return bad_option("--dist", optarg);
            }
            break;
        case OPT_THETA:
            if (parse_double(optarg, 1e-6, 0.999999, &cfg->theta) != 0) {
                return bad_option("--theta", optarg);
            }
            break;
        case 'd':
            if (parse_value_size(cfg, optarg) != 0) {
                return bad_option("--value-size", optarg);
            }
            break;
        case OPT_DURATION:
            if (parse_double(optarg, 0.001, 1e6, &cfg->duration_s) != 0) {
                return bad_option("--duration", optarg);
            }
            break;
        case 'n':
            if (parse_u64(optarg, 1, UINT64_MAX / 2, &cfg->requests) != 0) {
                return bad_option("--requests", optarg);
            }
            break;
        case OPT_RATE:
            if (parse_double(optarg, 0, 1e9, &cfg->rate) != 0) {
                return bad_option("--rate", optarg);
            }
            break;
        case OPT_LOAD:
            cfg->load = 1;
            break;
        case OPT_VERIFY:
            cfg->verify = 1;
            break;
        case OPT_SEED:
            if (parse_u64(optarg, 0, UINT64_MAX, &cfg->seed) != 0) {
                return bad_option("--seed", optarg);
            }
            break;
        case OPT_JSON:
            *json = 1;
            break;
        case OPT_NO_PROGRESS:
            cfg->progress = 0;
            break;
        case OPT_HELP:
            usage(stdout);
            exit(0);
        case OPT_SELF_TEST:
            *self_test = 1;
            break;
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "kvbench: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (cfg->requests == 0 && cfg->duration_s == 0) {
        cfg->duration_s = 10;
    }
    if (cfg->requests != 0 && cfg->duration_s != 0) {
        fprintf(stderr, "kvbench: give either --duration or --requests, not both\n");
        return -1;
    }
    if (cfg->threads > cfg->conns) {
        fprintf(stderr, "kvbench: more threads (%d) than connections (%d)\n", cfg->threads,
                cfg->conns);
        return -1;
    }
    return 0;
}

/* ---- report ------------------------------------------------------------------------- */

struct kvb_result {
    struct kvb_stats total;
    double elapsed_s;
    double load_s;
};

static void merge_results(struct kvb_worker *ws, int n, struct kvb_result *r)
{
    memset(r, 0, sizeof(*r));
    kvb_hist_reset(&r->total.hist);
    for (int i = 0; i < n; i++) {
        struct kvb_stats *s = &ws[i].stats;
        r->total.requests += s->requests;
        r->total.gets += s->gets;
        r->total.sets += s->sets;
        r->total.hits += s->hits;
        r->total.misses += s->misses;
        r->total.errors += s->errors;
        r->total.unexpected += s->unexpected;
        r->total.verify_failures += s->verify_failures;
        r->total.conn_failures += s->conn_failures;
        r->total.late += s->late;
        kvb_hist_merge(&r->total.hist, &s->hist);
        double e = (double)ws[i].elapsed_ns / 1e9;
        double l = (double)ws[i].load_ns / 1e9;
        r->elapsed_s = e > r->elapsed_s ? e : r->elapsed_s;
        r->load_s = l > r->load_s ? l : r->load_s;
    }
}

static const char *dist_name(enum kvb_dist d)
{
    return d == KVB_DIST_ZIPF ? "zipf" : d == KVB_DIST_SEQ ? "seq" : "uniform";
}

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

static void print_json(const struct kvb_config *cfg, const struct kvb_result *r)
{
    const struct kvb_stats *t = &r->total;
    const struct kvb_hist *h = &t->hist;
    double ops = r->elapsed_s > 0 ? (double)t->requests / r->elapsed_s : 0;
    printf("{\"host\": \"%s\", \"port\": %d, \"threads\": %d, \"conns\": %d, \"pipeline\": %d, "
           "\"mode\": \"%s\", \"rate_target\": %.1f, \"set_weight\": %u, \"get_weight\": %u, "
           "\"keyspace\": %" PRIu64 ", \"dist\": \"%s\", \"theta\": %g, \"value_min\": %u, "
           "\"value_max\": %u, \"load\": %d, \"verify\": %d, \"seed\": %" PRIu64 ", ",
           cfg->host, cfg->port, cfg->threads, cfg->conns, cfg->pipeline,
           cfg->rate > 0 ? "open" : "closed", cfg->rate, cfg->set_weight, cfg->get_weight,
           cfg->keyspace, dist_name(cfg->dist), cfg->theta, cfg->value_min, cfg->value_max,
           cfg->load, cfg->verify, cfg->seed);
    printf("\"requests\": %" PRIu64 ", \"elapsed_s\": %.3f, \"load_s\": %.3f, "
           "\"ops_per_sec\": %.1f, \"gets\": %" PRIu64 ", \"sets\": %" PRIu64 ", \"hits\": %" PRIu64
           ", \"misses\": %" PRIu64 ", \"errors\": %" PRIu64 ", \"unexpected\": %" PRIu64
           ", \"verify_failures\": %" PRIu64 ", \"conn_failures\": %" PRIu64 ", \"late\": %" PRIu64
           ", ",
           t->requests, r->elapsed_s, r->load_s, ops, t->gets, t->sets, t->hits, t->misses,
           t->errors, t->unexpected, t->verify_failures, t->conn_failures, t->late);
    printf("\"latency_us\": {\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"p99_9\": %.3f, "
           "\"max\": %.3f, \"mean\": %.3f}}\n",
           us(kvb_hist_quantile(h, 0.5)), us(kvb_hist_quantile(h, 0.9)),
           us(kvb_hist_quantile(h, 0.99)), us(kvb_hist_quantile(h, 0.999)), us(h->max),
           h->count ? us(h->sum / h->count) : 0.0);
}

static void print_table(const struct kvb_config *cfg, const struct kvb_result *r)
{
    const struct kvb_stats *t = &r->total;
    const struct kvb_hist *h = &t->hist;
    printf("kvbench %s:%d  threads %d  conns %d  pipeline %d  %s", cfg->host, cfg->port,
           cfg->threads, cfg->conns, cfg->pipeline, cfg->rate > 0 ? "open loop" : "closed loop");
    if (cfg->rate > 0) {
        printf(" at %.0f req/s", cfg->rate);
    }
    printf("\n  SET:GET %u:%u  keys %" PRIu64 " %s", cfg->set_weight, cfg->get_weight,
           cfg->keyspace, dist_name(cfg->dist));
    if (cfg->dist == KVB_DIST_ZIPF) {
        printf(" (theta %g)", cfg->theta);
    }
    printf("  value %u", cfg->value_min);
    if (cfg->value_max != cfg->value_min) {
        printf("-%u", cfg->value_max);
    }
    printf(" B%s%s\n", cfg->load ? "  load phase" : "", cfg->verify ? "  verify" : "");
    if (cfg->load) {
        printf("  load: %" PRIu64 " keys in %.2f s\n", cfg->keyspace, r->load_s);
    }
    printf("\n  requests    %12" PRIu64 " in %.2f s\n", t->requests, r->elapsed_s);
    printf("  throughput  %12.0f ops/s\n",
           r->elapsed_s > 0 ? (double)t->requests / r->elapsed_s : 0.0);
    printf("  gets %" PRIu64 " (hits %" PRIu64 ", misses %" PRIu64 ")  sets %" PRIu64 "\n", t->gets,
           t->hits, t->misses, t->sets);
    printf("  errors %" PRIu64 "  unexpected %" PRIu64 "  verify failures %" PRIu64
           "  connection failures %" PRIu64,
           t->errors, t->unexpected, t->verify_failures, t->conn_failures);
    if (cfg->rate > 0) {
        printf("  late sends %" PRIu64, t->late);
    }
    printf("\n\n  latency (us)      p50       p90       p99     p99.9       max      mean\n");
    printf("              %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f\n", us(kvb_hist_quantile(h, 0.5)),
           us(kvb_hist_quantile(h, 0.9)), us(kvb_hist_quantile(h, 0.99)),
           us(kvb_hist_quantile(h, 0.999)), us(h->max), h->count ? us(h->sum / h->count) : 0.0);
}

/* ---- main ----------------------------------------------------------------------------- */

static void progress(struct kvb_worker *ws, int n)
{
    uint64_t last = 0, t0 = kv_clock_mono_ns(), next = t0 + 1000000000ull;
    for (;;) {
        int running = 0;
        for (int i = 0; i < n; i++) {
            running += !atomic_load(&ws[i].live.finished);
        }
        if (running == 0) {
            break;
        }
        uint64_t now = kv_clock_mono_ns();
        if (now < next) {
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
            continue;
        }
        uint64_t done = 0, p99 = 0;
        for (int i = 0; i < n; i++) {
            done += atomic_load_explicit(&ws[i].live.done, memory_order_relaxed);
            uint64_t p = atomic_load_explicit(&ws[i].live.p99_ns, memory_order_relaxed);
            p99 = p > p99 ? p : p99;
        }
        fprintf(stderr, "\r[%4.0fs] %10" PRIu64 " ops/s  p99 %8.1f us   ", (double)(now - t0) / 1e9,
                done - last, us(p99));
        last = done;
        next += 1000000000ull;
    }
    fprintf(stderr, "\n");
}

int main(int argc, char **argv)
{
    struct kvb_config cfg = {
        .host = "127.0.0.1",
        .port = 7379,
        .threads = 1,
        .conns = 50,
        .pipeline = 1,
        .set_weight = 1,
        .get_weight = 9,
        .keyspace = 100000,
        .dist = KVB_DIST_UNIFORM,
        .theta = 0.99,
        .value_min = 3,
        .value_max = 3,
        .seed = 1,
        .progress = 1,
    };
    int json = 0, self_test = 0;
    if (parse_args(&cfg, argc, argv, &json, &self_test) != 0) {
        return 2;
    }
    if (self_test) {
        return kvb_selftest(cfg.seed);
    }
    if (cfg.dist == KVB_DIST_ZIPF) {
        kvb_zipf_setup(&cfg);
    }
    cfg.progress = cfg.progress && isatty(STDERR_FILENO);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESETHAND; /* no SA_RESTART: a worker's wait returns at once */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct kvb_worker *ws = calloc((size_t)cfg.threads, sizeof(*ws));
    pthread_t *tids = calloc((size_t)cfg.threads, sizeof(*tids));
    KV_ASSERT(ws != NULL && tids != NULL);
    pthread_barrier_t ready, go;
    _Atomic int abort_run = 0;
    pthread_barrier_init(&ready, NULL, (unsigned)cfg.threads + 1);
    pthread_barrier_init(&go, NULL, (unsigned)cfg.threads + 1);
    int T = cfg.threads;
    for (int i = 0; i < T; i++) {
        struct kvb_worker *w = &ws[i];
        w->id = i;
        w->cfg = &cfg;
        w->conn_first = cfg.conns * i / T;
        w->conn_count = cfg.conns * (i + 1) / T - w->conn_first;
        w->rate = cfg.rate * w->conn_count / cfg.conns;
        w->quota = cfg.requests == 0 ? 0
                                     : cfg.requests * (uint64_t)(i + 1) / (uint64_t)T -
                                           cfg.requests * (uint64_t)i / (uint64_t)T;
        if (cfg.load) {
            w->load_first = cfg.keyspace * (uint64_t)i / (uint64_t)T;
            w->load_count = cfg.keyspace * (uint64_t)(i + 1) / (uint64_t)T - w->load_first;
        }
        w->ready = &ready;
        w->go = &go;
        w->abort = &abort_run;
        if (pthread_create(&tids[i], NULL, kvb_worker_run, w) != 0) {
            fprintf(stderr, "kvbench: cannot start a thread\n");
            return 1;
        }
    }
    pthread_barrier_wait(&ready);
    int failed = 0;
    for (int i = 0; i < T; i++) {
        if (ws[i].setup_rc != 0) {
            fprintf(stderr, "kvbench: %s\n", ws[i].setup_err);
            failed = 1;
        }
    }
    atomic_store(&abort_run, failed);
    pthread_barrier_wait(&go);
    if (!failed && cfg.progress) {
        progress(ws, T);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(tids[i], NULL);
    }
    if (failed) {
        return 1;
    }
    struct kvb_result *r = malloc(sizeof(*r));
    KV_ASSERT(r != NULL);
    merge_results(ws, T, r);
    if (json) {
        print_json(&cfg, r);
    } else {
        print_table(&cfg, r);
    }
    int rc = r->total.conn_failures != 0 ? 1 : 0;
    free(r);
    free(ws);
    free(tids);
    pthread_barrier_destroy(&ready);
    pthread_barrier_destroy(&go);
    return rc;
}
