/*
 * kvc_conn: kvcli's connection to a server: connect, send one command, read one reply.
 *
 * Blocking sockets, one request in flight: a command-line client waits for each reply
 * before it prints it, so nothing is gained from an event loop. A reply is read into a
 * growing buffer until resp_reply's tree parser reports it complete; the tree (nodes
 * grown to the reply's size) and the bytes it points into stay valid until the next
 * kvc_conn_read(), kvc_conn_send() or kvc_conn_close().
 *
 * Errors: the functions return 0, -errno for socket errors (-ECONNRESET also for a
 * server that closed the connection), KV_EPROTO for a malformed reply and KV_ELIMIT for
 * a reply past KVC_REPLY_BYTES_MAX (these three close the connection), or KV_ELIMIT with
 * the connection kept for a reply with more than KVC_REPLY_NODES_MAX elements (it was
 * read and skipped). kvc_conn_error() gives redis-cli's wording of the last error
 * ("Connection refused", "Server closed the connection"). Single-threaded.
 */
#ifndef KVC_CONN_H
#define KVC_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "resp_reply.h"

#include "kvc_buf.h"

struct kvc_args;

/* Largest reply kvcli reads, in bytes: a 512 MiB bulk (Redis's proto-max-bulk-len) with
 * room to spare; kvd refuses to queue more than 256 MiB for one client by default. */
#define KVC_REPLY_BYTES_MAX (1024LL * 1024 * 1024)
/* Elements of one reply kvcli prints (16M nodes of ~72 bytes: ~1.2 GiB of tree). */
#define KVC_REPLY_NODES_MAX (16u * 1024 * 1024)
/* Text of the last error. */
#define KVC_CONN_ERR_MAX 256

struct kvc_conn {
    int fd;             /* -1 when not connected */
    struct kvc_buf in;  /* received bytes; in.data[0] is the first byte of the current reply */
    struct kvc_buf req; /* the encoded request */
    size_t used;        /* bytes of the reply returned last, dropped at the next read */
    struct resp_reply_node *nodes; /* owned, cap entries */
    uint32_t cap;
    struct resp_reply_tree tree;
    char err[KVC_CONN_ERR_MAX];
};

void kvc_conn_init(struct kvc_conn *c);
void kvc_conn_deinit(struct kvc_conn *c); /* closes and frees */

/* Connects to host:port (name or address, IPv4 or IPv6). Returns 0 or an error. */
int kvc_conn_open(struct kvc_conn *c, const char *host, int port);
void kvc_conn_close(struct kvc_conn *c);

static inline bool kvc_conn_is_open(const struct kvc_conn *c)
{
    return c->fd >= 0;
}

/* Sends argv[first..argc) as one RESP request. Returns 0 or an error. */
int kvc_conn_send(struct kvc_conn *c, const struct kvc_args *a, int first);

/*
 * Waits for the next complete reply. On 0, *tree is the parsed reply and *root its value
 * (after any attributes), both valid until the next call on c.
 */
int kvc_conn_read(struct kvc_conn *c, const struct resp_reply_tree **tree, uint32_t *root);

/* redis-cli's text for the last error (static storage inside c). */
const char *kvc_conn_error(const struct kvc_conn *c);

#endif
