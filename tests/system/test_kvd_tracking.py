"""CLIENT TRACKING (server-assisted client-side caching) of kvd (--threads 2), run on kvd
and on Redis 7 side by side where the behaviour is the same:

- default mode: a read remembers the key, a change by anyone sends one invalidation (then
  it is forgotten until read again); keys of both shard threads, readers and writers on
  either thread; MGET / EXISTS / TTL ... remember every key they name; NOLOOP;
- RESP3 pushes, REDIRECT to a RESP2 subscriber (message of __redis__:invalidate) or to a
  RESP3 client, byte-compared with Redis; a redirect client on the other thread; the
  tracking-redir-broken push when it is gone;
- BCAST with and without prefixes (one message per prefix), NOLOOP there;
- OPTIN / OPTOUT with CLIENT CACHING lasting one command or transaction;
- FLUSHALL / FLUSHDB null invalidations; expiry (lazy and active) and eviction;
- invalidations after the reply of the command that caused them (SET, MGET, EXEC);
- CLIENT TRACKINGINFO / GETREDIR / INFO / LIST fields, every error text against Redis;
- tracking-table-max-keys: keys over the limit are forgotten with an invalidation each.
"""
import threading
import time

import pytest

from conftest import Client, Err, Map, Push, RSet, St, encode, info_field, wait_until


@pytest.fixture
def port(either):
    """Each test on kvd and on Redis, the tracking table limit at its default."""
    with Client(either) as c:
        assert c.cmd("CONFIG", "SET", "tracking-table-max-keys", "1000000") == St("OK")
    return either


def resp3(port):
    c = Client(port)
    assert isinstance(c.cmd("HELLO", "3"), Map)
    return c


def push(c, timeout=5.0):
    """The next message, which must be a push (RESP3) or a RESP2 pub/sub array."""
    c.settimeout(timeout)
    m = c.read()
    c.settimeout(20)
    assert isinstance(m, (Push, list)), m
    return tuple(m.items) if isinstance(m, Push) else tuple(m)


def quiet(c, wait=0.3):
    """Nothing arrives within `wait` seconds."""
    m = c.next_within(wait)
    assert m is None, "unexpected message %r" % (m,)


def inval_keys(c, timeout=5.0):
    m = push(c, timeout)
    assert m[0] == b"invalidate", m
    return m[1]


def forwarded(c):
    r = c.cmd("INFO", "stats")
    text = (r.data if hasattr(r, "data") else r).decode()
    return int(text.split("commands_forwarded:")[1].split("\r\n")[0])


def thread_of(c, key):
    """0 if connection c runs on the thread owning `key`, else 1 (a GET from elsewhere is
    forwarded: INFO commands_forwarded moves)."""
    before = forwarded(c)
    c.cmd("GET", key)
    return forwarded(c) - before


def both_threads(port, key, per_thread=3):
    """RESP3 connections, per_thread on each of kvd's two threads, alternating (the kernel
    spreads connections over the threads' listeners by hash: open until both have
    enough)."""
    sides = ([], [])
    for _ in range(200):
        if min(len(sides[0]), len(sides[1])) >= per_thread:
            break
        c = resp3(port)
        side = sides[thread_of(c, key)]
        if len(side) < per_thread:
            side.append(c)
        else:
            c.close()
    assert min(len(sides[0]), len(sides[1])) >= per_thread, "connections on one thread only"
    return [c for pair in zip(*sides) for c in pair]


# ---- default mode --------------------------------------------------------------------

def test_basic_invalidation_once_per_read(port):
    t, w = resp3(port), Client(port)
    assert t.cmd("CLIENT", "TRACKING", "on") == St("OK")
    w.cmd("SET", "k1", "1")
    assert t.cmd("GET", "k1") == b"1"
    w.cmd("SET", "k1", "2")
    assert inval_keys(t) == [b"k1"]
    w.cmd("SET", "k1", "3")  # not read again: forgotten
    quiet(t)
    assert t.cmd("GET", "k1") == b"3"
    w.cmd("DEL", "k1")
    assert inval_keys(t) == [b"k1"]
    # a key that was missing when read is tracked too
    assert t.cmd("GET", "nokey") is None
    w.cmd("SET", "nokey", "x")
    assert inval_keys(t) == [b"nokey"]
    t.close()
    w.close()


def test_keys_of_both_threads_and_every_read_command(port, groups):
    a, b = groups
    keys = a[:4] + b[:4]
    t, w = resp3(port), Client(port)
    assert t.cmd("CLIENT", "TRACKING", "on") == St("OK")
    w.cmd("MSET", *[x for k in keys for x in (k, "v")])
    t.cmd("MGET", *keys[:3])
    t.cmd("EXISTS", keys[3], keys[4])
    t.cmd("TTL", keys[5])
    t.cmd("STRLEN", keys[6])
    t.cmd("GETRANGE", keys[7], "0", "1")
    w.cmd("MSET", *[x for k in keys for x in (k, "w")])
    got = [inval_keys(t) for _ in keys]
    assert sorted(k for g in got for k in g) == sorted(k.encode() for k in keys)
    quiet(t)
    # writes do not remember: SET by the tracking client itself tracks nothing new
    t.cmd("SET", keys[0], "x")
    w.cmd("SET", keys[0], "y")
    quiet(t)
    t.close()
    w.close()


