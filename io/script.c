/*
 * script: see script.h.
 */
#include "script.h"

#include "cmd.h"
#include "cmd_docs.h"
#include "conn.h"
#include "evict.h"
#include "kv_assert.h"
#include "kv_clock.h"
#include "kv_config.h"
#include "kv_log.h"
#include "kvd_settings.h"
#include "kv_sha1.h"
#include "kv_splitargs.h"
#include "luamp.h"
#include "luastruct.h"
#include "reply.h"
#include "resp_out.h"
#include "resp_parse.h"
#include "server.h"
#include "shard.h"
#include "track.h"
#include "users.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
/* after lua.h */
#include <lua-bitop.h>
#include <lua-cjson.h>

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>

#define SCRIPT_CHUNK      "@user_script"   /* the chunk name Redis 7 gives scripts */
#define FUNCTION_CHUNK    "@user_function" /* and libraries of functions */
#define SCRIPT_DEPTH_MAX  1000             /* nested tables converted into a reply */
#define SCRIPT_ARGV_STACK 16
#define REG_BUCKETS       1024 /* registry hash buckets (a power of two) */

/* ---- the server-wide registry: sha -> source --------------------------------------- */

struct reg_entry {
    struct reg_entry *next;
    char sha[KV_SHA1_HEX];
    size_t len;
    char body[];
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct reg_entry *reg[REG_BUCKETS];
static size_t reg_n;
static size_t reg_bytes;             /* the entries' memory */
static _Atomic uint64_t reg_gen = 1; /* bumped by SCRIPT FLUSH */

static size_t reg_bucket(const char *sha)
{
    size_t h = 0;
    for (int i = 0; i < 8; i++) {
        h = h * 16 + (size_t)(isdigit((unsigned char)sha[i]) ? sha[i] - '0' : sha[i] - 'a' + 10);
    }
    return h & (REG_BUCKETS - 1);
}

static struct reg_entry **reg_slot(const char *sha)
{
    struct reg_entry **pp = &reg[reg_bucket(sha)];
    while (*pp != NULL && strcmp((*pp)->sha, sha) != 0) {
        pp = &(*pp)->next;
    }
    return pp;
}

static void reg_add(const char *sha, const char *body, size_t len)
{
    pthread_mutex_lock(&reg_mu);
    struct reg_entry **pp = reg_slot(sha);
    if (*pp == NULL) {
        struct reg_entry *e = malloc(sizeof *e + len);
        KV_ASSERT(e != NULL);
        e->next = NULL;
        memcpy(e->sha, sha, KV_SHA1_HEX);
        e->len = len;
        memcpy(e->body, body, len);
        *pp = e;
        reg_n++;
        reg_bytes += sizeof *e + len;
    }
    pthread_mutex_unlock(&reg_mu);
}

/* A copy of the script's source (free()d by the caller), or NULL if unknown. */
static char *reg_get(const char *sha, size_t *len)
{
    char *copy = NULL;
    pthread_mutex_lock(&reg_mu);
    struct reg_entry *e = *reg_slot(sha);
    if (e != NULL) {
        copy = malloc(e->len ? e->len : 1);
        KV_ASSERT(copy != NULL);
        memcpy(copy, e->body, e->len);
        *len = e->len;
    }
    pthread_mutex_unlock(&reg_mu);
    return copy;
}

static bool reg_has(const char *sha)
{
    pthread_mutex_lock(&reg_mu);
    bool has = *reg_slot(sha) != NULL;
    pthread_mutex_unlock(&reg_mu);
    return has;
}

static void reg_flush(void)
{
    pthread_mutex_lock(&reg_mu);
    for (size_t b = 0; b < REG_BUCKETS; b++) {
        while (reg[b] != NULL) {
            struct reg_entry *e = reg[b];
            reg[b] = e->next;
            free(e);
        }
    }
    reg_n = 0;
    reg_bytes = 0;
    atomic_fetch_add(&reg_gen, 1);
    pthread_mutex_unlock(&reg_mu);
}

size_t script_count(size_t *bytes)
{
    pthread_mutex_lock(&reg_mu);
    size_t n = reg_n;
    *bytes = reg_bytes;
    pthread_mutex_unlock(&reg_mu);
    return n;
}

/* ---- a shard's interpreter ------------------------------------------------------- */

/* Registry keys of the tables looked up per call: light userdata (a pointer hash) rather
 * than strings (interned, hashed, at each lookup). */
static const char rk_scripts, rk_sflags, rk_fns, rk_errfunc;

static void reg_push(lua_State *L, const void *key)
{
    lua_pushlightuserdata(L, (void *)(uintptr_t)key);
    lua_rawget(L, LUA_REGISTRYINDEX);
}

/* Sets registry[key] to the value on top (popped). */
static void reg_set(lua_State *L, const void *key)
{
    lua_pushlightuserdata(L, (void *)(uintptr_t)key);
    lua_insert(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
}

struct script_vm {
    lua_State *L;
    uint64_t gen; /* EVAL's: the generation of the script registry it reflects */
    bool fn;      /* a functions interpreter (FCALL), not EVAL's */
    /* a library being loaded (fn only): redis.register_function adds to kvd_loading */
    bool loading;
    uint64_t load_deadline_ns; /* 0: no limit (a library that loaded before, loaded again) */
    /* a stop (SCRIPT / FUNCTION KILL, shutdown, the load timeout) raised: raised again at
     * every instruction, so that pcall inside the script cannot swallow it */
    const char *doomed;
    uint32_t gc_count;    /* scripts since the last collection step */
    uint8_t resp;         /* what redis.call's replies come as: 2, or 3 after redis.setresp(3) */
    const char *run_name; /* the running script's sha or function name */
    bool published;       /* it ran long enough to be in running_slots */
    /* the running script or function */
    struct cmd_ctx *x;
    uint32_t db;            /* its database: SELECT inside a script changes it, not the client's */
    bool ro;                /* EVAL_RO / EVALSHA_RO, a no-writes function */
    bool allow_oom;         /* a function flagged allow-oom: no OOM refusal of its commands */
    bool wrote;             /* it ran a write command: SCRIPT KILL cannot stop it any more */
    bool read;              /* it ran a read-only command (CLIENT TRACKING: its keys count read) */
    uint64_t kill_gen;      /* kill_gen[fn] when it started */
    uint64_t start_ns;      /* when it started (monotonic) */
    bool busy;              /* it ran past busy-reply-threshold (counted in srv->busy) */
    struct conn *busy_conn; /* then: its client, when it is on this shard */
};

/* SCRIPT KILL (index 0) and FUNCTION KILL (1): scripts running (on any shard) and those
 * of them that wrote; a kill bumps the generation, and each running script that has not
 * written stops at its next hook. */
static _Atomic int scripts_running[2], scripts_wrote[2];
static _Atomic uint64_t kill_gen[2];
#define SCRIPT_HOOK_EVERY 100000       /* Lua instructions between two checks */
#define SCRIPT_GC_PERIOD  50           /* scripts between two collection steps (Redis's) */
enum { FN_CB = 1, FN_FLAGS, FN_NAME }; /* a function's entry in kvd_fns: an array */

void script_vm_free(struct script_vm *vm)
{
    if (vm != NULL) {
        lua_close(vm->L);
        free(vm);
    }
}

void script_vm_publish(struct script_vm *vm, struct shard *sh)
{
    uint64_t bytes =
        (uint64_t)lua_gc(vm->L, LUA_GCCOUNT, 0) * 1024u + (uint64_t)lua_gc(vm->L, LUA_GCCOUNTB, 0);
    if (vm->fn) {
        STAT_SET(sh->stats.lua_fn_bytes, bytes);
    } else {
        STAT_SET(sh->stats.lua_eval_bytes, bytes);
    }
}

/* Raises a Lua error with the position of the nearest Lua code on the stack (the
 * script's line that made a metamethod or C function raise it), as luaL_error does
 * from Lua code: "user_script:1: ...". */
static int raise_at_caller(lua_State *L, const char *msg)
{
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        lua_getinfo(L, "Sl", &ar);
        if (ar.currentline > 0) {
            lua_pushfstring(L, "%s:%d: %s", ar.short_src, ar.currentline, msg);
            return lua_error(L);
        }
    }
    lua_pushstring(L, msg);
    return lua_error(L);
}

/* Raises Redis's error for a name an environment does not have. */
static int raise_missing(lua_State *L, const char *name)
{
    char msg[256];
    snprintf(msg, sizeof msg, "Script attempted to access nonexistent global variable '%s'",
             name != NULL ? name : "?");
    return raise_at_caller(L, msg);
}

static int l_global_newindex(lua_State *L);

/* True if the table at `idx` is one of the read-only ones (the environment, the library
 * proxies). */
static bool is_protected(lua_State *L, int idx)
{
    if (!lua_istable(L, idx)) {
        return false;
    }
    lua_getfield(L, LUA_REGISTRYINDEX, "kvd_protected");
    lua_pushvalue(L, idx < 0 ? idx - 1 : idx);
    lua_rawget(L, -2);
    bool p = lua_toboolean(L, -1);
    lua_pop(L, 2);
    return p;
}

static void set_protected(lua_State *L, int idx)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "kvd_protected");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, "kvd_protected");
    }
    lua_pushvalue(L, idx < 0 ? idx - 1 : idx);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

/* rawset and setmetatable, refusing the protected tables (upvalue 1: the original). */
static int l_guarded(lua_State *L)
{
    if (is_protected(L, 1)) { /* raised by a C function: no position, as in Redis */
        lua_pushstring(L, "Attempt to modify a readonly table");
        return lua_error(L);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

/* getmetatable (upvalue 1: the original): a hidden metatable (__metatable false: the
 * library tables') reads as none, as Redis's read-only tables have none. */
static int l_getmetatable(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) {
        lua_pop(L, 1);
        lua_pushnil(L);
    }
    return 1;
}

static void guard_base(lua_State *L)
{
    static const char *const fns[] = {"rawset", "setmetatable"};
    for (size_t i = 0; i < KV_ARRAY_LEN(fns); i++) {
        lua_getglobal(L, fns[i]);
        lua_pushcclosure(L, l_guarded, 1);
        lua_setglobal(L, fns[i]);
    }
    lua_getglobal(L, "getmetatable");
    lua_pushcclosure(L, l_getmetatable, 1);
    lua_setglobal(L, "getmetatable");
}

static int l_global_newindex(lua_State *L);

/* Pushes a read-only proxy of the value on top (its reads go there, its writes raise
 * "Attempt to modify a readonly table", its metatable is out of reach), leaving that
 * value below it. */
static void push_readonly(lua_State *L)
{
    lua_newtable(L); /* the proxy */
    lua_newtable(L); /* its metatable */
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_global_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    set_protected(L, -1);
}

/* Makes getmetatable() of the value at idx (whose metatable is a table) return a
 * read-only view of that metatable, as Redis's getmetatable(_G) and getmetatable('')
 * return their (read-only) metatables. */
static void show_metatable(lua_State *L, int idx)
{
    lua_getmetatable(L, idx); /* the real one (the C API ignores __metatable) */
    push_readonly(L);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
}

/* Records that next() / pairs() on the proxy at `proxy` iterate the table at `real`
 * (Redis's read-only tables are real tables: pairs(redis) lists its functions). */
static void see_through(lua_State *L, int proxy, int real)
{
    proxy = proxy < 0 ? lua_gettop(L) + proxy + 1 : proxy;
    real = real < 0 ? lua_gettop(L) + real + 1 : real;
    lua_getfield(L, LUA_REGISTRYINDEX, "kvd_real");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, "kvd_real");
    }
    lua_pushvalue(L, proxy);
    lua_pushvalue(L, real);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

/* pcall(f, ...) as Redis's: an error that is a table with an err string (redis.call's,
 * error({err = ...})) is caught as that string. */
static int l_pcall_compat(lua_State *L)
{
    int argc = lua_gettop(L);
    if (argc == 0) { /* (what Redis's replies: it calls its status placeholder) */
        lua_pushboolean(L, 0);
        lua_pushstring(L, "attempt to call a boolean value");
        return 2;
    }
    lua_pushboolean(L, 1); /* the status, in place */
    lua_insert(L, 1);
    if (lua_pcall(L, argc - 1, LUA_MULTRET, 0) != 0) {
        if (lua_istable(L, -1)) {
            lua_pushstring(L, "err");
            lua_rawget(L, -2);
            if (lua_isstring(L, -1)) {
                lua_replace(L, -2);
            } else {
                lua_pop(L, 1);
            }
        }
        lua_pushboolean(L, 0);
        lua_replace(L, 1);
        return 2;
    }
    return lua_gettop(L);
}

