/*
 * lim_cmd: counts complete RESP commands in a request stream, and notes which are GET.
 *
 * The limit server must answer exactly one reply per command, in order, whatever way
 * the client's bytes were split into reads; so this is a byte-at-a-time state machine
 * whose whole state (struct lim_cmd) survives between reads, except that bulk
 * payloads are skipped in one step. A multibulk command that lies whole in the buffer
 * (the usual case) is taken in one pass by fast_command() instead. Both request forms are
 * understood: multibulk
 * (*N then N times $len, payload, CRLF) and inline (a line ending in LF, the form
 * redis-cli and telnet use). Empty inline lines and *0 / *-1 are no command, as in
 * Redis. Nothing else is validated beyond what framing needs.
 *
 * Invariants: state is one of the enum below; args_left > 0 while inside a multibulk
 * command; bulk_left >= 0. Called by the connection's owning thread only.
 */
#include "lim.h"

#include <string.h>

#include "kv_assert.h"

enum {
    S_START,       /* between commands */
    S_MB_COUNT,    /* *<digits> */
    S_MB_COUNT_LF, /* the LF after the count */
    S_DOLLAR,      /* the $ of the next argument */
    S_BULK_LEN,    /* $<digits> */
    S_BULK_LEN_LF, /* the LF after the length */
    S_BULK_DATA,   /* payload */
    S_BULK_CR,     /* the CRLF after the payload */
    S_BULK_LF,
    S_INLINE, /* an inline command, up to LF */
};

/* name_len once the command's name has been seen whole */
#define NAME_DONE UINT32_MAX

void lim_cmd_init(struct lim_cmd *c)
{
    KV_ASSERT(c != NULL);
    memset(c, 0, sizeof(*c));
    c->state = S_START;
}

static void num_reset(struct lim_cmd *c)
{
    c->num = 0;
    c->num_digits = 0;
    c->num_neg = 0;
}

/* One byte of a number ended by CR. 1: the CR came (number complete), 0: more, -1: bad. */
static int num_byte(struct lim_cmd *c, char ch)
{
    if (ch == '\r') {
        return c->num_digits > 0 ? 1 : -1;
    }
    if (ch == '-' && c->num_digits == 0 && !c->num_neg) {
        c->num_neg = 1;
        return 0;
    }
    if (ch < '0' || ch > '9' || c->num_digits >= 18) {
        return -1;
    }
    c->num = c->num * 10 + (ch - '0');
    c->num_digits++;
    return 0;
}

/* Track whether the name (first argument or word) is GET, case-insensitively. */
static void name_byte(struct lim_cmd *c, char ch)
{
    if (c->name_len == NAME_DONE) {
        return;
    }
    static const char get[] = "get";
    char lower = (char)(ch | 0x20);
    if (c->name_len >= 3 || lower != get[c->name_len]) {
        c->is_get = 0;
    }
    c->name_len++;
}

static int complete(struct lim_cmd *c, lim_cmd_fn fn, void *ctx)
{
    int is_get = c->is_get && (c->name_len == 3 || c->name_len == NAME_DONE);
    c->state = S_START;
    return fn(ctx, is_get);
}

/* A decimal number ended by CRLF at s[*i..len); -1 if not all there or not a number. */
static int64_t fast_num(const char *s, size_t len, size_t *i)
{
    int64_t v = 0;
    size_t k = *i, digits = 0;
    while (k < len && s[k] >= '0' && s[k] <= '9' && digits < 18) {
        v = v * 10 + (s[k++] - '0');
        digits++;
    }
    if (digits == 0 || k + 1 >= len || s[k] != '\r' || s[k + 1] != '\n') {
        return -1;
    }
    *i = k + 2;
    return v;
}

/*
 * The common case in one pass: a whole multibulk command at s[0..len). Returns its
 * size and sets *is_get, or 0 when the command is not all there or is anything
 * unusual (the byte machine then takes it, and judges errors).
 */
static size_t fast_command(const char *s, size_t len, int *is_get)
{
    size_t i = 1;
    int64_t argc = fast_num(s, len, &i);
    if (argc <= 0 || argc > LIM_ARGS_MAX) {
        return 0;
    }
    for (int64_t a = 0; a < argc; a++) {
        if (i >= len || s[i] != '$') {
            return 0;
        }
        i++;
        int64_t n = fast_num(s, len, &i);
        if (n < 0 || (uint64_t)n + 2 > len - i) {
            return 0;
        }
        if (a == 0) {
            *is_get = n == 3 && (s[i] | 0x20) == 'g' && (s[i + 1] | 0x20) == 'e' &&
                      (s[i + 2] | 0x20) == 't';
        }
        i += (size_t)n;
        if (s[i] != '\r' || s[i + 1] != '\n') {
            return 0;
        }
        i += 2;
    }
    return i;
}

