/*
 * resp_reply: the client-side parser of RESP2 and RESP3 replies.
 *
 * Clients (kvbench, kvcli, tests) read what a server sends back with it. Two forms:
 *
 * - The event form (struct resp_reply_parser): it calls on_value() for each scalar and
 *   for the start of each aggregate, and on_end() when an aggregate is complete, in
 *   the order the elements appear on the wire. A printer or a checker walks the reply
 *   while it arrives; nothing is stored, so a reply of any size costs no memory.
 * - The tree form (struct resp_reply_tree): the same events collected into a
 *   caller-provided node array in pre-order, handed over when the whole reply is in.
 *
 * Input contract (both forms): the caller keeps the bytes of the reply being parsed
 * contiguous. Each call passes a buffer that starts at the first byte of the current
 * reply and holds every byte received so far; between calls the caller may move that
 * buffer (grow or compact it) and append to it, but not drop bytes of an incomplete
 * reply. The parser remembers how far it got, so the work over a reply is linear in
 * its size wherever the input was split. Views (str/len) point into the buffer of the
 * current call: zero copy, valid until the caller changes the buffer.
 *
 * Errors: 0 and *used when a reply is complete; KV_EAGAIN when more bytes are needed
 * (events for the elements already complete have been delivered and are not repeated);
 * KV_EPROTO on malformed input and KV_ELIMIT when a named limit (KV_RESP_REPLY_*) is
 * exceeded: after either the stream cannot be resynchronised; reset the parser and
 * drop the connection.
 *
 * Pure: no I/O, no allocation, no global state; one parser per connection, used by one
 * thread at a time.
 */
#ifndef RESP_REPLY_H
#define RESP_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include "kv_limits.h"

enum resp_reply_type {
    RESP_REPLY_STRING = 1, /* +  simple string */
    RESP_REPLY_ERROR,      /* -  simple error */
    RESP_REPLY_INTEGER,    /* :  integer */
    RESP_REPLY_BULK,       /* $  bulk string */
    RESP_REPLY_NULL,       /* _  RESP3 null, and RESP2's $-1 and *-1 */
    RESP_REPLY_DOUBLE,     /* ,  double (text kept in str/len, value in dbl) */
    RESP_REPLY_BOOLEAN,    /* #  boolean (integer is 0 or 1) */
    RESP_REPLY_BIGNUM,     /* (  big number (digits in str/len) */
    RESP_REPLY_BULK_ERROR, /* !  blob error */
    RESP_REPLY_VERBATIM,   /* =  verbatim string (format in fmt, text in str/len) */
    RESP_REPLY_ARRAY,      /* *  array */
    RESP_REPLY_MAP,        /* %  map: count pairs, 2 * count children */
    RESP_REPLY_SET,        /* ~  set */
    RESP_REPLY_PUSH,       /* >  out-of-band push */
    RESP_REPLY_ATTRIBUTE,  /* |  attribute map: count pairs, then the value it annotates */
};

/* True for the types that have children. */
static inline int resp_reply_type_is_aggregate(enum resp_reply_type t)
{
    return t >= RESP_REPLY_ARRAY;
}

/* A short lowercase name of a type ("bulk", "map", ...), static. */
const char *resp_reply_type_name(enum resp_reply_type t);

/*
 * One element as the event form delivers it. str/len point into the caller's buffer
 * and are valid only during the callback. For aggregates, count is the declared
 * number of elements (pairs for map and attribute); their children follow as events
 * at depth + 1. An attribute does not count as an element of its parent: it comes
 * before the element it annotates, at the same depth.
 */
struct resp_reply_value {
    enum resp_reply_type type;
    uint32_t depth; /* 0 for the top level */
    const char *str;
    size_t len;
    int64_t integer; /* INTEGER, BOOLEAN */
    int64_t count;   /* aggregates */
    double dbl;      /* DOUBLE */
    char fmt[4];     /* VERBATIM: three-letter format ("txt", "mkd"), NUL-terminated */
};

