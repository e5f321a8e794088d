/*
 * users: ACL users, as Redis 7 has them: who a connection is, and which commands, keys
 * and channels it may use.
 *
 * A user is an immutable, reference-counted object; ACL SETUSER builds a changed copy
 * and swaps it in under the registry's mutex, and bumps a generation counter. A
 * connection names its user by a handle (slot and tag: a deleted user's handle never
 * names another), and each shard keeps a view (users_view) of the current objects, one
 * reference per slot, refreshed when the generation moved: a command pays one relaxed
 * load of the generation, and a user allowed everything (the default user as shipped)
 * pays no check at all.
 *
 * The permission model is Redis 7.0's: a root selector and further selectors in
 * parentheses, each with a command bitmap (rows of cmd_stat_row: a command or a
 * container's subcommand), allowed first arguments (+select|0), key patterns with
 * read/write flags (~p, %R~p, %W~p, %RW~p) matched against the keys the command's key
 * specifications find, and channel patterns (&p). A command passes if one selector
 * passes it whole.
 */
#ifndef KVD_USERS_H
#define KVD_USERS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cmd_desc;
struct resp_arg;
struct resp_out;

#define USERS_SLOTS_MAX 65535u /* users at most (a handle holds a 16-bit slot) */
#define USERS_DEFAULT   0u     /* the default user's handle: slot 0, tag 0 */

/* Why a command was refused, as Redis's ACL_DENIED_*: the larger, the more specific. */
enum users_denied {
    USERS_OK = 0,
    USERS_DENIED_CMD = 1,
    USERS_DENIED_KEY = 2,
    USERS_DENIED_AUTH = 3,
    USERS_DENIED_CHANNEL = 4,
};

/* Where the refused command ran, for ACL LOG's "context". */
enum users_ctx {
    USERS_CTX_TOPLEVEL,
    USERS_CTX_MULTI,
    USERS_CTX_LUA,
};

struct user;

/* A "user" directive of the config file (lineno > 0) or of a --user flag (lineno 0),
 * split as Redis splits config lines (quotes and escapes, kv_splitargs): argv[0] is the
 * name, then come its rules (argc >= 1). */
struct users_conf_line {
    const struct resp_arg *argv;
    size_t argc;
    int lineno;
};

/* Redis's check of a "user" directive when the config is read (ACLAppendUserForLoading):
 * its rules applied to a scratch user, unknown commands and categories let through
 * (users_init reports those, as Redis when it loads the users). 0, or -1 with Redis's
 * "Error in user declaration 'rule': reason" in err. Before the shard threads start. */
int users_conf_check(const struct resp_arg *argv, size_t argc, char *err, size_t errcap);

/* Creates the default user ("on", every permission; nopass, or requirepass as its one
 * password), then the users of the config's "user" directives (conf: nconf of them, from
 * the file conf_path or flags) or of `aclfile` when it is not empty (not both, as Redis).
 * 0, or -1 with the reason in err: for a directive, as kvd reports a bad config line
 * ("config: PATH:LINE: " or "--user: ", then Redis's text). */
int users_init(const char *requirepass, const char *aclfile, const struct users_conf_line *conf,
               size_t nconf, const char *conf_path, char *err, size_t errcap);

/* The generation: bumped by every change of any user. */
extern _Atomic uint64_t users_gen;

static inline uint64_t users_generation(void)
{
    return atomic_load_explicit(&users_gen, memory_order_acquire);
}

/* A shard's view of the current users: only its own thread uses it. */
struct users_view {
    uint64_t gen;
    uint32_t n;
    struct user **v; /* by slot; a reference each */
};

/* Brings the view up to the current generation (locks the registry once). */
void users_view_refresh(struct users_view *w);
void users_view_free(struct users_view *w);

/* The user a handle names in the view, or NULL if it was deleted. The object stays
 * valid until the view's next refresh. */
const struct user *users_view_get(const struct users_view *w, uint32_t handle);

/* The user's name, NUL-terminated (names hold no NUL or space). */
const char *user_name(const struct user *u);

/* Whether the user may run everything on every key and channel (no checks needed). */
bool user_unrestricted(const struct user *u);

/* Whether a connection of this user is authenticated without AUTH ("on" and nopass). */
bool user_open(const struct user *u);

/* Whether one of the user's selectors allows a subscription to the channel (a pattern
 * must be allowed literally), as Redis's ACLUserCheckChannelPerm. */
bool user_may_hear(const struct user *u, const char *ch, size_t n, bool pattern);

/* Checks a command for the user. USERS_OK, or why not, with the argument index of the
 * refused key or channel in *pos (0 for the command itself). */
enum users_denied user_check(const struct user *u, const struct cmd_desc *d, size_t argc,
                             const struct resp_arg *argv, size_t *pos);

/* The NOPERM text of a refusal ("this user has no permissions to run the 'get'
 * command"); dryrun: DRYRUN's capitalised form with the key or channel named. */
void users_denied_text(enum users_denied why, const struct cmd_desc *d, size_t argc,
                       const struct resp_arg *argv, size_t pos, bool dryrun, char *buf, size_t cap);

/* AUTH: the handle of an enabled user whose password matches (constant-time compare of
 * hashes), or false. */
bool users_auth(const char *name, size_t nlen, const char *pass, size_t plen, uint32_t *handle);

/* Whether the default user is "on" with nopass (new connections need no AUTH), and
 * whether it is nopass (AUTH <password> alone is then an error, as in Redis). */
bool users_default_open(void);
bool users_default_nopass(void);

/* Whether a user of that name exists (CLIENT KILL USER). */
bool users_exists(const char *name, size_t n);

/* The ACL categories, in Redis's order (ACL CAT). */
extern const char *const users_categories[];
extern const size_t users_ncategories;

/* CONFIG SET requirepass: the default user's passwords become this one (none: nopass). */
void users_set_requirepass(const char *pass);
/* CONFIG GET requirepass: the last one set (copied into buf). */
void users_requirepass(char *buf, size_t cap);

/* ACL LOG: one refusal. `object` is the command name, key or channel, client_info the
 * CLIENT LIST line of the client (without its newline). */
void users_log(enum users_denied why, enum users_ctx ctx, const char *object, size_t olen,
               const char *username, size_t ulen, const char *client_info);

/* CONFIG REWRITE: every user as a config file line ("user name rules...\n"), in name
 * order, as one malloc'ed string; NULL when users come from an aclfile (they are not
 * the config file's). */
char *users_conf_lines(void);

/* ACL <subcommand> (acl.c calls these; each replies). */
void users_cmd_setuser(struct resp_out *o, const struct resp_arg *argv, size_t argc);
void users_cmd_getuser(struct resp_out *o, const struct resp_arg *name);
void users_cmd_deluser(struct resp_out *o, const struct resp_arg *argv, size_t argc);
void users_cmd_users(struct resp_out *o);
void users_cmd_list(struct resp_out *o);
void users_cmd_log(struct resp_out *o, int64_t count, bool reset);
void users_cmd_dryrun(struct resp_out *o, const struct resp_arg *argv, size_t argc);
void users_cmd_load(struct resp_out *o);
void users_cmd_save(struct resp_out *o);

#endif
