"""Key expiry in kvd: lazily on access (every command sees an expired key as missing,
compared with Redis 7 after the same sleep) and actively (keys nobody touches are
deleted by the shards' expiry cycle, on every thread).
"""
import time

from conftest import St, info_field, wait_until

SHORT = [("SET", "s%d" % i, "v%d" % i, "PX", "150") for i in range(20)]
SHORT += [("SET", "{t}s%d" % i, str(i), "PX", "150") for i in range(4)]
SHORT += [("SET", "n", "10", "PX", "150"), ("SET", "keep", "1"), ("SET", "long", "1", "EX", "100")]

AFTER_EXPIRY = [
    ("GET", "s0"), ("EXISTS", "s1", "s2", "keep"), ("TTL", "s3"), ("PTTL", "s3"),
    ("EXPIRETIME", "s3"), ("TYPE", "s4"), ("STRLEN", "s5"), ("GETRANGE", "s6", "0", "-1"),
    ("MGET", "s7", "keep", "s8"), ("INCR", "n"), ("TTL", "n"), ("APPEND", "s9", "x"),
    ("GET", "s9"), ("TTL", "s9"), ("SETNX", "s10", "new"), ("GET", "s10"),
    ("SET", "s11", "x", "NX"), ("SET", "s12", "x", "XX"), ("GETSET", "s13", "x"),
    ("GETDEL", "s14"), ("GETEX", "s15", "EX", "10"), ("PERSIST", "s16"),
    ("EXPIRE", "s17", "10"), ("SETRANGE", "s18", "2", "x"), ("GET", "s18"),
    ("DEL", "s19", "keep"), ("RENAME", "{t}s0", "{t}x"), ("RENAMENX", "{t}s1", "{t}y"),
    ("MSETNX", "{t}s2", "a", "{t}s3", "b"), ("GET", "{t}s2"), ("INCRBYFLOAT", "s0", "1.5"),
    ("TOUCH", "s1", "s2", "long"), ("KEYS", "*"),
]


def test_expired_keys_are_missing_to_every_command(pair):
    for c in (pair.k, pair.r):
        for cmd in SHORT:
            assert c.cmd(*cmd) == St("OK")
    time.sleep(0.4)
    for cmd in AFTER_EXPIRY:
        if cmd == ("KEYS", "*"):
            k, r = sorted(pair.k.cmd(*cmd)), sorted(pair.r.cmd(*cmd))
            assert k == r, (k, r)
        else:
            pair.same(*cmd)
    live = set(pair.k.cmd("KEYS", "*"))
    for _ in range(20):
        assert pair.k.cmd("RANDOMKEY") in live


def test_scan_skips_expired_keys(kc):
    for i in range(200):
        kc.cmd("SET", "e%d" % i, "v", "PX", "100")
        kc.cmd("SET", "p%d" % i, "v")
    time.sleep(0.3)
    cursor, seen = b"0", set()
    while True:
        cursor, keys = kc.cmd("SCAN", cursor, "COUNT", "100")
        seen.update(keys)
        if cursor == b"0":
            break
    assert seen == {b"p%d" % i for i in range(200)}


def test_lazy_expiry_on_access(kvd_factory):
    # hz 1: the active cycle runs once a second, so access finds the keys first
    k = kvd_factory(args=["--hz", "1"])
    with k.client() as c:
        for i in range(50):
            assert c.cmd("SET", "lazy%d" % i, "v", "PX", "50") == St("OK")
        time.sleep(0.15)
        for i in range(50):
            assert c.cmd("GET", "lazy%d" % i) is None
            assert c.cmd("TTL", "lazy%d" % i) == -2
        assert c.cmd("EXISTS", *["lazy%d" % i for i in range(50)]) == 0
        assert c.cmd("DBSIZE") == 0


def expired_keys(c):
    for line in c.cmd("INFO", "stats").decode().split("\r\n"):
        if line.startswith("expired_keys:"):
            return int(line.split(":")[1])
    raise AssertionError("no expired_keys in INFO stats")


def test_active_expiry_deletes_untouched_keys(kvd, kc):
    before = expired_keys(kc)
    pipe = [("SET", "act:%d" % i, "v", "PX", "100") for i in range(1000)]
    pipe += [("SET", "stay:%d" % i, "v", "EX", "1000") for i in range(100)]
    pipe += [("SET", "forever:%d" % i, "v") for i in range(100)]
    assert all(r == St("OK") for r in kc.pipeline(pipe))
    assert kc.cmd("DBSIZE") >= 1000
    # never touch the keys: only DBSIZE (which does not expire anything) until all are gone
    with kvd.client() as watcher:
        wait_until(lambda: watcher.cmd("DBSIZE") == 200, 30, interval=0.1,
                   what="active expiry to remove 1000 keys")
    assert expired_keys(kc) - before == 1000
    assert kc.cmd("EXISTS", *["stay:%d" % i for i in range(100)]) == 100
    assert kc.cmd("EXISTS", *["forever:%d" % i for i in range(100)]) == 100


