"""Keyspace notifications (notify-keyspace-events) of kvd (--threads 2) against Redis 7:

- CONFIG SET / GET of the flags as Redis parses and prints them, and its error text;
- for sequences of string and generic commands (SET with options, SETNX, SETEX, GETSET,
  GETDEL, GETEX, MSET, MSETNX, INCR..., APPEND, SETRANGE, SETBIT, BITFIELD, BITOP, DEL,
  EXPIRE family, PERSIST, RENAME, COPY, MOVE, RESTORE) the same events reach a
  PSUBSCRIBEd client of each server, per flag set (KEA, K$, Eg, KEAnm, ...): keyspace
  channels in the same order, keyevent channels with the same messages (keys of both
  shard threads: their order across threads may differ);
- expired events from lazy and active expiry, evicted events, keymiss, new;
- a plain SUBSCRIBE to one key's channel, a subscriber on the other thread than the
  writer, RESP3 pushes; nothing at all once the setting is empty again.
"""
import time

import pytest

from conftest import Client, Err, Push, St, info_field, need_redis, wait_until

ALL = "__key*__:*"


def drain(sub, quiet=0.3, limit=10.0):
    """Messages (channel, payload) until none came for `quiet` seconds."""
    out = []
    sub.settimeout(quiet)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            m = sub.read()
        except OSError:
            break
        if isinstance(m, Push):
            m = m.items
        assert m[0] in (b"pmessage", b"message"), m
        out.append((m[-2].decode(), m[-1].decode()))
    sub.settimeout(20)
    return out


def by_channel(msgs):
    """keyspace channels: their messages in order; keyevent channels: sorted (keys of
    different threads arrive in either order)."""
    d = {}
    for ch, msg in msgs:
        d.setdefault(ch, []).append(msg)
    return {ch: (v if ch.startswith("__keyspace") else sorted(v)) for ch, v in d.items()}


class Side:
    def __init__(self, port, flags, pattern=ALL):
        self.c = Client(port)
        self.sub = Client(port)
        assert self.c.cmd("FLUSHALL") == St("OK")
        assert self.c.cmd("CONFIG", "SET", "notify-keyspace-events", flags) == St("OK")
        self.sub.cmd("PSUBSCRIBE", pattern)

    def run(self, cmds):
        for c in cmds:
            self.c.cmd(*c)
        return drain(self.sub)

    def close(self):
        self.c.cmd("CONFIG", "SET", "notify-keyspace-events", "")
        self.c.close()
        self.sub.close()


@pytest.fixture
def sides(kvd, redis_server):
    need_redis()
    made = []

    def make(flags, pattern=ALL):
        k, r = Side(kvd.port, flags, pattern), Side(redis_server.port, flags, pattern)
        made.extend([k, r])
        return k, r

    yield make
    for s in made:
        s.close()
    kvd.check_alive()


STRING_CMDS = [
    ("SET", "s1", "v"), ("SET", "s1", "w", "EX", "100"), ("SET", "s1", "x", "KEEPTTL"),
    ("SET", "s1", "y", "NX"), ("SET", "s2", "y", "XX"), ("SET", "s2", "y", "NX", "PX", "5000"),
    ("SET", "s3", "z", "GET"), ("SETNX", "s3", "q"), ("SETNX", "s4", "q"),
    ("SETEX", "s5", "100", "v"), ("PSETEX", "s6", "100000", "v"), ("GETSET", "s6", "n"),
    ("GETDEL", "s6"), ("GETDEL", "s6"), ("GETEX", "s5", "PERSIST"), ("GETEX", "s5", "EX", "9"),
    ("GETEX", "s5"), ("SET", "gx", "v"), ("GETEX", "gx", "PXAT", "1"), ("GET", "gx"),
    ("GETEX", "gx", "EX", "10"), ("MSET", "{m}1", "a", "{m}2", "b"), ("MSETNX", "{m}3", "c", "{m}4", "d"),
    ("MSETNX", "{m}3", "c", "{m}5", "d"), ("INCR", "n1"), ("INCRBY", "n1", "5"), ("DECR", "n1"),
    ("DECRBY", "n2", "2"), ("INCRBYFLOAT", "n3", "1.5"), ("APPEND", "s1", "tail"),
    ("APPEND", "a1", "new"), ("SETRANGE", "s1", "2", "XY"), ("SETRANGE", "r1", "3", "z"),
    ("SETRANGE", "r2", "0", ""), ("SETBIT", "b1", "7", "1"), ("SETBIT", "b1", "7", "1"),
    ("SETBIT", "b1", "7", "0"), ("BITFIELD", "bf", "SET", "u8", "0", "255"),
    ("BITFIELD", "bf", "GET", "u8", "0"), ("BITFIELD", "bf", "SET", "u8", "0", "255"),
    ("BITFIELD", "bf2", "OVERFLOW", "FAIL", "INCRBY", "u2", "0", "5"),
    ("BITFIELD", "bf2", "OVERFLOW", "FAIL", "INCRBY", "u2", "0", "1"),
    ("MEMORY", "USAGE", "nokey"), ("OBJECT", "ENCODING", "nokey"), ("SET", "past", "v", "EXAT", "1"),
    ("GET", "past"),
    ("BITOP", "OR", "{b}d", "{b}s1", "{b}s2"), ("SET", "{b}s1", "ab"),
    ("BITOP", "AND", "{b}d", "{b}s1"), ("BITOP", "AND", "{b}d", "{b}none"),
    ("PFADD", "h1", "a", "b"), ("PFADD", "h1", "a"), ("PFADD", "h2"), ("PFCOUNT", "h1"),
    ("PFMERGE", "{h}d", "{h}s"), ("PFADD", "{h}s", "x"), ("PFMERGE", "{h}d", "{h}s"),
    ("PFMERGE", "h1", "h2"), ("PFDEBUG", "TODENSE", "h1"), ("PFADD", "h1", "zz"),
    ("PFADD", "h1", "zz"),
]

