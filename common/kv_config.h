/*
 * kv_config: named settings, set from defaults, a redis.conf-style file, command-line
 * flags (`--name value`) and CONFIG SET, in that order of precedence (later wins).
 *
 * A program describes its settings once, as a table of kv_conf_item, each pointing at
 * the variable that holds it. Numeric kinds (int, bytes, bool, enum) are stored in an
 * `_Atomic int64_t` so that a setting marked KV_CONF_RUNTIME can be changed by one
 * thread while others read it (relaxed loads: a reader sees the old or the new value).
 * Strings are fixed-capacity buffers owned by the caller and are never changed at run
 * time. Nothing here allocates.
 *
 * Value syntax is Redis's: integers, sizes with k/kb/m/mb/g/gb suffixes (k = 1000,
 * kb = 1024), booleans yes/no, enums by name, strings optionally "quoted".
 */
#ifndef KV_CONFIG_H
#define KV_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum kv_conf_type {
    KV_CONF_INT,    /* integer in [min, max] */
    KV_CONF_BYTES,  /* size with unit suffix in [min, max] */
    KV_CONF_BOOL,   /* yes / no */
    KV_CONF_ENUM,   /* one of `choices`, stored as its index */
    KV_CONF_STRING, /* text up to str_cap - 1 bytes */
    KV_CONF_CUSTOM, /* a number with its own text form: `parse` and `format` */
};

#define KV_CONF_RUNTIME 1u /* CONFIG SET may change it while the server runs */
/* STRING: lines of one config file add up, space-separated, as redis.conf's "save" lines
 * (an empty value clears what came before) */
#define KV_CONF_LIST 2u
/* Accepted so that a redis.conf loads (and CONFIG GET/SET answer as Redis), with no
 * effect on this program: --help lists these apart. */
#define KV_CONF_COMPAT 4u
/* Not changed at run time, but a CONFIG SET to the value it has (as CONFIG GET shows it)
 * succeeds and does nothing: settings Redis has not, or may change at run time, so that a
 * tool writing back every setting CONFIG GET lists does not fail on them (Redis's own
 * immutable settings keep its error). */
#define KV_CONF_SAME 8u

struct kv_conf_item {
    const char *name; /* lower case, Redis's name where Redis has the setting */
    enum kv_conf_type type;
    unsigned flags;
    const char *def; /* the default, as text: what --help prints */
    int64_t min, max;
    const char *const *choices; /* ENUM: NULL-terminated list of names */
    const char *help;           /* one line for --help */
    _Atomic int64_t *num;       /* INT, BYTES, BOOL, ENUM */
    char *str;                  /* STRING */
    size_t str_cap;             /* STRING: capacity of str, including the NUL */
    /* CUSTOM: the value of a text (< 0: invalid, with the reason in err) and back */
    int64_t (*parse)(const char *value, char *err, size_t errlen);
    size_t (*format)(int64_t v, char *buf, size_t cap);
};

/* A relaxed read of a numeric setting. */
#define KV_CONF_GET(var) atomic_load_explicit(&(var), memory_order_relaxed)

/* Finds a setting by name, case-insensitively; NULL if there is none. */
const struct kv_conf_item *kv_conf_find(const struct kv_conf_item *items, size_t n,
                                        const char *name);

/* Applies every item's default. Returns 0, or KV_EINVAL if a default fails to parse
 * (a programming error: the message names it). */
int kv_conf_defaults(const struct kv_conf_item *items, size_t n, char *err, size_t errlen);

/*
 * Parses `value` and stores it in `item`. `at_runtime` rejects items without
 * KV_CONF_RUNTIME. Returns 0, or KV_EINVAL with a Redis-style reason in err
 * (e.g. "argument couldn't be parsed into an integer").
 */
int kv_conf_set(const struct kv_conf_item *item, const char *value, bool at_runtime, char *err,
                size_t errlen);

