/*
 * cmd_command: COMMAND and its subcommands (COUNT, INFO, DOCS, LIST, GETKEYS), the
 * command table as clients see it.
 */
#include "cmd.h"

#include "reply.h"
#include "resp_parse.h"

#include <stdio.h>
#include <string.h>

/* ---- COMMAND ---------------------------------------------------------------------- */

static void command_entry(struct resp_out *o, const struct cmd_desc *d)
{
    reply_array(o, 10);
    reply_bulk_str(o, d->name);
    reply_int(o, d->arity);
    /* flags as a set of status strings */
    char flags[128];
    snprintf(flags, sizeof flags, "%s", d->flag_names);
    size_t nflags = 0;
    for (char *p = flags; *p != '\0'; p++) {
        nflags += (p == flags || p[-1] == ' ') && *p != ' ';
    }
    reply_set(o, nflags);
    for (char *tok = strtok(flags, " "); tok != NULL; tok = strtok(NULL, " ")) {
        reply_simple(o, tok);
    }
    reply_int(o, d->first_key);
    reply_int(o, d->last_key);
    reply_int(o, d->key_step);
    reply_set(o, 0);   /* ACL categories */
    reply_set(o, 0);   /* tips */
    reply_array(o, 0); /* key specifications */
    reply_array(o, 0); /* subcommands */
}

static size_t visible_count(const struct cmd_desc *t, size_t n)
{
    size_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v += !(t[i].flags & CMD_HIDDEN);
    }
    return v;
}

static void command_all(struct resp_out *o, const struct cmd_desc *t, size_t n)
{
    reply_array(o, visible_count(t, n));
    for (size_t i = 0; i < n; i++) {
        if (!(t[i].flags & CMD_HIDDEN)) {
            command_entry(o, &t[i]);
        }
    }
}

void cmd_command(struct cmd_ctx *x)
{
    size_t n;
    const struct cmd_desc *t = cmd_table(&n);
    if (x->argc == 1) {
        command_all(x->out, t, n);
        return;
    }
    const struct resp_arg *sub = &x->argv[1];
    if (cmd_arg_is(sub, "count")) {
        if (x->argc != 2) {
            cmd_reply_sub_arity(x);
            return;
        }
        reply_int(x->out, (int64_t)visible_count(t, n));
    } else if (cmd_arg_is(sub, "info")) {
        if (x->argc == 2) {
            command_all(x->out, t, n);
            return;
        }
        reply_array(x->out, x->argc - 2);
        for (size_t i = 2; i < x->argc; i++) {
            const struct cmd_desc *d = cmd_lookup(x->argv[i].ptr, x->argv[i].len);
            if (d == NULL) {
                reply_null(x->out);
            } else {
                command_entry(x->out, d);
            }
        }
    } else if (cmd_arg_is(sub, "docs")) {
        reply_map(x->out, 0); /* no documentation: clients fall back to their own */
    } else if (cmd_arg_is(sub, "list")) {
        if (x->argc != 2) {
            reply_err_syntax(x->out); /* FILTERBY is not supported */
            return;
        }
        reply_array(x->out, visible_count(t, n));
        for (size_t i = 0; i < n; i++) {
            if (!(t[i].flags & CMD_HIDDEN)) {
                reply_bulk_str(x->out, t[i].name);
            }
        }
    } else if (cmd_arg_is(sub, "getkeys")) {
        reply_error(x->out, "ERR COMMAND GETKEYS is not supported");
    } else {
        cmd_reply_unknown_subcommand(x);
    }
}
