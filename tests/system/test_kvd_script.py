"""Lua scripting of kvd against Redis 7.0: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT
LOAD / EXISTS / FLUSH / KILL / HELP.

Replies are compared byte for byte with Debian's redis-server 7.0 (pair.same) wherever
they are deterministic (a script's sha is the sha1 of its body, so even the error lines
"... script: <sha>, on @user_script:<line>." are):

- Lua <-> RESP conversions (RESP2 and RESP3): numbers truncated to integers, tables cut
  at the first nil, {ok=...}, {err=...}, redis.status_reply / redis.error_reply, false,
  true, nil bulks seen as false, nested arrays, binary-safe strings, numbers as command
  arguments;
- KEYS / ARGV and the numkeys errors, of EVAL and EVALSHA;
- redis.call / redis.pcall argument checks and error texts, commands not allowed from
  scripts, errors of the called commands, error(), compile errors with their line;
- EVAL_RO / EVALSHA_RO refusing writes;
- the sandbox: read-only globals, no access to undefined globals, no dofile / loadfile /
  os / io / require; the table, string, math, cjson and bit libraries, redis.sha1hex,
  redis.log (kvd has no struct / cmsgpack: not tested);
- the script cache: SCRIPT LOAD / EXISTS (several shas, upper case) / FLUSH [ASYNC|SYNC],
  NOSCRIPT, EVALSHA of a script loaded (or run by EVAL) on another connection, a FLUSH
  seen by every connection, SCRIPT KILL (NOTBUSY) and SCRIPT HELP;
- scripts are not rolled back by an error; SELECT inside a script is the script's own;
- scripts inside MULTI / EXEC, and scripts writing keys another client WATCHes;
- pipelined scripts of every placement: the replies in order;
- INFO commandstats: eval / evalsha / the commands scripts call, as Redis counts them.

kvd runs each script atomically: one whose declared keys are all on one shard thread
runs there (it may touch undeclared keys of that thread too); one with no declared
keys, or keys on both threads, runs while the other thread is parked and may touch any
key. kvd runs --threads 2 here; the keys "k0".."k49" are sorted by their owning thread
at the start of the module (scenarios name them A0, A1, ... and B0, B1, ...), and the
scenarios use all three kinds of script. kvd's own rule, not Redis's: a script whose
declared keys are all on one thread and that touches a key of the other thread gets an
error reply (-ERR ... non local key ...).

Beyond the comparisons:
- redis-py's register_script (EVALSHA, EVAL after NOSCRIPT, scripts in pipelines) and
  Lock (acquire / extend / reacquire / release are Lua scripts; another owner's lock
  cannot be released or extended), the same assertions on kvd and on Redis;
- concurrency: clients moving units between a key of each thread by GET/SET scripts
  (declared keys on both threads, or no declared keys), readers checking the sum in
  scripts, read-modify-write scripts racing plain INCRs, and scripts INCRing one key 200
  times while plain GETs watch it: no broken invariant, no lost update;
- durability: with the default persistence (appendfsync always), the writes of every
  acknowledged script (one-thread, both-thread, keyless, EVALSHA, SELECT inside, inside
  MULTI, failing after a write, with a TTL) are back after kill -9, and those of scripts
  running at the kill are there at most once.
"""
import hashlib
import sys
import threading
import time

import pytest
import redis
from redis.exceptions import LockError, LockNotOwnedError, ResponseError

from conftest import (Client, ConnClosed, Err, Kvd, Pair, RedisServer, St, classify, encode,
                      info_field, keymap, kill_from_free_shard, need_redis, raw_pipeline,
                      wait_until)
from test_kvd_server import stat_lines

CONN_ERRORS = (ConnClosed, ConnectionError, OSError)


def sha(body):
    return hashlib.sha1(body.encode() if isinstance(body, str) else body).hexdigest()


# ---------------------------------------------------------------------------------------
# keys by thread


def subst(cmd, m):
    """Replaces the arguments A0, A1, ... B0, ... by key names of each thread."""
    return tuple(m.get(a, a) if isinstance(a, str) else a for a in cmd)


# ---------------------------------------------------------------------------------------
# scenarios compared with Redis byte for byte (both servers flushed, script caches too)

NOT_ALLOWED = [("multi",), ("exec",), ("discard",), ("watch", "x"), ("unwatch",),
               ("eval", "return 1", 0), ("evalsha", "f" * 40, 0),
               ("eval_ro", "return 1", 0), ("evalsha_ro", "f" * 40, 0),
               ("script", "load", "return 1"), ("script", "flush"), ("script", "kill"),
               ("save",), ("bgsave",), ("role",), ("wait", 0, 0), ("hello",), ("reset",),
               ("quit",), ("auth", "x")]


def lua_call(fn, args):
    return "return redis.%s(%s)" % (fn, ", ".join(
        repr(a) if isinstance(a, str) else str(a) for a in args))


