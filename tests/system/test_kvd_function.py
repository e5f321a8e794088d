"""Redis 7 functions on kvd: FUNCTION LOAD / DELETE / FLUSH / LIST / STATS / DUMP / RESTORE /
KILL / HELP, FCALL and FCALL_RO.

Compared byte for byte with Debian's redis-server 7.0 (pair.same), both servers' libraries
flushed first:

- the metadata line ("#!lua name=<lib>"): missing, unterminated, quoted, repeated or
  unknown parts, an unknown engine, invalid library names, in Redis's order of checks;
- redis.register_function, positional and named: every argument error, flags (any case,
  unknown), descriptions, invalid function names, a name twice in one library;
- the loading environment: only redis.register_function / log / LOG_* / REDIS_VERSION*
  exist (redis.call, pcall, error, pairs, KEYS, ... are errors), every table read-only,
  the load timeout, compile errors with their line (the metadata line counts);
- LOAD REPLACE, a library or function that exists (functions in any case, libraries
  exactly), DELETE, FLUSH and their argument errors, STATS, KILL (NOTBUSY), HELP, unknown
  subcommands, arity errors;
- FCALL / FCALL_RO: keys and args as the callback's two tables, replies, errors raised
  with Redis's "script: <name>, on @user_function:<line>." suffix, error_reply, the
  numkeys errors after "Function not found", FCALL_RO refusing a function without
  no-writes, writes refused in a no-writes function, functions looked up in any case,
  no KEYS / ARGV globals, globals read-only at run time too;
- FUNCTION LIST of one library (RESP2 and RESP3, WITHCODE, LIBRARYNAME matched without
  regard to case, argument errors), RESTORE errors (damaged payload, a payload of another
  type, policy errors), functions inside MULTI, FCALL / FUNCTION refused from EVAL, the
  OOM rule (over maxmemory a function runs only if flagged no-writes or allow-oom).

kvd only (Redis lists libraries and functions in hash order; kvd by name, functions in
registration order):
- FUNCTION LIST of several libraries; DUMP / RESTORE round trips between kvd and Redis
  both ways (Redis's payload is LZF-compressed, kvd's is not) and every policy;
- functions run on every shard thread: keys of either thread, of both, none;
- a library replaced while clients call it: every reply is one version's, and after the
  REPLACE replied every shard runs the new one;
- durability: LOAD / DELETE / FLUSH / RESTORE survive kill -9 (the set is written to
  functions.kvf before the reply); a damaged file refuses the start, --repair sets it
  aside; with appendonly no nothing is written;
- CLIENT PAUSE WRITE holds FCALL of a writing function, not of a no-writes one nor
  FCALL_RO; FUNCTION KILL stops a running read-only function from another thread;
- INFO memory number_of_functions / number_of_libraries, INFO commandstats.
"""
import os
import threading
import time

import pytest
import redis

from conftest import (Client, Err, Kvd, RedisServer, St, encode, info_field,
                      kill_from_free_shard, need_redis, threads_running, wait_until)

LIB = "#!lua name=%s\n"


def crc64(data):
    """Redis's CRC-64 (Jones, reflected), for hand-made DUMP payloads."""
    poly, crc = 0x95AC9329AC4BC9B5, 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
    return crc


def with_footer(body):
    body = body + b"\x0a\x00"
    return body + crc64(body).to_bytes(8, "little")


def lib(name, body):
    return LIB % name + body


def flush_both(pair):
    assert pair.k.cmd("FUNCTION", "FLUSH") == St("OK")
    assert pair.r.cmd("FUNCTION", "FLUSH") == St("OK")


# ---------------------------------------------------------------------------------------
# scenarios compared with Redis byte for byte

REG = "redis.register_function"

