"""MULTI / EXEC / DISCARD of kvd against Redis 7: replies, queueing errors, EXECABORT,
errors inside a transaction, RESP3, pipelining, transactions whose partition is on
another shard thread, atomicity under concurrent clients, redis-py's transactional
pipelines, and a transaction's writes across kill -9 (all or nothing).

kvd's own rules (documented in README): a transaction's keys may be anywhere (across
shard threads see test_kvd_txn_cross.py), also those of one command (RENAME, MSETNX,
...); commands needing the connection (CLIENT, CONFIG, ...) are refused inside MULTI. WATCH has its own tests
(test_kvd_watch.py).
"""
import threading

import pytest
import redis

from conftest import Err, St

SCENARIOS = {
    "basic": [("MULTI",), ("SET", "{t}a", "1"), ("INCR", "{t}a"), ("GET", "{t}a"),
              ("MGET", "{t}a", "{t}b"), ("EXEC",)],
    "empty": [("MULTI",), ("EXEC",)],
    "without_multi": [("EXEC",), ("DISCARD",)],
    "nested": [("MULTI",), ("MULTI",), ("SET", "{t}a", "2"), ("EXEC",), ("GET", "{t}a")],
    "discard": [("MULTI",), ("SET", "{t}a", "3"), ("DISCARD",), ("GET", "{t}a"), ("EXEC",)],
    "arity_aborts": [("MULTI",), ("SET", "{t}a"), ("SET", "{t}a", "4"), ("EXEC",),
                     ("GET", "{t}a")],
    "unknown_aborts": [("MULTI",), ("NOSUCH", "x"), ("SET", "{t}a", "5"), ("EXEC",),
                       ("GET", "{t}a")],
    "runtime_errors": [("SET", "{t}s", "abc"), ("MULTI",), ("INCR", "{t}s"),
                       ("MSET", "{t}a", "1", "{t}b"), ("APPEND", "{t}s", "d"),
                       ("GET", "{t}s"), ("EXEC",)],
    "keyless": [("MULTI",), ("PING",), ("ECHO", "hi"), ("PING", "x"), ("EXEC",)],
    "ttl_and_del": [("MULTI",), ("SET", "{t}e", "v", "EX", "100"), ("TTL", "{t}e"),
                    ("PERSIST", "{t}e"), ("TTL", "{t}e"), ("DEL", "{t}e", "{t}a"),
                    ("EXISTS", "{t}e"), ("EXEC",)],
    "watch_inside": [("MULTI",), ("WATCH", "{t}a"), ("UNWATCH",), ("SET", "{t}a", "6"),
                     ("EXEC",)],
    "unwatch": [("UNWATCH",), ("UNWATCH", "x")],
    "select_object_odd_mset": [("SET", "{t}a", "12345"), ("MULTI",), ("SELECT", "0"),
                               ("OBJECT", "ENCODING", "{t}a"), ("OBJECT", "HELP"),
                               ("OBJECT", "NOPE", "{t}a"), ("MSET", "a", "1", "b"),
                               ("SELECT", "5"), ("EXEC",)],
    "reset_drops_it": [("MULTI",), ("SET", "{t}a", "7"), ("RESET",), ("EXEC",),
                       ("GET", "{t}a")],
}


@pytest.mark.parametrize("proto", ["2", "3"])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_multi_matches_redis(pair, name, proto):
    for c in (pair.k, pair.r):
        c.cmd("HELLO", proto)
    for cmd in SCENARIOS[name]:
        pair.same(*cmd)


def test_transactions_on_every_shard(pair):
    """Hash tags spread over both shard threads: some transactions run on the client's
    thread, the others are forwarded whole to the owner."""
    def forwarded():
        text = pair.k.cmd("INFO", "stats").decode()
        return int(text.split("commands_forwarded:")[1].split("\r\n")[0])

    before = forwarded()
    for tag in range(40):
        cmds = [("MULTI",), ("SET", "{%d}a" % tag, tag), ("INCRBY", "{%d}a" % tag, 5),
                ("APPEND", "{%d}b" % tag, "x"), ("MGET", "{%d}a" % tag, "{%d}b" % tag),
                ("EXEC",)]
        for cmd in cmds:
            pair.same(*cmd)
    assert forwarded() - before >= 10  # whole transactions sent to the other thread