def test_expiry_changes_are_honoured(kc):
    kc.cmd("SET", "p", "v", "PX", "200")
    kc.cmd("PERSIST", "p")
    kc.cmd("SET", "o", "v", "PX", "200")
    kc.cmd("SET", "o", "w")  # SET without KEEPTTL clears the TTL
    kc.cmd("SET", "k", "v", "PX", "200")
    kc.cmd("SET", "k", "w", "KEEPTTL")
    kc.cmd("SET", "x", "v", "EX", "100")
    kc.cmd("PEXPIRE", "x", "200")  # shortened
    kc.cmd("SET", "y", "v", "PX", "200")
    kc.cmd("PEXPIRE", "y", "100000")  # lengthened
    time.sleep(0.5)
    assert kc.cmd("GET", "p") == b"v" and kc.cmd("TTL", "p") == -1
    assert kc.cmd("GET", "o") == b"w" and kc.cmd("TTL", "o") == -1
    assert kc.cmd("GET", "k") is None
    assert kc.cmd("GET", "x") is None
    assert kc.cmd("GET", "y") == b"v"


def test_expired_key_cannot_resurrect_through_rename(kc):
    kc.cmd("SET", "{r}a", "v", "PX", "100")
    kc.cmd("SET", "{r}b", "w")
    time.sleep(0.3)
    assert kc.cmd("RENAME", "{r}a", "{r}b") is not None
    assert kc.cmd("GET", "{r}b") == b"w"
    assert kc.cmd("EXISTS", "{r}a") == 0


def test_debug_set_active_expire(kvd_factory):
    """DEBUG SET-ACTIVE-EXPIRE 0 stops the active cycle on every shard (keys expire only
    when touched, as Redis's tests use it); 1 starts it again."""
    k = kvd_factory(args=["--hz", "100"])
    with k.client() as c:
        assert c.cmd("DEBUG", "SET-ACTIVE-EXPIRE", "0") == St("OK")
        assert c.pipeline([("SET", "ae:%d" % i, "v", "PX", "20") for i in range(200)]) == \
            [St("OK")] * 200
        time.sleep(0.5)  # 50 cycles would have removed them
        assert c.cmd("DBSIZE") == 200  # DBSIZE expires nothing
        assert c.cmd("GET", "ae:1") is None  # touching still expires
        assert c.cmd("DBSIZE") == 199
        assert c.cmd("DEBUG", "SET-ACTIVE-EXPIRE", "1") == St("OK")
        wait_until(lambda: c.cmd("DBSIZE") == 0, 10, what="active expiry back on")


def test_debug_pause_cron(kvd_factory):
    """DEBUG PAUSE-CRON 1 stops every shard's timer work (here: the active expiry cycle,
    and the save point that would otherwise dump), as Redis's pauses serverCron; 0 resumes
    it. The server goes on serving (and is idle meanwhile: no busy loop)."""
    k = kvd_factory(args=["--hz", "100", "--appendonly", "no", "--save", "1 1"])
    with k.client() as c:
        assert c.cmd("DEBUG", "PAUSE-CRON", "1") == St("OK")
        assert c.pipeline([("SET", "pc:%d" % i, "v", "PX", "20") for i in range(200)]) == \
            [St("OK")] * 200
        cpu0 = sum(int(x) for x in open("/proc/%d/stat" % k.pid).read().split()[13:15])
        time.sleep(1.2)
        cpu1 = sum(int(x) for x in open("/proc/%d/stat" % k.pid).read().split()[13:15])
        assert cpu1 - cpu0 < 50, "busy while paused: %d ticks" % (cpu1 - cpu0)
        assert c.cmd("DBSIZE") == 200
        assert c.cmd("PING") == St("PONG")
        assert info_field(c, "persistence", "rdb_saves") == "0"  # the save point waits too
        assert c.cmd("DEBUG", "PAUSE-CRON", "0") == St("OK")
        wait_until(lambda: c.cmd("DBSIZE") == 0, 10, what="the cron back on")
        wait_until(lambda: info_field(c, "persistence", "rdb_saves") != "0", 10,
                   what="the save point back on")