SCENARIOS = {
    "metadata": [
        ("FUNCTION", "LOAD", "return 1"),
        ("FUNCTION", "LOAD", "#lua name=x\n" + REG + "('f', function() end)"),
        ("FUNCTION", "LOAD", "#!lua name=x"),
        ("FUNCTION", "LOAD", "#!lua\nreturn 1"),
        ("FUNCTION", "LOAD", "#!\n" + REG + "('f', function() end)"),
        ("FUNCTION", "LOAD", "#! name=q\n" + REG + "('f', function() end)"),
        ("FUNCTION", "LOAD", "#!py name=z\nx"),
        ("FUNCTION", "LOAD", "#!lua name=a-b\nx"),
        ("FUNCTION", "LOAD", "#!lua name=\n" + REG + "('f', function() end)"),
        ("FUNCTION", "LOAD", "#!lua name=y foo=bar\nx"),
        ("FUNCTION", "LOAD", "#!lua x\nx"),
        ("FUNCTION", "LOAD", "#!lua flags=no-writes name=y\nx"),
        ("FUNCTION", "LOAD", "#!lua name=a name=b\nx"),
        ("FUNCTION", "LOAD", '#!lua name="q z"\nx'),
        ("FUNCTION", "LOAD", '#!lua name=q"\nx'),
        ("FUNCTION", "LOAD", "#!lua name='q\nx"),
        ("FUNCTION", "LOAD", "#!lua name=q\n"),
        ("FUNCTION", "LOAD", "#!LUA NAME=Up\n" + REG + "('f', function() return 1 end)"),
        ("FUNCTION", "LOAD", "#!lua\tname=t2  \r\n" + REG + "('g', function() return 2 end)"),
        ("FUNCTION", "LOAD", '#!lua "name=t3"\n' + REG + "('h', function() return 3 end)"),
        ("FUNCTION", "LOAD", "#!foo name=a-b\nreturn 1"),  # the name is checked first
        ("FUNCTION", "LOAD", '#!lua name="ab\\x00cd"\n' + REG + "('n0', function() end)"),
        ("FUNCTION", "LOAD", "#!lua name=a\x00b\n" + REG + "('n0', function() end)"),
        ("FCALL", "f", "0"),
        ("FCALL", "g", "0"),
        ("FCALL", "h", "0"),
        ("FUNCTION", "LOAD", "bad", "x"),
        ("FUNCTION", "LOAD", "REPLACE"),
        ("FUNCTION", "LOAD", "replace", "replace", "x"),
    ],
    "register_function": [
        ("FUNCTION", "LOAD", lib("e", REG + "()")),
        ("FUNCTION", "LOAD", lib("e", REG + "('g')")),
        ("FUNCTION", "LOAD", lib("e", REG + "('g', 5)")),
        ("FUNCTION", "LOAD", lib("e", REG + "({}, function() end)")),
        ("FUNCTION", "LOAD", lib("e", REG + "('x', function() end, 3)")),
        ("FUNCTION", "LOAD", lib("e", REG + "{function_name='g'}")),
        ("FUNCTION", "LOAD", lib("e", REG + "{callback=function() end}")),
        ("FUNCTION", "LOAD", lib("e", REG + "{function_name='g', callback=function() end, x=1}")),
        ("FUNCTION", "LOAD", lib("e", "local t = {}; t[1] = 1; " + REG + "(t)")),
        ("FUNCTION", "LOAD", lib("e", REG + "{[1]='x', callback=function() end}")),
        ("FUNCTION", "LOAD", lib("e", REG + "{[true]='x', callback=function() end}")),
        ("FUNCTION", "LOAD", lib("e", REG + "{function_name={}, callback=function() end}")),
        ("FUNCTION", "LOAD", lib("e", REG + "{function_name='x', callback=5}")),
        ("FUNCTION", "LOAD", lib("e", REG + "{function_name='x', callback=function() end, "
                                            "flags='no-writes'}")),
        ("FUNCTION", "LOAD", lib("e", REG + "{function_name='x', callback=function() end, "
                                            "flags={1}}")),
        ("FUNCTION", "LOAD", lib("e", REG + "{function_name='x', callback=function() end, "
                                            "flags={'no-writes', 'bad'}}")),
        ("FUNCTION", "LOAD", lib("e", REG + "{function_name='x', callback=function() end, "
                                            "description={}}")),
        ("FUNCTION", "LOAD", lib("e", REG + "{function_name='', callback=function() end}")),
        ("FUNCTION", "LOAD", lib("e", REG + "('a-b', function() end)")),
        ("FUNCTION", "LOAD", lib("e", REG + "('h', function() end); " + REG + "('h', function() end)")),
        ("FUNCTION", "LOAD", lib("e", "return 1")),
        ("FUNCTION", "LOAD", lib("n1", REG + "{function_name=5, callback=function() return 5 end}")),
        ("FUNCTION", "LOAD", lib("n2", REG + "{function_name='d', callback=function() end, "
                                             "description=7, flags={'NO-WRITES', 'Allow-OOM'}}")),
        ("FUNCTION", "LOAD", lib("n3", REG + "('a_B9', function() end)")),
        ("FUNCTION", "LIST", "LIBRARYNAME", "n2"),
        ("FCALL", "5", "0"),
        # names differing only in case in one library: both registered (which one FCALL
        # finds depends on Redis's hash order; kvd's is the first, see below)
        ("FUNCTION", "LOAD", lib("n4", REG + "('cv', function() return 1 end)\n" +
                                 REG + "('CV', function() return 2 end)")),
        ("FUNCTION", "STATS"),
        # the load-time table kept by a function: register_function fails at run time
        ("FUNCTION", "LOAD", lib("n5", "local r = redis\n" + REG +
                                 "('late', function() return r.register_function('g', function() end) end)")),
        ("FCALL", "late", "0"),
        ("FCALL", "late", "0"),
        # long names (300 bytes)
        ("FUNCTION", "LOAD", lib("L" * 300, REG + "('%s', function() return 300 end)" % ("g" * 300))),
        ("FCALL", "G" * 300, "0"),
        ("FUNCTION", "DELETE", "L" * 300),
        ("FCALL", "g" * 300, "0"),
    ],
    "load_environment": [
        ("FUNCTION", "LOAD", lib("e", "local x = %s\n" % g + REG + "('pf', function() end)"))
        for g in ["string", "table", "math", "cjson", "bit", "tostring", "type", "_G", "load",
                  "os", "redis.call", "redis.pcall", "redis.sha1hex", "redis.error_reply",
                  "redis.status_reply", "redis.set_repl", "redis.setresp", "redis.breakpoint",
                  "redis.acl_check_cmd", "redis.replicate_commands", "KEYS", "ARGV", "print",
                  "pairs", "next", "pcall", "error", "setmetatable", "rawset", "loadstring",
                  "dofile", "getfenv"]
    ] + [
        ("FUNCTION", "LOAD", lib("e", "redis.x = 1")),
        ("FUNCTION", "LOAD", lib("e", "redis.log = 1")),
        ("FUNCTION", "LOAD", lib("e", "redis.register_function = 1")),
        ("FUNCTION", "LOAD", lib("e", "x = 1")),
        ("FUNCTION", "LOAD", lib("e", "function foo() end")),
        ("FUNCTION", "LOAD", lib("e", REG + "('x', function() end)\nerror('late')")),
        ("FUNCTION", "LOAD", lib("e", REG + "('x', function() end)\nredis.log(redis.LOG_WARNING)")),
        ("FUNCTION", "LOAD", lib("e", "local x = \n")),
        ("FUNCTION", "LOAD", lib("e", "\n\nfor")),
        ("FUNCTION", "LOAD", lib("e", "while true do end")),
        ("FUNCTION", "LOAD", lib("ok1", "local v = redis.REDIS_VERSION_NUM + redis.LOG_NOTICE\n"
                                        "redis.log(redis.LOG_DEBUG, 'loading', 'ok1')\n"
                                        "local r = redis\n" + REG +
                                        "('rr', function() return type(r.call) end)\n" + REG +
                                        "('rs', function() return type(redis.call) end)")),
        ("FCALL", "rr", "0"),
        ("FCALL", "rs", "0"),
    ],
    "load_replace_delete": [
        ("FUNCTION", "LOAD", lib("x", REG + "('f', function() return 1 end)")),
        ("FUNCTION", "LOAD", lib("x", REG + "('f', function() return 2 end)")),
        ("FUNCTION", "LOAD", lib("y", REG + "('F', function() return 3 end)")),
        ("FUNCTION", "LOAD", lib("X", REG + "('g', function() return 4 end)")),
        ("FUNCTION", "LOAD", "REPLACE", lib("x", REG + "('f2', function() return 5 end)")),
        ("FCALL", "f", "0"),
        ("FCALL", "F2", "0"),
        ("FCALL", "g", "0"),
        ("FUNCTION", "LOAD", "replace", lib("y", REG + "('G', function() return 6 end)")),
        ("FUNCTION", "LOAD", "REPLACE", lib("y", REG + "('f', function() return 7 end)")),
        ("FCALL", "f", "0"),
        ("FUNCTION", "STATS"),
        ("FUNCTION", "DELETE", "Y"),
        ("FUNCTION", "DELETE", "y"),
        ("FUNCTION", "DELETE", "y"),
        ("FUNCTION", "DELETE"),
        ("FUNCTION", "DELETE", "a", "b"),
        ("FCALL", "f", "0"),
        ("FUNCTION", "STATS"),
        ("FUNCTION", "FLUSH", "bad"),
        ("FUNCTION", "FLUSH", "sync", "async"),
        ("FUNCTION", "FLUSH", "ASYNC"),
        ("FUNCTION", "STATS"),
        ("FUNCTION", "LIST"),
        ("FUNCTION", "LOAD", lib("z", REG + "('f', function() return 8 end)")),
        ("FUNCTION", "FLUSH", "sync"),
        ("FUNCTION", "FLUSH"),
        ("FUNCTION", "DUMP"),
        ("FCALL", "f", "0"),
    ],
    "fcall": [
        ("FUNCTION", "LOAD", lib("lib1", "\n".join([
            REG + "('echo', function(keys, args) return {keys, args} end)",
            REG + "{function_name='setk', callback=function(k, a) return redis.call('set', k[1], a[1]) end, description='sets'}",
            REG + "{function_name='getk', callback=function(k, a) return redis.call('get', k[1]) end, flags={'no-writes'}}",
            REG + "('incr', function(k) return redis.call('incr', k[1]) end)",
            REG + "('boom', function() error('oops') end)",
            REG + "('unknown', function() return redis.call('nope') end)",
            REG + "('myerr', function() return redis.error_reply('MY err') end)",
            REG + "('tblerr', function() error({err='X y'}) end)",
            REG + "('arity', function() return redis.call('get') end)",
            REG + "('pc', function() return redis.pcall('incr', 'str') end)",
            REG + "('status', function() return redis.status_reply('FINE') end)",
            REG + "('keys', function() return KEYS end)",
            REG + "('argv', function() return ARGV end)",
            REG + "('gset', function() x = 1 end)",
            REG + "('conv', function() return {1, 2.9, 'a', {3, {ok='o'}}, false, true, nil, 9} end)",
            REG + "('sha', function(k, a) return redis.sha1hex(a[1]) end)",
            REG + "{function_name='nw', callback=function(k) return redis.call('set', k[1], 'x') end, flags={'no-writes'}}",
            REG + "('rf', function() return redis.register_function end)",
            REG + "('sel', function() redis.call('select', '1'); redis.call('set', 'in1', 'v'); return redis.call('get', 'in1') end)",
            REG + "('acl', function() return {redis.acl_check_cmd('get', 'k'), pcall(redis.acl_check_cmd, 'nope')} end)",
            REG + "('rk', function() local t = {} for k in pairs(redis) do t[#t+1] = k end table.sort(t) return t end)",
        ]))),
        ("FCALL", "echo", "2", "a", "b", "c", "d"),
        ("FCALL", "echo", "0"),
        ("FCALL", "ECHO", "0", "x"),
        ("FCALL", "setk", "1", "k1", "v1"),
        ("FCALL", "getk", "1", "k1"),
        ("FCALL_RO", "getk", "1", "k1"),
        ("FCALL_RO", "setk", "1", "k1", "v"),
        ("FCALL_RO", "echo", "0"),
        ("FCALL", "incr", "1", "cnt"),
        ("FCALL", "incr", "1", "k1"),
        ("FCALL", "boom", "0"),
        ("FCALL", "unknown", "0"),
        ("FCALL", "myerr", "0"),
        ("FCALL", "tblerr", "0"),
        ("FCALL", "arity", "0"),
        ("SET", "str", "abc"),
        ("FCALL", "pc", "0"),
        ("FCALL", "status", "0"),
        ("FCALL", "keys", "0"),
        ("FCALL", "argv", "0"),
        ("FCALL", "gset", "0"),
        ("FCALL", "conv", "0"),
        ("FCALL", "sha", "0", "abc"),
        ("FCALL", "nw", "1", "k1"),
        ("FCALL_RO", "nw", "1", "k1"),
        ("FCALL", "rf", "0"),
        ("FCALL", "sel", "0"),
        ("GET", "in1"),
        ("FCALL", "acl", "0"),
        ("FCALL", "rk", "0"),
        ("FCALL", "nosuch", "0"),
        ("FCALL", "nosuch", "abc"),
        ("FCALL", "nosuch", "-1"),
        ("FCALL", "echo", "abc"),
        ("FCALL", "echo", "01"),
        ("FCALL", "echo", "-1"),
        ("FCALL", "echo", "3", "a"),
        ("FCALL", "echo", "1"),
        ("FCALL",),
        ("FCALL", "echo"),
        ("FCALL_RO", "echo"),
        ("MGET", "k1", "cnt"),
    ],
    # (one function per library: Redis lists several in its hash order)
    "list_stats_help": [
        ("FUNCTION", "LOAD", lib("mylib", REG + "{function_name='f3', callback=function() end, description='all', flags={'no-writes', 'allow-oom', 'allow-stale', 'no-cluster', 'allow-cross-slot-keys'}}")),
        ("FUNCTION", "LOAD", lib("lib2", REG + "{function_name='f2', callback=function() end, description='', flags={'allow-stale', 'no-writes'}}")),
        ("FUNCTION", "LOAD", lib("lib3", REG + "('f1', function() end)")),
        ("FUNCTION", "LIST", "LIBRARYNAME", "lib2"),
        ("FUNCTION", "LIST", "LIBRARYNAME", "lib3", "WITHCODE"),
        ("FUNCTION", "LIST", "LIBRARYNAME", "my*"),
        ("FUNCTION", "LIST", "withcode", "libraryname", "MY*"),
        ("FUNCTION", "LIST", "LIBRARYNAME", "*lib"),
        ("FUNCTION", "LIST", "LIBRARYNAME", "lib[3]"),
        ("FUNCTION", "LIST", "LIBRARYNAME", "other"),
        ("FUNCTION", "LIST", "LIBRARYNAME"),
        ("FUNCTION", "LIST", "bad"),
        ("FUNCTION", "LIST", "WITHCODE", "WITHCODE"),
        ("FUNCTION", "LIST", "LIBRARYNAME", "a", "LIBRARYNAME", "b"),
        ("FUNCTION", "STATS"),
        ("FUNCTION", "STATS", "x"),
        ("FUNCTION", "DUMP", "x"),
        ("FUNCTION", "KILL"),
        ("FUNCTION", "KILL", "x"),
        ("FUNCTION", "HELP"),
        ("FUNCTION", "help", "x"),
        ("FUNCTION", "nope"),
        ("FUNCTION",),
        ("!", "HELLO", "3"),
        ("FUNCTION", "LIST", "WITHCODE", "LIBRARYNAME", "mylib"),
        ("FUNCTION", "LIST", "LIBRARYNAME", "lib3"),
        ("FUNCTION", "STATS"),
        ("FCALL", "f1", "0"),
        ("!", "HELLO", "2"),
    ],
    "restore_errors": [
        ("FUNCTION", "RESTORE", "x"),
        ("FUNCTION", "RESTORE", ""),
        ("FUNCTION", "RESTORE", b"\x0a\x00\x5d\x9b\x5c\x40\x0f\x7f\xa2\xda"),  # empty, valid
        ("FUNCTION", "RESTORE", b"\x0a\x00\x5d\x9b\x5c\x40\x0f\x7f\xa2\xdb"),
        ("FUNCTION", "RESTORE", b"\x00\x01v\n\x00\x91\x08\xce\xb2\x198\x8a\xce"),  # DUMP of "v"
        ("FUNCTION", "RESTORE", b"\x0a\x00\x5d\x9b\x5c\x40\x0f\x7f\xa2\xda", "bad"),
        ("FUNCTION", "RESTORE", b"\x0a\x00\x5d\x9b\x5c\x40\x0f\x7f\xa2\xda", "FLUSH", "APPEND"),
        ("FUNCTION", "restore", "a", "b", "c"),
        ("FUNCTION", "RESTORE"),
        # an LZF string claiming 2^62 bytes (a valid checksum): refused, nothing allocated
        ("FUNCTION", "RESTORE", with_footer(b"\xf5\xc3\x01\x81" + (1 << 62).to_bytes(8, "big") +
                                            b"\x00\x61")),
        ("FUNCTION", "RESTORE", with_footer(b"\xf5\xc3\x05\x40\xff\x00a\xe0\xff\x00")),
        ("FUNCTION", "RESTORE", with_footer(b"\xf5\x05#!lua")),
        ("FUNCTION", "STATS"),
    ],
    "multi_and_scripts": [
        ("MULTI",),
        ("FUNCTION", "LOAD", lib("m", REG + "('xm', function(k) redis.call('set', k[1], 'm'); return 7 end)")),
        ("FCALL", "xm", "1", "mk"),
        ("FUNCTION", "LIST", "LIBRARYNAME", "nomatch"),
        ("GET", "mk"),
        ("EXEC",),
        ("MULTI",),
        ("FCALL", "xm", "x"),
        ("FCALL_RO", "xm", "0"),
        ("FUNCTION", "DELETE", "m"),
        ("EXEC",),
        ("EVAL", "return redis.call('fcall', 'xm', 0)", "0"),
        ("EVAL", "return redis.call('function', 'list')", "0"),
        ("EVAL", "return redis.pcall('fcall_ro', 'xm', 0)", "0"),
        ("FUNCTION", "LOAD", lib("m2", REG + "('xe', function() return redis.call('eval', 'return 1', 0) end)\n" +
                                 REG + "('xf', function() return redis.call('fcall', 'xe', 0) end)\n" +
                                 REG + "('xl', function() return redis.call('function', 'list') end)")),
        ("FCALL", "xe", "0"),
        ("FCALL", "xf", "0"),
        ("FCALL", "xl", "0"),
    ],
    # EVAL scripts may have a shebang line too (Redis 7): its flags then rule
    "eval_shebang": [
        ("EVAL", body, "0") for body in [
            "#!lua\nreturn 1", "#!lua flags=no-writes\nreturn redis.call('set','a','b')",
            "#!lua flags=no-writes,allow-oom\nreturn 2", "#!lua flags=\nreturn 3",
            "#!lua flags=bad\nreturn 1", "#!py\nreturn 1", "#!lua name=x\nreturn 1",
            "#!lua flags=no-writes flags=allow-oom\nreturn 1", "#!lua", "#!lua\nerror('x')",
            "#!lua\n\nlocal x = ", "#!lua flags=NO-WRITES\nreturn 1",
            "#! flags=no-writes\nreturn 1", "#!lua x\nreturn 1", "#!lua flags=no-writes,\nreturn 1",
            "#!lua flags=,no-writes\nreturn 1", "#!lua  flags=no-writes  \nreturn 1",
            "#!LUA\nreturn 1", '#!lua "flags=no-writes"\nreturn 1', "#!lua 'x\nreturn 1",
            "#!lua\nreturn redis.call('set', 'sk', 'v')",
        ]
    ] + [
        ("EVAL_RO", "#!lua\nreturn 1", "0"),
        ("EVAL_RO", "#!lua flags=no-writes\nreturn redis.call('get', 'sk')", "0"),
        ("EVAL_RO", "#!lua flags=allow-oom\nreturn 1", "0"),
        ("SCRIPT", "LOAD", "#!lua flags=bad\nreturn 1"),
        ("SCRIPT", "LOAD", "#!lua flags=no-writes\nreturn redis.call('del', 'sk')"),
        ("EVALSHA", "62356792f13974dd79e49ef0426b22d78d30086e", "0"),
        ("EVALSHA_RO", "62356792f13974dd79e49ef0426b22d78d30086e", "0"),
        ("GET", "sk"),
    ],
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))  # ("!", ...): sent, not compared
def test_scenario_matches_redis(pair, name):
    flush_both(pair)
    try:
        for cmd in SCENARIOS[name]:
            if cmd[0] == "!":  # (HELLO: the servers' versions and ids differ)
                pair.both(*cmd[1:])
            else:
                pair.same(*cmd)
    finally:
        flush_both(pair)