def test_pipelined_transactions_keep_order(kc):
    cmds = []
    for i in range(200):
        tag = i % 17
        cmds += [("MULTI",), ("INCR", "{%d}n" % tag), ("GET", "{%d}n" % tag), ("EXEC",),
                 ("PING", str(i))]
    replies = kc.pipeline(cmds)
    count = {}
    for i in range(200):
        tag = i % 17
        count[tag] = count.get(tag, 0) + 1
        m, q1, q2, ex, ping = replies[5 * i:5 * i + 5]
        assert (m, q1, q2) == (St("OK"), St("QUEUED"), St("QUEUED")), replies[5 * i:5 * i + 5]
        assert ex == [count[tag], str(count[tag]).encode()], (i, ex)
        assert ping == str(i).encode()


def test_kvd_refusals_inside_multi(kc):
    assert kc.cmd("MULTI") == St("OK")
    for cmd in [("SAVE",), ("SHUTDOWN",), ("MEMORY", "USAGE", "k"), ("DEBUG", "OBJECT", "k")]:
        r = kc.cmd(*cmd)
        assert isinstance(r, Err) and "not allowed inside a transaction" in r.s, (cmd, r)
    assert isinstance(kc.cmd("EXEC"), Err)
    assert kc.cmd("MULTI") == St("OK")
    assert kc.cmd("SET", "{a}x", "1") == St("QUEUED")
    assert kc.cmd("SET", "{b}y", "1") == St("QUEUED")  # another partition: fine
    assert kc.cmd("RENAME", "{a}x", "{b}z") == St("QUEUED")  # its keys anywhere too
    assert kc.cmd("EXEC") == [St("OK"), St("OK"), St("OK")]
    assert kc.cmd("MGET", "{a}x", "{b}y", "{b}z") == [None, b"1", b"1"]
    assert kc.cmd("DEL", "{b}y", "{b}z") == 2
    assert kc.cmd("MULTI") == St("OK")
    assert kc.cmd("SET", "{a}x", "1") == St("QUEUED")
    assert kc.cmd("SET", "{b}y", "2") == St("QUEUED")
    assert kc.cmd("RENAME", "{a}x", "{a}z") == St("QUEUED")
    assert kc.cmd("EXEC") == [St("OK"), St("OK"), St("OK")]
    assert kc.cmd("MGET", "{a}z", "{b}y") == [b"1", b"2"]


@pytest.mark.parametrize("proto", ["2", "3"])
def test_subscriptions_and_monitor_inside_multi_match_redis(pair, proto):
    """SUBSCRIBE & co queued in MULTI are set up by EXEC, their confirmations inside
    EXEC's array; MONITOR is queued and refused by EXEC; a RESP2 client is then in
    subscribed mode, and messages reach it."""
    for c in (pair.k, pair.r):
        c.cmd("HELLO", proto)
    for cmd in [("MULTI",), ("SUBSCRIBE", "ch1"), ("PSUBSCRIBE", "p*"), ("SET", "k", "v"),
                ("UNSUBSCRIBE",), ("SUBSCRIBE", "ch2"), ("MONITOR",), ("GET", "k"), ("EXEC",),
                ("MULTI",) if proto == "2" else ("PING",), ("PUNSUBSCRIBE",),
                ("UNSUBSCRIBE",), ("MULTI",), ("MONITOR",), ("DISCARD",), ("PING",)]:
        pair.same(*cmd)
    for c in (pair.k, pair.r):
        c.cmd("HELLO", "2")