SCENARIOS = {
    # the read-only library tables iterate as Redis's (real read-only tables) do
    "pairs": [
        ("EVAL", "local t = {} for k in pairs(%s) do t[#t+1] = k end table.sort(t) return t" % lib, 0)
        for lib in ("redis", "string", "table", "math", "bit")
    ] + [
        ("EVAL", "local n = 0 for k, v in next, redis do n = n + 1 end return n", 0),
        ("EVAL", "return type(next(string))", 0),
        ("EVAL", "return {pcall(pairs, 5)}", 0),
    ],
    "conversions": [
        ("EVAL", "return 1", 0),
        ("EVAL", "return 1.9", 0),
        ("EVAL", "return -3.7", 0),
        ("EVAL", "return 2^53", 0),
        ("EVAL", "return 'hello'", 0),
        ("EVAL", "return 'a\\0b'", 0),
        ("EVAL", "return {1,2,{3,'x'},nil,5}", 0),
        ("EVAL", "return {1, 'two', {ok='OK'}, {3, {4, {5}}}}", 0),
        ("EVAL", "return {a=1, b=2}", 0),
        ("EVAL", "local t = {}; t[1] = 'a'; t[3] = 'c'; return t", 0),
        ("EVAL", "return {tonumber('12'), tonumber('x'), 5}", 0),
        ("EVAL", "return {ok='fine'}", 0),
        ("EVAL", "return {err='ERR bad thing'}", 0),
        ("EVAL", "return {err='bad thing'}", 0),
        ("EVAL", "return {err='x', ok='y'}", 0),
        ("EVAL", "return redis.error_reply('My Error')", 0),
        ("EVAL", "return redis.error_reply('ERR x')", 0),
        ("EVAL", "return redis.status_reply('STATUS')", 0),
        ("EVAL", "return {redis.status_reply('A'), redis.error_reply('B c')}", 0),
        ("EVAL", "return false", 0),
        ("EVAL", "return true", 0),
        ("EVAL", "return nil", 0),
        ("EVAL", "return", 0),
        ("EVAL", "", 0),
        ("EVAL", "return 1, 2", 0),
        ("EVAL", "return {1, {ok='a'}, {err='E b'}, false, true}", 0),
        # RESP -> Lua
        ("EVAL", "return redis.call('get', KEYS[1])", 1, "A0"),
        ("EVAL", "local r = redis.call('get', KEYS[1]); return {type(r), tostring(r)}", 1,
         "A0"),
        ("EVAL", "local r = redis.call('set', KEYS[1], 'v'); return {type(r), r.ok}", 1, "A0"),
        ("EVAL", "return redis.call('set', KEYS[1], 'v')", 1, "A0"),
        ("EVAL", "local r = redis.call('incr', KEYS[1]); return {type(r), r}", 1, "B0"),
        ("EVAL", "local r = redis.call('mget', KEYS[1], KEYS[2], KEYS[3]); "
                 "return {type(r), #r, r[1], tostring(r[2]), r[3]}", 3, "A0", "A1", "B0"),
        ("EVAL", "return redis.call('mget', KEYS[1], KEYS[2], KEYS[3])", 3, "A0", "A1", "B0"),
        ("EVAL", "local r = redis.pcall('incr', KEYS[1]); return {type(r), r.err}", 1, "A0"),
        ("EVAL", "return redis.call('exists', KEYS[1], KEYS[2], KEYS[3])", 3, "A0", "A1", "B0"),
        ("EVAL", "return redis.call('getrange', KEYS[1], 0, -1)", 1, "A3"),
        ("EVAL", "return redis.call('incrbyfloat', KEYS[1], '1.5')", 1, "A3"),
        ("EVAL", "return redis.call('set', KEYS[1], 'v', 'NX')", 1, "A3"),
        ("EVAL", "return redis.call('set', KEYS[1], 'w', 'GET')", 1, "A3"),
        ("EVAL", "return redis.call('type', KEYS[1])", 1, "A3"),
        ("EVAL", "return redis.call('ttl', KEYS[1])", 1, "A4"),
        ("EVAL", "return {redis.call('ping'), redis.call('ping', 'x'), redis.call('echo', 'e')}",
         0),
        # numbers as arguments: integers as such, others as Lua's %.17g
        ("EVAL", "return redis.call('set', KEYS[1], 1.5)", 1, "A2"),
        ("EVAL", "return redis.call('set', KEYS[1], 0.1)", 1, "B2"),
        ("EVAL", "return redis.call('set', KEYS[1], 12345678901)", 1, "B3"),
        ("MGET", "A2", "B2", "B3"),
        ("EVAL", "return redis.call('GeT', 1)", 0),
        # binary-safe strings both ways, large ones
        ("EVAL", "return ARGV[1]", 0, "bin\x00ary\r\n"),
        ("EVAL", "return string.len(ARGV[1])", 0, "bin\x00ary\r\n"),
        ("EVAL", "redis.call('set', KEYS[1], ARGV[1]); return redis.call('get', KEYS[1])", 1,
         "B4", "x\x00y" * 1000),
        ("EVAL", "return redis.call('set', KEYS[1], ARGV[1])", 1, "A5", "v" * (1 << 20)),
        ("EVAL", "return string.len(redis.call('get', KEYS[1]))", 1, "A5"),
        ("GET", "A5"),
        ("EVAL", "return string.rep(ARGV[1], 100000)", 0, "ab"),
    ],
    "keys_argv": [
        ("EVAL", "return {KEYS[1], KEYS[2], ARGV[1], ARGV[2]}", 2, "A0", "B0", "x", "y"),
        ("EVAL", "return #KEYS + 10 * #ARGV", 1, "A0", "b", "c"),
        ("EVAL", "return {#KEYS, #ARGV}", 0),
        ("EVAL", "return KEYS", 3, "A0", "A1", "B0"),
        ("EVAL", "return ARGV", 0, "a", "b"),
        ("EVAL", "KEYS[1] = 'z'; return KEYS[1]", 1, "A0"),
        ("EVAL", "return 1", -1),
        ("EVAL", "return 1", 2, "a"),
        ("EVAL", "return 1", 1),
        ("EVAL", "return 1", "x"),
        ("EVAL", "return 1", "1.5", "a"),
        ("EVAL", "return 1", "1 "),
        ("EVAL", "return 1", "99999999999999999999"),
        ("EVAL", "return 1"),
        ("EVAL",),
        ("EVAL_RO", "return 1"),
        ("EVAL_RO", "return 1", -1),
        ("EVALSHA", "f" * 40, -1),
        ("EVALSHA", "f" * 40, 2, "a"),
        ("EVALSHA", "f" * 40, "x"),
        ("EVALSHA", "f" * 40),
        ("EVALSHA",),
        ("EVALSHA_RO", "f" * 40, 3, "a"),
        ("SCRIPT", "LOAD", "return {KEYS[1], ARGV[1], #KEYS, #ARGV}"),
        ("EVALSHA", sha("return {KEYS[1], ARGV[1], #KEYS, #ARGV}"), 1, "B0", "arg", "more"),
        ("EVALSHA", sha("return {KEYS[1], ARGV[1], #KEYS, #ARGV}"), 0),
        ("EVALSHA", sha("return {KEYS[1], ARGV[1], #KEYS, #ARGV}"), -2),
        ("EVALSHA", sha("return {KEYS[1], ARGV[1], #KEYS, #ARGV}"), 5, "a"),
    ],
    "call_errors": [
        ("SET", "A0", "abc"),
        ("EVAL", "return redis.call()", 0),
        ("EVAL", "return redis.pcall()", 0),
        ("EVAL", "return redis.call('nosuch')", 0),
        ("EVAL", "return redis.pcall('nosuch', 'x')", 0),
        ("EVAL", "return redis.call(1)", 0),
        ("EVAL", "return redis.call('get')", 0),
        ("EVAL", "return redis.pcall('get')", 0),
        ("EVAL", "return redis.call('set', 'x')", 0),
        ("EVAL", "return redis.call('del')", 0),
        ("EVAL", "return redis.call('mset', KEYS[1], 1, KEYS[2])", 2, "A1", "A2"),
        ("EVAL", "return redis.call('get', {})", 0),
        ("EVAL", "return redis.call('set', KEYS[1], true)", 1, "A1"),
        ("EVAL", "return redis.call('set', KEYS[1], nil)", 1, "A1"),
        ("EVAL", "return redis.pcall('get', {})", 0),
        ("EVAL", "return redis.call('incr', KEYS[1])", 1, "A0"),
        ("EVAL", "return redis.pcall('incr', KEYS[1])", 1, "A0"),
        ("EVAL", "local r = redis.pcall('incr', KEYS[1]); return r.err", 1, "A0"),
        ("EVAL", "local r = redis.pcall('nosuch'); return {type(r), r.err}", 0),
        ("EVAL", "return redis.call('select', 99)", 0),
        ("EVAL", "return redis.pcall('select', 'x')", 0),
        ("EVAL", "local a = 1\nlocal b = 2\nreturn redis.call('nosuch')", 0),
        ("EVAL", "local a = 1\n\nreturn redis.call('incr', KEYS[1])", 1, "A0"),
        ("EVAL", "error('boom')", 0),
        ("EVAL", "error({err='boom'})", 0),
        ("EVAL", "error({err='MYERR custom'})", 0),
        ("EVAL", "error('no position', 0)", 0),
        ("EVAL", "error(5)", 0),
        ("EVAL", "assert(false, 'assert msg')", 0),
        ("EVAL", "local a = 1\nlocal b = 2\nerror('line3')", 0),
        ("EVAL", "local t = nil; return t.x", 0),
        ("EVAL", "return 1 + {}", 0),
        ("EVAL", "local ok, e = pcall(error, 'x'); return e", 0),
        ("EVAL", "return {pcall(function() error('zz') end)}", 0),
        ("EVAL", "return +", 0),
        ("EVAL", "local a = 1\n\nreturn +", 0),
        ("EVAL", "return 'unfinished", 0),
        ("EVAL", "if true then", 0),
        ("EVAL", "return redis.call('get', KEYS[1])", 1, "A0"),
    ] + [("EVAL", lua_call("call", c), 0) for c in NOT_ALLOWED] + [
        ("EVAL", lua_call("pcall", c), 0) for c in NOT_ALLOWED[:3]],
    "read_only": [
        ("SET", "A0", "v"),
        ("EVAL_RO", "return redis.call('get', KEYS[1])", 1, "A0"),
        ("EVAL_RO", "return redis.call('mget', KEYS[1], KEYS[2])", 2, "A0", "B0"),
        ("EVAL_RO", "return redis.call('set', KEYS[1], 1)", 1, "A0"),
        ("EVAL_RO", "return redis.pcall('set', KEYS[1], 1)", 1, "A0"),
        ("EVAL_RO", "return redis.call('incr', KEYS[1])", 1, "B0"),
        ("EVAL_RO", "return redis.call('del', KEYS[1])", 1, "A0"),
        ("EVAL_RO", "local r = redis.pcall('del', KEYS[1]); return {r.err, "
                    "redis.call('get', KEYS[1])}", 1, "A0"),
        ("EVAL_RO", "return redis.call('nosuch')", 0),
        ("MGET", "A0", "B0"),
        ("SCRIPT", "LOAD", "return redis.call('incr', KEYS[1])"),
        ("EVALSHA_RO", sha("return redis.call('incr', KEYS[1])"), 1, "A1"),
        ("EVALSHA", sha("return redis.call('incr', KEYS[1])"), 1, "A1"),
        ("SCRIPT", "LOAD", "return redis.call('get', KEYS[1])"),
        ("EVALSHA_RO", sha("return redis.call('get', KEYS[1])"), 1, "A1"),
        ("EVALSHA_RO", sha("return redis.call('get', KEYS[1])").upper(), 1, "A0"),
        ("EVALSHA_RO", "e" * 40, 0),
        ("EXISTS", "A0", "A1", "B0"),
    ],
    # every write to the globals is refused, and none of them is left for the next script
    "readonly_globals": [
        ("EVAL", "x = 5", 0),
        ("EVAL", "redis = 1", 0),
        ("EVAL", "string.foo = 1", 0),
        ("EVAL", "string.rep = nil", 0),
        ("EVAL", "KEYS = {}", 0),
        ("EVAL", "function f() return 1 end", 0),
        ("EVAL", "rawset(_G, 'x', 1)", 0),
        ("EVAL", "setmetatable(_G, nil)", 0),
        ("EVAL", "return {type(redis), type(redis.call), type(string.rep), #KEYS}", 1, "A0"),
        ("EVAL", "return x", 0),
        ("EVAL", "return f", 0),
        ("EVAL", "return redis.call('ping')", 0),
    ],
    "sandbox": [
        ("EVAL", "return nosuchglobal", 0),
        ("EVAL", "return type(dofile)", 0),
        ("EVAL", "return loadfile", 0),
        ("EVAL", "return type(os)", 0),
        ("EVAL", "return type(io)", 0),
        ("EVAL", "return type(require)", 0),
        ("EVAL", "return type(package)", 0),
        ("EVAL", "return type(debug)", 0),
        ("EVAL", "return type(print)", 0),
        ("EVAL", "local function f() return 1 end return f()", 0),
        ("EVAL", "local t = {} ; t.x = 1 ; return t.x", 0),
        ("EVAL", "local x = {}; setmetatable(x, {__index=function() return 7 end}); "
                 "return x.y", 0),
        ("EVAL", "return {type(redis), type(redis.call), type(KEYS), type(ARGV), type(_G)}", 0),
        ("EVAL", "return _VERSION", 0),
    ],
    "libraries": [
        ("EVAL", "return {type(table), type(string), type(math), type(cjson), type(bit)}", 0),
        ("EVAL", "return table.concat({'a','b'}, '-')", 0),
        ("EVAL", "local t = {3, 1, 2}; table.sort(t); table.insert(t, 4); return t", 0),
        ("EVAL", "return table.getn({1,2,3})", 0),
        ("EVAL", "return select('#', unpack({1,2,3}))", 0),
        ("EVAL", "return string.rep('ab', 3)", 0),
        ("EVAL", "return {string.byte('A'), string.char(72, 105), string.upper('ab'), "
                 "string.sub('hello', 2, 3), string.find('hello', 'll')}", 0),
        ("EVAL", "return {string.gsub('hello world', 'o', '0')}", 0),
        ("EVAL", "return string.format('%05d|%s|%.3f', 42, 'x', 3.14159)", 0),
        ("EVAL", "return {tostring(3.5), tostring(1/3), tostring(1e15), tonumber('0x10')}", 0),
        ("EVAL", "return {math.floor(7.9), math.abs(-5), math.max(3, 9, 4), math.fmod(7, 3), "
                 "math.pi * 1000, math.huge > 0}", 0),
        ("EVAL", "return cjson.encode({1,2,3})", 0),
        ("EVAL", "return cjson.encode({x='y'})", 0),
        ("EVAL", "return cjson.encode(0.5)", 0),
        ("EVAL", "return cjson.decode('[1,2,{\"a\":5}]')[3].a", 0),
        ("EVAL", "return cjson.decode('[true,false,null,\"s\"]')[4]", 0),
        ("EVAL", "return cjson.encode(cjson.decode(ARGV[1]))", 0, '{"a":[1,2,3]}'),
        # (kvd's checked encode in front of the library's: the same errors and lines)
        ("EVAL", "return cjson.encode()", 0), ("EVAL", "return cjson.encode(1, 2)", 0),
        ("EVAL", "return cjson.encode(function() end)", 0),
        ("EVAL", "local r = {} for i = 1, 1100 do r = {r} end return cjson.encode(r)", 0),
        ("EVAL", "return {pcall(cjson.encode, {1/0})}", 0),
        ("EVAL", "local t = {} t[1] = 1 t[3000] = 1 return cjson.encode(t)", 0),
        ("EVAL", "local t = {} t[1] = 1 t[9] = 1 return cjson.encode(t)", 0),
        ("EVAL", "return cjson.new().encode({1, 'a', {b = true}})", 0),
        ("EVAL", "return {bit.band(12, 10), bit.bor(1, 6), bit.bxor(5, 3), bit.bnot(0), "
                 "bit.lshift(1, 10), bit.rshift(256, 4), bit.arshift(-16, 2)}", 0),
        ("EVAL", "return bit.tohex(65535)", 0),
        ("EVAL", "return {redis.sha1hex(''), redis.sha1hex('abc'), redis.sha1hex(123)}", 0),
        ("EVAL", "return redis.sha1hex(ARGV[1])", 0, "bin\x00"),
        ("EVAL", "return {redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, "
                 "redis.LOG_WARNING}", 0),
        ("EVAL", "redis.log(redis.LOG_WARNING, 'from a script'); "
                 "redis.log(redis.LOG_DEBUG, 'x', 'y'); return 7", 0),
    ],
    "script_cache": [
        ("SCRIPT", "LOAD", "return 'loaded'"),
        ("SCRIPT", "LOAD", "return 'loaded'"),
        ("script", "load", "return 'lower'"),
        ("EVALSHA", sha("return 'loaded'"), 0),
        ("EVALSHA", sha("return 'loaded'").upper(), 0),
        ("evalsha", sha("return 'lower'"), 0),
        ("EVALSHA_RO", sha("return 'loaded'"), 0),
        ("SCRIPT", "EXISTS", sha("return 'loaded'"), "f" * 40, sha("return 'loaded'").upper(),
         "x", sha("return 'lower'")),
        ("EVALSHA", "f" * 40, 0),
        ("EVALSHA", "F" * 40, 0),
        ("EVALSHA", "abc", 0),
        ("EVALSHA", sha("return 'loaded'") + "0", 0),
        ("EVALSHA", sha("return 'loaded'")[:39], 0),
        ("SCRIPT", "LOAD", "return +"),
        ("SCRIPT", "EXISTS", sha("return +")),
        ("SCRIPT", "LOAD", "error('at run time')"),
        ("EVALSHA", sha("error('at run time')"), 0),
        ("EVAL", "return +", 0),
        ("SCRIPT", "EXISTS", sha("return +")),
        ("EVAL", "return 'by eval'", 0),
        ("EVAL", "error('rt2')", 0),
        ("SCRIPT", "EXISTS", sha("return 'by eval'"), sha("error('rt2')")),
        ("EVALSHA", sha("return 'by eval'"), 0),
        ("SCRIPT", "FLUSH"),
        ("SCRIPT", "EXISTS", sha("return 'loaded'"), sha("return 'by eval'")),
        ("EVALSHA", sha("return 'loaded'"), 0),
        ("EVALSHA_RO", sha("return 'loaded'"), 0),
        ("SCRIPT", "LOAD", "return 'loaded'"),
        ("SCRIPT", "FLUSH", "ASYNC"),
        ("EVALSHA", sha("return 'loaded'"), 0),
        ("SCRIPT", "LOAD", "return 'loaded'"),
        ("SCRIPT", "FLUSH", "sync"),
        ("SCRIPT", "EXISTS", sha("return 'loaded'")),
        ("SCRIPT", "KILL"),
        ("script", "kill"),
    ],
    "script_errors": [
        ("SCRIPT",),
        ("SCRIPT", "NOPE"),
        ("SCRIPT", "EXISTS"),
        ("SCRIPT", "LOAD"),
        ("SCRIPT", "LOAD", "a", "b"),
        ("SCRIPT", "FLUSH", "BOGUS"),
        ("SCRIPT", "FLUSH", "SYNC", "x"),
        ("SCRIPT", "KILL", "x"),
    ],
    "no_rollback": [
        ("SET", "A0", "old"),
        ("EVAL", "redis.call('set', KEYS[1], 'new'); redis.call('incr', KEYS[2]); error('boom')",
         2, "A0", "B0"),
        ("MGET", "A0", "B0"),
        ("EVAL", "redis.call('set', KEYS[1], 'x'); local r = redis.pcall('incr', KEYS[1]); "
                 "redis.call('set', KEYS[2], 'after'); return r", 2, "A1", "A2"),
        ("MGET", "A1", "A2"),
        ("EVAL", "redis.call('set', ARGV[1], 'a'); redis.call('set', ARGV[2], 'b'); "
                 "return redis.call('nosuch')", 0, "A3", "B3"),
        ("MGET", "A3", "B3"),
        ("EVAL", "redis.call('del', KEYS[1]); return redis.call('incr', KEYS[2])", 2, "A3",
         "A0"),
        ("MGET", "A3", "A0"),
    ],
    "select": [
        ("EVAL", "redis.call('select', 3); redis.call('set', ARGV[1], 'in3'); "
                 "return redis.call('get', ARGV[1])", 0, "A0"),
        ("GET", "A0"),
        ("SELECT", "3"),
        ("GET", "A0"),
        ("EVAL", "return redis.call('get', ARGV[1])", 0, "A0"),
        ("EVAL", "redis.call('select', 0); return redis.call('get', ARGV[1])", 0, "A0"),
        ("GET", "A0"),
        ("EVAL", "redis.call('select', 4); redis.call('set', KEYS[1], 'a4'); "
                 "redis.call('set', KEYS[2], 'b4'); return redis.call('mget', KEYS[1], KEYS[2])",
         2, "A1", "B1"),
        ("MGET", "A1", "B1"),
        ("EVAL", "redis.call('select', 5); return redis.call('set', KEYS[1], 'a5')", 1, "A2"),
        ("GET", "A2"),
        ("EVAL", "return redis.call('select', 99)", 0),
        ("EVAL", "redis.call('select', 6); error('leave db 6 by an error')", 0),
        ("SET", "A3", "still in 3"),
        ("SELECT", "4"),
        ("MGET", "A1", "B1", "A3"),
        ("SELECT", "5"),
        ("GET", "A2"),
        ("SELECT", "3"),
        ("MGET", "A0", "A3"),
        ("SELECT", "0"),
        ("MGET", "A0", "A1", "B1", "A2", "A3"),
        ("MULTI",),
        ("EVAL", "redis.call('select', 7); return redis.call('set', ARGV[1], 'm7')", 0, "B2"),
        ("SET", "B2", "m0"),
        ("EXEC",),
        ("GET", "B2"),
        ("SELECT", "7"),
        ("GET", "B2"),
        ("SELECT", "0"),
    ],
    # a script whose declared keys are on one thread, touching undeclared keys of that
    # same thread; both threads declared; none declared (the keys anywhere)
    "placement": [
        ("EVAL", "redis.call('set', KEYS[1], 'a0'); redis.call('set', ARGV[1], 'a1'); "
                 "return redis.call('mget', KEYS[1], ARGV[1], ARGV[2])", 1, "A0", "A1", "A2"),
        ("EVAL", "redis.call('set', KEYS[1], 'b0'); redis.call('incr', ARGV[1]); "
                 "return redis.call('mget', KEYS[1], ARGV[1])", 1, "B0", "B1"),
        ("EVAL", "return redis.call('mset', KEYS[1], 'x', KEYS[2], 'y', KEYS[3], 'z', "
                 "KEYS[4], 'w')", 4, "A3", "B3", "A4", "B4"),
        ("EVAL", "redis.call('set', ARGV[1], 'undeclared a'); "
                 "redis.call('set', ARGV[2], 'undeclared b'); "
                 "return redis.call('mget', KEYS[1], KEYS[2], ARGV[1], ARGV[2])",
         2, "A3", "B3", "A5", "B5"),
        ("EVAL", "local n = 0; for i = 1, #ARGV do n = n + redis.call('incr', ARGV[i]) end; "
                 "return {n, redis.call('dbsize')}", 0, "A6", "A7", "B6", "B7", "B8"),
        ("EVAL", "local k = redis.call('keys', '*'); table.sort(k); return k", 0),
        ("EVAL", "return redis.call('exists', unpack(ARGV))", 0,
         "A0", "A1", "A2", "A3", "B0", "B1", "B2", "B3"),
        ("EVAL", "return redis.call('del', unpack(ARGV))", 0, "A0", "B0", "A9", "B9"),
        ("EVAL", "return redis.call('del', unpack(KEYS))", 4, "A1", "B1", "A3", "B3"),
        ("EVAL", "return {redis.call('dbsize'), redis.call('exists', ARGV[1], ARGV[2])}", 0,
         "A4", "B4"),
        ("EVAL", "local k = redis.call('keys', '*'); table.sort(k); return k", 0),
        ("EVAL", "redis.call('flushall'); return redis.call('dbsize')", 0),
        ("EVAL", "return redis.call('mset', unpack(ARGV))", 0,
         "A0", "1", "B0", "2", "A1", "3", "B1", "4"),
        ("EVAL", "return redis.call('mget', unpack(KEYS))", 4, "A0", "B0", "A1", "B1"),
        ("EVAL", "redis.call('set', KEYS[1], 'v', 'EX', 1000); "
                 "return {redis.call('ttl', KEYS[1]) > 990, redis.call('persist', KEYS[1]), "
                 "redis.call('ttl', KEYS[1])}", 1, "B2"),
    ],
    "multi": [
        ("SCRIPT", "LOAD", "return redis.call('incrby', KEYS[1], ARGV[1])"),
        ("MULTI",),
        ("EVAL", "return redis.call('incr', KEYS[1])", 1, "A0"),
        ("EVAL", "redis.call('set', KEYS[1], 'a'); return redis.call('set', KEYS[2], 'b')", 2,
         "A1", "B1"),
        ("EVAL", "redis.call('incr', ARGV[1]); return redis.call('incr', ARGV[2])", 0,
         "A2", "B2"),
        ("EVALSHA", sha("return redis.call('incrby', KEYS[1], ARGV[1])"), 1, "B0", 10),
        ("EVALSHA", "f" * 40, 0),
        ("EVAL", "error('in the transaction')", 0),
        ("EVAL", "return redis.call('incr', KEYS[1])", 1, "A1"),
        ("EVAL_RO", "return redis.call('mget', KEYS[1], KEYS[2], KEYS[3])", 3, "A0", "B0", "A1"),
        ("GET", "B0"),
        ("EXEC",),
        ("MGET", "A0", "A1", "B1", "A2", "B2", "B0"),
        ("MULTI",),
        ("EVAL", "return redis.call('incr', KEYS[1])", 1, "A0"),
        ("EVAL", "return 1"),
        ("EXEC",),
        ("MULTI",),
        ("EVAL", "return redis.call('incr', KEYS[1])", 1, "A0"),
        ("DISCARD",),
        ("GET", "A0"),
    ],
}


