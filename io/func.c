/*
 * func: see func.h.
 */
#include "func.h"

#include "cmd.h"
#include "evict.h"
#include "kv_assert.h"
#include "kv_file.h"
#include "kv_config.h"
#include "kv_glob.h"
#include "kv_limits.h"
#include "kv_log.h"
#include "kv_splitargs.h"
#include "kvd_settings.h"
#include "rdbstr.h"
#include "reply.h"
#include "resp_parse.h"
#include "script.h"
#include "server.h"

#include <ctype.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define FUNC_OPCODE  245 /* Redis's RDB_OPCODE_FUNCTION2: a library's code follows */
#define FUNC_ERR_MAX 1200

/* ---- the set of libraries ------------------------------------------------------------ */

struct func_lib {
    _Atomic int refs;
    char *name; /* as its metadata line gives it (case counts) */
    char *code; /* the whole code, metadata line included */
    size_t len;
    size_t skip; /* the metadata line's length */
    size_t nfns;
    struct script_fn_info *fns; /* in registration order */
};

struct func_set {
    _Atomic int refs;
    uint64_t gen;
    size_t nlibs, nfns;
    struct func_lib *libs[]; /* by name */
};

static struct func_set empty_set = {.refs = 2, .gen = 1};  /* one reference never dropped */
static pthread_mutex_t set_mu = PTHREAD_MUTEX_INITIALIZER; /* cur, its references */
static struct func_set *cur = &empty_set;
static _Atomic uint64_t cur_gen = 1;                          /* cur->gen */
static pthread_mutex_t change_mu = PTHREAD_MUTEX_INITIALIZER; /* one change at a time */

static void lib_put(struct func_lib *l)
{
    if (atomic_fetch_sub(&l->refs, 1) == 1) {
        free(l->name);
        free(l->code);
        script_fn_infos_free(l->fns, l->nfns);
        free(l);
    }
}

static struct func_set *set_get(void)
{
    pthread_mutex_lock(&set_mu);
    struct func_set *s = cur;
    atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&set_mu);
    return s;
}

static void set_put(struct func_set *s)
{
    if (atomic_fetch_sub(&s->refs, 1) == 1) {
        KV_ASSERT(s != &empty_set);
        for (size_t i = 0; i < s->nlibs; i++) {
            lib_put(s->libs[i]);
        }
        free(s);
    }
}

void func_counts(size_t *libraries, size_t *functions, size_t *bytes)
{
    struct func_set *s = set_get();
    *libraries = s->nlibs;
    *functions = s->nfns;
    *bytes = 0;
    for (size_t i = 0; i < s->nlibs; i++) {
        const struct func_lib *l = s->libs[i];
        *bytes += sizeof *l + strlen(l->name) + 1 + l->len + l->nfns * sizeof l->fns[0];
        for (size_t k = 0; k < l->nfns; k++) {
            *bytes +=
                strlen(l->fns[k].name) + 1 + (l->fns[k].desc ? strlen(l->fns[k].desc) + 1 : 0);
        }
    }
    set_put(s);
}

int64_t func_flags(const char *name, size_t len)
{
    struct func_set *s = set_get();
    int64_t flags = -1;
    for (size_t i = 0; flags < 0 && i < s->nlibs; i++) {
        const struct func_lib *l = s->libs[i];
        for (size_t k = 0; flags < 0 && k < l->nfns; k++) { /* the first, as FCALL finds */
            if (strlen(l->fns[k].name) == len && strncasecmp(l->fns[k].name, name, len) == 0) {
                flags = l->fns[k].flags;
            }
        }
    }
    set_put(s);
    return flags;
}

void func_shutdown(void)
{
    pthread_mutex_lock(&set_mu);
    struct func_set *s = cur;
    cur = &empty_set;
    atomic_fetch_add(&empty_set.refs, 1);
    pthread_mutex_unlock(&set_mu);
    set_put(s);
}

/* ---- a library's metadata line: "#!<engine> name=<name>" ----------------------------- */

/*
 * Reads the metadata line of code[0..len): the library's name (malloc()ed, into *name)
 * and the line's length (*skip). False with Redis's error text in err, checked in
 * Redis's order.
 */