int lim_cmd_feed(struct lim_cmd *c, const char *buf, size_t len, lim_cmd_fn fn, void *ctx)
{
    KV_ASSERT(c != NULL && fn != NULL);
    size_t i = 0;
    int r;
    while (i < len) {
        char ch = buf[i];
        if (c->state == S_START && ch == '*') {
            int is_get = 0;
            size_t n = fast_command(buf + i, len - i, &is_get);
            if (n > 0) {
                i += n;
                r = fn(ctx, is_get);
                if (r != 0) {
                    return r;
                }
                continue;
            }
        }
        switch (c->state) {
        case S_START:
            i++;
            if (ch == '\r' || ch == '\n') {
                break;
            }
            c->is_get = 1;
            c->name_len = 0;
            if (ch == '*') {
                num_reset(c);
                c->state = S_MB_COUNT;
            } else {
                c->inline_len = 1;
                name_byte(c, ch);
                c->state = S_INLINE;
            }
            break;
        case S_MB_COUNT:
        case S_BULK_LEN:
            i++;
            r = num_byte(c, ch);
            if (r < 0) {
                return -1;
            }
            if (r > 0) {
                c->state = c->state == S_MB_COUNT ? S_MB_COUNT_LF : S_BULK_LEN_LF;
            }
            break;
        case S_MB_COUNT_LF:
            i++;
            if (ch != '\n' || c->num > LIM_ARGS_MAX) {
                return -1;
            }
            if (c->num_neg || c->num == 0) {
                c->state = S_START; /* *0 and *-1: no command */
                break;
            }
            c->args_left = c->num;
            c->arg = 0;
            c->state = S_DOLLAR;
            break;
        case S_DOLLAR:
            i++;
            if (ch != '$') {
                return -1;
            }
            num_reset(c);
            c->state = S_BULK_LEN;
            break;
        case S_BULK_LEN_LF:
            i++;
            if (ch != '\n' || c->num_neg || c->num > LIM_BULK_MAX) {
                return -1;
            }
            c->bulk_left = c->num;
            c->state = c->bulk_left > 0 ? S_BULK_DATA : S_BULK_CR;
            break;
        case S_BULK_DATA: {
            size_t n = len - i < (uint64_t)c->bulk_left ? len - i : (size_t)c->bulk_left;
            if (c->arg == 0) {
                for (size_t k = 0; k < n && c->name_len <= 3; k++) {
                    name_byte(c, buf[i + k]);
                }
            }
            i += n;
            c->bulk_left -= (int64_t)n;
            if (c->bulk_left == 0) {
                c->state = S_BULK_CR;
            }
            break;
        }
        case S_BULK_CR:
            i++;
            if (ch != '\r') {
                return -1;
            }
            c->state = S_BULK_LF;
            break;
        case S_BULK_LF:
            i++;
            if (ch != '\n') {
                return -1;
            }
            if (c->arg == 0) {
                c->is_get = c->is_get && c->name_len == 3;
                c->name_len = NAME_DONE;
            }
            c->arg++;
            if (--c->args_left == 0) {
                r = complete(c, fn, ctx);
                if (r != 0) {
                    return r;
                }
            } else {
                c->state = S_DOLLAR;
            }
            break;
        case S_INLINE: {
            const char *lf = memchr(buf + i, '\n', len - i);
            size_t end = lf != NULL ? (size_t)(lf - buf) : len;
            for (size_t k = i; k < end && c->name_len != NAME_DONE; k++) {
                if (buf[k] == ' ' || buf[k] == '\r') {
                    c->is_get = c->is_get && c->name_len == 3;
                    c->name_len = NAME_DONE;
                } else {
                    name_byte(c, buf[k]);
                }
            }
            c->inline_len += (uint32_t)(end - i);
            if (c->inline_len > LIM_INLINE_MAX) {
                return -1;
            }
            i = end;
            if (lf != NULL) {
                i++;
                r = complete(c, fn, ctx);
                if (r != 0) {
                    return r;
                }
            }
            break;
        }
        default:
            KV_ASSERT(0 && "bad state");
        }
    }
    return 0;
}
