/*
 * func: Redis 7 functions. FUNCTION LOAD / DELETE / FLUSH / LIST / STATS / DUMP / RESTORE /
 * KILL / HELP, FCALL and FCALL_RO.
 *
 * The libraries form one server-wide set: an immutable, reference-counted list (sorted
 * by library name) replaced as a whole by each change, under a mutex that readers take
 * only to copy the pointer. A change (LOAD, DELETE, FLUSH, RESTORE) runs on the client's
 * shard: it checks the metadata line ("#!lua name=<lib>"), runs the new libraries' code
 * in a scratch interpreter to learn their functions (script.h), checks names against the
 * other libraries, writes the new set to disk, then publishes it and bumps the set's
 * generation (an atomic word). Each shard rebuilds its functions interpreter from the
 * set when FCALL finds the generation moved; otherwise FCALL takes no lock.
 *
 * Durability: with appendonly yes the set is written to "functions.kvf" in --dir (the
 * FUNCTION DUMP payload: Redis's RDB function records, version and CRC-64) through a
 * temporary file, fdatasync, rename and a directory fsync, before the change replies;
 * func_recover reads it at start-up. Changes are rare and written synchronously on the
 * shard that runs them. With appendonly no, a dump writes the file (dump.h), as Redis's
 * RDB holds the functions.
 *
 * Shard threads, except func_recover (main thread, before the shards start).
 */
#ifndef KVD_FUNC_H
#define KVD_FUNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FUNC_FILE "functions.kvf"

/* Loads dir/functions.kvf if there is one. 0, or -1 after printing why (a damaged
 * file: with repair it is moved aside to functions.kvf.bad and kvd starts without
 * functions, returning 0). */
int func_recover(const char *dir, bool repair);

/* The current set as FUNCTION DUMP's payload (malloc'ed: the caller frees it), and its
 * durable write to dir/functions.kvf (0 or an errno; no allocation: a dump's child
 * calls it). With appendonly no, dumps (dump.h) write the file, not the changes. */
uint8_t *func_dump_current(size_t *size);
int func_file_write(const char *dir, const uint8_t *p, size_t n);

/* Frees a shard's functions interpreter and its reference to the set (its thread, at
 * its end). */
struct shard;
void func_shard_free(struct shard *sh);

/* Frees the set (at exit, for leak checkers). */
void func_shutdown(void);

/* Libraries and functions in the set, and their memory (INFO memory). */
void func_counts(size_t *libraries, size_t *functions, size_t *bytes);

/* The flags (SCRIPT_FN_*) of function `name` (any case), or -1 if there is none (for
 * CLIENT PAUSE WRITE: no-writes lets FCALL through). Takes the set's mutex. */
int64_t func_flags(const char *name, size_t len);

/* (Handlers cmd_function and cmd_fcall, of FCALL and FCALL_RO: cmd.h.) */

#endif