static bool parse_meta(const char *code, size_t len, char **name, size_t *skip, char *err,
                       size_t cap)
{
    *name = NULL;
    if (len < 2 || memcmp(code, "#!", 2) != 0) {
        snprintf(err, cap, "ERR Missing library metadata");
        return false;
    }
    const char *nl = memchr(code, '\n', strnlen(code, len)); /* a NUL ends it, as in Redis */
    if (nl == NULL) {
        snprintf(err, cap, "ERR Invalid library metadata");
        return false;
    }
    *skip = (size_t)(nl - code);
    size_t n = *skip, name_len = 0;
    char *buf = malloc(n + 1), *engine = malloc(n + 1);
    KV_ASSERT(buf != NULL && engine != NULL);
    size_t i = 0, olen = 0, count = 0;
    int r;
    while ((r = kv_splitargs_next(code, n, &i, buf, &olen)) == 1) {
        count++;
    }
    bool ok = false;
    if (r < 0 || count == 0) {
        snprintf(err, cap, "ERR Invalid library metadata");
        goto out;
    }
    i = 0;
    kv_splitargs_next(code, n, &i, buf, &olen);
    size_t elen = olen >= 2 ? olen - 2 : 0;
    memcpy(engine, buf + (olen >= 2 ? 2 : olen), elen);
    engine[elen] = '\0';
    while (kv_splitargs_next(code, n, &i, buf, &olen) == 1) {
        buf[olen] = '\0';
        if (olen >= 5 && strncasecmp(buf, "name=", 5) == 0) {
            if (*name != NULL) {
                snprintf(err, cap,
                         "ERR Invalid metadata value, name argument was given multiple "
                         "times");
                goto out;
            }
            name_len = olen - 5; /* (a quoted \x00 stays in it: an invalid name) */
            *name = malloc(name_len + 1);
            KV_ASSERT(*name != NULL);
            memcpy(*name, buf + 5, name_len);
            (*name)[name_len] = '\0';
            continue;
        }
        snprintf(err, cap, "ERR Invalid metadata value given: %s", buf);
        goto out;
    }
    if (*name == NULL) {
        snprintf(err, cap, "ERR Library name was not given");
    } else if (!script_valid_name(*name, name_len)) {
        snprintf(err, cap,
                 "ERR Library names can only contain letters, numbers, or "
                 "underscores(_) and must be at least one character long");
    } else if (strcasecmp(engine, "lua") != 0) {
        snprintf(err, cap, "ERR Engine '%s' not found", engine);
    } else {
        ok = true;
    }
out:
    if (!ok) {
        free(*name);
        *name = NULL;
    }
    free(buf);
    free(engine);
    return ok;
}

/* ---- changes ----------------------------------------------------------------------- */

/* A set being built: its libraries (each holding a reference), by name. */
struct change {
    struct func_lib **libs;
    size_t n, cap;
};

static void change_init(struct change *c, const struct func_set *from)
{
    c->n = from != NULL ? from->nlibs : 0;
    c->cap = c->n + 4;
    c->libs = malloc(c->cap * sizeof *c->libs);
    KV_ASSERT(c->libs != NULL);
    for (size_t i = 0; i < c->n; i++) {
        c->libs[i] = from->libs[i];
        atomic_fetch_add(&c->libs[i]->refs, 1);
    }
}

static void change_free(struct change *c)
{
    for (size_t i = 0; i < c->n; i++) {
        lib_put(c->libs[i]);
    }
    free(c->libs);
}

/* The index of the library named name[0..len) (exact bytes) among libs[0..n), or
 * SIZE_MAX. */
static size_t lib_index(struct func_lib *const *libs, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        if (strlen(libs[i]->name) == len && memcmp(libs[i]->name, name, len) == 0) {
            return i;
        }
    }
    return SIZE_MAX;
}

static size_t change_find(const struct change *c, const char *name)
{
    return lib_index(c->libs, c->n, name, strlen(name));
}

static void change_remove(struct change *c, size_t i)
{
    lib_put(c->libs[i]);
    memmove(&c->libs[i], &c->libs[i + 1], (c->n - i - 1) * sizeof *c->libs);
    c->n--;
}

/* Adds lib (taking the caller's reference), replacing a library of its name; false with
 * the error if one of its functions is another library's. */
