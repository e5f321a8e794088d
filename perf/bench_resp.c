/*
 * bench_resp: throughput of the RESP codec on one core.
 *
 * Parse: pipelined GET and SET batches (16-byte keys; 16- and 1024-byte values), about
 * 32 MiB of requests each, fed to one resp_parser in 16 KiB buffers as the server's
 * provided-buffer ring would deliver them; commands/s and GB/s of input.
 * Encode: typical replies (+OK, :integer, 16- and 1024-byte bulks, null, a 10-element
 * array of 16-byte bulks) into one client's output chain, drained through the iovec
 * every 16 KiB as a send completion would; replies/s and GB/s of output.
 * Each figure is the median of --reps runs (default 7). Memory comes from a mimalloc
 * heap, as on a shard thread. Run pinned: taskset -c 1 bench_resp.
 */
#include <mimalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "kv_assert.h"
#include "kv_clock.h"
#include "kv_error.h"
#include "kv_limits.h"
#include "resp_alloc.h"
#include "resp_out.h"
#include "resp_parse.h"

#define BENCH_INPUT_BYTES (32u << 20)
#define BENCH_RECV_BYTES  (16u << 10)
#define BENCH_REPS_MAX    64

static volatile uint64_t sink;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* A pipeline of GET (value_len < 0) or SET requests filling about BENCH_INPUT_BYTES. */
static char *make_pipeline(int value_len, size_t *len, size_t *count)
{
    char *buf = malloc(BENCH_INPUT_BYTES + 4096);
    KV_ASSERT(buf != NULL);
    char *value = malloc(value_len > 0 ? (size_t)value_len : 1);
    memset(value, 'v', value_len > 0 ? (size_t)value_len : 1);
    size_t n = 0, c = 0;
    while (n + 2048 < BENCH_INPUT_BYTES) {
        if (value_len < 0) {
            n += (size_t)sprintf(buf + n, "*2\r\n$3\r\nGET\r\n$16\r\nkey:%012zu\r\n", c % 1000000);
        } else {
            n += (size_t)sprintf(buf + n, "*3\r\n$3\r\nSET\r\n$16\r\nkey:%012zu\r\n$%d\r\n",
                                 c % 1000000, value_len);
            memcpy(buf + n, value, (size_t)value_len);
            n += (size_t)value_len;
            memcpy(buf + n, "\r\n", 2);
            n += 2;
        }
        c++;
    }
    free(value);
    *len = n;
    *count = c;
    return buf;
}

static double parse_once(const struct resp_alloc *a, const char *in, size_t len, size_t count)
{
    struct resp_parser *p;
    KV_ASSERT(resp_parser_create(&p, a, NULL) == 0);
    uint64_t sum = 0;
    size_t got = 0;
    uint64_t t0 = kv_clock_mono_ns();
    for (size_t off = 0; off < len; off += BENCH_RECV_BYTES) {
        size_t n = len - off < BENCH_RECV_BYTES ? len - off : BENCH_RECV_BYTES;
        resp_parser_feed(p, in + off, n);
        struct resp_cmd cmd;
        int rc;
        while ((rc = resp_parser_next(p, &cmd)) == 0) {
            sum += cmd.argc + cmd.argv[cmd.argc - 1].len + (unsigned char)cmd.argv[1].ptr[15];
            got++;
        }
        KV_ASSERT(rc == KV_EAGAIN);
    }
    uint64_t t1 = kv_clock_mono_ns();
    KV_ASSERT(got == count);
    sink += sum;
    resp_parser_destroy(p);
    return (double)(t1 - t0) / 1e9;
}

static void bench_parse(const struct resp_alloc *a, const char *name, int value_len, int reps)
{
    size_t len, count;
    char *in = make_pipeline(value_len, &len, &count);
    double secs[BENCH_REPS_MAX];
    parse_once(a, in, len, count); /* warm-up */
    for (int r = 0; r < reps; r++) {
        secs[r] = parse_once(a, in, len, count);
    }
    double s = median(secs, reps);
    printf("parse  %-22s %10.2f Mcmd/s %7.2f GB/s  (%zu cmds, %.1f MiB, median of %d)\n", name,
           (double)count / s / 1e6, (double)len / s / 1e9, count, (double)len / (1 << 20), reps);
    free(in);
}

