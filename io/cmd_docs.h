/*
 * cmd_docs: the metadata COMMAND INFO and COMMAND DOCS reply for each command kvd has,
 * as Redis 7.0.15 replies it: flags, ACL categories, tips, key specifications,
 * subcommands, and the documentation (summary, since, group, complexity, history,
 * arguments).
 *
 * The table (cmd_docs.c) is generated once by tools/gen_cmd_docs.py from a running
 * redis-server and checked in; the build does not need redis-server. Everything is
 * const static data: nothing is allocated, any thread may read it.
 *
 * Word lists (flags, categories, tips, key-spec flags, argument flags) are one string of
 * space-separated words in Redis's reply order, e.g. "RW access update"; NULL is none.
 * Fields the generator leaves out of an initializer are NULL or 0: absent.
 */
#ifndef KVD_CMD_DOCS_H
#define KVD_CMD_DOCS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One key specification (Redis's keySpec). */
struct cmd_docs_keyspec {
    const char *notes;   /* NULL: none */
    const char *flags;   /* "RO access", ... */
    const char *keyword; /* begin_search by keyword; NULL: by index */
    int begin;           /* the index, or the keyword's startfrom */
    bool keynum;         /* find_keys by keynum; false: by range */
    int find[3];         /* range: lastkey, keystep, limit; keynum: keynumidx, firstkey, keystep */
};

/* One argument of a command's documentation (Redis's redisCommandArg). */
struct cmd_docs_arg {
    const char *name;
    const char *type;   /* "key", "string", "integer", "oneof", "block", ... */
    int key_spec_index; /* key arguments (type "key") only */
    const char *token;  /* NULL fields are left out of the reply */
    const char *summary;
    const char *since;
    const char *deprecated_since;
    const char *flags;               /* "optional multiple", or NULL */
    const struct cmd_docs_arg *args; /* oneof and block only */
    uint8_t nargs;
};

struct cmd_docs_history {
    const char *version;
    const char *text;
};

struct cmd_docs {
    const char *name; /* lower case; a subcommand's is "container|sub" */
    int arity;
    int first_key, last_key, key_step;
    const char *flags; /* "write denyoom", ... */
    const char *acl;   /* "@write @string @slow", ... */
    const char *tips;  /* "nondeterministic_output", ... */
    const struct cmd_docs_keyspec *specs;
    uint8_t nspecs;
    /* documentation; NULL strings are left out of the reply */
    const char *summary;
    const char *since;
    const char *group;
    const char *complexity;
    const char *doc_flags; /* "deprecated", "syscmd", or NULL */
    const char *deprecated_since;
    const char *replaced_by;
    const struct cmd_docs_history *history;
    uint8_t nhistory;
    const struct cmd_docs_arg *args;
    uint8_t nargs;
    const struct cmd_docs *subs; /* the subcommands kvd implements, sorted by name */
    uint8_t nsubs;
};

/* Every top-level command with metadata, sorted by name. */
extern const struct cmd_docs cmd_docs_table[];
extern const size_t cmd_docs_count;

/* The entry of a top-level command by its lower-case name, or NULL. */
const struct cmd_docs *cmd_docs_find(const char *name);

/* Whether Redis 7.0 has a command of that name (any case), kvd or not: ACL rules may
 * name commands kvd lacks, as clients' tests and configurations written for Redis do. */
bool cmd_docs_redis_has(const char *name, size_t len);

/* The entry of a subcommand of `parent` by name (any case, without "parent|"), or NULL. */
const struct cmd_docs *cmd_docs_find_sub(const struct cmd_docs *parent, const char *name,
                                         size_t len);

#endif