static bool change_add(struct change *c, struct func_lib *lib, char *err, size_t cap)
{
    size_t at = change_find(c, lib->name);
    for (size_t i = 0; i < c->n; i++) {
        if (i == at) {
            continue;
        }
        for (size_t k = 0; k < c->libs[i]->nfns; k++) {
            for (size_t j = 0; j < lib->nfns; j++) {
                if (strcasecmp(c->libs[i]->fns[k].name, lib->fns[j].name) == 0) {
                    snprintf(err, cap, "ERR Function %s already exists", lib->fns[j].name);
                    lib_put(lib);
                    return false;
                }
            }
        }
    }
    if (at != SIZE_MAX) {
        change_remove(c, at);
    }
    if (c->n == c->cap) {
        c->cap *= 2;
        c->libs = realloc(c->libs, c->cap * sizeof *c->libs);
        KV_ASSERT(c->libs != NULL);
    }
    size_t pos = 0;
    while (pos < c->n && strcmp(c->libs[pos]->name, lib->name) < 0) {
        pos++;
    }
    memmove(&c->libs[pos + 1], &c->libs[pos], (c->n - pos) * sizeof *c->libs);
    c->libs[pos] = lib;
    c->n++;
    return true;
}

/* Runs code (its metadata line parsed: name, skip) in vm and makes it a library (one
 * reference, the caller's); NULL with the error. */
static struct func_lib *lib_make(struct script_vm *vm, const char *code, size_t len, char *name,
                                 size_t skip, bool timed, char *err, size_t cap)
{
    struct script_fn_info *fns;
    size_t nfns;
    if (!script_lib_load(vm, code, len, skip, timed, &fns, &nfns, err, cap)) {
        free(name);
        return NULL;
    }
    struct func_lib *l = calloc(1, sizeof *l);
    KV_ASSERT(l != NULL);
    atomic_init(&l->refs, 1);
    l->name = name;
    l->code = malloc(len ? len : 1);
    KV_ASSERT(l->code != NULL);
    memcpy(l->code, code, len);
    l->len = len;
    l->skip = skip;
    l->fns = fns;
    l->nfns = nfns;
    return l;
}

/* The FUNCTION DUMP payload of libraries libs[0..n) (malloc()ed, *size bytes). */
static uint8_t *dump(struct func_lib *const *libs, size_t n, size_t *size)
{
    size_t total = RDBSTR_TAIL;
    for (size_t i = 0; i < n; i++) {
        total += 1 + RDBSTR_HEAD_MAX + libs[i]->len;
    }
    uint8_t *p = malloc(total);
    KV_ASSERT(p != NULL);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        p[o++] = FUNC_OPCODE;
        o += rdbstr_put_len(p + o, libs[i]->len);
        memcpy(p + o, libs[i]->code, libs[i]->len);
        o += libs[i]->len;
    }
    rdbstr_dump_tail(rdbstr_crc64(0, p, o), p + o);
    *size = o + RDBSTR_TAIL;
    return p;
}

/* Writes the payload to dir/FUNC_FILE durably (kv_file_replace). 0 or an errno. */
static int write_file(const char *dir, const uint8_t *p, size_t n)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, FUNC_FILE);
    return kv_file_replace(path, p, n);
}

uint8_t *func_dump_current(size_t *size)
{
    struct func_set *set = set_get();
    uint8_t *p = dump(set->libs, set->nlibs, size);
    set_put(set);
    return p;
}

int func_file_write(const char *dir, const uint8_t *p, size_t n)
{
    return write_file(dir, p, n);
}

/* Makes the change the set (written first when persist), ending it. Change_mu held. */
static bool publish(struct change *c, bool persist, char *err, size_t cap)
{
    if (persist) {
        size_t n;
        uint8_t *p = dump(c->libs, c->n, &n);
        int e = write_file(kvd_settings.dir, p, n);
        free(p);
        if (e != 0) {
            snprintf(err, cap, "ERR Error saving the functions to %s/%s: %s", kvd_settings.dir,
                     FUNC_FILE, strerror(e));
            kv_log_warning("cannot save functions: %s", strerror(e));
            change_free(c);
            return false;
        }
    }
    struct func_set *s = malloc(sizeof *s + c->n * sizeof s->libs[0]);
    KV_ASSERT(s != NULL);
    atomic_init(&s->refs, 1);
    s->nlibs = c->n;
    s->nfns = 0;
    for (size_t i = 0; i < c->n; i++) {
        s->libs[i] = c->libs[i]; /* the change's references move to the set */
        s->nfns += c->libs[i]->nfns;
    }
    free(c->libs);
    pthread_mutex_lock(&set_mu);
    struct func_set *old = cur;
    s->gen = old->gen + 1;
    cur = s;
    atomic_store_explicit(&cur_gen, s->gen, memory_order_release);
    pthread_mutex_unlock(&set_mu);
    set_put(old);
    return true;
}

/* Ends a change begun under change_mu: published when ok (else dropped), the lock
 * released; whether it took effect (else err says why). */
