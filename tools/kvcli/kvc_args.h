/*
 * kvc_args: command arguments, split from a typed line and encoded as a RESP request.
 *
 * Splitting follows redis-cli (sdssplitargs) exactly, so that a line means the same in
 * both clients: arguments are separated by whitespace; "double quotes" take the escapes
 * \n \r \t \b \a \xHH and \<any> for that character; 'single quotes' take only \' ;
 * quotes may open mid-argument (a"b c" is `ab c`), but a closing quote must be followed
 * by whitespace or the end of the line; an unterminated quote makes the line invalid.
 * The line ends at its first NUL, as in redis-cli.
 *
 * The arguments' bytes live in one buffer owned by the struct, each followed by a NUL so
 * that command names can be compared with strcasecmp (values may still contain NULs:
 * lens[] is authoritative). Single-threaded.
 */
#ifndef KVC_ARGS_H
#define KVC_ARGS_H

#include <stddef.h>

#include "kvc_buf.h"

/* Arguments in one command: far past any real command, it bounds the argv arrays a
 * line can make kvcli allocate. */
#define KVC_ARGS_MAX (1024 * 1024)
/* Bytes of all arguments of one command (and of its encoded request): Redis's
 * proto-max-bulk-len (512 MiB) for one value, plus room for the rest of the command. */
#define KVC_ARGS_BYTES_MAX (600LL * 1024 * 1024)

struct kvc_args {
    int argc;
    char **argv;          /* argc pointers into bytes, valid until the next split or deinit */
    size_t *lens;         /* argc lengths */
    int cap;              /* entries allocated in argv and lens */
    struct kvc_buf bytes; /* the arguments, each NUL-terminated */
    size_t *offs;         /* argc offsets into bytes (argv is rebuilt from them) */
};

void kvc_args_init(struct kvc_args *a);
void kvc_args_deinit(struct kvc_args *a);

/*
 * Splits `line` (NUL-terminated) into a, replacing what it held. Returns 0 (argc may be
 * 0 for a blank line), KV_EINVAL for unbalanced quotes or a quote not followed by a
 * space (redis-cli's "Invalid argument(s)"), or KV_ELIMIT past KVC_ARGS_MAX or
 * KVC_ARGS_BYTES_MAX.
 */
int kvc_args_split(struct kvc_args *a, const char *line);

/* Replaces a's content with n given arguments (from the command line). Returns 0 or
 * KV_ELIMIT. */
int kvc_args_set(struct kvc_args *a, int n, char *const *argv);

/* Appends one argument of any bytes (redis-cli's -x: the last argument from stdin).
 * Returns 0 or KV_ELIMIT. */
int kvc_args_push(struct kvc_args *a, const void *p, size_t len);

/*
 * Appends the RESP multibulk request for argv[first..argc) to out:
 * "*N\r\n" then "$len\r\n<bytes>\r\n" per argument. Returns 0 or KV_ELIMIT.
 */
int kvc_args_encode(const struct kvc_args *a, int first, struct kvc_buf *out);

#endif
