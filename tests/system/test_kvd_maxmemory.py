"""maxmemory and the eviction policies of kvd (--threads 2 unless said):

- the settings (maxmemory with units, maxmemory-policy, maxmemory-samples) in CONFIG GET /
  SET and INFO (maxmemory, maxmemory_human, maxmemory_policy, evicted_keys);
- noeviction: over the limit, commands that may add memory get Redis's -OOM text while
  reads, DEL and EXPIRE go on; MULTI queuing and EXEC as Redis refuses them; scripts'
  first write refused, writes after a write allowed; deleting makes room again;
- allkeys-random / -lru / -lfu: a stream of writes far beyond the limit keeps used_memory
  near it, every key left holds its value; -lru keeps a set of keys read between the
  writes far better than the keys written once;
- volatile-*: keys without an expiry time are never evicted, -OOM once no volatile key
  is left; volatile-ttl evicts the keys that expire first;
- a lowered maxmemory is reached without any command (the shards' timers) and not
  overshot by the two threads evicting together;
- an evicted key is gone after kill -9 and a restart (its delete is in the WAL), and a
  WATCHed key evicted makes EXEC fail;
- OBJECT FREQ / IDLETIME under LFU and LRU policies, byte-compared with Redis (the LFU
  counter with lfu-log-factor 0, RESTORE FREQ); -lfu keeps the keys used most.
"""
import time

import pytest

from conftest import Err, St, info_field, need_redis, wait_until

OOM = Err("OOM command not allowed when used memory > 'maxmemory'.")
VAL = "v" * 100


def used(c):
    return int(info_field(c, "memory", "used_memory"))


def evicted(c):
    return int(info_field(c, "stats", "evicted_keys"))


def fill(c, prefix, n, val=VAL, batch=500, ttl=None):
    """Writes n keys prefix0..prefix{n-1} in pipelined batches; returns the replies."""
    out = []
    for start in range(0, n, batch):
        cmds = []
        for i in range(start, min(n, start + batch)):
            if ttl is None:
                cmds.append(("SET", "%s%d" % (prefix, i), val))
            else:
                cmds.append(("SET", "%s%d" % (prefix, i), val, "EX", str(ttl(i))))
        out += c.pipeline(cmds)
    return out


def limit_over(c, extra):
    """Sets maxmemory to the memory used now plus `extra` bytes; returns it."""
    m = used(c) + extra
    c.ok("CONFIG", "SET", "maxmemory", str(m))
    return m


@pytest.fixture
def mc(kvd):
    """A flushed client whose maxmemory settings are put back afterwards."""
    c = kvd.client()
    c.ok("FLUSHALL")
    c.ok("CONFIG", "RESETSTAT")
    yield c
    c.ok("CONFIG", "SET", "maxmemory", "0")
    c.ok("CONFIG", "SET", "maxmemory-policy", "noeviction")
    c.ok("CONFIG", "SET", "maxmemory-samples", "5")
    c.close()
    kvd.check_alive()


def test_settings_config_and_info(mc):
    # (maxmemory-clients and -eviction-tenacity: Redis's, accepted; kvd has no client
    # eviction and no eviction time limit)
    assert dict(zip(*[iter(mc.cmd("CONFIG", "GET", "maxmemory*"))] * 2)) == {
        b"maxmemory": b"0", b"maxmemory-policy": b"noeviction", b"maxmemory-samples": b"5",
        b"maxmemory-clients": b"0", b"maxmemory-eviction-tenacity": b"10"}
    assert info_field(mc, "memory", "maxmemory") == "0"
    assert info_field(mc, "memory", "maxmemory_human") == "0B"
    assert info_field(mc, "memory", "maxmemory_policy") == "noeviction"
    assert info_field(mc, "stats", "evicted_keys") == "0"
    mc.ok("CONFIG", "SET", "maxmemory", "100mb")
    assert mc.cmd("CONFIG", "GET", "maxmemory") == [b"maxmemory", b"104857600"]
    assert info_field(mc, "memory", "maxmemory") == "104857600"
    assert info_field(mc, "memory", "maxmemory_human") == "100.00M"
    mc.ok("CONFIG", "SET", "maxmemory", "1536kb")
    assert info_field(mc, "memory", "maxmemory_human") == "1.50M"
    mc.ok("CONFIG", "SET", "maxmemory", "1000")
    assert info_field(mc, "memory", "maxmemory_human") == "1000B"
    for p in ["allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "volatile-lfu",
              "volatile-random", "volatile-ttl", "noeviction"]:
        mc.ok("CONFIG", "SET", "maxmemory-policy", p)
        assert mc.cmd("CONFIG", "GET", "maxmemory-policy") == [b"maxmemory-policy", p.encode()]
        assert info_field(mc, "memory", "maxmemory_policy") == p
    assert isinstance(mc.cmd("CONFIG", "SET", "maxmemory-policy", "lru"), Err)
    assert isinstance(mc.cmd("CONFIG", "SET", "maxmemory", "-1"), Err)
    assert isinstance(mc.cmd("CONFIG", "SET", "maxmemory-samples", "0"), Err)
    mc.ok("CONFIG", "SET", "maxmemory-samples", "10")
    assert mc.cmd("CONFIG", "GET", "maxmemory-samples") == [b"maxmemory-samples", b"10"]


