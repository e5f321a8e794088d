"""Cross-shard transactions of kvd: MULTI/EXEC and WATCH whose keys live in partitions of
both shard threads (kvd runs with --threads 2 here). The client's shard coordinates,
parks the other one, runs each command on its owner, splits MGET/MSET/DEL/EXISTS/
UNLINK/TOUCH by owner and merges their replies in key order, releases, and replies once
every written shard's WAL holds the writes (io/conn.c, "cross-shard transactions").

Keys are plain names ("k0".."k49", no hash tag) sorted by the thread that owns them at
the start of the module: a transaction reading one key of each makes INFO stats
cross_shard_transactions grow iff they are on different threads. Scenarios name them
A0, A1, ... (one thread) and B0, B1, ... (the other); every test checks with that
counter that the cross-shard path really ran.

- replies of cross-shard transactions byte for byte as Redis 7's (RESP2 and RESP3):
  strings, split multi-key commands, errors inside, SELECT inside, EXECABORT, DISCARD,
  WATCH flows of two clients, 500 commands, 1 MiB values, INFO commandstats;
- RENAME, RENAMENX, COPY, MSETNX, LCS and BITOP with their own keys on both threads,
  inside a transaction and alone (each a cross-shard transaction), as Redis's;
- isolation under concurrent writers and readers, transactions of clients that leave
  without reading the reply (all or nothing);
- WATCH on both threads: no lost update under concurrent redis-py transaction()s, a
  change on either thread fails the EXEC, every way of ending the watching drops the
  watches on every thread (INFO clients);
- pipelining: what follows a cross-shard EXEC in the same write waits for it, also
  while other clients' cross-shard transactions contend for the transaction lock;
- CLIENT REPLY OFF/SKIP around a cross-shard EXEC, as in Redis;
- kill -9 (appendfsync always): every acknowledged cross-shard transaction is back; one
  in flight at the kill may be there in part (documented), never beyond it.
"""
import re
import threading
import time

import pytest
import redis

from conftest import (ConnClosed, Err, St, classify, encode, info_field, keymap, raw_pipeline,
                      wait_until)

CONN_ERRORS = (ConnClosed, ConnectionError, OSError)


# ---------------------------------------------------------------------------------------
# helpers


def cross_count(kvd):
    with kvd.client() as c:
        return int(info_field(c, "stats", "cross_shard_transactions"))


def watch_counts(kvd):
    with kvd.client() as c:
        return (int(info_field(c, "clients", "watching_clients")),
                int(info_field(c, "clients", "total_watched_keys")))


PLACEHOLDER = re.compile(r"^[AB]\d+$")


def subst(cmd, m):
    return tuple(m[a] if isinstance(a, str) and PLACEHOLDER.match(a) else a for a in cmd)


def same_pipeline(pair, cmds):
    """The commands pipelined to both servers; asserts identical bytes reply by reply."""
    k = raw_pipeline(pair.k, cmds)
    r = raw_pipeline(pair.r, cmds)
    for i, cmd in enumerate(cmds):
        assert k[i] == r[i], "reply %d to %r differs:\n  kvd:   %r\n  redis: %r" % (
            i, cmd[:4], k[i][:2000], r[i][:2000])
    return k


def read_until_marker(c, marker, timeout=20):
    """Every byte the server sends until the reply to ECHO marker (included)."""
    end = encode(marker)[len(b"*1\r\n"):]  # $n\r\nmarker\r\n: the bulk ECHO replies
    c.settimeout(timeout)
    while not bytes(c.buf[c.pos:]).endswith(end):
        c._fill()
    out = bytes(c.buf[c.pos:])
    c.buf.clear()
    c.pos = 0
    return out


class Hammer:
    """Clients running cross-shard transactions (MULTI; INCR a; INCR b; EXEC) in a loop
    until stopped, so that others' EXECs wait for the transaction lock; each checks its
    own replies (a and b move together)."""

    def __init__(self, kvd, a, b, n=3):
        self.kvd, self.a, self.b = kvd, a, b
        self.stop_ev = threading.Event()
        self.errors = []
        self.done = [0] * n
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(n)]

    def run(self, i):
        try:
            with self.kvd.client() as c:
                while not self.stop_ev.is_set():
                    r = c.pipeline([("MULTI",), ("INCR", self.a), ("INCR", self.b),
                                    ("EXEC",)])
                    ex = r[-1]
                    assert isinstance(ex, list) and ex[0] == ex[1], r
                    self.done[i] += 1
        except Exception as e:  # noqa: BLE001 - reported by stop()
            self.errors.append(e)

    def __enter__(self):
        for t in self.threads:
            t.start()
        wait_until(lambda: sum(self.done) >= 20 or self.errors, 10, what="the hammer runs")
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        for t in self.threads:
            t.join(30)
        assert not self.errors, self.errors[:3]
        assert sum(self.done) > 0


# ---------------------------------------------------------------------------------------
# 1. replies as Redis's