def test_noloop(port, groups):
    a, b = groups
    t, w = resp3(port), Client(port)
    assert t.cmd("CLIENT", "TRACKING", "on", "NOLOOP") == St("OK")
    t.cmd("MGET", a[0], b[0], a[1])
    assert t.cmd("SET", b[0], "mine") == St("OK")  # its own change: no message
    w.cmd("SET", a[0], "1")
    assert inval_keys(t) == [a[0].encode()]
    w.cmd("SET", a[1], "1")
    assert inval_keys(t) == [a[1].encode()]
    quiet(t)
    # without NOLOOP a client is told of its own change, after the reply
    assert t.cmd("CLIENT", "TRACKING", "on") == St("OK")
    t.cmd("GET", b[1])
    assert t.cmd("SET", b[1], "x") == St("OK")
    assert inval_keys(t) == [b[1].encode()]
    t.close()
    w.close()


def test_invalidation_follows_the_reply(port, groups):
    """The push comes after the reply of the command that caused it, never inside it:
    an INCR, an MGET lazily expiring a key it reads, a transaction."""
    a, b = groups
    t = resp3(port)
    assert t.cmd("CLIENT", "TRACKING", "on") == St("OK")
    t.cmd("SET", a[0], "1")
    t.cmd("GET", a[0])
    assert t.cmd("INCR", a[0]) == 2
    assert inval_keys(t) == [a[0].encode()]
    t.cmd("GET", a[2])
    r = t.pipeline([("MULTI",), ("SET", a[2], "1"), ("GET", b[1]), ("EXEC",)])
    assert r[-1] == [St("OK"), None], r
    assert inval_keys(t) == [a[2].encode()]
    quiet(t)
    t.close()


def test_lazy_expiry_in_mget_follows_its_reply(kvd, groups):
    a, b = groups
    t = resp3(kvd.port)
    assert t.cmd("CLIENT", "TRACKING", "on") == St("OK")
    t.cmd("SET", a[1], "1")
    assert t.cmd("DEBUG", "SET-ACTIVE-EXPIRE", "0") == St("OK")
    try:
        for i in range(2):
            t.cmd("SET", b[i], "1", "PX", "50")
            t.cmd("GET", b[i])
        time.sleep(0.12)
        assert t.cmd("MGET", a[1], b[0]) == [b"1", None]  # b[0] on the other thread
        assert inval_keys(t) == [b[0].encode()]
        assert t.cmd("MGET", b[1], a[1]) == [None, b"1"]
        assert inval_keys(t) == [b[1].encode()]
    finally:
        assert t.cmd("DEBUG", "SET-ACTIVE-EXPIRE", "1") == St("OK")
    quiet(t)
    t.close()


def test_reader_and_writer_on_every_thread_pairing(kvd, groups):
    """Tracking clients and writers on both threads, keys of both: every reader of a key
    hears of every change once."""
    a, b = groups
    conns = both_threads(kvd.port, a[0])
    for c in conns:
        assert c.cmd("CLIENT", "TRACKING", "on") == St("OK")
        c.cmd("MGET", a[3], b[3])
    for i, writer in enumerate(conns[:2]):
        key = (a, b)[i][3]
        writer.cmd("SET", key, "w%d" % i)
        for j, c in enumerate(conns):
            assert inval_keys(c) == [key.encode()], (i, j)
    for c in conns:
        quiet(c, 0.1)
        c.close()


# ---- REDIRECT ------------------------------------------------------------------------

def test_redirect_to_resp2_subscriber_bytes(pair):
    """The RESP2 pub/sub message and the null of FLUSHALL, byte for byte."""
    out = {}
    for name, port in (("kvd", pair.kvd.port), ("redis", pair.redis.port)):
        sub, t, w = Client(port), Client(port), Client(port)
        rid = sub.cmd("CLIENT", "ID")
        sub.cmd("SUBSCRIBE", "__redis__:invalidate")
        assert t.cmd("CLIENT", "TRACKING", "on", "REDIRECT", str(rid)) == St("OK")
        assert t.cmd("CLIENT", "GETREDIR") == rid
        w.cmd("SET", "a", "1")
        t.cmd("GET", "a")
        w.cmd("INCR", "a")
        sub.settimeout(5)
        m1 = sub.read_raw()
        t.cmd("GET", "a")
        w.cmd("FLUSHALL")
        m2 = sub.read_raw()
        out[name] = (m1, m2)
        for c in (sub, t, w):
            c.close()
    assert out["kvd"] == out["redis"]
    assert out["kvd"][1].endswith(b"$-1\r\n")


def test_redirect_to_resp3_client_on_either_thread(kvd, groups):
    a, b = groups
    targets = both_threads(kvd.port, a[0])
    w = Client(kvd.port)
    for tgt in targets:
        rid = tgt.cmd("CLIENT", "ID")
        t = Client(kvd.port)  # RESP2: it could not be told itself
        assert t.cmd("CLIENT", "TRACKING", "on", "REDIRECT", str(rid)) == St("OK")
        w.cmd("MSET", a[5], "1", b[5], "1")
        t.cmd("MGET", a[5], b[5])
        assert w.cmd("DEL", a[5], b[5]) == 2
        got = sorted(inval_keys(tgt)[0] for _ in range(2))
        assert got == sorted([a[5].encode(), b[5].encode()])
        t.cmd("GET", a[5])
        w.cmd("FLUSHDB")
        assert inval_keys(tgt) is None
        quiet(t, 0.1)
        t.close()
    for c in targets:
        c.close()
    w.close()