static bool change_end(struct change *c, bool ok, bool persist, char *err, size_t cap)
{
    if (ok) {
        ok = publish(c, persist, err, cap);
    } else {
        change_free(c);
    }
    pthread_mutex_unlock(&change_mu);
    return ok;
}

/* change_end on the command's shard; a change that took effect is one data change (INFO
 * rdb_changes_since_last_save, the save points), as Redis's dirty counter has it. */
static bool change_done(struct cmd_ctx *x, struct change *c, bool ok, char *err, size_t cap)
{
    ok = change_end(c, ok, x->sh->srv->persist, err, cap);
    if (ok) {
        cmd_count_changes(x->sh, 1);
    }
    return ok;
}

/* +OK, or the error of a change that did not take effect. */
static void reply_change(struct cmd_ctx *x, bool ok, const char *err)
{
    if (ok) {
        reply_ok(x->out);
    } else {
        reply_error(x->out, "%s", err);
    }
}

/* ---- FCALL ------------------------------------------------------------------------- */

static bool set_holds(const struct func_set *s, const struct func_lib *l)
{
    for (size_t i = 0; s != NULL && i < s->nlibs; i++) {
        if (s->libs[i] == l) {
            return true;
        }
    }
    return false;
}

/* The shard's functions interpreter, brought up to the set when it changed: the
 * libraries gone (or replaced) are forgotten, the new ones loaded (libraries are shared
 * between sets, so a library kept is the same object). Their code loaded before, so it
 * runs without the load timeout. */
static struct script_vm *fvm_get(struct shard *sh)
{
    uint64_t gen = atomic_load_explicit(&cur_gen, memory_order_acquire);
    if (sh->fvm != NULL && sh->fset != NULL && sh->fset->gen == gen) {
        return sh->fvm;
    }
    if (sh->fvm != NULL && sh->fset == NULL) { /* a load failed last time: start over */
        script_vm_free(sh->fvm);
        sh->fvm = NULL;
    }
    struct func_set *s = set_get(), *old = sh->fset;
    if (sh->fvm == NULL) {
        sh->fvm = script_fvm_new();
        old = NULL; /* (none loaded) */
    }
    bool failed = false;
    for (size_t i = 0; old != NULL && i < old->nlibs; i++) {
        if (!set_holds(s, old->libs[i])) {
            script_lib_unload(sh->fvm, old->libs[i]->fns, old->libs[i]->nfns);
        }
    }
    for (size_t i = 0; i < s->nlibs; i++) {
        const struct func_lib *l = s->libs[i];
        if (set_holds(old, l)) {
            continue;
        }
        struct script_fn_info *fns;
        size_t nfns;
        char err[FUNC_ERR_MAX];
        if (script_lib_load(sh->fvm, l->code, l->len, l->skip, false, &fns, &nfns, err,
                            sizeof err)) {
            script_fn_infos_free(fns, nfns);
        } else { /* it loaded before, and runs the same: only memory can fail it */
            kv_log_warning("function library %s not loaded on shard %u: %s", l->name, sh->id, err);
            failed = true;
        }
    }
    if (sh->fset != NULL) {
        set_put(sh->fset);
    }
    sh->fset = s;
    if (failed) { /* not adopted: the next FCALL loads everything again */
        set_put(s);
        sh->fset = NULL;
    }
    script_vm_publish(sh->fvm, sh);
    return sh->fvm;
}

void func_shard_free(struct shard *sh)
{
    script_vm_free(sh->fvm);
    sh->fvm = NULL;
    if (sh->fset != NULL) {
        set_put(sh->fset);
        sh->fset = NULL;
    }
}

void cmd_fcall(struct cmd_ctx *x)
{
    struct script_vm *vm = fvm_get(x->sh);
    int64_t flags = script_fn_find(vm, x->argv[1].ptr, x->argv[1].len);
    if (flags < 0) {
        reply_error(x->out, "ERR Function not found");
        return;
    }
    size_t numkeys;
    const char *err = script_numkeys(x->argc, x->argv, &numkeys);
    if (err == NULL && cmd_arg_is(&x->argv[0], "fcall_ro") && !(flags & SCRIPT_FN_NO_WRITES)) {
        err = "ERR Can not execute a script with write flag using *_ro command.";
    }
    if (err == NULL && !(flags & (SCRIPT_FN_NO_WRITES | SCRIPT_FN_ALLOW_OOM)) &&
        KV_CONF_GET(kvd_settings.maxmemory) != 0 && evict_refuses(x->sh)) {
        err = "OOM command not allowed when used memory > 'maxmemory'.";
    }
    if (err != NULL) {
        script_fn_forget(vm);
        reply_error(x->out, "%s", err);
        return;
    }
    script_fn_run(vm, x, numkeys);
}