def test_settings_from_flags(kvd_factory):
    k = kvd_factory(args=["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru",
                          "--maxmemory-samples", "7"])
    c = k.client()
    assert dict(zip(*[iter(c.cmd("CONFIG", "GET", "maxmemory*"))] * 2)) == {
        b"maxmemory": b"2097152", b"maxmemory-policy": b"allkeys-lru",
        b"maxmemory-samples": b"7", b"maxmemory-clients": b"0",
        b"maxmemory-eviction-tenacity": b"10"}
    fill(c, "k", 30000)
    assert used(c) <= 2097152 * 1.05 + 65536
    assert evicted(c) > 0
    c.close()


def test_noeviction_refuses_writes_that_add_memory(mc):
    fill(mc, "k", 2000)
    limit_over(mc, -1)  # already over
    for args in [("SET", "new", "x"), ("SET", "k1", "y"), ("APPEND", "k1", "z"),
                 ("INCR", "n"), ("SETNX", "a", "b"), ("MSET", "a", "1", "b", "2"),
                 ("SETRANGE", "k2", "0", "q"), ("SETBIT", "b", "7", "1"),
                 ("GETSET", "k3", "x"), ("COPY", "k4", "k4copy"),
                 ("INCRBYFLOAT", "f", "1.5"), ("PSETEX", "p", "1000", "v")]:
        assert mc.cmd(*args) == OOM, args
    # reads, deletes and TTL changes go on
    assert mc.cmd("GET", "k1") == VAL.encode()
    assert mc.cmd("EXISTS", "k1", "k2") == 2
    assert mc.cmd("EXPIRE", "k5", "100") == 1
    assert mc.cmd("GETDEL", "k6") == VAL.encode()
    assert mc.cmd("DEL", "k7") == 1
    assert mc.cmd("DBSIZE") == 1998
    assert evicted(mc) == 0  # noeviction never evicts
    rejected = int(info_field(mc, "commandstats", "cmdstat_set").split("rejected_calls=")[1]
                   .split(",")[0])
    assert rejected >= 2
    # deleting makes room: the same SET now succeeds
    mc.cmd("DEL", *["k%d" % i for i in range(0, 2000)])
    assert mc.cmd("SET", "new", "x") == St("OK")


def test_noeviction_transactions(mc, kvd):
    fill(mc, "k", 500)
    admin = kvd.client()  # CONFIG from another client while mc is inside MULTI
    m = used(mc) - 1
    mc.ok("MULTI")
    assert mc.cmd("SET", "{t}a", "1") == St("QUEUED")
    admin.ok("CONFIG", "SET", "maxmemory", str(m))
    # over the limit: any command queued is refused, and EXEC aborts (for the OOM of its
    # queued SET, as Redis says, before the earlier error)
    assert mc.cmd("GET", "{t}a") == OOM
    assert mc.cmd("EXEC") == Err("EXECABORT Transaction discarded because of: OOM command "
                                 "not allowed when used memory > 'maxmemory'.")
    # a transaction with no command that adds memory: the earlier error aborts it
    admin.ok("CONFIG", "SET", "maxmemory", "0")
    mc.ok("MULTI")
    assert mc.cmd("GET", "{t}a") == St("QUEUED")
    admin.ok("CONFIG", "SET", "maxmemory", str(m))
    assert mc.cmd("GET", "{t}a") == OOM
    assert mc.cmd("EXEC") == Err("EXECABORT Transaction discarded because of previous errors.")
    # queued while there was room, EXEC'd over the limit: refused for its SET
    admin.ok("CONFIG", "SET", "maxmemory", "0")
    mc.ok("MULTI")
    assert mc.cmd("SET", "{t}a", "1") == St("QUEUED")
    admin.ok("CONFIG", "SET", "maxmemory", str(m))
    assert mc.cmd("EXEC") == Err("EXECABORT Transaction discarded because of: OOM command "
                                 "not allowed when used memory > 'maxmemory'.")
    assert mc.cmd("EXISTS", "{t}a") == 0
    # a transaction that only reads and deletes runs; DISCARD is never refused
    admin.ok("CONFIG", "SET", "maxmemory", "0")
    mc.ok("MULTI")
    assert mc.cmd("GET", "k1") == St("QUEUED")
    assert mc.cmd("DEL", "k2") == St("QUEUED")
    admin.ok("CONFIG", "SET", "maxmemory", str(m))
    assert mc.cmd("EXEC") == [VAL.encode(), 1]
    admin.ok("CONFIG", "SET", "maxmemory", "0")
    mc.ok("MULTI")
    admin.ok("CONFIG", "SET", "maxmemory", str(m))
    assert mc.cmd("DISCARD") == St("OK")
    admin.close()