GENERIC_CMDS = [
    ("SET", "g1", "v"), ("SET", "g2", "v"), ("DEL", "g1", "g2", "g3"), ("SET", "g1", "v"),
    ("UNLINK", "g1"), ("SET", "e1", "v"), ("EXPIRE", "e1", "100"), ("PEXPIRE", "e1", "100000"),
    ("EXPIREAT", "e1", "4000000000"), ("EXPIRE", "e1", "100", "NX"), ("PERSIST", "e1"),
    ("PERSIST", "e1"), ("EXPIRE", "nokey", "10"), ("SET", "e2", "v"), ("EXPIRE", "e2", "-1"),
    ("SET", "e3", "v"), ("PEXPIREAT", "e3", "1"), ("SET", "{r}a", "1"),
    ("RENAME", "{r}a", "{r}b"), ("SET", "{r}c", "2"), ("RENAME", "{r}b", "{r}c"),
    ("RENAMENX", "{r}c", "{r}d"), ("SET", "{r}e", "1"), ("RENAMENX", "{r}d", "{r}e"),
    ("COPY", "{r}d", "{r}f"), ("COPY", "{r}d", "{r}f"), ("COPY", "{r}d", "{r}f", "REPLACE"),
    ("COPY", "{r}d", "{r}g", "DB", "2"), ("MOVE", "{r}f", "4"), ("MOVE", "{r}f", "4"),
    ("SET", "m1", "v"), ("MOVE", "m1", "1"),
]


def dump_restore_cmds(c):
    c.cmd("SET", "dumped", "payload")
    payload = c.cmd("DUMP", "dumped")
    return [("RESTORE", "rs1", "0", payload), ("RESTORE", "rs1", "0", payload, "REPLACE"),
            ("RESTORE", "rs2", "100000", payload), ("RESTORE", "rs1", "1", payload, "REPLACE",
                                                     "ABSTTL")]


@pytest.mark.parametrize("flags", ["KEA", "K$", "Eg", "KEAnm", "KEA$gn", "E$", "Kg"])
def test_string_and_generic_events_match_redis(sides, flags):
    k, r = sides(flags)
    for cmds in [STRING_CMDS, GENERIC_CMDS]:
        km, rm = k.run(cmds), r.run(cmds)
        assert by_channel(km) == by_channel(rm), flags
        if flags in ("KEA", "KEAnm"):
            assert km, "no notification at all"


def test_restore_events_match_redis(sides):
    k, r = sides("KEAn")
    kc, rc = dump_restore_cmds(k.c), dump_restore_cmds(r.c)
    drain(k.sub), drain(r.sub)
    assert by_channel(k.run(kc)) == by_channel(r.run(rc))


def test_config_flags_as_redis(pair):
    need_redis()
    try:
        for v in ["KEA", "AKE", "Ex$gn", "AnKm", "", "g", "$lshzxetd", "KEA$", "KKK", "mE",
                  "Ag$lshzxeKEtmdn", "nK"]:
            pair.same("CONFIG", "SET", "notify-keyspace-events", v)
            pair.same("CONFIG", "GET", "notify-keyspace-events")
        for bad in ["Q", "KE1", "a", "K E"]:
            pair.same("CONFIG", "SET", "notify-keyspace-events", bad)
        pair.same("CONFIG", "GET", "notify-keyspace-events")
    finally:
        pair.k.cmd("CONFIG", "SET", "notify-keyspace-events", "")
        pair.r.cmd("CONFIG", "SET", "notify-keyspace-events", "")