/* next(t, k), iterating the real table of a read-only proxy. */
static int l_next(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    lua_getfield(L, LUA_REGISTRYINDEX, "kvd_real");
    lua_pushvalue(L, 1);
    lua_rawget(L, -2);
    if (lua_istable(L, -1)) {
        lua_replace(L, 1);
    }
    lua_settop(L, 2);
    if (lua_next(L, 1)) {
        return 2;
    }
    lua_pushnil(L);
    return 1;
}

/* pairs(t): next, t, nil (with the next above). */
static int l_pairs(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushcfunction(L, l_next);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* Replaces global library table `name` by a read-only proxy (reads go to the table,
 * writes raise "Attempt to modify a readonly table", as Redis 7's tables do). */
static void protect_global(lua_State *L, const char *name)
{
    lua_getglobal(L, name);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    push_readonly(L); /* (getmetatable() cannot reach the real table) */
    see_through(L, -1, -2);
    lua_setglobal(L, name);
    lua_pop(L, 1);
}

static int l_global_newindex(lua_State *L)
{
    return raise_at_caller(L, "Attempt to modify a readonly table");
}

/* The scripts' environment (a proxy of the globals): reads go to the globals, and
 * reading a missing one is an error. */
static int l_global_index(lua_State *L)
{
    lua_pushvalue(L, 2);
    lua_rawget(L, LUA_GLOBALSINDEX);
    if (!lua_isnil(L, -1)) {
        return 1;
    }
    return raise_missing(L, lua_tostring(L, 2));
}

/* Pushes an error table {err = text} the way Redis builds one from an error reply or
 * redis.error_reply's argument: "-CODE msg" keeps CODE, a text without a code gets
 * "ERR". */
static void push_error_table(lua_State *L, const char *text, size_t n)
{
    char buf[1024];
    if (n > 0 && text[0] == '-') {
        text++;
        n--;
        const char *sp = memchr(text, ' ', n);
        if (sp == NULL) {
            snprintf(buf, sizeof buf, "ERR %.*s", (int)n, text);
        } else {
            snprintf(buf, sizeof buf, "%.*s", (int)n, text);
        }
    } else {
        snprintf(buf, sizeof buf, "ERR %.*s", (int)n, text);
    }
    lua_newtable(L);
    lua_pushstring(L, buf);
    lua_setfield(L, -2, "err");
}

/* Whether the error table at idx came from a command's error reply, already counted
 * in errorstats (Redis's ignore_error_stats_update field; raw read). */
static bool error_seen(lua_State *L, int idx)
{
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    lua_pushstring(L, "ignore_error_stats_update");
    lua_rawget(L, idx);
    bool seen = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return seen;
}

/* Pushes one RESP2 reply element at *p as a Lua value (Redis's conversion) and
 * advances *p. */
static void push_reply(lua_State *L, const char **p, const char *end)
{
    const char *s = *p;
    const char *nl = memchr(s, '\n', (size_t)(end - s));
    KV_ASSERT(nl != NULL && nl > s && nl[-1] == '\r');
    size_t line = (size_t)(nl - 1 - (s + 1));
    *p = nl + 1;
    switch (s[0]) {
    case '+':
        lua_newtable(L);
        lua_pushlstring(L, s + 1, line);
        lua_setfield(L, -2, "ok");
        return;
    case '-': {
        lua_newtable(L);
        lua_pushlstring(L, s + 1, line);
        lua_setfield(L, -2, "err");
        return;
    }
    case ':':
        lua_pushnumber(L, (lua_Number)strtoll(s + 1, NULL, 10));
        return;
    case '$': {
        long long n = strtoll(s + 1, NULL, 10);
        if (n < 0) {
            lua_pushboolean(L, 0);
            return;
        }
        KV_ASSERT(*p + n + 2 <= end);
        lua_pushlstring(L, *p, (size_t)n);
        *p += n + 2;
        return;
    }
    case '*': {
        long long n = strtoll(s + 1, NULL, 10);
        if (n < 0) {
            lua_pushboolean(L, 0);
            return;
        }
        luaL_checkstack(L, 4, "reply too deep");
        lua_newtable(L); /* (not presized: with RESP3's nils, #t is what Redis's gives) */
        for (long long i = 1; i <= n; i++) {
            push_reply(L, p, end);
            lua_rawseti(L, -2, (int)i);
        }
        return;
    }
    /* RESP3, after redis.setresp(3): Redis's Lua forms */
    case '_':
        lua_pushnil(L);
        return;
    case '#':
        lua_pushboolean(L, s[1] == 't');
        return;
    case ',':
        lua_newtable(L);
        lua_pushnumber(L, strtod(s + 1, NULL));
        lua_setfield(L, -2, "double");
        return;
    case '(':
        lua_newtable(L);
        lua_pushlstring(L, s + 1, line);
        lua_setfield(L, -2, "big_number");
        return;
    case '=': { /* "fmt:text" */
        long long n = strtoll(s + 1, NULL, 10);
        KV_ASSERT(n >= 4 && *p + n + 2 <= end);
        lua_newtable(L);
        lua_newtable(L);
        lua_pushlstring(L, *p, 3);
        lua_setfield(L, -2, "format");
        lua_pushlstring(L, *p + 4, (size_t)n - 4);
        lua_setfield(L, -2, "string");
        lua_setfield(L, -2, "verbatim_string");
        *p += n + 2;
        return;
    }
    case '%':
    case '~': { /* {map = {k = v}}, {set = {member = true}} */
        long long n = strtoll(s + 1, NULL, 10);
        luaL_checkstack(L, 6, "reply too deep");
        lua_newtable(L);
        lua_newtable(L);
        for (long long i = 0; i < n; i++) {
            push_reply(L, p, end);
            if (s[0] == '%') {
                push_reply(L, p, end);
            } else {
                lua_pushboolean(L, 1);
            }
            lua_rawset(L, -3);
        }
        lua_setfield(L, -2, s[0] == '%' ? "map" : "set");
        return;
    }
    case '|': { /* an attribute: Redis skips it, and the reply is what follows */
        long long n = strtoll(s + 1, NULL, 10);
        for (long long i = 0; i < 2 * n; i++) {
            push_reply(L, p, end);
            lua_pop(L, 1);
        }
        push_reply(L, p, end);
        return;
    }
    case '>': { /* a push: read as an array */
        long long n = strtoll(s + 1, NULL, 10);
        luaL_checkstack(L, 4, "reply too deep");
        lua_newtable(L);
        for (long long i = 1; i <= n; i++) {
            push_reply(L, p, end);
            lua_rawseti(L, -2, (int)i);
        }
        return;
    }
    default: /* (no command replies another type) */
        KV_ASSERT(!"a reply type scripts do not get");
    }
}

static struct script_vm *vm_of(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

/* Raises {err = text}: an error reply with the script's line added. */
static int raise_reply(lua_State *L, const char *text)
{
    lua_newtable(L);
    lua_pushstring(L, text);
    lua_setfield(L, -2, "err");
    return lua_error(L);
}

/* Every SCRIPT_HOOK_EVERY instructions: a shutdown, or SCRIPT KILL of a script that
 * has not written, stops the script. */
/* ---- long scripts, for FUNCTION STATS -------------------------------------------- */

/* A script still running at its first hook (SCRIPT_HOOK_EVERY instructions, a
 * millisecond or so) is recorded by its shard in its slot here, and forgotten when it
 * ends: FUNCTION STATS on any thread names it. Short scripts never take the mutex. */
struct running {
    bool on, fn;
    int64_t start_ms;
    char *name;
    size_t argc;
    size_t *lens; /* argc lengths, then the bytes: one block */
    char **argv;  /* into the same block */
};
static pthread_mutex_t running_mu = PTHREAD_MUTEX_INITIALIZER;
static struct running running_slots[KVD_THREADS_MAX];

static void publish_running(struct script_vm *vm)
{
    struct cmd_ctx *x = vm->x;
    size_t bytes = x->argc * (sizeof(size_t) + sizeof(char *));
    for (size_t i = 0; i < x->argc; i++) {
        bytes += x->argv[i].len;
    }
    char *block = malloc(bytes ? bytes : 1), *name = strdup(vm->run_name);
    KV_ASSERT(block != NULL && name != NULL);
    size_t *lens = (size_t *)(void *)block;
    char **argv = (char **)(void *)(block + x->argc * sizeof(size_t));
    char *p = block + x->argc * (sizeof(size_t) + sizeof(char *));
    for (size_t i = 0; i < x->argc; i++) {
        lens[i] = x->argv[i].len;
        argv[i] = p;
        memcpy(p, x->argv[i].ptr, x->argv[i].len);
        p += x->argv[i].len;
    }
    pthread_mutex_lock(&running_mu);
    struct running *r = &running_slots[x->sh->id];
    KV_ASSERT(!r->on);
    *r = (struct running){.on = true,
                          .fn = vm->fn,
                          .start_ms = x->now_ms,
                          .name = name,
                          .argc = x->argc,
                          .lens = lens,
                          .argv = argv};
    pthread_mutex_unlock(&running_mu);
    vm->published = true;
}

static void unpublish_running(struct script_vm *vm, struct shard *sh)
{
    pthread_mutex_lock(&running_mu);
    struct running *r = &running_slots[sh->id];
    free(r->name);
    free(r->lens);
    *r = (struct running){0};
    pthread_mutex_unlock(&running_mu);
    vm->published = false;
}

bool script_eval_busy(void)
{
    bool busy = false;
    pthread_mutex_lock(&running_mu);
    for (size_t i = 0; i < KVD_THREADS_MAX; i++) {
        busy |= running_slots[i].on && !running_slots[i].fn;
    }
    pthread_mutex_unlock(&running_mu);
    return busy;
}

void script_running_reply(struct resp_out *out, int64_t now_ms)
{
    pthread_mutex_lock(&running_mu);
    const struct running *found = NULL;
    for (size_t i = 0; i < KVD_THREADS_MAX; i++) {
        const struct running *r = &running_slots[i];
        if (r->on && r->fn && (found == NULL || r->start_ms < found->start_ms)) {
            found = r;
        }
    }
    if (found == NULL) {
        reply_null(out);
    } else {
        reply_map(out, 3);
        reply_bulk_str(out, "name");
        reply_bulk_str(out, found->name);
        reply_bulk_str(out, "command");
        reply_array(out, found->argc);
        for (size_t i = 0; i < found->argc; i++) {
            reply_bulk(out, found->argv[i], found->lens[i]);
        }
        reply_bulk_str(out, "duration_ms");
        reply_int(out, now_ms > found->start_ms ? now_ms - found->start_ms : 0);
    }
    pthread_mutex_unlock(&running_mu);
}

static void l_hook(lua_State *L, lua_Debug *ar);

/* Stops the running script: raises msg now and at every instruction after (a pcall in
 * the script gets the error, and the next instruction raises it again). */
static void doom(lua_State *L, struct script_vm *vm, const char *msg)
{
    vm->doomed = msg;
    lua_sethook(L, l_hook, LUA_MASKCOUNT, 1);     /* this thread (maybe a coroutine), */
    lua_sethook(vm->L, l_hook, LUA_MASKCOUNT, 1); /* the main one (and those it makes) */
    raise_reply(L, msg);
}

/* After a script or a library's code returned: the hook back to its usual pace. */
static void undoom(lua_State *L, struct script_vm *vm)
{
    if (vm->doomed != NULL) {
        vm->doomed = NULL;
        lua_sethook(L, l_hook, LUA_MASKCOUNT, SCRIPT_HOOK_EVERY);
    }
}

/* The script has run past busy-reply-threshold: from now on until it ends, commands get
 * -BUSY on every shard (conn.c) and its hook serves its own shard's clients. */
static void busy_enter(struct script_vm *vm)
{
    vm->busy = true;
    /* its client, if on this shard (none when it runs for another shard's): busy turns
     * leave it as it is, so it stays open (and found) until the script is over */
    vm->busy_conn = conn_by_id(vm->x->sh, vm->x->caller_id);
    atomic_fetch_add(&vm->x->sh->srv->busy, vm->fn ? SERVER_BUSY_FN : SERVER_BUSY_EVAL);
    kv_log_warning("Slow script detected: still in execution after %llu milliseconds. You can "
                   "try killing the script using the %s command. Script name is: %s.",
                   (unsigned long long)((kv_clock_mono_ns() - vm->start_ns) / 1000000),
                   vm->fn ? "FUNCTION KILL" : "SCRIPT KILL", vm->run_name);
}

static void busy_leave(struct script_vm *vm, struct server *srv)
{
    if (vm->busy) {
        vm->busy = false;
        vm->busy_conn = NULL;
        atomic_fetch_sub(&srv->busy, vm->fn ? SERVER_BUSY_FN : SERVER_BUSY_EVAL);
    }
}

const char *script_busy_text(struct server *srv)
{
    uint32_t busy = atomic_load_explicit(&srv->busy, memory_order_relaxed);
    if (busy == 0) {
        return NULL;
    }
    return (busy & (SERVER_BUSY_FN - 1)) != 0 ? SCRIPT_BUSY_EVAL_TEXT : SCRIPT_BUSY_FN_TEXT;
}

static void l_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_getfield(L, LUA_REGISTRYINDEX, "kvd_vm");
    struct script_vm *vm = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (vm == NULL) {
        return;
    }
    if (vm->doomed != NULL) { /* every thread that gets here raises at every instruction */
        lua_sethook(L, l_hook, LUA_MASKCOUNT, 1);
        raise_reply(L, vm->doomed);
    }
    if (lua_gethookcount(L) == 1) { /* a coroutine made while doomed, kept and resumed later */
        lua_sethook(L, l_hook, LUA_MASKCOUNT, SCRIPT_HOOK_EVERY);
    }
    if (vm->loading && vm->load_deadline_ns != 0 && kv_clock_mono_ns() > vm->load_deadline_ns) {
        doom(L, vm, "ERR FUNCTION LOAD timeout");
    }
    if (vm->x == NULL) {
        return;
    }
    struct shard *sh = vm->x->sh;
    if (!vm->busy && kv_clock_mono_ns() - vm->start_ns >=
                         (uint64_t)KV_CONF_GET(kvd_settings.busy_reply_threshold_ms) * 1000000) {
        busy_enter(vm);
    }
    if (vm->busy) { /* Redis's busy mode: the shard's clients get -BUSY, SCRIPT KILL runs */
        shard_busy_turn(sh, vm->busy_conn);
    }
    if (atomic_load_explicit(&sh->srv->stopping, memory_order_relaxed)) {
        doom(L, vm, "ERR Script killed: the server is shutting down");
    }
    if (!vm->wrote && atomic_load(&kill_gen[vm->fn]) != vm->kill_gen) {
        doom(L, vm, "ERR Script killed by user with SCRIPT KILL..."); /* (FUNCTION KILL too) */
    }
    if (!vm->published) { /* a long one: FUNCTION STATS shows it */
        publish_running(vm);
    }
}

/* load(f [, name]) without binary chunks (Lua 5.1 has no bytecode verifier), and with
 * the scripts' environment. */
/* load() and loadstring(): the chunk compiled in the scripts' environment, or nil and
 * the reason (binary chunks are refused, as Redis's patched Lua refuses them). */
static int load_text(lua_State *L, const char *s, size_t n, const char *name)
{
    if (n > 0 && s[0] == '\033') {
        lua_pushnil(L);
        lua_pushstring(L, "binary chunks are not allowed");
        return 2;
    }
    if (luaL_loadbuffer(L, s, n, name) != 0) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    lua_getfield(L, LUA_REGISTRYINDEX, "kvd_env");
    lua_setfenv(L, -2);
    return 1;
}

static int l_load(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    const char *name = luaL_optstring(L, 2, "=(load)");
    lua_settop(L, 2);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (;;) {
        lua_pushvalue(L, 1);
        lua_call(L, 0, 1);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            break;
        }
        if (!lua_isstring(L, -1)) {
            return luaL_error(L, "reader function must return a string");
        }
        if (lua_objlen(L, -1) == 0) {
            lua_pop(L, 1);
            break;
        }
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    return load_text(L, s, n, name);
}

/* loadstring(s [, name]): as Redis 7.0's (which keeps it): compiles s in the scripts'
 * environment; a binary chunk is refused (nil and a message), as load() refuses it. */
static int l_loadstring(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    return load_text(L, s, n, luaL_optstring(L, 2, s));
}

/* unpack(t [, i [, j]]) with Redis's fix of Lua 5.1's: a range too long for the stack
 * is an error ("too many results to unpack"), not a crash (the system's liblua5.1
 * computes the count in an int and overflows). */
static int l_unpack(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int i = luaL_optint(L, 2, 1);
    int e = lua_isnoneornil(L, 3) ? (int)lua_objlen(L, 1) : luaL_checkint(L, 3);
    if (i > e) {
        return 0;
    }
    long long n = (long long)e - i + 1;
    if (n >= INT_MAX || !lua_checkstack(L, (int)n)) {
        return luaL_error(L, "too many results to unpack");
    }
    for (long long k = 0; k < n; k++) {
        lua_rawgeti(L, 1, (int)(i + k));
    }
    return (int)n;
}

/* bit.tohex(x [, n]) with Redis's fix of LuaBitOp's: n = INT32_MIN no longer negates to
 * itself and writes out of bounds (the system's liblua5.1-bitop crashes). */
static uint32_t bit_arg(lua_State *L, int idx)
{
    union {
        double n;
        uint64_t b;
    } bn = {.n = luaL_checknumber(L, idx) + 6755399441055744.0}; /* 2^52 + 2^51: LuaBitOp's */
    return (uint32_t)bn.b;
}

static int l_bit_tohex(lua_State *L)
{
    uint32_t b = bit_arg(L, 1);
    int32_t n = lua_isnone(L, 2) ? 8 : (int32_t)bit_arg(L, 2);
    const char *digits = "0123456789abcdef";
    char buf[8];
    if (n == INT32_MIN) {
        n = INT32_MIN + 1;
    }
    if (n < 0) {
        n = -n;
        digits = "0123456789ABCDEF";
    }
    if (n > 8) {
        n = 8;
    }
    for (int i = n; --i >= 0;) {
        buf[i] = digits[b & 15];
        b >>= 4;
    }
    lua_pushlstring(L, buf, (size_t)n);
    return 1;
}

/*
 * cjson.encode: Debian's lua-cjson sizes its output buffer in int, so a string over 357 MB
 * (6 bytes reserved per byte, for \\u escapes) or an output over 2 GB wraps around and
 * writes past the buffer, or loops for ever (Redis's CVE-2022-24834, fixed in Redis's own
 * copy). The value is measured first, with the worst case of every string, the nulls of
 * an array's holes, the library's current nesting and sparse-array settings (read from
 * its own getters), and refused over SCRIPT_CJSON_BOUND_MAX; then the library's encode
 * runs (upvalue 1; upvalue 2 is its module table). cjson.new() hands out modules whose
 * encode is wrapped the same way.
 */
#define SCRIPT_CJSON_BOUND_MAX ((uint64_t)INT32_MAX / 2) /* worst-case output bytes */
#define SCRIPT_CJSON_DEPTH_MAX 10000 /* nesting measured at most (cjson's default: 1000) */

struct cjson_cfg {
    int max_depth;                 /* encode_max_depth() */
    int sparse_ratio, sparse_safe; /* encode_sparse_array()'s ratio and safe */
    uint64_t bound;
    bool too_deep; /* deeper than SCRIPT_CJSON_DEPTH_MAX with a setting that allows it */
};

/* Adds the worst-case output of the value at absolute index idx to cfg->bound; stops
 * once over the limit, or past the library's nesting limit (it reports that itself). */
static void cjson_bound(lua_State *L, int idx, int depth, struct cjson_cfg *cfg)
{
    size_t n;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        lua_tolstring(L, idx, &n); /* (a string: no conversion in place) */
        cfg->bound += (uint64_t)n * 6 + 2;
        return;
    case LUA_TTABLE:
        break;
    default:
        cfg->bound += 32; /* a number ("%.14g"), true, false, null */
        return;
    }
    cfg->bound += 2;
    if (depth >= cfg->max_depth) {
        return; /* cjson refuses it */
    }
    if (depth >= SCRIPT_CJSON_DEPTH_MAX || !lua_checkstack(L, 3)) {
        cfg->too_deep = true;
        cfg->bound = SCRIPT_CJSON_BOUND_MAX + 1;
        return;
    }
    bool array = true;
    double max = 0, items = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        int top = lua_gettop(L);
        if (lua_type(L, top - 1) == LUA_TNUMBER) {
            double k = lua_tonumber(L, top - 1);
            array &= k >= 1 && k == (double)(int64_t)k;
            max = k > max ? k : max;
        } else {
            array = false;
        }
        items++;
        cjson_bound(L, top - 1, depth + 1, cfg);
        cjson_bound(L, top, depth + 1, cfg);
        cfg->bound += 2;
        lua_pop(L, 1);
        if (cfg->bound > SCRIPT_CJSON_BOUND_MAX) {
            lua_pop(L, 1); /* the key: the walk stops here */
            return;
        }
    }
    /* an array is written up to its largest index, its holes as null, unless cjson finds
     * it excessively sparse (an error, or an object with convert) */
    bool sparse =
        cfg->sparse_ratio > 0 && max > cfg->sparse_safe && max > items * cfg->sparse_ratio;
    if (array && items > 0 && !sparse) {
        cfg->bound +=
            max > (double)SCRIPT_CJSON_BOUND_MAX ? SCRIPT_CJSON_BOUND_MAX : (uint64_t)max * 5;
    }
}

