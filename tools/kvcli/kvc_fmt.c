/*
 * kvc_fmt: redis-cli's reply printing (see kvc_fmt.h), over resp_reply's tree form.
 *
 * The TTY printer follows redis-cli's cliFormatReplyTTY rule for rule: an aggregate of
 * n elements numbers them with width digits(n) and indents nested lines by width + 2
 * more spaces; its first element follows the parent's number on the same line; a map
 * key's trailing newline is replaced by " => ", and a value that prints on several
 * lines starts on a fresh line at the child indentation (cliIsMultilineValueTTY).
 * Texts printed with %s in redis-cli stop at their first NUL; so do ours.
 *
 * The reply is a tree (a whole reply is needed anyway to know whether a map value is
 * multi-line), nodes in pre-order; recursion depth is bounded by the parser's
 * KV_RESP_REPLY_DEPTH_MAX. Errors are sticky in struct fmt: after the output cap is
 * reached nothing more is appended. Single-threaded.
 */
#include "kvc_fmt.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "kv_assert.h"
#include "kv_error.h"
#include "resp_reply.h"

struct fmt {
    struct kvc_buf *out;
    const struct resp_reply_node *nodes;
    uint32_t n;
    int rc; /* first error; nothing is appended after one */
};

static void put(struct fmt *f, const void *p, size_t len)
{
    if (f->rc == 0) {
        f->rc = kvc_buf_append(f->out, p, len);
    }
}

static void puts_(struct fmt *f, const char *s)
{
    put(f, s, strlen(s));
}

/* A node's text up to its first NUL (redis-cli prints these with %s). */
static void put_cstr(struct fmt *f, const struct resp_reply_node *nd)
{
    if (nd->str != NULL) {
        put(f, nd->str, strnlen(nd->str, nd->len));
    }
}

static void put_spaces(struct fmt *f, size_t n)
{
    static const char spaces[] = "                                ";
    while (n > 0) {
        size_t k = n < sizeof(spaces) - 1 ? n : sizeof(spaces) - 1;
        put(f, spaces, k);
        n -= k;
    }
}

/* Skips attribute nodes: the index of the element at or after j. */
static uint32_t skip_attr(const struct fmt *f, uint32_t j)
{
    while (j < f->n && f->nodes[j].type == RESP_REPLY_ATTRIBUTE) {
        j = f->nodes[j].next;
    }
    KV_ASSERT(j < f->n);
    return j;
}

static uint32_t first_elem(const struct fmt *f, uint32_t i)
{
    return skip_attr(f, i + 1);
}

static uint32_t next_elem(const struct fmt *f, uint32_t j)
{
    return skip_attr(f, f->nodes[j].next);
}

/* Elements of an aggregate as redis-cli counts them (a map has two per pair). */
static uint64_t elem_count(const struct resp_reply_node *nd)
{
    uint64_t c = (uint64_t)nd->count;
    return nd->type == RESP_REPLY_MAP ? 2 * c : c;
}

/* True if tty_node() prints node j on more than one line. */
static int is_multiline(const struct fmt *f, uint32_t j)
{
    const struct resp_reply_node *nd = &f->nodes[j];
    switch (nd->type) {
    case RESP_REPLY_ARRAY:
    case RESP_REPLY_SET:
    case RESP_REPLY_PUSH:
        if (nd->count == 0) {
            return 0;
        }
        return nd->count > 1 || is_multiline(f, first_elem(f, j));
    case RESP_REPLY_MAP:
        if (nd->count == 0) {
            return 0;
        }
        return nd->count > 1 || is_multiline(f, next_elem(f, first_elem(f, j)));
    default:
        return 0;
    }
}

static void tty_node(struct fmt *f, uint32_t i, size_t indent);

static void tty_empty(struct fmt *f, uint8_t type)
{
    puts_(f, type == RESP_REPLY_ARRAY ? "(empty array)\n"
             : type == RESP_REPLY_MAP ? "(empty hash)\n"
             : type == RESP_REPLY_SET ? "(empty set)\n"
                                      : "(empty push)\n");
}

/* An aggregate at node i whose continuation lines are indented by `indent` spaces. */
static void tty_aggregate(struct fmt *f, uint32_t i, size_t indent)
{
    const struct resp_reply_node *nd = &f->nodes[i];
    uint64_t elems = elem_count(nd);
    if (elems == 0) {
        tty_empty(f, nd->type);
        return;
    }
    uint64_t shown = nd->type == RESP_REPLY_MAP ? elems / 2 : elems;
    int width = 0;
    for (uint64_t k = shown; width == 0 || k > 0; k /= 10) {
        width++;
    }
    size_t child_indent = indent + (size_t)width + 2;
    char sep = nd->type == RESP_REPLY_SET ? '~' : nd->type == RESP_REPLY_MAP ? '#' : ')';
    uint32_t j = first_elem(f, i);
    for (uint64_t e = 0; e < elems && f->rc == 0; e++) {
        uint64_t human = (nd->type == RESP_REPLY_MAP ? e / 2 : e) + 1;
        put_spaces(f, e == 0 ? 0 : indent);
        char num[32];
        int n = snprintf(num, sizeof(num), "%*" PRIu64 "%c ", width, human, sep);
        put(f, num, (size_t)n);
        tty_node(f, j, child_indent);
        if (nd->type == RESP_REPLY_MAP) {
            e++;
            j = next_elem(f, j);
            if (f->rc == 0) {
                KV_ASSERT(f->out->len > 0 && f->out->data[f->out->len - 1] == '\n');
                f->out->len--;
            }
            puts_(f, " => ");
            if (is_multiline(f, j)) {
                puts_(f, "\n");
                put_spaces(f, child_indent);
            }
            tty_node(f, j, child_indent);
        }
        if (e + 1 < elems) {
            j = next_elem(f, j);
        }
    }
}