def test_restore_joins_as_redis(pair):
    """FUNCTION RESTORE loads the whole payload, then refuses (APPEND) or replaces
    (REPLACE) the libraries of its names, then checks function names: a function may move
    from one library to another."""
    flush_both(pair)
    for c in (pair.k, pair.r):
        assert c.cmd("FUNCTION", "LOAD", lib("A", REG + "('f', function() return 'A.f' end)")) == b"A"
        assert c.cmd("FUNCTION", "LOAD", lib("B", REG + "('g', function() return 'B.g' end)")) == b"B"
    payload = pair.r.cmd("FUNCTION", "DUMP")  # A(f), B(g)
    flush_both(pair)
    try:
        pair.same("FUNCTION", "LOAD", lib("B", REG + "('f', function() return 'B.f' end)"))
        pair.same("FUNCTION", "RESTORE", payload, "REPLACE")
        pair.same("FCALL", "f", "0")
        pair.same("FCALL", "g", "0")
        flush_both(pair)
        pair.same("FUNCTION", "LOAD", lib("B", REG + "('g', function() return 'B.g' end)"))
        pair.same("FUNCTION", "LOAD", lib("C", REG + "('f', function() return 'C.f' end)"))
        pair.same("FUNCTION", "RESTORE", payload)  # B exists: that error, not f's
        pair.same("FUNCTION", "RESTORE", payload, "REPLACE")  # f is C's
        pair.same("FCALL", "f", "0")
        pair.same("FUNCTION", "RESTORE", payload, "FLUSH")
        pair.same("FCALL", "f", "0")
        pair.same("FUNCTION", "STATS")
    finally:
        flush_both(pair)