/* Calls the module's getter `name` (no arguments) for n results. */
static void cjson_get(lua_State *L, int module, const char *name, int n)
{
    lua_getfield(L, module, name);
    lua_call(L, 0, n);
}

static int l_cjson_encode(lua_State *L)
{
    int nargs = lua_gettop(L);
    luaL_argcheck(L, nargs == 1, 1, "expected 1 argument"); /* (the library's check) */
    {
        struct cjson_cfg cfg = {0};
        int module = lua_upvalueindex(2);
        cjson_get(L, module, "encode_max_depth", 1);
        cfg.max_depth = (int)lua_tointeger(L, -1);
        cjson_get(L, module, "encode_sparse_array", 3);
        cfg.sparse_ratio = (int)lua_tointeger(L, -2);
        cfg.sparse_safe = (int)lua_tointeger(L, -1);
        lua_settop(L, nargs);
        cjson_bound(L, 1, 0, &cfg);
        if (cfg.too_deep) {
            return luaL_error(L,
                              "Cannot serialise: nested deeper than %d (kvd's limit for "
                              "cjson.encode)",
                              SCRIPT_CJSON_DEPTH_MAX);
        }
        if (cfg.bound > SCRIPT_CJSON_BOUND_MAX) {
            return luaL_error(L,
                              "Cannot serialise: the value could encode to more than %d "
                              "bytes (kvd's limit for cjson.encode)",
                              (int)SCRIPT_CJSON_BOUND_MAX);
        }
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    int rc = lua_pcall(L, nargs, LUA_MULTRET, 0);
    if (rc == LUA_ERRRUN && lua_type(L, -1) == LUA_TSTRING) {
        /* the library's luaL_error names its caller's line, which is now this function
         * (none): the script's line, as when the script calls it directly */
        luaL_where(L, 1);
        lua_insert(L, -2);
        lua_concat(L, 2);
    }
    if (rc != 0) {
        return lua_error(L);
    }
    return lua_gettop(L);
}

/* Replaces the encode of the cjson module table at idx by the checked one. */
static void cjson_guard(lua_State *L, int idx)
{
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    lua_getfield(L, idx, "encode");
    lua_pushvalue(L, idx);
    lua_pushcclosure(L, l_cjson_encode, 2);
    lua_setfield(L, idx, "encode");
}

/* cjson.new(): the library's new module, its encode checked too (upvalue 1: the
 * library's new). */
static int l_cjson_new(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_call(L, 0, 1);
    if (lua_istable(L, -1)) {
        cjson_guard(L, -1);
    }
    return 1;
}

/* Whether Redis refuses the command in scripts ("noscript" in its COMMAND INFO flags,
 * for a container that of the subcommand), and the connection commands kvd cannot run
 * without a connection (a script has none): only PING, ECHO, TIME, SELECT, LASTSAVE and
 * OBJECT are allowed among those. */
static _Atomic bool deny_off; /* DEBUG SET-DISABLE-DENY-SCRIPTS */

void script_set_deny_off(bool off)
{
    atomic_store(&deny_off, off);
}

static bool noscript(const struct cmd_desc *d, size_t argc, const struct resp_arg *argv)
{
    if (KV_UNLIKELY(atomic_load_explicit(&deny_off, memory_order_relaxed)) && d->fn == cmd_debug &&
        argc >= 2 && !cmd_arg_is(&argv[1], "reload")) {
        return false; /* (DEBUG PROTOCOL, ERROR, SLEEP, ... need no connection) */
    }
    if ((d->flags & CMD_HIDDEN) || d->exec == CMD_EXEC_SCRIPT) {
        return true;
    }
    if (d->flags & CMD_SUBCMDS) { /* a container: its subcommand's flags */
        const struct cmd_docs *doc = cmd_docs_find(d->name);
        if (doc != NULL && argc >= 2) {
            const struct cmd_docs *sub = cmd_docs_find_sub(doc, argv[1].ptr, argv[1].len);
            doc = sub != NULL ? sub : doc;
        }
        if (doc != NULL && doc->flags != NULL && strstr(doc->flags, "noscript") != NULL) {
            return true;
        }
    } else if (d->flags & CMD_NOSCRIPT) { /* (set by cmd_init from Redis's flags) */
        return true;
    }
    if (d->exec == CMD_EXEC_CONN) {
        return d->fn != cmd_ping && d->fn != cmd_echo && d->fn != cmd_time && d->fn != cmd_select &&
               d->fn != cmd_lastsave && d->fn != cmd_object && d->fn != cmd_publish &&
               d->fn != cmd_spublish && d->fn != cmd_lolwut && d->fn != cmd_pubsub &&
               d->fn != cmd_cluster;
    }
    return false;
}

/* redis.call / redis.pcall: the command's reply as a Lua value; an error reply (or a
 * command that may not run) raises {err = ...} from call, is returned by pcall. */
/* Whether the script's user may run the command (ACL): USERS_OK, or why not, logged in
 * ACL LOG (context "lua") when `log`. */
static enum users_denied acl_verdict(struct cmd_ctx *x, const struct cmd_desc *d, size_t argc,
                                     const struct resp_arg *argv, bool log)
{
    users_view_refresh(&x->sh->users);
    const struct user *u = users_view_get(&x->sh->users, x->user);
    if (u == NULL) {
        return USERS_DENIED_CMD; /* its user was deleted meanwhile */
    }
    size_t pos;
    enum users_denied why = user_check(u, d, argc, argv, &pos);
    if (why == USERS_OK || !log) {
        return why;
    }
    conn_acl_log(x->sh, x->caller_id, x->desc->name, u, why, USERS_CTX_LUA, d, argc, argv, pos);
    return why;
}

static int call_common(lua_State *L, bool raise)
{
    struct script_vm *vm = vm_of(L);
    if (vm->x == NULL) {
        return luaL_error(L, "redis.call outside a script");
    }
    int argc = lua_gettop(L);
    const char *err = NULL;
    char errbuf[256];
    struct resp_arg stack_argv[SCRIPT_ARGV_STACK];
    struct resp_arg *argv = stack_argv;
    if (argc == 0) {
        err = "Please specify at least one argument for this redis lib call";
    } else if (argc > SCRIPT_ARGV_STACK) {
        /* Lua-managed, so that a Lua error cannot leak it */
        argv = lua_newuserdata(L, (size_t)argc * sizeof *argv);
    }
    for (int i = 0; err == NULL && i < argc; i++) {
        int t = lua_type(L, i + 1);
        if (t == LUA_TNUMBER) {
            /* Redis formats numbers with 17 significant digits */
            char num[64];
            int k = snprintf(num, sizeof num, "%.17g", lua_tonumber(L, i + 1));
            lua_pushlstring(L, num, (size_t)k);
            lua_replace(L, i + 1);
        } else if (t != LUA_TSTRING) {
            err = "Lua redis lib command arguments must be strings or integers";
            break;
        }
        size_t n;
        argv[i].ptr = lua_tolstring(L, i + 1, &n);
        argv[i].len = n;
    }
    const struct cmd_desc *d = NULL;
    enum users_denied why;
    if (err == NULL) {
        d = cmd_lookup(argv[0].ptr, argv[0].len);
        if (d == NULL || !cmd_sub_known(d, (size_t)argc, argv)) {
            err = "Unknown Redis command called from script";
        } else if (!cmd_arity_ok(d, (size_t)argc) || !cmd_sub_arity_ok(d, (size_t)argc, argv)) {
            err = "Wrong number of args calling Redis command from script";
        } else if (noscript(d, (size_t)argc, argv)) {
            err = "This Redis command is not allowed from script";
        } else if ((why = acl_verdict(vm->x, d, (size_t)argc, argv, true)) != USERS_OK) {
            err = why == USERS_DENIED_KEY
                      ? "The user executing the script can't access at least one of the keys "
                        "mentioned in the command arguments"
                  : why == USERS_DENIED_CHANNEL
                      ? "The user executing the script can't publish to the channel mentioned "
                        "in the command"
                      : "The user executing the script can't run this command or subcommand";
        } else if (vm->ro && ((d->flags & CMD_WRITE) || cmd_may_replicate(d))) { /* as Redis's
                                                                                  * may_replicate */
            err = "Write commands are not allowed from read-only scripts.";
        } else if ((d->flags & CMD_DENYOOM) && !vm->wrote && !vm->allow_oom &&
                   KV_CONF_GET(kvd_settings.maxmemory) != 0 && evict_refuses(vm->x->sh)) {
            /* as Redis: refused when eviction cannot help, until the script wrote (then it
             * must go on) */
            err = "OOM command not allowed when used memory > 'maxmemory'.";
        }
    }
    size_t len = 0;
    char *blob = NULL;
    if (err != NULL) {
        snprintf(errbuf, sizeof errbuf, "%s%s", strncmp(err, "OOM ", 4) == 0 ? "" : "ERR ", err);
        /* refused before it ran: counted as Redis's scriptCall counts it (an error reply,
         * and the command's rejected call), whether or not pcall catches it */
        reply_count_error(errbuf, strlen(errbuf));
        vm->x->inner_errors++; /* (not the script's own error) */
        if (d != NULL) {
            conn_script_rejected(vm->x, d, (size_t)argc, argv);
        }
    } else {
        vm->read |= (d->flags & CMD_READONLY) != 0;
        blob = conn_script_call(vm->x, &vm->db, vm->resp, d, (size_t)argc, argv, &len, &err);
        if (blob == NULL) { /* refused where it would run (keys of another shard, ...) */
            snprintf(errbuf, sizeof errbuf, "%s", err); /* with its code */
            reply_count_error(errbuf, strlen(errbuf));
            vm->x->inner_errors++;
        }
    }
    if (blob == NULL) {
        lua_newtable(L);
        lua_pushstring(L, errbuf);
        lua_setfield(L, -2, "err");
        lua_pushboolean(L, 1); /* counted above or by the call: not again as the script's */
        lua_setfield(L, -2, "ignore_error_stats_update");
        return raise ? lua_error(L) : 1;
    }
    if (blob[0] == '-') {
        push_error_table(L, blob, len - 2); /* "-CODE msg" without CRLF */
        lua_pushboolean(L, 1); /* counted as the command's: not again as the script's */
        lua_setfield(L, -2, "ignore_error_stats_update");
        conn_blob_free(blob);
        return raise ? lua_error(L) : 1;
    }
    if (d->flags & CMD_WRITE) {
        if (!vm->wrote) {
            atomic_fetch_add(&scripts_wrote[vm->fn], 1);
        }
        vm->wrote = true;
    }
    lua_pushlstring(L, blob, len); /* the bytes, Lua-owned: no leak if converting raises */
    conn_blob_free(blob);
    const char *p = lua_tostring(L, -1);
    push_reply(L, &p, p + len);
    lua_remove(L, -2);
    return 1;
}

static int l_call(lua_State *L)
{
    return call_common(L, true);
}

static int l_pcall(lua_State *L)
{
    return call_common(L, false);
}

static int l_error_reply(lua_State *L)
{
    if (lua_gettop(L) != 1 || lua_type(L, 1) != LUA_TSTRING) {
        push_error_table(L, "wrong number or type of arguments", 33);
        return 1;
    }
    size_t n;
    const char *s = lua_tolstring(L, 1, &n);
    if (n > 0 && s[0] == '-') {
        push_error_table(L, s, n);
    } else {
        char buf[1024];
        int k = snprintf(buf, sizeof buf, "-%.*s", (int)(n < 1000 ? n : 1000), s);
        push_error_table(L, buf, (size_t)k);
    }
    return 1;
}

static int l_status_reply(lua_State *L)
{
    if (lua_gettop(L) != 1 || lua_type(L, 1) != LUA_TSTRING) {
        push_error_table(L, "wrong number or type of arguments", 33);
        return 1;
    }
    lua_newtable(L);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "ok");
    return 1;
}

