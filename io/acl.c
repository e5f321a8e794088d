/*
 * acl.c: ACL, for the one user kvd has: "default", whose password is requirepass (none
 * when it is empty) and who may run every command on every key and channel, as Redis's
 * default user is unless configured otherwise. The read-only subcommands answer as Redis
 * 7.0 does for that user (WHOAMI, USERS, LIST, GETUSER, CAT from the commands' ACL
 * categories, DRYRUN, GENPASS, LOG, which stays empty); the ones that would make or
 * change users (SETUSER, DELUSER of another user, LOAD, SAVE) are refused with a reason.
 */
#include "cmd.h"
#include "cmd_docs.h"
#include "kv_sha256.h"
#include "kvd_settings.h"
#include "reply.h"
#include "resp_parse.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#define ACL_GENPASS_BITS_MAX 4096

static const char *const categories[] = {
    "keyspace", "read",   "write",       "set",       "sortedset",  "list",        "hash",
    "string",   "bitmap", "hyperloglog", "geo",       "stream",     "pubsub",      "admin",
    "fast",     "slow",   "blocking",    "dangerous", "connection", "transaction", "scripting",
};

static bool is_default(const struct resp_arg *a)
{
    return a->len == 7 && memcmp(a->ptr, "default", 7) == 0;
}

/* "#<sha256 of requirepass>", or NULL when there is no password. */
static const char *password_hash(char out[KV_SHA256_HEX + 1])
{
    const char *pass = kvd_settings.requirepass;
    if (pass[0] == '\0') {
        return NULL;
    }
    out[0] = '#';
    kv_sha256_hex(pass, strlen(pass), out + 1);
    return out;
}

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
        reply_array(x->out, sizeof categories / sizeof categories[0]);
        for (size_t i = 0; i < sizeof categories / sizeof categories[0]; i++) {
            reply_bulk_str(x->out, categories[i]);
        }
        return;
    }
    const struct resp_arg *c = &x->argv[2];
    const char *found = NULL;
    for (size_t i = 0; i < sizeof categories / sizeof categories[0] && found == NULL; i++) {
        if (strlen(categories[i]) == c->len && strncasecmp(categories[i], c->ptr, c->len) == 0) {
            found = categories[i];
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

static void getuser(struct cmd_ctx *x)
{
    if (!is_default(&x->argv[2])) {
        reply_null(x->out);
        return;
    }
    char hash[KV_SHA256_HEX + 1];
    const char *h = password_hash(hash);
    reply_map(x->out, 6);
    reply_bulk_str(x->out, "flags");
    reply_set(x->out, h != NULL ? 1 : 2);
    reply_bulk_str(x->out, "on");
    if (h == NULL) {
        reply_bulk_str(x->out, "nopass");
    }
    reply_bulk_str(x->out, "passwords");
    reply_array(x->out, h != NULL ? 1 : 0);
    if (h != NULL) {
        reply_bulk_str(x->out, h + 1);
    }
    reply_bulk_str(x->out, "commands");
    reply_bulk_str(x->out, "+@all");
    reply_bulk_str(x->out, "keys");
    reply_bulk_str(x->out, "~*");
    reply_bulk_str(x->out, "channels");
    reply_bulk_str(x->out, "&*");
    reply_bulk_str(x->out, "selectors");
    reply_array(x->out, 0);
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

static void dryrun(struct cmd_ctx *x)
{
    if (!is_default(&x->argv[2])) {
        reply_error(x->out, "ERR User '%.*s' not found",
                    (int)(x->argv[2].len > 64 ? 64 : x->argv[2].len), x->argv[2].ptr);
        return;
    }
    const struct cmd_desc *d = cmd_lookup(x->argv[3].ptr, x->argv[3].len);
    if (d == NULL) {
        reply_error(x->out, "ERR Command '%.*s' not found",
                    (int)(x->argv[3].len > 64 ? 64 : x->argv[3].len), x->argv[3].ptr);
        return;
    }
    if (!cmd_arity_ok(d, x->argc - 3)) {
        reply_error(x->out, "ERR wrong number of arguments for '%s' command", d->name);
        return;
    }
    reply_ok(x->out); /* the default user may run everything */
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
        reply_bulk_str(x->out, "default");
    } else if (cmd_arg_is(sub, "users") && argc == 2) {
        reply_array(x->out, 1);
        reply_bulk_str(x->out, "default");
    } else if (cmd_arg_is(sub, "list") && argc == 2) {
        char hash[KV_SHA256_HEX + 1], line[160];
        const char *h = password_hash(hash);
        snprintf(line, sizeof line, "user default on %s ~* &* +@all", h != NULL ? h : "nopass");
        reply_array(x->out, 1);
        reply_bulk_str(x->out, line);
    } else if (cmd_arg_is(sub, "getuser") && argc == 3) {
        getuser(x);
    } else if (cmd_arg_is(sub, "cat") && argc <= 3) {
        cat(x);
    } else if (cmd_arg_is(sub, "genpass") && argc <= 3) {
        genpass(x);
    } else if (cmd_arg_is(sub, "dryrun") && argc >= 4) {
        dryrun(x);
    } else if (cmd_arg_is(sub, "log") && argc <= 3) {
        int64_t count;
        if (argc == 3 && cmd_arg_is(&x->argv[2], "reset")) {
            reply_ok(x->out);
        } else if (argc == 3 && !cmd_parse_i64(&x->argv[2], &count)) {
            reply_err_not_int(x->out);
        } else {
            reply_array(x->out, 0); /* kvd keeps no ACL log (no user can be denied) */
        }
    } else if (cmd_arg_is(sub, "deluser") && argc >= 3) {
        for (size_t i = 2; i < argc; i++) {
            if (is_default(&x->argv[i])) {
                reply_error(x->out, "ERR The 'default' user cannot be removed");
                return;
            }
        }
        reply_int(x->out, 0); /* no such users */
    } else if (cmd_arg_is(sub, "setuser") && argc >= 3) {
        reply_error(x->out, "ERR kvd has one user, 'default' (its password is requirepass): "
                            "ACL SETUSER is not supported");
    } else if ((cmd_arg_is(sub, "load") || cmd_arg_is(sub, "save")) && argc == 2) {
        reply_error(x->out,
                    "ERR This Redis instance is not configured to use an ACL file. You may want "
                    "to specify users via the ACL SETUSER command and then issue a CONFIG "
                    "REWRITE (assuming you have a Redis configuration file set) in order to "
                    "store users in the Redis configuration.");
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
