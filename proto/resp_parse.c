/*
 * resp_parse: the incremental RESP request parser (see resp_parse.h for the contract).
 *
 * What and why. The server receives a connection's bytes in fixed-size provided buffers
 * that go back to the kernel once parsed, so the parser must never keep pointers into
 * a buffer past KV_EAGAIN, yet should not copy the common case: a request that lies
 * whole in one buffer. Arguments are therefore views into the buffer, and only what
 * crosses a buffer boundary is copied into a parser-owned arena. Semantics follow Redis
 * 7.0's processInlineBuffer / processMultibulkBuffer / sdssplitargs byte for byte,
 * including their quirks (they are what clients have been tested against):
 *  - a "*N"/"$N" line ends at the first '\r' and the byte after it is skipped unread;
 *  - the two bytes after a bulk's data are skipped unread (not checked for CRLF);
 *  - "*0", "*-1" and any count <= 0 are consumed and ignored; so are empty inline lines;
 *  - Redis finds line ends with strchr(), which stops at a NUL byte: a NUL before the
 *    line's end means the line never ends, and Redis fails once 64 KiB are buffered;
 *  - limits: a line over 64 KiB without its end, counts over INT_MAX, bulks over
 *    proto-max-bulk-len, and the pre-AUTH limits (10 arguments, 16 KiB bulks).
 * One difference, deliberate: Redis checks the 64 KiB line limit only when a read leaves
 * no line end in its buffer, so whether a 70 KiB inline line passes depends on how the
 * kernel split the stream; here a line longer than 64 KiB always fails, whatever the
 * split, so that the result is a function of the byte stream alone.
 *
 * State. A request is parsed by a state machine over single bytes for header lines
 * (no buffering: the number is accumulated as it arrives, with string2ll's exact rules),
 * memchr for inline lines, and whole slices for bulk data. A piece that straddles two
 * buffers (a bulk's data, an inline line) is assembled in its own growing chunk `grow`;
 * when the buffer ends inside a multibulk request, the arguments already complete in
 * that buffer are copied ("spilled") into the arena. A request that lies whole in the
 * buffer with plain numbers (the common case) is read in one pass instead, by fast_next,
 * which takes only what the states would take identically.
 *
 * Arena: a list of chunks, bump-allocated, never moved (views stay valid). Each feed
 * frees the chunks older than `mark`, the first chunk holding the pending request; every
 * other byte there belonged to commands already returned, whose arena views die at the
 * feed. A few standard chunks are kept spare so that a pipeline crossing every buffer
 * boundary does not allocate per buffer.
 *
 * Invariants: at KV_EAGAIN pos == len and no argv entry points into the buffer; grow is
 * only ever appended to while no view of it exists (its piece is incomplete), so it may
 * move when resized; a bulk's chunk never exceeds its declared length, except that a
 * small piece may reuse the spare 4 KiB chunk.
 *
 * Thread: one parser per connection, used only by the thread that owns the connection.
 */
#include "resp_parse.h"

#include <stdio.h>
#include <string.h>

#include "kv_assert.h"
#include "kv_error.h"
#include "kv_limits.h"
#include "resp_alloc.h"

/* string2ll rejects strings of LONG_STR_SIZE (21) bytes or more. */
#define RESP_NUM_CHARS_MAX 20
/* The argv array starts with room for this many arguments and doubles as they arrive. */
#define RESP_ARGV_INITIAL 16

struct chunk {
    struct chunk *next;
    size_t cap;  /* bytes in data[] */
    size_t used; /* bytes handed out (or assembled, for `grow`) */
    char data[];
};

enum state {
    ST_START,      /* between requests: the first byte picks multibulk or inline */
    ST_INLINE,     /* inside an inline line */
    ST_INLINE_NUL, /* an inline line holding a NUL: counted until the limit */
    ST_LINE,       /* inside a "*N" or "$N" line */
    ST_LINE_END,   /* after a header line's '\r': one byte to skip */
    ST_BULK_DATA,  /* inside a bulk's data */
    ST_BULK_TAIL,  /* the two bytes after a bulk's data */
    ST_FAILED,
};

/* string2ll's states over the bytes after '*' or '$'. */
enum num { NUM_EMPTY, NUM_SIGN, NUM_ZERO, NUM_DIGITS, NUM_BAD };

/* A header line being read. */
struct line {
    size_t len;  /* bytes of the line so far, type byte included */
    uint64_t v;  /* magnitude so far */
    uint8_t num; /* enum num */
    bool neg;
    bool nul;       /* a NUL was seen: the line cannot end (Redis's strchr) */
    bool have_type; /* the first byte was seen */
    bool mbulk;     /* a "*N" line (else a "$N" line) */
    unsigned char type;
};

/* Step results of the state functions (errors are negative KV_E* codes). */
enum { STEP_NEED_INPUT = 0, STEP_PROGRESS = 1, STEP_COMMAND = 2 };

struct resp_parser {
    struct resp_alloc alloc;
    struct resp_parse_limits lim;
    bool auth_required;
    bool cmd_done; /* the last next() returned a command */
    enum state st;
    enum resp_perr err;
    int err_rc; /* KV_EPROTO or KV_ENOMEM once failed */

    const char *buf; /* the fed buffer: buf[pos..len) is unread */
    size_t len;
    size_t pos;