# name: (cross-shard EXECs it makes, commands). A<i>/B<i>: keys of one/the other thread.
SCENARIOS = {
    "strings": (1, [
        ("SET", "A2", "x"), ("MULTI",), ("SET", "A0", "a"), ("SET", "B0", "b"),
        ("APPEND", "A0", "x"), ("APPEND", "B0", "yz"), ("INCR", "A1"), ("INCR", "B1"),
        ("INCRBY", "B1", "41"), ("DECRBY", "A1", "3"), ("INCRBYFLOAT", "B2", "1.5"),
        ("GET", "A0"), ("GET", "B0"), ("STRLEN", "B0"), ("GETRANGE", "A0", "0", "0"),
        ("SETRANGE", "B0", "1", "Q"), ("SETNX", "A2", "no"), ("SETNX", "B3", "yes"),
        ("GETSET", "A2", "new"), ("GETDEL", "B3"), ("EXPIRE", "B0", "100"),
        ("EXPIRE", "A9", "100"), ("PERSIST", "B0"), ("PERSIST", "A0"), ("TYPE", "B1"),
        ("EXEC",),
        ("MGET", "A0", "B0", "A1", "B1", "A2", "B2", "B3"), ("TTL", "B0")]),
    "split_merge": (1, [
        ("MULTI",), ("MSET", "A0", "1", "B0", "2", "A1", "3", "B1", "4", "A0", "5"),
        ("MGET", "B1", "A0", "B0", "A5", "A1", "A0", "B5"),
        ("EXISTS", "A0", "B0", "A0", "B9", "A1", "B1"),
        ("TOUCH", "B0", "A0", "A9", "B0"),
        ("DEL", "A1", "B1", "A9", "B9", "A1"),
        ("EXISTS", "A1", "B1"),
        ("UNLINK", "B0", "A0", "A8"),
        ("MGET", "A0", "B0", "A1", "B1"),
        ("MSET", "B2", "x", "A2", "y"), ("MGET", "A2", "B2"), ("DEL", "B2", "A2"),
        ("EXEC",), ("MGET", "A0", "B0", "A1", "B1", "A2", "B2")]),
    "all_split": (1, [  # every command of the transaction split over both threads
        ("MULTI",), ("MSET", "A0", "a", "B0", "b"), ("MGET", "A0", "B0"),
        ("EXISTS", "B0", "A0"), ("DEL", "A0", "B0"), ("EXEC",)]),
    "errors_inside": (1, [
        ("SET", "A0", "abc"), ("SET", "B0", "1"), ("MULTI",), ("INCR", "A0"),
        ("INCR", "B0"), ("APPEND", "A0", "d"), ("MSET", "A1", "1", "B1"),
        ("INCRBYFLOAT", "B0", "nan"), ("SETRANGE", "B2", "-1", "x"), ("GET", "A0"),
        ("GET", "B0"), ("MSET", "A1", "1", "B1", "2"), ("EXEC",),
        ("MGET", "A0", "B0", "A1", "B1")]),
    "select": (2, [
        ("SET", "A0", "db0"), ("SET", "B0", "db0"), ("MULTI",), ("SET", "A1", "x"),
        ("SET", "B1", "y"), ("SELECT", "3"), ("SET", "A0", "db3"), ("SET", "B0", "db3b"),
        ("GET", "A1"), ("MGET", "A0", "B0"), ("EXEC",),
        ("MGET", "A0", "B0", "A1", "B1"),  # still db 3
        ("MULTI",), ("INCR", "A2"), ("INCR", "B2"), ("SELECT", "0"), ("INCR", "A2"),
        ("SELECT", "3"), ("INCR", "B2"), ("EXEC",),
        ("MGET", "A2", "B2"), ("SELECT", "0"), ("MGET", "A0", "B0", "A1", "B1", "A2", "B2")]),
    "execabort": (0, [
        ("MULTI",), ("SET", "A0", "1"), ("SET", "B0"), ("SET", "B1", "1"), ("NOSUCH", "A2"),
        ("INCR", "A1"), ("EXEC",), ("EXISTS", "A0", "B0", "B1", "A1"), ("EXEC",)]),
    "discard": (0, [
        ("MULTI",), ("SET", "A0", "1"), ("SET", "B0", "1"), ("DISCARD",),
        ("EXISTS", "A0", "B0"), ("EXEC",), ("DISCARD",)]),
    "keyless_between": (1, [
        ("MULTI",), ("PING",), ("SET", "A0", "1"), ("ECHO", "hi"), ("GET", "B0"),
        ("PING", "x"), ("SET", "B0", "2"), ("EXEC",), ("MGET", "A0", "B0")]),
    "nested_multi": (1, [
        ("MULTI",), ("SET", "A0", "1"), ("MULTI",), ("SET", "B0", "2"), ("EXEC",),
        ("MGET", "A0", "B0")]),
    "reads_only": (1, [
        ("SET", "B0", "b"), ("MULTI",), ("GET", "A0"), ("GET", "B0"), ("EXISTS", "A0", "B0"),
        ("MGET", "B0", "A0"), ("EXEC",)]),
}


@pytest.mark.parametrize("proto", ["2", "3"])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_cross_transactions_match_redis(pair, groups, name, proto):
    m = keymap(groups)
    for c in (pair.k, pair.r):  # HELLO's reply names the server: not compared
        c.cmd("HELLO", proto)
    crosses, cmds = SCENARIOS[name]
    before = cross_count(pair.kvd)
    for cmd in cmds:
        pair.same(*subst(cmd, m))
    assert cross_count(pair.kvd) - before == crosses, name


