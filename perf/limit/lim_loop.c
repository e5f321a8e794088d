/*
 * lim_loop: one limit-server thread: a listener and an io_uring loop, kvd's shape.
 *
 * Per loop turn:
 *   1. queue one send for every connection that has replies waiting and no send in
 *      flight (the "dirty" list), so replies to everything read in a turn leave in
 *      one send per connection;
 *   2. io_uring_submit_and_wait(1): the only syscall of the turn;
 *   3. reap every completion: accept (multishot: new connection, arm its recv),
 *      recv (multishot, provided buffer: count commands, append replies, give the
 *      buffer back at once), send (advance; a short send leaves the rest for the next
 *      turn's send).
 * The ring is created by this thread with IORING_SETUP_SINGLE_ISSUER |
 * IORING_SETUP_DEFER_TASKRUN (completions are produced only when this thread waits,
 * so there are no interrupts from task work mid-turn), falling back to no flags on
 * kernels before 6.1.
 *
 * Output buffer of a connection: [sent, inflight_end) is owned by the kernel until
 * the send completes; new replies go to [inflight_end, fill). Unsent bytes move to
 * the front only while no send is in flight. A connection is freed only when neither
 * a send nor a recv of it is still in flight, so no completion refers to a freed slot.
 *
 * Invariants: sent <= inflight_end <= fill <= LIM_OUT_BYTES; at most one send and one
 * recv per connection in flight; a connection is on the dirty list at most once.
 * Everything here belongs to the one thread that runs lim_thread_run().
 */
#include "lim.h"

#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kv_assert.h"

#define LIM_RING_ENTRIES 1024
#define LIM_BGID         0

enum lim_ud { LIM_UD_ACCEPT = 1, LIM_UD_RECV, LIM_UD_SEND };

struct lim_conn {
    int fd; /* -1: slot free */
    uint8_t recv_armed;
    uint8_t send_inflight;
    uint8_t closing; /* read side done or error: free once nothing is in flight */
    uint8_t dirty;
    struct lim_cmd cmd;
    char *out;
    uint32_t sent, inflight_end, fill;
};

struct lim_loop {
    struct lim_thread *t;
    struct io_uring ring;
    int lfd;
    int accept_armed;
    struct io_uring_buf_ring *br;
    char *bufs;
    struct lim_conn conns[LIM_CONNS_MAX];
    uint32_t free_slots[LIM_CONNS_MAX];
    uint32_t nfree;
    uint32_t dirty[LIM_CONNS_MAX];
    uint32_t ndirty;
};

static struct io_uring_sqe *get_sqe(struct lim_loop *l)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);
    if (sqe == NULL) { /* SQ full: push what is queued, without waiting */
        io_uring_submit(&l->ring);
        sqe = io_uring_get_sqe(&l->ring);
    }
    KV_ASSERT(sqe != NULL);
    return sqe;
}

static uint64_t ud(uint32_t idx, enum lim_ud op)
{
    return ((uint64_t)idx << 8) | op;
}

/* ---- set-up -------------------------------------------------------------------------- */

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 1024) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static int ring_setup(struct lim_loop *l)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    p.cq_entries = LIM_RING_ENTRIES * 8;
    int rc = io_uring_queue_init_params(LIM_RING_ENTRIES, &l->ring, &p);
    if (rc == -EINVAL) { /* before Linux 6.1 */
        memset(&p, 0, sizeof(p));
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = LIM_RING_ENTRIES * 8;
        rc = io_uring_queue_init_params(LIM_RING_ENTRIES, &l->ring, &p);
    }
    if (rc < 0) {
        return rc;
    }
    void *mem = NULL;
    if (posix_memalign(&mem, 4096, LIM_RECV_BUFS * sizeof(struct io_uring_buf)) != 0) {
        return -ENOMEM;
    }
    l->br = mem;
    l->bufs = malloc((size_t)LIM_RECV_BUFS * LIM_RECV_BUF_BYTES);
    if (l->bufs == NULL) {
        return -ENOMEM;
    }
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (unsigned long)(uintptr_t)l->br;
    reg.ring_entries = LIM_RECV_BUFS;
    reg.bgid = LIM_BGID;
    rc = io_uring_register_buf_ring(&l->ring, &reg, 0);
    if (rc < 0) {
        return rc;
    }
    io_uring_buf_ring_init(l->br);
    for (int i = 0; i < LIM_RECV_BUFS; i++) {
        io_uring_buf_ring_add(l->br, l->bufs + (size_t)i * LIM_RECV_BUF_BYTES, LIM_RECV_BUF_BYTES,
                              (unsigned short)i, io_uring_buf_ring_mask(LIM_RECV_BUFS), i);
    }
    io_uring_buf_ring_advance(l->br, LIM_RECV_BUFS);
    return 0;
}

