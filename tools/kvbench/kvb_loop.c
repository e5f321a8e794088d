/*
 * kvb_loop: one kvbench worker: an io_uring loop over its share of the connections.
 *
 * Why this shape: the load generator must cost the server's core more than it costs
 * its own, so it makes no syscall per request. Each loop turn (1) writes new requests
 * into each connection's send buffer, (2) queues one send per connection that has
 * unsent bytes and no send in flight, (3) submits and waits in one
 * io_uring_submit_and_wait_timeout, (4) reaps every completion. Replies arrive through
 * one multishot recv per connection into a ring of provided buffers; they are parsed
 * in place (resp_reply) and only an incomplete tail is copied into the connection's
 * own buffer, where the next bytes are appended to it.
 *
 * Timing: the clock is read once per loop turn. In closed loop a request's latency
 * starts when it is written into the send buffer. In open loop (--rate) every
 * connection follows a fixed schedule of intended send times, and latency starts at
 * the intended time even when the request could only leave later (pipeline full,
 * loop late): a stalled server then shows up as latency instead of silently lowering
 * the offered load (coordinated omission).
 *
 * Invariants: per connection, the in-flight FIFO holds exactly the requests written
 * and not yet answered, in order (RESP answers in order); sent <= inflight_end <= fill
 * <= scap; at most one send and one recv in flight. Memory is allocated at set-up from
 * the configuration, never per request. Only the worker's own thread touches any of it.
 */
#include "kvb.h"

#include <errno.h>
#include <liburing.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kv_assert.h"
#include "kv_clock.h"
#include "kv_error.h"
#include "resp_reply.h"

/* Provided receive buffers: size of one, and how many per connection (power of two total). */
#define KVB_RECV_BUF_BYTES     (16 * 1024)
#define KVB_RECV_BUFS_PER_CONN 4
#define KVB_RECV_BUFS_MAX      4096
/* How long to wait for the replies still in flight once the run is over. */
#define KVB_DRAIN_NS (5ull * 1000 * 1000 * 1000)
/* An open-loop request sent this much after its intended time counts as late. */
#define KVB_LATE_NS (1000ull * 1000)

enum kvb_op { KVB_OP_GET, KVB_OP_SET };
enum kvb_ud { KVB_UD_RECV = 1, KVB_UD_SEND = 2 };
enum kvb_phase { KVB_PHASE_LOAD, KVB_PHASE_RUN };

struct kvb_conn {
    int fd;
    int alive;
    int recv_armed;
    int send_inflight;
    struct resp_reply_parser parser;
    /* the top-level value of the reply being parsed, captured by on_value */
    enum resp_reply_type top_type;
    const char *top_str;
    size_t top_len;
    /* send buffer: [sent, inflight_end) is being sent, [inflight_end, fill) waits */
    char *sbuf;
    size_t scap, sent, inflight_end, fill;
    /* the incomplete tail of the reply stream */
    char *rbuf;
    size_t rcap, rlen;
    /* requests in flight, oldest at head (a ring of cfg->pipeline entries) */
    uint64_t *t0_ns;
    uint64_t *keys;
    uint8_t *ops;
    uint32_t head, count;
    /* open loop: the intended time of this connection's next request */
    double next_ns;
    double interval_ns;
};

struct kvb_loop {
    struct kvb_worker *w;
    const struct kvb_config *cfg;
    struct io_uring ring;
    int ring_ok;
    struct io_uring_buf_ring *br;
    char *bufs;
    uint32_t nbufs;
    struct kvb_conn *conns;
    int nconns;
    struct kvb_rng rng;
    uint64_t seq;  /* sequential distribution cursor */
    char *filler;  /* value bytes when not verifying */
    char *scratch; /* expected value when verifying */
    enum kvb_phase phase;
    uint64_t issued;    /* requests written in this phase */
    uint64_t load_next; /* next key of the load phase */
    int stop;           /* no more requests in this phase */
    uint64_t now_ns;
    uint64_t tick_ns;         /* next progress tick */
    struct kvb_hist interval; /* latency of the current second */
};