def test_oom_rule_matches_redis(pair):
    """Over maxmemory a function runs only if flagged no-writes or allow-oom; inside an
    allow-oom function the writes go on."""
    flush_both(pair)
    pair.same("SET", "k", "v")
    pair.same("FUNCTION", "LOAD", lib("al", "\n".join([
        REG + "{function_name='W', callback=function(k) return redis.call('set', k[1], 'x') end}",
        REG + "{function_name='oom', callback=function(k) return redis.call('set', k[1], 'y') end, flags={'allow-oom'}}",
        REG + "{function_name='R', callback=function(k) return redis.call('get', k[1]) end, flags={'no-writes'}}",
    ])))
    try:
        pair.same("CONFIG", "SET", "maxmemory", "1")
        pair.same("FCALL", "W", "1", "k")
        pair.same("FCALL", "oom", "1", "k")
        pair.same("FCALL", "R", "1", "k")
        pair.same("FCALL_RO", "R", "1", "k")
        # and EVAL scripts with a shebang line (without one: their old rules)
        pair.same("EVAL", "#!lua\nreturn redis.call('get', 'k')", "0")
        pair.same("EVAL", "#!lua flags=no-writes\nreturn redis.call('get', 'k')", "0")
        pair.same("EVAL", "#!lua flags=allow-oom\nreturn redis.call('set', 'k', 'z')", "0")
        pair.same("EVAL", "return redis.call('get', 'k')", "0")
        pair.same("EVAL", "return redis.call('set', 'k', 'q')", "0")
        # FUNCTION LOAD and RESTORE may add memory: refused; DELETE and FLUSH are not
        pair.same("FUNCTION", "LOAD", lib("more", REG + "('m', function() end)"))
        pair.same("FUNCTION", "RESTORE", with_footer(b""))
        pair.same("FUNCTION", "DELETE", "nope")
    finally:
        pair.same("CONFIG", "SET", "maxmemory", "0")
        flush_both(pair)
    pair.same("GET", "k")