@pytest.mark.parametrize("proto", ["2", "3"])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_script_replies_match_redis(pair, groups, name, proto):
    m = keymap(groups)
    for c in (pair.k, pair.r):
        c.cmd("HELLO", proto)
    pair.same("SCRIPT", "FLUSH")
    for cmd in SCENARIOS[name]:
        pair.same(*subst(cmd, m))


# ---------------------------------------------------------------------------------------
# several connections, WATCH

def same_on(k, r, *args):
    k.send(encode(*args))
    kraw = k.read_raw()
    r.send(encode(*args))
    rraw = r.read_raw()
    assert kraw == rraw, "reply to %r differs:\n  kvd:   %r\n  redis: %r" % (
        args, kraw[:2000], rraw[:2000])
    return kraw


def test_script_cache_is_shared_by_connections(pair, kvd, redis_server):
    """Scripts loaded (SCRIPT LOAD, or run by EVAL) on one connection are EVALSHA-able on
    every other (kvd: connections of both threads); a SCRIPT FLUSH anywhere drops them
    for all."""
    ks = [pair.k] + [kvd.client() for _ in range(5)]
    rs = [pair.r] + [redis_server.client() for _ in range(5)]
    try:
        body1 = "return {'one', ARGV[1]}"
        body2 = "return redis.call('incr', KEYS[1])"
        same_on(ks[0], rs[0], "SCRIPT", "FLUSH")
        same_on(ks[0], rs[0], "SCRIPT", "LOAD", body1)
        for i in range(1, 6):
            same_on(ks[i], rs[i], "EVALSHA", sha(body1), 0, "c%d" % i)
            same_on(ks[i], rs[i], "EVALSHA", sha(body1).upper(), 0, "C%d" % i)
            same_on(ks[i], rs[i], "SCRIPT", "EXISTS", sha(body1), sha(body2))
        same_on(ks[3], rs[3], "EVAL", body2, 1, "counter")
        for i in range(6):
            same_on(ks[i], rs[i], "EVALSHA", sha(body2), 1, "counter")
            same_on(ks[i], rs[i], "SCRIPT", "EXISTS", sha(body2), sha(body1))
        same_on(ks[4], rs[4], "SCRIPT", "FLUSH")
        for i in range(6):
            same_on(ks[i], rs[i], "EVALSHA", sha(body1), 0, "x")
            same_on(ks[i], rs[i], "SCRIPT", "EXISTS", sha(body1), sha(body2))
        for i in range(6):
            same_on(ks[i], rs[i], "SCRIPT", "LOAD", "return %d" % i)
        for i in range(6):
            same_on(ks[(i + 1) % 6], rs[(i + 1) % 6], "EVALSHA", sha("return %d" % i), 0)
        same_on(ks[5], rs[5], "SCRIPT", "FLUSH", "ASYNC")
        for i in range(6):
            same_on(ks[i], rs[i], "EVALSHA", sha("return %d" % i), 0)
        same_on(ks[0], rs[0], "GET", "counter")
    finally:
        for c in ks[1:] + rs[1:]:
            c.close()


