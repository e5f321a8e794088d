/*
 * acl.c: the ACL command. Users, their rules and the checks are users.c's; this file
 * parses the subcommands and replies as Redis 7.0 (CAT from the commands' categories,
 * GENPASS from getrandom).
 */
#include "cmd.h"
#include "cmd_docs.h"
#include "conn.h"
#include "server.h"
#include "users.h"
#include "kvd_settings.h"
#include "reply.h"
#include "resp_parse.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#define ACL_GENPASS_BITS_MAX 4096

/* Whether command d's ACL categories name `cat` ("@string" in "@write @string @slow"). */
static bool in_category(const char *acl, const char *cat)
{
    size_t n = strlen(cat);
    for (const char *p = acl; p != NULL && (p = strchr(p, '@')) != NULL; p++) {
        if (strncmp(p + 1, cat, n) == 0 && (p[1 + n] == ' ' || p[1 + n] == '\0')) {
            return true;
        }
    }
    return false;
}

static void cat(struct cmd_ctx *x)
{
    if (x->argc == 2) {
        reply_array(x->out, users_ncategories);
        for (size_t i = 0; i < users_ncategories; i++) {
            reply_bulk_str(x->out, users_categories[i]);
        }
        return;
    }
    const struct resp_arg *c = &x->argv[2];
    const char *found = NULL;
    for (size_t i = 0; i < users_ncategories && found == NULL; i++) {
        if (strlen(users_categories[i]) == c->len &&
            strncasecmp(users_categories[i], c->ptr, c->len) == 0) {
            found = users_categories[i];
        }
    }
    if (found == NULL) {
        reply_error(x->out, "ERR Unknown category '%.*s'", (int)(c->len > 64 ? 64 : c->len),
                    c->ptr);
        return;
    }
    size_t n = 0;
    for (int pass = 0; pass < 2; pass++) { /* count, then reply */
        if (pass == 1) {
            reply_array(x->out, n);
        }
        for (size_t i = 0; i < cmd_docs_count; i++) {
            const struct cmd_docs *d = &cmd_docs_table[i];
            if (d->nsubs == 0 && in_category(d->acl, found)) {
                n += pass == 0;
                if (pass == 1) {
                    reply_bulk_str(x->out, d->name);
                }
            }
            for (size_t s = 0; s < d->nsubs; s++) {
                if (in_category(d->subs[s].acl, found)) {
                    n += pass == 0;
                    if (pass == 1) {
                        reply_bulk_str(x->out, d->subs[s].name);
                    }
                }
            }
        }
    }
}

static void genpass(struct cmd_ctx *x)
{
    int64_t bits = 256;
    if (x->argc == 3 && !cmd_parse_i64(&x->argv[2], &bits)) {
        reply_err_not_int(x->out);
        return;
    }
    if (bits <= 0 || bits > ACL_GENPASS_BITS_MAX) {
        reply_error(x->out, "ERR ACL GENPASS argument must be the number of bits for the output "
                            "password, a positive number up to 4096");
        return;
    }
    size_t chars = (size_t)(bits + 3) / 4;
    unsigned char raw[ACL_GENPASS_BITS_MAX / 8];
    size_t need = (chars + 1) / 2;
    if (getrandom(raw, need, 0) != (ssize_t)need) {
        reply_error(x->out, "ERR could not read random bytes");
        return;
    }
    static const char hex[] = "0123456789abcdef";
    char out[ACL_GENPASS_BITS_MAX / 4];
    for (size_t i = 0; i < chars; i++) {
        out[i] = hex[(raw[i / 2] >> (i % 2 ? 0 : 4)) & 15];
    }
    reply_bulk(x->out, out, chars);
}