    struct line line;
    int64_t mbulk_left; /* arguments still expected by the current multibulk */
    int64_t bulk_len;   /* declared length of the current bulk */
    size_t tail_left;   /* bytes of the bulk's trailer still to skip */
    size_t nul_bytes;   /* ST_INLINE_NUL: bytes of the line so far */

    struct resp_arg *argv;
    size_t argc;
    size_t argv_cap;

    struct chunk *head; /* arena, oldest chunk first */
    struct chunk *tail;
    struct chunk *mark;  /* first chunk holding the pending request, or NULL */
    struct chunk *spare; /* free standard chunks, linked by next */
    size_t spares;
    size_t arena_bytes; /* bytes of the chunks on the list (headers included) */

    struct chunk *grow; /* the straddling piece being assembled, or NULL */
    int64_t pend_bytes; /* arena bytes held for the pending request */

    char err_text[64];
};

static const char *const perr_texts[] = {
    [RESP_PERR_NONE] = "",
    [RESP_PERR_TOO_BIG_INLINE] = "ERR Protocol error: too big inline request",
    [RESP_PERR_UNBALANCED_QUOTES] = "ERR Protocol error: unbalanced quotes in request",
    [RESP_PERR_TOO_BIG_MBULK_COUNT] = "ERR Protocol error: too big mbulk count string",
    [RESP_PERR_INVALID_MBULK_LEN] = "ERR Protocol error: invalid multibulk length",
    [RESP_PERR_UNAUTH_MBULK_LEN] = "ERR Protocol error: unauthenticated multibulk length",
    [RESP_PERR_TOO_BIG_BULK_COUNT] = "ERR Protocol error: too big bulk count string",
    [RESP_PERR_EXPECTED_DOLLAR] = "ERR Protocol error: expected '$', got '?'",
    [RESP_PERR_INVALID_BULK_LEN] = "ERR Protocol error: invalid bulk length",
    [RESP_PERR_UNAUTH_BULK_LEN] = "ERR Protocol error: unauthenticated bulk length",
    [RESP_PERR_QUERY_LIMIT] = "",
};

struct resp_parse_limits resp_parse_limits_default(void)
{
    struct resp_parse_limits lim = {
        .bulk_bytes_max = KV_DEFAULT_RESP_BULK_BYTES_MAX,
        .mbulk_count_max = KV_RESP_MBULK_COUNT_MAX,
        .inline_bytes_max = KV_RESP_INLINE_BYTES_MAX,
        .unauth_mbulk_count_max = KV_RESP_UNAUTH_MBULK_COUNT_MAX,
        .unauth_bulk_bytes_max = KV_RESP_UNAUTH_BULK_BYTES_MAX,
        .query_bytes_max = KV_DEFAULT_RESP_QUERY_BYTES_MAX,
    };
    return lim;
}

/* ---- errors ----------------------------------------------------------------------- */

static int fail(struct resp_parser *p, enum resp_perr err)
{
    KV_ASSERT(err != RESP_PERR_NONE);
    p->st = ST_FAILED;
    p->err = err;
    p->err_rc = KV_EPROTO;
    snprintf(p->err_text, sizeof p->err_text, "%s", perr_texts[err]);
    return KV_EPROTO;
}

static int fail_expected(struct resp_parser *p, unsigned char got)
{
    fail(p, RESP_PERR_EXPECTED_DOLLAR);
    /* Redis's addReplyErrorFormat turns '\r' and '\n' into spaces. */
    if (got == '\r' || got == '\n') {
        got = ' ';
    }
    size_t n = strlen(p->err_text);
    KV_ASSERT(n >= 2 && p->err_text[n - 2] == '?');
    p->err_text[n - 2] = (char)got;
    return KV_EPROTO;
}

static int fail_nomem(struct resp_parser *p)
{
    p->st = ST_FAILED;
    p->err_rc = KV_ENOMEM;
    return KV_ENOMEM;
}

/* ---- arena ------------------------------------------------------------------------ */

static struct chunk *chunk_new(struct resp_parser *p, size_t cap)
{
    if (cap <= KV_RESP_ARENA_CHUNK_BYTES && p->spare != NULL) {
        struct chunk *c = p->spare;
        p->spare = c->next;
        p->spares--;
        c->next = NULL;
        c->used = 0;
        return c;
    }
    if (cap < KV_RESP_ARENA_CHUNK_BYTES) {
        cap = KV_RESP_ARENA_CHUNK_BYTES;
    }
    struct chunk *c = p->alloc.alloc(p->alloc.ctx, sizeof(struct chunk) + cap);
    if (c == NULL) {
        return NULL;
    }
    c->next = NULL;
    c->cap = cap;
    c->used = 0;
    return c;
}

static void chunk_free(struct resp_parser *p, struct chunk *c)
{
    if (c->cap == KV_RESP_ARENA_CHUNK_BYTES && p->spares < KV_RESP_ARENA_SPARE_CHUNKS) {
        c->next = p->spare;
        p->spare = c;
        p->spares++;
        return;
    }
    p->alloc.free(p->alloc.ctx, c, sizeof(struct chunk) + c->cap);
}