def test_pipelined_scripts_keep_order(pair, groups):
    """300 commands in one write: scripts of every placement (one thread, both, none),
    EVALSHA, failing scripts and plain commands between them; the replies in order, as
    Redis's."""
    a, b = groups
    pair.same("SCRIPT", "FLUSH")
    body = "return redis.call('incrby', KEYS[1], ARGV[1])"
    pair.same("SCRIPT", "LOAD", body)
    cmds = []
    for i in range(50):
        ka, kb = a[i % 7], b[i % 5]
        cmds += [
            ("EVAL", "return redis.call('incr', KEYS[1])", 1, ka),
            ("EVALSHA", sha(body), 1, kb, i),
            ("EVAL", "redis.call('incr', KEYS[1]); return redis.call('mget', KEYS[1], KEYS[2])",
             2, kb, ka),
            ("EVAL", "return {redis.call('get', ARGV[1]), redis.call('get', ARGV[2])}", 0, ka,
             kb),
            ("EVAL", "return redis.call('nosuch')" if i % 2 else "error('e%d')" % i, 0),
            ("GET", kb),
        ]
    k, r = raw_pipeline(pair.k, cmds), raw_pipeline(pair.r, cmds)
    for i, (x, y) in enumerate(zip(k, r)):
        assert x == y, "reply %d to %r differs:\n  kvd:   %r\n  redis: %r" % (i, cmds[i], x, y)


def test_scripts_touching_watched_keys(pair, groups, kvd, redis_server):
    """A script's writes (another client's or the watching client's own, declared keys or
    not, either thread) fail the watching client's EXEC as in Redis; reads do not."""
    m = keymap(groups)
    k2, r2 = kvd.client(), redis_server.client()
    conns = {1: (pair.k, pair.r), 2: (k2, r2)}
    steps = [
        (1, "WATCH", "A0", "B0"), (2, "EVAL", "return redis.call('set', KEYS[1], 1)", 1, "A0"),
        (1, "MULTI"), (1, "GET", "A0"), (1, "EXEC"),
        (1, "WATCH", "B0"), (2, "EVAL", "return redis.call('set', ARGV[1], 'x')", 0, "B0"),
        (1, "MULTI"), (1, "SET", "B1", "y"), (1, "EXEC"), (1, "GET", "B1"),
        (1, "WATCH", "A0", "B0"),
        (2, "EVAL", "return redis.call('mget', KEYS[1], KEYS[2])", 2, "A0", "B0"),
        (2, "EVAL", "return redis.call('get', ARGV[1])", 0, "B0"),
        (1, "MULTI"), (1, "INCR", "A1"), (1, "EXEC"),
        (1, "WATCH", "A2"),
        (2, "EVAL", "redis.call('set', KEYS[1], 1); return redis.call('set', KEYS[2], 2)", 2,
         "A3", "B3"),
        (1, "MULTI"), (1, "INCR", "A2"), (1, "EXEC"),
        (1, "WATCH", "A4", "B4"),
        (2, "EVAL", "redis.call('set', KEYS[1], 1); return redis.call('set', KEYS[2], 2)", 2,
         "A5", "B4"),
        (1, "MULTI"), (1, "INCR", "A4"), (1, "EXEC"),
        (1, "WATCH", "A6"), (1, "EVAL", "return redis.call('incr', KEYS[1])", 1, "A6"),
        (1, "MULTI"), (1, "PING"), (1, "EXEC"),
        (1, "WATCH", "A7"), (2, "EVAL", "redis.call('set', KEYS[1], 1); error('then fails')", 1,
                            "A7"),
        (1, "MULTI"), (1, "PING"), (1, "EXEC"),
        (1, "WATCH", "B7"), (2, "EVAL", "return redis.pcall('incr', KEYS[1])", 1, "A8"),
        (1, "MULTI"), (1, "PING"), (1, "EXEC"),
        (1, "MGET", "A0", "B0", "A1", "A2", "A3", "B3", "A4", "B4", "A6", "A7"),
    ]
    try:
        for step in steps:
            k, r = conns[step[0]]
            same_on(k, r, *subst(step[1:], m))
    finally:
        k2.close()
        r2.close()


# ---------------------------------------------------------------------------------------
# kvd's own rule

def test_undeclared_key_on_another_thread_is_refused(kc, groups):
    """Declared keys all on one thread, an undeclared key of the other thread touched
    (read, written, among others, by pcall, read-only, by EVALSHA): an error reply."""
    a, b = groups
    bodies = [
        "return redis.call('get', ARGV[1])",
        "return redis.call('set', ARGV[1], 'x')",
        "return redis.call('incr', ARGV[1])",
        "return redis.call('mget', KEYS[1], ARGV[1])",
        "return redis.call('exists', ARGV[1])",
        "redis.call('set', KEYS[1], 'first'); return redis.call('set', ARGV[1], 'x')",
        "return redis.pcall('get', ARGV[1])",
    ]
    for mine, other in ((a, b), (b, a)):
        for body in bodies:
            for declared in ([mine[0]], [mine[0], mine[1]]):
                r = kc.cmd("EVAL", body, len(declared), *declared, other[2])
                assert isinstance(r, Err) and r.s.startswith("ERR") and \
                    "non local key" in r.s, (body, declared, other[2], r)
        r = kc.cmd("EVAL_RO", "return redis.call('get', ARGV[1])", 1, mine[0], other[2])
        assert isinstance(r, Err) and r.s.startswith("ERR") and "non local key" in r.s, r
        s = kc.cmd("SCRIPT", "LOAD", "return redis.call('get', ARGV[1])")
        r = kc.cmd("EVALSHA", s, 1, mine[0], other[2])
        assert isinstance(r, Err) and r.s.startswith("ERR") and "non local key" in r.s, r
        # the same keys are fine with both declared, with none declared, and an undeclared
        # key of the script's own thread is fine too
        assert kc.cmd("EVAL", "return redis.call('set', KEYS[2], 'x')", 2, mine[0],
                      other[2]) == St("OK")
        assert kc.cmd("EVAL", "return redis.call('get', ARGV[1])", 0, other[2]) == b"x"
        assert kc.cmd("EVAL", "redis.call('set', ARGV[1], 'y'); "
                      "return redis.call('get', ARGV[1])", 1, mine[0], mine[3]) == b"y"
    assert kc.cmd("PING") == St("PONG")
    assert kc.cmd("EXISTS", a[2], b[2]) == 2


# ---------------------------------------------------------------------------------------
# INFO commandstats

STATS_OK = [
    ("EVAL", "redis.call('set', KEYS[1], ARGV[1]); return redis.call('get', KEYS[1])", 1,
     "A0", "v"),
    ("EVAL", "redis.call('mset', KEYS[1], 1, KEYS[2], 2); "
             "return redis.call('mget', KEYS[1], KEYS[2])", 2, "A1", "B1"),
    ("EVAL", "redis.call('incr', ARGV[1]); redis.call('incr', ARGV[2]); "
             "return redis.call('dbsize')", 0, "A2", "B2"),
    ("SCRIPT", "LOAD", "return redis.call('incr', KEYS[1])"),
    ("EVALSHA", sha("return redis.call('incr', KEYS[1])"), 1, "B3"),
    ("EVALSHA", sha("return redis.call('incr', KEYS[1])"), 1, "B3"),
    ("EVALSHA", sha("return redis.call('incr', KEYS[1])"), 1, "A3"),
    ("EVAL_RO", "return redis.call('get', KEYS[1])", 1, "A0"),
    ("SCRIPT", "LOAD", "return redis.call('exists', KEYS[1])"),
    ("EVALSHA_RO", sha("return redis.call('exists', KEYS[1])"), 1, "B3"),
    ("SCRIPT", "EXISTS", sha("return redis.call('incr', KEYS[1])"), "f" * 40),
    ("EVAL", "return 1", 0),
    ("MULTI",),
    ("EVAL", "return redis.call('incrby', KEYS[1], 5)", 1, "A4"),
    ("EVALSHA", sha("return redis.call('incr', KEYS[1])"), 1, "B4"),
    ("EXEC",),
    ("EVAL", "return redis.pcall('del', KEYS[1], KEYS[2])", 2, "A4", "B4"),
]

STATS_ERRORS = [
    ("EVALSHA", "f" * 40, 0),
    ("SET", "A5", "abc"),
    ("EVAL", "return redis.pcall('incr', KEYS[1])", 1, "A5"),
    ("EVAL", "return redis.call('incr', KEYS[1])", 1, "A5"),
    ("EVAL", "return redis.call('nosuch')", 0),
    ("EVAL", "return redis.call('get')", 0),
    ("EVAL", "error('x')", 0),
    ("EVAL", "return +", 0),
    ("EVAL", "return 1", -1),
    ("EVAL", "return redis.error_reply('MYERR z')", 0),
    ("EVAL_RO", "return redis.call('set', KEYS[1], 1)", 1, "A5"),
    ("EVALSHA_RO", sha("return redis.call('incr', KEYS[1])"), 1, "B5"),
    ("EVAL", "redis.call('set', KEYS[1], 1); return redis.call('multi')", 1, "B5"),
    ("SCRIPT", "FLUSH"),
    ("EVALSHA", sha("return redis.call('incr', KEYS[1])"), 1, "B3"),
]


def test_commandstats_of_scripts_match_redis(pair, groups):
    """INFO commandstats counts eval / evalsha / eval_ro / evalsha_ro / script|... and the
    commands the scripts called as Redis does: every field (and no errorstats) after
    scripts that succeed, the call counts after scripts that fail in every way."""
    m = keymap(groups)
    pair.same("SCRIPT", "FLUSH")
    for c in (pair.k, pair.r):
        assert c.cmd("CONFIG", "RESETSTAT") == St("OK")
    for cmd in STATS_OK:
        pair.same(*subst(cmd, m))
    k, r = stat_lines(pair.k), stat_lines(pair.r)
    assert k == r, "\n  kvd:   %r\n  redis: %r" % (sorted(k.items()), sorted(r.items()))
    for cmd in STATS_ERRORS:
        pair.same(*subst(cmd, m))

    def calls(c):
        return {n: v["calls"] for n, v in stat_lines(c).items() if n.startswith("cmdstat_")}

    k, r = calls(pair.k), calls(pair.r)
    assert k == r, "\n  kvd:   %r\n  redis: %r" % (sorted(k.items()), sorted(r.items()))


# ---------------------------------------------------------------------------------------
# redis-py

def register_script_flow(r, ka, kb, ka2):
    r.script_flush()
    r.delete(ka, kb, ka2)
    incr_both = r.register_script(
        "return {redis.call('incrby', KEYS[1], ARGV[1]), redis.call('incrby', KEYS[2], ARGV[1])}")
    assert incr_both(keys=[ka, kb], args=[5]) == [5, 5]  # NOSCRIPT, then EVAL
    assert r.script_exists(incr_both.sha) == [True]
    assert incr_both(keys=[ka, kb], args=[2]) == [7, 7]  # EVALSHA
    r.script_flush()
    assert r.script_exists(incr_both.sha) == [False]
    assert incr_both(keys=[ka, kb], args=[1]) == [8, 8]
    one_thread = r.register_script(
        "local v = redis.call('get', KEYS[1]); redis.call('set', KEYS[2], v); "
        "return {v, redis.call('get', KEYS[2])}")
    assert one_thread(keys=[ka, ka2]) == [b"8", b"8"]
    keyless = r.register_script(
        "return redis.call('incr', ARGV[1]) + redis.call('incr', ARGV[2])")
    assert keyless(args=[ka, kb]) == 18
    status = r.register_script("return redis.status_reply('FINE')")
    assert status() == b"FINE"
    nil = r.register_script("return redis.call('get', KEYS[1])")
    assert nil(keys=["no-such-key"]) is None
    r.script_flush()
    with r.pipeline(transaction=False) as p:  # the pipeline loads its scripts first
        incr_both(keys=[ka, kb], args=[1], client=p)
        keyless(args=[ka, kb], client=p)
        p.get(ka)
        assert p.execute() == [[10, 10], 22, b"11"]
    r.script_flush()
    with r.pipeline(transaction=True) as p:
        incr_both(keys=[ka, kb], args=[1], client=p)
        one_thread(keys=[ka, ka2], client=p)
        p.mget(ka, kb, ka2)
        assert p.execute() == [[12, 12], [b"12", b"12"], [b"12", b"12", b"12"]]
    bad = r.register_script("return redis.call('incr', KEYS[1])")
    r.set(ka, "abc")
    with pytest.raises(ResponseError) as e:
        bad(keys=[ka])
    assert str(e.value).startswith("value is not an integer or out of range script: %s"
                                   % bad.sha), str(e.value)
    assert r.get(ka) == b"abc"
    assert r.eval("return {KEYS[1], ARGV[1]}", 1, ka, "x") == [ka.encode(), b"x"]
    assert r.evalsha(bad.sha, 1, kb) == 13
    assert r.script_load("return 42") == sha("return 42")
    assert r.script_exists(sha("return 42"), bad.sha, "0" * 40) == [True, True, False]