void cmd_acl(struct cmd_ctx *x)
{
    static const char *const help[] = {
        "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CAT [<category>]",
        "    List all commands that belong to <category>, or all command categories",
        "    when no category is specified.",
        "DELUSER <username> [<username> ...]",
        "    Delete a list of users.",
        "DRYRUN <username> <command> [<arg> ...]",
        ("    Returns whether the user can execute the given command without executing the "
         "command."),
        "GETUSER <username>",
        "    Get the user's details.",
        "GENPASS [<bits>]",
        "    Generate a secure 256-bit user password. The optional `bits` argument can",
        "    be used to specify a different size.",
        "LIST",
        "    Show users details in config file format.",
        "LOAD",
        "    Reload users from the ACL file.",
        "LOG [<count> | RESET]",
        "    Show the ACL log entries.",
        "SAVE",
        "    Save the current config to the ACL file.",
        "SETUSER <username> <attribute> [<attribute> ...]",
        "    Create or modify a user with the specified attributes.",
        "USERS",
        "    List all the registered usernames.",
        "WHOAMI",
        "    Return the current connection username.",
        "HELP",
        "    Prints this help.",
    };
    const struct resp_arg *sub = &x->argv[1];
    size_t argc = x->argc;
    if (cmd_arg_is(sub, "help") && argc == 2) {
        reply_lines(x->out, help, sizeof help / sizeof help[0]);
    } else if (cmd_arg_is(sub, "whoami") && argc == 2) {
        const struct user *u = users_view_get(&x->sh->users, conn_user(x->conn));
        reply_bulk_str(x->out, u != NULL ? user_name(u) : "default");
    } else if (cmd_arg_is(sub, "users") && argc == 2) {
        users_cmd_users(x->out);
    } else if (cmd_arg_is(sub, "list") && argc == 2) {
        users_cmd_list(x->out);
    } else if (cmd_arg_is(sub, "getuser") && argc == 3) {
        users_cmd_getuser(x->out, &x->argv[2]);
    } else if (cmd_arg_is(sub, "cat") && argc <= 3) {
        cat(x);
    } else if (cmd_arg_is(sub, "genpass") && argc <= 3) {
        genpass(x);
    } else if (cmd_arg_is(sub, "dryrun") && argc >= 4) {
        users_cmd_dryrun(x->out, x->argv, argc);
    } else if (cmd_arg_is(sub, "log") && argc <= 3) {
        int64_t count = 10; /* Redis's default */
        if (argc == 3 && cmd_arg_is(&x->argv[2], "reset")) {
            users_cmd_log(x->out, 0, true);
        } else if (argc == 3 && !cmd_parse_i64(&x->argv[2], &count)) {
            reply_err_not_int(x->out);
        } else {
            users_cmd_log(x->out, count < 0 ? 0 : count, false);
        }
    } else if (cmd_arg_is(sub, "deluser") && argc >= 3) {
        users_cmd_deluser(x->out, x->argv, argc);
    } else if (cmd_arg_is(sub, "setuser") && argc >= 3) {
        users_cmd_setuser(x->out, x->argv, argc);
    } else if (cmd_arg_is(sub, "load") && argc == 2) {
        users_cmd_load(x->out);
    } else if (cmd_arg_is(sub, "save") && argc == 2) {
        users_cmd_save(x->out);
    } else if (cmd_arg_is(sub, "cat")) {
        reply_error(x->out,
                    "ERR unknown subcommand or wrong number of arguments for '%.*s'. Try ACL "
                    "HELP.",
                    (int)sub->len, sub->ptr); /* as the client wrote it, as Redis */
    } else if (cmd_arg_is(sub, "help") || cmd_arg_is(sub, "whoami") || cmd_arg_is(sub, "users") ||
               cmd_arg_is(sub, "list") || cmd_arg_is(sub, "getuser") ||
               cmd_arg_is(sub, "genpass") || cmd_arg_is(sub, "dryrun") || cmd_arg_is(sub, "log") ||
               cmd_arg_is(sub, "deluser") || cmd_arg_is(sub, "setuser") ||
               cmd_arg_is(sub, "load") || cmd_arg_is(sub, "save")) {
        cmd_reply_sub_arity(x);
    } else {
        cmd_reply_unknown_subcommand(x);
    }
}