static void on_value(void *ctx, const struct resp_reply_value *v)
{
    struct kvb_conn *c = ctx;
    if (v->depth == 0 && v->type != RESP_REPLY_ATTRIBUTE) {
        c->top_type = v->type;
        c->top_str = v->str;
        c->top_len = v->len;
    }
}

static const struct resp_reply_callbacks reply_cb = {.on_value = on_value, .on_end = NULL};

static void setup_fail(struct kvb_worker *w, int rc, const char *what, const char *detail)
{
    if (w->setup_rc == 0) {
        w->setup_rc = rc;
        snprintf(w->setup_err, sizeof(w->setup_err), "%s: %s", what, detail);
    }
}

/* ---- set-up --------------------------------------------------------------------------- */

static int ring_setup(struct kvb_loop *l)
{
    uint32_t entries = 256;
    while (entries < (uint32_t)l->nconns * 2 + 16) {
        entries *= 2;
    }
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    p.cq_entries = entries * 8; /* multishot recvs can post several completions a turn */
    int rc = io_uring_queue_init_params(entries, &l->ring, &p);
    if (rc == -EINVAL) { /* kernel before 6.1: no single issuer / deferred task work */
        memset(&p, 0, sizeof(p));
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = entries * 8;
        rc = io_uring_queue_init_params(entries, &l->ring, &p);
    }
    if (rc < 0) {
        return rc;
    }
    l->ring_ok = 1;

    uint32_t n = 64;
    while (n < (uint32_t)l->nconns * KVB_RECV_BUFS_PER_CONN && n < KVB_RECV_BUFS_MAX) {
        n *= 2;
    }
    l->nbufs = n;
    void *brmem = NULL;
    if (posix_memalign(&brmem, 4096, n * sizeof(struct io_uring_buf)) != 0) {
        return -ENOMEM;
    }
    l->br = brmem;
    l->bufs = malloc((size_t)n * KVB_RECV_BUF_BYTES);
    if (l->bufs == NULL) {
        return -ENOMEM;
    }
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (unsigned long)(uintptr_t)l->br;
    reg.ring_entries = n;
    reg.bgid = 0;
    rc = io_uring_register_buf_ring(&l->ring, &reg, 0);
    if (rc < 0) {
        return rc;
    }
    io_uring_buf_ring_init(l->br);
    int mask = io_uring_buf_ring_mask(n);
    for (uint32_t i = 0; i < n; i++) {
        io_uring_buf_ring_add(l->br, l->bufs + (size_t)i * KVB_RECV_BUF_BYTES, KVB_RECV_BUF_BYTES,
                              (unsigned short)i, mask, (int)i);
    }
    io_uring_buf_ring_advance(l->br, (int)n);
    return 0;
}

