/*
 * script: see script.h.
 */
#include "script.h"

#include "cmd.h"
#include "cmd_docs.h"
#include "conn.h"
#include "evict.h"
#include "kv_assert.h"
#include "kv_config.h"
#include "kv_log.h"
#include "kvd_settings.h"
#include "kv_sha1.h"
#include "reply.h"
#include "resp_parse.h"
#include "server.h"
#include "track.h"

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
#include <string.h>

#define SCRIPT_CHUNK      "@user_script" /* the chunk name Redis 7 gives scripts */
#define SCRIPT_DEPTH_MAX  1000           /* nested tables converted into a reply */
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
    atomic_fetch_add(&reg_gen, 1);
    pthread_mutex_unlock(&reg_mu);
}

size_t script_count(void)
{
    pthread_mutex_lock(&reg_mu);
    size_t n = reg_n;
    pthread_mutex_unlock(&reg_mu);
    return n;
}

/* ---- a shard's interpreter ------------------------------------------------------- */

struct script_vm {
    lua_State *L;
    uint64_t gen; /* the registry generation its compiled scripts belong to */
    /* the running script */
    struct cmd_ctx *x;
    uint32_t db;       /* its database: SELECT inside a script changes it, not the client's */
    bool ro;           /* EVAL_RO / EVALSHA_RO */
    bool wrote;        /* it ran a write command: SCRIPT KILL cannot stop it any more */
    bool read;         /* it ran a read-only command (CLIENT TRACKING: its keys count read) */
    uint64_t kill_gen; /* script_kill_gen when it started */
};

/* SCRIPT KILL: scripts running (on any shard) and those of them that wrote; a kill
 * bumps the generation, and each running script that has not written stops at its
 * next hook. */
static _Atomic int scripts_running, scripts_wrote;
static _Atomic uint64_t script_kill_gen;
#define SCRIPT_HOOK_EVERY 100000 /* Lua instructions between two checks */