def test_same_commands_across_threads_inside_a_transaction(pair, groups):
    """RENAME, RENAMENX, COPY, MSETNX, LCS and BITOP with their own keys on two threads,
    queued in a transaction whose other keys are on both threads: one cross-shard
    transaction, replies and data as Redis's; outside a transaction each is one too."""
    a, b = groups
    m = {}
    for i in range(4):
        m["A%d" % i], m["B%d" % i] = a[i], b[i]
    cmds = [("MSET", "A0", "ohmytext", "B0", "mynewtext"), ("MULTI",), ("SET", "A3", "1"),
            ("SET", "B3", "1"), ("RENAME", "A0", "B1"), ("RENAMENX", "B1", "A0"),
            ("COPY", "A0", "B2"), ("MSETNX", "A1", "1", "B3", "1"), ("MSETNX", "A1", "1", "B1", "2"),
            ("LCS", "A0", "B0"), ("BITOP", "OR", "A2", "A0", "B0"), ("EXEC",),
            ("MGET", "A0", "A1", "A2", "A3", "B0", "B1", "B2", "B3")]
    before = cross_count(pair.kvd)
    same_pipeline(pair, [tuple(m.get(x, x) for x in c) for c in cmds])
    assert cross_count(pair.kvd) - before == 1
    for c in [("RENAME", "A0", "B1"), ("COPY", "B1", "A1"), ("MSETNX", "A3", "x", "B0", "y")]:
        before = cross_count(pair.kvd)
        same_pipeline(pair, [tuple(m.get(x, x) for x in c)])
        assert cross_count(pair.kvd) - before == 1, c


def test_big_cross_transaction_matches_redis(pair, groups):
    """500 SETs over 200 untagged keys (both threads) and an MGET of all of them in one
    transaction, then values of 1 MiB set, appended and read on both threads."""
    keys = ["L%d" % i for i in range(200)]
    cmds = [("MULTI",)]
    for i in range(500):
        cmds.append(("SET", keys[(i * 7) % 200], "v%d" % i))
    cmds += [("MGET",) + tuple(keys), ("DEL",) + tuple(keys[:100]), ("EXISTS",) + tuple(keys),
             ("EXEC",), ("MGET",) + tuple(keys)]
    before = cross_count(pair.kvd)
    same_pipeline(pair, cmds)
    assert cross_count(pair.kvd) - before == 1
    m = keymap(groups)
    big = bytes(range(256)) * 4096  # 1 MiB, every byte value
    before = cross_count(pair.kvd)
    cmds = [("MULTI",), ("SET", "A0", big), ("SET", "B0", big[::-1]), ("SET", "B1", big),
            ("SET", "A1", big[:1000]), ("APPEND", "A0", "tail"), ("APPEND", "B0", big),
            ("GET", "A0"), ("GET", "B0"), ("MGET", "A0", "B0", "B1", "A1", "A2", "B2"),
            ("STRLEN", "B0"), ("GETRANGE", "B0", "1048570", "1048580"), ("EXEC",),
            ("MGET", "A0", "B0", "B1", "A1")]
    for c in cmds:
        pair.same(*subst(c, m))
    assert cross_count(pair.kvd) - before == 1


def test_cross_transaction_commandstats_match_redis(pair, groups):
    """A split command counts once (cmdstat_mget calls=1 ...), as every command a
    transaction runs, its errors in errorstats, as in Redis."""
    from test_kvd_server import stat_lines
    m = keymap(groups)
    for c in (pair.k, pair.r):
        assert c.cmd("CONFIG", "RESETSTAT") == St("OK")
    for name in ("split_merge", "errors_inside", "execabort", "keyless_between"):
        for cmd in SCENARIOS[name][1]:
            pair.same(*subst(cmd, m))
    k, r = stat_lines(pair.k), stat_lines(pair.r)
    assert k == r, "\n  kvd:   %r\n  redis: %r" % (sorted(k.items()), sorted(r.items()))


# ---------------------------------------------------------------------------------------
# 2. isolation

def test_cross_transactions_are_isolated(kc, kvd, groups):
    """Writers move one unit from a (one thread) to b (the other) in MULTI/EXEC, readers
    read both in MULTI/EXEC (GETs and a split MGET) and always see a + b == 0; plain
    writes to other keys of both threads go on meanwhile and none is lost."""
    a, b = groups[0][0], groups[1][0]
    pa, pb = groups[0][1], groups[1][1]
    kc.ok("MSET", a, 0, b, 0)
    n_writers, rounds, n_plain = 8, 200, 400
    stop = threading.Event()
    errors = []
    reads = [0]

    def writer():
        try:
            with kvd.client() as c:
                for _ in range(rounds):
                    r = c.pipeline([("MULTI",), ("DECRBY", a, 1), ("INCRBY", b, 1), ("EXEC",)])
                    assert r[:3] == [St("OK"), St("QUEUED"), St("QUEUED")], r
                    assert r[-1][0] + r[-1][1] == 0, r
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def reader():
        try:
            with kvd.client() as c:
                while not stop.is_set():
                    r = c.pipeline([("MULTI",), ("GET", a), ("GET", b), ("MGET", b, a),
                                    ("EXEC",)])
                    ga, gb, (mb, ma) = r[-1]
                    assert int(ga) + int(gb) == 0 and (ma, mb) == (ga, gb), r
                    reads[0] += 1
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    def plain(key):
        try:
            with kvd.client() as c:
                for _ in range(n_plain):
                    assert isinstance(c.cmd("INCR", key), int)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    before = cross_count(kvd)
    writers = [threading.Thread(target=writer) for _ in range(n_writers)] + \
        [threading.Thread(target=plain, args=(k,)) for k in (pa, pb)]
    readers = [threading.Thread(target=reader) for _ in range(3)]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors[:3]
    assert reads[0] > 0
    total = n_writers * rounds
    assert kc.cmd("MGET", a, b, pa, pb) == [b"%d" % -total, b"%d" % total, b"%d" % n_plain,
                                            b"%d" % n_plain]
    assert cross_count(kvd) - before >= total + reads[0]


