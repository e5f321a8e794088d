/*
 * luastruct: see luastruct.h.
 */
#include "luastruct.h"

#include <lauxlib.h>

#include <ctype.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define ALIGN_MAX 8 /* the default of '!': a double's alignment on x86-64 */

enum { BIG, LITTLE };

struct header {
    int endian;
    int align;
};

/* A number after an option, or `df` if none. */
static int getnum(lua_State *L, const char **fmt, int df)
{
    if (!isdigit((unsigned char)**fmt)) {
        return df;
    }
    int a = 0;
    do {
        if (a > INT_MAX / 10 || a * 10 > INT_MAX - (**fmt - '0')) {
            luaL_error(L, "integral size overflow");
        }
        a = a * 10 + *((*fmt)++) - '0';
    } while (isdigit((unsigned char)**fmt));
    return a;
}

/* The size of option opt (0 for those without one: s, c0 when packing, controls). */
static size_t optsize(lua_State *L, char opt, const char **fmt)
{
    switch (opt) {
    case 'B':
    case 'b':
    case 'x':
        return 1;
    case 'H':
    case 'h':
        return sizeof(short);
    case 'L':
    case 'l':
        return sizeof(long);
    case 'T':
        return sizeof(size_t);
    case 'f':
        return sizeof(float);
    case 'd':
        return sizeof(double);
    case 'c':
        return (size_t)getnum(L, fmt, 1);
    case 'i':
    case 'I': {
        int n = getnum(L, fmt, sizeof(int));
        if (n > LUASTRUCT_INT_MAX) {
            luaL_error(L, "integral size %d is larger than limit of %d", n, LUASTRUCT_INT_MAX);
        }
        return (size_t)n;
    }
    default:
        return 0;
    }
}

/* b B h H l L T i I: the integer options (upper case unsigned). */
static bool is_integer(char opt)
{
    return opt != '\0' && strchr("bBhHlLTiI", opt) != NULL;
}

static size_t gettoalign(size_t len, const struct header *h, char opt, size_t size)
{
    if (size == 0 || opt == 'c') {
        return 0;
    }
    if (size > (size_t)h->align) {
        size = (size_t)h->align;
    }
    return (size - (len & (size - 1))) & (size - 1);
}

/* The options without data: spaces, endianness, alignment; anything else is an error. */
static void controloptions(lua_State *L, char opt, const char **fmt, struct header *h)
{
    switch (opt) {
    case ' ':
        return;
    case '>':
        h->endian = BIG;
        return;
    case '<':
        h->endian = LITTLE;
        return;
    case '!': {
        int a = getnum(L, fmt, ALIGN_MAX);
        if (a <= 0 || (a & (a - 1)) != 0) {
            luaL_error(L, "alignment %d is not a power of 2", a);
        }
        h->align = a;
        return;
    }
    default:
        luaL_argerror(L, 1, lua_pushfstring(L, "invalid format option '%c'", opt));
    }
}

/* A double as x86-64's conversion instruction makes it a 64-bit integer (out of range
 * and NaN: INT64_MIN), without C's undefined behaviour. */
static int64_t to_i64(lua_Number n)
{
    if (!(n >= -9223372036854775808.0 && n < 9223372036854775808.0)) {
        return INT64_MIN;
    }
    return (int64_t)n;
}

/* The bits Redis's struct stores for n: (uint64)(int64)n if negative, else
 * (uint64)n as gcc computes it on x86-64. */
static uint64_t to_bits(lua_Number n)
{
    if (n < 0) {
        return (uint64_t)to_i64(n);
    }
    if (n < 9223372036854775808.0) {
        return (uint64_t)(int64_t)n;
    }
    return (uint64_t)to_i64(n - 9223372036854775808.0) ^ 0x8000000000000000u;
}

static void putinteger(lua_State *L, luaL_Buffer *b, int arg, int endian, size_t size)
{
    uint64_t v = to_bits(luaL_checknumber(L, arg));
    char buf[LUASTRUCT_INT_MAX];
    for (size_t i = 0; i < size; i++) {
        buf[endian == LITTLE ? i : size - 1 - i] = (char)(v & 0xff);
        v = i < 7 ? v >> 8 : 0;
    }
    luaL_addlstring(b, buf, size);
}

