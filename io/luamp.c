/*
 * luamp: see luamp.h.
 */
#include "luamp.h"

#include <lauxlib.h>

#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* ---- encoding: into a luaL_Buffer ------------------------------------------------ */

static void put_be(luaL_Buffer *b, uint8_t tag, uint64_t v, int bytes)
{
    luaL_addchar(b, (char)tag);
    for (int i = bytes - 1; i >= 0; i--) {
        luaL_addchar(b, (char)(uint8_t)(v >> (8 * i)));
    }
}

static void enc_int(luaL_Buffer *b, int64_t n)
{
    if (n >= 0) {
        uint64_t u = (uint64_t)n;
        if (u <= 127) {
            luaL_addchar(b, (char)u); /* positive fixint */
        } else if (u <= 0xff) {
            put_be(b, 0xcc, u, 1);
        } else if (u <= 0xffff) {
            put_be(b, 0xcd, u, 2);
        } else if (u <= 0xffffffffu) {
            put_be(b, 0xce, u, 4);
        } else {
            put_be(b, 0xcf, u, 8);
        }
    } else if (n >= -32) {
        luaL_addchar(b, (char)(uint8_t)n); /* negative fixint */
    } else if (n >= -128) {
        put_be(b, 0xd0, (uint64_t)n, 1);
    } else if (n >= -32768) {
        put_be(b, 0xd1, (uint64_t)n, 2);
    } else if (n >= INT32_MIN) {
        put_be(b, 0xd2, (uint64_t)n, 4);
    } else {
        put_be(b, 0xd3, (uint64_t)n, 8);
    }
}

static void enc_number(luaL_Buffer *b, lua_Number d)
{
    /* a whole int64 (what (int64_t)d gives back exactly) is an integer */
    if (!isinf(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0 &&
        (lua_Number)(int64_t)d == d) {
        enc_int(b, (int64_t)d);
        return;
    }
    float f = (float)d;
    if ((double)f == d) {
        uint32_t u;
        memcpy(&u, &f, 4);
        put_be(b, 0xca, u, 4);
    } else {
        uint64_t u;
        memcpy(&u, &d, 8);
        put_be(b, 0xcb, u, 8);
    }
}

static void enc_len(luaL_Buffer *b, size_t n, uint8_t fix, size_t fix_max, uint8_t t16, uint8_t t32)
{
    if (n <= fix_max) {
        luaL_addchar(b, (char)(fix | n));
    } else if (n <= 0xffff) {
        put_be(b, t16, n, 2);
    } else {
        put_be(b, t32, n, 4);
    }
}

static void enc_value(lua_State *L, luaL_Buffer *b, int level);

/* Whether the table on top has exactly the keys 1..n (n >= 0), as lua-cmsgpack checks. */
static bool is_array(lua_State *L)
{
    int top = lua_gettop(L);
    long count = 0, max = 0;
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        lua_pop(L, 1);
        lua_Number n;
        if (lua_type(L, -1) != LUA_TNUMBER || (n = lua_tonumber(L, -1)) <= 0 || isinf(n) ||
            n >= 2147483648.0 || (lua_Number)(int)n != n) {
            lua_settop(L, top);
            return false;
        }
        max = (long)n > max ? (long)n : max;
        count++;
    }
    lua_settop(L, top);
    return max == count;
}

/*
 * A luaL_Buffer keeps its pieces on the Lua stack, so what an encoder pushes must be
 * popped before the next luaL_add*: the values are encoded by pushing them, encoding
 * the top one into a separate buffer string and adding that.
 */
static void add_encoded(lua_State *L, luaL_Buffer *b, int level)
{
    luaL_Buffer one;
    luaL_buffinit(L, &one);
    enc_value(L, &one, level); /* pops the value (below one's pieces: see enc_value) */
    luaL_pushresult(&one);
    luaL_addvalue(b);
}

/* Adds an array's or a map's header (n elements: the fix form up to 15, else 16 or 32
 * bits) to b, through a buffer of its own (what is above b's pieces must go first). */
static void add_header(lua_State *L, luaL_Buffer *b, size_t n, uint8_t fix, uint8_t t16,
                       uint8_t t32)
{
    luaL_Buffer hdr;
    luaL_buffinit(L, &hdr);
    enc_len(&hdr, n, fix, 15, t16, t32);
    luaL_pushresult(&hdr);
    luaL_addvalue(b);
}