def test_redirect_broken(port):
    t, w = resp3(port), Client(port)
    tgt = Client(port)
    rid = tgt.cmd("CLIENT", "ID")
    assert t.cmd("CLIENT", "TRACKING", "on", "REDIRECT", str(rid)) == St("OK")
    w.cmd("SET", "key1", "1")
    t.cmd("GET", "key1")
    assert tgt.cmd("QUIT") == St("OK")
    tgt.close()
    time.sleep(0.1)
    w.cmd("SET", "key1", "2")
    assert push(t) == (b"tracking-redir-broken", rid)
    info = t.cmd("CLIENT", "TRACKINGINFO").dict()
    assert info[b"flags"] == RSet((b"on", b"broken_redirect"))
    assert info[b"redirect"] == rid
    line = t.cmd("CLIENT", "INFO").data.decode()
    assert " flags=tR " in line and (" redir=%d " % rid) in line
    t.close()
    w.close()


def test_redirect_broken_right_after_quit(port):
    """The redirect client's QUIT answered, the next write's invalidation finds it gone:
    tracking-redir-broken at once, as Redis (which frees a client once its QUIT reply is
    written), also while kvd's close still waits for that send (once in a while the push
    went to the closing client and was lost). Every round without a pause."""
    w = Client(port)
    for i in range(60):
        t = resp3(port)
        tgt = Client(port)
        rid = tgt.cmd("CLIENT", "ID")
        assert t.cmd("CLIENT", "TRACKING", "on", "REDIRECT", str(rid)) == St("OK")
        key = "rq%d" % i
        w.cmd("SET", key, "1")
        t.cmd("GET", key)
        assert tgt.cmd("QUIT") == St("OK")
        w.cmd("SET", key, "2")
        assert push(t) == (b"tracking-redir-broken", rid), i
        t.close()
        tgt.close()
    w.close()


def test_redirect_order_of_changes_whichever_threads(kvd, groups):
    """Two tracking clients redirecting to one connection, every placement of the three
    on kvd's two threads: a pipelined INCR k1, INCR k2 (k1 read by the first client, k2
    by the second, both keys on one thread) reaches the target as k1 then k2, as Redis
    sends them (Redis's unit/tracking "Different clients can redirect to the same
    connection")."""
    a, _ = groups
    k1, k2 = a[7], a[8]
    conns = both_threads(kvd.port, a[0])  # even index: the keys' thread, odd: the other
    side = {0: conns[0::2], 1: conns[1::2]}
    w = Client(kvd.port)
    w.cmd("MSET", k1, "0", k2, "0")
    for t_side in (0, 1):
        for a_side in (0, 1):
            for b_side in (0, 1):
                pool = {0: list(side[0]), 1: list(side[1])}
                tgt = pool[t_side].pop()
                ca, cb = pool[a_side].pop(), pool[b_side].pop()
                rid = tgt.cmd("CLIENT", "ID")
                for c in (ca, cb):
                    assert c.cmd("CLIENT", "TRACKING", "on", "REDIRECT", str(rid)) == St("OK")
                for _ in range(5):
                    ca.cmd("GET", k1)
                    cb.cmd("GET", k2)
                    w.pipeline([("INCR", k1), ("INCR", k2)])
                    got = [inval_keys(tgt), inval_keys(tgt)]
                    assert got == [[k1.encode()], [k2.encode()]], (t_side, a_side, b_side)
                for c in (ca, cb):
                    assert c.cmd("CLIENT", "TRACKING", "off") == St("OK")
                quiet(tgt, 0.05)
    for c in conns + [w]:
        c.close()