def test_expired_events_lazy_and_active(kvd):
    c, sub = kvd.client(), kvd.client()
    c.ok("FLUSHALL")
    c.ok("CONFIG", "SET", "notify-keyspace-events", "Ex")
    try:
        sub.cmd("SUBSCRIBE", "__keyevent@0__:expired")
        c.ok("DEBUG", "SET-ACTIVE-EXPIRE", "0")
        c.ok("SET", "lazy", "v", "PX", "20")
        time.sleep(0.1)
        assert c.cmd("GET", "lazy") is None  # the lookup removes it: one event
        c.ok("DEBUG", "SET-ACTIVE-EXPIRE", "1")
        names = ["active%d" % i for i in range(50)]  # keys of both threads
        for n in names:
            c.ok("SET", n, "v", "PX", "30")
        got = []
        deadline = time.monotonic() + 10
        while len(got) < 51 and time.monotonic() < deadline:
            got += [m for ch, m in drain(sub, quiet=0.5)]
        assert sorted(got) == sorted(["lazy"] + names)
    finally:
        c.cmd("DEBUG", "SET-ACTIVE-EXPIRE", "1")
        c.cmd("CONFIG", "SET", "notify-keyspace-events", "")
        c.close()
        sub.close()


def test_evicted_events(kvd):
    c, sub = kvd.client(), kvd.client()
    c.ok("FLUSHALL")
    c.ok("CONFIG", "SET", "notify-keyspace-events", "Ee")
    try:
        sub.cmd("SUBSCRIBE", "__keyevent@0__:evicted")
        c.pipeline([("SET", "k%d" % i, "v" * 100) for i in range(2000)])
        used = int(info_field(c, "memory", "used_memory"))
        c.ok("CONFIG", "SET", "maxmemory-policy", "allkeys-random")
        c.ok("CONFIG", "SET", "maxmemory", str(used - 20000))
        wait_until(lambda: int(info_field(c, "stats", "evicted_keys")) > 0, 10,
                   what="evictions")
        c.ok("CONFIG", "SET", "maxmemory", "0")
        got = [m for ch, m in drain(sub, quiet=0.5)]
        left = set(k.decode() for k in c.cmd("KEYS", "k*"))
        assert got and len(got) == len(set(got))
        assert all(g.startswith("k") and g not in left for g in got)
        assert len(got) + len(left) == 2000
    finally:
        c.cmd("CONFIG", "SET", "maxmemory", "0")
        c.cmd("CONFIG", "SET", "maxmemory-policy", "noeviction")
        c.cmd("CONFIG", "SET", "notify-keyspace-events", "")
        c.close()
        sub.close()


def test_subscribers_on_either_thread_and_resp3(kvd):
    """Several subscribers (connections land on both threads) of one key's channel, one
    in RESP3; each gets every event of the key, in order."""
    c = kvd.client()
    c.ok("FLUSHALL")
    c.ok("CONFIG", "SET", "notify-keyspace-events", "K$g")
    subs = [kvd.client() for _ in range(4)]
    try:
        subs[0].cmd("HELLO", "3")
        for s in subs:
            s.cmd("SUBSCRIBE", "__keyspace@0__:watched")
        for key in ["watched", "other"]:
            c.ok("SET", key, "1")
            c.cmd("INCR", key)
            c.cmd("APPEND", key, "x")
            c.cmd("DEL", key)
        for s in subs:
            assert [m for ch, m in drain(s)] == ["set", "incrby", "append", "del"]
    finally:
        c.cmd("CONFIG", "SET", "notify-keyspace-events", "")
        c.close()
        for s in subs:
            s.close()


def test_nothing_when_off(kvd):
    c, sub = kvd.client(), kvd.client()
    c.ok("FLUSHALL")
    assert c.cmd("CONFIG", "GET", "notify-keyspace-events") == [b"notify-keyspace-events", b""]
    sub.cmd("PSUBSCRIBE", "*")
    c.ok("CONFIG", "SET", "notify-keyspace-events", "KEA")
    c.ok("SET", "a", "1")
    assert len(drain(sub)) == 2
    c.ok("CONFIG", "SET", "notify-keyspace-events", "")
    c.ok("SET", "a", "2")
    c.cmd("DEL", "a")
    assert drain(sub) == []
    # classes without K or E publish nothing, as in Redis
    c.ok("CONFIG", "SET", "notify-keyspace-events", "A")
    c.ok("SET", "a", "3")
    assert drain(sub) == []
    c.ok("CONFIG", "SET", "notify-keyspace-events", "")
    c.close()
    sub.close()


def test_setting_from_flag(kvd_factory):
    k = kvd_factory(args=["--notify-keyspace-events", "KEx"])
    c = k.client()
    assert c.cmd("CONFIG", "GET", "notify-keyspace-events") == [b"notify-keyspace-events",
                                                                b"xKE"]
    assert isinstance(c.cmd("CONFIG", "SET", "notify-keyspace-events", "Z"), Err)
    c.close()