def test_subscribed_in_multi_gets_messages(kc, kvd):
    assert kc.cmd("MULTI") == St("OK")
    assert kc.cmd("SUBSCRIBE", "news") == St("QUEUED")
    assert kc.cmd("EXEC") == [[b"subscribe", b"news", 1]]
    with kvd.client() as p:
        assert p.cmd("PUBLISH", "news", "hello") == 1
    assert kc.read() == [b"message", b"news", b"hello"]
    assert kc.cmd("UNSUBSCRIBE") == [b"unsubscribe", b"news", 0]


def test_transactions_are_atomic_under_concurrency(kvd):
    """Each transaction moves one unit between two counters; a reader's transaction
    always sees them sum to zero, and the final values add up."""
    n_writers, rounds = 4, 300
    with kvd.client() as c:
        c.cmd("MSET", "{bank}a", 0, "{bank}b", 0)
    errors = []

    def writer():
        try:
            with kvd.client() as c:
                for _ in range(rounds):
                    r = c.pipeline([("MULTI",), ("INCR", "{bank}a"), ("DECR", "{bank}b"),
                                    ("EXEC",)])
                    assert r[-1][0] + r[-1][1] == 0, r
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def reader():
        try:
            with kvd.client() as c:
                for _ in range(rounds):
                    r = c.pipeline([("MULTI",), ("GET", "{bank}a"), ("GET", "{bank}b"),
                                    ("EXEC",)])
                    a, b = r[-1]
                    assert int(a) + int(b) == 0, r
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer) for _ in range(n_writers)] + \
        [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    with kvd.client() as c:
        assert c.cmd("MGET", "{bank}a", "{bank}b") == [str(n_writers * rounds).encode(),
                                                      str(-n_writers * rounds).encode()]


def test_redis_py_transactional_pipeline(kvd):
    r = redis.Redis(host="127.0.0.1", port=kvd.port)
    with r.pipeline(transaction=True) as p:
        p.set("{p}a", 1).incr("{p}a").get("{p}a").expire("{p}a", 100).ttl("{p}a")
        assert p.execute() == [True, 2, b"2", True, 100]
    with r.pipeline(transaction=True) as p:
        p.set("{p}s", "abc").incr("{p}s").get("{p}s")
        with pytest.raises(redis.ResponseError):
            p.execute()
    assert r.get("{p}s") == b"abc"  # the other commands of the transaction ran
    r.close()


def test_refused_exec_ends_the_transaction(pair):
    for cmd in [("MULTI",), ("SET", "{t}a", "1"), ("EXEC", "x"), ("EXEC",), ("GET", "{t}a")]:
        pair.same(*cmd)


def test_client_list_shows_the_open_transaction(kvd):
    with kvd.client() as c, kvd.client() as other:
        assert c.cmd("CLIENT", "SETNAME", "tx") == St("OK")
        assert c.cmd("MULTI") == St("OK")
        assert c.cmd("SET", "{t}a", "1") == St("QUEUED")
        assert c.cmd("GET", "{t}a") == St("QUEUED")
        line = [x for x in other.cmd("CLIENT", "LIST").decode().split("\n") if "name=tx " in x]
        assert len(line) == 1 and " flags=x " in line[0] and " multi=2 " in line[0], line
        assert c.cmd("EXEC") == [St("OK"), b"1"]
        line = [x for x in other.cmd("CLIENT", "LIST").decode().split("\n") if "name=tx " in x]
        assert " flags=N " in line[0] and " multi=-1 " in line[0], line


def test_transaction_stats_match_redis(pair):
    from test_kvd_server import stat_lines
    for c in (pair.k, pair.r):
        assert c.cmd("CONFIG", "RESETSTAT") == St("OK")
    for name in ("basic", "arity_aborts", "runtime_errors", "nested", "discard"):
        for cmd in SCENARIOS[name]:
            pair.same(*cmd)
    pair.same("EXEC", "x")
    k, r = stat_lines(pair.k), stat_lines(pair.r)
    assert k == r, "\n  kvd:   %r\n  redis: %r" % (sorted(k.items()), sorted(r.items()))


def test_slowlog_of_transactions_names_the_client(kc):
    """EXEC itself is not logged, the commands it ran are, with the client's address and
    name, also when the transaction ran on the other shard thread."""
    kc.cmd("CLIENT", "SETNAME", "txlog")
    kc.cmd("CONFIG", "SET", "slowlog-log-slower-than", "0")
    try:
        kc.cmd("SLOWLOG", "RESET")
        for tag in range(8):
            assert kc.pipeline([("MULTI",), ("SET", "{%d}k" % tag, "v"), ("EXEC",)])[-1] == \
                [St("OK")]
        log = kc.cmd("SLOWLOG", "GET", "-1")
        sets = [e for e in log if e[3][:1] == [b"SET"]]
        assert len(sets) == 8, log
        addr = "127.0.0.1:%d" % kc.sock.getsockname()[1]
        assert all((e[4], e[5]) == (addr.encode(), b"txlog") for e in sets), sets
        assert not [e for e in log if e[3][:1] in ([b"EXEC"], [b"exec|run"])], log
    finally:
        kc.cmd("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        kc.cmd("SLOWLOG", "RESET")


def test_connection_commands_inside_multi_as_redis(pair):
    """CONFIG, CLIENT, ECHO, ACL, DEBUG ... queue and run in EXEC (on the client's thread
    whatever the transaction's keys), byte for byte as Redis."""
    for keys in (["a"], ["a", "b", "c", "d", "e", "f"]):  # one thread, then both
        cmds = [("MULTI",), ("CLIENT", "SETNAME", "inside"), ("CLIENT", "GETNAME")]
        cmds += [("SET", k, "1") for k in keys]
        cmds += [("CONFIG", "GET", "maxmemory-policy"), ("ECHO", "x"), ("ACL", "WHOAMI"),
                 ("CLIENT", "TRACKING", "on"),
                 ("CLIENT", "GETREDIR"), ("CLIENT", "TRACKING", "off"), ("SELECT", "1"),
                 ("SET", "k", "v"), ("SELECT", "0"), ("MGET", *keys), ("EXEC",)]
        for c in cmds:
            pair.same(*c)
        pair.same("CLIENT", "GETNAME")
        pair.same("SELECT", "1")
        pair.same("GET", "k")
        pair.same("SELECT", "0")


def test_client_list_inside_multi_sees_every_thread(kvd):
    cs = [kvd.client() for _ in range(6)]
    ids = [c.cmd("CLIENT", "ID") for c in cs]
    c = cs[0]
    r = c.pipeline([("MULTI",), ("CLIENT", "LIST"), ("CLIENT", "INFO"), ("EXEC",)])
    listing, info = r[-1]
    got = {int(line.split()[0][3:]) for line in listing.decode().splitlines()}
    assert set(ids) <= got, (ids, listing)
    assert info.decode().startswith("id=%d " % ids[0])
    for x in cs:
        x.close()


def test_scan_inside_multi_walks_every_thread(kc):
    """SCAN in a transaction runs where its cursor's partition is: a full walk made of
    one SCAN per transaction (with a key of another thread written in each) returns every
    key; an invalid cursor is its error inside EXEC's reply."""
    keys = {"sk%d" % i for i in range(300)}
    kc.cmd("MSET", *[x for k in sorted(keys) for x in (k, "v")])
    seen, cur, i = set(), b"0", 0
    while True:
        r = kc.pipeline([("MULTI",), ("SCAN", cur, "COUNT", "50"), ("SET", "other%d" % i, "x"),
                         ("EXEC",)])
        (cur, batch), ok = r[-1]
        assert ok == St("OK")
        seen.update(k.decode() for k in batch)
        i += 1
        if cur == b"0":
            break
    assert keys <= seen
    r = kc.pipeline([("MULTI",), ("SCAN", "abc"), ("EXEC",)])
    assert r[-1] == [Err("ERR invalid cursor")]