def lock_flow(r, r2, name):
    r.delete(name)
    l1 = r.lock(name, timeout=10)
    assert l1.acquire(blocking=False)
    assert l1.owned() and l1.locked()
    assert 9000 < r.pttl(name) <= 10000
    other = r2.lock(name, timeout=10)
    assert not other.acquire(blocking=False)
    assert not other.acquire(blocking=True, blocking_timeout=0.05)
    assert not other.owned()
    # another client's lock object, with a token not the owner's: the Lua scripts refuse
    other.local.token = b"not-the-owner"
    with pytest.raises(LockNotOwnedError):
        other.extend(5)
    with pytest.raises(LockNotOwnedError):
        other.reacquire()
    with pytest.raises(LockNotOwnedError):
        other.release()
    with pytest.raises(LockError):  # and it no longer thinks it holds anything
        other.release()
    assert r.get(name) == l1.local.token
    assert l1.owned()
    assert l1.extend(20)
    assert 25000 < r.pttl(name) <= 30000
    assert l1.extend(5, replace_ttl=True)
    assert 4000 < r.pttl(name) <= 5000
    assert l1.reacquire()
    assert 9000 < r.pttl(name) <= 10000
    l1.release()
    assert r.exists(name) == 0
    with pytest.raises(LockError):
        l1.release()
    # a lock that expired and was taken by another: its first owner can no longer release
    # or extend it
    l3 = r.lock(name, timeout=0.05)
    assert l3.acquire(blocking=False)
    time.sleep(0.15)
    l4 = r2.lock(name, timeout=10)
    assert l4.acquire(blocking=False)
    with pytest.raises(LockNotOwnedError):
        l3.extend(1)
    with pytest.raises(LockNotOwnedError):
        l3.release()
    assert l4.owned()
    l4.release()
    with r.lock(name, timeout=5, blocking_timeout=1):
        assert r.exists(name) == 1
        assert not r2.lock(name).acquire(blocking=False)
    assert r.exists(name) == 0


def test_redis_py_register_script(kvd, redis_server, groups):
    """The same flow against kvd (keys of both threads) and Redis."""
    need_redis()
    a, b = groups
    for port in (kvd.port, redis_server.port):
        r = redis.Redis(host="127.0.0.1", port=port)
        try:
            register_script_flow(r, a[0], b[0], a[1])
        finally:
            r.close()


def test_redis_py_lock(kvd, redis_server, groups):
    """redis-py's Lock (SET NX PX and Lua scripts) on a key of each thread, the same
    assertions against kvd and Redis."""
    need_redis()
    a, b = groups
    for port in (kvd.port, redis_server.port):
        r = redis.Redis(host="127.0.0.1", port=port)
        r2 = redis.Redis(host="127.0.0.1", port=port)
        try:
            for name in (a[5], b[5]):
                lock_flow(r, r2, name)
        finally:
            r.close()
            r2.close()


# ---------------------------------------------------------------------------------------
# atomicity under concurrency

TRANSFER = ("local a = tonumber(redis.call('get', KEYS[1]) or '0'); "
            "local b = tonumber(redis.call('get', KEYS[2]) or '0'); "
            "redis.call('set', KEYS[1], a + 1); redis.call('set', KEYS[2], b - 1); "
            "return {a + 1, b - 1}")
TRANSFER_KEYLESS = TRANSFER.replace("KEYS", "ARGV")
READ_PAIR = "return {redis.call('get', KEYS[1]), redis.call('get', KEYS[2])}"
READ_PAIR_KEYLESS = READ_PAIR.replace("KEYS", "ARGV")
RMW = ("local v = tonumber(redis.call('get', KEYS[1]) or '0'); "
       "redis.call('set', KEYS[1], v + 1); return v + 1")
RMW_KEYLESS = RMW.replace("KEYS", "ARGV")
BULK = "for i = 1, 200 do redis.call('incr', KEYS[1]) end; return redis.call('get', KEYS[1])"
BULK_KEYLESS = BULK.replace("KEYS", "ARGV")


def test_scripts_are_atomic_under_concurrency(kvd, kc, groups):
    """Transfers between a key of each thread by GET/SET scripts (keys declared, and
    none declared) never show a broken sum to reader scripts; read-modify-write scripts
    (one-thread declared key, keyless on the other thread) racing plain INCRs lose no
    update; scripts INCRing a key 200 times are never seen half done by plain GETs."""
    a, b = groups
    ka, kb = a[0], b[0]      # the transfer pair (sum 0)
    ra, rb = a[1], b[1]      # read-modify-write counters, raced by plain INCR
    ba, bb = a[2], b[2]      # bulk counters
    shas = {}
    for name, body in [("t", TRANSFER), ("tk", TRANSFER_KEYLESS), ("r", READ_PAIR),
                       ("rk", READ_PAIR_KEYLESS), ("m", RMW), ("mk", RMW_KEYLESS),
                       ("b", BULK), ("bk", BULK_KEYLESS)]:
        shas[name] = kc.cmd("SCRIPT", "LOAD", body).decode()
        assert shas[name] == sha(body)
    rounds = 250
    errors = []
    stop = threading.Event()
    done = {"transfers": 0, "rmw_a": 0, "rmw_b": 0}
    lock = threading.Lock()

    def run(fn):
        def wrapper():
            try:
                with kvd.client() as c:
                    fn(c)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
                stop.set()
        return wrapper

    def transfer(keyless):
        def fn(c):
            for _ in range(rounds):
                if keyless:
                    r = c.cmd("EVALSHA", shas["tk"], 0, ka, kb)
                else:
                    r = c.cmd("EVALSHA", shas["t"], 2, ka, kb)
                assert isinstance(r, list) and r[0] + r[1] == 0, r
                with lock:
                    done["transfers"] += 1
        return fn

    def reader(c):
        i = 0
        while not stop.is_set():
            i += 1
            if i % 2:
                r = c.cmd("EVALSHA", shas["r"], 2, ka, kb)
            else:
                r = c.cmd("EVALSHA", shas["rk"], 0, ka, kb)
            assert isinstance(r, list), r
            x, y = (int(v) if v is not None else 0 for v in r)
            assert x + y == 0, r

    def rmw(c):
        for i in range(rounds):
            r = c.cmd("EVALSHA", shas["m"], 1, ra)
            assert isinstance(r, int), r
            r = c.cmd("EVALSHA", shas["mk"], 0, rb)
            assert isinstance(r, int), r
            with lock:
                done["rmw_a"] += 1
                done["rmw_b"] += 1

    def incr(c):
        for _ in range(rounds):
            assert isinstance(c.cmd("INCR", ra), int)
            assert isinstance(c.cmd("INCR", rb), int)
            with lock:
                done["rmw_a"] += 1
                done["rmw_b"] += 1

    def bulk(c):
        for i in range(40):
            r = c.cmd("EVALSHA", shas["b"], 1, ba)
            assert isinstance(r, bytes) and int(r) % 200 == 0, r
            r = c.cmd("EVALSHA", shas["bk"], 0, bb)
            assert isinstance(r, bytes) and int(r) % 200 == 0, r

    def bulk_reader(c):
        while not stop.is_set():
            for key in (ba, bb):
                v = c.cmd("GET", key)
                assert v is None or int(v) % 200 == 0, (key, v)

    workers = [run(transfer(False)), run(transfer(False)), run(transfer(True)),
               run(rmw), run(rmw), run(incr), run(incr), run(bulk), run(bulk)]
    watchers = [run(reader), run(reader), run(bulk_reader)]
    threads = [threading.Thread(target=f) for f in workers + watchers]
    for t in threads:
        t.start()
    for t in threads[:len(workers)]:
        t.join(120)
    stop.set()
    for t in threads[len(workers):]:
        t.join(30)
    assert not errors, errors[:3]
    assert done["transfers"] == 3 * rounds
    assert kc.cmd("MGET", ka, kb) == [str(3 * rounds).encode(), str(-3 * rounds).encode()]
    assert kc.cmd("MGET", ra, rb) == [str(4 * rounds).encode()] * 2
    assert kc.cmd("MGET", ba, bb) == [str(2 * 40 * 200).encode()] * 2


# ---------------------------------------------------------------------------------------
# durability