# ---------------------------------------------------------------------------------------
# kvd only


@pytest.fixture
def kf(kvd):
    """A client on the module's kvd, data and libraries flushed."""
    c = kvd.client()
    assert c.cmd("FLUSHALL") == St("OK")
    assert c.cmd("FUNCTION", "FLUSH") == St("OK")
    yield c
    c.cmd("FUNCTION", "FLUSH")
    c.close()
    kvd.check_alive()


def names(listing):
    return [e[1] for e in listing]


def test_case_variants_in_one_library_call_the_first(kf):
    assert kf.cmd("FUNCTION", "LOAD", lib("cv", REG + "('cv', function() return 1 end)\n" +
                                          REG + "('CV', function() return 2 end)")) == b"cv"
    assert [kf.cmd("FCALL", n, "0") for n in ("cv", "CV", "Cv")] == [1, 1, 1]
    assert kf.cmd("FUNCTION", "DELETE", "cv") == St("OK")
    assert kf.cmd("FCALL", "CV", "0") == Err("ERR Function not found")


def test_list_is_by_name_with_functions_in_registration_order(kf):
    for n in ("b_lib", "a_lib", "C_lib"):
        assert kf.cmd("FUNCTION", "LOAD", lib(n, REG + "('%s_z', function() end)\n" % n +
                                              REG + "('%s_a', function() end)" % n)) == n.encode()
    got = kf.cmd("FUNCTION", "LIST")
    assert names(got) == [b"C_lib", b"a_lib", b"b_lib"], got
    assert [f[1] for f in got[1][5]] == [b"a_lib_z", b"a_lib_a"], got
    assert names(kf.cmd("FUNCTION", "LIST", "LIBRARYNAME", "*_LIB")) == [b"C_lib", b"a_lib", b"b_lib"]
    assert names(kf.cmd("FUNCTION", "LIST", "LIBRARYNAME", "[ab]*")) == [b"a_lib", b"b_lib"]
    assert kf.cmd("FUNCTION", "STATS") == [b"running_script", None, b"engines",
                                           [b"LUA", [b"libraries_count", 3, b"functions_count", 6]]]


def test_dump_restore_round_trips_with_redis(kvd, redis_server):
    need_redis()
    k = kvd.client()
    r = redis_server.client()
    try:
        for c in (k, r):
            assert c.cmd("FUNCTION", "FLUSH") == St("OK")
        big = "-- " + "padding that compresses well " * 40 + "\n"
        code1 = lib("one", big + REG + "('one_f', function(k, a) return 'one:' .. a[1] end)")
        code2 = lib("two", REG + "{function_name='two_f', callback=function() return 2 end, "
                               "flags={'no-writes'}, description='d2'}")
        assert r.cmd("FUNCTION", "LOAD", code1) == b"one"
        assert r.cmd("FUNCTION", "LOAD", code2) == b"two"
        payload = r.cmd("FUNCTION", "DUMP")
        assert len(payload) < len(code1)  # Redis compressed it
        assert k.cmd("FUNCTION", "RESTORE", payload) == St("OK")
        assert k.cmd("FCALL", "one_f", "0", "x") == b"one:x"
        assert k.cmd("FCALL_RO", "two_f", "0") == 2
        listing = {e[1]: e for e in k.cmd("FUNCTION", "LIST", "WITHCODE")}
        assert listing[b"one"][7] == code1.encode() and listing[b"two"][7] == code2.encode()
        for policy in ((), ("APPEND",)):  # (the first of the payload's, in Redis's order)
            assert k.cmd("FUNCTION", "RESTORE", payload, *policy) in (
                Err("ERR Library one already exists"), Err("ERR Library two already exists"))
        # kvd's payload into Redis
        mine = k.cmd("FUNCTION", "DUMP")
        assert r.cmd("FUNCTION", "FLUSH") == St("OK")
        assert r.cmd("FUNCTION", "RESTORE", mine) == St("OK")
        assert r.cmd("FCALL", "one_f", "0", "y") == b"one:y"
        assert sorted(names(r.cmd("FUNCTION", "LIST"))) == [b"one", b"two"]
        # policies
        assert k.cmd("FUNCTION", "LOAD", "REPLACE", lib("one", REG + "('one_f', function() return 'new' end)")) == b"one"
        assert k.cmd("FUNCTION", "LOAD", lib("three", REG + "('three_f', function() return 3 end)")) == b"three"
        assert k.cmd("FUNCTION", "RESTORE", mine, "REPLACE") == St("OK")
        assert k.cmd("FCALL", "one_f", "0", "z") == b"one:z"
        assert k.cmd("FCALL", "three_f", "0") == 3
        assert k.cmd("FUNCTION", "RESTORE", mine, "FLUSH") == St("OK")
        assert k.cmd("FCALL", "three_f", "0") == Err("ERR Function not found")
        assert sorted(names(k.cmd("FUNCTION", "LIST"))) == [b"one", b"two"]
        # a restored library whose function another library has: nothing changes
        assert k.cmd("FUNCTION", "FLUSH") == St("OK")
        assert k.cmd("FUNCTION", "LOAD", lib("other", REG + "('two_f', function() return 0 end)")) == b"other"
        assert k.cmd("FUNCTION", "RESTORE", mine, "REPLACE") == Err("ERR Function two_f already exists")
        assert names(k.cmd("FUNCTION", "LIST")) == [b"other"]
        # a damaged payload changes nothing either
        bad = bytearray(mine)
        bad[5] ^= 0x20
        assert k.cmd("FUNCTION", "RESTORE", bytes(bad), "FLUSH") == \
            Err("ERR DUMP payload version or checksum are wrong")
        assert names(k.cmd("FUNCTION", "LIST")) == [b"other"]
    finally:
        for c in (k, r):
            c.cmd("FUNCTION", "FLUSH")
            c.close()