@pytest.mark.parametrize("flush", [("FLUSHALL",), ("FLUSHDB",), ("FLUSHALL", "ASYNC")])
def test_flushes_are_atomic_across_threads(kc, kvd, groups, flush):
    """Writers set a (one thread) and b (the other) together in MULTI/EXEC while another
    client flushes: readers (MULTI/EXEC over both) see both or neither, never a flush
    done on one thread only."""
    a, b = groups[0][0], groups[1][0]
    stop = threading.Event()
    errors = []
    seen = {"both": 0, "none": 0}

    def writer():
        try:
            with kvd.client() as c:
                i = 0
                while not stop.is_set():
                    i += 1
                    r = c.pipeline([("MULTI",), ("SET", a, i), ("SET", b, i), ("EXEC",)])
                    assert r[-1] == [St("OK"), St("OK")], r
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def reader():
        try:
            with kvd.client() as c:
                while not stop.is_set():
                    va, vb = c.pipeline([("MULTI",), ("GET", a), ("GET", b), ("EXEC",)])[-1]
                    assert va == vb, (va, vb)  # both with one value, or both gone
                    seen["both" if va is not None else "none"] += 1
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader),
               threading.Thread(target=reader)]
    for t in threads:
        t.start()
    try:
        with kvd.client() as f:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and not errors:
                assert f.cmd(*flush) == St("OK")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert seen["both"] > 0 and seen["none"] > 0, seen


def test_abandoned_cross_transactions_are_all_or_nothing(kc, kvd, groups):
    """Clients send transactions incrementing a key of each thread and close at once,
    without reading, while other clients contend for the transaction lock: each ran
    whole or not at all, and kvd goes on."""
    a, b = groups[0][2], groups[1][2]
    with Hammer(kvd, groups[0][3], groups[1][3]):
        for _ in range(40):
            c = kvd.client()
            c.send(b"".join(encode(*x) for x in [("MULTI",), ("INCR", a), ("INCR", b),
                                                  ("EXEC",)] * 5))
            c.close()
    wait_until(lambda: int(info_field(kc, "clients", "connected_clients")) == 1, 10,
               what="the abandoned clients gone")
    va, vb = kc.cmd("MGET", a, b)
    assert va == vb, (va, vb)
    assert kc.cmd("PING") == St("PONG")


# ---------------------------------------------------------------------------------------
# 3. WATCH across threads