def test_acknowledged_script_writes_survive_kill9(kvds):
    """Default persistence (appendfsync always): every acknowledged script's writes are
    back after kill -9 (one-thread, both-thread and keyless scripts, EVALSHA, SELECT
    inside, inside MULTI, a TTL, a DEL, writes before a failure); scripts of 3 clients
    running at the kill are there at most once, every acknowledged one exactly once."""
    k = kvds()
    c = k.client()
    assert info_field(c, "persistence", "appendfsync") == "always"
    a, b = classify(c, ["d%d" % i for i in range(60)])
    assert len(a) >= 12 and len(b) >= 12, (a, b)
    expect = {}  # (db, key) -> value

    for i in range(10):  # declared keys on one thread
        r = c.cmd("EVAL", "redis.call('set', KEYS[1], ARGV[1]); "
                  "return redis.call('incr', KEYS[2])", 2, a[0], a[1], "v%d" % i)
        assert r == i + 1, r
    expect[(0, a[0])] = b"v9"
    expect[(0, a[1])] = b"10"
    for i in range(10):  # declared keys on both threads
        r = c.cmd("EVAL", "redis.call('set', KEYS[1], ARGV[1]); "
                  "return redis.call('set', KEYS[2], ARGV[1])", 2, a[2], b[0], "w%d" % i)
        assert r == St("OK"), r
    expect[(0, a[2])] = expect[(0, b[0])] = b"w9"
    r = c.cmd("EVAL", "redis.call('set', ARGV[1], 'keyless a'); "
              "return redis.call('set', ARGV[2], 'keyless b')", 0, a[3], b[1])
    assert r == St("OK"), r
    expect[(0, a[3])], expect[(0, b[1])] = b"keyless a", b"keyless b"
    big = bytes(range(256)) * 1024
    s = c.cmd("SCRIPT", "LOAD", "return redis.call('set', KEYS[1], ARGV[1])")
    assert c.cmd("EVALSHA", s, 1, b[2], big) == St("OK")
    expect[(0, b[2])] = big
    r = c.cmd("EVAL", "redis.call('select', 3); redis.call('set', ARGV[1], 'db3 a'); "
              "return redis.call('set', ARGV[2], 'db3 b')", 0, a[4], b[3])
    assert r == St("OK"), r
    expect[(3, a[4])], expect[(3, b[3])] = b"db3 a", b"db3 b"
    expect[(0, a[4])] = expect[(0, b[3])] = None
    r = c.pipeline([("MULTI",), ("EVAL", "return redis.call('set', KEYS[1], 'in multi')", 1,
                                 a[5]),
                    ("EVAL", "return redis.call('incrby', KEYS[1], 7)", 1, b[4]),
                    ("EXEC",)])
    assert r[-1] == [St("OK"), 7], r
    expect[(0, a[5])], expect[(0, b[4])] = b"in multi", b"7"
    r = c.cmd("EVAL", "redis.call('set', KEYS[1], 'before the error'); "
              "redis.call('incr', KEYS[2]); error('boom')", 2, a[6], b[5])
    assert isinstance(r, Err), r
    expect[(0, a[6])], expect[(0, b[5])] = b"before the error", b"1"
    assert c.cmd("SET", b[6], "plain") == St("OK")
    assert c.cmd("EVAL", "return redis.call('del', KEYS[1], KEYS[2])", 2, b[6], a[7]) == 1
    expect[(0, b[6])] = None
    assert c.cmd("EVAL", "return redis.call('set', KEYS[1], 'ttl', 'EX', 1000)", 1,
                 a[7]) == St("OK")
    expect[(0, a[7])] = b"ttl"

    # 3 clients running scripts (one thread, both threads, keyless) until the kill
    acked = [0, 0, 0]
    counters = [(a[8], b[8]), (a[9], b[9]), (a[10], b[10])]
    stop = threading.Event()
    errors = []

    def writer(i):
        body = "redis.call('incr', %s); return redis.call('incr', %s)"
        try:
            with k.client() as w:
                ka, kb = counters[i]
                while not stop.is_set():
                    if i == 0:
                        r = w.cmd("EVAL", body % ("KEYS[1]", "KEYS[2]"), 2, ka, kb)
                    elif i == 1:
                        r = w.cmd("EVAL", body % ("ARGV[1]", "ARGV[2]"), 0, ka, kb)
                    else:
                        r = w.cmd("EVAL", "redis.call('incr', KEYS[1]); "
                                  "return redis.call('incr', ARGV[1])", 1, ka, a[11])
                    assert r == acked[i] + 1, (i, r)
                    acked[i] += 1
        except CONN_ERRORS:
            pass
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    wait_until(lambda: min(acked) >= 30 or errors, 20, what="every writer acknowledged 30")
    c.close()
    k.kill9()
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors[:3]

    k2 = k.restart()
    kvds.track(k2)
    c2 = k2.client()
    for (db, key), val in sorted(expect.items(), key=lambda x: x[0]):
        assert c2.cmd("SELECT", db) == St("OK")
        got = c2.cmd("GET", key)
        assert got == val, "db %d key %r: %r, expected %r" % (
            db, key, got if got is None else got[:60], val if val is None else val[:60])
    assert c2.cmd("SELECT", 0) == St("OK")
    ttl = c2.cmd("TTL", a[7])
    assert 0 < ttl <= 1000, ttl
    for i in range(3):
        ka, kb = counters[i]
        got = c2.cmd("MGET", ka, kb)
        for key, v in zip((ka, kb), got):
            if i == 2 and key == kb:
                continue
            n = int(v or 0)
            assert acked[i] <= n <= acked[i] + 1, (i, key, n, acked[i])
    n = int(c2.cmd("GET", a[11]) or 0)
    assert acked[2] <= n <= acked[2] + 1, (n, acked[2])
    c2.close()
    k2.stop()


def test_script_help_is_redis_s_but_for_debug(pair):
    """SCRIPT HELP: Redis's lines, but for SCRIPT DEBUG (kvd has no script debugger: it
    offers DEBUG NO only)."""
    for sub in ("HELP", "help"):
        k = pair.k.cmd("SCRIPT", sub)
        r = pair.r.cmd("SCRIPT", sub)
        i = r.index(St("DEBUG (YES|SYNC|NO)"))
        assert k[:i] == r[:i] and k[i] == St("DEBUG NO"), (k, r)
        assert k[i + 3:] == r[i + 2:], (k, r)


# ---- robustness: ordering under contention, SCRIPT KILL, shutdown, the sandbox -------

def test_pipelined_keyless_scripts_keep_order_under_contention(kvd):
    """A keyless EVAL (a cross-shard script) or SWAPDB that has to wait for another
    shard's transaction holds back what the client pipelined after it: every reply
    comes in order, one per command."""
    stop = []

    def hammer():
        with kvd.client() as h:
            while not stop:
                h.cmd("EVAL", "redis.call('incr', 'k1'); return redis.call('incr', 'k2')", "0")

    ts = [threading.Thread(target=hammer) for _ in range(2)]
    for t in ts:
        t.start()
    try:
        conns = [kvd.client() for _ in range(6)]
        for c in conns:
            assert c.cmd("SET", "x", "vx") == St("OK")
        for _ in range(30):
            for c in conns:
                c.send(encode("EVAL", "return 1", "0") + encode("GET", "x") +
                       encode("SWAPDB", "5", "6") + encode("ECHO", "end"))
            for c in conns:
                assert [c.read() for _ in range(4)] == [1, b"vx", St("OK"), b"end"]
        for c in conns:
            c.close()
    finally:
        stop.append(1)
        for t in ts:
            t.join()


def _busy_eval(port, script, key):
    c = Client(port)
    c.send(encode("EVAL", script, "1", key))
    return c


def test_script_kill_stops_a_read_only_busy_script(tmp_path):
    need_redis()
    k = Kvd()
    try:
        busy = _busy_eval(k.port, "local i = 0; while true do i = i + 1 end", "k1")
        time.sleep(0.3)
        assert kill_from_free_shard(k.port) == St("OK")
        r = busy.read()
        assert isinstance(r, Err) and r.s.startswith("ERR Script killed by user with SCRIPT KILL"), r
        busy.close()
        with k.client() as c:
            assert c.cmd("SCRIPT", "KILL") == Err("NOTBUSY No scripts in execution right now.")
            assert c.cmd("PING") == St("PONG")
    finally:
        k.stop()


def test_script_that_wrote_is_unkillable_and_shutdown_still_stops_it(tmp_path):
    k = Kvd()
    busy = _busy_eval(k.port, "redis.call('set', KEYS[1], 'w'); while true do end", "k1")
    time.sleep(0.3)
    r = kill_from_free_shard(k.port)
    assert isinstance(r, Err) and r.s.startswith("UNKILLABLE Sorry the script already executed"), r
    busy.close()
    k.stop()  # SIGTERM: the script stops at its next hook, kvd exits 0


RESP3_SCRIPTS = [
    # typed replies a script returns, in the client's protocol
    "return {double=3.5}", "return {double=0.1}", "return {double='2.5'}", "return {double=1/0}",
    "return {double=-1/0}", "return {double=0/0}", "return {big_number='123'}",
    "return {big_number=5}", "return {map={a=1}}", "return {map={}}",
    "return {map={a={1,2}, b={map={c=1}}}}", "return {map={[1]='x'}}", "return {map=5}",
    "return {set={a=true}}", "return {set={}}", "return {set={a=false}}", "return {set=5}",
    "return {verbatim_string={format='txt', string='hi'}}",
    "return {verbatim_string={format='mkd', string='# x'}}",
    "return {verbatim_string={string='hi'}}",
    "return {verbatim_string={format='toolong', string='hi'}}", "return {verbatim_string=5}",
    "return {err='E x', double=1}", "return {ok='O', map={}}", "return {double=1, map={a=1}}",
    "return {map={a=1}, set={b=true}}", "return {set={b=true}, big_number='1'}",
    "return {big_number='1', double=2}",
    "return {verbatim_string={format='txt', string='v'}, set={a=true}}",
    "return {verbatim_string={format='txt', string='v'}, double=1}",
    "return {1, {double=2.5}, {map={x='y'}}}", "return true", "return false", "return nil",
    # redis.setresp(3): replies come to the script as RESP3 (nil, {map=...}, ...)
    "redis.setresp(3); return redis.call('get', 'nokey')",
    "redis.setresp(3); local r = redis.call('get', 'nokey'); return type(r)",
    "redis.setresp(2); local r = redis.call('get', 'nokey'); return type(r)",
    "redis.setresp(3); return redis.call('lcs', '{r}s', '{r}t', 'idx')",
    "redis.setresp(3); local r = redis.call('lcs', '{r}s', '{r}t', 'idx'); return type(r.map)",
    "redis.setresp(3); return redis.call('lcs', '{r}s', '{r}t', 'idx', 'withmatchlen').map.len",
    "redis.setresp(3); return redis.call('mget', 'nokey', '{r}s')",
    "redis.setresp(3); local r = redis.call('mget', 'nokey', '{r}s'); return {type(r[1]), #r}",
    "redis.setresp(3); return redis.call('ping')", "redis.setresp(3); return redis.call('exists', '{r}s')",
    "redis.setresp(4)", "redis.setresp()", "redis.setresp('3')", "redis.setresp(1)",
    "redis.setresp(3); redis.setresp(2); return redis.call('get', 'nokey')",
    "return redis.setresp(3)",
    "redis.setresp(3); return redis.pcall('incr', '{r}s')",
    # booleans a script returns after redis.setresp(3): #t / #f (RESP2 clients: :1 / :0)
    "redis.setresp(3); return false", "redis.setresp(3); return true",
    "redis.setresp(3); return {true, false, 1}", "redis.setresp(3); return {map={a=false}}",
    "redis.setresp(3); redis.setresp(2); return false",
]


@pytest.mark.parametrize("proto", ["2", "3"])
def test_resp3_in_scripts_matches_redis(pair, proto):
    """Scripts return Redis 7's typed tables ({double=}, {big_number=}, {map=}, {set=},
    {verbatim_string=}) in the client's protocol, and after redis.setresp(3) get RESP3
    replies from redis.call as Redis's Lua forms; each script starts in RESP2."""
    for c in (pair.k, pair.r):
        assert not isinstance(c.cmd("HELLO", proto), Err)
        assert c.cmd("SET", "{r}s", "hello") == St("OK")
        assert c.cmd("SET", "{r}t", "hallo") == St("OK")
    try:
        for body in RESP3_SCRIPTS:
            pair.same("EVAL", body, "0")
    finally:
        for c in (pair.k, pair.r):
            c.cmd("HELLO", "2")

def lua_literal(rng, depth=0):
    """A random Lua value as source: numbers of every MessagePack width (integers,
    floats, doubles, infinities), strings of every length class, booleans, and tables
    (arrays, maps, holes, mixed keys) nested a few levels."""
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return str(rng.choice([0, 1, -1, 31, 32, 127, 128, 255, 256, 65535, 65536, -32, -33,
                               -128, -129, -32768, -32769, 2 ** 31, -2 ** 31 - 1, 2 ** 32,
                               2 ** 53, -2 ** 53, rng.randrange(-2 ** 40, 2 ** 40)]))
    if kind == 1:
        return rng.choice(["1.5", "0.1", "-2.25", "1e300", "3.4e38", "1/0", "-1/0", "2^63",
                           "-2^63", "0.5^20", repr(rng.uniform(-1e6, 1e6))])
    if kind == 2:
        n = rng.choice([0, 1, 31, 32, 255, 256, 70000])
        return "string.rep(%r, %d)" % (rng.choice("ab\0x"), n) if n > 40 else \
            '"%s"' % "".join("\\%d" % rng.randrange(256) for _ in range(n))
    if kind == 3:
        return rng.choice(["true", "false"])
    if kind == 4:
        return "nil"
    n = rng.randrange(0, 20)
    if kind == 5:  # array
        return "{" + ", ".join(lua_literal(rng, depth + 1) for _ in range(n)) + "}"
    if kind == 6:  # map with string keys
        return "{" + ", ".join("k%d = %s" % (i, lua_literal(rng, depth + 1))
                               for i in range(n)) + "}"
    # (no `x = nil`: a string key set to nil becomes a dead key once the collector
    # passes the table, and a later `x = ...` then takes another node, so the order of
    # pairs() depends on when the collector ran, in Redis as in kvd)
    keys = ["[%d]" % rng.choice([1, 2, 3, 5, -1, 0]), "[1.5]", "[true]", "x"]
    items = []
    for _ in range(n):
        key, val = rng.choice(keys), lua_literal(rng, depth + 1)
        items.append("%s = %s" % (key, "0" if key == "x" and val == "nil" else val))
    return "{" + ", ".join(items) + "}"