static void correctbytes(char *p, size_t size, int endian)
{
    if (endian == LITTLE) { /* (x86-64 is little-endian) */
        return;
    }
    for (size_t i = 0, j = size - 1; i < j; i++, j--) {
        char t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
}

static int l_pack(lua_State *L)
{
    const char *fmt = luaL_checkstring(L, 1);
    struct header h = {LITTLE, 1};
    int arg = 2;
    size_t total = 0;
    lua_pushnil(L); /* (the arguments end below the buffer's pieces) */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    while (*fmt != '\0') {
        char opt = *fmt++;
        size_t size = optsize(L, opt, &fmt);
        size_t pad = gettoalign(total, &h, opt, size);
        total += pad;
        while (pad-- > 0) {
            luaL_addchar(&b, '\0');
        }
        switch (opt) {
        case 'x':
            luaL_addchar(&b, '\0');
            break;
        case 'f': {
            float f = (float)luaL_checknumber(L, arg++);
            correctbytes((char *)&f, size, h.endian);
            luaL_addlstring(&b, (char *)&f, size);
            break;
        }
        case 'd': {
            double d = luaL_checknumber(L, arg++);
            correctbytes((char *)&d, size, h.endian);
            luaL_addlstring(&b, (char *)&d, size);
            break;
        }
        case 'c':
        case 's': {
            size_t l;
            const char *s = luaL_checklstring(L, arg++, &l);
            if (size == 0) {
                size = l;
            }
            luaL_argcheck(L, l >= size, arg, "string too short"); /* (arg: the next, sic) */
            luaL_addlstring(&b, s, size);
            if (opt == 's') {
                luaL_addchar(&b, '\0');
                size++;
            }
            break;
        }
        default:
            if (is_integer(opt)) {
                putinteger(L, &b, arg++, h.endian, size);
            } else {
                controloptions(L, opt, &fmt, &h);
            }
        }
        total += size;
    }
    luaL_pushresult(&b);
    return 1;
}

static lua_Number getinteger(const char *p, int endian, bool issigned, size_t size)
{
    uint64_t l = 0;
    for (size_t i = 0; i < size; i++) { /* the last 8 bytes in the order count */
        l = (l << 8) | (unsigned char)p[endian == BIG ? i : size - 1 - i];
    }
    if (!issigned) {
        return (lua_Number)l;
    }
    unsigned shift = (unsigned)(size * 8 - 1) & 63; /* (x86's shift count, as Redis's) */
    uint64_t mask = ~(uint64_t)0 << shift;
    if (size > 0 && (l & mask)) {
        l |= mask;
    }
    return (lua_Number)(int64_t)l;
}

static int l_unpack(lua_State *L)
{
    const char *fmt = luaL_checkstring(L, 1);
    size_t ld;
    const char *data = luaL_checklstring(L, 2, &ld);
    size_t pos = (size_t)luaL_optinteger(L, 3, 1);
    luaL_argcheck(L, pos > 0, 3, "offset must be 1 or greater");
    pos--;
    struct header h = {LITTLE, 1};
    int n = 0;
    while (*fmt != '\0') {
        char opt = *fmt++;
        size_t size = optsize(L, opt, &fmt);
        pos += gettoalign(pos, &h, opt, size);
        luaL_argcheck(L, size <= ld && pos <= ld - size, 2, "data string too short");
        luaL_checkstack(L, 2, "too many results");
        switch (opt) {
        case 'x':
            break;
        case 'f': {
            float f;
            memcpy(&f, data + pos, size);
            correctbytes((char *)&f, sizeof f, h.endian);
            lua_pushnumber(L, f);
            n++;
            break;
        }
        case 'd': {
            double d;
            memcpy(&d, data + pos, size);
            correctbytes((char *)&d, sizeof d, h.endian);
            lua_pushnumber(L, d);
            n++;
            break;
        }
        case 'c':
            if (size == 0) { /* the length is the previous value */
                if (n == 0 || !lua_isnumber(L, -1)) {
                    luaL_error(L, "format 'c0' needs a previous size");
                }
                size = (size_t)to_bits(lua_tonumber(L, -1)); /* (as Redis's cast gives it) */
                lua_pop(L, 1);
                n--;
                luaL_argcheck(L, size <= ld && pos <= ld - size, 2, "data string too short");
            }
            lua_pushlstring(L, data + pos, size);
            n++;
            break;
        case 's': {
            const char *e = memchr(data + pos, '\0', ld - pos);
            if (e == NULL) {
                luaL_error(L, "unfinished string in data");
            }
            size = (size_t)(e - (data + pos)) + 1;
            lua_pushlstring(L, data + pos, size - 1);
            n++;
            break;
        }
        default:
            if (is_integer(opt)) {
                lua_pushnumber(L,
                               getinteger(data + pos, h.endian, islower((unsigned char)opt), size));
                n++;
            } else {
                controloptions(L, opt, &fmt, &h);
            }
        }
        pos += size;
    }
    lua_pushinteger(L, (lua_Integer)pos + 1);
    return n + 1;
}

static int l_size(lua_State *L)
{
    const char *fmt = luaL_checkstring(L, 1);
    struct header h = {LITTLE, 1};
    size_t pos = 0;
    while (*fmt != '\0') {
        char opt = *fmt++;
        size_t size = optsize(L, opt, &fmt);
        pos += gettoalign(pos, &h, opt, size);
        if (opt == 's') {
            luaL_argerror(L, 1, "option 's' has no fixed size");
        } else if (opt == 'c' && size == 0) {
            luaL_argerror(L, 1, "option 'c0' has no fixed size");
        }
        if (!isalnum((unsigned char)opt)) {
            controloptions(L, opt, &fmt, &h);
        }
        pos += size;
    }
    lua_pushinteger(L, (lua_Integer)pos);
    return 1;
}

int luastruct_open(lua_State *L)
{
    lua_newtable(L);
    lua_pushcfunction(L, l_pack);
    lua_setfield(L, -2, "pack");
    lua_pushcfunction(L, l_unpack);
    lua_setfield(L, -2, "unpack");
    lua_pushcfunction(L, l_size);
    lua_setfield(L, -2, "size");
    return 1;
}
