/*
 * resp_reply: incremental parser of RESP2/RESP3 replies, for clients.
 *
 * Shape. A reply is a tree of elements; each element is a header line (type byte,
 * text, CRLF) and, for bulk-like types, a payload and CRLF. The parser commits whole
 * elements only: an element whose bytes are not all in the buffer yet is left for the
 * next call (its header is re-read then, a few bytes), so there is no half-parsed
 * element state to carry, and every committed element is delivered exactly once.
 * Aggregates are open frames on a fixed stack (KV_RESP_REPLY_DEPTH_MAX): each counts
 * the elements still to come, and closes when that reaches zero. `pos` is how many
 * bytes of the current reply are committed; `scan` remembers how far the search for
 * the CRLF of a long incomplete line went, so that feeding a line byte by byte stays
 * linear.
 *
 * Invariants: pos <= len of every call (the caller keeps the reply's bytes);
 * depth <= KV_RESP_REPLY_DEPTH_MAX; every open frame has left > 0; an attribute is
 * not an element of its parent (it annotates the element that follows it).
 *
 * Any thread; one parser is used by one thread at a time. No allocation.
 */
#include "resp_reply.h"

#include <stdlib.h>
#include <string.h>

#include "kv_assert.h"
#include "kv_error.h"

/* Longest ,double line parsed as a number: longer texts are not doubles any server sends. */
#define RESP_REPLY_DOUBLE_TEXT_MAX 63

const char *resp_reply_type_name(enum resp_reply_type t)
{
    static const char *const names[] = {
        [RESP_REPLY_STRING] = "string",
        [RESP_REPLY_ERROR] = "error",
        [RESP_REPLY_INTEGER] = "integer",
        [RESP_REPLY_BULK] = "bulk",
        [RESP_REPLY_NULL] = "null",
        [RESP_REPLY_DOUBLE] = "double",
        [RESP_REPLY_BOOLEAN] = "boolean",
        [RESP_REPLY_BIGNUM] = "bignum",
        [RESP_REPLY_BULK_ERROR] = "bulk-error",
        [RESP_REPLY_VERBATIM] = "verbatim",
        [RESP_REPLY_ARRAY] = "array",
        [RESP_REPLY_MAP] = "map",
        [RESP_REPLY_SET] = "set",
        [RESP_REPLY_PUSH] = "push",
        [RESP_REPLY_ATTRIBUTE] = "attribute",
    };
    if ((unsigned)t >= KV_ARRAY_LEN(names) || names[t] == NULL) {
        return "unknown";
    }
    return names[t];
}

void resp_reply_parser_init(struct resp_reply_parser *p, const struct resp_reply_callbacks *cb,
                            void *ctx)
{
    KV_ASSERT(p != NULL);
    memset(p, 0, sizeof(*p));
    p->cb = cb;
    p->ctx = ctx;
}

void resp_reply_parser_reset(struct resp_reply_parser *p)
{
    KV_ASSERT(p != NULL);
    p->pos = 0;
    p->scan = 0;
    p->depth = 0;
}

/*
 * Parse a signed decimal integer that fills s[0..n) exactly. RESP allows a leading
 * sign; nothing else (no spaces, no empty text). Returns 0 or KV_EPROTO.
 */