/* ---- FUNCTION ---------------------------------------------------------------------- */

static void reply_lib(struct resp_out *o, const struct func_lib *l, bool code)
{
    reply_map(o, code ? 4 : 3);
    reply_bulk_str(o, "library_name");
    reply_bulk_str(o, l->name);
    reply_bulk_str(o, "engine");
    reply_bulk_str(o, "LUA");
    reply_bulk_str(o, "functions");
    reply_array(o, l->nfns);
    for (size_t i = 0; i < l->nfns; i++) {
        const struct script_fn_info *f = &l->fns[i];
        reply_map(o, 3);
        reply_bulk_str(o, "name");
        reply_bulk_str(o, f->name);
        reply_bulk_str(o, "description");
        if (f->desc != NULL) {
            reply_bulk_str(o, f->desc);
        } else {
            reply_null(o);
        }
        reply_bulk_str(o, "flags");
        reply_set(o, (size_t)__builtin_popcount(f->flags));
        for (int b = 0; b < SCRIPT_FN_FLAGS; b++) {
            if (f->flags & (1u << b)) {
                reply_simple(o, script_fn_flag_names[b]);
            }
        }
    }
    if (code) {
        reply_bulk_str(o, "library_code");
        reply_bulk(o, l->code, l->len);
    }
}

static void function_list(struct cmd_ctx *x)
{
    bool code = false;
    const struct resp_arg *pat = NULL;
    for (size_t i = 2; i < x->argc; i++) {
        const struct resp_arg *a = &x->argv[i];
        if (!code && cmd_arg_is(a, "withcode")) {
            code = true;
        } else if (pat == NULL && cmd_arg_is(a, "libraryname")) {
            if (i + 1 >= x->argc) {
                reply_error(x->out, "ERR library name argument was not given");
                return;
            }
            pat = &x->argv[++i];
        } else {
            reply_error(x->out, "ERR Unknown argument %.*s", (int)(a->len > 128 ? 128 : a->len),
                        a->ptr);
            return;
        }
    }
    struct func_set *s = set_get();
    size_t n = 0;
    for (size_t i = 0; i < s->nlibs; i++) {
        n += pat == NULL ||
             kv_glob_match(pat->ptr, pat->len, s->libs[i]->name, strlen(s->libs[i]->name), true);
    }
    reply_array(x->out, n);
    for (size_t i = 0; i < s->nlibs; i++) {
        if (pat == NULL ||
            kv_glob_match(pat->ptr, pat->len, s->libs[i]->name, strlen(s->libs[i]->name), true)) {
            reply_lib(x->out, s->libs[i], code);
        }
    }
    set_put(s);
}

/* FUNCTION LOAD, LOAD .. RESTORE and FLUSH write and LOAD / RESTORE may add memory:
 * refused over maxmemory when eviction cannot help, as Redis's denyoom commands are. */
static bool refused_oom(struct cmd_ctx *x)
{
    if (KV_CONF_GET(kvd_settings.maxmemory) != 0 && evict_refuses(x->sh)) {
        reply_error(x->out, "OOM command not allowed when used memory > 'maxmemory'.");
        return true;
    }
    return false;
}

static void function_load(struct cmd_ctx *x)
{
    if (refused_oom(x)) {
        return;
    }
    bool replace = false;
    for (size_t i = 2; i + 1 < x->argc; i++) {
        if (cmd_arg_is(&x->argv[i], "replace")) {
            replace = true;
        } else {
            reply_error(x->out, "ERR Unknown option given: %.*s",
                        (int)(x->argv[i].len > 128 ? 128 : x->argv[i].len), x->argv[i].ptr);
            return;
        }
    }
    const struct resp_arg *code = &x->argv[x->argc - 1];
    char err[FUNC_ERR_MAX], *name;
    size_t skip;
    if (!parse_meta(code->ptr, code->len, &name, &skip, err, sizeof err)) {
        reply_error(x->out, "%s", err);
        return;
    }
    struct func_set *s = set_get();
    bool exists = lib_index(s->libs, s->nlibs, name, strlen(name)) != SIZE_MAX;
    set_put(s);
    if (!replace && exists) { /* (Redis's check before the code runs) */
        reply_error(x->out, "ERR Library '%s' already exists", name);
        free(name);
        return;
    }
    /* The code runs (up to the load timeout) before the change lock is taken, so that
     * changes on other shards do not wait for it. */
    struct script_vm *vm = script_fvm_new();
    struct func_lib *l = lib_make(vm, code->ptr, code->len, name, skip, true, err, sizeof err);
    script_vm_free(vm);
    if (l == NULL) {
        reply_error(x->out, "%s", err);
        return;
    }
    char *lname = strdup(l->name);
    KV_ASSERT(lname != NULL);
    pthread_mutex_lock(&change_mu);
    struct change c;
    change_init(&c, cur); /* cur only changes under change_mu */
    bool ok;
    if (!replace && change_find(&c, l->name) != SIZE_MAX) { /* loaded meanwhile */
        snprintf(err, sizeof err, "ERR Library '%s' already exists", l->name);
        lib_put(l);
        ok = false;
    } else {
        ok = change_add(&c, l, err, sizeof err);
    }
    if (change_done(x, &c, ok, err, sizeof err)) {
        reply_bulk_str(x->out, lname);
    } else {
        reply_error(x->out, "%s", err);
    }
    free(lname);
}

