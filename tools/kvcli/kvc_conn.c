/*
 * kvc_conn: blocking TCP connection to kvd (or any RESP server), see kvc_conn.h.
 *
 * Reading keeps the current reply's first byte at in.data[0] (resp_reply's input
 * contract): bytes of the previous reply are dropped only when the next read starts,
 * since the caller prints from them in between. The tree starts with
 * KVC_CONN_NODES_MIN nodes; a reply with more is parsed once to count them (the parser
 * consumes it and reports how many did not fit), then again into an array of exactly
 * that size from the same bytes. Invariants: fd >= 0 iff connected; used <= in.len.
 * Single-threaded.
 */
#include "kvc_conn.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kv_assert.h"
#include "kv_error.h"

#include "kvc_args.h"

/* Nodes allocated up front: any reply short of a large KEYS or SCAN fits. */
#define KVC_CONN_NODES_MIN 1024u
/* Bytes asked of each recv(). */
#define KVC_CONN_RECV_BYTES (64 * 1024)
/* Bytes of one encoded request: the arguments plus their framing. */
#define KVC_CONN_REQ_BYTES_MAX (KVC_ARGS_BYTES_MAX + 64LL * KVC_ARGS_MAX)

void kvc_conn_init(struct kvc_conn *c)
{
    KV_ASSERT(c != NULL);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    kvc_buf_init(&c->in, (size_t)KVC_REPLY_BYTES_MAX);
    kvc_buf_init(&c->req, (size_t)KVC_CONN_REQ_BYTES_MAX);
    c->cap = KVC_CONN_NODES_MIN;
    c->nodes = malloc(c->cap * sizeof(*c->nodes));
    if (c->nodes == NULL) {
        fputs("kvcli: out of memory\n", stderr);
        exit(1);
    }
}

void kvc_conn_deinit(struct kvc_conn *c)
{
    kvc_conn_close(c);
    kvc_buf_deinit(&c->in);
    kvc_buf_deinit(&c->req);
    free(c->nodes);
    c->nodes = NULL;
    c->cap = 0;
}

static int set_error(struct kvc_conn *c, int rc, const char *text)
{
    snprintf(c->err, sizeof(c->err), "%s", text);
    return rc;
}

void kvc_conn_close(struct kvc_conn *c)
{
    KV_ASSERT(c != NULL);
    if (c->fd >= 0) {
        close(c->fd);
    }
    c->fd = -1;
    kvc_buf_clear(&c->in);
    c->used = 0;
}

/* One connect attempt to one address; returns the socket or -errno. */
static int connect_one(const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        return -errno;
    }
    int rc;
    do {
        rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    int one = 1;
    /* As hiredis does: a command is one small write, send it now; keepalive notices a
     * server that vanished while an interactive session sat idle. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    return fd;
}

int kvc_conn_open(struct kvc_conn *c, const char *host, int port)
{
    KV_ASSERT(c != NULL && host != NULL);
    kvc_conn_close(c);
    char service[16];
    snprintf(service, sizeof(service), "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int grc = getaddrinfo(host, service, &hints, &res);
    if (grc != 0) {
        return set_error(c, KV_EINVAL, gai_strerror(grc));
    }
    int fd = -ECONNREFUSED;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = connect_one(ai);
        if (fd >= 0) {
            break;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        return set_error(c, fd, strerror(-fd));
    }
    c->fd = fd;
    return 0;
}

int kvc_conn_send(struct kvc_conn *c, const struct kvc_args *a, int first)
{
    KV_ASSERT(c != NULL && c->fd >= 0);
    kvc_buf_clear(&c->req);
    if (kvc_args_encode(a, first, &c->req) != 0) {
        return set_error(c, KV_ELIMIT, "Command too long");
    }
    size_t off = 0;
    while (off < c->req.len) {
        ssize_t n = send(c->fd, c->req.data + off, c->req.len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            int err = errno;
            kvc_conn_close(c);
            return set_error(c, -err, strerror(err));
        }
        off += (size_t)n;
    }
    return 0;
}

/* Receives more bytes into c->in. */
static int recv_more(struct kvc_conn *c)
{
    size_t room = KVC_CONN_RECV_BYTES;
    if (room > c->in.max - c->in.len) {
        room = c->in.max - c->in.len;
    }
    if (room == 0 || kvc_buf_reserve(&c->in, room) != 0) {
        kvc_conn_close(c);
        return set_error(c, KV_ELIMIT, "Reply too large");
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->in.data + c->in.len, room, 0);
        if (n > 0) {
            c->in.len += (size_t)n;
            return 0;
        }
        if (n == 0) {
            kvc_conn_close(c);
            return set_error(c, -ECONNRESET, "Server closed the connection");
        }
        if (errno != EINTR) {
            int err = errno;
            kvc_conn_close(c);
            return set_error(c, -err, strerror(err));
        }
    }
}

/* The reply in c->in has `need` nodes: parse it again into an array that holds them. */
static int reparse_grown(struct kvc_conn *c, uint64_t need, size_t used)
{
    if (need > KVC_REPLY_NODES_MAX) {
        c->used = used;
        return set_error(c, KV_ELIMIT, "Reply has too many elements to print");
    }
    struct resp_reply_node *nodes = realloc(c->nodes, (size_t)need * sizeof(*nodes));
    if (nodes == NULL) {
        fputs("kvcli: out of memory\n", stderr);
        exit(1);
    }
    c->nodes = nodes;
    c->cap = (uint32_t)need;
    resp_reply_tree_init(&c->tree, c->nodes, c->cap);
    size_t used2 = 0;
    int rc = resp_reply_tree_parse(&c->tree, c->in.data, c->in.len, &used2);
    KV_ASSERT(rc == 0 && used2 == used);
    c->used = used;
    return 0;
}

int kvc_conn_read(struct kvc_conn *c, const struct resp_reply_tree **tree, uint32_t *root)
{
    KV_ASSERT(c != NULL && tree != NULL && root != NULL);
    KV_ASSERT(c->used <= c->in.len);
    kvc_buf_consume(&c->in, c->used);
    c->used = 0;
    if (c->fd < 0) {
        return set_error(c, -ENOTCONN, "Not connected");
    }
    resp_reply_tree_init(&c->tree, c->nodes, c->cap);
    for (;;) {
        if (c->in.len > 0) {
            size_t used = 0;
            int rc = resp_reply_tree_parse(&c->tree, c->in.data, c->in.len, &used);
            if (rc == KV_ELIMIT && used > 0) {
                rc = reparse_grown(c, (uint64_t)c->tree.n + c->tree.overflow, used);
                if (rc != 0) {
                    return rc;
                }
            } else if (rc == 0) {
                c->used = used;
            } else if (rc != KV_EAGAIN) {
                kvc_conn_close(c);
                return set_error(c, rc, rc == KV_EPROTO ? "Protocol error" : "Reply too large");
            }
            if (rc == 0) {
                *tree = &c->tree;
                *root = resp_reply_tree_root(&c->tree);
                return 0;
            }
        }
        int rc = recv_more(c);
        if (rc != 0) {
            return rc;
        }
    }
}

const char *kvc_conn_error(const struct kvc_conn *c)
{
    return c->err;
}