/* Send AUTH and read its reply, blocking; 0 if the server said +OK. */
static int conn_auth(struct kvb_loop *l, struct kvb_conn *c)
{
    const char *pw = l->cfg->password;
    char req[600];
    int n = snprintf(req, sizeof(req), "*2\r\n$4\r\nAUTH\r\n$%zu\r\n%s\r\n", strlen(pw), pw);
    if (n < 0 || (size_t)n >= sizeof(req)) {
        setup_fail(l->w, KV_ELIMIT, "AUTH", "password too long");
        return KV_ELIMIT;
    }
    if (send(c->fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        setup_fail(l->w, -errno, "AUTH", strerror(errno));
        return -EIO;
    }
    struct resp_reply_node nodes[8];
    struct resp_reply_tree t;
    resp_reply_tree_init(&t, nodes, KV_ARRAY_LEN(nodes));
    char buf[512];
    size_t len = 0, used = 0;
    for (;;) {
        ssize_t r = recv(c->fd, buf + len, sizeof(buf) - len, 0);
        if (r <= 0) {
            setup_fail(l->w, -EIO, "AUTH", "connection closed");
            return -EIO;
        }
        len += (size_t)r;
        int rc = resp_reply_tree_parse(&t, buf, len, &used);
        if (rc == KV_EAGAIN && len < sizeof(buf)) {
            continue;
        }
        if (rc != 0) {
            setup_fail(l->w, rc, "AUTH", kv_strerror(rc));
            return rc;
        }
        break;
    }
    const struct resp_reply_node *r = &nodes[resp_reply_tree_root(&t)];
    if (r->type != RESP_REPLY_STRING) {
        char msg[128];
        snprintf(msg, sizeof(msg), "%.*s", (int)(r->len < 100 ? r->len : 100),
                 r->str != NULL ? r->str : "unexpected reply");
        setup_fail(l->w, KV_EPROTO, "AUTH", msg);
        return KV_EPROTO;
    }
    return 0;
}

static int conn_setup(struct kvb_loop *l, struct kvb_conn *c, const struct addrinfo *ai)
{
    const struct kvb_config *cfg = l->cfg;
    size_t req_max = kvb_request_size_max(cfg);
    c->scap = 2 * (size_t)cfg->pipeline * req_max;
    c->sbuf = malloc(c->scap);
    c->rcap =
        (cfg->value_max + 256 > 64 * 1024 ? cfg->value_max + 256 : 64 * 1024) + KVB_RECV_BUF_BYTES;
    c->rbuf = malloc(c->rcap);
    c->t0_ns = calloc((size_t)cfg->pipeline, sizeof(*c->t0_ns));
    c->keys = calloc((size_t)cfg->pipeline, sizeof(*c->keys));
    c->ops = calloc((size_t)cfg->pipeline, sizeof(*c->ops));
    if (!c->sbuf || !c->rbuf || !c->t0_ns || !c->keys || !c->ops) {
        setup_fail(l->w, -ENOMEM, "memory", "connection buffers");
        return -ENOMEM;
    }
    resp_reply_parser_init(&c->parser, &reply_cb, c);
    c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        setup_fail(l->w, -errno, "socket", strerror(errno));
        return -errno;
    }
    if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        int e = errno;
        char what[80];
        snprintf(what, sizeof(what), "connect %.40s:%d", cfg->host, cfg->port);
        setup_fail(l->w, -e, what, strerror(e));
        return -e;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (cfg->password != NULL && conn_auth(l, c) != 0) {
        return KV_EPROTO;
    }
    c->alive = 1;
    return 0;
}