def test_functions_run_on_every_thread(kf, groups):
    a, b = groups
    assert kf.cmd("FUNCTION", "LOAD", lib("t", "\n".join([
        REG + "('put', function(k, a) for i, key in ipairs(k) do redis.call('set', key, a[1]) end return #k end)",
        REG + "{function_name='sum', callback=function(k) local s = 0 for i, key in ipairs(k) do s = s + tonumber(redis.call('get', key) or 0) end return s end, flags={'no-writes'}}",
        REG + "('keyless', function(k, a) redis.call('set', a[1], 'kl'); redis.call('set', a[2], 'kl'); return redis.call('mget', a[1], a[2]) end)",
    ]))) == b"t"
    # a fresh connection per call: connections land on either thread
    for i in range(6):
        with Client(kf.sock.getpeername()[1]) as c:
            assert c.cmd("FCALL", "put", "1", a[i], "3") == 1
            assert c.cmd("FCALL", "put", "1", b[i], "4") == 1
            assert c.cmd("FCALL", "put", "2", a[i + 6], b[i + 6], "5") == 2
            assert c.cmd("FCALL_RO", "sum", "3", a[i], b[i], a[i + 6]) == 12
            assert c.cmd("FCALL", "keyless", "0", a[i + 12], b[i + 12]) == [b"kl", b"kl"]
    assert kf.cmd("MGET", a[0], b[0], a[6], b[6]) == [b"3", b"4", b"5", b"5"]


def test_replace_while_clients_call(kvd, kf, groups):
    """Clients on both threads call f while a library is replaced with new versions: every
    reply is some version's, and once a REPLACE replied, no call made after it on any
    thread sees an older version."""
    a, b = groups
    assert kf.cmd("FUNCTION", "LOAD", lib("v", REG + "('f', function() return 0 end)")) == b"v"
    done = threading.Event()
    latest = [0]
    errors = []

    def caller(key):
        with kvd.client() as c:
            while not done.is_set():
                floor = latest[0]
                r = c.cmd("FCALL", "f", "1", key)
                if not isinstance(r, int) or r < floor:
                    errors.append((key, floor, r))
                    return

    ts = [threading.Thread(target=caller, args=(k,)) for k in (a[0], b[0], a[1], b[1])]
    with threads_running(ts, done):
        for v in range(1, 41):
            assert kf.cmd("FUNCTION", "LOAD", "REPLACE",
                          lib("v", REG + "('f', function() return %d end)" % v)) == b"v"
            latest[0] = v
            time.sleep(0.005)
    assert not errors, errors
    for key in (a[0], b[0]):
        assert kf.cmd("FCALL", "f", "1", key) == 40


def test_pause_write_holds_writing_functions_only(kvd, kf):
    """(and EVAL scripts whose shebang says no-writes run too, as in Redis)"""
    assert kf.cmd("FUNCTION", "LOAD", lib("p", REG + "('w', function(k) return redis.call('set', k[1], 'w') end)\n" +
                                          REG + "{function_name='r', callback=function(k) return redis.call('get', k[1]) end, flags={'no-writes'}}")) == b"p"
    assert kf.cmd("SET", "pk", "v") == St("OK")
    with kvd.client() as c:
        assert kf.cmd("CLIENT", "PAUSE", "10000", "WRITE") == St("OK")
        try:
            assert c.cmd("FCALL", "r", "1", "pk") == b"v"
            assert c.cmd("FCALL_RO", "r", "1", "pk") == b"v"
            assert c.cmd("EVAL", "#!lua flags=no-writes\nreturn redis.call('get', KEYS[1])",
                         "1", "pk") == b"v"
            c.send(encode("FCALL", "w", "1", "pk"))
            assert c.next_within(0.3) is None  # held
            assert kf.cmd("GET", "pk") == b"v"
        finally:
            assert kf.cmd("CLIENT", "UNPAUSE") == St("OK")
        assert c.read() == St("OK")
    assert kf.cmd("GET", "pk") == b"w"


def test_function_kill_stops_a_read_only_function():
    k = Kvd()
    try:
        with k.client() as c:
            assert c.cmd("FUNCTION", "LOAD", lib("busy", REG + "{function_name='spin', callback=function(k) redis.call('get', k[1]); while true do end end, flags={'no-writes'}}\n" +
                                                 REG + "('spinw', function(k) redis.call('set', k[1], 'x'); while true do end end)")) == b"busy"
            assert c.cmd("SCRIPT", "KILL") == Err("NOTBUSY No scripts in execution right now.")
        busy = Client(k.port)
        busy.send(encode("FCALL", "spin", "1", "k1"))
        time.sleep(0.3)
        stats = kill_from_free_shard(k.port, cmd=("FUNCTION", "STATS"))  # names it
        assert stats[0:2] == [b"running_script", [b"name", b"spin", b"command",
                                                  [b"FCALL", b"spin", b"1", b"k1"],
                                                  b"duration_ms", stats[1][5]]], stats
        assert 100 <= stats[1][5] < 60000, stats
        assert kill_from_free_shard(k.port, cmd=("FUNCTION", "KILL")) == St("OK")
        r = busy.read()
        # (Redis's text names SCRIPT KILL for functions too)
        assert r.s == "ERR Script killed by user with SCRIPT KILL... script: spin, on @user_function:2.", r
        busy.close()
        busy = Client(k.port)
        busy.send(encode("FCALL", "spinw", "1", "k2"))
        time.sleep(0.3)
        r = kill_from_free_shard(k.port, cmd=("FUNCTION", "KILL"))
        assert isinstance(r, Err) and r.s.startswith("UNKILLABLE"), r
        busy.close()
    finally:
        k.stop()  # SIGTERM stops the unkillable one at its next hook
    k = Kvd()
    try:
        with k.client() as c:  # a short function is not named
            assert c.cmd("FUNCTION", "LOAD", lib("quick", REG + "('q', function() return 1 end)")) == b"quick"
            assert c.cmd("FCALL", "q", "0") == 1
            assert c.cmd("FUNCTION", "STATS")[1] is None
    finally:
        k.stop()