def test_cmsgpack_matches_redis(pair, rng):
    """cmsgpack.pack of random values is byte-identical with Redis's, unpack gives back
    what pack made (packed again: the same bytes), and the error texts of bad input and
    of unpack_one / unpack_limit's offsets are Redis's."""
    for _ in range(120):
        v = lua_literal(rng)
        pair.same("EVAL", "return cmsgpack.pack(%s)" % v, "0")
        pair.same("EVAL", "return cmsgpack.pack(cmsgpack.unpack(cmsgpack.pack(%s)))" % v, "0")
    for body in [
        "return {pcall(cmsgpack.pack)}", "return cmsgpack.pack(1, 'a', {2})",
        "local t = {} t.x = t return cmsgpack.pack(t)",
        "return cmsgpack.pack({{{{{{{{{{{{{{{{{{1}}}}}}}}}}}}}}}}}})",
        "return {pcall(cmsgpack.unpack, '\\193')}", "return {pcall(cmsgpack.unpack, '\\205\\1')}",
        "return {pcall(cmsgpack.unpack, '')}", "return {pcall(cmsgpack.unpack, '\\196\\1a')}",
        "return {pcall(cmsgpack.unpack, '\\212\\1a')}", "return {pcall(cmsgpack.unpack, '\\146\\1')}",
        "return {pcall(cmsgpack.unpack)}", "return {pcall(cmsgpack.unpack, 5)}",
        "return {pcall(cmsgpack.unpack_one, '\\1', 5)}", "return {pcall(cmsgpack.unpack_one, '\\1', -1)}",
        "return {pcall(cmsgpack.unpack_limit, '\\1\\2', -1)}",
        "return {pcall(cmsgpack.unpack_limit, '\\1\\2', 0)}",
        "return {pcall(cmsgpack.unpack_limit, '\\1\\2', 1, 1)}",
        "return {pcall(cmsgpack.unpack_limit, '\\1\\2', 5, 0)}",
        "return {pcall(cmsgpack.unpack_one, '')}", "return {cmsgpack.unpack_one('\\1\\2', 1)}",
        "return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3))}",
        "return tostring(cmsgpack.unpack('\\207\\255\\255\\255\\255\\255\\255\\255\\255'))",
        "return tostring(cmsgpack.unpack('\\211\\128\\0\\0\\0\\0\\0\\0\\0'))",
        "return cmsgpack.unpack('\\222\\0\\1\\161a\\1').a",
        "return {cmsgpack.unpack('\\195\\194\\192\\217\\1a')}",
        "return {cmsgpack._NAME, cmsgpack._VERSION, cmsgpack._COPYRIGHT, cmsgpack._DESCRIPTION}",
        "cmsgpack.pack = 1",
    ]:
        pair.same("EVAL", body, "0")
    # kvd's nesting limit on decoding (Redis would exhaust its C stack instead)
    deep = "\\145" * 2000 + "\\1"
    r = pair.k.cmd("EVAL", "return {pcall(cmsgpack.unpack, '%s')}" % deep, "0")
    assert r == [None, b"Bad data format in input."], r

STRUCT_PROBES = ['local k = {} for x in pairs(struct) do k[#k+1] = x end table.sort(k) return k', "return struct.pack('>i4', 1)", "return struct.pack('<i4', 1)", "return struct.pack('i', -2)", "return struct.pack('bBhHlLiI', 1, 2, 3, 4, 5, 6, 7, 8)", "return struct.pack('i3', 1)", "return {pcall(struct.pack, 'i17', 1)}", "return {pcall(struct.pack, 'i33', 1)}", "return {pcall(struct.pack, 'q', 1)}", "return {pcall(struct.pack, '!3i', 1)}", "return struct.pack('!4bi', 1, 2)", "return struct.pack('!bd', 1, 2)", "return struct.pack('>!8bd', 1, 2)", "return struct.pack('xxb', 1)", "return struct.pack('c3', 'abcdef')", "return struct.pack('c0', 'abcdef')", "return {pcall(struct.pack, 'c5', 'ab')}", "return struct.pack('s', 'ab')", "return struct.pack('fd', 1.5, 2.25)", "return struct.pack('>fd', 1.5, 2.25)", "return {pcall(struct.pack, 'i', 'x')}", "return {pcall(struct.pack, 'i')}", "return struct.pack('T', 5)", "return struct.size('i4bh')", "return struct.size('!4bi')", "return {pcall(struct.size, 's')}", "return {pcall(struct.size, 'c0')}", "return {struct.unpack('>i4', '\\0\\0\\0\\1')}", "return {struct.unpack('<i2 i2', '\\1\\0\\255\\255')}", "return {struct.unpack('bBhH', '\\255\\255\\255\\255\\255\\255')}", "return {pcall(struct.unpack, 'i4', '\\1\\2')}", "return {struct.unpack('c3', 'abcdef')}", "return {struct.unpack('bc0', '\\3abcdef')}", "return {pcall(struct.unpack, 'c0', 'abc')}", "return {struct.unpack('s', 'ab\\0cd')}", "return {pcall(struct.unpack, 's', 'abcd')}", "return {struct.unpack('i', struct.pack('i', 7), 1)}", "return {struct.unpack('b', 'abc', 2)}", "return {pcall(struct.unpack, 'b', 'abc', 5)}", "return {struct.unpack('xb', 'ab')}", "return {struct.unpack('fd', struct.pack('fd', 1.5, 2.25))}", "return {struct.unpack('>l', struct.pack('>l', -1))}", "return {struct.unpack('L', struct.pack('L', -1))}", "return struct.pack('I8', 2^63)", "return struct.pack('i8', -2^63)", "return struct.pack('i8', 2^64)", "return {struct.unpack('I8', '\\255\\255\\255\\255\\255\\255\\255\\255')}", "return {struct.unpack('i16', string.rep('\\255', 16))}", "return struct.pack(' i ', 1)", "return {pcall(struct.unpack, 'i', 'abcd', 0)}", "return {pcall(struct.unpack, 'i', 'abcd', -1)}", "return struct.pack('>I2', 70000)", "return struct.pack('b', 300)", "return struct.pack('b', 1.7)", "return struct.pack('b', -1.7)", "return {struct.unpack('>I16', string.rep('\\1', 16))}", "return struct.pack('c', 'xyz')", "return {pcall(struct.pack, 'i0', 1)}", "return {pcall(struct.size, 'i0')}", "return struct.size('')", 'return {pcall(struct.pack)}', "return {pcall(struct.unpack, 'i')}", "return {pcall(struct.unpack, 5, '1234')}"]


def test_struct_matches_redis(pair, rng):
    """struct.pack / unpack / size byte-identical with Redis's, errors included: fixed
    probes, then random formats (every option, endianness, alignment, integer sizes up
    to 32 bytes) with random values, packed and unpacked again."""
    for body in STRUCT_PROBES:
        pair.same("EVAL", body, "0")
    ints = "bBhHlLTiI"
    for _ in range(150):
        fmt, vals = rng.choice(["", ">", "<", "!", "!4", ">!2"]), []
        for _ in range(rng.randrange(1, 6)):
            o = rng.choice(ints + "fdxcs ")
            if o in "iI":
                o += str(rng.choice(["", 1, 2, 3, 4, 7, 8, 9, 16]))
                vals.append(str(rng.choice([0, 1, -1, 255, -129, 65537, 2 ** 31, -2 ** 40,
                                            2 ** 53, 2 ** 63, -2 ** 63, 1.5, -7.25])))
            elif o in ints:
                vals.append(str(rng.choice([0, 1, -1, 127, 128, 300, -32768, 2 ** 33, 2.5])))
            elif o in "fd":
                vals.append(rng.choice(["1.5", "-0.1", "1e300", "1/0", "3"]))
            elif o == "c":
                o += str(rng.choice(["", 0, 3]))
                vals.append(repr("abc\0def"[:rng.randrange(3, 8)]))
            elif o == "s":
                vals.append(repr("xyz"))
            fmt += o
        args = ", ".join(vals)
        pack = "struct.pack(%r%s)" % (fmt, ", " + args if args else "")
        pair.same("EVAL", "return {pcall(function() return %s end)}" % pack, "0")
        pair.same("EVAL", "local ok, s = pcall(function() return %s end) "
                          "if not ok then return s end "
                          "return {pcall(struct.unpack, %r, s)}" % (pack, fmt), "0")
        pair.same("EVAL", "return {pcall(struct.size, %r)}" % fmt, "0")

def test_self_referencing_typed_replies_stop_at_the_depth_limit(kc, kvd):
    """A map or set table holding itself is written down to the depth limit, then an
    error, without exhausting the thread's stack (the ASan build checks it)."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20000))  # (the test client parses replies recursively)
    try:
        replies = [kc.cmd("EVAL", body, "0") for body in [
            "local t = {}; t.map = t; return t",
            "local t = {}; t.set = {}; t.set[t] = true; return t",
            "local t = {}; t[1] = {map = {a = t}}; return t"]]
    finally:
        sys.setrecursionlimit(limit)
    for r in replies:
        depth = 0
        while isinstance(r, list) and r:
            r = r[-1]
            depth += 1
        assert r == Err("ERR reached lua stack limit") and depth >= 500, (depth, r)
    assert kc.cmd("PING") == St("PONG")


def stats_of(c):
    """INFO errorstats, the error total and commandstats without timings."""
    out = {}
    for line in c.cmd("INFO", "errorstats").decode().split("\r\n"):
        if line.startswith("errorstat_"):
            out[line.split(":")[0]] = line.split(":")[1]
    for line in c.cmd("INFO", "commandstats").decode().split("\r\n"):
        if line.startswith("cmdstat_") and not line.startswith("cmdstat_info"):
            name, fields = line.split(":")
            kept = [f for f in fields.split(",") if not f.startswith("usec")]
            out[name] = ",".join(kept)
    out["total_error_replies"] = info_field(c, "stats", "total_error_replies")
    return out


def test_script_error_accounting_matches_redis(pair):
    """As Redis 7.0: only a script's own error reply counts in errorstats (any code,
    MY_ERR_CODE too), a failed command inside counts as its failed call, and a command
    refused inside (over maxmemory, a write in a read-only script) as its rejected call;
    the same for keys on the script's thread and on the other one."""
    for c in (pair.k, pair.r):
        assert c.cmd("CONFIG", "RESETSTAT") == St("OK")
        for k in ("k7", "k1", "k2", "k3", "k4"):
            c.cmd("SET", k, "abc")
    try:
        for c in (pair.k, pair.r):
            assert c.cmd("CONFIG", "SET", "maxmemory", "1") == St("OK")
        pair.same("EVAL", "return redis.call('set','x','y')", "1", "x")
    finally:
        for c in (pair.k, pair.r):
            assert c.cmd("CONFIG", "SET", "maxmemory", "0") == St("OK")
    for cmd in [("EVAL", "return redis.call('select',99)", "0"),
                ("EVAL_RO", "return redis.call('set','x','y')", "1", "x"),
                ("EVAL", 'return redis.error_reply("MY_ERR_CODE custom msg")', "0"),
                ("EVAL", 'return redis.pcall("select",99)', "0"),
                ("EVAL", "return redis.pcall('incr', 'k7')", "0"),
                ("EVAL", "redis.pcall('incr', 'k7'); return 1", "0")] + [
                ("EVAL", "redis.pcall('incr', '%s'); return redis.call('incr', 'k7')" % k, "0")
                for k in ("k1", "k2", "k3", "k4")]:  # (keyless: keys of both threads)
        pair.same(*cmd)
    assert stats_of(pair.k) == stats_of(pair.r)
    assert stats_of(pair.k)["errorstat_MY_ERR_CODE"] == "count=1"