def test_noeviction_scripts(mc):
    fill(mc, "k", 500)
    limit_over(mc, -1)
    r = mc.cmd("EVAL", "return redis.call('set', KEYS[1], 'x')", "1", "s")
    assert isinstance(r, Err) and r.s.startswith(OOM.s), r
    assert mc.cmd("EVAL", "return redis.call('get', KEYS[1])", "1", "k1") == VAL.encode()
    r = mc.cmd("EVAL", "return redis.pcall('set', KEYS[1], 'x')", "1", "s")
    assert r == OOM  # pcall hands the error table back as the reply
    # after a write (DEL) the script must go on, as in Redis
    assert mc.cmd("EVAL", "redis.call('del', KEYS[1]); return redis.call('set', KEYS[1], 'x')",
                  "1", "k1") == St("OK")
    assert mc.cmd("GET", "k1") == b"x"


@pytest.mark.parametrize("policy", ["allkeys-random", "allkeys-lru", "allkeys-lfu"])
def test_allkeys_policies_hold_the_limit(mc, policy):
    mc.ok("CONFIG", "SET", "maxmemory-policy", policy)
    m = limit_over(mc, 1 << 20)
    replies = fill(mc, "k", 40000)  # ~6 MB of entries through a 1 MB margin
    assert all(r == St("OK") for r in replies)
    u = used(mc)
    assert u <= m * 1.05 + 65536, (u, m)
    for _ in range(50):  # a late eviction (the last turn's writes seen at its end) may come
        ev = evicted(mc)
        n = mc.cmd("DBSIZE")
        if evicted(mc) == ev:
            break
        time.sleep(0.1)
    assert 0 < n < 40000 and ev > 0
    assert n + ev == 40000, (n, ev)  # every key written is either there or evicted
    keys = mc.cmd("KEYS", "k*")
    assert len(keys) == n
    vals = mc.cmd("MGET", *keys[:2000])
    assert all(v == VAL.encode() for v in vals)