static void tty_node(struct fmt *f, uint32_t i, size_t indent)
{
    const struct resp_reply_node *nd = &f->nodes[i];
    char num[64];
    switch (nd->type) {
    case RESP_REPLY_ERROR:
    case RESP_REPLY_BULK_ERROR:
        puts_(f, "(error) ");
        put_cstr(f, nd);
        puts_(f, "\n");
        break;
    case RESP_REPLY_STRING:
        put_cstr(f, nd);
        puts_(f, "\n");
        break;
    case RESP_REPLY_INTEGER:
        snprintf(num, sizeof(num), "(integer) %" PRId64 "\n", nd->integer);
        puts_(f, num);
        break;
    case RESP_REPLY_DOUBLE:
        puts_(f, "(double) ");
        put_cstr(f, nd);
        puts_(f, "\n");
        break;
    case RESP_REPLY_BIGNUM:
        puts_(f, "(big number) ");
        put_cstr(f, nd);
        puts_(f, "\n");
        break;
    case RESP_REPLY_BULK:
        if (f->rc == 0) {
            f->rc = kvc_fmt_repr(f->out, nd->str, nd->len);
        }
        puts_(f, "\n");
        break;
    case RESP_REPLY_VERBATIM:
        put(f, nd->str, nd->len);
        puts_(f, "\n");
        break;
    case RESP_REPLY_NULL:
        puts_(f, "(nil)\n");
        break;
    case RESP_REPLY_BOOLEAN:
        puts_(f, nd->integer ? "(true)\n" : "(false)\n");
        break;
    case RESP_REPLY_ARRAY:
    case RESP_REPLY_MAP:
    case RESP_REPLY_SET:
    case RESP_REPLY_PUSH:
        tty_aggregate(f, i, indent);
        break;
    default:
        KV_ASSERT(!"attribute nodes are skipped before printing");
    }
}

static void raw_node(struct fmt *f, uint32_t i)
{
    const struct resp_reply_node *nd = &f->nodes[i];
    char num[32];
    switch (nd->type) {
    case RESP_REPLY_NULL:
        break;
    case RESP_REPLY_ERROR:
    case RESP_REPLY_BULK_ERROR:
        put(f, nd->str, nd->len);
        puts_(f, "\n");
        break;
    case RESP_REPLY_STRING:
    case RESP_REPLY_BULK:
    case RESP_REPLY_VERBATIM:
    case RESP_REPLY_BIGNUM:
        put(f, nd->str, nd->len);
        break;
    case RESP_REPLY_BOOLEAN:
        puts_(f, nd->integer ? "(true)" : "(false)");
        break;
    case RESP_REPLY_INTEGER:
        snprintf(num, sizeof(num), "%" PRId64, nd->integer);
        puts_(f, num);
        break;
    case RESP_REPLY_DOUBLE:
        put_cstr(f, nd);
        break;
    case RESP_REPLY_ARRAY:
    case RESP_REPLY_SET:
    case RESP_REPLY_PUSH:
    case RESP_REPLY_MAP: {
        uint64_t elems = elem_count(nd);
        uint32_t j = elems > 0 ? first_elem(f, i) : 0;
        for (uint64_t e = 0; e < elems && f->rc == 0; e++) {
            if (e > 0) {
                /* Pairs of a map are "key value"; elements are one per line. */
                puts_(f, nd->type == RESP_REPLY_MAP && e % 2 == 1 ? " " : "\n");
                j = next_elem(f, j);
            }
            raw_node(f, j);
        }
        break;
    }
    default:
        KV_ASSERT(!"attribute nodes are skipped before printing");
    }
}

int kvc_fmt_reply(struct kvc_buf *out, const struct resp_reply_tree *t, uint32_t root,
                  enum kvc_fmt_style style, bool verbatim)
{
    KV_ASSERT(out != NULL && t != NULL && root < t->n);
    struct fmt f = {.out = out, .nodes = t->nodes, .n = t->n, .rc = 0};
    if (verbatim) {
        raw_node(&f, root);
    } else if (style == KVC_FMT_TTY) {
        tty_node(&f, root, 0);
    } else {
        raw_node(&f, root);
        puts_(&f, "\n");
    }
    return f.rc;
}

int kvc_fmt_repr(struct kvc_buf *out, const char *s, size_t len)
{
    KV_ASSERT(out != NULL && (s != NULL || len == 0));
    int rc = kvc_buf_append(out, "\"", 1);
    for (size_t i = 0; i < len && rc == 0; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[5] = {'\\', 0, 0, 0, 0};
        switch (c) {
        case '\\':
        case '"':
            esc[1] = (char)c;
            rc = kvc_buf_append(out, esc, 2);
            break;
        case '\n':
            rc = kvc_buf_append(out, "\\n", 2);
            break;
        case '\r':
            rc = kvc_buf_append(out, "\\r", 2);
            break;
        case '\t':
            rc = kvc_buf_append(out, "\\t", 2);
            break;
        case '\a':
            rc = kvc_buf_append(out, "\\a", 2);
            break;
        case '\b':
            rc = kvc_buf_append(out, "\\b", 2);
            break;
        default:
            /* isprint() in the C locale, which redis-cli runs in: ASCII 32..126. The
             * test is spelled out so that no locale a library sets can change it. */
            if (c >= 0x20 && c <= 0x7e) {
                rc = kvc_buf_append(out, &s[i], 1);
            } else {
                rc = kvc_buf_printf(out, "\\x%02x", c);
            }
            break;
        }
    }
    if (rc == 0) {
        rc = kvc_buf_append(out, "\"", 1);
    }
    return rc;
}