def test_watch_across_threads_loses_no_update(kc, kvd, groups):
    """redis-py transaction() watching a key of each thread, reading both and writing
    both + 1, in 6 concurrent clients: no increment is lost, conflicts made retries,
    every EXEC ran across shards, no watch is left."""
    a, b = groups[0][4], groups[1][4]
    n_clients, rounds = 6, 80
    retries = [0]
    errors = []

    def worker():
        try:
            r = redis.Redis(host="127.0.0.1", port=kvd.port)
            for _ in range(rounds):
                attempts = [0]

                def incr(pipe):
                    attempts[0] += 1
                    va, vb = int(pipe.get(a) or 0), int(pipe.get(b) or 0)
                    pipe.multi()
                    pipe.set(a, va + 1)
                    pipe.set(b, vb + 1)
                assert r.transaction(incr, a, b) == [True, True]
                retries[0] += attempts[0] - 1
            r.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    before = cross_count(kvd)
    threads = [threading.Thread(target=worker) for _ in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    total = n_clients * rounds
    assert kc.cmd("MGET", a, b) == [b"%d" % total, b"%d" % total]
    assert retries[0] > 0, "no conflict at all: the test did not exercise WATCH"
    assert cross_count(kvd) - before >= total + retries[0]
    wait_until(lambda: watch_counts(kvd) == (0, 0), 5, what="every watch dropped")


def test_watched_key_changed_on_the_other_thread(kvd, groups):
    """redis-py: a write by another client to either watched key (one per thread) makes
    the EXEC fail with WatchError, nothing of the transaction runs."""
    a, b = groups[0][5], groups[1][5]
    r = redis.Redis(host="127.0.0.1", port=kvd.port)
    o = redis.Redis(host="127.0.0.1", port=kvd.port)
    try:
        r.delete(a, b, "k-none")
        for changed, other in ((a, b), (b, a)):
            before = cross_count(kvd)
            with r.pipeline() as p:
                p.watch(a, b)
                assert p.get(changed) is None
                o.set(changed, "by-other")
                p.multi()
                p.set(other, "mine")
                p.incr(changed)
                with pytest.raises(redis.WatchError):
                    p.execute()
            assert r.mget(a, b) == ([b"by-other", None] if changed == a
                                    else [None, b"by-other"])
            assert cross_count(kvd) - before == 1
            r.delete(a, b)
        # untouched: it commits
        with r.pipeline() as p:
            p.watch(a, b)
            p.multi()
            p.set(a, 1)
            p.set(b, 2)
            assert p.execute() == [True, True]
        assert r.mget(a, b) == [b"1", b"2"]
    finally:
        r.close()
        o.close()
    wait_until(lambda: watch_counts(kvd) == (0, 0), 5, what="every watch dropped")


# Two clients' conversations (w watches, o writes) compared reply by reply with Redis.
WATCH_FLOWS = {
    "other_changes_first": [("w", "SET", "A0", "1"), ("w", "WATCH", "A0", "B0"),
                            ("o", "SET", "A0", "2"), ("w", "MULTI"), ("w", "SET", "B0", "x"),
                            ("w", "INCR", "A0"), ("w", "EXEC"), ("w", "MGET", "A0", "B0")],
    "other_changes_second": [("w", "WATCH", "A0", "B0"), ("o", "SET", "B0", "2"),
                             ("w", "MULTI"), ("w", "SET", "A0", "x"), ("w", "EXEC"),
                             ("w", "MGET", "A0", "B0")],
    "two_watch_calls": [("w", "WATCH", "A0"), ("w", "WATCH", "B0", "B1"),
                        ("o", "DEL", "B1"), ("o", "SET", "B1", "1"), ("w", "MULTI"),
                        ("w", "GET", "A0"), ("w", "EXEC")],
    "untouched": [("w", "WATCH", "A0", "B0"), ("o", "SET", "A1", "1"),
                  ("o", "SET", "B1", "1"), ("w", "MULTI"), ("w", "INCR", "A0"),
                  ("w", "INCR", "B0"), ("w", "EXEC"), ("w", "MGET", "A0", "B0")],
    "watch_other_thread_only": [("w", "WATCH", "B0"), ("w", "MULTI"), ("w", "SET", "A0", "1"),
                                ("w", "EXEC"), ("w", "WATCH", "B0"), ("o", "SET", "B0", "1"),
                                ("w", "MULTI"), ("w", "SET", "A0", "2"), ("w", "EXEC"),
                                ("w", "GET", "A0")],
    "self_changes": [("w", "WATCH", "A0", "B0"), ("w", "SET", "B0", "2"), ("w", "MULTI"),
                     ("w", "PING"), ("w", "EXEC")],
    "empty_transaction": [("w", "WATCH", "A0", "B0"), ("w", "MULTI"), ("w", "EXEC"),
                          ("w", "WATCH", "A0", "B0"), ("o", "SET", "A0", "1"),
                          ("w", "MULTI"), ("w", "EXEC")],
    "select_then_fail": [("w", "SET", "A0", "db0"), ("w", "WATCH", "A0", "B0"),
                         ("o", "SET", "B0", "1"), ("w", "MULTI"), ("w", "SELECT", "2"),
                         ("w", "SET", "A0", "db2"), ("w", "EXEC"), ("w", "GET", "A0"),
                         ("w", "SELECT", "2"), ("w", "GET", "A0")],
    "write_that_changes_nothing": [("w", "WATCH", "A0", "B0"), ("o", "DEL", "B0"),
                                   ("o", "SETNX", "A1", "x"), ("w", "MULTI"),
                                   ("w", "SET", "A0", "1"), ("w", "EXEC")],
    "flushall": [("w", "SET", "B0", "1"), ("w", "WATCH", "A0", "B0"), ("o", "FLUSHALL"),
                 ("w", "MULTI"), ("w", "SET", "A0", "1"), ("w", "EXEC")],
    "other_transaction": [("w", "WATCH", "A0", "B0"), ("o", "MULTI"), ("o", "INCR", "B0"),
                          ("o", "INCR", "A1"), ("o", "EXEC"), ("w", "MULTI"),
                          ("w", "GET", "B0"), ("w", "EXEC")],
    "discard_unwatches": [("w", "WATCH", "A0", "B0"), ("w", "MULTI"), ("w", "DISCARD"),
                          ("o", "SET", "B0", "1"), ("w", "MULTI"), ("w", "SET", "A0", "1"),
                          ("w", "SET", "B1", "1"), ("w", "EXEC")],
    "failed_exec_unwatches": [("w", "WATCH", "A0", "B0"), ("o", "SET", "A0", "1"),
                              ("w", "MULTI"), ("w", "SET", "B1", "1"), ("w", "EXEC"),
                              ("o", "SET", "B0", "2"), ("w", "MULTI"), ("w", "SET", "A1", "1"),
                              ("w", "SET", "B1", "1"), ("w", "EXEC")],
    "exec_without_multi_keeps": [("w", "WATCH", "A0", "B0"), ("o", "SET", "B0", "1"),
                                 ("w", "EXEC"), ("w", "MULTI"), ("w", "SET", "A1", "1"),
                                 ("w", "EXEC")],
    "unwatch_unwatches": [("w", "WATCH", "A0", "B0"), ("w", "UNWATCH"),
                          ("o", "SET", "A0", "1"), ("o", "SET", "B0", "1"), ("w", "MULTI"),
                          ("w", "INCR", "A0"), ("w", "INCR", "B0"), ("w", "EXEC")],
    "execabort_unwatches": [("w", "WATCH", "A0", "B0"), ("w", "MULTI"), ("w", "NOSUCH"),
                            ("w", "EXEC"), ("o", "SET", "B0", "1"), ("w", "MULTI"),
                            ("w", "INCR", "A0"), ("w", "INCR", "B0"), ("w", "EXEC")],
    "resp3_null": [("w", "HELLO", "3"), ("w", "WATCH", "A0", "B0"), ("o", "SET", "B0", "1"),
                   ("w", "MULTI"), ("w", "MGET", "A0", "B0"), ("w", "EXEC"),
                   ("w", "MULTI"), ("w", "MGET", "A0", "B0"), ("w", "EXEC")],
    "expired_after_watch": [("w", "SET", "B0", "1", "PX", "200"), ("w", "WATCH", "A0", "B0"),
                            "sleep", ("w", "MULTI"), ("w", "SET", "A0", "1"), ("w", "EXEC")],
}


def run_flow(server, steps, m):
    with server.client() as w, server.client() as o:
        o.cmd("FLUSHALL")
        who = {"w": w, "o": o}
        out = []
        for step in steps:
            if step == "sleep":
                while o.cmd("PTTL", m["B0"]) != -2:
                    time.sleep(0.01)
                continue
            args = subst(step[1:], m)
            c = who[step[0]]
            c.send(encode(*args))
            _, raw = c.read_both()
            out.append(raw if args[0] != "HELLO" else b"(server-specific)")
        return out


@pytest.mark.parametrize("name", sorted(WATCH_FLOWS))
def test_watch_flows_across_threads_match_redis(kvd, redis_server, groups, name):
    from conftest import need_redis
    need_redis()
    m = keymap(groups)
    before = cross_count(kvd)
    k = run_flow(kvd, WATCH_FLOWS[name], m)
    r = run_flow(redis_server, WATCH_FLOWS[name], m)
    assert k == r, "flow %s:\n  kvd:   %r\n  redis: %r" % (name, k, r)
    assert cross_count(kvd) > before, "no cross-shard EXEC in flow %s" % name
    wait_until(lambda: watch_counts(kvd) == (0, 0), 5, what="every watch dropped")


def test_every_end_of_watching_drops_it_on_every_thread(kvd, groups):
    """Clients watch keys of both threads; EXEC, a failed EXEC, EXECABORT, UNWATCH,
    DISCARD, RESET and closing the connection each drop the watches on both threads."""
    a, b = groups
    assert watch_counts(kvd) == (0, 0)
    ends = ["exec", "dirty_exec", "execabort", "unwatch", "discard", "reset", "close"]
    clients = [kvd.client() for _ in ends]
    with kvd.client() as o:
        for i, c in enumerate(clients):
            assert c.cmd("WATCH", a[i], b[i], b[i + 7]) == St("OK")
        wait_until(lambda: watch_counts(kvd)[1] == 3 * len(ends), 5,
                   what="%d watched keys" % (3 * len(ends)))
        before = cross_count(kvd)
        for i, (c, end) in enumerate(zip(clients, ends)):
            if end == "exec":
                assert c.pipeline([("MULTI",), ("PING",), ("EXEC",)])[-1] == [St("PONG")]
            elif end == "dirty_exec":
                assert o.cmd("SET", b[i + 7], "x") == St("OK")
                assert c.pipeline([("MULTI",), ("PING",), ("EXEC",)])[-1] is None
            elif end == "execabort":
                r = c.pipeline([("MULTI",), ("NOSUCH",), ("EXEC",)])[-1]
                assert isinstance(r, Err) and r.s.startswith("EXECABORT"), r
            elif end == "unwatch":
                assert c.cmd("UNWATCH") == St("OK")
            elif end == "discard":
                assert c.pipeline([("MULTI",), ("DISCARD",)]) == [St("OK"), St("OK")]
            elif end == "reset":
                assert c.cmd("RESET") == St("RESET")
            else:
                c.close()
            left = len(ends) - 1 - i
            wait_until(lambda: watch_counts(kvd)[1] == 3 * left, 5,
                       what="%s: %d watched keys left" % (end, 3 * left))
        assert cross_count(kvd) - before == 2  # exec and dirty_exec ran across shards
    wait_until(lambda: watch_counts(kvd) == (0, 0), 5, what="every watch dropped")
    for c in clients:
        c.close()


def test_watching_clients_counts_clients_not_threads(kvd, groups):
    """INFO clients watching_clients is the number of clients watching keys (Redis 7.4's
    meaning), also when one client's watched keys are on both threads."""
    a, b = groups
    with kvd.client() as c, kvd.client() as d:
        assert c.cmd("WATCH", a[0], b[0], a[1]) == St("OK")
        assert d.cmd("WATCH", b[1]) == St("OK")
        try:
            wait_until(lambda: watch_counts(kvd)[1] == 4, 5, what="4 watched keys")
            time.sleep(0.2)
            assert watch_counts(kvd) == (2, 4)
        finally:
            c.cmd("UNWATCH")
            d.cmd("UNWATCH")
    wait_until(lambda: watch_counts(kvd) == (0, 0), 5, what="every watch dropped")


# ---------------------------------------------------------------------------------------
# 4. pipelining

@pytest.mark.parametrize("contended", [False, True], ids=["alone", "contended"])
def test_pipelined_cross_transactions_keep_order(kc, kvd, groups, contended):
    """"SET x 1, MULTI, INCR x, INCR y, EXEC, GET x, GET y" repeated in one write, x and y
    on different threads (both ways round, from several connections so that both
    threads coordinate): the replies come in order and the GETs after each EXEC see
    it; with other clients' cross-shard transactions contending for the lock (the EXEC
    waits, what follows it must wait too)."""
    rounds = 60
    pairs = [(groups[0][6], groups[1][6]), (groups[1][7], groups[0][7])]
    hammer = Hammer(kvd, groups[0][8], groups[1][8]) if contended else None
    before = cross_count(kvd)
    n_exec = 0
    if hammer:
        hammer.__enter__()
    try:
        for conn in range(4):
            for x, y in pairs:
                kc.cmd("DEL", x, y)
                with kvd.client() as c:
                    cmds = []
                    for _ in range(rounds):
                        cmds += [("SET", x, "1"), ("MULTI",), ("INCR", x), ("INCR", y),
                                 ("EXEC",), ("GET", x), ("GET", y)]
                    got = c.pipeline(cmds)
                    for i in range(rounds):
                        want = [St("OK"), St("OK"), St("QUEUED"), St("QUEUED"), [2, i + 1],
                                b"2", b"%d" % (i + 1)]
                        assert got[7 * i:7 * i + 7] == want, (conn, x, y, i, got[7 * i:7 * i + 7])
                    n_exec += rounds
    finally:
        if hammer:
            hammer.__exit__(None, None, None)
    assert cross_count(kvd) - before >= n_exec + (sum(hammer.done) if hammer else 0)


def test_pipelined_writes_before_the_transaction_reach_the_parked_shard_first(kc, kvd, groups):
    """Plain writes to the other thread pipelined before MULTI arrive before the park:
    the transaction sees them; writes after EXEC come after it."""
    a, b = groups[0][9], groups[1][9]
    before = cross_count(kvd)
    for conn in range(4):
        with kvd.client() as c:
            cmds = []
            for i in range(30):
                cmds += [("SET", a, "a%d" % i), ("SET", b, "b%d" % i), ("APPEND", b, "+"),
                         ("MULTI",), ("GET", a), ("GET", b), ("APPEND", a, "!"),
                         ("APPEND", b, "!"), ("EXEC",), ("APPEND", a, "?"), ("MGET", a, b)]
            got = c.pipeline(cmds)
            for i in range(30):
                sa, sb = b"a%d" % i, b"b%d+" % i
                want = [St("OK"), St("OK"), len(sb), St("OK"), St("QUEUED"), St("QUEUED"),
                        St("QUEUED"), St("QUEUED"), [sa, sb, len(sa) + 1, len(sb) + 1],
                        len(sa) + 2, [sa + b"!?", sb + b"!"]]
                assert got[11 * i:11 * i + 11] == want, (conn, i, got[11 * i:11 * i + 11])
    assert cross_count(kvd) - before == 4 * 30


# ---------------------------------------------------------------------------------------
# 5. CLIENT REPLY

REPLY_FLOWS = {
    "off": [("CLIENT", "REPLY", "OFF"), ("MULTI",), ("SET", "A0", "1"), ("INCR", "B0"),
            ("MGET", "A0", "B0"), ("EXEC",), ("CLIENT", "REPLY", "ON"), ("MGET", "A0", "B0")],
    "skip_multi": [("CLIENT", "REPLY", "SKIP"), ("MULTI",), ("SET", "A0", "2"),
                   ("SET", "B0", "2"), ("EXEC",), ("MGET", "A0", "B0")],
    "skip_then_exec": [("MULTI",), ("SET", "A0", "3"), ("SET", "B0", "3"), ("EXEC",),
                       ("CLIENT", "REPLY", "SKIP"), ("MULTI",), ("INCR", "A0"),
                       ("INCR", "B0"), ("EXEC",), ("CLIENT", "REPLY", "SKIP"), ("PING",),
                       ("MGET", "A0", "B0")],
    "off_null_exec": [("CLIENT", "REPLY", "OFF"), ("WATCH", "A0", "B0"), ("SET", "B0", "x"),
                      ("MULTI",), ("SET", "A0", "y"), ("EXEC",), ("CLIENT", "REPLY", "ON"),
                      ("MGET", "A0", "B0")],
    "off_skip_on": [("CLIENT", "REPLY", "OFF"), ("MULTI",), ("SET", "A0", "4"),
                    ("SET", "B0", "4"), ("EXEC",), ("CLIENT", "REPLY", "SKIP"), ("MULTI",),
                    ("INCR", "A0"), ("INCR", "B0"), ("EXEC",), ("CLIENT", "REPLY", "ON"),
                    ("MULTI",), ("INCR", "A0"), ("INCR", "B0"), ("EXEC",)],
    "off_many": [("CLIENT", "REPLY", "OFF")] +
                [("MULTI",), ("INCR", "A1"), ("INCR", "B1"), ("EXEC",)] * 20 +
                [("CLIENT", "REPLY", "ON"), ("MGET", "A1", "B1")],
}


@pytest.mark.parametrize("proto", ["2", "3"])
@pytest.mark.parametrize("contended", [False, True], ids=["alone", "contended"])
@pytest.mark.parametrize("name", sorted(REPLY_FLOWS))
def test_client_reply_around_cross_exec_matches_redis(pair, groups, name, contended, proto):
    """The bytes sent for a whole flow (one write) are Redis's: the EXEC reply dropped
    exactly when Redis drops it, also while the EXEC waits for the transaction lock."""
    m = keymap(groups)
    for c in (pair.k, pair.r):
        c.cmd("HELLO", proto)
    cmds = [subst(x, m) for x in REPLY_FLOWS[name]] + [("ECHO", "end-of-flow")]
    data = b"".join(encode(*x) for x in cmds)
    before = cross_count(pair.kvd)
    hammer = Hammer(pair.kvd, groups[0][10], groups[1][10]) if contended else None
    if hammer:
        hammer.__enter__()
    try:
        pair.k.send(data)
        k = read_until_marker(pair.k, "end-of-flow")
    finally:
        if hammer:
            hammer.__exit__(None, None, None)
    pair.r.send(data)
    r = read_until_marker(pair.r, "end-of-flow")
    assert k == r, "flow %s:\n  kvd:   %r\n  redis: %r" % (name, k, r)
    # the hammer's transactions and at least one of the flow's ran across shards
    assert cross_count(pair.kvd) - before >= (sum(hammer.done) if hammer else 0) + 1
    assert pair.same("MGET", *[m["A%d" % i] for i in range(2)] +
                     [m["B%d" % i] for i in range(2)]) is not None


# ---------------------------------------------------------------------------------------
# 6. durability


def test_acknowledged_cross_transactions_survive_kill9(kvds):
    """Default persistence (appendfsync always): cross-shard transactions acknowledged
    one by one (a 1 MiB value on each thread among them), then 4 clients running them
    until a kill -9: after the restart every acknowledged one is there whole; the one in
    flight of each client may be there in part (each shard's WAL on its own), nothing
    beyond it."""
    k = kvds()
    c = k.client()
    assert info_field(c, "persistence", "appendfsync") == "always"
    a, b = classify(c, ["d%d" % i for i in range(30)])
    assert len(a) >= 6 and len(b) >= 6, (a, b)
    big_a = b"A" * (1 << 20)
    big_b = bytes(range(256)) * 4096
    before = int(info_field(c, "stats", "cross_shard_transactions"))
    expect = {}
    for i in range(20):
        ka, kb = "{%s}s%d" % (a[0], i), "{%s}s%d" % (b[0], i)
        r = c.pipeline([("MULTI",), ("SET", ka, "va%d" % i), ("SET", kb, "vb%d" % i),
                        ("INCR", a[1]), ("INCR", b[1]), ("APPEND", a[2], "%d," % i),
                        ("APPEND", b[2], "%d," % i), ("MSET", a[3], i, b[3], i),
                        ("DEL", "{%s}s%d" % (a[0], i - 1), "{%s}s%d" % (b[0], i - 1)),
                        ("EXEC",)])
        assert r[-1][:5] == [St("OK"), St("OK"), i + 1, i + 1, len("".join(
            "%d," % j for j in range(i + 1)))], r[-1]
        expect.pop("{%s}s%d" % (a[0], i - 1), None)
        expect.pop("{%s}s%d" % (b[0], i - 1), None)
        expect[ka], expect[kb] = b"va%d" % i, b"vb%d" % i
    log = "".join("%d," % j for j in range(20)).encode()
    expect.update({a[1]: b"20", b[1]: b"20", a[2]: log, b[2]: log, a[3]: b"19", b[3]: b"19"})
    r = c.pipeline([("MULTI",), ("SET", a[4], big_a), ("SET", b[4], big_b),
                    ("APPEND", b[4], "end"), ("EXEC",)])
    assert r[-1] == [St("OK"), St("OK"), len(big_b) + 3], r[-1][:3]
    expect[a[4]], expect[b[4]] = big_a, big_b + b"end"
    assert int(info_field(c, "stats", "cross_shard_transactions")) - before == 21

    # concurrent clients killed mid-flight
    n = 4
    acked = [-1] * n
    errors = []
    stop = threading.Event()

    def writer(w, wc):
        i = 0
        la, lb = "{%s}log%d" % (a[5], w), "{%s}log%d" % (b[5], w)
        try:
            while not stop.is_set():
                cmds = [("MULTI",), ("APPEND", la, "%d," % i), ("APPEND", lb, "%d," % i),
                        ("SET", "{%s}last%d" % (a[5], w), i),
                        ("SET", "{%s}last%d" % (b[5], w), i), ("EXEC",)]
                try:
                    wc.send(b"".join(encode(*x) for x in cmds))
                    r = [wc.read() for _ in cmds]
                except CONN_ERRORS:
                    return
                assert isinstance(r[-1], list) and r[-1][2:] == [St("OK"), St("OK")], r
                acked[w] = i
                i += 1
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            wc.close()

    threads = [threading.Thread(target=writer, args=(w, k.client())) for w in range(n)]
    for t in threads:
        t.start()
    wait_until(lambda: min(acked) >= 20 or errors, 20, what="every writer acknowledged 20")
    c.close()
    k.kill9()
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors[:3]
    k2 = k.restart()
    kvds.track(k2)
    c2 = k2.client()
    for key, val in expect.items():
        got = c2.cmd("GET", key)
        assert got == val, "acknowledged %r lost: %r" % (key, None if got is None else got[:60])
    for i in range(20):
        if "{%s}s%d" % (a[0], i) not in expect:
            assert c2.cmd("EXISTS", "{%s}s%d" % (a[0], i), "{%s}s%d" % (b[0], i)) == 0, i
    for w in range(n):
        for side in (a[5], b[5]):
            got = c2.cmd("GET", "{%s}log%d" % (side, w)) or b""
            last = c2.cmd("GET", "{%s}last%d" % (side, w))
            items = got.split(b",")[:-1]
            assert items == [b"%d" % j for j in range(len(items))], (w, side, got[-80:])
            assert len(items) - 1 in (acked[w], acked[w] + 1), \
                "writer %d on %s: %d acknowledged, %d back" % (w, side, acked[w] + 1, len(items))
            assert last == b"%d" % (len(items) - 1), (w, side, last, len(items))
    # and the restarted kvd runs cross-shard transactions
    before = int(info_field(c2, "stats", "cross_shard_transactions"))
    r = c2.pipeline([("MULTI",), ("INCR", a[1]), ("INCR", b[1]), ("EXEC",)])
    assert r[-1] == [21, 21], r
    assert int(info_field(c2, "stats", "cross_shard_transactions")) - before == 1
    c2.close()
    assert k2.stop() == 0