static int parse_i64(const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (n > 0 && (s[0] == '-' || s[0] == '+')) {
        neg = s[0] == '-';
        i = 1;
    }
    if (i == n || n - i > 19) {
        return KV_EPROTO;
    }
    uint64_t v = 0;
    for (; i < n; i++) {
        unsigned d = (unsigned char)s[i] - '0';
        if (d > 9) {
            return KV_EPROTO;
        }
        v = v * 10 + d; /* 19 digits cannot wrap a uint64_t */
    }
    if (v > (uint64_t)INT64_MAX + (uint64_t)neg) {
        return KV_EPROTO;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

/*
 * Find the CR of the header line that starts at s[0] (the type byte). Returns its
 * index, or KV_EAGAIN (with *scan set to where the next search should start), or
 * KV_EPROTO for a CR not followed by LF, or KV_ELIMIT for an over-long line.
 */
static long find_line_end(const char *s, size_t avail, size_t *scan)
{
    size_t from = *scan > 1 ? *scan : 1;
    if (from < avail) {
        const char *cr = memchr(s + from, '\r', avail - from);
        if (cr != NULL) {
            size_t i = (size_t)(cr - s);
            if (i - 1 > KV_RESP_REPLY_LINE_MAX) {
                return KV_ELIMIT;
            }
            if (i + 1 == avail) {
                *scan = i; /* the LF is still to come */
                return KV_EAGAIN;
            }
            return s[i + 1] == '\n' ? (long)i : KV_EPROTO;
        }
    }
    if (avail > KV_RESP_REPLY_LINE_MAX + 1) {
        return KV_ELIMIT;
    }
    *scan = avail;
    return KV_EAGAIN;
}

/* The payload of $ ! = : `blen` bytes after a header of `hdr` bytes, then CRLF. */
static int parse_blob(const char *s, size_t avail, size_t hdr, int64_t blen,
                      struct resp_reply_value *v, size_t *n)
{
    if (blen < 0) {
        return KV_EPROTO;
    }
    if (blen > KV_RESP_REPLY_BULK_MAX) {
        return KV_ELIMIT;
    }
    size_t need = hdr + (size_t)blen + 2;
    if (avail < need) {
        return KV_EAGAIN;
    }
    if (s[need - 2] != '\r' || s[need - 1] != '\n') {
        return KV_EPROTO;
    }
    v->str = s + hdr;
    v->len = (size_t)blen;
    if (v->type == RESP_REPLY_VERBATIM) {
        if (blen < 4 || v->str[3] != ':') {
            return KV_EPROTO;
        }
        memcpy(v->fmt, v->str, 3);
        v->fmt[3] = '\0';
        v->str += 4;
        v->len -= 4;
    }
    *n = need;
    return 0;
}

static int parse_double(struct resp_reply_value *v)
{
    char tmp[RESP_REPLY_DOUBLE_TEXT_MAX + 1];
    if (v->len == 0 || v->len > RESP_REPLY_DOUBLE_TEXT_MAX) {
        return KV_EPROTO;
    }
    memcpy(tmp, v->str, v->len);
    tmp[v->len] = '\0';
    char *end = NULL;
    v->dbl = strtod(tmp, &end);
    return end == tmp + v->len ? 0 : KV_EPROTO;
}

static int check_bignum(const char *s, size_t n)
{
    size_t i = (n > 0 && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
    if (i == n) {
        return KV_EPROTO;
    }
    for (; i < n; i++) {
        if ((unsigned)((unsigned char)s[i] - '0') > 9) {
            return KV_EPROTO;
        }
    }
    return 0;
}

/* An aggregate header: count elements (pairs for map and attribute). */
static int parse_count(struct resp_reply_value *v, const char *line, size_t line_len)
{
    int64_t c;
    if (parse_i64(line, line_len, &c) != 0) {
        return KV_EPROTO;
    }
    if (c == -1 && v->type == RESP_REPLY_ARRAY) {
        v->type = RESP_REPLY_NULL; /* RESP2 null array */
        return 0;
    }
    if (c < 0) {
        return KV_EPROTO;
    }
    if (c > KV_RESP_REPLY_COUNT_MAX) {
        return KV_ELIMIT;
    }
    v->count = c;
    return 0;
}

static int type_of(char c, enum resp_reply_type *t)
{
    static const char bytes[] = "+-:$_,#(!=*%~>|";
    static const enum resp_reply_type types[] = {
        RESP_REPLY_STRING,     RESP_REPLY_ERROR,    RESP_REPLY_INTEGER,   RESP_REPLY_BULK,
        RESP_REPLY_NULL,       RESP_REPLY_DOUBLE,   RESP_REPLY_BOOLEAN,   RESP_REPLY_BIGNUM,
        RESP_REPLY_BULK_ERROR, RESP_REPLY_VERBATIM, RESP_REPLY_ARRAY,     RESP_REPLY_MAP,
        RESP_REPLY_SET,        RESP_REPLY_PUSH,     RESP_REPLY_ATTRIBUTE,
    };
    _Static_assert(sizeof(bytes) - 1 == KV_ARRAY_LEN(types), "one type per byte");
    const char *at = c != '\0' ? memchr(bytes, c, sizeof(bytes) - 1) : NULL;
    if (at == NULL) {
        return KV_EPROTO;
    }
    *t = types[at - bytes];
    return 0;
}

/*
 * Parse the element at s[0..avail): fill *v and its size *n, or return KV_EAGAIN,
 * KV_EPROTO, KV_ELIMIT. Nothing is committed here.
 */
static int parse_element(struct resp_reply_parser *p, const char *s, size_t avail,
                         struct resp_reply_value *v, size_t *n)
{
    KV_ASSERT(avail > 0);
    memset(v, 0, sizeof(*v));
    int rc = type_of(s[0], &v->type);
    if (rc != 0) {
        return rc;
    }
    long cr = find_line_end(s, avail, &p->scan);
    if (cr < 0) {
        return (int)cr;
    }
    const char *line = s + 1;
    size_t line_len = (size_t)cr - 1;
    size_t hdr = (size_t)cr + 2;
    int64_t blen;
    *n = hdr;
    v->str = line;
    v->len = line_len;
    switch (v->type) {
    case RESP_REPLY_STRING:
    case RESP_REPLY_ERROR:
        return 0;
    case RESP_REPLY_INTEGER:
        return parse_i64(line, line_len, &v->integer);
    case RESP_REPLY_NULL:
        v->str = NULL;
        return line_len == 0 ? 0 : KV_EPROTO;
    case RESP_REPLY_DOUBLE:
        return parse_double(v);
    case RESP_REPLY_BOOLEAN:
        v->integer = line_len == 1 && line[0] == 't';
        return line_len == 1 && (line[0] == 't' || line[0] == 'f') ? 0 : KV_EPROTO;
    case RESP_REPLY_BIGNUM:
        return check_bignum(line, line_len);
    case RESP_REPLY_BULK:
    case RESP_REPLY_BULK_ERROR:
    case RESP_REPLY_VERBATIM:
        if (parse_i64(line, line_len, &blen) != 0) {
            return KV_EPROTO;
        }
        if (blen == -1 && v->type == RESP_REPLY_BULK) {
            v->type = RESP_REPLY_NULL; /* RESP2 null bulk */
            v->str = NULL;
            v->len = 0;
            return 0;
        }
        return parse_blob(s, avail, hdr, blen, v, n);
    default:
        v->str = NULL;
        v->len = 0;
        return parse_count(v, line, line_len);
    }
}

/*
 * One element (not an attribute) completed at the current depth: count it in its
 * parent and close every frame this completes. Returns 1 when the reply is complete.
 */
static int element_done(struct resp_reply_parser *p)
{
    while (p->depth > 0) {
        struct resp_reply_frame *f = &p->stack[p->depth - 1];
        KV_ASSERT(f->left > 0);
        if (--f->left > 0) {
            return 0;
        }
        p->depth--;
        if (p->cb != NULL && p->cb->on_end != NULL) {
            p->cb->on_end(p->ctx, (enum resp_reply_type)f->type, p->depth);
        }
        if (f->type == RESP_REPLY_ATTRIBUTE) {
            return 0; /* the annotated element is still to come */
        }
    }
    return 1;
}

int resp_reply_parse(struct resp_reply_parser *p, const char *buf, size_t len, size_t *used)
{
    KV_ASSERT(p != NULL && used != NULL);
    KV_ASSERT(buf != NULL || len == 0);
    KV_ASSERT(p->pos <= len); /* the caller dropped bytes of an incomplete reply */
    for (;;) {
        if (p->pos == len) {
            return KV_EAGAIN;
        }
        struct resp_reply_value v;
        size_t n = 0;
        int rc = parse_element(p, buf + p->pos, len - p->pos, &v, &n);
        if (rc != 0) {
            return rc;
        }
        int64_t left =
            v.count * (v.type == RESP_REPLY_MAP || v.type == RESP_REPLY_ATTRIBUTE ? 2 : 1);
        if (left > 0 && p->depth == KV_RESP_REPLY_DEPTH_MAX) {
            return KV_ELIMIT;
        }
        p->pos += n;
        p->scan = 0;
        v.depth = p->depth;
        if (p->cb != NULL && p->cb->on_value != NULL) {
            p->cb->on_value(p->ctx, &v);
        }
        int done;
        if (left > 0) {
            p->stack[p->depth].type = (uint8_t)v.type;
            p->stack[p->depth].left = left;
            p->depth++;
            done = 0;
        } else {
            if (resp_reply_type_is_aggregate(v.type) && p->cb != NULL && p->cb->on_end != NULL) {
                p->cb->on_end(p->ctx, v.type, p->depth);
            }
            done = v.type == RESP_REPLY_ATTRIBUTE ? 0 : element_done(p);
        }
        if (done) {
            *used = p->pos;
            resp_reply_parser_reset(p);
            return 0;
        }
    }
}

/* ---- tree form ---------------------------------------------------------------- */

static void tree_on_value(void *ctx, const struct resp_reply_value *v)
{
    struct resp_reply_tree *t = ctx;
    uint32_t idx = t->n + t->overflow;
    KV_ASSERT(v->depth <= KV_RESP_REPLY_DEPTH_MAX);
    if (v->depth > 0) {
        uint32_t parent = t->open[v->depth - 1];
        if (parent < t->cap) {
            t->nodes[parent].kids++;
        }
    }
    if (resp_reply_type_is_aggregate(v->type)) {
        t->open[v->depth] = idx;
    }
    if (idx >= t->cap) {
        t->overflow++;
        return;
    }
    struct resp_reply_node *nd = &t->nodes[idx];
    memset(nd, 0, sizeof(*nd));
    nd->type = (uint8_t)v->type;
    memcpy(nd->fmt, v->fmt, sizeof(nd->fmt));
    nd->next = idx + 1;
    nd->off = v->str != NULL ? (size_t)(v->str - t->base) : SIZE_MAX;
    nd->len = v->len;
    nd->integer = v->integer;
    nd->count = v->count;
    nd->dbl = v->dbl;
    t->n++;
}

static void tree_on_end(void *ctx, enum resp_reply_type type, uint32_t depth)
{
    struct resp_reply_tree *t = ctx;
    uint32_t idx = t->open[depth];
    KV_ASSERT(depth <= KV_RESP_REPLY_DEPTH_MAX);
    if (idx < t->cap) {
        KV_ASSERT(t->nodes[idx].type == (uint8_t)type);
        t->nodes[idx].next = t->n + t->overflow;
    }
}

static const struct resp_reply_callbacks tree_callbacks = {
    .on_value = tree_on_value,
    .on_end = tree_on_end,
};

void resp_reply_tree_init(struct resp_reply_tree *t, struct resp_reply_node *nodes, uint32_t cap)
{
    KV_ASSERT(t != NULL);
    KV_ASSERT(nodes != NULL && cap > 0);
    memset(t, 0, sizeof(*t));
    resp_reply_parser_init(&t->parser, &tree_callbacks, t);
    t->nodes = nodes;
    t->cap = cap;
}

int resp_reply_tree_parse(struct resp_reply_tree *t, const char *buf, size_t len, size_t *used)
{
    KV_ASSERT(t != NULL && used != NULL);
    if (t->parser.pos == 0) {
        t->n = 0;
        t->overflow = 0;
    }
    t->base = buf;
    int rc = resp_reply_parse(&t->parser, buf, len, used);
    if (rc != 0) {
        return rc;
    }
    if (t->overflow > 0) {
        return KV_ELIMIT;
    }
    for (uint32_t i = 0; i < t->n; i++) {
        struct resp_reply_node *nd = &t->nodes[i];
        nd->str = nd->off != SIZE_MAX ? buf + nd->off : NULL;
    }
    return 0;
}

uint32_t resp_reply_tree_root(const struct resp_reply_tree *t)
{
    KV_ASSERT(t != NULL && t->n > 0);
    uint32_t i = 0;
    while (t->nodes[i].type == RESP_REPLY_ATTRIBUTE) {
        i = t->nodes[i].next;
        KV_ASSERT(i < t->n);
    }
    return i;
}