static int loop_setup(struct kvb_loop *l)
{
    const struct kvb_config *cfg = l->cfg;
    int rc = ring_setup(l);
    if (rc < 0) {
        setup_fail(l->w, rc, "io_uring set-up", strerror(-rc));
        return rc;
    }
    l->filler = malloc(cfg->value_max + 1);
    l->scratch = malloc(cfg->value_max + 1);
    l->conns = calloc((size_t)l->nconns, sizeof(*l->conns));
    if (!l->filler || !l->scratch || !l->conns) {
        setup_fail(l->w, -ENOMEM, "memory", "worker buffers");
        return -ENOMEM;
    }
    memset(l->filler, 'x', cfg->value_max);
    for (int i = 0; i < l->nconns; i++) {
        l->conns[i].fd = -1;
    }
    char port[16];
    snprintf(port, sizeof(port), "%d", cfg->port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    rc = getaddrinfo(cfg->host, port, &hints, &ai);
    if (rc != 0) {
        setup_fail(l->w, KV_EINVAL, cfg->host, gai_strerror(rc));
        return KV_EINVAL;
    }
    for (int i = 0; i < l->nconns && rc == 0; i++) {
        rc = conn_setup(l, &l->conns[i], ai);
    }
    freeaddrinfo(ai);
    return rc;
}

static void loop_teardown(struct kvb_loop *l)
{
    for (int i = 0; l->conns != NULL && i < l->nconns; i++) {
        struct kvb_conn *c = &l->conns[i];
        if (c->fd >= 0) {
            close(c->fd);
        }
        free(c->sbuf);
        free(c->rbuf);
        free(c->t0_ns);
        free(c->keys);
        free(c->ops);
    }
    if (l->ring_ok) {
        io_uring_queue_exit(&l->ring);
    }
    free(l->conns);
    free(l->filler);
    free(l->scratch);
    free(l->bufs);
    free(l->br);
}

/* ---- requests ------------------------------------------------------------------------- */

static void conn_fail(struct kvb_loop *l, struct kvb_conn *c)
{
    if (c->alive) {
        c->alive = 0;
        l->w->stats.conn_failures++;
        shutdown(c->fd, SHUT_RDWR);
    }
}

/* May this connection write another request now? */
static int may_issue(struct kvb_loop *l, const struct kvb_conn *c)
{
    if (l->stop || !c->alive || c->count == (uint32_t)l->cfg->pipeline) {
        return 0;
    }
    if (l->phase == KVB_PHASE_LOAD) {
        return l->load_next < l->w->load_first + l->w->load_count;
    }
    if (l->w->quota != 0 && l->issued >= l->w->quota) {
        return 0;
    }
    return l->w->rate <= 0.0 || c->next_ns <= (double)l->now_ns;
}

static void issue(struct kvb_loop *l, struct kvb_conn *c)
{
    const struct kvb_config *cfg = l->cfg;
    uint64_t key;
    enum kvb_op op;
    if (l->phase == KVB_PHASE_LOAD) {
        key = l->load_next++;
        op = KVB_OP_SET;
    } else {
        key = kvb_key_next(cfg, &l->rng, &l->seq);
        uint64_t total = (uint64_t)cfg->set_weight + cfg->get_weight;
        op = kvb_rng_next(&l->rng) % total < cfg->set_weight ? KVB_OP_SET : KVB_OP_GET;
    }
    KV_ASSERT(c->fill + kvb_request_size_max(cfg) <= c->scap); /* at most 2 pipelines buffered */
    char *out = c->sbuf + c->fill;
    c->fill +=
        op == KVB_OP_GET ? kvb_encode_get(out, key) : kvb_encode_set(out, cfg, key, l->filler);
    uint64_t t0 = l->now_ns;
    if (l->phase == KVB_PHASE_RUN && l->w->rate > 0.0) {
        t0 = (uint64_t)c->next_ns;
        if (l->now_ns > t0 + KVB_LATE_NS) {
            l->w->stats.late++;
        }
        c->next_ns += c->interval_ns;
    }
    uint32_t slot = (c->head + c->count) % (uint32_t)cfg->pipeline;
    c->t0_ns[slot] = t0;
    c->keys[slot] = key;
    c->ops[slot] = (uint8_t)op;
    c->count++;
    l->issued++;
}

static void conn_fill_and_send(struct kvb_loop *l, struct kvb_conn *c, int idx)
{
    if (!c->send_inflight && c->sent > 0) {
        /* nothing in flight: move the unsent bytes to the front */
        memmove(c->sbuf, c->sbuf + c->sent, c->fill - c->sent);
        c->fill -= c->sent;
        c->sent = 0;
        c->inflight_end = 0;
    }
    /* Closed loop writes a whole pipeline at once and waits for all of its replies, as
     * redis-benchmark -P does: the server then reads P requests per read, and the two
     * tools compare. Open loop issues each request at its time. */
    int batch = l->phase == KVB_PHASE_LOAD || l->w->rate <= 0.0;
    if (!batch || c->count == 0) {
        while (may_issue(l, c)) {
            issue(l, c);
        }
    }
    if (!c->alive || c->send_inflight || c->fill == c->sent) {
        return;
    }
    struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);
    KV_ASSERT(sqe != NULL); /* the SQ holds two entries per connection */
    c->inflight_end = c->fill;
    io_uring_prep_send(sqe, c->fd, c->sbuf + c->sent, c->inflight_end - c->sent, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ((uint64_t)idx << 8) | KVB_UD_SEND);
    c->send_inflight = 1;
}