static int l_sha1hex(lua_State *L)
{
    if (lua_gettop(L) != 1) {
        lua_pushstring(L, "wrong number of arguments");
        return lua_error(L);
    }
    size_t n;
    const char *s = lua_tolstring(L, 1, &n);
    char hex[KV_SHA1_HEX];
    kv_sha1_hex(s != NULL ? s : "", s != NULL ? n : 0, hex);
    lua_pushstring(L, hex);
    return 1;
}

static int l_log(lua_State *L)
{
    int argc = lua_gettop(L);
    if (argc < 2) {
        lua_pushstring(L, "redis.log() requires two arguments or more.");
        return lua_error(L);
    }
    if (!lua_isnumber(L, 1)) {
        lua_pushstring(L, "First argument must be a number (log level).");
        return lua_error(L);
    }
    int level = (int)lua_tonumber(L, 1);
    if (level < 0 || level > 3) {
        lua_pushstring(L, "Invalid debug level.");
        return lua_error(L);
    }
    char line[1024];
    size_t off = 0;
    for (int i = 2; i <= argc; i++) {
        size_t n;
        const char *s = lua_tolstring(L, i, &n);
        if (s != NULL && off < sizeof line - 1) {
            int k = snprintf(line + off, sizeof line - off, "%s%.*s", i > 2 ? " " : "", (int)n, s);
            off += k > 0 ? (size_t)k : 0;
        }
    }
    if (level >= 2) {
        kv_log_notice("script: %s", line);
    } else {
        kv_log_verbose("script: %s", line);
    }
    return 0;
}

/* redis.setresp(2 | 3): the protocol of the replies redis.call returns to the script
 * (each script starts with 2). */
static int l_setresp(lua_State *L)
{
    if (lua_gettop(L) != 1) {
        return raise_reply(L, "ERR redis.setresp() requires one argument.");
    }
    lua_Number v = lua_tonumber(L, 1);
    if (v != 2 && v != 3) {
        return raise_reply(L, "ERR RESP version must be 2 or 3.");
    }
    vm_of(L)->resp = (uint8_t)v;
    return 0;
}

static int l_nothing(lua_State *L)
{
    (void)L;
    return 0;
}

static int l_true(lua_State *L)
{
    lua_pushboolean(L, 1);
    return 1;
}

/* Opens a library as Lua 5.1's luaL_openlibs does, and makes it the global `name` when
 * it returns its table without setting one (cjson). */
static void open_lib(lua_State *L, const char *name, lua_CFunction f)
{
    lua_pushcfunction(L, f);
    lua_pushstring(L, name);
    lua_call(L, 1, 1);
    if (name[0] != '\0' && lua_istable(L, -1)) {
        lua_setglobal(L, name);
    } else {
        lua_pop(L, 1);
    }
}

static void set_fn(lua_State *L, struct script_vm *vm, const char *name, lua_CFunction f)
{
    lua_pushlightuserdata(L, vm);
    lua_pushcclosure(L, f, 1);
    lua_setfield(L, -2, name);
}

static void set_num(lua_State *L, const char *name, int v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, name);
}

/* redis.acl_check_cmd(cmd, ...): whether the script's user may run the command with
 * those arguments (keys and channels included), as Redis's. */