static void function_delete(struct cmd_ctx *x)
{
    const struct resp_arg *a = &x->argv[2];
    char err[FUNC_ERR_MAX];
    pthread_mutex_lock(&change_mu);
    struct change c;
    change_init(&c, cur);
    size_t at = lib_index(c.libs, c.n, a->ptr, a->len);
    if (at == SIZE_MAX) {
        snprintf(err, sizeof err, "ERR Library not found");
    } else {
        change_remove(&c, at);
    }
    reply_change(x, change_done(x, &c, at != SIZE_MAX, err, sizeof err), err);
}

static void reply_sub_syntax(struct cmd_ctx *x)
{
    const struct resp_arg *a = &x->argv[1];
    reply_error(x->out,
                "ERR unknown subcommand or wrong number of arguments for '%.*s'. Try FUNCTION "
                "HELP.",
                (int)(a->len > 128 ? 128 : a->len), a->ptr);
}

static void function_flush(struct cmd_ctx *x)
{
    if (x->argc > 3) {
        reply_sub_syntax(x);
        return;
    }
    if (x->argc == 3 && !cmd_arg_is(&x->argv[2], "sync") && !cmd_arg_is(&x->argv[2], "async")) {
        reply_error(x->out, "ERR FUNCTION FLUSH only supports SYNC|ASYNC option");
        return;
    }
    char err[FUNC_ERR_MAX];
    pthread_mutex_lock(&change_mu);
    struct change c;
    change_init(&c, NULL);
    reply_change(x, change_done(x, &c, true, err, sizeof err), err);
}

enum restore_policy { RESTORE_APPEND, RESTORE_REPLACE, RESTORE_FLUSH };

/*
 * Reads the libraries of a FUNCTION DUMP payload into `fresh` (an empty change; one
 * name once, no function twice), running their code in vm (`timed` as a new library's
 * code is). False with the error (fresh is then to be dropped).
 */
static bool payload_load(struct change *fresh, const uint8_t *p, size_t n, struct script_vm *vm,
                         bool timed, char *err, size_t cap)
{
    if (!rdbstr_footer_ok(p, n)) {
        snprintf(err, cap, "ERR DUMP payload version or checksum are wrong");
        return false;
    }
    size_t end = n - RDBSTR_TAIL, at = 0;
    bool ok = true;
    while (ok && at < end) {
        if (p[at] != FUNC_OPCODE) {
            snprintf(err, cap, "ERR given type is not a function");
            return false;
        }
        const uint8_t *val;
        size_t len, need, next;
        enum rdbstr_result r = rdbstr_read_string(p, end, at + 1, KV_VALUE_BYTES_MAX, NULL, 0, &val,
                                                  &len, &need, &next);
        uint8_t *buf = NULL;
        if (r == RDBSTR_OK && need > 0) {
            buf = malloc(need);
            r = buf == NULL ? RDBSTR_BAD_DATA
                            : rdbstr_read_string(p, end, at + 1, KV_VALUE_BYTES_MAX, buf, need,
                                                 &val, &len, &need, &next);
        }
        if (r != RDBSTR_OK) {
            snprintf(err, cap, "ERR Failed loading library payload");
            free(buf);
            return false;
        }
        at = next;
        char *name;
        size_t skip;
        struct func_lib *l = NULL;
        if (parse_meta((const char *)val, len, &name, &skip, err, cap)) {
            if (change_find(fresh, name) != SIZE_MAX) {
                snprintf(err, cap, "ERR Library '%s' already exists", name);
                free(name);
            } else {
                l = lib_make(vm, (const char *)val, len, name, skip, timed, err, cap);
            }
        }
        free(buf);
        ok = l != NULL && change_add(fresh, l, err, cap);
    }
    return ok;
}

