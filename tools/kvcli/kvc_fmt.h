/*
 * kvc_fmt: prints a reply the way redis-cli does.
 *
 * Two styles, as in redis-cli 7:
 * - KVC_FMT_TTY (stdout is a terminal, or --no-raw): "(integer) 1", "(nil)", bulk
 *   strings quoted with non-printable bytes escaped ("a\x00b\n"), "(error) ERR ...",
 *   numbered aggregates "1) ", sets "1~ ", maps "1# key => value", nested ones indented
 *   under their parent's number, "(empty array)", and the RESP3 types "(double) 1.5",
 *   "(true)", "(big number) 123".
 * - KVC_FMT_RAW (stdout is not a terminal, or --raw): the bytes only, aggregates one
 *   element per line, map pairs as "key value", nil as an empty line, and each reply
 *   followed by a newline.
 * `verbatim` is redis-cli's treatment of INFO, CLIENT LIST and a few others: raw bytes
 * with no newline added, whatever the style (their text carries its own line breaks).
 *
 * Attributes (RESP3 `|`) are not printed: the value they annotate is. Pure: appends to
 * a caller's buffer; single-threaded.
 */
#ifndef KVC_FMT_H
#define KVC_FMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvc_buf.h"

struct resp_reply_tree;

enum kvc_fmt_style {
    KVC_FMT_TTY,
    KVC_FMT_RAW,
};

/*
 * Appends the text of the complete reply in `t` (node `root`, usually
 * resp_reply_tree_root(t)) to out. Returns 0 or KV_ELIMIT if out's cap is reached (out
 * then holds a truncated text).
 */
int kvc_fmt_reply(struct kvc_buf *out, const struct resp_reply_tree *t, uint32_t root,
                  enum kvc_fmt_style style, bool verbatim);

/*
 * Appends `s` quoted and escaped as redis-cli's sdscatrepr does: `"` and `\` escaped,
 * \n \r \t \a \b, other non-printable bytes (C locale) as \xHH. Returns 0 or KV_ELIMIT.
 */
int kvc_fmt_repr(struct kvc_buf *out, const char *s, size_t len);

#endif