static int l_acl_check_cmd(lua_State *L)
{
    struct script_vm *vm = vm_of(L);
    int argc = lua_gettop(L);
    struct resp_arg stack_argv[SCRIPT_ARGV_STACK];
    struct resp_arg *argv = stack_argv;
    if (argc > SCRIPT_ARGV_STACK) {
        argv = lua_newuserdata(L, (size_t)argc * sizeof *argv);
    }
    for (int i = 0; i < argc; i++) {
        int t = lua_type(L, i + 1);
        if (t != LUA_TNUMBER && t != LUA_TSTRING) {
            lua_newtable(L);
            lua_pushstring(L, "ERR Lua redis lib command arguments must be strings or integers");
            lua_setfield(L, -2, "err");
            return lua_error(L);
        }
        size_t n;
        argv[i].ptr = lua_tolstring(L, i + 1, &n);
        argv[i].len = n;
    }
    if (argc == 0) {
        lua_newtable(L);
        lua_pushstring(L, "ERR Please specify at least one argument for this redis lib call");
        lua_setfield(L, -2, "err");
        return lua_error(L);
    }
    const struct cmd_desc *d = cmd_lookup(argv[0].ptr, argv[0].len);
    if (d == NULL || (argc >= 2 && (d->flags & CMD_SUBCMDS) &&
                      cmd_stat_row(d, (size_t)argc, argv) == CMD_ROW_NONE)) {
        lua_newtable(L); /* an error reply, as Redis's luaPushError: pcall gives its text */
        lua_pushstring(L, "ERR Invalid command passed to redis.acl_check_cmd()");
        lua_setfield(L, -2, "err");
        return lua_error(L);
    }
    bool ok = vm->x == NULL || acl_verdict(vm->x, d, (size_t)argc, argv, false) == USERS_OK;
    lua_pushboolean(L, ok);
    return 1;
}

static void set_str(lua_State *L, const char *name, const char *v)
{
    lua_pushstring(L, v);
    lua_setfield(L, -2, name);
}

static void set_version(lua_State *L)
{
    set_str(L, "REDIS_VERSION", KVD_REDIS_VERSION);
    set_num(L, "REDIS_VERSION_NUM", KVD_REDIS_VERSION_NUM);
}

static void set_log_levels(lua_State *L)
{
    set_num(L, "LOG_DEBUG", 0);
    set_num(L, "LOG_VERBOSE", 1);
    set_num(L, "LOG_NOTICE", 2);
    set_num(L, "LOG_WARNING", 3);
}

static void make_fn_env(lua_State *L, struct script_vm *vm);
static void push_proxy(lua_State *L, lua_CFunction index, int nup);
static int l_errfunc(lua_State *L);

static struct script_vm *vm_create(bool fn, uint64_t gen)
{
    struct script_vm *vm = calloc(1, sizeof *vm);
    KV_ASSERT(vm != NULL);
    lua_State *L = luaL_newstate();
    KV_ASSERT(L != NULL);
    vm->L = L;
    vm->gen = gen;
    vm->fn = fn;
    open_lib(L, "", luaopen_base);
    open_lib(L, LUA_TABLIBNAME, luaopen_table);
    open_lib(L, LUA_STRLIBNAME, luaopen_string);
    open_lib(L, LUA_MATHLIBNAME, luaopen_math);
    open_lib(L, "cjson", luaopen_cjson);
    open_lib(L, "bit", luaopen_bit);
    open_lib(L, "cmsgpack", luamp_open);
    open_lib(L, "struct", luastruct_open);
    static const char *const removed[] = {"dofile",  "loadfile", "print",
                                          "getfenv", "setfenv",  "newproxy"};
    for (size_t i = 0; i < KV_ARRAY_LEN(removed); i++) {
        lua_pushnil(L);
        lua_setglobal(L, removed[i]);
    }
    lua_pushcfunction(L, l_loadstring);
    lua_setglobal(L, "loadstring");
    lua_pushcfunction(L, l_unpack);
    lua_setglobal(L, "unpack");
    lua_getglobal(L, "bit");
    lua_pushcfunction(L, l_bit_tohex);
    lua_setfield(L, -2, "tohex");
    lua_pop(L, 1);
    lua_getglobal(L, "cjson");
    cjson_guard(L, -1);
    lua_getfield(L, -1, "new");
    lua_pushcclosure(L, l_cjson_new, 1);
    lua_setfield(L, -2, "new");
    lua_pop(L, 1);
    lua_newtable(L); /* redis */
    set_fn(L, vm, "call", l_call);
    set_fn(L, vm, "pcall", l_pcall);
    set_fn(L, vm, "error_reply", l_error_reply);
    set_fn(L, vm, "status_reply", l_status_reply);
    set_fn(L, vm, "sha1hex", l_sha1hex);
    set_fn(L, vm, "log", l_log);
    set_fn(L, vm, "setresp", l_setresp);
    set_fn(L, vm, "set_repl", l_nothing);
    set_fn(L, vm, "acl_check_cmd", l_acl_check_cmd);
    if (!fn) { /* EVAL's only, as in Redis */
        set_fn(L, vm, "replicate_commands", l_true);
        set_fn(L, vm, "breakpoint", l_nothing);
        set_fn(L, vm, "debug", l_nothing);
    }
    set_log_levels(L);
    set_version(L);
    set_num(L, "REPL_NONE", 0);
    set_num(L, "REPL_AOF", 1);
    set_num(L, "REPL_SLAVE", 2);
    set_num(L, "REPL_REPLICA", 2);
    set_num(L, "REPL_ALL", 3);
    lua_setglobal(L, "redis");
    lua_pushcfunction(L, l_load);
    lua_setglobal(L, "load");
    lua_pushcfunction(L, l_next);
    lua_setglobal(L, "next");
    lua_pushcfunction(L, l_pairs);
    lua_setglobal(L, "pairs");
    lua_pushcfunction(L, l_pcall_compat);
    lua_setglobal(L, "pcall");
    static const char *const libs[] = {"string",   "table",  "math",      "cjson", "bit",
                                       "cmsgpack", "struct", "coroutine", "redis"};
    for (size_t i = 0; i < KV_ARRAY_LEN(libs); i++) {
        protect_global(L, libs[i]);
    }
    /* strings' methods through the read-only proxy, and their metatable out of reach */
    lua_pushstring(L, "");
    lua_getmetatable(L, -1);
    lua_getglobal(L, "string");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    show_metatable(L, -1);
    lua_pop(L, 1);
    lua_pushlightuserdata(L, vm);
    lua_setfield(L, LUA_REGISTRYINDEX, "kvd_vm");
    lua_sethook(L, l_hook, LUA_MASKCOUNT, SCRIPT_HOOK_EVERY);
    lua_newtable(L); /* compiled scripts by sha, in the registry */
    reg_set(L, &rk_scripts);
    lua_pushcfunction(L, l_errfunc);
    reg_set(L, &rk_errfunc);
    lua_newtable(L); /* and the shebang flags of those that have them */
    reg_set(L, &rk_sflags);
    /* Scripts run in an environment that is a read-only proxy of the globals (Redis's
     * globals are read-only tables; stock Lua has none): writes raise, reads of missing
     * names raise, _G names the proxy, and rawset / setmetatable refuse the protected
     * tables. */
    push_proxy(L, l_global_index, 0); /* the environment */
    show_metatable(L, -1);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "kvd_env");
    lua_pushvalue(L, LUA_GLOBALSINDEX);
    see_through(L, -2, -1);
    lua_pop(L, 1);
    lua_setglobal(L, "_G");
    guard_base(L);
    if (fn) {
        make_fn_env(L, vm);
    }
    return vm;
}

/* The shard's interpreter, made (again, after SCRIPT FLUSH) as needed. */
static struct script_vm *vm_get(struct shard *sh)
{
    struct script_vm *vm = sh->script;
    if (vm != NULL && vm->gen != atomic_load(&reg_gen)) {
        script_vm_free(vm);
        vm = NULL;
    }
    if (vm == NULL) {
        vm = vm_create(false, atomic_load(&reg_gen));
        sh->script = vm;
        script_vm_publish(vm, sh);
    }
    return vm;
}

static bool vm_has(struct script_vm *vm, const char *sha)
{
    reg_push(vm->L, &rk_scripts);
    lua_getfield(vm->L, -1, sha);
    bool has = lua_isfunction(vm->L, -1);
    lua_pop(vm->L, 2);
    return has;
}

/* Compiles `body` as script `sha` into the interpreter (if it is not there yet) and
 * registers it server-wide. False after replying Redis's compile error into `out`. */
const char *const script_fn_flag_names[SCRIPT_FN_FLAGS] = {"no-writes", "allow-oom", "allow-stale",
                                                           "no-cluster", "allow-cross-slot-keys"};

/* The bit of flag name s[0..n) (the shebang's exact names, or register_function's in any
 * case), or -1. */
static int fn_flag_bit(const char *s, size_t n, bool nocase)
{
    for (int b = 0; b < SCRIPT_FN_FLAGS; b++) {
        const char *f = script_fn_flag_names[b];
        if (strlen(f) == n && (nocase ? strncasecmp(f, s, n) : memcmp(f, s, n)) == 0) {
            return b;
        }
    }
    return -1;
}

/*
 * A script's shebang line ("#!lua flags=no-writes,allow-oom"), as Redis 7 reads it: -1
 * without one (Redis's compatibility mode), else its flags (*skip: the line's length);
 * -2 with the error in err.
 */
static int64_t eval_shebang(const char *body, size_t len, size_t *skip, char *err, size_t cap)
{
    *skip = 0;
    if (len < 2 || memcmp(body, "#!", 2) != 0) {
        return -1;
    }
    const char *nl = memchr(body, '\n', strnlen(body, len)); /* (a NUL ends it, as in Redis) */
    if (nl == NULL) {
        snprintf(err, cap, "ERR Invalid script shebang");
        return -2;
    }
    *skip = (size_t)(nl - body);
    size_t n = strnlen(body, *skip), i = 0, olen, count = 0;
    char *buf = malloc(n + 1);
    KV_ASSERT(buf != NULL);
    int r;
    while ((r = kv_splitargs_next(body, n, &i, buf, &olen)) == 1) {
        count++;
    }
    int64_t flags = -2;
    if (r < 0 || count == 0) {
        snprintf(err, cap, "ERR Invalid engine in script shebang");
        goto out;
    }
    i = 0;
    kv_splitargs_next(body, n, &i, buf, &olen);
    buf[olen] = '\0';
    if (strcmp(buf, "#!lua") != 0) {
        snprintf(err, cap, "ERR Unexpected engine in script shebang: %s", buf);
        goto out;
    }
    uint32_t f = 0;
    while (kv_splitargs_next(body, n, &i, buf, &olen) == 1) {
        buf[olen] = '\0';
        if (strncmp(buf, "flags=", 6) != 0) {
            snprintf(err, cap, "ERR Unknown lua shebang option: %s", buf);
            goto out;
        }
        for (char *p = buf + 6; olen > 6;) { /* comma-separated, exact names */
            char *comma = strchr(p, ',');
            size_t plen = comma != NULL ? (size_t)(comma - p) : strlen(p);
            int bit = fn_flag_bit(p, plen, false);
            if (bit < 0) {
                snprintf(err, cap, "ERR Unexpected flag in script shebang: %.*s", (int)plen, p);
                goto out;
            }
            f |= 1u << bit;
            if (comma == NULL) {
                break;
            }
            p = comma + 1;
        }
    }
    flags = f;
out:
    free(buf);
    return flags;
}

static bool vm_load(struct script_vm *vm, const char *sha, const char *body, size_t len,
                    struct resp_out *out)
{
    if (vm_has(vm, sha)) {
        reg_add(sha, body, len); /* after a SCRIPT FLUSH elsewhere, say */
        return true;
    }
    char err[1024];
    size_t skip;
    int64_t flags = eval_shebang(body, len, &skip, err, sizeof err);
    if (flags == -2) {
        reply_error(out, "%s", err);
        return false;
    }
    lua_State *L = vm->L;
    reg_push(L, &rk_scripts);
    /* (without the shebang line, but with its newline: lines keep their numbers) */
    if (luaL_loadbuffer(L, body + skip, len - skip, SCRIPT_CHUNK) != 0) {
        reply_error(out, "ERR Error compiling script (new function): %s", lua_tostring(L, -1));
        lua_pop(L, 2);
        return false;
    }
    lua_getfield(L, LUA_REGISTRYINDEX, "kvd_env");
    lua_setfenv(L, -2);
    lua_setfield(L, -2, sha);
    lua_pop(L, 1);
    if (flags >= 0) {
        reg_push(L, &rk_sflags);
        lua_pushnumber(L, (lua_Number)flags);
        lua_setfield(L, -2, sha);
        lua_pop(L, 1);
    }
    reg_add(sha, body, len);
    return true;
}

