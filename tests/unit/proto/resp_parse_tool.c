/*
 * resp_parse_tool: runs resp_parse over stdin and prints what it made of it, for
 * tests/system/test_resp_vs_redis.py, which compares that with a real Redis.
 *
 * Usage: resp_parse_tool [--auth] [--split N]
 *   --auth     apply the pre-AUTH limits (a password is set, not authenticated yet)
 *   --split N  feed the input in pieces of N bytes (default: all at once)
 * Output, one line each: "CMD <hex arg> <hex arg>..." per command, then either
 * "ERR <error text>" or "AGAIN" (input consumed, request incomplete or none).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_error.h"
#include "resp_alloc.h"
#include "resp_parse.h"

static void print_cmd(const struct resp_cmd *cmd)
{
    fputs("CMD", stdout);
    for (size_t i = 0; i < cmd->argc; i++) {
        putchar(' ');
        for (size_t j = 0; j < cmd->argv[i].len; j++) {
            printf("%02x", (unsigned char)cmd->argv[i].ptr[j]);
        }
        if (cmd->argv[i].len == 0) {
            putchar('-');
        }
    }
    putchar('\n');
}

int main(int argc, char **argv)
{
    bool auth = false;
    size_t split = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--auth") == 0) {
            auth = true;
        } else if (strcmp(argv[i], "--split") == 0 && i + 1 < argc) {
            split = strtoul(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: %s [--auth] [--split N]\n", argv[0]);
            return 2;
        }
    }
    size_t cap = 1 << 16, n = 0;
    char *in = malloc(cap);
    size_t r;
    while (in != NULL && (r = fread(in + n, 1, cap - n, stdin)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            in = realloc(in, cap);
        }
    }
    struct resp_parser *p;
    if (in == NULL || resp_parser_create(&p, &resp_alloc_libc, NULL) != 0) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    resp_parser_set_auth_required(p, auth);
    if (split == 0) {
        split = n > 0 ? n : 1;
    }
    int rc = KV_EAGAIN;
    for (size_t off = 0; off < n || off == 0; off += split) {
        size_t len = n - off < split ? n - off : split;
        resp_parser_feed(p, in + off, len);
        struct resp_cmd cmd;
        while ((rc = resp_parser_next(p, &cmd)) == 0) {
            print_cmd(&cmd);
        }
        if (rc != KV_EAGAIN || n == 0) {
            break;
        }
    }
    if (rc == KV_EAGAIN) {
        puts("AGAIN");
    } else {
        printf("ERR %s\n", resp_parser_error_text(p));
    }
    resp_parser_destroy(p);
    free(in);
    return 0;
}
