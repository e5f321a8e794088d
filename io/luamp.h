/*
 * luamp: the `cmsgpack` library of Redis's scripts (MessagePack for Lua 5.1), as Redis 7
 * bundles it (lua-cmsgpack 0.4.0): cmsgpack.pack(v, ...) returns the encodings of its
 * arguments one after the other; cmsgpack.unpack(s) returns every value s holds;
 * cmsgpack.unpack_one(s [, offset]) and cmsgpack.unpack_limit(s, n [, offset]) return
 * the offset of what is left (-1 at the end) and the values. Byte for byte Redis's
 * encodings: integers (any number that is a whole int64) in the smallest form, other
 * numbers as a float when that is exact, else a double; strings as fixstr, str8, str16,
 * str32; a table whose keys are exactly 1..n as an array, any other as a map; tables
 * nested deeper than LUAMP_PACK_NESTING as nil; anything else as nil. Decoding takes
 * every MessagePack type but bin and ext ("Bad data format in input."), and refuses to
 * nest deeper than LUAMP_UNPACK_NESTING (kvd's limit: a payload cannot exhaust the C
 * stack).
 *
 * Pure Lua C API: no allocation but Lua's.
 */
#ifndef KVD_LUAMP_H
#define KVD_LUAMP_H

#include <lua.h>

#define LUAMP_PACK_NESTING   16   /* Redis's: deeper tables are packed as nil */
#define LUAMP_UNPACK_NESTING 1000 /* arrays and maps within each other, when decoding */

/* lua_CFunction: pushes the library's table (fields pack, unpack, unpack_one,
 * unpack_limit, _NAME, _VERSION, _COPYRIGHT, _DESCRIPTION). */
int luamp_open(lua_State *L);

#endif