static void conn_arm_recv(struct kvb_loop *l, struct kvb_conn *c, int idx)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);
    KV_ASSERT(sqe != NULL);
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = 0;
    io_uring_sqe_set_data64(sqe, ((uint64_t)idx << 8) | KVB_UD_RECV);
    c->recv_armed = 1;
}

/* ---- replies -------------------------------------------------------------------------- */

static void check_reply(struct kvb_loop *l, struct kvb_conn *c)
{
    struct kvb_stats *st = &l->w->stats;
    if (c->count == 0) {
        st->unexpected++; /* a reply nobody asked for */
        return;
    }
    uint32_t slot = c->head;
    c->head = (c->head + 1) % (uint32_t)l->cfg->pipeline;
    c->count--;
    enum resp_reply_type t = c->top_type;
    if (l->phase == KVB_PHASE_RUN) {
        uint64_t lat = l->now_ns > c->t0_ns[slot] ? l->now_ns - c->t0_ns[slot] : 0;
        kvb_hist_record(&st->hist, lat);
        kvb_hist_record(&l->interval, lat);
        st->requests++;
    }
    if (t == RESP_REPLY_ERROR || t == RESP_REPLY_BULK_ERROR) {
        st->errors++;
        return;
    }
    if (c->ops[slot] == KVB_OP_SET) {
        st->sets += l->phase == KVB_PHASE_RUN;
        if (t != RESP_REPLY_STRING || c->top_len != 2 || memcmp(c->top_str, "OK", 2) != 0) {
            st->unexpected++;
        }
        return;
    }
    st->gets++;
    if (t == RESP_REPLY_NULL) {
        st->misses++;
        return;
    }
    if (t != RESP_REPLY_BULK) {
        st->unexpected++;
        return;
    }
    st->hits++;
    if (l->cfg->verify) {
        uint64_t key = c->keys[slot];
        uint32_t vlen = kvb_value_len(l->cfg, key);
        kvb_value_fill(l->scratch, vlen, key);
        if (c->top_len != vlen || memcmp(c->top_str, l->scratch, vlen) != 0) {
            st->verify_failures++;
        }
    }
}

/* Parse the replies in buf[0..len), which starts at the first byte of a reply. */
static size_t parse_replies(struct kvb_loop *l, struct kvb_conn *c, const char *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        size_t used = 0;
        int rc = resp_reply_parse(&c->parser, buf + off, len - off, &used);
        if (rc == KV_EAGAIN) {
            break;
        }
        if (rc != 0) {
            fprintf(stderr, "kvbench: bad reply from the server: %s\n", kv_strerror(rc));
            conn_fail(l, c);
            return len;
        }
        check_reply(l, c);
        off += used;
    }
    return off;
}

static void on_data(struct kvb_loop *l, struct kvb_conn *c, const char *data, size_t n)
{
    if (c->rlen == 0) { /* common case: parse in place, keep only an incomplete tail */
        size_t off = parse_replies(l, c, data, n);
        if (off < n && c->alive) {
            if (n - off > c->rcap) {
                goto too_big;
            }
            memcpy(c->rbuf, data + off, n - off);
            c->rlen = n - off;
        }
        return;
    }
    if (c->rlen + n > c->rcap) {
        goto too_big;
    }
    memcpy(c->rbuf + c->rlen, data, n);
    c->rlen += n;
    size_t off = parse_replies(l, c, c->rbuf, c->rlen);
    if (off > 0 && c->alive) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
    return;
too_big:
    fprintf(stderr, "kvbench: a reply is larger than the %zu-byte receive buffer\n", c->rcap);
    conn_fail(l, c);
}