def test_kill_is_not_swallowed_by_pcall():
    """A function (or EVAL script) that pcalls its busy loop, even in coroutines, is still
    stopped by FUNCTION KILL (SCRIPT KILL), and by shutdown: the stop is raised again at
    every instruction of every thread of the interpreter."""
    k = Kvd()
    try:
        with k.client() as c:
            assert c.cmd("FUNCTION", "LOAD", lib("swallow", REG + "{function_name='spin', callback=function() local n = 0 while true do n = n + 1 pcall(function() local i = 0 while true do i = i + 1 end end) end end, flags={'no-writes'}}")) == b"swallow"
        for run, kill in ((("FCALL", "spin", "0"), "FUNCTION"),
                          (("EVAL", "while true do pcall(function() while true do end end) end", "0"),
                           "SCRIPT")):
            busy = Client(k.port)
            busy.send(encode(*run))
            time.sleep(0.3)
            other = "SCRIPT" if kill == "FUNCTION" else "FUNCTION"
            r = kill_from_free_shard(k.port, cmd=(other, "KILL"))
            assert isinstance(r, Err) and r.s.startswith("BUSY Redis is busy running a script. "
                                                         "You can only call %s KILL" % kill), r
            assert kill_from_free_shard(k.port, cmd=(kill, "KILL")) == St("OK")
            with k.client() as c:  # (that reply's code is counted: errorstat_BUSY)
                assert info_field(c, "errorstats", "errorstat_BUSY").startswith("count=")
            busy.settimeout(10)
            r = busy.read()
            assert isinstance(r, Err) and r.s.startswith("ERR Script killed by user with SCRIPT KILL"), r
            busy.close()
        # coroutines: the stop reaches every thread of the interpreter, as in Redis
        co = ("local body = function() while true do end end "
              "while true do pcall(function() while true do "
              "coroutine.resume(coroutine.create(body)) end end) end")
        busy = Client(k.port)
        busy.send(encode("EVAL", co, "0"))
        time.sleep(0.3)
        assert kill_from_free_shard(k.port, cmd=("SCRIPT", "KILL")) == St("OK")
        busy.settimeout(10)
        r = busy.read()
        assert isinstance(r, Err) and r.s.startswith("ERR Script killed by user with SCRIPT KILL"), r
        busy.close()
        busy = Client(k.port)
        busy.send(encode("EVAL", co, "0"))
        time.sleep(0.3)
        k.stop()  # SIGTERM: stopped too, kvd exits 0
        busy.close()
    finally:
        if k.alive():
            k.stop()


def test_shards_load_only_new_libraries(kvd, kf, groups):
    """After a change each shard loads the libraries it lacks and forgets those gone; a
    library's code runs once in the scratch interpreter of its LOAD and once per shard,
    not again at every later change (its load timeout is not at stake)."""
    a, b = groups
    marker = "loading-lib-once-%d" % time.monotonic_ns()
    assert kf.cmd("FUNCTION", "LOAD", lib("once", "redis.log(redis.LOG_WARNING, '%s')\n" % marker +
                                          REG + "('o', function(k) return 1 end)")) == b"once"
    for key in (a[0], b[0]):
        assert kf.cmd("FCALL", "o", "1", key) == 1
    for i in range(3):
        assert kf.cmd("FUNCTION", "LOAD", "REPLACE", lib("other", REG + "('x%d', function() return 2 end)" % i)) == b"other"
        for key in (a[0], b[0]):
            assert kf.cmd("FCALL", "o", "1", key) == 1
            assert kf.cmd("FCALL", "x%d" % i, "1", key) == 2
            if i > 0:
                assert kf.cmd("FCALL", "x%d" % (i - 1), "1", key) == Err("ERR Function not found")
    wait_until(lambda: kvd.stderr().count(marker) >= 3, 5, what="the log lines")
    assert kvd.stderr().count(marker) == 3, kvd.stderr().count(marker)  # LOAD + 2 shards
    assert kf.cmd("FUNCTION", "DELETE", "once") == St("OK")
    for key in (a[0], b[0]):
        assert kf.cmd("FCALL", "o", "1", key) == Err("ERR Function not found")
        assert kf.cmd("FCALL", "x2", "1", key) == 2


@pytest.mark.parametrize("server", ["kvd", "redis"])
def test_pause_write_follows_script_flags(kvd, redis_server, server):
    """CLIENT PAUSE WRITE holds scripts and functions by their flags when they have some
    (EVALSHA of a no-writes script runs; FCALL_RO of a writing function and EVAL_RO of a
    "#!lua" script are held, then refused), and FUNCTION LOAD / DELETE / FLUSH."""
    if server == "redis":
        need_redis()
    port = kvd.port if server == "kvd" else redis_server.port
    c, p = Client(port), Client(port)
    try:
        assert c.cmd("FUNCTION", "FLUSH") == St("OK")
        assert c.cmd("FUNCTION", "LOAD", lib("pw", REG + "('w', function() return 1 end)")) == b"pw"
        ro_sha = c.cmd("SCRIPT", "LOAD", "#!lua flags=no-writes\nreturn 5").decode()
        assert p.cmd("CLIENT", "PAUSE", "10000", "WRITE") == St("OK")
        try:
            assert c.cmd("EVALSHA", ro_sha, "0") == 5
            for cmd in [("FCALL_RO", "w", "0"), ("EVAL_RO", "#!lua\nreturn 1", "0"),
                        ("FUNCTION", "DELETE", "pw")]:
                c.send(encode(*cmd))
                assert c.next_within(0.3) is None, cmd  # held
                assert p.cmd("CLIENT", "UNPAUSE") == St("OK")
                r = c.read()
                assert p.cmd("CLIENT", "PAUSE", "10000", "WRITE") == St("OK")
                if cmd[0] != "FUNCTION":
                    assert r == Err("ERR Can not execute a script with write flag using *_ro command."), r
        finally:
            assert p.cmd("CLIENT", "UNPAUSE") == St("OK")
    finally:
        c.cmd("FUNCTION", "FLUSH")
        c.close()
        p.close()


def test_info_counts_functions(kf):
    assert info_field(kf, "memory", "number_of_functions") == "0"
    assert kf.cmd("FUNCTION", "LOAD", lib("i1", REG + "('a', function() return 1 end)\n" +
                                          REG + "('b', function() return 1 end)")) == b"i1"
    assert kf.cmd("FUNCTION", "LOAD", lib("i2", REG + "('c', function() return 1 end)")) == b"i2"
    assert info_field(kf, "memory", "number_of_functions") == "3"
    assert info_field(kf, "memory", "number_of_libraries") == "2"
    assert kf.cmd("FCALL", "c", "0") == 1 and kf.cmd("EVAL", "return 1", "0") == 1
    mem = {f: int(info_field(kf, "memory", f)) for f in (
        "used_memory_lua", "used_memory_vm_eval", "used_memory_vm_functions",
        "used_memory_vm_total", "used_memory_functions", "used_memory_scripts_eval",
        "used_memory_scripts")}
    assert mem["used_memory_vm_functions"] > 10000 and mem["used_memory_vm_eval"] > 10000, mem
    assert mem["used_memory_lua"] == mem["used_memory_vm_eval"]
    assert mem["used_memory_vm_total"] == mem["used_memory_vm_eval"] + mem["used_memory_vm_functions"]
    assert mem["used_memory_functions"] > 2 * len(lib("i1", ""))
    assert mem["used_memory_scripts"] == mem["used_memory_functions"] + mem["used_memory_scripts_eval"]
    assert kf.cmd("CONFIG", "RESETSTAT") == St("OK")
    for _ in range(3):
        assert kf.cmd("FCALL", "a", "0") == 1
    assert kf.cmd("FCALL", "nope", "0") == Err("ERR Function not found")
    stats = kf.cmd("INFO", "commandstats").decode()
    assert "cmdstat_fcall:calls=4," in stats and "failed_calls=1" in stats, stats
    assert "cmdstat_function|load:" not in stats
    assert kf.cmd("FUNCTION", "DELETE", "i2") == St("OK")
    assert "cmdstat_function|delete:calls=1," in kf.cmd("INFO", "commandstats").decode()
    assert info_field(kf, "memory", "number_of_libraries") == "1"