static void arena_append(struct resp_parser *p, struct chunk *c)
{
    KV_ASSERT(c->next == NULL);
    if (p->tail == NULL) {
        p->head = c;
    } else {
        p->tail->next = c;
    }
    p->tail = c;
    p->arena_bytes += sizeof(struct chunk) + c->cap;
}

/* n bytes of arena, stable until a feed frees their chunk; NULL when out of memory. */
static char *arena_alloc(struct resp_parser *p, size_t n)
{
    struct chunk *c = p->tail;
    if (c == NULL || c->cap - c->used < n) {
        c = chunk_new(p, n);
        if (c == NULL) {
            return NULL;
        }
        arena_append(p, c);
    }
    char *r = c->data + c->used;
    c->used += n;
    return r;
}

/* Notes that the arena's tail holds part of the pending request. */
static void arena_mark_pending(struct resp_parser *p)
{
    if (p->mark == NULL) {
        p->mark = p->tail;
    }
}

/* Frees every chunk older than the pending request's first one (all when none). */
static void arena_release(struct resp_parser *p)
{
    while (p->head != NULL && p->head != p->mark) {
        struct chunk *c = p->head;
        p->head = c->next;
        p->arena_bytes -= sizeof(struct chunk) + c->cap;
        c->next = NULL;
        chunk_free(p, c);
    }
    if (p->head == NULL) {
        p->tail = NULL;
    }
}

static int charge_pending(struct resp_parser *p, size_t n)
{
    p->pend_bytes += (int64_t)n;
    if (p->pend_bytes > p->lim.query_bytes_max) {
        return fail(p, RESP_PERR_QUERY_LIMIT);
    }
    return 0;
}

/* Starts or extends `grow` with n bytes; the piece will hold at most `total` bytes, so
 * capacity never exceeds it (a declared length is a bound, never a size to allocate). */
static int grow_append(struct resp_parser *p, const char *src, size_t n, size_t total)
{
    struct chunk *g = p->grow;
    size_t need = (g != NULL ? g->used : 0) + n;
    KV_ASSERT(need <= total);
    if (g == NULL && n <= KV_RESP_ARENA_CHUNK_BYTES) {
        /* A small piece gets a standard chunk (a spare one if any), which goes back to
         * the spares afterwards: no allocation per buffer in a steady pipeline. */
        g = chunk_new(p, n);
        if (g == NULL) {
            return fail_nomem(p);
        }
        p->grow = g;
    } else if (g == NULL) {
        size_t cap = n < total ? n : total;
        g = p->alloc.alloc(p->alloc.ctx, sizeof(struct chunk) + cap);
        if (g == NULL) {
            return fail_nomem(p);
        }
        g->next = NULL;
        g->cap = cap;
        g->used = 0;
        p->grow = g;
    }
    if (need > g->cap) {
        size_t cap = g->cap + g->cap / 2;
        if (cap < need) {
            cap = need;
        }
        if (cap > total) {
            cap = total;
        }
        struct chunk *ng = p->alloc.resize(p->alloc.ctx, g, sizeof(struct chunk) + g->cap,
                                           sizeof(struct chunk) + cap);
        if (ng == NULL) {
            return fail_nomem(p);
        }
        g = ng;
        g->cap = cap;
        p->grow = g;
    }
    memcpy(g->data + g->used, src, n);
    g->used += n;
    return 0;
}

/* Moves the finished `grow` piece onto the arena list; returns its bytes. */
static const char *grow_finish(struct resp_parser *p)
{
    struct chunk *g = p->grow;
    KV_ASSERT(g != NULL);
    p->grow = NULL;
    arena_append(p, g);
    return g->data;
}

/* ---- argv ------------------------------------------------------------------------- */

static int push_arg(struct resp_parser *p, const char *ptr, size_t len)
{
    if (p->argc == p->argv_cap) {
        size_t cap = p->argv_cap * 2;
        struct resp_arg *a =
            p->alloc.resize(p->alloc.ctx, p->argv, p->argv_cap * sizeof *a, cap * sizeof *a);
        if (a == NULL) {
            return fail_nomem(p);
        }
        p->argv = a;
        p->argv_cap = cap;
    }
    p->argv[p->argc].ptr = ptr;
    p->argv[p->argc].len = len;
    p->argc++;
    return 0;
}

static bool in_buffer(const struct resp_parser *p, const char *ptr)
{
    uintptr_t b = (uintptr_t)p->buf;
    uintptr_t x = (uintptr_t)ptr;
    return p->buf != NULL && x >= b && x <= b + p->len;
}

/* The buffer is about to go back to the caller: copy the pending request's arguments
 * that still point into it into the arena. */
static int spill(struct resp_parser *p)
{
    size_t total = 0;
    for (size_t i = 0; i < p->argc; i++) {
        if (in_buffer(p, p->argv[i].ptr)) {
            total += p->argv[i].len;
        }
    }
    if (total == 0) {
        /* Empty arguments may point into the buffer too: make them point nowhere. */
        for (size_t i = 0; i < p->argc; i++) {
            if (in_buffer(p, p->argv[i].ptr)) {
                p->argv[i].ptr = "";
            }
        }
        return 0;
    }
    char *dst = arena_alloc(p, total);
    if (dst == NULL) {
        return fail_nomem(p);
    }
    arena_mark_pending(p);
    for (size_t i = 0; i < p->argc; i++) {
        if (in_buffer(p, p->argv[i].ptr)) {
            memcpy(dst, p->argv[i].ptr, p->argv[i].len);
            p->argv[i].ptr = dst;
            dst += p->argv[i].len;
        }
    }
    return charge_pending(p, total);
}