int64_t script_flags(size_t argc, const struct resp_arg *argv)
{
    if (argc < 2) {
        return -1;
    }
    char err[1024], sha[KV_SHA1_HEX];
    size_t skip, len = argv[1].len;
    bool by_sha = argv[0].len >= 7 && strncasecmp(argv[0].ptr, "evalsha", 7) == 0;
    if (!by_sha) {
        int64_t flags = eval_shebang(argv[1].ptr, len, &skip, err, sizeof err);
        return flags < 0 ? -1 : flags;
    }
    if (len != 40) {
        return -1;
    }
    for (size_t i = 0; i < 40; i++) {
        sha[i] = (char)tolower((unsigned char)argv[1].ptr[i]);
    }
    sha[40] = '\0';
    char *body = reg_get(sha, &len);
    int64_t flags = body != NULL ? eval_shebang(body, len, &skip, err, sizeof err) : -1;
    free(body);
    return flags < 0 ? -1 : flags;
}

/* Pushes compiled script sha and sets *flags to its shebang flags (-1: none); false
 * (nothing pushed) if the interpreter has not compiled it. One interned sha per call. */
static bool vm_fetch(struct script_vm *vm, const char *sha, int64_t *flags)
{
    lua_State *L = vm->L;
    lua_pushlstring(L, sha, 40);
    reg_push(L, &rk_scripts);
    lua_pushvalue(L, -2);
    lua_rawget(L, -2);
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 3);
        return false;
    }
    lua_replace(L, -2); /* sha, fn */
    reg_push(L, &rk_sflags);
    lua_pushvalue(L, -3);
    lua_rawget(L, -2);
    *flags = lua_isnumber(L, -1) ? (int64_t)lua_tonumber(L, -1) : -1;
    lua_pop(L, 2);
    lua_remove(L, -2); /* fn */
    return true;
}

/* ---- running a script ---------------------------------------------------------------- */

/* The error handler of a script's call: {e = the error, line = the script's line}. */
static int l_errfunc(lua_State *L)
{
    int line = 0;
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        lua_getinfo(L, "Sl", &ar);
        if ((strcmp(ar.source, SCRIPT_CHUNK) == 0 || strcmp(ar.source, FUNCTION_CHUNK) == 0) &&
            ar.currentline > 0) {
            line = ar.currentline;
            break;
        }
    }
    lua_newtable(L);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "e");
    lua_pushnumber(L, line);
    lua_setfield(L, -2, "line");
    return 1;
}

/* Sets the global table `name` (KEYS, ARGV) to args[0..n), past the read-only guard. */
static void push_args(lua_State *L, const struct resp_arg *args, size_t n);

static void set_args(lua_State *L, const char *name, const struct resp_arg *args, size_t n)
{
    lua_pushstring(L, name);
    push_args(L, args, n);
    lua_rawset(L, LUA_GLOBALSINDEX);
}

/* A Lua number as Redis turns it into an integer reply (truncation; what x86 gives for
 * NaN and out-of-range values). */
static int64_t lua_to_i64(lua_Number d)
{
    if (!(d > -9223372036854775808.0 && d < 9223372036854775808.0)) {
        return INT64_MIN;
    }
    return (int64_t)d;
}

/* Writes the value on top of the stack as the script's reply (RESP2 rules). */
static void reply_value(lua_State *L, struct resp_out *o, int depth, int sresp);

/* The big number string on top (popped), CR and LF turned into spaces as Redis writes
 * it. Not inlined: its buffer stays out of the recursive frames of reply_value. */
static __attribute__((noinline)) void reply_bignum(lua_State *L, struct resp_out *o)
{
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++) {
        luaL_addchar(&b, s[i] == '\r' || s[i] == '\n' ? ' ' : s[i]);
    }
    luaL_pushresult(&b);
    s = lua_tolstring(L, -1, &n);
    if (resp_out_proto(o) == 3) {
        reply_raw(o, "(", 1);
        reply_raw(o, s, n);
        reply_raw(o, "\r\n", 2);
    } else {
        reply_bulk(o, s, n);
    }
    lua_pop(L, 2);
}

/* Pushes t[name] of the table on top (raw: no metamethod runs outside the pcall). */
static int raw_field(lua_State *L, const char *name)
{
    lua_pushstring(L, name);
    lua_rawget(L, -2);
    return lua_type(L, -1);
}

/* The number of pairs of the table on top. */
static size_t pairs_count(lua_State *L)
{
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        lua_pop(L, 1);
        n++;
    }
    return n;
}

/*
 * The typed replies a script may return, as Redis 7 reads them, in its order:
 * {double = n}, {big_number = s}, {verbatim_string = {format = f, string = s}},
 * {map = t}, {set = t}; written in the client's protocol (RESP2: bulk strings, a flat
 * array, an array). True if the table on top was one.
 */
static bool reply_typed(lua_State *L, struct resp_out *o, int depth, int sresp)
{
    bool resp3 = resp_out_proto(o) == 3;
    if (raw_field(L, "double") == LUA_TNUMBER) {
        char num[64]; /* %.17g, as Redis writes doubles: "inf", "-nan" included */
        int k = snprintf(num, sizeof num, "%s%.17g\r\n", resp3 ? "," : "", lua_tonumber(L, -1));
        lua_pop(L, 1);
        if (resp3) {
            reply_raw(o, num, (size_t)k);
        } else {
            reply_bulk(o, num, (size_t)k - 2);
        }
        return true;
    }
    lua_pop(L, 1);
    if (raw_field(L, "big_number") == LUA_TSTRING) {
        reply_bignum(L, o);
        return true;
    }
    lua_pop(L, 1);
    if (raw_field(L, "verbatim_string") == LUA_TTABLE) {
        int tf = raw_field(L, "format");
        lua_insert(L, -2);
        int ts = raw_field(L, "string");
        if (tf == LUA_TSTRING && ts == LUA_TSTRING) {
            size_t fn, n;
            const char *f = lua_tolstring(L, -3, &fn), *s = lua_tolstring(L, -1, &n);
            char fmt[3] = {fn > 0 ? f[0] : ' ', fn > 1 ? f[1] : ' ', fn > 2 ? f[2] : ' '};
            (void)resp_out_verbatim(o, fmt, s, n);
            lua_pop(L, 3);
            return true;
        }
        lua_pop(L, 3);
    } else {
        lua_pop(L, 1);
    }
    if (raw_field(L, "map") == LUA_TTABLE) {
        reply_map(o, pairs_count(L));
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) { /* key, value */
            lua_pushvalue(L, -2);
            reply_value(L, o, depth + 1, sresp);
            lua_pop(L, 1);
            reply_value(L, o, depth + 1, sresp);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        return true;
    }
    lua_pop(L, 1);
    if (raw_field(L, "set") == LUA_TTABLE) {
        reply_set(o, pairs_count(L));
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) { /* its keys are the members */
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            reply_value(L, o, depth + 1, sresp);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        return true;
    }
    lua_pop(L, 1);
    return false;
}

static void reply_value(lua_State *L, struct resp_out *o, int depth, int sresp)
{
    switch (lua_type(L, -1)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        reply_bulk(o, s, n);
        return;
    }
    case LUA_TBOOLEAN:
        if (sresp == 3) { /* after redis.setresp(3), as Redis: #t / #f (RESP2: :1 / :0) */
            (void)resp_out_bool(o, lua_toboolean(L, -1));
        } else if (lua_toboolean(L, -1)) {
            reply_int(o, 1);
        } else {
            reply_null(o);
        }
        return;
    case LUA_TNUMBER:
        reply_int(o, lua_to_i64(lua_tonumber(L, -1)));
        return;
    case LUA_TTABLE: {
        if (depth >= SCRIPT_DEPTH_MAX || !lua_checkstack(L, 4)) {
            reply_error(o, "ERR reached lua stack limit");
            return;
        }
        lua_pushstring(L, "err"); /* raw reads: no metamethod runs outside the pcall */
        lua_rawget(L, -2);
        if (lua_type(L, -1) == LUA_TSTRING) {
            size_t n;
            const char *s = lua_tolstring(L, -1, &n);
            if (error_seen(L, -2)) {
                reply_error_seen(o, s, n);
            } else {
                reply_error_text(o, s, n);
            }
            lua_pop(L, 1);
            return;
        }
        lua_pop(L, 1);
        lua_pushstring(L, "ok");
        lua_rawget(L, -2);
        if (lua_type(L, -1) == LUA_TSTRING) {
            reply_simple(o, lua_tostring(L, -1));
            lua_pop(L, 1);
            return;
        }
        lua_pop(L, 1);
        if (reply_typed(L, o, depth, sresp)) {
            return;
        }
        size_t n = 0;
        for (;;) {
            lua_rawgeti(L, -1, (int)n + 1);
            bool end = lua_isnil(L, -1);
            lua_pop(L, 1);
            if (end) {
                break;
            }
            n++;
        }
        reply_array(o, n);
        for (size_t i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, (int)i);
            reply_value(L, o, depth + 1, sresp);
            lua_pop(L, 1);
        }
        return;
    }
    default:
        reply_null(o);
        return;
    }
}

/* The reply of a script (`name`: its sha, or the function's name) that raised an error:
 * Redis 7's text and suffix. */
static void reply_raised(lua_State *L, struct resp_out *o, const char *name, const char *chunk)
{
    int line = 0;
    char msg[1024];
    if (lua_istable(L, -1)) { /* raw reads: no metamethod runs outside the pcall */
        lua_pushstring(L, "line");
        lua_rawget(L, -2);
        line = (int)lua_tonumber(L, -1);
        lua_pop(L, 1);
        lua_pushstring(L, "e");
        lua_rawget(L, -2);
    } else {
        lua_pushvalue(L, -1);
    }
    bool seen = false;
    if (lua_istable(L, -1)) {
        seen = error_seen(L, -1);
        lua_pushstring(L, "err");
        lua_rawget(L, -2);
        const char *e = lua_tostring(L, -1);
        snprintf(msg, sizeof msg, "%s",
                 e != NULL ? e : "ERR Script raised an error that is no string and no error reply");
        lua_pop(L, 1);
    } else {
        const char *e = lua_tostring(L, -1);
        snprintf(msg, sizeof msg, "ERR %s", e != NULL ? e : "(error object is not a string)");
    }
    lua_pop(L, 1);
    char text[1200];
    int n;
    if (line > 0) {
        n = snprintf(text, sizeof text, "%s script: %s, on %s:%d.", msg, name, chunk, line);
    } else {
        n = snprintf(text, sizeof text, "%s script: %s, on %s:?.", msg, name, chunk);
    }
    if (n < 0) {
        n = 0;
    }
    size_t len = (size_t)n < sizeof text ? (size_t)n : sizeof text - 1;
    if (seen) { /* a command's error, counted as that command's */
        reply_error_seen(o, text, len);
    } else {
        reply_error_text(o, text, len);
    }
}

const char *script_numkeys(size_t argc, const struct resp_arg *argv, size_t *numkeys)
{
    int64_t n;
    if (!cmd_parse_i64(&argv[2], &n)) {
        bool fcall = argv[0].len > 0 && (argv[0].ptr[0] == 'f' || argv[0].ptr[0] == 'F');
        return fcall ? "ERR Bad number of keys provided"
                     : "ERR value is not an integer or out of range";
    }
    if (n < 0) {
        return "ERR Number of keys can't be negative";
    }
    if ((uint64_t)n > argc - 3) {
        return "ERR Number of keys can't be greater than number of args";
    }
    *numkeys = (size_t)n;
    return NULL;
}

/* Pushes a table of args[0..n). */
static void push_args(lua_State *L, const struct resp_arg *args, size_t n)
{
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushlstring(L, args[i].ptr, args[i].len);
        lua_rawseti(L, -2, (int)i + 1);
    }
}

/* Runs the function below its `nargs` arguments on the stack (above l_errfunc) as the
 * script `name` of command x with `numkeys` keys; writes its reply. */