struct resp_reply_callbacks {
    /* A scalar, or the start of an aggregate. */
    void (*on_value)(void *ctx, const struct resp_reply_value *v);
    /* The end of an aggregate opened at `depth` (may be NULL if not needed). */
    void (*on_end)(void *ctx, enum resp_reply_type type, uint32_t depth);
};

/* One open aggregate. */
struct resp_reply_frame {
    uint8_t type; /* enum resp_reply_type */
    int64_t left; /* elements still to come */
};

/* The event parser. Caller-owned; all fields are private. */
struct resp_reply_parser {
    const struct resp_reply_callbacks *cb;
    void *ctx;
    size_t pos;     /* bytes of the current reply consumed (their events delivered) */
    size_t scan;    /* bytes after pos already searched for CRLF without success */
    uint32_t depth; /* open aggregates */
    struct resp_reply_frame stack[KV_RESP_REPLY_DEPTH_MAX];
};

/* Prepare `p`; `cb` (and `ctx`) must outlive it. cb may be NULL to only frame replies. */
void resp_reply_parser_init(struct resp_reply_parser *p, const struct resp_reply_callbacks *cb,
                            void *ctx);

/* Forget any partial reply (after an error, or to resynchronise on a new stream). */
void resp_reply_parser_reset(struct resp_reply_parser *p);

/*
 * Parse the reply that starts at buf[0] (see the input contract above), delivering
 * events. Returns 0 and sets *used to the reply's size once it is complete (the parser
 * is then ready for the next reply, which starts at buf[*used]); KV_EAGAIN when
 * incomplete; KV_EPROTO or KV_ELIMIT on bad input.
 */
int resp_reply_parse(struct resp_reply_parser *p, const char *buf, size_t len, size_t *used);

/*
 * Tree form. Nodes are stored in pre-order: a node's children follow it, and
 * nodes[i].next is the index just after its subtree, so the children of node i are
 * j = i + 1, then j = nodes[j].next, nodes[i].kids times. Attribute nodes appear where
 * they were received: before the element they annotate, counted in the parent's kids.
 * The reply's own value is resp_reply_tree_root(). Views (str) are valid as long as
 * the buffer passed to the call that completed the reply is unchanged.
 */
struct resp_reply_node {
    uint8_t type;    /* enum resp_reply_type */
    char fmt[4];     /* VERBATIM format */
    uint32_t kids;   /* child nodes (aggregates) */
    uint32_t next;   /* index after this node's subtree */
    const char *str; /* NULL for types without text */
    size_t len;
    size_t off;      /* internal: offset of str from the reply's first byte */
    int64_t integer; /* INTEGER, BOOLEAN */
    int64_t count;   /* declared element count (aggregates) */
    double dbl;
};

struct resp_reply_tree {
    struct resp_reply_parser parser;
    struct resp_reply_node *nodes; /* caller-owned, cap entries */
    uint32_t cap;
    uint32_t n;        /* nodes stored */
    uint32_t overflow; /* nodes that did not fit */
    const char *base;  /* buffer of the current call (views are kept as offsets) */
    uint32_t open[KV_RESP_REPLY_DEPTH_MAX + 1]; /* node index of each open aggregate */
};

/* Prepare `t` to store up to `cap` nodes into `nodes` (caller-owned, outlives t). */
void resp_reply_tree_init(struct resp_reply_tree *t, struct resp_reply_node *nodes, uint32_t cap);

/*
 * As resp_reply_parse(); on 0 the tree holds the reply, with views into `buf`, valid
 * until the next call or until the caller changes buf. If the reply has more than cap
 * nodes, it is still consumed (*used is set) but KV_ELIMIT is returned and the tree is
 * not usable: the stream stays in sync and the caller may go on with the next reply.
 */
int resp_reply_tree_parse(struct resp_reply_tree *t, const char *buf, size_t len, size_t *used);

/* Index of the reply's value in a complete tree (after any top-level attributes). */
uint32_t resp_reply_tree_root(const struct resp_reply_tree *t);

#endif
