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
 * sha1hex / log / setresp (2 only) / set_repl / replicate_commands and the LOG_* and
 * REPL_* constants; globals are read-only and reading a missing one is an error. Replies
 * convert both ways with Redis's RESP2 rules; errors carry Redis's "script: <sha>, on
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

/* A shard's interpreter: freed with the shard (NULL until its first script). */
struct script_vm;
void script_vm_free(struct script_vm *vm);

/* Scripts in the registry (INFO memory number_of_cached_scripts). */
size_t script_count(void);

/* EVAL / EVALSHA's key count (argv[2] of argc arguments): NULL with *numkeys set, or
 * Redis's error text. */
const char *script_numkeys(size_t argc, const struct resp_arg *argv, size_t *numkeys);

#endif