/* ---- multibulk -------------------------------------------------------------------- */

static void line_begin(struct resp_parser *p, bool mbulk)
{
    memset(&p->line, 0, sizeof p->line);
    p->line.mbulk = mbulk;
    p->line.num = NUM_EMPTY;
    if (mbulk) {
        p->line.have_type = true;
        p->line.type = '*';
        p->line.len = 1;
    }
}

/* One byte of the number, with string2ll's rules: optional '-', no '+', no leading
 * zero (except "0" itself), no "-0", overflow fails. */
static void num_push(struct line *l, unsigned char c)
{
    switch (l->num) {
    case NUM_EMPTY:
        if (c == '-') {
            l->neg = true;
            l->num = NUM_SIGN;
        } else if (c == '0') {
            l->num = NUM_ZERO;
        } else if (c >= '1' && c <= '9') {
            l->v = c - '0';
            l->num = NUM_DIGITS;
        } else {
            l->num = NUM_BAD;
        }
        break;
    case NUM_SIGN:
        if (c >= '1' && c <= '9') {
            l->v = c - '0';
            l->num = NUM_DIGITS;
        } else {
            l->num = NUM_BAD;
        }
        break;
    case NUM_DIGITS:
        if (c < '0' || c > '9' || l->v > UINT64_MAX / 10 ||
            l->v * 10 > UINT64_MAX - (uint64_t)(c - '0')) {
            l->num = NUM_BAD;
        } else {
            l->v = l->v * 10 + (uint64_t)(c - '0');
        }
        break;
    default:
        l->num = NUM_BAD;
        break;
    }
}

/* The line's number as string2ll would return it; false when it is not one. */
static bool line_value(const struct line *l, int64_t *out)
{
    size_t digits = l->len - 1;
    if (digits == 0 || digits > RESP_NUM_CHARS_MAX) {
        return false;
    }
    if (l->num == NUM_ZERO) {
        *out = 0;
        return true;
    }
    if (l->num != NUM_DIGITS) {
        return false;
    }
    if (l->neg) {
        if (l->v > (uint64_t)INT64_MAX + 1) {
            return false;
        }
        *out = l->v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)l->v;
        return true;
    }
    if (l->v > (uint64_t)INT64_MAX) {
        return false;
    }
    *out = (int64_t)l->v;
    return true;
}

static int st_line(struct resp_parser *p)
{
    struct line *l = &p->line;
    size_t max = (size_t)p->lim.inline_bytes_max;
    while (p->pos < p->len) {
        unsigned char c = (unsigned char)p->buf[p->pos++];
        if (!l->nul) {
            if (c == '\r') {
                p->st = ST_LINE_END;
                return STEP_PROGRESS;
            }
            if (c == '\0') {
                l->nul = true;
            } else if (!l->have_type) {
                l->have_type = true;
                l->type = c;
            } else {
                num_push(l, c);
            }
        }
        l->len++;
        if (l->len > max) {
            return fail(p, l->mbulk ? RESP_PERR_TOO_BIG_MBULK_COUNT : RESP_PERR_TOO_BIG_BULK_COUNT);
        }
    }
    return STEP_NEED_INPUT;
}

static int mbulk_line_done(struct resp_parser *p)
{
    int64_t ll = 0;
    if (!line_value(&p->line, &ll) || ll > p->lim.mbulk_count_max) {
        return fail(p, RESP_PERR_INVALID_MBULK_LEN);
    }
    if (ll > p->lim.unauth_mbulk_count_max && p->auth_required) {
        return fail(p, RESP_PERR_UNAUTH_MBULK_LEN);
    }
    if (ll <= 0) {
        p->st = ST_START; /* Redis consumes "*0", "*-1", ... and runs nothing */
        return STEP_PROGRESS;
    }
    p->mbulk_left = ll;
    line_begin(p, false);
    p->st = ST_LINE;
    return STEP_PROGRESS;
}

static int bulk_line_done(struct resp_parser *p)
{
    const struct line *l = &p->line;
    /* An empty line's first byte is its '\r'. */
    unsigned char type = l->have_type ? l->type : '\r';
    if (type != '$') {
        return fail_expected(p, type);
    }
    int64_t ll = 0;
    if (!line_value(l, &ll) || ll < 0 || ll > p->lim.bulk_bytes_max) {
        return fail(p, RESP_PERR_INVALID_BULK_LEN);
    }
    if (ll > p->lim.unauth_bulk_bytes_max && p->auth_required) {
        return fail(p, RESP_PERR_UNAUTH_BULK_LEN);
    }
    p->bulk_len = ll;
    p->st = ST_BULK_DATA;
    return STEP_PROGRESS;
}

static int st_line_end(struct resp_parser *p)
{
    if (p->pos == p->len) {
        return STEP_NEED_INPUT;
    }
    p->pos++; /* Redis skips the byte after '\r' without looking at it */
    return p->line.mbulk ? mbulk_line_done(p) : bulk_line_done(p);
}