def test_allkeys_lru_keeps_the_keys_in_use(mc):
    mc.ok("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    hot = ["hot%d" % i for i in range(200)]
    mc.pipeline([("SET", k, VAL) for k in hot])
    limit_over(mc, 4 << 20)  # ~28000 keys: each table's hand takes batches to go round
    cold = 0
    for _ in range(40):
        fill(mc, "cold%d_" % cold, 2000, batch=2000)
        cold += 1
        mc.pipeline([("GET", k) for k in hot])  # the hot keys are used between the writes
    hot_left = sum(v is not None for v in mc.cmd("MGET", *hot))
    cold_written = cold * 2000
    cold_left = mc.cmd("DBSIZE") - hot_left
    assert evicted(mc) > cold_written / 2
    # A random policy would leave both at the same rate (~cold_left / cold_written).
    assert hot_left / len(hot) >= 0.9, (hot_left, cold_left, cold_written)
    assert cold_left / cold_written < 0.5, (hot_left, cold_left, cold_written)


def test_allkeys_lru_a_burst_of_new_keys_spares_the_keys_in_use(mc):
    """Keys written once and never read are evicted before keys that were read, also
    with the WAL on (its record of a write is no use of the key)."""
    mc.ok("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    hot = ["hot%d" % i for i in range(200)]
    mc.pipeline([("SET", k, VAL) for k in hot])
    fill(mc, "old", 20000, batch=2000)
    mc.pipeline([("GET", k) for k in hot])
    limit_over(mc, 0)
    fill(mc, "burst", 10000, batch=2000)  # less than a round of the hands: no re-read needed
    assert evicted(mc) >= 9000
    assert sum(v is not None for v in mc.cmd("MGET", *hot)) == 200


def test_volatile_policies_hold_the_limit_with_few_volatile_keys(mc):
    for policy in ["volatile-random", "volatile-ttl", "volatile-lru"]:
        mc.ok("FLUSHALL")
        mc.ok("CONFIG", "SET", "maxmemory", "0")
        mc.ok("CONFIG", "SET", "maxmemory-policy", policy)
        fill(mc, "p", 20000, batch=2000)  # persistent
        fill(mc, "v", 30000, batch=2000, ttl=lambda i: 1000 + i)  # then 3 volatile in 5
        m = limit_over(mc, -(1 << 20))  # 1 MB under what is used
        fill(mc, "w", 5000, batch=1000)  # persistent writes while volatile keys remain
        u = used(mc)
        assert u <= m * 1.05 + 65536, (policy, u, m)
        assert mc.cmd("EXISTS", *["p%d" % i for i in range(0, 20000, 50)]) == 400, policy


def test_scripts_write_while_eviction_can_make_room(mc):
    """Under an evicting policy a script's write is refused only when nothing can be
    evicted (Redis's rule), also when the excess is the other thread's to shed."""
    mc.ok("CONFIG", "SET", "maxmemory-policy", "allkeys-random")
    fill(mc, "k", 5000)
    limit_over(mc, 0)
    script = "return redis.call('set', KEYS[1], ARGV[1])"
    replies = mc.pipeline([("EVAL", script, "1", "s%d" % i, VAL) for i in range(3000)])
    assert all(r == St("OK") for r in replies), [r for r in replies if r != St("OK")][:3]
    assert evicted(mc) > 0


def test_object_freq_counts_uses_as_redis(pair):
    """Redis's LFU counter: 5 for a new key, one more per use while lfu-log-factor is 0
    (its increments are random otherwise), OBJECT itself no use, an overwrite a use,
    RESTORE FREQ sets it; lfu-log-factor and lfu-decay-time in CONFIG."""
    need_redis()
    try:
        pair.same("CONFIG", "SET", "maxmemory-policy", "allkeys-lfu")
        pair.same("CONFIG", "SET", "lfu-log-factor", "0")
        pair.same("CONFIG", "SET", "lfu-decay-time", "0")  # (a minute may pass)
        pair.same("CONFIG", "GET", "lfu-log-factor")
        pair.same("CONFIG", "GET", "lfu-decay-time")
        pair.same("SET", "fresh", "v")
        pair.same("OBJECT", "FREQ", "fresh")
        for _ in range(3):
            pair.same("GET", "fresh")
            pair.same("OBJECT", "FREQ", "fresh")
        pair.same("OBJECT", "FREQ", "fresh")
        pair.same("SET", "fresh", "w")
        pair.same("OBJECT", "FREQ", "fresh")
        pair.same("APPEND", "fresh", "x")
        pair.same("OBJECT", "FREQ", "fresh")
        pair.same("SET", "src", "v")
        for c in (pair.k, pair.r):
            payload = c.cmd("DUMP", "src")
            assert c.cmd("RESTORE", "r100", "0", payload, "FREQ", "100") == St("OK")
            assert c.cmd("RESTORE", "r0", "0", payload, "FREQ", "0") == St("OK")
        pair.same("OBJECT", "FREQ", "r100")
        pair.same("OBJECT", "FREQ", "r0")
        # (values that are no small integers: Redis shares those objects, and their
        # counters, between keys)
        steps = [("CONFIG", "SET", "notify-keyspace-events", "KEA"), ("SET", "n", "v1"),
                 ("SET", "n", "v2"), ("CONFIG", "SET", "notify-keyspace-events", ""),
                 ("RESTORE", "r100", "0", None, "REPLACE"), ("GET", "r100"),
                 ("MOVE", "r100", "3"), ("SELECT", "3"), ("MOVE", "r100", "0"), ("SELECT", "0"),
                 ("SET", "{t}b", "x"), ("GET", "{t}b"), ("SET", "{t}c", "y"),
                 ("RENAME", "{t}b", "{t}c"), ("COPY", "{t}c", "{t}d"), ("SETRANGE", "{t}c", "0", "z"),
                 ("SET", "f", "v1", "NX"), ("SET", "f", "v2", "XX"), ("MSET", "f", "v3"),
                 ("SETEX", "f", "100", "v4"), ("EXPIRE", "f", "200"), ("TTL", "f"),
                 ("EXISTS", "f"), ("TYPE", "f"), ("STRLEN", "f"), ("GETRANGE", "f", "0", "1")]
        payload = pair.k.cmd("DUMP", "src")
        for step in steps:
            step = tuple(payload if a is None else a for a in step)
            pair.same(*step)
            for key in ("n", "r100", "{t}c", "{t}d", "f"):
                pair.same("OBJECT", "FREQ", key)
        pair.same("CONFIG", "SET", "lfu-decay-time", "-1")
        pair.same("CONFIG", "SET", "lfu-log-factor", "x")
        pair.same("CONFIG", "GET", "lfu-decay-time")
    finally:
        for c in (pair.k, pair.r):
            c.cmd("SELECT", "0")
            c.cmd("CONFIG", "SET", "notify-keyspace-events", "")
            c.cmd("CONFIG", "SET", "maxmemory-policy", "noeviction")
            c.cmd("CONFIG", "SET", "lfu-log-factor", "10")
            c.cmd("CONFIG", "SET", "lfu-decay-time", "1")


def test_allkeys_lfu_keeps_the_keys_used_most(mc):
    """Keys read many times outlive keys written once under allkeys-lfu (the sampled key
    with the lowest counter goes), with no reads of them between the writes."""
    mc.ok("CONFIG", "SET", "maxmemory-policy", "allkeys-lfu")
    mc.ok("CONFIG", "SET", "lfu-decay-time", "0")  # (a minute passing would even them out)
    try:
        hot = ["hot%d" % i for i in range(200)]
        mc.pipeline([("SET", k, VAL) for k in hot])
        for _ in range(20):
            mc.pipeline([("GET", k) for k in hot])
        limit_over(mc, 2 << 20)
        fill(mc, "cold", 40000, batch=2000)
        assert evicted(mc) > 20000
        hot_left = sum(v is not None for v in mc.cmd("MGET", *hot))
        assert hot_left / len(hot) >= 0.9, hot_left
        assert mc.cmd("OBJECT", "FREQ", hot[0]) > 5
    finally:
        mc.cmd("CONFIG", "SET", "maxmemory-policy", "noeviction")
        mc.cmd("CONFIG", "SET", "lfu-decay-time", "1")


@pytest.mark.parametrize("policy", ["volatile-random", "volatile-lru", "volatile-lfu",
                                    "volatile-ttl"])
def test_volatile_policies_spare_persistent_keys(mc, policy):
    mc.ok("CONFIG", "SET", "maxmemory-policy", policy)
    fill(mc, "p", 3000)  # persistent
    fill(mc, "v", 3000, ttl=lambda i: 1000 + i)
    limit_over(mc, -1)
    assert mc.cmd("SET", "x", "y") == St("OK")  # room made by evicting a volatile key
    fill(mc, "w", 6000)  # persistent writes: the volatile keys make room until none is left
    persistent = mc.cmd("EXISTS", *["p%d" % i for i in range(3000)])
    assert persistent == 3000
    assert mc.cmd("EXISTS", *["v%d" % i for i in range(3000)]) < 3000
    assert evicted(mc) > 0
    # once no volatile key is left, writes that add memory are refused
    vol_left = [k for k in mc.cmd("KEYS", "v*")]
    if vol_left:
        mc.cmd("DEL", *vol_left)
    limit_over(mc, -1)
    assert mc.cmd("SET", "y", "z") == OOM
    assert mc.cmd("GET", "p1") == VAL.encode()
    assert mc.cmd("DEL", "p1") == 1


def test_volatile_ttl_evicts_the_nearest_expiry_first(mc):
    mc.ok("CONFIG", "SET", "maxmemory-policy", "volatile-ttl")
    mc.ok("CONFIG", "SET", "maxmemory-samples", "10")
    fill(mc, "v", 4000, ttl=lambda i: 10000 + i)  # v0 expires first, v3999 last
    limit_over(mc, 64 * 1024)
    fill(mc, "p", 3000)  # persistent writes that push volatile keys out
    left = mc.cmd("EXISTS", *["v%d" % i for i in range(4000)])
    assert left < 4000
    first = mc.cmd("EXISTS", *["v%d" % i for i in range(1000)])
    last = mc.cmd("EXISTS", *["v%d" % i for i in range(3000, 4000)])
    assert last > 3 * first, (first, last)
    assert last >= 700, (first, last)


def test_lowered_limit_is_reached_without_commands_and_not_overshot(mc):
    mc.ok("CONFIG", "SET", "maxmemory-policy", "allkeys-random")
    fill(mc, "k", 40000)
    before = used(mc)
    target = before // 2
    mc.ok("CONFIG", "SET", "maxmemory", str(target))
    # no command that could evict is sent: INFO on this client's thread does not add
    # memory, and the other thread has no client at all
    wait_until(lambda: used(mc) <= target * 1.02, 10, what="used_memory under the limit")
    after = used(mc)
    n = mc.cmd("DBSIZE")
    # the two threads shed the excess once together, not once each
    assert after >= target * 0.8, (before, target, after)
    assert 40000 * 0.3 < n < 40000 * 0.7, n


def test_evicted_keys_stay_evicted_after_kill9(kvds):
    k = kvds(args=["--maxmemory-policy", "allkeys-random"])
    c = k.client()
    fill(c, "k", 2000)
    limit_over(c, 256 * 1024)
    fill(c, "k", 20000)
    time.sleep(0.5)  # the timers' last evictions, then nothing changes
    keys = sorted(c.cmd("KEYS", "*"))
    assert 0 < len(keys) < 20000 and evicted(c) > 0
    c.close()
    k.kill9()
    k2 = k.restart(args=["--maxmemory", "0"])
    kvds.track(k2)
    c2 = k2.client()
    assert sorted(c2.cmd("KEYS", "*")) == keys
    c2.close()
    k2.stop()


def test_evicting_a_watched_key_fails_exec(mc):
    mc.ok("CONFIG", "SET", "maxmemory-policy", "volatile-ttl")
    fill(mc, "p", 2000)
    mc.ok("SET", "{w}watched", "1", "EX", "1000")  # the only key the policy may evict
    mc.ok("WATCH", "{w}watched")
    limit_over(mc, -1)
    # evicted before the next command if it is on this client's thread, else by the
    # timer of the thread that owns it
    wait_until(lambda: evicted(mc) >= 1, 10, what="the volatile key evicted")
    mc.ok("CONFIG", "SET", "maxmemory", "0")
    mc.ok("MULTI")
    assert mc.cmd("GET", "{w}watched") == St("QUEUED")
    assert mc.cmd("EXEC") is None
    assert evicted(mc) >= 1
    assert mc.cmd("EXISTS", "{w}watched") == 0


def test_object_freq_and_idletime_by_policy(pair):
    need_redis()
    try:
        pair.same("SET", "obj", "v")
        for policy in ["allkeys-lfu", "volatile-lfu"]:
            pair.same("CONFIG", "SET", "maxmemory-policy", policy)
            pair.same("OBJECT", "IDLETIME", "obj")  # the error text of an LFU policy
            assert isinstance(pair.k.cmd("OBJECT", "FREQ", "obj"), int)
            pair.same("OBJECT", "FREQ", "nokey")
        for policy in ["allkeys-lru", "noeviction", "volatile-ttl"]:
            pair.same("CONFIG", "SET", "maxmemory-policy", policy)
            pair.same("OBJECT", "FREQ", "obj")  # the error text without an LFU policy
            assert pair.k.cmd("GET", "obj") == b"v"
            # just used: 0, or 1 when the clock's second turned in between (a slow run)
            assert pair.k.cmd("OBJECT", "IDLETIME", "obj") in (0, 1)
    finally:
        pair.k.cmd("CONFIG", "SET", "maxmemory-policy", "noeviction")
        pair.r.cmd("CONFIG", "SET", "maxmemory-policy", "noeviction")


def test_info_memory_and_config_match_redis_shape(pair):
    need_redis()
    try:
        for v in ["0", "12345678"]:
            pair.same("CONFIG", "SET", "maxmemory", v)
            assert (info_field(pair.k, "memory", "maxmemory_human") ==
                    info_field(pair.r, "memory", "maxmemory_human"))
            assert (info_field(pair.k, "memory", "maxmemory") ==
                    info_field(pair.r, "memory", "maxmemory"))
        pair.same("CONFIG", "GET", "maxmemory-policy")
        pair.same("CONFIG", "GET", "maxmemory-samples")
    finally:
        pair.k.cmd("CONFIG", "SET", "maxmemory", "0")
        pair.r.cmd("CONFIG", "SET", "maxmemory", "0")