/*
 * Joins a payload's libraries (`fresh`, consumed) to c as Redis does: those of c with a
 * name of the payload's are refused (APPEND) or dropped (REPLACE; FLUSH came with c
 * empty), then function names are checked. False with the error (c is then to be
 * dropped).
 */
static bool payload_join(struct change *c, struct change *fresh, enum restore_policy policy,
                         char *err, size_t cap)
{
    bool ok = true;
    for (size_t i = 0; ok && i < fresh->n; i++) {
        size_t old = change_find(c, fresh->libs[i]->name);
        if (old != SIZE_MAX && policy == RESTORE_APPEND) {
            snprintf(err, cap, "ERR Library %s already exists", fresh->libs[i]->name);
            ok = false;
        } else if (old != SIZE_MAX) {
            change_remove(c, old);
        }
    }
    for (size_t i = 0; ok && i < fresh->n; i++) {
        atomic_fetch_add(&fresh->libs[i]->refs, 1); /* c's */
        ok = change_add(c, fresh->libs[i], err, cap);
    }
    change_free(fresh);
    return ok;
}

static void function_restore(struct cmd_ctx *x)
{
    if (x->argc > 4) {
        reply_sub_syntax(x);
        return;
    }
    if (refused_oom(x)) {
        return;
    }
    enum restore_policy policy = RESTORE_APPEND;
    if (x->argc == 4) {
        if (cmd_arg_is(&x->argv[3], "flush")) {
            policy = RESTORE_FLUSH;
        } else if (cmd_arg_is(&x->argv[3], "replace")) {
            policy = RESTORE_REPLACE;
        } else if (!cmd_arg_is(&x->argv[3], "append")) {
            reply_error(x->out, "ERR Wrong restore policy given, value should be either FLUSH, "
                                "APPEND or REPLACE.");
            return;
        }
    }
    char err[FUNC_ERR_MAX];
    struct change fresh; /* the payload's code runs before the change lock is taken */
    change_init(&fresh, NULL);
    struct script_vm *vm = script_fvm_new();
    bool ok = payload_load(&fresh, (const uint8_t *)x->argv[2].ptr, x->argv[2].len, vm, true, err,
                           sizeof err);
    script_vm_free(vm);
    if (!ok) {
        change_free(&fresh);
        reply_error(x->out, "%s", err);
        return;
    }
    pthread_mutex_lock(&change_mu);
    struct change c;
    change_init(&c, policy == RESTORE_FLUSH ? NULL : cur);
    ok = payload_join(&c, &fresh, policy, err, sizeof err);
    reply_change(x, change_done(x, &c, ok, err, sizeof err), err);
}

static void function_stats(struct cmd_ctx *x)
{
    if (script_eval_busy()) { /* as Redis while an EVAL script runs */
        reply_error(x->out, "%s", SCRIPT_BUSY_EVAL_TEXT);
        return;
    }
    size_t libs, fns, bytes;
    func_counts(&libs, &fns, &bytes);
    reply_map(x->out, 2);
    reply_bulk_str(x->out, "running_script");
    script_running_reply(x->out, x->now_ms);
    reply_bulk_str(x->out, "engines");
    reply_map(x->out, 1);
    reply_bulk_str(x->out, "LUA");
    reply_map(x->out, 2);
    reply_bulk_str(x->out, "libraries_count");
    reply_int(x->out, (int64_t)libs);
    reply_bulk_str(x->out, "functions_count");
    reply_int(x->out, (int64_t)fns);
}

static void function_dump(struct cmd_ctx *x)
{
    struct func_set *s = set_get();
    size_t n;
    uint8_t *p = dump(s->libs, s->nlibs, &n);
    set_put(s);
    reply_bulk(x->out, p, n);
    free(p);
}

static const char *const function_help[] = {
    "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Library description",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function.",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the libraries.",
    "    * SYNC: Synchronously flush the libraries.",
    "DUMP",
    "    Return a serialized payload representing the current libraries, can be restored using "
    "FUNCTION RESTORE command",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Restore the libraries represented by the given payload, it is possible to give a restore "
    "policy to",
    "    control how to handle existing libraries (default APPEND):",
    "    * FLUSH: delete all existing libraries.",
    "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, "
    "replace the old",
    "      libraries with the new libraries (notice that even on this option there is a chance "
    "of failure",
    "      in case of functions name collision with another library).",
    "HELP",
    "    Prints this help.",
};

