/*
 * script: Lua scripting as Redis 7.0 has it (EVAL, EVALSHA, EVAL_RO, EVALSHA_RO, SCRIPT).
 *
 * Lua 5.1 (Debian's liblua5.1), one interpreter per shard thread, made at its first
 * script. Scripts are functions compiled once per shard and kept by their SHA-1; the
 * server-wide registry (sha -> source, a mutex taken only when a shard meets a script
 * it has not compiled yet, and by SCRIPT) lets EVALSHA find on any shard a script
 * loaded on another. SCRIPT FLUSH empties the registry and bumps its generation; each
 * shard drops its interpreter when it sees a newer generation.
 *
 * The environment is Redis's: base (without dofile and loadfile), table, string, math,
 * cjson and bit; KEYS and ARGV; redis.call / pcall / error_reply / status_reply /
 * sha1hex / log / setresp / set_repl / replicate_commands / acl_check_cmd and the LOG_* and
 * REPL_* constants; globals are read-only and reading a missing one is an error. Replies
 * convert both ways with Redis's rules (RESP3 after redis.setresp(3), typed tables such
 * as {map = ...} returned in the client's protocol); errors carry Redis's "script: <sha>, on
 * @user_script:<line>." suffix. A script runs to its end: kvd has no script timeout
 * (SCRIPT KILL always answers NOTBUSY), so a script that loops forever holds its shard.
 *
 * Where a script runs is the connection's business (conn.c): on the shard owning all its
 * declared keys, or, with no declared keys or keys on several shards, on the client's
 * shard as a cross-shard transaction (other shards parked as the script first touches
 * their keys). redis.call goes through conn_script_call, which knows which.
 *
 * Shard thread only, except the registry.
 */
#ifndef KVD_SCRIPT_H
#define KVD_SCRIPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct resp_arg;

/* The flags of the shebang line ("#!lua flags=no-writes") of the script EVAL / EVALSHA
 * (_RO) argv runs (EVALSHA's from the registry), or -1 if it has none (or an invalid one,
 * or is unknown). Takes the registry's mutex for EVALSHA. */
int64_t script_flags(size_t argc, const struct resp_arg *argv);

/* A shard's interpreter: freed with the shard (NULL until its first script). */
struct script_vm;
void script_vm_free(struct script_vm *vm);

/* SCRIPT KILL (functions false) / FUNCTION KILL (true): stops the running scripts of
 * that kind that have not written yet; replies +OK, -NOTBUSY or -UNKILLABLE. */
struct resp_out;
void script_kill(struct resp_out *out, bool functions);

/* FUNCTION STATS: whether an EVAL script has been running for more than a moment
 * (Redis's BUSY reply then), and its running_script: the function that has run longest
 * of those running for more than a moment (name, command, duration_ms), or null. */
bool script_eval_busy(void);

/* While a script runs past busy-reply-threshold: Redis's -BUSY text for the commands it
 * refuses (naming SCRIPT KILL while an EVAL script is one of them, else FUNCTION KILL);
 * NULL otherwise. Any thread. */
struct server;
const char *script_busy_text(struct server *srv);

/* Redis's -BUSY texts while an EVAL script runs, and while a function does. */
#define SCRIPT_BUSY_EVAL_TEXT                                                                      \
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
#define SCRIPT_BUSY_FN_TEXT                                                                        \
    "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
void script_running_reply(struct resp_out *out, int64_t now_ms);

/* Scripts in the registry and their memory (INFO memory). */
size_t script_count(size_t *bytes);

/* Publishes the interpreter's memory in sh's statistics (INFO used_memory_vm_*). */
struct shard;
void script_vm_publish(struct script_vm *vm, struct shard *sh);

/* EVAL / EVALSHA / FCALL's key count (argv[2] of argc arguments): NULL with *numkeys
 * set, or Redis's error text (that of the command argv[0]). */
const char *script_numkeys(size_t argc, const struct resp_arg *argv, size_t *numkeys);

/*
 * Functions (FCALL). A functions interpreter holds libraries: each library's code ran
 * once in it, at load, where its environment has only `redis` with register_function,
 * log, the LOG_* levels and REDIS_VERSION(_NUM) (any other name is an error, as in
 * Redis); the functions it registered then run with the scripts' environment (no KEYS
 * nor ARGV: they get (keys, args)). Function names are looked up in any case. func.c
 * keeps the server-wide set of libraries and makes a shard's interpreter from it.
 */
#define SCRIPT_LOAD_TIMEOUT_MS 500 /* a library's code runs at most this long (Redis's) */
#define SCRIPT_FN_FLAGS        5
enum script_fn_flag {
    SCRIPT_FN_NO_WRITES = 1u << 0,
    SCRIPT_FN_ALLOW_OOM = 1u << 1,
    SCRIPT_FN_ALLOW_STALE = 1u << 2,
    SCRIPT_FN_NO_CLUSTER = 1u << 3,
    SCRIPT_FN_ALLOW_CROSS_SLOT = 1u << 4,
};
extern const char *const script_fn_flag_names[SCRIPT_FN_FLAGS]; /* by bit, as Redis lists them */

/* Whether s[0..n) may name a library or a function: letters, digits, '_', at least one. */
bool script_valid_name(const char *s, size_t n);

/* A function a library registered; name and desc (NULL: none) are malloc()ed. */
struct script_fn_info {
    char *name;
    char *desc;
    uint32_t flags;
};
void script_fn_infos_free(struct script_fn_info *fns, size_t n);

/* A new functions interpreter, without libraries (freed by script_vm_free). */
struct script_vm *script_fvm_new(void);

/*
 * Runs library code[skip..len) (skip: its shebang line without the newline, so that
 * lines keep their numbers) in vm, adding its functions to vm's; `timed`: at most
 * SCRIPT_LOAD_TIMEOUT_MS (a new library; one that loaded before runs untimed). Two
 * functions of one library whose names differ only in case: the first is called, as in
 * Redis. True with *fns (*nfns
 * of them, in registration order) to free; false with Redis's error text (no '-') in
 * err: a compile error, an error raised while registering, the load timeout, or no
 * function registered. The caller checks names against other libraries.
 */
bool script_lib_load(struct script_vm *vm, const char *code, size_t len, size_t skip, bool timed,
                     struct script_fn_info **fns, size_t *nfns, char *err, size_t cap);

/* Forgets the functions of a library (those script_lib_load returned) in vm. */
void script_lib_unload(struct script_vm *vm, const struct script_fn_info *fns, size_t nfns);

/* Finds function `name` (any case) in vm: its flags, with it kept aside for the
 * script_fn_run or script_fn_forget that must follow; -1 if there is none (nothing kept). */
int64_t script_fn_find(struct script_vm *vm, const char *name, size_t len);
void script_fn_forget(struct script_vm *vm);

/* FCALL / FCALL_RO x: runs the function script_fn_find kept with x's numkeys keys and
 * the arguments after; writes its reply. */
struct cmd_ctx;
void script_fn_run(struct script_vm *vm, struct cmd_ctx *x, size_t numkeys);

/* DEBUG SET-DISABLE-DENY-SCRIPTS: scripts may call DEBUG (its subcommands that need no
 * connection), as Redis's tests of Lua's RESP3 conversions need. */
void script_set_deny_off(bool off);

#endif