/* Formats the current value as CONFIG GET shows it. Returns its length (cut to cap-1).
 * A text setting is copied in (kv_conf_set) and out (here) under one lock, so a thread
 * may read one that CONFIG SET changes on another. */
size_t kv_conf_format(const struct kv_conf_item *item, char *buf, size_t cap);

/*
 * Loads a redis.conf-style file: one `name value` per line, `#` comments, blank lines,
 * values optionally in double quotes. Returns 0, -errno if the file cannot be read, or
 * KV_EINVAL with "path:line: reason" in err.
 */
int kv_conf_load_file(const struct kv_conf_item *items, size_t n, const char *path, char *err,
                      size_t errlen);

/*
 * The same, with a handler for the directives that are no setting (redis.conf's "user
 * name rules..."): it gets the line without its newline and its number, and returns 0,
 * or KV_EINVAL with the reason in err. Without a handler (NULL) they are errors.
 */
typedef int kv_conf_other_fn(void *arg, const char *line, int lineno, char *err, size_t errlen);

/* "include PATH" lines (either loader) read PATH there, or every file a pattern with
 * * ? [ matches (none: nothing, as Redis's), nested at most this deep. Lines of a
 * KV_CONF_LIST setting add up across the files. Errors name the included file. */
#define KV_CONF_INCLUDE_DEPTH_MAX 16
int kv_conf_load_file_ex(const struct kv_conf_item *items, size_t n, const char *path,
                         kv_conf_other_fn *other, void *arg, char *err, size_t errlen);

/*
 * CONFIG REWRITE's text, as Redis's: `old` (the file as it is, NUL-terminated; "" for
 * none) with each setting's first line replaced by its current value (value(), e.g.
 * kv_conf_format) and its later lines dropped; comments, blank lines and unknown lines
 * kept where they are. The lines of the `other` directive (e.g. "user"), when
 * other_lines is not NULL, are replaced by other_lines (whole lines, each ending in
 * '\n') at the place of the first one. Then, after one "# Generated by CONFIG REWRITE"
 * line (unless `old` has it), the settings the file lacks whose values differ from their
 * defaults, in table order, and other_lines if the file had none of them. Values are
 * written as the loader reads them ("quoted" when empty or holding spaces, quotes, '#'
 * or backslashes). Appends to *out (kv_buf.h). Returns 0, or KV_EINVAL with the reason
 * in err when a value cannot be written (a line break in it).
 */
struct kv_buf;
typedef size_t kv_conf_value_fn(const struct kv_conf_item *item, char *buf, size_t cap);
int kv_conf_rewrite_text(const struct kv_conf_item *items, size_t n, kv_conf_value_fn *value,
                         const char *old, const char *other, const char *other_lines,
                         struct kv_buf *out, char *err, size_t errlen);

/*
 * Applies `--name value` pairs from argv[first..argc). `--name=value` is accepted too.
 * `skip` names flags the caller handles itself (e.g. "config"), NULL-terminated; they
 * are consumed with their value and ignored here. Returns 0 or KV_EINVAL with reason.
 */
int kv_conf_parse_args(const struct kv_conf_item *items, size_t n, int argc, char **argv, int first,
                       const char *const *skip, char *err, size_t errlen);

/*
 * The same, with redis-server's command line: a flag's value is every argument after it
 * up to the next --flag, joined by single spaces ("--save 900 1" is "save 900 1"); a
 * "--save" with no value before a flag or at the end is save "". A flag that is no
 * setting goes to `other` (as kv_conf_load_file_ex's) as the line "name arg...", each
 * argument quoted as kv_splitargs reads it back, with line number 0.
 */
int kv_conf_parse_args_ex(const struct kv_conf_item *items, size_t n, int argc, char **argv,
                          int first, const char *const *skip, kv_conf_other_fn *other, void *arg,
                          char *err, size_t errlen);

/* Parses a Redis memory size ("10", "1k", "2kb", "3mb", "1gb"). Returns 0 or KV_EINVAL. */
int kv_conf_parse_bytes(const char *s, int64_t *out);

#endif