void cmd_function(struct cmd_ctx *x)
{
    const struct resp_arg *sub = &x->argv[1];
    /* subcommand, handler, arity (negative: at least) */
    static const struct {
        const char *name;
        int arity;
        void (*fn)(struct cmd_ctx *x);
    } subs[] = {
        {"load", -3, function_load},
        {"delete", 3, function_delete},
        {"flush", -2, function_flush},
        {"list", -2, function_list},
        {"stats", 2, function_stats},
        {"dump", 2, function_dump},
        {"restore", -3, function_restore},
        {"kill", 2, NULL},
        {"help", 2, NULL},
    };
    for (size_t i = 0; i < KV_ARRAY_LEN(subs); i++) {
        if (!cmd_arg_is(sub, subs[i].name)) {
            continue;
        }
        int a = subs[i].arity;
        if ((a > 0 && x->argc != (size_t)a) || (a < 0 && x->argc < (size_t)-a)) {
            cmd_reply_sub_arity(x);
        } else if (subs[i].fn != NULL) {
            subs[i].fn(x);
        } else if (cmd_arg_is(sub, "kill")) {
            script_kill(x->out, true);
        } else {
            reply_lines(x->out, function_help, KV_ARRAY_LEN(function_help));
        }
        return;
    }
    cmd_reply_unknown_subcommand(x);
}

/* ---- start-up ---------------------------------------------------------------------- */

/* Removes what a writer killed mid-way left (kv_file_replace's "<file>.tmp-<pid>"; a
 * dump's child can be killed). */
static void remove_leftovers(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, FUNC_FILE ".tmp-", sizeof FUNC_FILE + 4) == 0) {
            unlinkat(dirfd(d), de->d_name, 0);
        }
    }
    closedir(d);
}

int func_recover(const char *dir, bool repair)
{
    remove_leftovers(dir);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, FUNC_FILE);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            return 0;
        }
        fprintf(stderr, "kvd: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct stat st;
    uint8_t *p = NULL;
    size_t n = 0;
    bool read_ok = fstat(fd, &st) == 0;
    int e = errno;
    if (read_ok) {
        n = (size_t)st.st_size;
        p = malloc(n ? n : 1);
        KV_ASSERT(p != NULL);
        for (size_t off = 0; read_ok && off < n;) {
            ssize_t r = read(fd, p + off, n - off);
            read_ok = r > 0 || (r < 0 && errno == EINTR);
            e = r == 0 ? EIO : errno; /* (it shrank under us) */
            off += r > 0 ? (size_t)r : 0;
        }
    }
    close(fd);
    if (!read_ok) {
        fprintf(stderr, "kvd: cannot read %s: %s\n", path, strerror(e));
        free(p);
        return -1;
    }
    char err[FUNC_ERR_MAX];
    struct change c;
    change_init(&c, NULL);
    struct script_vm *vm = script_fvm_new();
    bool ok = payload_load(&c, p, n, vm, false, err, sizeof err); /* (the set it was) */
    script_vm_free(vm);
    free(p);
    if (!ok) {
        change_free(&c);
        if (!repair) {
            fprintf(stderr,
                    "kvd: cannot start: %s is damaged (%s); --repair sets it aside as %s.bad "
                    "and starts without functions\n",
                    path, err, FUNC_FILE);
            return -1;
        }
        char bad[PATH_MAX + 8];
        snprintf(bad, sizeof bad, "%s.bad", path);
        if (rename(path, bad) != 0) {
            fprintf(stderr, "kvd: cannot move %s aside: %s\n", path, strerror(errno));
            return -1;
        }
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) != 0) {
            fprintf(stderr, "kvd: cannot sync %s: %s\n", dir, strerror(errno));
            if (dfd >= 0) {
                close(dfd);
            }
            return -1;
        }
        close(dfd);
        kv_log_warning("repair: %s is damaged (%s), moved to %s; no functions loaded", path, err,
                       bad);
        return 0;
    }
    size_t libs = c.n;
    pthread_mutex_lock(&change_mu);
    ok = publish(&c, false, err, sizeof err);
    pthread_mutex_unlock(&change_mu);
    KV_ASSERT(ok);
    if (libs > 0) {
        kv_log_notice("loaded %zu function libraries from %s", libs, path);
    }
    return 0;
}