static int st_bulk_data(struct resp_parser *p)
{
    size_t avail = p->len - p->pos;
    size_t want = (size_t)p->bulk_len;
    const char *src = p->buf + p->pos;
    int rc;
    if (p->grow == NULL) {
        if (want <= avail) {
            p->pos += want;
            rc = push_arg(p, want > 0 ? src : "", want);
        } else {
            if (avail == 0) {
                return STEP_NEED_INPUT;
            }
            p->pos = p->len;
            rc = grow_append(p, src, avail, want);
            if (rc == 0) {
                rc = charge_pending(p, avail);
            }
            return rc < 0 ? rc : STEP_NEED_INPUT;
        }
    } else {
        size_t n = want - p->grow->used;
        if (n > avail) {
            n = avail;
        }
        if (n == 0) {
            return STEP_NEED_INPUT;
        }
        p->pos += n;
        rc = grow_append(p, src, n, want);
        if (rc == 0) {
            rc = charge_pending(p, n);
        }
        if (rc < 0 || p->grow->used < want) {
            return rc < 0 ? rc : STEP_NEED_INPUT;
        }
        const char *data = grow_finish(p);
        arena_mark_pending(p);
        rc = push_arg(p, data, want);
    }
    if (rc < 0) {
        return rc;
    }
    p->tail_left = 2;
    p->st = ST_BULK_TAIL;
    return STEP_PROGRESS;
}

static int st_bulk_tail(struct resp_parser *p)
{
    size_t n = p->len - p->pos;
    if (n > p->tail_left) {
        n = p->tail_left;
    }
    p->pos += n;
    p->tail_left -= n;
    if (p->tail_left > 0) {
        return STEP_NEED_INPUT;
    }
    KV_ASSERT(p->mbulk_left > 0);
    p->mbulk_left--;
    if (p->mbulk_left == 0) {
        p->st = ST_START;
        return STEP_COMMAND;
    }
    line_begin(p, false);
    p->st = ST_LINE;
    return STEP_PROGRESS;
}

/* ---- inline ----------------------------------------------------------------------- */