static void on_cqe(struct kvb_loop *l, const struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    struct kvb_conn *c = &l->conns[ud >> 8];
    if ((ud & 0xff) == KVB_UD_SEND) {
        c->send_inflight = 0;
        if (cqe->res < 0) {
            conn_fail(l, c);
            return;
        }
        c->sent += (size_t)cqe->res;
        KV_ASSERT(c->sent <= c->inflight_end);
        return; /* a short send's rest goes out with the next turn's send */
    }
    KV_ASSERT((ud & 0xff) == KVB_UD_RECV);
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        c->recv_armed = 0;
    }
    if (cqe->res == -ENOBUFS) {
        return; /* re-armed next turn, once buffers are back */
    }
    if (cqe->res <= 0) {
        conn_fail(l, c);
        return;
    }
    KV_ASSERT(cqe->flags & IORING_CQE_F_BUFFER);
    unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    KV_ASSERT(bid < l->nbufs);
    char *data = l->bufs + (size_t)bid * KVB_RECV_BUF_BYTES;
    if (c->alive) {
        on_data(l, c, data, (size_t)cqe->res);
    }
    io_uring_buf_ring_add(l->br, data, KVB_RECV_BUF_BYTES, (unsigned short)bid,
                          io_uring_buf_ring_mask(l->nbufs), 0);
    io_uring_buf_ring_advance(l->br, 1);
}

/* ---- the loop ------------------------------------------------------------------------- */

static uint64_t in_flight(const struct kvb_loop *l)
{
    uint64_t n = 0;
    for (int i = 0; i < l->nconns; i++) {
        n += l->conns[i].alive ? l->conns[i].count : 0;
    }
    return n;
}

static int any_alive(const struct kvb_loop *l)
{
    for (int i = 0; i < l->nconns; i++) {
        if (l->conns[i].alive) {
            return 1;
        }
    }
    return 0;
}

static void progress_tick(struct kvb_loop *l)
{
    atomic_store_explicit(&l->w->live.p99_ns, kvb_hist_quantile(&l->interval, 0.99),
                          memory_order_relaxed);
    kvb_hist_reset(&l->interval);
    l->tick_ns += 1000000000ull;
}

/* When the loop must wake up even without completions (0: only for completions). */
static uint64_t wake_at(const struct kvb_loop *l, uint64_t end_ns)
{
    uint64_t at = l->phase == KVB_PHASE_RUN ? l->tick_ns : 0;
    if (end_ns != 0 && (at == 0 || end_ns < at)) {
        at = end_ns;
    }
    int quota_left = l->w->quota == 0 || l->issued < l->w->quota;
    if (l->phase == KVB_PHASE_RUN && l->w->rate > 0.0 && !l->stop && quota_left) {
        for (int i = 0; i < l->nconns; i++) {
            const struct kvb_conn *c = &l->conns[i];
            if (c->alive && c->count < (uint32_t)l->cfg->pipeline && (uint64_t)c->next_ns < at) {
                at = (uint64_t)c->next_ns;
            }
        }
    }
    return at;
}