enum reply_kind { R_OK, R_INT, R_BULK16, R_BULK1K, R_NULL, R_ARRAY10 };

static double encode_once(struct resp_pool *pool, enum reply_kind kind, size_t count, size_t *bytes)
{
    static char value[1024];
    memset(value, 'v', sizeof value);
    struct resp_out o;
    resp_out_init(&o, pool, KV_DEFAULT_RESP_CLIENT_OUT_BYTES_MAX);
    struct iovec iov[8];
    size_t total = 0;
    uint64_t t0 = kv_clock_mono_ns();
    for (size_t i = 0; i < count; i++) {
        int rc = 0;
        switch (kind) {
        case R_OK:
            rc = resp_out_simple(&o, "OK", 2);
            break;
        case R_INT:
            rc = resp_out_int(&o, (int64_t)i * 7919);
            break;
        case R_BULK16:
            rc = resp_out_bulk(&o, value, 16);
            break;
        case R_BULK1K:
            rc = resp_out_bulk(&o, value, 1024);
            break;
        case R_NULL:
            rc = resp_out_null(&o);
            break;
        case R_ARRAY10:
            rc = resp_out_array(&o, 10);
            for (int k = 0; k < 10; k++) {
                rc |= resp_out_bulk(&o, value, 16);
            }
            break;
        }
        KV_ASSERT(rc == 0);
        size_t q = resp_out_queued_bytes(&o);
        if (q >= BENCH_RECV_BYTES) {
            /* A send of everything queued completes. */
            int n = resp_out_iov(&o, iov, 8);
            size_t sent = 0;
            for (int k = 0; k < n; k++) {
                sent += iov[k].iov_len;
            }
            resp_out_consume(&o, sent);
            total += sent;
        }
    }
    total += resp_out_queued_bytes(&o);
    uint64_t t1 = kv_clock_mono_ns();
    resp_out_deinit(&o);
    *bytes = total;
    return (double)(t1 - t0) / 1e9;
}

static void bench_encode(struct resp_pool *pool, const char *name, enum reply_kind kind,
                         size_t count, int reps)
{
    double secs[BENCH_REPS_MAX];
    size_t bytes = 0;
    encode_once(pool, kind, count, &bytes);
    for (int r = 0; r < reps; r++) {
        secs[r] = encode_once(pool, kind, count, &bytes);
    }
    double s = median(secs, reps);
    printf("encode %-22s %10.2f Mrep/s %7.2f GB/s  (%zu replies, median of %d)\n", name,
           (double)count / s / 1e6, (double)bytes / s / 1e9, count, reps);
}

int main(int argc, char **argv)
{
    int reps = 7;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            reps = atoi(argv[++i]);
        }
    }
    if (reps < 1 || reps > BENCH_REPS_MAX) {
        fprintf(stderr, "--reps must be in 1..%d\n", BENCH_REPS_MAX);
        return 2;
    }
    mi_heap_t *heap = mi_heap_new();
    struct resp_alloc a;
    resp_alloc_mi_heap(&a, heap);

    bench_parse(&a, "GET (16 B key)", -1, reps);
    bench_parse(&a, "SET (16 B value)", 16, reps);
    bench_parse(&a, "SET (1024 B value)", 1024, reps);

    struct resp_pool *pool;
    KV_ASSERT(resp_pool_create(&pool, &a, KV_DEFAULT_RESP_OUT_BLOCK_BYTES, 64u << 20, 1u << 20) ==
              0);
    bench_encode(pool, "+OK", R_OK, 4000000, reps);
    bench_encode(pool, ":integer", R_INT, 4000000, reps);
    bench_encode(pool, "$-1 (null)", R_NULL, 4000000, reps);
    bench_encode(pool, "bulk 16 B", R_BULK16, 4000000, reps);
    bench_encode(pool, "bulk 1024 B", R_BULK1K, 1000000, reps);
    bench_encode(pool, "array of 10 x 16 B", R_ARRAY10, 1000000, reps);
    resp_pool_destroy(pool);
    mi_heap_delete(heap);
    return 0;
}