def test_redis_py_functions(kvd):
    """redis-py's function API against kvd."""
    r = redis.Redis(port=kvd.port)
    r.function_flush()
    code = lib("pylib", REG + "('hello', function(keys, args) return 'hello ' .. args[1] end)\n" +
               REG + "{function_name='get_ro', callback=function(keys) return redis.call('get', keys[1]) end, flags={'no-writes'}}")
    assert r.function_load(code) == b"pylib"
    assert r.fcall("hello", 0, "world") == b"hello world"
    r.set("pk", "pv")
    assert r.fcall_ro("get_ro", 1, "pk") == b"pv"
    listing = r.function_list(library="py*", withcode=True)
    assert listing[0][b"library_name"] == b"pylib" if isinstance(listing[0], dict) else listing
    payload = r.function_dump()
    assert r.function_flush() is True or r.function_flush()
    assert r.function_restore(payload)
    assert r.fcall("hello", 0, "again") == b"hello again"
    assert r.function_delete("pylib")
    with pytest.raises(redis.ResponseError, match="Function not found"):
        r.fcall("hello", 0, "x")
    r.close()


# ---- durability ----------------------------------------------------------------------


def listing(c):
    return c.cmd("FUNCTION", "LIST", "WITHCODE")


def test_functions_survive_kill9():
    k = Kvd()
    try:
        with k.client() as c:
            assert c.cmd("FUNCTION", "LOAD", lib("d1", REG + "('d1f', function(k, a) return 'd1' end)")) == b"d1"
            assert c.cmd("FUNCTION", "LOAD", lib("d2", REG + "{function_name='d2f', callback=function() return 2 end, flags={'no-writes'}, description='two'}")) == b"d2"
            assert c.cmd("FUNCTION", "LOAD", lib("d3", REG + "('d3f', function() return 3 end)")) == b"d3"
            assert c.cmd("FUNCTION", "DELETE", "d3") == St("OK")
            assert c.cmd("FUNCTION", "LOAD", "REPLACE", lib("d1", REG + "('d1f', function(k, a) return 'd1v2' end)")) == b"d1"
            before = listing(c)
        k.kill9()
        k = k.restart()
        with k.client() as c:
            assert listing(c) == before
            assert c.cmd("FCALL", "d1f", "0") == b"d1v2"
            assert c.cmd("FCALL_RO", "d2f", "0") == 2
            assert c.cmd("FCALL", "d3f", "0") == Err("ERR Function not found")
            payload = c.cmd("FUNCTION", "DUMP")
            assert c.cmd("FUNCTION", "FLUSH") == St("OK")
        k.kill9()
        k = k.restart()
        with k.client() as c:
            assert c.cmd("FUNCTION", "LIST") == []
            assert c.cmd("FUNCTION", "RESTORE", payload) == St("OK")
        k.kill9()
        k = k.restart()
        with k.client() as c:
            assert listing(c) == before
    finally:
        k.stop()


def test_damaged_function_file_refuses_start_and_repair_sets_it_aside():
    k = Kvd()
    try:
        with k.client() as c:
            assert c.cmd("FUNCTION", "LOAD", lib("x", REG + "('xf', function() return 1 end)")) == b"x"
            assert c.cmd("SET", "data", "kept") == St("OK")
        k.kill9()
        path = os.path.join(k.data_dir(), "functions.kvf")
        with open(path, "rb") as f:
            good = f.read()
        bad = bytearray(good)
        bad[len(bad) // 2] ^= 0x01
        with open(path, "wb") as f:
            f.write(bytes(bad))
        k2 = k.restart(ready=False)
        rc = k2.wait_exit(30)
        assert rc not in (0, None) and rc > 0, rc
        log = k2.stderr()
        assert "functions.kvf is damaged" in log and "--repair" in log, log
        with open(path, "rb") as f:
            assert f.read() == bytes(bad)  # a refusal changes nothing
        k = k2.restart(args=list(k2.user_args) + ["--repair", "yes"])
        with k.client() as c:
            assert c.cmd("FUNCTION", "LIST") == []
            assert c.cmd("GET", "data") == b"kept"
        assert os.path.exists(path + ".bad") and not os.path.exists(path)
    finally:
        k.stop()


def test_appendonly_no_writes_no_function_file():
    k = Kvd(args=["--appendonly", "no"])
    try:
        with k.client() as c:
            assert c.cmd("FUNCTION", "LOAD", lib("m", REG + "('mf', function() return 1 end)")) == b"m"
            assert c.cmd("FCALL", "mf", "0") == 1
        assert not os.path.exists(os.path.join(k.data_dir(), "functions.kvf"))
    finally:
        k.stop()


def test_debug_reload_noflush_without_merge_fails_over_functions_as_redis():
    """Redis's DEBUG RELOAD NOFLUSH loads its file over the libraries it holds: without
    MERGE that fails (its error text); with MERGE, or with no library, it goes on."""
    need_redis()
    r = RedisServer(["--enable-debug-command", "yes"])
    k = Kvd(args=["--appendonly", "no", "--save", ""])
    try:
        with k.client() as kc, r.client() as rc:
            for c in (kc, rc):
                assert c.cmd("DEBUG", "RELOAD", "NOFLUSH") == St("OK")  # no library yet
                assert c.cmd("FUNCTION", "LOAD", lib("rl", "redis.register_function('rl', "
                                                   "function() return 1 end)")) == b"rl"
            for args in (("DEBUG", "RELOAD", "NOFLUSH"), ("DEBUG", "RELOAD", "NOFLUSH", "NOSAVE"),
                         ("DEBUG", "RELOAD", "NOFLUSH", "MERGE"), ("FCALL", "rl", "0")):
                assert kc.raw(*args) == rc.raw(*args), args
    finally:
        r.stop()
        k.stop()