static void enc_table(lua_State *L, luaL_Buffer *b, int idx, int level)
{
    luaL_checkstack(L, 6, "in function mp_encode_lua_table");
    lua_pushvalue(L, idx);
    bool array = is_array(L);
    if (array) {
        size_t n = lua_objlen(L, -1);
        lua_pop(L, 1);
        add_header(L, b, n, 0x90, 0xdc, 0xdd);
        for (size_t i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, (int)i);
            add_encoded(L, b, level + 1);
        }
        return;
    }
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        lua_pop(L, 1);
        n++;
    }
    lua_pop(L, 1);
    add_header(L, b, n, 0x80, 0xde, 0xdf);
    /* The traversal's key stays on the stack between lua_next calls, above b's pieces:
     * each pair's encoding is kept in a string below the key, in order, and the strings
     * are joined and added to b once the traversal is over. Two strings of as many
     * pairs are joined at once (a binary counter), so that a map of n pairs keeps at
     * most log2(n) + 1 of them on the stack (Lua's is a few thousand slots deep) and
     * copies each byte log2(n) times. */
    luaL_Buffer one;
    int pieces = 0;
    size_t pairs[64];
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) { /* ..., pairs, key, value */
        luaL_checkstack(L, 4, "in function mp_encode_lua_table_as_map");
        lua_pushvalue(L, -2); /* key, value, key */
        luaL_buffinit(L, &one);
        enc_value(L, &one, level + 1); /* the key's copy */
        luaL_pushresult(&one);         /* key, value, enc(key) */
        lua_insert(L, -2);             /* key, enc(key), value */
        luaL_buffinit(L, &one);
        enc_value(L, &one, level + 1); /* the value */
        luaL_pushresult(&one);         /* key, enc(key), enc(value) */
        lua_concat(L, 2);              /* key, enc(pair) */
        lua_insert(L, -2);             /* enc(pair), key */
        pairs[pieces++] = 1;
        while (pieces >= 2 && pairs[pieces - 1] == pairs[pieces - 2]) {
            lua_insert(L, -3); /* key, enc(a), enc(b) */
            lua_concat(L, 2);  /* key, enc(a b) */
            lua_insert(L, -2); /* enc(a b), key */
            pairs[pieces - 2] *= 2;
            pieces--;
        }
    }
    lua_concat(L, pieces); /* (0: an empty string) */
    luaL_addvalue(b);
}

/* Encodes the value on top into b and pops it. b must be empty and fresh: its pieces
 * are above the value, so the value is copied below first. */
static void enc_value(lua_State *L, luaL_Buffer *b, int level)
{
    /* (luaL_buffinit pushed nothing yet: the value is on top) */
    int idx = lua_gettop(L);
    int t = lua_type(L, idx);
    if (t == LUA_TTABLE && level == LUAMP_PACK_NESTING) {
        t = LUA_TNIL; /* so that a table holding itself still packs */
    }
    switch (t) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (n < 32) {
            luaL_addchar(b, (char)(0xa0 | n));
        } else if (n <= 0xff) {
            put_be(b, 0xd9, n, 1);
        } else if (n <= 0xffff) {
            put_be(b, 0xda, n, 2);
        } else {
            put_be(b, 0xdb, n, 4);
        }
        luaL_addlstring(b, s, n);
        break;
    }
    case LUA_TBOOLEAN:
        luaL_addchar(b, lua_toboolean(L, idx) ? (char)0xc3 : (char)0xc2);
        break;
    case LUA_TNUMBER:
        enc_number(b, lua_tonumber(L, idx));
        break;
    case LUA_TTABLE:
        enc_table(L, b, idx, level);
        break;
    default:
        luaL_addchar(b, (char)0xc0);
        break;
    }
    lua_remove(L, idx);
}