static void vm_call(struct script_vm *vm, struct cmd_ctx *x, int nargs, const char *name,
                    size_t numkeys)
{
    lua_State *L = vm->L;
    int base = lua_gettop(L) - nargs - 2;
    KV_ASSERT(vm->x == NULL); /* scripts do not nest (EVAL is refused in scripts) */
    vm->x = x;
    vm->db = x->db;
    vm->wrote = false;
    vm->read = false;
    vm->kill_gen = atomic_load(&kill_gen[vm->fn]);
    vm->run_name = name;
    vm->resp = 2;
    vm->start_ns = shard_cmd_clock(x->sh);
    atomic_fetch_add(&scripts_running[vm->fn], 1);
    int rc = lua_pcall(L, nargs, 1, base + 1);
    undoom(L, vm);
    busy_leave(vm, x->sh->srv);
    if (vm->published) {
        unpublish_running(vm, x->sh);
    }
    atomic_fetch_sub(&scripts_running[vm->fn], 1);
    if (vm->wrote) {
        atomic_fetch_sub(&scripts_wrote[vm->fn], 1);
    }
    if (vm->read && x->track > 0) {
        /* As Redis 7.2: a script that read anything counts as a read of its declared
         * keys (here, those of this shard: a script over several shards has the keys its
         * commands read remembered where they are). */
        track_remember_local(x->sh, x->track - 1, x->caller_id, x->argv + 3, numkeys);
    }
    const char *chunk = vm->fn ? FUNCTION_CHUNK : SCRIPT_CHUNK;
    if (rc == 0) {
        reply_value(L, x->out, 0, vm->resp); /* (booleans: by the script's protocol) */
    } else if (rc == LUA_ERRMEM) {
        reply_error(x->out, "ERR script ran out of memory script: %s, on %s:?.", name, chunk);
    } else {
        reply_raised(L, x->out, name, chunk);
    }
    vm->x = NULL;
    lua_settop(L, base);
    /* Some collection every SCRIPT_GC_PERIOD scripts, of that many steps (Redis's pace):
     * a step per script costs more than the script itself for small ones. */
    if (++vm->gc_count >= SCRIPT_GC_PERIOD) {
        vm->gc_count = 0;
        lua_gc(L, LUA_GCSTEP, SCRIPT_GC_PERIOD);
    }
    script_vm_publish(vm, x->sh);
}

/* Runs the compiled script `sha` with its keys and arguments; writes its reply. */
static void vm_run(struct script_vm *vm, struct cmd_ctx *x, const char *sha, size_t numkeys,
                   bool ro, int64_t flags)
{
    lua_State *L = vm->L;
    KV_ASSERT(lua_isfunction(L, -1)); /* vm_fetch's */
    reg_push(L, &rk_errfunc);         /* (one closure, not one per call) */
    lua_insert(L, -2);
    set_args(L, "KEYS", x->argv + 3, numkeys);
    set_args(L, "ARGV", x->argv + 3 + numkeys, x->argc - 3 - numkeys);
    vm->ro = ro || (flags >= 0 && (flags & SCRIPT_FN_NO_WRITES));
    vm->allow_oom = flags >= 0 && (flags & SCRIPT_FN_ALLOW_OOM);
    vm_call(vm, x, 0, sha, numkeys);
}

/* EVAL, EVAL_RO, EVALSHA, EVALSHA_RO: argv[1] is the body or the sha. */
void cmd_eval(struct cmd_ctx *x)
{
    bool by_sha = cmd_arg_is(&x->argv[0], "evalsha") || cmd_arg_is(&x->argv[0], "evalsha_ro");
    const struct resp_arg *a = &x->argv[1];
    if (by_sha && a->len != 40) { /* Redis's first check */
        reply_error(x->out, "NOSCRIPT No matching script. Please use EVAL.");
        return;
    }
    size_t numkeys;
    const char *err = script_numkeys(x->argc, x->argv, &numkeys);
    if (err != NULL) {
        reply_error(x->out, "%s", err);
        return;
    }
    struct script_vm *vm = vm_get(x->sh);
    char sha[KV_SHA1_HEX];
    if (by_sha) {
        for (size_t i = 0; i < 40; i++) {
            sha[i] = (char)tolower((unsigned char)a->ptr[i]);
        }
        sha[40] = '\0';
    } else {
        kv_sha1_hex(a->ptr, a->len, sha);
    }
    int64_t flags;
    if (!vm_fetch(vm, sha, &flags)) { /* compiled here first */
        if (by_sha) {
            size_t len;
            char *body = reg_get(sha, &len);
            if (body == NULL) {
                reply_error(x->out, "NOSCRIPT No matching script. Please use EVAL.");
                return;
            }
            bool ok = vm_load(vm, sha, body, len, x->out);
            free(body);
            KV_ASSERT(ok); /* it compiled when it was registered */
        } else if (!vm_load(vm, sha, a->ptr, a->len, x->out)) {
            return;
        }
        bool found = vm_fetch(vm, sha, &flags);
        KV_ASSERT(found);
    } /* (compiled here: in the registry since, or vm_get would have dropped it) */
    /* With a shebang the script's flags rule, as Redis 7's (without, its old rules) */
    bool ro = cmd_arg_is(&x->argv[0], "eval_ro") || cmd_arg_is(&x->argv[0], "evalsha_ro");
    const char *err2 = NULL;
    if (flags >= 0 && ro && !(flags & SCRIPT_FN_NO_WRITES)) {
        err2 = "ERR Can not execute a script with write flag using *_ro command.";
    } else if (flags >= 0 && !(flags & (SCRIPT_FN_NO_WRITES | SCRIPT_FN_ALLOW_OOM)) &&
               KV_CONF_GET(kvd_settings.maxmemory) != 0 && evict_refuses(x->sh)) {
        err2 = "OOM command not allowed when used memory > 'maxmemory'.";
    }
    if (err2 != NULL) {
        lua_pop(vm->L, 1);
        reply_error(x->out, "%s", err2);
        return;
    }
    vm_run(vm, x, sha, numkeys, ro, flags);
}

/* SCRIPT LOAD / EXISTS / FLUSH / KILL / HELP, on the client's shard. */
void cmd_script(struct cmd_ctx *x)
{
    const struct resp_arg *sub = &x->argv[1];
    if (cmd_arg_is(sub, "load") && x->argc == 3) {
        struct script_vm *vm = vm_get(x->sh);
        char sha[KV_SHA1_HEX];
        kv_sha1_hex(x->argv[2].ptr, x->argv[2].len, sha);
        if (vm_load(vm, sha, x->argv[2].ptr, x->argv[2].len, x->out)) {
            reply_bulk(x->out, sha, 40);
        }
    } else if (cmd_arg_is(sub, "exists") && x->argc >= 3) {
        reply_array(x->out, x->argc - 2);
        for (size_t i = 2; i < x->argc; i++) {
            char sha[KV_SHA1_HEX];
            bool ok = x->argv[i].len == 40;
            for (size_t j = 0; ok && j < 40; j++) {
                sha[j] = (char)tolower((unsigned char)x->argv[i].ptr[j]);
            }
            sha[40] = '\0';
            reply_int(x->out, ok && reg_has(sha) ? 1 : 0);
        }
    } else if (cmd_arg_is(sub, "flush")) {
        if (x->argc > 3 || (x->argc == 3 && !cmd_arg_is(&x->argv[2], "sync") &&
                            !cmd_arg_is(&x->argv[2], "async"))) {
            reply_error(x->out, "ERR SCRIPT FLUSH only support SYNC|ASYNC option");
            return;
        }
        reg_flush(); /* every shard drops its interpreter at its next script */
        reply_ok(x->out);
    } else if (cmd_arg_is(sub, "kill") && x->argc == 2) {
        script_kill(x->out, false);
    } else if (cmd_arg_is(sub, "debug") && x->argc == 3) {
        /* kvd has no Lua debugger (Redis's LDB): NO, the default, is all it accepts */
        const struct resp_arg *mode = &x->argv[2];
        if (x->conn != NULL && conn_in_multi(x->conn)) {
            reply_error(x->out, "ERR SCRIPT DEBUG must be called outside a pipeline");
        } else if (cmd_arg_is(mode, "no")) {
            reply_ok(x->out);
        } else if (cmd_arg_is(mode, "yes") || cmd_arg_is(mode, "sync")) {
            reply_error(x->out, "ERR SCRIPT DEBUG YES and SYNC are not supported: kvd has no "
                                "Lua debugger");
        } else {
            reply_error(x->out, "ERR Use SCRIPT DEBUG YES/SYNC/NO");
        }
    } else if (cmd_arg_is(sub, "help") && x->argc == 2) {
        static const char *const help[] = {
            "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "DEBUG NO",
            "    Set the debug mode for subsequent scripts executed: only NO (kvd has no Lua",
            "    debugger; YES and SYNC are refused).",
            "EXISTS <sha1> [<sha1> ...]",
            "    Return information about the existence of the scripts in the script cache.",
            "FLUSH [ASYNC|SYNC]",
            "    Flush the Lua scripts cache. Very dangerous on replicas.",
            "    When called without the optional mode argument, the behavior is determined by the",
            "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
            "    * ASYNC: Asynchronously flush the scripts cache.",
            "    * SYNC: Synchronously flush the scripts cache.",
            "KILL",
            "    Kill the currently executing Lua script.",
            "LOAD <script>",
            "    Load a script into the scripts cache without executing it.",
            "HELP",
            "    Prints this help.",
        };
        reply_lines(x->out, help, KV_ARRAY_LEN(help));
    } else if (cmd_arg_is(sub, "load") || cmd_arg_is(sub, "exists") || cmd_arg_is(sub, "kill") ||
               cmd_arg_is(sub, "help") || cmd_arg_is(sub, "debug")) {
        cmd_reply_sub_arity(x);
    } else {
        cmd_reply_unknown_subcommand(x);
    }
}

void script_kill(struct resp_out *out, bool functions)
{
    int running = atomic_load(&scripts_running[functions]);
    int wrote = atomic_load(&scripts_wrote[functions]);
    int others = atomic_load(&scripts_running[!functions]);
    if (running == 0 && others > 0) { /* the other kind runs: Redis's replies */
        if (atomic_load(&scripts_wrote[!functions]) >= others) {
            running = others; /* UNKILLABLE comes first, as in Redis */
            wrote = others;
        } else {
            reply_error(out, "%s", functions ? SCRIPT_BUSY_EVAL_TEXT : SCRIPT_BUSY_FN_TEXT);
            return;
        }
    }
    if (running == 0) {
        reply_error(out, "NOTBUSY No scripts in execution right now.");
    } else if (wrote >= running) {
        reply_error(out, "UNKILLABLE Sorry the script already executed write commands "
                         "against the dataset. You can either wait the script "
                         "termination or kill the server in a hard way using the "
                         "SHUTDOWN NOSAVE command.");
    } else {
        atomic_fetch_add(&kill_gen[functions], 1);
        reply_ok(out);
    }
}

/* ---- functions (FCALL): libraries loaded into a functions interpreter ----------------- */

/* __index of a read-only proxy whose upvalue 1 is the real table: a missing name is an
 * error, as a missing global is. */
static int l_strict_index(lua_State *L)
{
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    if (!lua_isnil(L, -1)) {
        return 1;
    }
    const char *name = lua_tostring(L, 2);
    return raise_missing(L, name);
}

/* __index of the libraries' environment: while a library loads, only `redis` (the
 * load-time one, upvalue 2) exists; when its functions run, the scripts' globals. */
static int l_fenv_index(lua_State *L)
{
    struct script_vm *vm = lua_touserdata(L, lua_upvalueindex(1));
    if (!vm->loading) {
        return l_global_index(L);
    }
    const char *name = lua_tostring(L, 2);
    if (name != NULL && strcmp(name, "redis") == 0) {
        lua_pushvalue(L, lua_upvalueindex(2));
        return 1;
    }
    return raise_missing(L, name);
}

/* Pushes an empty read-only proxy whose __index is `index` with the nup upvalues on
 * top of the stack (which it consumes). */
static void push_proxy(lua_State *L, lua_CFunction index, int nup)
{
    lua_pushcclosure(L, index, nup);
    push_readonly(L);
    lua_remove(L, -2);
}

bool script_valid_name(const char *s, size_t n)
{
    if (n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]) && s[i] != '_') {
            return false;
        }
    }
    return true;
}

/* Raises {err = "ERR <msg>"} (no position: Redis's register_function errors have none). */
static int raise_err(lua_State *L, const char *msg)
{
    lua_newtable(L);
    lua_pushfstring(L, "ERR %s", msg);
    lua_setfield(L, -2, "err");
    return lua_error(L);
}

/* redis.register_function(name, callback) or redis.register_function{function_name = ,
 * callback = , flags = , description = }: adds an entry {name, cb, flags, desc} to the
 * library being loaded (registry kvd_loading). */