def test_redirect_follows_tracking_changes(kvd, groups):
    """The key's thread sends a REDIRECT client's invalidations on the route its CLIENT
    TRACKING set: a new REDIRECT target gets them (the keys read before the change too),
    NOLOOP applies to the tracking client's own changes, OFF stops them, a client's
    closing drops its route; tracking client, targets and keys on every thread pairing."""
    a, b = groups
    conns = both_threads(kvd.port, a[0], per_thread=2)
    w = Client(kvd.port)
    for t in conns:
        t1, t2 = [c for c in conns if c is not t][:2]
        id1, id2 = t1.cmd("CLIENT", "ID"), t2.cmd("CLIENT", "ID")
        assert t.cmd("CLIENT", "TRACKING", "on", "REDIRECT", str(id1), "NOLOOP") == St("OK")
        t.cmd("MGET", a[9], b[9])
        w.cmd("SET", a[9], "x")
        assert inval_keys(t1) == [a[9].encode()]
        t.cmd("SET", b[9], "own")  # NOLOOP: its own change is not sent
        w.cmd("SET", a[9], "y")  # forgotten since the invalidation: nothing either
        quiet(t1, 0.1)
        t.cmd("MGET", a[9], b[9])
        assert t.cmd("CLIENT", "TRACKING", "on", "REDIRECT", str(id2)) == St("OK")
        assert w.cmd("DEL", a[9], b[9]) == 2
        got = sorted(inval_keys(t2)[0] for _ in range(2))
        assert got == sorted([a[9].encode(), b[9].encode()])
        t.cmd("SET", a[9], "own2")  # NOLOOP is off now: its own change is sent
        quiet(t2, 0.1)  # (not read since: nothing)
        t.cmd("GET", a[9])
        t.cmd("SET", a[9], "own3")
        assert inval_keys(t2) == [a[9].encode()]
        t.cmd("GET", b[9])
        assert t.cmd("CLIENT", "TRACKING", "off") == St("OK")
        w.cmd("SET", b[9], "z")
        quiet(t1, 0.1)
        quiet(t2, 0.1)
    # a closed tracking client's route goes with it: its keys reach nobody
    t = Client(kvd.port)
    tid = conns[0].cmd("CLIENT", "ID")
    assert t.cmd("CLIENT", "TRACKING", "on", "REDIRECT", str(tid)) == St("OK")
    t.cmd("MGET", a[10], b[10])
    t.close()
    wait_until(lambda: w.cmd("CLIENT", "LIST").count(b"flags=t") == 0, 5)
    w.cmd("MSET", a[10], "1", b[10], "1")
    quiet(conns[0], 0.1)
    for c in conns + [w]:
        c.close()


def test_bcast_redirect_noloop(kvd, groups):
    """BCAST with REDIRECT: the key's thread matches the prefixes and sends to the
    target directly, NOLOOP dropping the tracking client's own changes."""
    a, b = groups
    conns = both_threads(kvd.port, a[0], per_thread=1)
    w = Client(kvd.port)
    for t, tgt in ((conns[0], conns[1]), (conns[1], conns[0])):
        rid = tgt.cmd("CLIENT", "ID")
        assert t.cmd("CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "k", "REDIRECT", str(rid),
                     "NOLOOP") == St("OK")
        w.cmd("MSET", a[11], "1", b[11], "1")
        got = sorted(k for _ in range(2) for k in inval_keys(tgt))
        assert got == sorted([a[11].encode(), b[11].encode()])
        t.cmd("MSET", a[11], "2", b[11], "2")  # its own: nothing
        quiet(tgt, 0.2)
        w.cmd("SET", "other", "1")  # not under the prefix
        quiet(tgt, 0.1)
        assert t.cmd("CLIENT", "TRACKING", "off") == St("OK")
        w.cmd("SET", a[11], "3")
        quiet(tgt, 0.1)
    for c in conns + [w]:
        c.close()


# ---- BCAST ---------------------------------------------------------------------------