void script_vm_free(struct script_vm *vm)
{
    if (vm != NULL) {
        lua_close(vm->L);
        free(vm);
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

static void guard_base(lua_State *L)
{
    static const char *const fns[] = {"rawset", "setmetatable"};
    for (size_t i = 0; i < KV_ARRAY_LEN(fns); i++) {
        lua_getglobal(L, fns[i]);
        lua_pushcclosure(L, l_guarded, 1);
        lua_setglobal(L, fns[i]);
    }
    lua_getfield(L, LUA_REGISTRYINDEX, "kvd_env");
    set_protected(L, -1);
    lua_pop(L, 1);
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
    lua_newtable(L);      /* proxy */
    lua_newtable(L);      /* its metatable */
    lua_pushvalue(L, -3); /* the real table */
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_global_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable"); /* getmetatable() cannot reach the real table */
    lua_setmetatable(L, -2);
    set_protected(L, -1);
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
    const char *name = lua_tostring(L, 2);
    if (name != NULL && strcmp(name, "loadstring") == 0) {
        return 0; /* Redis 7 removed it but lets scripts test for it */
    }
    char msg[256];
    snprintf(msg, sizeof msg, "Script attempted to access nonexistent global variable '%s'",
             name != NULL ? name : "?");
    return raise_at_caller(L, msg);
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
        lua_createtable(L, (int)(n < INT32_MAX ? n : 0), 0);
        for (long long i = 1; i <= n; i++) {
            push_reply(L, p, end);
            lua_rawseti(L, -2, (int)i);
        }
        return;
    }
    default:
        KV_ASSERT(!"a reply type scripts do not get (RESP2 only)");
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
static void l_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_getfield(L, LUA_REGISTRYINDEX, "kvd_vm");
    struct script_vm *vm = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (vm == NULL || vm->x == NULL) {
        return;
    }
    if (atomic_load_explicit(&vm->x->sh->srv->stopping, memory_order_relaxed)) {
        raise_reply(L, "ERR Script killed: the server is shutting down");
    }
    if (!vm->wrote && atomic_load(&script_kill_gen) != vm->kill_gen) {
        raise_reply(L, "ERR Script killed by user with SCRIPT KILL...");
    }
}

/* load(f [, name]) without binary chunks (Lua 5.1 has no bytecode verifier), and with
 * the scripts' environment. */
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

/* Whether Redis refuses the command in scripts ("noscript" in its COMMAND INFO flags,
 * for a container that of the subcommand), and the connection commands kvd cannot run
 * without a connection (a script has none): only PING, ECHO, TIME, SELECT, LASTSAVE and
 * OBJECT are allowed among those. */
static bool noscript(const struct cmd_desc *d, size_t argc, const struct resp_arg *argv)
{
    if ((d->flags & CMD_HIDDEN) || d->exec == CMD_EXEC_SCRIPT) {
        return true;
    }
    const struct cmd_docs *doc = cmd_docs_find(d->name);
    if (doc != NULL && (d->flags & CMD_SUBCMDS) && argc >= 2) {
        const struct cmd_docs *sub = cmd_docs_find_sub(doc, argv[1].ptr, argv[1].len);
        doc = sub != NULL ? sub : doc;
    }
    if (doc != NULL && doc->flags != NULL && strstr(doc->flags, "noscript") != NULL) {
        return true;
    }
    if (d->exec == CMD_EXEC_CONN) {
        return d->fn != cmd_ping && d->fn != cmd_echo && d->fn != cmd_time && d->fn != cmd_select &&
               d->fn != cmd_lastsave && d->fn != cmd_object && d->fn != cmd_publish;
    }
    return d->exec == CMD_EXEC_SCAN; /* a cursor over partitions: not from a script */
}

/* redis.call / redis.pcall: the command's reply as a Lua value; an error reply (or a
 * command that may not run) raises {err = ...} from call, is returned by pcall. */
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
    if (err == NULL) {
        d = cmd_lookup(argv[0].ptr, argv[0].len);
        if (d == NULL) {
            err = "Unknown Redis command called from script";
        } else if (!cmd_arity_ok(d, (size_t)argc)) {
            err = "Wrong number of args calling Redis command from script";
        } else if (noscript(d, (size_t)argc, argv)) {
            err = "This Redis command is not allowed from script";
        } else if (vm->ro && (d->flags & CMD_WRITE)) {
            err = "Write commands are not allowed from read-only scripts.";
        } else if ((d->flags & CMD_DENYOOM) && !vm->wrote &&
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
    } else {
        vm->read |= (d->flags & CMD_READONLY) != 0;
        blob = conn_script_call(vm->x, &vm->db, d, (size_t)argc, argv, &len, &err);
        if (blob == NULL) {
            snprintf(errbuf, sizeof errbuf, "%s", err); /* with its code */
        }
    }
    if (blob == NULL) {
        lua_newtable(L);
        lua_pushstring(L, errbuf);
        lua_setfield(L, -2, "err");
        return raise ? lua_error(L) : 1;
    }
    if (blob[0] == '-') {
        push_error_table(L, blob, len - 2); /* "-CODE msg" without CRLF */
        conn_blob_free(blob);
        return raise ? lua_error(L) : 1;
    }
    if (d->flags & CMD_WRITE) {
        if (!vm->wrote) {
            atomic_fetch_add(&scripts_wrote, 1);
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

static int l_setresp(lua_State *L)
{
    if (lua_gettop(L) != 1 || lua_tonumber(L, 1) != 2) {
        lua_pushstring(L, "RESP version must be 2 (kvd's scripts speak RESP2).");
        return lua_error(L);
    }
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

static struct script_vm *vm_create(void)
{
    struct script_vm *vm = calloc(1, sizeof *vm);
    KV_ASSERT(vm != NULL);
    lua_State *L = luaL_newstate();
    KV_ASSERT(L != NULL);
    vm->L = L;
    vm->gen = atomic_load(&reg_gen);
    open_lib(L, "", luaopen_base);
    open_lib(L, LUA_TABLIBNAME, luaopen_table);
    open_lib(L, LUA_STRLIBNAME, luaopen_string);
    open_lib(L, LUA_MATHLIBNAME, luaopen_math);
    open_lib(L, "cjson", luaopen_cjson);
    open_lib(L, "bit", luaopen_bit);
    static const char *const removed[] = {"dofile",  "loadfile", "loadstring", "print",
                                          "getfenv", "setfenv",  "newproxy"};
    for (size_t i = 0; i < KV_ARRAY_LEN(removed); i++) {
        lua_pushnil(L);
        lua_setglobal(L, removed[i]);
    }
    lua_newtable(L); /* redis */
    set_fn(L, vm, "call", l_call);
    set_fn(L, vm, "pcall", l_pcall);
    set_fn(L, vm, "error_reply", l_error_reply);
    set_fn(L, vm, "status_reply", l_status_reply);
    set_fn(L, vm, "sha1hex", l_sha1hex);
    set_fn(L, vm, "log", l_log);
    set_fn(L, vm, "setresp", l_setresp);
    set_fn(L, vm, "set_repl", l_nothing);
    set_fn(L, vm, "replicate_commands", l_true);
    set_fn(L, vm, "breakpoint", l_nothing);
    set_fn(L, vm, "debug", l_nothing);
    set_num(L, "LOG_DEBUG", 0);
    set_num(L, "LOG_VERBOSE", 1);
    set_num(L, "LOG_NOTICE", 2);
    set_num(L, "LOG_WARNING", 3);
    set_num(L, "REPL_NONE", 0);
    set_num(L, "REPL_AOF", 1);
    set_num(L, "REPL_SLAVE", 2);
    set_num(L, "REPL_REPLICA", 2);
    set_num(L, "REPL_ALL", 3);
    lua_setglobal(L, "redis");
    lua_pushcfunction(L, l_load);
    lua_setglobal(L, "load");
    static const char *const libs[] = {"string", "table", "math", "cjson", "bit", "redis"};
    for (size_t i = 0; i < KV_ARRAY_LEN(libs); i++) {
        protect_global(L, libs[i]);
    }
    /* strings' methods through the read-only proxy, and their metatable out of reach */
    lua_pushstring(L, "");
    lua_getmetatable(L, -1);
    lua_getglobal(L, "string");
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);
    lua_pushlightuserdata(L, vm);
    lua_setfield(L, LUA_REGISTRYINDEX, "kvd_vm");
    lua_sethook(L, l_hook, LUA_MASKCOUNT, SCRIPT_HOOK_EVERY);
    lua_newtable(L); /* compiled scripts by sha, in the registry */
    lua_setfield(L, LUA_REGISTRYINDEX, "kvd_scripts");
    /* Scripts run in an environment that is a read-only proxy of the globals (Redis's
     * globals are read-only tables; stock Lua has none): writes raise, reads of missing
     * names raise, _G names the proxy, and rawset / setmetatable refuse the protected
     * tables. */
    lua_newtable(L); /* the environment */
    lua_newtable(L);
    lua_pushcfunction(L, l_global_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_global_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "kvd_env");
    lua_setglobal(L, "_G");
    guard_base(L);
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
        vm = vm_create();
        sh->script = vm;
    }
    return vm;
}

static bool vm_has(struct script_vm *vm, const char *sha)
{
    lua_getfield(vm->L, LUA_REGISTRYINDEX, "kvd_scripts");
    lua_getfield(vm->L, -1, sha);
    bool has = lua_isfunction(vm->L, -1);
    lua_pop(vm->L, 2);
    return has;
}

/* Compiles `body` as script `sha` into the interpreter (if it is not there yet) and
 * registers it server-wide. False after replying Redis's compile error into `out`. */
static bool vm_load(struct script_vm *vm, const char *sha, const char *body, size_t len,
                    struct resp_out *out)
{
    if (vm_has(vm, sha)) {
        reg_add(sha, body, len); /* after a SCRIPT FLUSH elsewhere, say */
        return true;
    }
    lua_State *L = vm->L;
    lua_getfield(L, LUA_REGISTRYINDEX, "kvd_scripts");
    if (luaL_loadbuffer(L, body, len, SCRIPT_CHUNK) != 0) {
        reply_error(out, "ERR Error compiling script (new function): %s", lua_tostring(L, -1));
        lua_pop(L, 2);
        return false;
    }
    lua_getfield(L, LUA_REGISTRYINDEX, "kvd_env");
    lua_setfenv(L, -2);
    lua_setfield(L, -2, sha);
    lua_pop(L, 1);
    reg_add(sha, body, len);
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
        if (strcmp(ar.source, SCRIPT_CHUNK) == 0 && ar.currentline > 0) {
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
static void set_args(lua_State *L, const char *name, const struct resp_arg *args, size_t n)
{
    lua_pushstring(L, name);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushlstring(L, args[i].ptr, args[i].len);
        lua_rawseti(L, -2, (int)i + 1);
    }
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
static void reply_value(lua_State *L, struct resp_out *o, int depth)
{
    switch (lua_type(L, -1)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        reply_bulk(o, s, n);
        return;
    }
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, -1)) {
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
            reply_error_text(o, s, n);
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
            reply_value(L, o, depth + 1);
            lua_pop(L, 1);
        }
        return;
    }
    default:
        reply_null(o);
        return;
    }
}

/* The reply of a script that raised an error: Redis 7's text and suffix. */
static void reply_raised(lua_State *L, struct resp_out *o, const char *sha)
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
    if (lua_istable(L, -1)) {
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
        n = snprintf(text, sizeof text, "%s script: %s, on %s:%d.", msg, sha, SCRIPT_CHUNK, line);
    } else {
        n = snprintf(text, sizeof text, "%s script: %s, on %s:?.", msg, sha, SCRIPT_CHUNK);
    }
    if (n < 0) {
        n = 0;
    }
    reply_error_text(o, text, (size_t)n < sizeof text ? (size_t)n : sizeof text - 1);
}