static int l_register(lua_State *L)
{
    if (!vm_of(L)->loading) { /* the load-time table kept by a function, called later */
        return raise_err(L, "redis.register_function can only be called on FUNCTION LOAD "
                            "command");
    }
    int argc = lua_gettop(L);
    const char *name = NULL, *desc = NULL;
    size_t name_len = 0, desc_len = 0;
    int cb = 0; /* stack index of the callback */
    uint32_t flags = 0;
    if (argc == 1) {
        if (!lua_istable(L, 1)) {
            return raise_err(L, "calling redis.register_function with a single argument is "
                                "only applicable to Lua table (representing named arguments).");
        }
        /* the named arguments but flags: their key, whether a string (numbers pass, as
         * lua_isstring says) or a function, Redis's error */
        static const struct {
            const char *key;
            bool string;
            const char *err;
        } named[] = {
            {"function_name", true,
             "function_name argument given to redis.register_function must be a string"},
            {"description", true,
             "description argument given to redis.register_function must be a string"},
            {"callback", false,
             "callback argument given to redis.register_function must be a function"},
        };
        bool has[3] = {false, false, false};
        lua_pushnil(L);
        while (lua_next(L, 1) != 0) {   /* key at -2, value at -1 */
            if (!lua_isstring(L, -2)) { /* (a number passes, as in Redis: unknown below) */
                return raise_err(L, "named argument key given to redis.register_function is "
                                    "not a string");
            }
            /* no lua_tostring of a number key: it would break lua_next */
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
            size_t a = 0;
            while (a < KV_ARRAY_LEN(named) && strcmp(k, named[a].key) != 0) {
                a++;
            }
            if (a < KV_ARRAY_LEN(named)) {
                if (named[a].string ? !lua_isstring(L, -1) : !lua_isfunction(L, -1)) {
                    return raise_err(L, named[a].err);
                }
                has[a] = true;
            } else if (strcmp(k, "flags") == 0) {
                if (!lua_istable(L, -1)) {
                    return raise_err(L, "flags argument to redis.register_function must be a "
                                        "table representing function flags");
                }
                for (int i = 1;; i++) {
                    lua_rawgeti(L, -1, i);
                    if (lua_isnil(L, -1)) {
                        lua_pop(L, 1);
                        break;
                    }
                    size_t fl = 0;
                    const char *f = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &fl) : "";
                    int bit = fn_flag_bit(f, fl, true);
                    if (bit < 0) {
                        return raise_err(L, "unknown flag given");
                    }
                    flags |= 1u << bit;
                    lua_pop(L, 1);
                }
            } else {
                return raise_err(L, "unknown argument given to redis.register_function");
            }
            lua_pop(L, 1);
        }
        bool has_name = has[0], has_desc = has[1], has_cb = has[2];
        if (!has_name) {
            return raise_err(L, "redis.register_function must get a function name argument");
        }
        if (!has_cb) {
            return raise_err(L, "redis.register_function must get a callback argument");
        }
        /* the values, kept on the stack (a number converted to a string stays there) */
        lua_getfield(L, 1, "function_name");
        name = lua_tolstring(L, -1, &name_len);
        lua_getfield(L, 1, "callback");
        cb = lua_gettop(L);
        if (has_desc) {
            lua_getfield(L, 1, "description");
            desc = lua_tolstring(L, -1, &desc_len);
        }
    } else if (argc == 2) {
        if (!lua_isstring(L, 1)) {
            return raise_err(L, "first argument to redis.register_function must be a string");
        }
        if (!lua_isfunction(L, 2)) {
            return raise_err(L, "second argument to redis.register_function must be a function");
        }
        name = lua_tolstring(L, 1, &name_len);
        cb = 2;
    } else {
        return raise_err(L, "wrong number of arguments to redis.register_function");
    }
    if (!script_valid_name(name, name_len)) { /* (sic: Redis 7.0's text) */
        return raise_err(L, "Library names can only contain letters, numbers, or underscores(_) "
                            "and must be at least one character long");
    }
    lua_getfield(L, LUA_REGISTRYINDEX, "kvd_loading");
    int list = lua_gettop(L);
    int n = (int)lua_objlen(L, list);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, list, i);
        lua_getfield(L, -1, "name");
        size_t len;
        const char *other = lua_tolstring(L, -1, &len);
        if (len == name_len && memcmp(other, name, len) == 0) {
            return raise_err(L, "Function already exists in the library");
        }
        lua_pop(L, 2);
    }
    lua_createtable(L, 0, 4);
    lua_pushlstring(L, name, name_len);
    lua_setfield(L, -2, "name");
    lua_pushvalue(L, cb);
    lua_setfield(L, -2, "cb");
    lua_pushnumber(L, flags);
    lua_setfield(L, -2, "flags");
    if (desc != NULL) {
        lua_pushlstring(L, desc, desc_len);
        lua_setfield(L, -2, "desc");
    }
    lua_rawseti(L, list, n + 1);
    return 0;
}

/* The libraries' environment (registry kvd_fenv) and the table of functions by
 * lower-case name (registry kvd_fns), made with a functions interpreter. */
static void make_fn_env(lua_State *L, struct script_vm *vm)
{
    lua_newtable(L); /* the load-time redis table */
    set_fn(L, vm, "register_function", l_register);
    set_fn(L, vm, "log", l_log);
    set_log_levels(L);
    set_version(L);
    push_proxy(L, l_strict_index, 1); /* its proxy */
    lua_pushlightuserdata(L, vm);
    lua_insert(L, -2);
    push_proxy(L, l_fenv_index, 2); /* the environment: upvalues vm and that proxy */
    lua_pushvalue(L, LUA_GLOBALSINDEX);
    see_through(L, -2, -1);
    lua_pop(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "kvd_fenv");
    lua_newtable(L);
    reg_set(L, &rk_fns);
}

struct script_vm *script_fvm_new(void)
{
    return vm_create(true, 0);
}

void script_fn_infos_free(struct script_fn_info *fns, size_t n)
{
    for (size_t i = 0; fns != NULL && i < n; i++) {
        free(fns[i].name);
        free(fns[i].desc);
    }
    free(fns);
}

static char *dup_lua(lua_State *L, int idx, size_t *len)
{
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    char *d = malloc(n + 1);
    KV_ASSERT(d != NULL);
    memcpy(d, s, n);
    d[n] = '\0';
    *len = n;
    return d;
}

bool script_lib_load(struct script_vm *vm, const char *code, size_t len, size_t skip, bool timed,
                     struct script_fn_info **fns, size_t *nfns, char *err, size_t cap)
{
    KV_ASSERT(vm->fn && vm->x == NULL && skip <= len);
    lua_State *L = vm->L;
    int base = lua_gettop(L);
    *fns = NULL;
    *nfns = 0;
    if (luaL_loadbuffer(L, code + skip, len - skip, FUNCTION_CHUNK) != 0) {
        snprintf(err, cap, "ERR Error compiling function: %s", lua_tostring(L, -1));
        lua_settop(L, base);
        return false;
    }
    lua_getfield(L, LUA_REGISTRYINDEX, "kvd_fenv");
    lua_setfenv(L, -2);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "kvd_loading");
    vm->loading = true;
    vm->load_deadline_ns =
        timed ? kv_clock_mono_ns() + (uint64_t)SCRIPT_LOAD_TIMEOUT_MS * 1000000u : 0;
    int rc = lua_pcall(L, 0, 0, 0);
    undoom(L, vm);
    vm->loading = false;
    if (rc != 0) {
        const char *e = NULL;
        if (lua_istable(L, -1)) {
            lua_pushstring(L, "err");
            lua_rawget(L, -2);
            e = lua_tostring(L, -1);
        }
        if (e != NULL) {
            snprintf(err, cap, "ERR Error registering functions: %s", e);
        } else {
            const char *m = lua_tostring(L, base + 1);
            snprintf(err, cap, "ERR Error registering functions: ERR %s",
                     m != NULL ? m : (rc == LUA_ERRMEM ? "out of memory" : "(not a string)"));
        }
        lua_settop(L, base);
        return false;
    }
    lua_getfield(L, LUA_REGISTRYINDEX, "kvd_loading");
    int list = lua_gettop(L);
    size_t n = lua_objlen(L, list);
    if (n == 0) {
        snprintf(err, cap, "ERR No functions registered");
        lua_settop(L, base);
        return false;
    }
    struct script_fn_info *out = calloc(n, sizeof *out);
    KV_ASSERT(out != NULL);
    reg_push(L, &rk_fns);
    int table = lua_gettop(L);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, list, (int)i + 1);
        int e = lua_gettop(L);
        lua_getfield(L, e, "name");
        size_t name_len;
        out[i].name = dup_lua(L, -1, &name_len);
        lua_pop(L, 1);
        lua_getfield(L, e, "flags");
        out[i].flags = (uint32_t)lua_tonumber(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, e, "desc");
        if (!lua_isnil(L, -1)) {
            size_t dl;
            out[i].desc = dup_lua(L, -1, &dl);
        }
        lua_pop(L, 1);
        for (size_t k = 0; k < name_len; k++) {
            out[i].name[k] = (char)tolower((unsigned char)out[i].name[k]);
        }
        lua_pushlstring(L, out[i].name, name_len); /* kvd_fns[lower-case name] = the entry */
        lua_rawget(L, table);
        bool taken = !lua_isnil(L, -1); /* 'f' then 'F' in one library: the first, as Redis */
        lua_pop(L, 1);
        if (!taken) { /* the entry: {callback, flags, name} */
            lua_pushlstring(L, out[i].name, name_len);
            lua_createtable(L, 3, 0);
            lua_getfield(L, e, "cb");
            lua_rawseti(L, -2, FN_CB);
            lua_pushnumber(L, out[i].flags);
            lua_rawseti(L, -2, FN_FLAGS);
            lua_getfield(L, e, "name");
            lua_rawseti(L, -2, FN_NAME);
            lua_rawset(L, table);
        }
        lua_getfield(L, e, "name"); /* the name as given, back */
        memcpy(out[i].name, lua_tostring(L, -1), name_len);
        lua_pop(L, 2);
    }
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "kvd_loading");
    lua_settop(L, base);
    *fns = out;
    *nfns = n;
    return true;
}

void script_lib_unload(struct script_vm *vm, const struct script_fn_info *fns, size_t nfns)
{
    lua_State *L = vm->L;
    reg_push(L, &rk_fns);
    for (size_t i = 0; i < nfns; i++) {
        size_t n = strlen(fns[i].name);
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (size_t k = 0; k < n; k++) {
            luaL_addchar(&b, (char)tolower((unsigned char)fns[i].name[k]));
        }
        luaL_pushresult(&b);
        lua_pushnil(L);
        lua_rawset(L, -3);
    }
    lua_pop(L, 1);
}

/* Pushes the entry {FN_CB, FN_FLAGS, FN_NAME} of function `name` (any case), or returns
 * false. */
static bool fn_find(lua_State *L, const char *name, size_t len)
{
    char stack[256];
    char *low = len <= sizeof stack ? stack : malloc(len);
    KV_ASSERT(low != NULL);
    for (size_t i = 0; i < len; i++) {
        low[i] = (char)tolower((unsigned char)name[i]);
    }
    reg_push(L, &rk_fns);
    lua_pushlstring(L, low, len);
    if (low != stack) {
        free(low);
    }
    lua_rawget(L, -2);
    lua_remove(L, -2);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return false;
    }
    return true;
}

int64_t script_fn_find(struct script_vm *vm, const char *name, size_t len)
{
    lua_State *L = vm->L;
    if (!fn_find(L, name, len)) {
        return -1;
    }
    lua_rawgeti(L, -1, FN_FLAGS);
    int64_t flags = (int64_t)lua_tonumber(L, -1);
    lua_pop(L, 1);
    return flags;
}

void script_fn_forget(struct script_vm *vm)
{
    KV_ASSERT(lua_istable(vm->L, -1));
    lua_pop(vm->L, 1);
}

void script_fn_run(struct script_vm *vm, struct cmd_ctx *x, size_t numkeys)
{
    lua_State *L = vm->L;
    KV_ASSERT(lua_istable(L, -1)); /* the entry script_fn_find left */
    reg_push(L, &rk_errfunc);      /* (one closure, not one per call) */
    lua_insert(L, -2);
    lua_rawgeti(L, -1, FN_FLAGS);
    uint32_t flags = (uint32_t)lua_tonumber(L, -1);
    lua_pop(L, 1);
    lua_rawgeti(L, -1, FN_NAME);
    const char *name = lua_tostring(L, -1); /* the entry, in kvd_fns for the call, keeps it */
    lua_pop(L, 1);
    lua_rawgeti(L, -1, FN_CB);
    lua_remove(L, -2);
    push_args(L, x->argv + 3, numkeys);
    push_args(L, x->argv + 3 + numkeys, x->argc - 3 - numkeys);
    vm->ro = (flags & SCRIPT_FN_NO_WRITES) != 0;
    vm->allow_oom = (flags & SCRIPT_FN_ALLOW_OOM) != 0;
    vm_call(vm, x, 2, name, numkeys);
}