def test_bcast_all_keys_and_prefixes(port):
    t, w = resp3(port), Client(port)
    assert t.cmd("CLIENT", "TRACKING", "on", "BCAST") == St("OK")
    w.cmd("MSET", "a{t}", "1", "b{t}", "2", "c{t}", "3")
    assert sorted(inval_keys(t)) == [b"a{t}", b"b{t}", b"c{t}"]
    assert t.cmd("CLIENT", "TRACKING", "off") == St("OK")
    assert t.cmd("CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "a:", "PREFIX", "b:") == St("OK")
    r = w.pipeline([("MULTI",), ("INCR", "a:1{t}"), ("INCR", "a:2{t}"), ("INCR", "b:1{t}"),
                    ("INCR", "b:2{t}"), ("INCR", "c:1{t}"), ("EXEC",)])
    assert r[-1] == [1, 1, 1, 1, 1]
    k1, k2 = sorted(inval_keys(t)), sorted(inval_keys(t))  # one message per prefix
    assert sorted([k1, k2]) == [[b"a:1{t}", b"a:2{t}"], [b"b:1{t}", b"b:2{t}"]]
    quiet(t)
    # more prefixes join the ones it has
    assert t.cmd("CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "c:") == St("OK")
    w.cmd("INCR", "c:1234")
    assert inval_keys(t) == [b"c:1234"]
    info = t.cmd("CLIENT", "TRACKINGINFO").dict()
    assert info[b"prefixes"] == [b"a:", b"b:", b"c:"]
    assert int(info_field(w, "stats", "tracking_total_prefixes")) == 3
    t.close()
    time.sleep(0.1)
    assert int(info_field(w, "stats", "tracking_total_prefixes")) == 0
    w.close()


def test_bcast_noloop_and_expiry(port):
    t, w = resp3(port), Client(port)
    assert t.cmd("CLIENT", "TRACKING", "on", "BCAST", "NOLOOP") == St("OK")
    w.cmd("SET", "otherkey1", "1")
    assert inval_keys(t) == [b"otherkey1"]
    t.cmd("SET", "loopkey", "1")
    quiet(t)
    w.cmd("SET", "otherkey2", "1")
    assert inval_keys(t) == [b"otherkey2"]
    # its own key, expired by the server: told (the expiry is nobody's change); the
    # invalidation may come before the second SET's reply (the expiry cycle runs any time)
    t.send(encode("SET", "mykey", "v", "PX", "1") + encode("SET", "mykeyother", "v"))
    got, deadline = [], time.time() + 10
    while time.time() < deadline and (got.count(St("OK")) < 2 or
                                      not any(isinstance(m, Push) for m in got)):
        m = t.next_within(0.5)
        if m is not None:
            got.append(m)
    assert got.count(St("OK")) == 2, got
    pushes = [tuple(m.items) for m in got if isinstance(m, Push)]
    assert pushes == [(b"invalidate", [b"mykey"])], got
    t.close()
    w.close()


# ---- OPTIN / OPTOUT --------------------------------------------------------------------

def test_optin_optout(port):
    t, w = resp3(port), Client(port)
    assert t.cmd("CLIENT", "TRACKING", "on", "OPTIN") == St("OK")
    w.cmd("SET", "key1", "1")
    t.cmd("GET", "key1")  # no CACHING yes: not remembered
    w.cmd("SET", "key1", "2")
    quiet(t)
    assert t.cmd("CLIENT", "CACHING", "yes") == St("OK")
    assert t.cmd("CLIENT", "TRACKINGINFO").dict()[b"flags"] == RSet((b"on", b"optin",
                                                                      b"caching-yes"))
    t.cmd("GET", "key1")
    t.cmd("GET", "key2")  # CACHING applied to the previous command only
    w.cmd("MSET", "key1", "3", "key2", "3")
    assert inval_keys(t) == [b"key1"]
    quiet(t)
    # CACHING yes before MULTI covers the whole transaction
    t.cmd("CLIENT", "CACHING", "yes")
    assert t.pipeline([("MULTI",), ("GET", "key1"), ("GET", "key2"), ("EXEC",)])[-1] == [b"3",
                                                                                        b"3"]
    w.cmd("MSET", "key1", "4", "key2", "4")
    assert sorted(inval_keys(t)[0] for _ in range(2)) == [b"key1", b"key2"]
    assert t.cmd("CLIENT", "TRACKING", "off") == St("OK")
    assert t.cmd("CLIENT", "TRACKING", "on", "OPTOUT") == St("OK")
    t.cmd("GET", "key1")
    w.cmd("SET", "key1", "5")
    assert inval_keys(t) == [b"key1"]
    assert t.cmd("CLIENT", "CACHING", "no") == St("OK")
    t.cmd("GET", "key1")
    w.cmd("SET", "key1", "6")
    quiet(t)
    t.close()
    w.close()


# ---- flush, expiry, eviction, scripts ----------------------------------------------------

def test_flush_sends_null_and_empties_the_table(port, groups):
    a, b = groups
    t, w = resp3(port), Client(port)
    assert t.cmd("CLIENT", "TRACKING", "on") == St("OK")
    t.cmd("MGET", a[0], b[0])
    assert int(info_field(w, "stats", "tracking_total_keys")) == 2
    assert int(info_field(w, "stats", "tracking_total_items")) == 2
    w.cmd("FLUSHALL", "ASYNC")
    assert inval_keys(t) is None
    quiet(t)
    assert int(info_field(w, "stats", "tracking_total_keys")) == 0
    w.cmd("SET", a[0], "1")  # forgotten with the flush
    quiet(t)
    # FLUSHDB in the client's own transaction: the null follows EXEC's reply
    t.cmd("GET", a[0])
    assert t.pipeline([("MULTI",), ("FLUSHDB",), ("EXEC",)])[-1] == [St("OK")]
    assert inval_keys(t) is None
    t.close()
    w.close()


def test_expiry_lazy_and_active(port, groups):
    a, b = groups
    t, w = resp3(port), Client(port)
    assert t.cmd("CLIENT", "TRACKING", "on") == St("OK")
    w.cmd("SET", a[0], "v", "PX", "100")
    w.cmd("SET", b[0], "v", "PX", "100")
    t.cmd("MGET", a[0], b[0])
    got = sorted(inval_keys(t, timeout=10)[0] for _ in range(2))  # the active cycle
    assert got == sorted([a[0].encode(), b[0].encode()])
    t.close()
    w.close()


def test_eviction_invalidates(kvd_factory):
    k = kvd_factory(args=["--maxmemory", "8mb", "--maxmemory-policy", "allkeys-random"])
    t, w = resp3(k.port), Client(k.port)
    assert t.cmd("CLIENT", "TRACKING", "on", "NOLOOP") == St("OK")
    w.pipeline([("SET", "tracked%d" % i, "x" * 100) for i in range(200)])
    t.cmd("MGET", *["tracked%d" % i for i in range(200)])
    val = "y" * 1000
    for base in range(0, 20000, 1000):
        w.pipeline([("SET", "fill%d" % i, val) for i in range(base, base + 1000)])
    assert int(info_field(w, "stats", "evicted_keys")) > 0
    # the shards go on shedding at their timer until under the limit: wait until they
    # stop before taking the keys that are left
    last, stable_since = None, time.time()
    while time.time() - stable_since < 1.0:
        n = int(info_field(w, "stats", "evicted_keys"))
        if n != last:
            last, stable_since = n, time.time()
        time.sleep(0.1)
    left = set(k_ for k_ in w.cmd("KEYS", "tracked*"))
    told = set()
    t.settimeout(1.0)
    while True:
        try:
            m = t.read()
        except OSError:
            break
        assert isinstance(m, Push) and m.items[0] == b"invalidate", m
        told.update(m.items[1])
    assert told, "no invalidation for evicted keys"
    assert told.isdisjoint(left), "a key still present was invalidated (nobody changed it)"
    assert told | left == {b"tracked%d" % i for i in range(200)}
    t.close()
    w.close()


def test_script_reads_are_tracked_and_noloop_writes_are_not(port):
    t, w = resp3(port), Client(port)
    assert t.cmd("CLIENT", "TRACKING", "on") == St("OK")
    w.cmd("SET", "skey", "1")
    assert t.cmd("EVAL", "return redis.call('get', KEYS[1])", "1", "skey") == b"1"
    w.cmd("SET", "skey", "2")
    assert inval_keys(t) == [b"skey"]
    # a script that reads counts as a read of its declared keys; one that only writes not
    w.cmd("MSET", "d1{t}", "1", "d2{t}", "1")
    t.cmd("EVAL", "redis.call('set', 'd3{t}', 'bar')", "2", "d1{t}", "d2{t}")
    w.cmd("MSET", "d2{t}", "2", "d1{t}", "2")
    quiet(t)
    t.cmd("EVAL", "redis.call('get', 'd3{t}')", "2", "d1{t}", "d2{t}")
    w.cmd("MSET", "d2{t}", "3", "d1{t}", "3")
    assert inval_keys(t) == [b"d2{t}"]
    assert inval_keys(t) == [b"d1{t}"]
    quiet(t)
    assert t.cmd("CLIENT", "TRACKING", "on", "NOLOOP") == St("OK")
    t.cmd("GET", "skey")
    t.cmd("EVAL", "return redis.call('set', KEYS[1], '3')", "1", "skey")
    quiet(t)
    t.close()
    w.close()


# ---- the limit --------------------------------------------------------------------------

def test_table_limit_forgets_keys_with_an_invalidation(port):
    t = resp3(port)
    w = Client(port)
    assert t.cmd("CLIENT", "TRACKING", "on") == St("OK")
    n = 250
    w.pipeline([("SET", "key%d" % i, str(i)) for i in range(n)])
    t.pipeline([("GET", "key%d" % i) for i in range(n)])
    assert int(info_field(w, "stats", "tracking_total_keys")) == n
    assert w.cmd("CONFIG", "SET", "tracking-table-max-keys", "1") == St("OK")
    told = [inval_keys(t, timeout=10) for _ in range(n - 1)]
    assert all(len(x) == 1 for x in told)
    assert len({x[0] for x in told}) == n - 1
    quiet(t, 0.5)
    assert int(info_field(w, "stats", "tracking_total_keys")) == 1
    assert w.cmd("CONFIG", "SET", "tracking-table-max-keys", "1000000") == St("OK")
    t.close()
    w.close()


def test_table_limit_is_the_nodes_total_and_applies_before_the_next_command(kvd):
    """Two keys of one thread under a limit of 2 stay (the limit is on the node's total,
    not a per-thread part); lowered to 1 while the timer work is stopped (DEBUG
    PAUSE-CRON), one of them goes before CONFIG SET replies, its invalidation ahead of
    any later reply to the reader, also inside MULTI (Redis's regression test for #11715,
    where the limit applies before the next command); readers on both threads."""
    w = Client(kvd.port)
    readers = both_threads(kvd.port, "1{tag}", per_thread=1)
    try:
        assert w.cmd("DEBUG", "PAUSE-CRON", "1") == St("OK")
        for _ in range(10):
            for t in readers:
                assert w.cmd("FLUSHALL") == St("OK")  # (t is not tracking: no null)
                assert w.cmd("CONFIG", "SET", "tracking-table-max-keys", "2") == St("OK")
                assert t.cmd("CLIENT", "TRACKING", "on") == St("OK")
                assert t.cmd("MGET", "1{tag}", "2{tag}") == [None, None]
                assert t.cmd("MULTI") == St("OK")  # no invalidation ahead of its reply
                assert int(info_field(w, "stats", "tracking_total_keys")) == 2
                assert w.cmd("CONFIG", "SET", "tracking-table-max-keys", "1") == St("OK")
                assert int(info_field(w, "stats", "tracking_total_keys")) == 1
                t.send(encode("PING") + encode("EXEC"))
                first = t.read()
                assert isinstance(first, Push) and first.items[0] == b"invalidate", first
                assert first.items[1][0] in (b"1{tag}", b"2{tag}")
                assert t.read() == St("QUEUED")
                assert t.read() == [St("PONG")]
                assert t.cmd("CLIENT", "TRACKING", "off") == St("OK")
    finally:
        assert w.cmd("DEBUG", "PAUSE-CRON", "0") == St("OK")
        assert w.cmd("CONFIG", "SET", "tracking-table-max-keys", "1000000") == St("OK")
        for c in readers + [w]:
            c.close()


def test_config_set_of_the_limit_in_a_transaction(kvd, groups):
    """Inside MULTI the CONFIG SET's +OK is part of EXEC's reply (it does not wait), in a
    transaction on the connection's thread and in one reaching the other thread."""
    a, _ = groups
    for w in both_threads(kvd.port, a[0], per_thread=1):
        for n in ("5", "1000000"):
            assert w.cmd("MULTI") == St("OK")
            assert w.cmd("CONFIG", "SET", "tracking-table-max-keys", n) == St("QUEUED")
            assert w.cmd("GET", a[0]) == St("QUEUED")
            assert w.cmd("EXEC") == [St("OK"), None]
            got = w.cmd("CONFIG", "GET", "tracking-table-max-keys").dict()  # (RESP3)
            assert got == {b"tracking-table-max-keys": n.encode()}
        w.close()


# ---- state, info and errors, against Redis ------------------------------------------------

def test_state_replies_match_redis(pair):
    for proto in ("2", "3"):
        for c in (pair.k, pair.r):
            c.cmd("HELLO", proto)
        s = pair.same
        s("CLIENT", "TRACKINGINFO")
        s("CLIENT", "GETREDIR")
        s("CLIENT", "TRACKING", "on")
        s("CLIENT", "TRACKINGINFO")
        s("CLIENT", "GETREDIR")
        s("CLIENT", "TRACKING", "on", "NOLOOP", "OPTIN")
        s("CLIENT", "CACHING", "yes")
        s("CLIENT", "TRACKINGINFO")
        s("CLIENT", "TRACKING", "off")
        s("CLIENT", "TRACKING", "on", "OPTOUT")
        s("CLIENT", "CACHING", "no")
        s("CLIENT", "TRACKINGINFO")
        s("CLIENT", "TRACKING", "off")
        s("CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "foo", "PREFIX", "bar")
        s("CLIENT", "TRACKINGINFO")
        s("CLIENT", "TRACKING", "off")
        s("CLIENT", "TRACKING", "on", "BCAST")
        s("CLIENT", "TRACKINGINFO")
        s("CLIENT", "TRACKING", "off")
        s("CLIENT", "TRACKINGINFO")
    for c in (pair.k, pair.r):
        c.cmd("HELLO", "2")


def test_errors_match_redis(pair):
    s = pair.same
    s("CLIENT", "TRACKING")
    s("CLIENT", "TRACKING", "maybe")
    s("CLIENT", "TRACKING", "on", "bogus")
    s("CLIENT", "TRACKING", "on", "REDIRECT")
    s("CLIENT", "TRACKING", "on", "REDIRECT", "abc")
    s("CLIENT", "TRACKING", "on", "REDIRECT", "0")
    s("CLIENT", "TRACKING", "on", "REDIRECT", "99999999")
    s("CLIENT", "TRACKING", "off", "REDIRECT", "abc")
    s("CLIENT", "TRACKING", "on", "PREFIX", "a")
    s("CLIENT", "TRACKING", "on", "BCAST", "OPTIN")
    s("CLIENT", "TRACKING", "on", "OPTIN", "OPTOUT")
    s("CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "FOOBAR", "PREFIX", "FOO")
    s("CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "FOO", "PREFIX", "FOOBAR")
    s("CLIENT", "CACHING", "yes")
    s("CLIENT", "CACHING", "yes", "extra")
    s("CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "FOO", "PREFIX", "BAR")
    s("CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "FO")
    s("CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "BARB")
    s("CLIENT", "TRACKING", "on")
    s("CLIENT", "CACHING", "yes")
    s("CLIENT", "TRACKING", "off")
    s("CLIENT", "TRACKING", "on", "OPTIN")
    s("CLIENT", "TRACKING", "on", "OPTOUT")
    s("CLIENT", "CACHING", "no")
    s("CLIENT", "CACHING", "maybe")
    s("CLIENT", "TRACKING", "on", "BCAST")
    s("CLIENT", "TRACKING", "off")
    for c in (pair.k, pair.r):  # REDIRECT twice, to clients that exist on each server
        me = c.cmd("CLIENT", "ID")
        r = c.cmd("CLIENT", "TRACKING", "on", "REDIRECT", str(me), "REDIRECT", str(me))
        assert r == Err("ERR A client can only redirect to a single other client"), r
        assert c.cmd("CLIENT", "TRACKING", "off") == St("OK")


def test_info_list_and_reset(port):
    t, w = resp3(port), Client(port)
    b = Client(port)
    assert int(info_field(w, "clients", "tracking_clients")) == 0
    rid = w.cmd("CLIENT", "ID")
    assert t.cmd("CLIENT", "TRACKING", "on", "REDIRECT", str(rid)) == St("OK")
    w.cmd("MSET", "key1", "1", "key2", "2")
    t.cmd("GET", "key1")
    t.cmd("GET", "key2")
    assert b.cmd("CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "prefix:") == St("OK")
    w.cmd("SET", "prefix:key1", "1")
    assert int(info_field(w, "stats", "tracking_total_items")) == 2
    assert int(info_field(w, "stats", "tracking_total_keys")) == 2
    assert int(info_field(w, "stats", "tracking_total_prefixes")) == 1
    assert int(info_field(w, "clients", "tracking_clients")) == 2
    listing = w.cmd("CLIENT", "LIST").decode()
    line = [x for x in listing.splitlines() if " redir=%d " % rid in x]
    assert len(line) == 1 and " flags=t " in line[0], listing
    bline = b.cmd("CLIENT", "INFO").decode()
    assert " flags=tB " in bline and " redir=0 " in bline, bline
    assert t.cmd("RESET") == St("RESET")
    assert t.cmd("CLIENT", "GETREDIR") == -1
    b.close()
    wait_until(lambda: int(info_field(w, "clients", "tracking_clients")) == 0, 5,
               what="tracking clients to go")
    assert int(info_field(w, "stats", "tracking_total_prefixes")) == 0
    t.close()
    w.close()


def test_resp2_client_without_redirect_gets_nothing(port):
    t, w = Client(port), Client(port)
    assert t.cmd("CLIENT", "TRACKING", "on") == St("OK")
    t.cmd("GET", "k")
    w.cmd("SET", "k", "1")
    quiet(t)
    assert t.cmd("PING") == St("PONG")  # the stream is clean
    t.close()
    w.close()


def test_tracking_clients_closing_and_churn(kvd, groups):
    """Tracking clients that come and go while keys change (ids reused nowhere, records
    for gone clients dropped): the server stays up and a survivor is still told."""
    a, b = groups
    w = Client(kvd.port)
    keeper = resp3(kvd.port)
    assert keeper.cmd("CLIENT", "TRACKING", "on") == St("OK")
    keeper.cmd("MGET", a[7], b[7])
    for i in range(30):
        c = resp3(kvd.port)
        c.cmd("CLIENT", "TRACKING", "on", *(["BCAST"] if i % 3 == 0 else []))
        c.cmd("MGET", a[i % 10], b[i % 10])
        c.send(encode("SET", a[i % 10], "x"))
        c.close()
        w.cmd("SET", b[i % 10], "y")
    w.cmd("MSET", a[7], "1", b[7], "1")
    got = sorted(inval_keys(keeper)[0] for _ in range(2))
    assert got == sorted([a[7].encode(), b[7].encode()])
    keeper.close()
    w.close()


def test_deep_pipeline_with_invalidations_arriving(kvd, groups):
    """A RESP3 client with hundreds of reads outstanding on the other thread keeps getting
    invalidations in between (they wait behind the replies, taking no slot of their own):
    it is not disconnected, every reply is right, every invalidation arrives."""
    a, b = groups
    t, w = resp3(kvd.port), Client(kvd.port)
    mine, other = (a, b) if thread_of(t, a[0]) == 0 else (b, a)
    assert t.cmd("CLIENT", "TRACKING", "on") == St("OK")
    # one read of the other thread, then many of this one: the local replies wait
    # behind the remote one, filling the ring of replies awaited
    keys = other[:1] + mine[:9] * 30
    w.cmd("MSET", *[x for k in set(keys) for x in (k, "v")])
    t.cmd("MGET", *set(keys))
    stop = []

    def writer():
        i = 0
        with Client(kvd.port) as c:
            while not stop:
                c.cmd("SET", keys[i % 10], "v")
                i += 1

    th = threading.Thread(target=writer)
    th.start()
    try:
        for _ in range(20):
            t.send(b"".join(encode("GET", k) for k in (keys * 4)))
            got = 0
            while got < len(keys) * 4:
                m = t.read()
                if isinstance(m, Push):
                    assert m.items[0] == b"invalidate", m
                    continue
                assert m == b"v", m
                got += 1
    finally:
        stop.append(1)
        th.join()
    t.send(encode("PING"))
    while True:  # invalidations may still come first
        m = t.read()
        if not isinstance(m, Push):
            break
    assert m == St("PONG"), m
    t.close()
    w.close()


def test_bcast_noloop_lazy_expiry_in_one_transaction(kvd):
    """The client's own SET (NOLOOP: not told) and the key's expiry soon after: one
    message, for the expiry (nobody's change)."""
    t = resp3(kvd.port)
    assert t.cmd("CLIENT", "TRACKING", "on", "BCAST", "NOLOOP") == St("OK")
    r = t.pipeline([("MULTI",), ("SET", "mykey{t}", "myval", "PX", "1"),
                    ("SET", "mykeyotherkey{t}", "myval"), ("DEBUG", "SLEEP", "0.1"),
                    ("GET", "mykey{t}"), ("EXEC",)])
    # (the transaction's clock is its loop turn's: the GET may still see the key, and the
    # active cycle then expires it; either way one message, for the expiry)
    assert r[-1][:3] == [St("OK"), St("OK"), St("OK")], r
    assert inval_keys(t, timeout=10) == [b"mykey{t}"]
    quiet(t)
    t.close()


def test_bcast_key_changed_many_times_in_one_turn_sent_once(port):
    t, w = resp3(port), Client(port)
    assert t.cmd("CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "dup:") == St("OK")
    keys = ["dup:%d{t}" % i for i in range(300)]
    args = [x for k in keys for x in (k, "v")]
    r = w.pipeline([("MULTI",), ("MSET", *args), ("MSET", *args), ("DEL", *keys), ("EXEC",)])
    assert r[-1] == [St("OK"), St("OK"), 300], r[-1]
    got = []
    while len(got) < len(keys):
        got += inval_keys(t)
    assert sorted(got) == sorted(k.encode() for k in keys)  # each once
    quiet(t)
    t.close()
    w.close()