/* isspace() in the C locale. */
static bool is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static bool is_hex(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int hex_val(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    return (c | 0x20) - 'a' + 10;
}

static char unescape(char c)
{
    switch (c) {
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    case 'b':
        return '\b';
    case 'a':
        return '\a';
    default:
        return c;
    }
}

/* The scanner of one inline line: the line holds no NUL, so 0 stands for its end, as
 * it does for sdssplitargs. */
struct splitter {
    const char *q;
    const char *e;
    char *scratch; /* decoded tokens go here; room for the rest of the line */
};

static int at(const struct splitter *s, size_t k)
{
    return s->q + k < s->e ? (unsigned char)s->q[k] : 0;
}

/* Reads one token at s->q (not a blank). Plain tokens are views into the line; a token
 * with quotes is decoded into scratch. Returns 0, or -1 for unbalanced quotes. */
static int split_token(struct resp_parser *p, struct splitter *s, struct resp_arg *out)
{
    const char *tok = s->q;
    char *w = NULL; /* write cursor once the token is being decoded */
    char *w0 = NULL;
    const char *plain_end = NULL;
    bool inq = false;
    bool insq = false;
    bool done = false;
    while (!done) {
        int c = at(s, 0);
        if (inq) {
            if (c == '\\' && at(s, 1) == 'x' && is_hex(at(s, 2)) && is_hex(at(s, 3))) {
                *w++ = (char)(hex_val(at(s, 2)) * 16 + hex_val(at(s, 3)));
                s->q += 3;
            } else if (c == '\\' && at(s, 1) != 0) {
                s->q++;
                *w++ = unescape(*s->q);
            } else if (c == '"') {
                if (at(s, 1) != 0 && !is_space(at(s, 1))) {
                    return -1; /* a closing quote must be followed by a blank */
                }
                done = true;
            } else if (c == 0) {
                return -1;
            } else {
                *w++ = (char)c;
            }
        } else if (insq) {
            if (c == '\\' && at(s, 1) == '\'') {
                s->q++;
                *w++ = '\'';
            } else if (c == '\'') {
                if (at(s, 1) != 0 && !is_space(at(s, 1))) {
                    return -1;
                }
                done = true;
            } else if (c == 0) {
                return -1;
            } else {
                *w++ = (char)c;
            }
        } else if (c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == 0) {
            plain_end = s->q;
            done = true;
        } else if (c == '"' || c == '\'') {
            if (w == NULL) {
                w0 = w = s->scratch;
                memcpy(w, tok, (size_t)(s->q - tok));
                w += s->q - tok;
            }
            inq = c == '"';
            insq = c == '\'';
        } else if (w != NULL) {
            *w++ = (char)c;
        }
        if (s->q < s->e) {
            s->q++;
        }
    }
    if (w0 != NULL) {
        out->ptr = w0;
        out->len = (size_t)(w - w0);
        s->scratch = w;
    } else {
        KV_ASSERT(plain_end != NULL);
        out->ptr = tok;
        out->len = (size_t)(plain_end - tok);
    }
    (void)p;
    return 0;
}

/* Splits a complete inline line (no '\n', no NUL) into argv like sdssplitargs. */
static int split_line(struct resp_parser *p, const char *line, size_t n)
{
    struct splitter s = {.q = line, .e = line + n, .scratch = NULL};
    if (memchr(line, '"', n) != NULL || memchr(line, '\'', n) != NULL) {
        s.scratch = arena_alloc(p, n);
        if (s.scratch == NULL) {
            return fail_nomem(p);
        }
    }
    for (;;) {
        while (s.q < s.e && is_space((unsigned char)*s.q)) {
            s.q++;
        }
        if (s.q == s.e) {
            return 0;
        }
        struct resp_arg arg;
        if (split_token(p, &s, &arg) != 0) {
            return fail(p, RESP_PERR_UNBALANCED_QUOTES);
        }
        int rc = push_arg(p, arg.len > 0 ? arg.ptr : "", arg.len);
        if (rc < 0) {
            return rc;
        }
    }
}

static int inline_line_done(struct resp_parser *p, const char *line, size_t n)
{
    if (n > 0 && line[n - 1] == '\r') {
        n--;
    }
    p->st = ST_START;
    int rc = split_line(p, line, n);
    if (rc < 0) {
        return rc;
    }
    return p->argc > 0 ? STEP_COMMAND : STEP_PROGRESS; /* empty lines are ignored */
}

static int st_inline(struct resp_parser *p)
{
    size_t avail = p->len - p->pos;
    if (avail == 0) {
        return STEP_NEED_INPUT;
    }
    size_t max = (size_t)p->lim.inline_bytes_max;
    size_t have = p->grow != NULL ? p->grow->used : 0;
    KV_ASSERT(have <= max);
    /* The line may hold `max` bytes before its '\n': look no further than that. */
    size_t win = avail < max + 1 - have ? avail : max + 1 - have;
    const char *s = p->buf + p->pos;
    const char *nl = memchr(s, '\n', win);
    size_t upto = nl != NULL ? (size_t)(nl - s) : win;
    if (memchr(s, '\0', upto) != NULL) {
        /* Redis's strchr stops at the NUL: this line never ends. */
        if (p->grow != NULL) {
            p->alloc.free(p->alloc.ctx, p->grow, sizeof(struct chunk) + p->grow->cap);
            p->grow = NULL;
        }
        p->nul_bytes = have;
        p->st = ST_INLINE_NUL;
        return STEP_PROGRESS;
    }
    if (nl == NULL) {
        if (have + win > max) {
            return fail(p, RESP_PERR_TOO_BIG_INLINE);
        }
        p->pos = p->len;
        int rc = grow_append(p, s, avail, max);
        return rc < 0 ? rc : STEP_NEED_INPUT;
    }
    p->pos += upto + 1;
    if (p->grow == NULL) {
        return inline_line_done(p, s, upto);
    }
    int rc = upto > 0 ? grow_append(p, s, upto, max) : 0;
    if (rc < 0) {
        return rc;
    }
    size_t n = p->grow->used;
    const char *line = grow_finish(p);
    return inline_line_done(p, line, n);
}

static int st_inline_nul(struct resp_parser *p)
{
    size_t max = (size_t)p->lim.inline_bytes_max;
    size_t avail = p->len - p->pos;
    size_t take = avail < max + 1 - p->nul_bytes ? avail : max + 1 - p->nul_bytes;
    p->pos += take;
    p->nul_bytes += take;
    if (p->nul_bytes > max) {
        return fail(p, RESP_PERR_TOO_BIG_INLINE);
    }
    return STEP_NEED_INPUT;
}

/* ---- the whole-request fast path -------------------------------------------------- */

/*
 * Most requests arrive whole, with plain numbers: "*<n>\r\n" then n times
 * "$<len>\r\n<len bytes>\r\n". fast_next parses such a request in one pass over the
 * buffer, straight from resp_parser_next; on anything else (a part not here yet, a number
 * the byte-wise states would refuse or read differently, a limit reached, the pre-AUTH
 * limits) it consumes nothing, and the byte-wise states take the request from its first
 * byte, so every request gets exactly their result. Like them it skips the byte after
 * each '\r' and the two bytes after each bulk without looking at them (Redis does). A
 * request that follows an ignored one in the same call (after "*0" or an empty inline
 * line) is left to the states too: rare, and their result is the same.
 *
 * It is the per-command hot path of a pipeline, so it keeps the cursor and the limits in
 * locals and writes the parser back once, writes argv entries itself (no push_arg call
 * per argument), and reads a number of one or two digits (most "*N" and "$N" lines)
 * without entering the digit loop.
 */

/* fast_next's "not mine": the byte-wise states parse the request. */
#define FAST_DECLINED 1
/* The longest number fast_next reads, in digits: every value of 18 digits fits an
 * int64_t. A header line of that many digits and its type byte must be within
 * inline_bytes_max; a smaller limit (only tests set one) leaves every request to the
 * byte-wise states. */
#define FAST_DIGITS_MAX 18

/* The number of a "*N" or "$N" line as fast_next takes it, at q (its first byte, with
 * e - q >= 3): 1 to FAST_DIGITS_MAX digits without a leading zero, or "0", then '\r'
 * and one more byte. Returns the byte after those and sets *out; NULL for anything
 * else. */
static inline const char *fast_num(const char *q, const char *e, uint64_t *out)
{
    KV_DASSERT(e - q >= 3);
    unsigned d = (unsigned)(unsigned char)q[0] - '0';
    if (d > 9) {
        return NULL;
    }
    if (q[1] == '\r') {
        *out = d;
        return q + 3;
    }
    if (d == 0) {
        return NULL; /* a leading zero: the byte-wise states decide */
    }
    unsigned d1 = (unsigned)(unsigned char)q[1] - '0';
    if (d1 <= 9 && q[2] == '\r' && e - q >= 4) { /* two digits: keys' lengths, often */
        *out = d * 10 + d1;
        return q + 4;
    }
    /* The digits must leave room for the '\r' and its byte: they end by e - 2. */
    size_t room = (size_t)(e - q) - 2;
    const char *stop = q + (room < FAST_DIGITS_MAX ? room : FAST_DIGITS_MAX);
    const char *t = q + 1;
    uint64_t v = d;
    while (t < stop && (d = (unsigned)(unsigned char)*t - '0') <= 9) {
        v = v * 10 + d;
        t++;
    }
    if (*t != '\r') { /* t <= stop <= e - 2: readable */
        return NULL;
    }
    *out = v;
    return t + 2;
}

/* In ST_START at a '*': 0 with the whole request in argv, *cmd set and pos past it, or
 * FAST_DECLINED (nothing changed) when the byte-wise states must parse it. A request of
 * more arguments than the argv array holds is declined too: they grow the array exactly
 * as they always do (once per connection in practice: it never shrinks), so the loop
 * needs no growth check. */
static inline int fast_next(struct resp_parser *p, struct resp_cmd *cmd)
{
    const char *s = p->buf + p->pos + 1;
    const char *e = p->buf + p->len;
    uint64_t n;
    if (p->auth_required || p->lim.inline_bytes_max < FAST_DIGITS_MAX + 1 || e - s < 3) {
        return FAST_DECLINED;
    }
    s = fast_num(s, e, &n);
    if (s == NULL || n == 0 || n > (uint64_t)p->lim.mbulk_count_max || n > p->argv_cap) {
        return FAST_DECLINED;
    }
    uint64_t bulk_max = (uint64_t)p->lim.bulk_bytes_max;
    struct resp_arg *a = p->argv;
    struct resp_arg *a_end = a + n;
    do {
        uint64_t len;
        if (e - s < 4 || *s != '$') { /* '$', a digit, '\r' and its byte */
            return FAST_DECLINED;
        }
        s = fast_num(s + 1, e, &len);
        if (s == NULL || len > bulk_max || (uint64_t)(e - s) < len + 2) {
            return FAST_DECLINED;
        }
        a->ptr = len > 0 ? s : "";
        a->len = (size_t)len;
        a++;
        s += len + 2;
    } while (a != a_end);
    p->pos = (size_t)(s - p->buf);
    p->argc = (size_t)n;
    p->cmd_done = true;
    p->mark = NULL;
    p->pend_bytes = 0;
    cmd->argc = (size_t)n;
    cmd->argv = p->argv;
    return 0;
}

bool resp_peek_second_arg(const void *buf, size_t len, struct resp_arg *key)
{
    const char *s = buf, *e = s + len;
    uint64_t n, alen;
    if (len < 4 || s[0] != '*' || (s = fast_num(s + 1, e, &n)) == NULL || n < 2) {
        return false;
    }
    for (int arg = 0;; arg++) {
        if (e - s < 4 || *s != '$' || (s = fast_num(s + 1, e, &alen)) == NULL ||
            (uint64_t)(e - s) < alen + (arg == 0 ? 2 : 0)) {
            return false;
        }
        if (arg == 1) {
            key->ptr = s;
            key->len = (size_t)alen;
            return true;
        }
        s += alen + 2;
    }
}

/* ---- the public calls ------------------------------------------------------------- */

static int st_start(struct resp_parser *p)
{
    if (p->pos == p->len) {
        return STEP_NEED_INPUT;
    }
    p->mark = NULL;
    p->pend_bytes = 0;
    if (p->buf[p->pos] == '*') {
        p->pos++;
        line_begin(p, true);
        p->st = ST_LINE;
    } else {
        p->st = ST_INLINE;
    }
    return STEP_PROGRESS;
}

static int step(struct resp_parser *p)
{
    switch (p->st) {
    case ST_START:
        return st_start(p);
    case ST_INLINE:
        return st_inline(p);
    case ST_INLINE_NUL:
        return st_inline_nul(p);
    case ST_LINE:
        return st_line(p);
    case ST_LINE_END:
        return st_line_end(p);
    case ST_BULK_DATA:
        return st_bulk_data(p);
    case ST_BULK_TAIL:
        return st_bulk_tail(p);
    case ST_FAILED:
        break;
    }
    KV_ASSERT(p->st == ST_FAILED);
    return p->err_rc;
}

/* resp_parser_next by the byte-wise states. Kept out of line so that the fast path's
 * caller stays small (no register saves for this loop's sake). */
static __attribute__((noinline)) int next_bytewise(struct resp_parser *p, struct resp_cmd *cmd)
{
    if (p->st == ST_FAILED) {
        return p->err_rc;
    }
    if (p->cmd_done) {
        p->argc = 0;
        p->cmd_done = false;
    }
    for (;;) {
        int rc = step(p);
        if (rc == STEP_PROGRESS) {
            continue;
        }
        if (rc == STEP_COMMAND) {
            KV_ASSERT(p->argc > 0);
            p->cmd_done = true;
            p->mark = NULL;
            p->pend_bytes = 0;
            cmd->argc = p->argc;
            cmd->argv = p->argv;
            return 0;
        }
        if (rc < 0) {
            return rc;
        }
        KV_ASSERT(rc == STEP_NEED_INPUT && p->pos == p->len);
        rc = spill(p);
        return rc < 0 ? rc : KV_EAGAIN;
    }
}

int resp_parser_next(struct resp_parser *p, struct resp_cmd *cmd)
{
    KV_ASSERT(p != NULL && cmd != NULL);
    if (p->st == ST_START && p->pos == p->len && (p->cmd_done || p->argc == 0)) {
        /* the buffer ends between requests (once per receive): what the byte-wise
         * states would do there, without them (nothing to spill) */
        p->argc = 0;
        p->cmd_done = false;
        return KV_EAGAIN;
    }
    if (p->st == ST_START && p->pos < p->len && p->buf[p->pos] == '*') {
        int rc = fast_next(p, cmd);
        if (rc != FAST_DECLINED) {
            return rc;
        }
    }
    return next_bytewise(p, cmd);
}

const void *resp_parser_unread(const struct resp_parser *p, size_t *len)
{
    KV_ASSERT(p->st == ST_START || p->st == ST_FAILED || p->pos == 0);
    *len = p->len - p->pos;
    return *len > 0 ? p->buf + p->pos : NULL;
}

void resp_parser_move(struct resp_parser *p, const void *buf)
{
    KV_ASSERT((p->st == ST_START || p->pos == 0) && (buf != NULL || p->len == p->pos));
    p->len -= p->pos;
    p->pos = 0;
    p->buf = buf;
}

void resp_parser_feed(struct resp_parser *p, const void *buf, size_t len)
{
    KV_ASSERT(p != NULL);
    KV_ASSERT(buf != NULL || len == 0);
    KV_ASSERT(p->pos == p->len || p->st == ST_FAILED);
    if (p->cmd_done) {
        p->argc = 0;
        p->cmd_done = false;
    }
    arena_release(p);
    p->buf = buf;
    p->len = len;
    p->pos = 0;
}

int resp_parser_create(struct resp_parser **out, const struct resp_alloc *a,
                       const struct resp_parse_limits *lim)
{
    KV_ASSERT(out != NULL && a != NULL);
    struct resp_parser *p = a->alloc(a->ctx, sizeof *p);
    if (p == NULL) {
        return KV_ENOMEM;
    }
    memset(p, 0, sizeof *p);
    p->alloc = *a;
    p->lim = lim != NULL ? *lim : resp_parse_limits_default();
    KV_ASSERT(p->lim.inline_bytes_max > 0 && p->lim.bulk_bytes_max >= 0);
    KV_ASSERT(p->lim.mbulk_count_max > 0 && p->lim.query_bytes_max > 0);
    p->argv_cap = RESP_ARGV_INITIAL;
    p->argv = a->alloc(a->ctx, p->argv_cap * sizeof *p->argv);
    if (p->argv == NULL) {
        a->free(a->ctx, p, sizeof *p);
        return KV_ENOMEM;
    }
    p->st = ST_START;
    *out = p;
    return 0;
}

void resp_parser_destroy(struct resp_parser *p)
{
    if (p == NULL) {
        return;
    }
    p->mark = NULL;
    arena_release(p);
    resp_parser_trim(p);
    if (p->grow != NULL) {
        p->alloc.free(p->alloc.ctx, p->grow, sizeof(struct chunk) + p->grow->cap);
    }
    p->alloc.free(p->alloc.ctx, p->argv, p->argv_cap * sizeof *p->argv);
    struct resp_alloc a = p->alloc;
    a.free(a.ctx, p, sizeof *p);
}

void resp_parser_trim(struct resp_parser *p)
{
    KV_ASSERT(p != NULL);
    while (p->spare != NULL) {
        struct chunk *c = p->spare;
        p->spare = c->next;
        p->spares--;
        p->alloc.free(p->alloc.ctx, c, sizeof(struct chunk) + c->cap);
    }
    KV_ASSERT(p->spares == 0);
}

void resp_parser_set_auth_required(struct resp_parser *p, bool required)
{
    KV_ASSERT(p != NULL);
    p->auth_required = required;
}

enum resp_perr resp_parser_error(const struct resp_parser *p)
{
    return p->err;
}

const char *resp_parser_error_text(const struct resp_parser *p)
{
    return p->err_text;
}

bool resp_parser_arena_contains(const struct resp_parser *p, const void *ptr, size_t len)
{
    uintptr_t x = (uintptr_t)ptr;
    for (const struct chunk *c = p->head; c != NULL; c = c->next) {
        uintptr_t d = (uintptr_t)c->data;
        if (x >= d && x <= d + c->used && len <= d + c->used - x) {
            return true;
        }
    }
    return false;
}

size_t resp_parser_memory_bytes(const struct resp_parser *p)
{
    size_t n = sizeof *p + p->arena_bytes + p->argv_cap * sizeof *p->argv;
    if (p->grow != NULL) {
        n += sizeof(struct chunk) + p->grow->cap;
    }
    n += p->spares * (sizeof(struct chunk) + KV_RESP_ARENA_CHUNK_BYTES);
    return n;
}