/* ---- connections --------------------------------------------------------------------- */

static void arm_accept(struct lim_loop *l)
{
    struct io_uring_sqe *sqe = get_sqe(l);
    io_uring_prep_multishot_accept(sqe, l->lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud(0, LIM_UD_ACCEPT));
    l->accept_armed = 1;
}

static void arm_recv(struct lim_loop *l, uint32_t idx)
{
    struct io_uring_sqe *sqe = get_sqe(l);
    io_uring_prep_recv_multishot(sqe, l->conns[idx].fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = LIM_BGID;
    io_uring_sqe_set_data64(sqe, ud(idx, LIM_UD_RECV));
    l->conns[idx].recv_armed = 1;
}

static void on_accept(struct lim_loop *l, int fd)
{
    if (l->nfree == 0) { /* table full: refuse */
        close(fd);
        return;
    }
    uint32_t idx = l->free_slots[--l->nfree];
    struct lim_conn *c = &l->conns[idx];
    KV_ASSERT(c->fd == -1);
    c->out = malloc(LIM_OUT_BYTES); /* per connection, not per request */
    if (c->out == NULL) {
        close(fd);
        l->free_slots[l->nfree++] = idx;
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->fd = fd;
    c->recv_armed = c->send_inflight = c->closing = c->dirty = 0;
    c->sent = c->inflight_end = c->fill = 0;
    lim_cmd_init(&c->cmd);
    l->t->conns_accepted++;
    arm_recv(l, idx);
}

/* Free the slot once nothing of this connection is in flight. */
static void maybe_free(struct lim_loop *l, uint32_t idx)
{
    struct lim_conn *c = &l->conns[idx];
    if (!c->closing || c->recv_armed || c->send_inflight || c->dirty) {
        return;
    }
    close(c->fd);
    free(c->out);
    c->out = NULL;
    c->fd = -1;
    l->free_slots[l->nfree++] = idx;
}

static void conn_close(struct lim_loop *l, uint32_t idx)
{
    struct lim_conn *c = &l->conns[idx];
    if (!c->closing) {
        c->closing = 1;
        shutdown(c->fd, SHUT_RDWR); /* ends the multishot recv */
    }
    maybe_free(l, idx);
}

/* ---- requests and replies ------------------------------------------------------------ */

struct reply_ctx {
    struct lim_loop *l;
    struct lim_conn *c;
};

static int on_command(void *ctx, int is_get)
{
    struct reply_ctx *r = ctx;
    struct lim_conn *c = r->c;
    const char *rep = is_get ? "$-1\r\n" : "+OK\r\n";
    if (c->fill + 5 > LIM_OUT_BYTES) {
        return 1; /* output limit: the client does not read its replies */
    }
    memcpy(c->out + c->fill, rep, 5);
    c->fill += 5;
    r->l->t->commands++;
    return 0;
}

static void on_recv(struct lim_loop *l, uint32_t idx, const struct io_uring_cqe *cqe)
{
    struct lim_conn *c = &l->conns[idx];
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        c->recv_armed = 0;
    }
    if (cqe->res == -ENOBUFS && !c->closing) {
        arm_recv(l, idx); /* all buffers were in use; they are back by the next turn */
        return;
    }
    if (cqe->res <= 0) {
        conn_close(l, idx);
        return;
    }
    KV_ASSERT(cqe->flags & IORING_CQE_F_BUFFER);
    unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    KV_ASSERT(bid < LIM_RECV_BUFS);
    char *data = l->bufs + (size_t)bid * LIM_RECV_BUF_BYTES;
    if (!c->closing) {
        if (!c->send_inflight && c->sent > 0) { /* compact before appending */
            memmove(c->out, c->out + c->sent, c->fill - c->sent);
            c->fill -= c->sent;
            c->inflight_end = c->sent = 0;
        }
        struct reply_ctx r = {l, c};
        if (lim_cmd_feed(&c->cmd, data, (size_t)cqe->res, on_command, &r) != 0) {
            conn_close(l, idx);
        } else if (c->fill > c->inflight_end && !c->dirty) {
            c->dirty = 1;
            l->dirty[l->ndirty++] = idx;
        }
    }
    io_uring_buf_ring_add(l->br, data, LIM_RECV_BUF_BYTES, (unsigned short)bid,
                          io_uring_buf_ring_mask(LIM_RECV_BUFS), 0);
    io_uring_buf_ring_advance(l->br, 1);
    if (!c->recv_armed && !c->closing) {
        arm_recv(l, idx);
    }
}

static void on_send(struct lim_loop *l, uint32_t idx, int res)
{
    struct lim_conn *c = &l->conns[idx];
    c->send_inflight = 0;
    if (res < 0) {
        conn_close(l, idx);
        return;
    }
    c->sent += (uint32_t)res;
    KV_ASSERT(c->sent <= c->inflight_end);
    if (c->closing) {
        maybe_free(l, idx);
    } else if (c->fill > c->sent && !c->dirty) { /* a short send, or replies added meanwhile */
        c->dirty = 1;
        l->dirty[l->ndirty++] = idx;
    }
}

/* Step 1 of a turn: one send per dirty connection. */
static void flush(struct lim_loop *l)
{
    uint32_t keep = 0;
    for (uint32_t i = 0; i < l->ndirty; i++) {
        uint32_t idx = l->dirty[i];
        struct lim_conn *c = &l->conns[idx];
        if (c->send_inflight) {
            l->dirty[keep++] = idx; /* its turn comes when the send in flight completes */
            continue;
        }
        c->dirty = 0;
        if (c->closing) {
            maybe_free(l, idx);
            continue;
        }
        if (c->sent > 0) {
            memmove(c->out, c->out + c->sent, c->fill - c->sent);
            c->fill -= c->sent;
            c->sent = 0;
        }
        c->inflight_end = c->fill;
        struct io_uring_sqe *sqe = get_sqe(l);
        io_uring_prep_send(sqe, c->fd, c->out, c->fill, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, ud(idx, LIM_UD_SEND));
        c->send_inflight = 1;
    }
    l->ndirty = keep;
    for (uint32_t i = 0; i < keep; i++) {
        l->conns[l->dirty[i]].dirty = 1;
    }
}

static void on_cqe(struct lim_loop *l, const struct io_uring_cqe *cqe)
{
    uint64_t d = io_uring_cqe_get_data64(cqe);
    uint32_t idx = (uint32_t)(d >> 8);
    switch (d & 0xff) {
    case LIM_UD_ACCEPT:
        if (!(cqe->flags & IORING_CQE_F_MORE)) {
            l->accept_armed = 0;
        }
        if (cqe->res >= 0) {
            on_accept(l, cqe->res);
        }
        break;
    case LIM_UD_RECV:
        on_recv(l, idx, cqe);
        break;
    case LIM_UD_SEND:
        on_send(l, idx, cqe->res);
        break;
    default:
        KV_ASSERT(0 && "unknown completion");
    }
}

static void pin(int cpu)
{
    if (cpu < 0) {
        return;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

void *lim_thread_run(void *arg)
{
    struct lim_thread *t = arg;
    struct lim_loop *l = calloc(1, sizeof(*l));
    KV_ASSERT(l != NULL);
    l->t = t;
    pin(t->cpu);
    for (uint32_t i = 0; i < LIM_CONNS_MAX; i++) {
        l->conns[i].fd = -1;
        l->free_slots[i] = LIM_CONNS_MAX - 1 - i;
    }
    l->nfree = LIM_CONNS_MAX;
    l->lfd = listen_on(t->port);
    if (l->lfd < 0) {
        t->rc = l->lfd;
        free(l);
        return NULL;
    }
    t->rc = ring_setup(l);
    if (t->rc != 0) {
        close(l->lfd);
        free(l);
        return NULL;
    }
    while (!*t->stop) {
        if (!l->accept_armed) {
            arm_accept(l);
        }
        flush(l);
        int rc = io_uring_submit_and_wait(&l->ring, 1);
        KV_ASSERT(rc >= 0 || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY);
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&l->ring, head, cqe)
        {
            on_cqe(l, cqe);
            seen++;
        }
        io_uring_cq_advance(&l->ring, seen);
        t->turns++;
    }
    io_uring_queue_exit(&l->ring);
    for (uint32_t i = 0; i < LIM_CONNS_MAX; i++) {
        if (l->conns[i].fd >= 0) {
            close(l->conns[i].fd);
            free(l->conns[i].out);
        }
    }
    close(l->lfd);
    free(l->bufs);
    free(l->br);
    free(l);
    return NULL;
}