static int l_pack(lua_State *L)
{
    int nargs = lua_gettop(L);
    if (nargs == 0) {
        return luaL_argerror(L, 0, "MessagePack pack needs input.");
    }
    if (!lua_checkstack(L, nargs + LUA_MINSTACK)) {
        return luaL_argerror(L, 0, "Too many arguments for MessagePack pack.");
    }
    for (int i = 1; i <= nargs; i++) {
        lua_pushvalue(L, i);
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        enc_value(L, &b, 0);
        luaL_pushresult(&b);
    }
    lua_concat(L, nargs);
    return 1;
}

/* ---- decoding ---------------------------------------------------------------------- */

enum { MP_OK, MP_EOF, MP_BADFMT };

struct cur {
    const uint8_t *p;
    size_t left;
    int err;
};

static uint64_t get_be(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static void dec_value(lua_State *L, struct cur *c, int depth);

static bool need(struct cur *c, size_t n)
{
    if (c->left < n) {
        c->err = MP_EOF;
        return false;
    }
    return true;
}

static void dec_str(lua_State *L, struct cur *c, size_t hdr, size_t n)
{
    if (!need(c, hdr + n)) {
        return;
    }
    lua_pushlstring(L, (const char *)c->p + hdr, n);
    c->p += hdr + n;
    c->left -= hdr + n;
}

static void dec_seq(lua_State *L, struct cur *c, size_t hdr, size_t n, bool map, int depth)
{
    if (!need(c, hdr)) {
        return;
    }
    if (depth >= LUAMP_UNPACK_NESTING) {
        c->err = MP_BADFMT;
        return;
    }
    c->p += hdr;
    c->left -= hdr;
    luaL_checkstack(L, 3, "in function mp_decode_to_lua_array");
    lua_newtable(L);
    for (size_t i = 0; i < n; i++) {
        if (map) {
            dec_value(L, c, depth + 1);
            if (c->err) {
                return;
            }
        } else {
            lua_pushnumber(L, (lua_Number)(i + 1));
        }
        dec_value(L, c, depth + 1);
        if (c->err) {
            return;
        }
        lua_settable(L, -3);
    }
}

/* Pushes the value at c (nothing when c->err is set). */
static void dec_value(lua_State *L, struct cur *c, int depth)
{
    if (!need(c, 1)) {
        return;
    }
    luaL_checkstack(L, 1, "in function mp_decode_to_lua_type");
    uint8_t t = c->p[0];
    static const uint8_t ints[] = {0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3};
    const uint8_t *hit = memchr(ints, t, sizeof ints);
    if (hit != NULL) {
        int k = (int)(hit - ints), bytes = 1 << (k & 3);
        if (!need(c, 1 + (size_t)bytes)) {
            return;
        }
        uint64_t u = get_be(c->p + 1, bytes);
        lua_Number v;
        if (k < 3) {
            v = (lua_Number)u;
        } else if (k == 3) {
            v = (lua_Number)(int64_t)u; /* (as Redis's: read as a signed integer) */
        } else {
            int shift = 64 - 8 * bytes;
            v = (lua_Number)((int64_t)(u << shift) >> shift);
        }
        lua_pushnumber(L, v);
        c->p += 1 + bytes;
        c->left -= 1 + (size_t)bytes;
        return;
    }
    switch (t) {
    case 0xc0:
    case 0xc2:
    case 0xc3:
        if (t == 0xc0) {
            lua_pushnil(L);
        } else {
            lua_pushboolean(L, t == 0xc3);
        }
        c->p++;
        c->left--;
        return;
    case 0xca:
    case 0xcb: {
        int bytes = t == 0xca ? 4 : 8;
        if (!need(c, 1 + (size_t)bytes)) {
            return;
        }
        uint64_t u = get_be(c->p + 1, bytes);
        if (bytes == 4) {
            uint32_t u32 = (uint32_t)u;
            float f;
            memcpy(&f, &u32, 4);
            lua_pushnumber(L, f);
        } else {
            double d;
            memcpy(&d, &u, 8);
            lua_pushnumber(L, d);
        }
        c->p += 1 + bytes;
        c->left -= 1 + (size_t)bytes;
        return;
    }
    case 0xd9:
    case 0xda:
    case 0xdb: {
        int bytes = t == 0xd9 ? 1 : t == 0xda ? 2 : 4;
        if (need(c, 1 + (size_t)bytes)) {
            dec_str(L, c, 1 + (size_t)bytes, (size_t)get_be(c->p + 1, bytes));
        }
        return;
    }
    case 0xdc:
    case 0xdd:
    case 0xde:
    case 0xdf: {
        int bytes = (t == 0xdc || t == 0xde) ? 2 : 4;
        if (need(c, 1 + (size_t)bytes)) {
            dec_seq(L, c, 1 + (size_t)bytes, (size_t)get_be(c->p + 1, bytes), t >= 0xde, depth);
        }
        return;
    }
    default:
        break;
    }
    if (t <= 0x7f) { /* positive fixint */
        lua_pushnumber(L, t);
        c->p++;
        c->left--;
    } else if (t >= 0xe0) { /* negative fixint */
        lua_pushnumber(L, (int8_t)t);
        c->p++;
        c->left--;
    } else if (t >= 0xa0 && t <= 0xbf) { /* fixstr */
        dec_str(L, c, 1, t & 0x1f);
    } else if (t >= 0x90 && t <= 0x9f) { /* fixarray */
        dec_seq(L, c, 1, t & 0x0f, false, depth);
    } else if (t >= 0x80 && t <= 0x8f) { /* fixmap */
        dec_seq(L, c, 1, t & 0x0f, true, depth);
    } else {
        c->err = MP_BADFMT;
    }
}

/* unpack / unpack_one / unpack_limit: limit 0 and offset 0 decode everything and
 * return no offset, as lua-cmsgpack does. */
static int unpack_full(lua_State *L, lua_Integer limit, lua_Integer offset)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    bool all = limit == 0 && offset == 0;
    if (offset < 0 || limit < 0) { /* (sic: the length as "limit", as Redis's) */
        return luaL_error(L, "Invalid request to unpack with offset of %d and limit of %d.",
                          (int)offset, (int)len);
    }
    if ((size_t)offset > len) {
        return luaL_error(L, "Start offset %d greater than input length %d.", (int)offset,
                          (int)len);
    }
    if (all) {
        limit = INT_MAX;
    }
    struct cur c = {.p = (const uint8_t *)s + offset, .left = len - (size_t)offset};
    int n = 0;
    for (; c.left > 0 && n < limit; n++) {
        int top = lua_gettop(L);
        dec_value(L, &c, 0);
        if (c.err != MP_OK) {
            lua_settop(L, top);
            return luaL_error(L, c.err == MP_EOF ? "Missing bytes in input."
                                                 : "Bad data format in input.");
        }
    }
    if (!all) {
        luaL_checkstack(L, 1, "in function mp_unpack_full");
        lua_pushinteger(L, c.left == 0 ? -1 : (lua_Integer)(len - c.left));
        lua_insert(L, 2);
        n++;
    }
    return n;
}

