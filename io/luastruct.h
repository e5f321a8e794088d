/*
 * luastruct: the `struct` library of Redis's scripts (binary packing for Lua 5.1), as
 * Redis 7 bundles it (Roberto Ierusalimschy's struct, with Redis's fixes):
 * struct.pack(fmt, ...), struct.unpack(fmt, s [, pos]) (the values, then the position
 * after them), struct.size(fmt). Format: > < (endianness), ![n] (alignment, a power of
 * two, default 8), x (a zero byte), b B h H l L T (char, short, long, size_t; upper case
 * unsigned), i I [n] (an n-byte integer, n <= LUASTRUCT_INT_MAX, default 4), c[n] (n
 * chars; c0: the whole string when packing, the previous number's length when
 * unpacking), s (a zero-terminated string), f d (float, double), ' ' (ignored). Errors
 * and edge cases (integers outside 64 bits, offsets) are Redis's, byte for byte.
 *
 * Pure Lua C API: no allocation but Lua's.
 */
#ifndef KVD_LUASTRUCT_H
#define KVD_LUASTRUCT_H

#include <lua.h>

#define LUASTRUCT_INT_MAX 32 /* bytes of an i / I integer (Redis's MAXINTSIZE) */

/* lua_CFunction: pushes the library's table (pack, unpack, size). */
int luastruct_open(lua_State *L);

#endif