/* Run one phase until its requests are issued and answered (or end_ns, then drain). */
static void run_phase(struct kvb_loop *l, uint64_t end_ns)
{
    uint64_t drain_until = 0;
    l->stop = 0;
    l->issued = 0;
    for (;;) {
        l->now_ns = kv_clock_mono_ns();
        if ((end_ns != 0 && l->now_ns >= end_ns) ||
            atomic_load_explicit(&kvb_stop_requested, memory_order_relaxed)) {
            l->stop = 1;
        }
        if (l->phase == KVB_PHASE_RUN && l->now_ns >= l->tick_ns) {
            progress_tick(l);
        }
        for (int i = 0; i < l->nconns; i++) {
            struct kvb_conn *c = &l->conns[i];
            if (c->alive && !c->recv_armed) {
                conn_arm_recv(l, c, i);
            }
            conn_fill_and_send(l, c, i);
        }
        int idle = !any_alive(l) || in_flight(l) == 0;
        if (idle) {
            int more = 0;
            for (int i = 0; i < l->nconns && !more; i++) {
                more = may_issue(l, &l->conns[i]) ||
                       (l->phase == KVB_PHASE_RUN && l->w->rate > 0.0 && !l->stop &&
                        l->conns[i].alive && (l->w->quota == 0 || l->issued < l->w->quota));
            }
            if (!more) {
                break;
            }
        }
        if (l->stop) {
            if (drain_until == 0) {
                drain_until = l->now_ns + KVB_DRAIN_NS;
            } else if (l->now_ns >= drain_until) {
                break;
            }
        }
        uint64_t at = drain_until != 0 ? drain_until : wake_at(l, end_ns);
        int rc;
        if (at != 0) {
            uint64_t wait = at > l->now_ns ? at - l->now_ns : 0;
            struct __kernel_timespec ts = {.tv_sec = (long long)(wait / 1000000000u),
                                           .tv_nsec = (long long)(wait % 1000000000u)};
            struct io_uring_cqe *cqe = NULL;
            rc = io_uring_submit_and_wait_timeout(&l->ring, &cqe, 1, &ts, NULL);
        } else {
            rc = io_uring_submit_and_wait(&l->ring, 1);
        }
        KV_ASSERT(rc >= 0 || rc == -ETIME || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY);
        l->now_ns = kv_clock_mono_ns();
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&l->ring, head, cqe)
        {
            on_cqe(l, cqe);
            seen++;
        }
        io_uring_cq_advance(&l->ring, seen);
        atomic_store_explicit(&l->w->live.done, l->w->stats.requests, memory_order_relaxed);
    }
}

void *kvb_worker_run(void *arg)
{
    struct kvb_worker *w = arg;
    const struct kvb_config *cfg = w->cfg;
    struct kvb_loop *l = calloc(1, sizeof(*l));
    KV_ASSERT(l != NULL);
    l->w = w;
    l->cfg = cfg;
    l->nconns = w->conn_count;
    kvb_rng_seed(&l->rng, cfg->seed + (uint64_t)w->id * 0x9E3779B97F4A7C15ull);
    l->seq = cfg->keyspace * (uint64_t)w->id / (uint64_t)cfg->threads;
    kvb_hist_reset(&w->stats.hist);

    int rc = loop_setup(l);
    if (rc == 0 && w->load_count > 0) {
        uint64_t t = kv_clock_mono_ns();
        l->phase = KVB_PHASE_LOAD;
        l->load_next = w->load_first;
        run_phase(l, 0);
        w->load_ns = kv_clock_mono_ns() - t;
    }
    pthread_barrier_wait(w->ready);
    pthread_barrier_wait(w->go);
    if (rc == 0 && !atomic_load(w->abort)) {
        l->phase = KVB_PHASE_RUN;
        w->start_ns = kv_clock_mono_ns();
        w->end_ns = cfg->duration_s > 0 ? w->start_ns + (uint64_t)(cfg->duration_s * 1e9) : 0;
        l->tick_ns = w->start_ns + 1000000000ull;
        for (int i = 0; i < l->nconns; i++) {
            struct kvb_conn *c = &l->conns[i];
            c->interval_ns = w->rate > 0.0 ? 1e9 * l->nconns / w->rate : 0.0;
            /* stagger the connections over one interval so the load is smooth */
            c->next_ns = (double)w->start_ns + c->interval_ns * i / l->nconns;
        }
        run_phase(l, w->end_ns);
        w->elapsed_ns = kv_clock_mono_ns() - w->start_ns;
    }
    atomic_store(&w->live.finished, 1);
    loop_teardown(l);
    free(l);
    return NULL;
}