def test_pcall_matches_redis(pair):
    """Lua's pcall as Redis's: an error table with an err string (redis.call's error,
    error({err = ...})) is caught as that string; redis.pcall's error tables carry
    ignore_error_stats_update."""
    for body in [
        "local ok, t = pcall(redis.call, 'select', 99); return {tostring(ok), type(t), tostring(t)}",
        "local t = redis.pcall('select', 99); local k = {} for x in pairs(t) do k[#k+1] = x end "
        "table.sort(k) return k",
        "local ok, e = pcall(error, {err='X y'}); return {tostring(ok), e}",
        "local ok, e = pcall(error, {1}); return {tostring(ok), type(e)}",
        "local ok, e = pcall(error, 'plain'); return {tostring(ok), e}",
        "return {pcall(function() return 1, 2 end)}", "return {pcall()}",
        "local ok, e = pcall(redis.call, 'incr', 'k1'); return redis.error_reply(e)",
        "return pcall(redis.call, 'nosuchcommand')",
    ]:
        pair.same("SET", "k1", "abc")
        pair.same("EVAL", body, "0")


def test_sandbox_closes_the_escapes(pair):
    """getfenv / setfenv / newproxy are missing (as in Redis 7), load() refuses binary
    chunks, and an error object or reply table whose metamethods raise is an error reply,
    never a crash; RENAME of keys on two shards works as in Redis."""
    k = pair.k
    for name in ("getfenv", "setfenv", "newproxy"):
        pair.same("EVAL", "return %s" % name, "0")
    for lib in ("coroutine", "string", "table", "math", "cjson", "bit", "cmsgpack", "struct"):
        pair.same("EVAL", "%s.x = 1 return 1" % lib, "0")  # every library table read-only
    assert k.cmd("EVAL", "local f = function() return 7 end; local s = string.dump(f); "
                         "local g, e = load(function() local r = s; s = nil; return r end); "
                         "return {tostring(g), e}", "0") == [b"nil", b"binary chunks are not allowed"]
    assert k.cmd("EVAL", "return load(function() return nil end) ~= nil", "0") == 1
    r = k.cmd("EVAL", "return setmetatable({}, {__index = function() error('x') end})", "0")
    assert r == [], r
    r = k.cmd("EVAL", "error(setmetatable({}, {__index = function() error('x') end}))", "0")
    assert isinstance(r, Err), r
    r = k.cmd("EVAL", "getmetatable('').__index.len = 1", "0")
    assert isinstance(r, Err), r
    assert k.cmd("EVAL", "return ('abc'):upper() .. string.len('xy')", "0") == b"ABC2"
    # RENAME of keys on two shards (a cross-shard script), as in Redis
    pair.same("EVAL", "return redis.call('rename', KEYS[1], KEYS[2])", "2", "{a}x", "{b}y")
    pair.same("SET", "{a}x", "1")
    pair.same("EVAL", "return redis.call('rename', KEYS[1], KEYS[2])", "2", "{a}x", "{b}y")
    pair.same("MGET", "{a}x", "{b}y")
    assert k.cmd("PING") == St("PONG")


def test_lua_library_edges_match_redis(pair):
    """Redis's fixes of Lua 5.1's libraries (kvd runs Debian's liblua5.1, which lacks
    them): unpack of a huge range and bit.tohex of INT32_MIN are errors or values, not
    crashes; loadstring exists (binary chunks refused); getmetatable of the globals and
    of strings is a read-only table, of the libraries none; cmsgpack packs maps of any
    size."""
    k = pair.k
    for script in ["return {unpack({1,2,3}, -2, 2147483647)}",
                   "return {unpack({1,2,3}, 0, 2147483647)}",
                   "return {unpack({1,2,3}, -2147483648, -2)}", "return {unpack({1,2,3}, 2)}",
                   "return {unpack({1,2,3}, 2, 5)}", "return unpack({})",
                   "return bit.tohex(65535, -2147483648)", "return bit.tohex(65535, -3)",
                   "return bit.tohex(65535)", "return bit.tohex(-1, 9)",
                   "return loadstring('return 1')()",
                   "return loadstring(string.dump(function() return 1 end))()",
                   "local f, e = loadstring('x x') return {tostring(f), e}",
                   "return type(getmetatable(_G))", "local g = getmetatable(_G) g.__index = {}",
                   "return type(getmetatable(''))", "local g = getmetatable('') g.__index = {}",
                   "return getmetatable('').__index.upper('a')", "return getmetatable(cjson)",
                   "return type(getmetatable(redis))",
                   "local m = {} for i = 1, 100000 do m[tostring(i)] = i end "
                   "return #cmsgpack.pack(m)",
                   "local m = {} for i = 1, 20000 do m['k' .. i] = i end "
                   "local u = cmsgpack.unpack(cmsgpack.pack(m)) local n = 0 "
                   "for key, v in pairs(u) do if m[key] ~= v then return 'bad' end n = n + 1 end "
                   "return n"]:
        pair.same("EVAL", script, "0")
    assert k.cmd("PING") == St("PONG")


def test_calls_refused_inside_scripts_are_counted_as_redis(pair):
    """A call the script machinery refuses (arity, unknown command, OOM, ...) counts as
    an error reply and as the command's rejected call, as Redis's scriptCall counts it,
    also when redis.pcall catches it; the script fails only if its reply is an error."""
    def stats(c):
        lines = c.cmd("INFO", "stats").decode().split("\r\n")
        lines += c.cmd("INFO", "errorstats").decode().split("\r\n")
        lines += c.cmd("INFO", "commandstats").decode().split("\r\n")
        keep = []
        for ln in lines:
            if ln.startswith(("errorstat_", "total_error_replies")):
                keep.append(ln)
            elif ln.startswith(("cmdstat_incr", "cmdstat_set:", "cmdstat_eval")):
                keep.append(ln.split(":")[0] + ":" + ",".join(
                    f for f in ln.split(":")[1].split(",") if f.startswith(("rejected", "failed"))))
        return sorted(keep)

    for c in (pair.k, pair.r):
        c.cmd("CONFIG", "RESETSTAT")
    for args in [("EVAL", "local t = redis.pcall('incr', 'k', 'x') return 1", "0"),
                 ("EVAL", "return redis.call('incr', 'k', 'x')", "0"),
                 ("EVAL", "return redis.pcall('nosuchcmd')", "0"),
                 ("CONFIG", "SET", "maxmemory", "1"),
                 ("EVAL", "local t = redis.pcall('set', 'x', 'y') return t['err']", "1", "x"),
                 ("EVAL", "return redis.call('set', 'x', 'y')", "1", "x"),
                 ("CONFIG", "SET", "maxmemory", "0")]:
        pair.same(*args)
    assert stats(pair.k) == stats(pair.r)


@pytest.fixture(scope="module")
def debug_redis():
    need_redis()
    r = RedisServer(["--enable-debug-command", "yes"])
    yield r
    r.stop()


@pytest.mark.parametrize("proto", ["2", "3"])
def test_debug_protocol_and_its_conversions_in_scripts_match_redis(kvd, debug_redis, proto):
    """DEBUG PROTOCOL's sample of each RESP type, to the client and (with DEBUG
    SET-DISABLE-DENY-SCRIPTS 1, as Redis's own tests do) to scripts in RESP2 and RESP3,
    as Lua values: Redis's conversions (an attribute is skipped). Push is left out:
    Redis's Lua gets a stray value for it."""
    pair = Pair(kvd, debug_redis)
    for c in (pair.k, pair.r):
        c.cmd("HELLO", proto)
    types = ["string", "integer", "double", "bignum", "null", "array", "set", "map", "attrib",
             "verbatim", "true", "false", "bogus"]
    for t in types + ["push"]:
        pair.same("DEBUG", "PROTOCOL", t)
    pair.same("EVAL", "return redis.call('debug', 'protocol', 'string')", "0")  # denied
    try:
        pair.same("DEBUG", "SET-DISABLE-DENY-SCRIPTS", "1")
        for lua_proto in ("2", "3"):
            for t in types:
                pair.same("EVAL", "redis.setresp(%s) return redis.call('debug', 'protocol', '%s')"
                          % (lua_proto, t), "0")
                pair.same("EVAL", "redis.setresp(%s) local r = redis.pcall('debug', 'protocol', "
                          "'%s') if type(r) ~= 'table' then return tostring(r) end local o = {} "
                          "for k, v in pairs(r) do o[#o + 1] = tostring(k) .. '=' .. "
                          "(type(v) == 'table' and 'table' or tostring(v)) end table.sort(o) "
                          "return o" % (lua_proto, t), "0")
    finally:
        for c in (pair.k, pair.r):
            c.cmd("DEBUG", "SET-DISABLE-DENY-SCRIPTS", "0")


def test_cjson_encode_refuses_what_could_overflow_its_buffer(kvd):
    """Debian's lua-cjson sizes its buffer in int (Redis's CVE-2022-24834 in its own copy):
    kvd measures the worst case first and refuses past 1 GB (6 bytes per string byte),
    with an error the script can catch; small values encode as before."""
    with kvd.client() as c:
        r = c.cmd("EVAL", "local s = string.rep('x', 1000000) local t = {} "
                          "for i = 1, 200 do t[i] = s end return cjson.encode(t)", "0")
        assert isinstance(r, Err) and "Cannot serialise" in r.s and "kvd's limit" in r.s, r
        r = c.cmd("EVAL", "local s = string.rep('y', 40000000) "
                          "return {pcall(cjson.encode, {s, s, s, s, s})}", "0")
        assert r[0] is None and b"kvd's limit" in r[1], r[:1]
        assert c.cmd("EVAL", "return cjson.encode({a = {1, 2, 'x'}})", "0") == \
            b'{"a":[1,2,"x"]}'
        assert c.cmd("EVAL", "return #cjson.encode({string.rep('x', 1000000)})", "0") == 1000004
        assert isinstance(c.cmd("EVAL", "return cjson.encode()", "0"), Err)  # its own check
        # the ways round a check of cjson.encode alone: a module of cjson.new(), a nesting
        # limit raised past the walk's default, holes turned into nulls
        big = "local s = string.rep('x', 1000000) local t = {} for i = 1, 200 do t[i] = s end "
        for body in [big + "return cjson.new().encode(t)",
                     big + "local m = cjson.new() m.encode_max_depth(5000) local r = t "
                           "for i = 1, 1100 do r = {r} end return m.encode(r)",
                     "local m = cjson.new() m.encode_sparse_array(false, 0) local t = {} "
                     "t[1] = 1 t[450000000] = 1 return #m.encode(t)"]:
            r = c.cmd("EVAL", body, "0")
            assert isinstance(r, Err) and "kvd's limit" in r.s, (body, r)
        r = c.cmd("EVAL", "local m = cjson.new() m.encode_max_depth(20000) local r = {} "
                          "for i = 1, 12000 do r = {r} end return m.encode(r)", "0")
        assert isinstance(r, Err) and "nested deeper than 10000" in r.s, r
        assert c.cmd("EVAL", "local m = cjson.new() m.encode_sparse_array(false, 0) "
                             "local t = {} t[1] = 1 t[30] = 1 return #m.encode(t)", "0") == 145
        assert c.cmd("PING") == St("PONG")