static int l_unpack(lua_State *L)
{
    return unpack_full(L, 0, 0);
}

static int l_unpack_one(lua_State *L)
{
    lua_Integer offset = luaL_optinteger(L, 2, 0);
    lua_settop(L, 1);
    return unpack_full(L, 1, offset);
}

static int l_unpack_limit(lua_State *L)
{
    lua_Integer limit = luaL_checkinteger(L, 2);
    lua_Integer offset = luaL_optinteger(L, 3, 0);
    lua_settop(L, 1);
    return unpack_full(L, limit, offset);
}

int luamp_open(lua_State *L)
{
    static const luaL_Reg fns[] = {{"pack", l_pack},
                                   {"unpack", l_unpack},
                                   {"unpack_one", l_unpack_one},
                                   {"unpack_limit", l_unpack_limit},
                                   {NULL, NULL}};
    lua_newtable(L);
    for (const luaL_Reg *f = fns; f->name != NULL; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, -2, f->name);
    }
    static const char *const info[][2] = {
        {"_NAME", "cmsgpack"},
        {"_VERSION", "lua-cmsgpack 0.4.0"},
        {"_COPYRIGHT", "Copyright (C) 2012, Salvatore Sanfilippo"},
        {"_DESCRIPTION", "MessagePack C implementation for Lua"},
    };
    for (size_t i = 0; i < sizeof info / sizeof info[0]; i++) {
        lua_pushstring(L, info[i][1]);
        lua_setfield(L, -2, info[i][0]);
    }
    return 1;
}