const char *script_numkeys(size_t argc, const struct resp_arg *argv, size_t *numkeys)
{
    int64_t n;
    if (!cmd_parse_i64(&argv[2], &n)) {
        return "ERR value is not an integer or out of range";
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

/* Runs the compiled script `sha` with its keys and arguments; writes its reply. */
static void vm_run(struct script_vm *vm, struct cmd_ctx *x, const char *sha, size_t numkeys)
{
    lua_State *L = vm->L;
    int base = lua_gettop(L);
    lua_pushcfunction(L, l_errfunc);
    lua_getfield(L, LUA_REGISTRYINDEX, "kvd_scripts");
    lua_getfield(L, -1, sha);
    lua_remove(L, -2);
    KV_ASSERT(lua_isfunction(L, -1));
    set_args(L, "KEYS", x->argv + 3, numkeys);
    set_args(L, "ARGV", x->argv + 3 + numkeys, x->argc - 3 - numkeys);
    KV_ASSERT(vm->x == NULL); /* scripts do not nest (EVAL is refused in scripts) */
    vm->x = x;
    vm->db = x->db;
    vm->ro = cmd_arg_is(&x->argv[0], "eval_ro") || cmd_arg_is(&x->argv[0], "evalsha_ro");
    vm->wrote = false;
    vm->read = false;
    vm->kill_gen = atomic_load(&script_kill_gen);
    atomic_fetch_add(&scripts_running, 1);
    int rc = lua_pcall(L, 0, 1, base + 1);
    atomic_fetch_sub(&scripts_running, 1);
    if (vm->wrote) {
        atomic_fetch_sub(&scripts_wrote, 1);
    }
    if (vm->read && x->track > 0) {
        /* As Redis 7.2: a script that read anything counts as a read of its declared
         * keys (here, those of this shard: a script over several shards has the keys its
         * commands read remembered where they are). */
        track_remember_local(x->sh, x->track - 1, x->caller_id, x->argv + 3, numkeys);
    }
    if (rc == 0) {
        reply_value(L, x->out, 0);
    } else if (rc == LUA_ERRMEM) {
        reply_error(x->out, "ERR script ran out of memory script: %s, on %s:?.", sha, SCRIPT_CHUNK);
    } else {
        reply_raised(L, x->out, sha);
    }
    vm->x = NULL;
    lua_settop(L, base);
    lua_gc(L, LUA_GCSTEP, 1); /* a little collection per script, as Redis does */
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
        if (!vm_has(vm, sha)) {
            size_t len;
            char *body = reg_get(sha, &len);
            if (body == NULL) {
                reply_error(x->out, "NOSCRIPT No matching script. Please use EVAL.");
                return;
            }
            bool ok = vm_load(vm, sha, body, len, x->out);
            free(body);
            KV_ASSERT(ok); /* it compiled when it was registered */
        }
    } else {
        kv_sha1_hex(a->ptr, a->len, sha);
        if (!vm_load(vm, sha, a->ptr, a->len, x->out)) {
            return;
        }
    }
    vm_run(vm, x, sha, numkeys);
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
        int running = atomic_load(&scripts_running), wrote = atomic_load(&scripts_wrote);
        if (running == 0) {
            reply_error(x->out, "NOTBUSY No scripts in execution right now.");
        } else if (wrote >= running) {
            reply_error(x->out, "UNKILLABLE Sorry the script already executed write commands "
                                "against the dataset. You can either wait the script "
                                "termination or kill the server in a hard way using the "
                                "SHUTDOWN NOSAVE command.");
        } else {
            atomic_fetch_add(&script_kill_gen, 1);
            reply_ok(x->out);
        }
    } else if (cmd_arg_is(sub, "help") && x->argc == 2) {
        static const char *const help[] = {
            "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
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
               cmd_arg_is(sub, "help")) {
        cmd_reply_sub_arity(x);
    } else {
        cmd_reply_unknown_subcommand(x);
    }
}
