"""Multiple logical databases of kvd (SELECT n, --databases N, default 16) against Redis 7:

- SELECT's replies and errors, CONFIG GET databases, keys isolated per database with
  200 keys (both shard threads, commands forwarded between them) and the fan-out
  commands (MGET MSET DEL EXISTS UNLINK TOUCH MSETNX) in a non-zero database;
- per database: DBSIZE, KEYS, SCAN (MATCH COUNT TYPE), RANDOMKEY, FLUSHDB [ASYNC|SYNC];
  FLUSHALL empties every database; INFO keyspace lists the non-empty ones only;
- MOVE, SWAPDB (clients selected on either database see the swapped contents), COPY ...
  DB n [REPLACE], with their error texts;
- expiry per database: expired keys of a non-zero database are missing to its commands
  (MOVE and COPY included), and the active cycle removes them in every database;
- MULTI ... SELECT n ... EXEC (the rest runs in n, the connection stays in n), WATCH per
  (database, key), and SWAPDB touching watched keys as in Redis;
- CLIENT LIST / CLIENT INFO db=N, RESET back to database 0, HELLO keeping it;
- kill -9 and restart after writes (some with TTLs) in several databases, MOVE, FLUSHDB,
  SWAPDB, with and without a SAVE in the middle: every database comes back exactly;
- redis-py with db=9 (plain commands, pipelines with and without a transaction, a
  WATCH-based transaction); --databases 4 (and 1) against a Redis started alike.

kvd's own rules hold here too: COPY and MSETNX need their keys in one partition, and so
do a transaction's and a client's watched keys, so those use {hash tag} keys (over
several tags, so that both shard threads take part).
"""
import re
import threading
import time

import pytest
import redis

from conftest import Client, Err, Map, St, Verb, encode, need_redis, wait_until

N = 200  # keys per database in the bulk tests: both shard threads, many partitions
TAGS = ["t%d" % i for i in range(8)]  # hash tags spread over the partitions


# ---------------------------------------------------------------------------------------
# helpers

def select(c, db):
    r = c.cmd("SELECT", db)
    assert r == St("OK"), "SELECT %s: %r" % (db, r)


def sorted_keys(c, pattern="*"):
    r = c.cmd("KEYS", pattern)
    assert isinstance(r, list), r
    return sorted(r)


def scan_all(c, *opts):
    """Every key SCAN returns from cursor 0 back to 0 (as a set)."""
    cursor = b"0"
    seen = set()
    for _ in range(20000):
        r = c.cmd("SCAN", cursor, *opts)
        assert isinstance(r, list) and len(r) == 2, ("SCAN", cursor, opts, r)
        cursor, keys = r
        seen.update(keys)
        if cursor == b"0":
            return seen
    raise AssertionError("SCAN %r did not come back to cursor 0" % (opts,))


def dump_db(c):
    """The selected database: {key: (value, pttl)}."""
    keys = c.cmd("KEYS", "*")
    assert isinstance(keys, list), keys
    if not keys:
        return {}
    replies = c.pipeline([("GET", k) for k in keys] + [("PTTL", k) for k in keys])
    n = len(keys)
    return {k: (replies[i], replies[n + i]) for i, k in enumerate(keys)}


def keyspace(c, section="keyspace"):
    """INFO keyspace as {db: (keys, expires)}; asserts each line's form."""
    text = c.cmd("INFO", section)
    assert isinstance(text, bytes), text
    text = text.decode()
    if section == "keyspace":
        assert text.startswith("# Keyspace\r\n"), text
    out = {}
    for line in text.split("\r\n"):
        if line.startswith("db") and ":" in line:
            m = re.fullmatch(r"db(\d+):keys=(\d+),expires=(\d+),avg_ttl=(\d+)", line)
            assert m, "bad INFO keyspace line %r" % line
            db = int(m.group(1))
            assert db not in out, "database %d listed twice:\n%s" % (db, text)
            out[db] = (int(m.group(2)), int(m.group(3)))
    return out


def client_db(text):
    """The db= field of a CLIENT INFO line."""
    if isinstance(text, Verb):
        text = text.data
    assert isinstance(text, bytes), text
    m = re.search(rb"(?:^| )db=(\d+)(?: |$)", text.strip())
    assert m, "no db= field in %r" % text
    return int(m.group(1))


def client_list_dbs(c):
    """CLIENT LIST as {client id: db}."""
    text = c.cmd("CLIENT", "LIST")
    if isinstance(text, Verb):
        text = text.data
    assert isinstance(text, bytes), text
    out = {}
    for line in text.decode().strip().split("\n"):
        f = dict(p.split("=", 1) for p in line.split(" ") if "=" in p)
        out[int(f["id"])] = int(f["db"])
    return out


def forwarded(c):
    """kvd's count of commands forwarded between shard threads (INFO stats)."""
    text = c.cmd("INFO", "stats")
    assert isinstance(text, bytes), text
    m = re.search(rb"\r\ncommands_forwarded:(\d+)\r\n", text)
    assert m, "no commands_forwarded in INFO stats"
    return int(m.group(1))


def converse(server, steps):
    """Runs the steps ((who, *command), who "w" or "o") with two fresh clients of a
    server; returns every reply."""
    with server.client() as w, server.client() as o:
        assert o.cmd("FLUSHALL") == St("OK")
        who = {"w": w, "o": o}
        return [who[s[0]].cmd(*s[1:]) for s in steps]


def both_converse(kvd, redis_server, steps, what):
    k = converse(kvd, steps)
    r = converse(redis_server, steps)
    assert k == r, "%s:\n  kvd:   %r\n  redis: %r" % (what, k, r)
    return k


# ---------------------------------------------------------------------------------------
# SELECT and isolation

def test_select_replies_and_errors_match_redis(pair):
    for db in range(16):
        assert pair.same("SELECT", db) == St("OK")
    for arg in ["16", "17", "-1", "4096", "1000000", "2147483647", "-2147483648"]:
        assert pair.same("SELECT", arg) == Err("ERR DB index is out of range"), arg
    for arg in ["abc", "1.5", "", " 1", "1 ", "01", "+1", "-0", "0x1",
                "99999999999999999999"]:
        assert pair.same("SELECT", arg) == Err("ERR value is not an integer or out of range"), \
            arg
    for arg in ["2147483648", "4294967296", "-2147483649"]:
        assert pair.same("SELECT", arg) == Err(
            "ERR value is out of range, value must between -2147483648 and 2147483647"), arg
    pair.same("SELECT")
    pair.same("SELECT", "1", "2")
    # a failed SELECT left the connection where it was (15)
    assert pair.same("SET", "where", "fifteen") == St("OK")
    assert pair.same("SELECT", "0") == St("OK")
    assert pair.same("GET", "where") is None
    assert pair.same("SELECT", "15") == St("OK")
    assert pair.same("GET", "where") == b"fifteen"
    assert pair.same("CONFIG", "GET", "databases") == [b"databases", b"16"]
    for c in (pair.k, pair.r):  # immutable, as in Redis
        assert isinstance(c.cmd("CONFIG", "SET", "databases", "4"), Err)
    assert pair.same("CONFIG", "GET", "databases") == [b"databases", b"16"]


def test_keys_are_isolated_per_database_with_fan_out_commands(pair):
    """The same 200 key names in databases 0 and 5 (and none in 6): every fan-out
    command in database 5 sees only database 5's keys, on both shard threads."""
    names = ["k:%d" % i for i in range(N)]
    mset0 = ["MSET"]
    mset5 = ["MSET"]
    for i, k in enumerate(names):
        mset0 += [k, "zero-%d" % i]
        mset5 += [k, "five-%d" % i]
    assert pair.same(*mset0) == St("OK")
    assert pair.same("SELECT", 5) == St("OK")
    before = forwarded(pair.k)
    assert pair.same("MGET", *names) == [None] * N, "database 5 sees database 0's keys"
    assert pair.same("EXISTS", *names) == 0
    assert pair.same("DBSIZE") == 0
    assert pair.same(*mset5) == St("OK")
    assert pair.same("MGET", *names) == [b"five-%d" % i for i in range(N)]
    assert pair.same("EXISTS", *names) == N
    assert pair.same("TOUCH", *names, "missing") == N
    assert pair.same("DEL", *names[:50], "missing") == 50
    assert pair.same("UNLINK", *names[50:100]) == 50
    assert pair.same("DEL", *names[:100]) == 0
    assert pair.same("EXISTS", *names) == N - 100
    assert pair.same("DBSIZE") == N - 100
    # the other shard thread took part: these 10 fan-out commands were forwarded to it
    assert forwarded(pair.k) - before >= 10
    # single-key writes on names that exist in database 0 only
    assert pair.same("SETNX", names[0], "nx") == 1
    assert pair.same("SET", names[1], "x", "NX") == St("OK")
    assert pair.same("INCR", names[2]) == 1
    assert pair.same("APPEND", names[3], "ab") == 2
    assert pair.same("GETSET", names[4], "gs") is None
    assert pair.same("GETDEL", names[5]) is None
    assert pair.same("SELECT", 6) == St("OK")
    assert pair.same("MGET", *names) == [None] * N
    assert pair.same("EXISTS", *names) == 0
    assert pair.same("DEL", *names) == 0
    assert pair.same("DBSIZE") == 0
    # RENAME in 5 onto a name that exists in database 0 only
    assert pair.same("SELECT", 0) == St("OK")
    assert pair.same("SET", "{r}dst", "zero") == St("OK")
    assert pair.same("SELECT", 5) == St("OK")
    assert pair.same("SET", "{r}src", "five") == St("OK")
    assert pair.same("RENAMENX", "{r}src", "{r}dst") == 1
    assert pair.same("RENAME", "{r}dst", "{r}src") == St("OK")
    assert pair.same("SELECT", 0) == St("OK")
    assert pair.same("GET", "{r}dst") == b"zero"
    assert pair.same("EXISTS", "{r}src") == 0
    assert pair.same("DEL", "{r}dst") == 1
    assert pair.same("SELECT", 5) == St("OK")
    assert pair.same("GET", "{r}src") == b"five"
    assert pair.same("DEL", "{r}src") == 1
    # MSETNX (one partition per call): succeeds in 5 although database 0 has the keys
    for tag in TAGS:
        tk = ["{%s}m%d" % (tag, j) for j in range(5)]
        assert pair.same("SELECT", 0) == St("OK")
        assert pair.same("MSET", *[x for k in tk for x in (k, "zero")]) == St("OK")
        assert pair.same("SELECT", 5) == St("OK")
        assert pair.same("MSETNX", *[x for k in tk for x in (k, "five")]) == 1, tag
        assert pair.same("MSETNX", *[x for k in tk for x in (k, "again")]) == 0, tag
        assert pair.same("MGET", *tk) == [b"five"] * 5
        assert pair.same("SELECT", 0) == St("OK")
        assert pair.same("MGET", *tk) == [b"zero"] * 5
    # database 0 is untouched by everything done in 5
    assert pair.same("SELECT", 0) == St("OK")
    assert pair.same("MGET", *names) == [b"zero-%d" % i for i in range(N)]
    assert pair.same("DBSIZE") == N + 5 * len(TAGS)
    assert pair.same("SELECT", 5) == St("OK")
    assert pair.same("DBSIZE") == N - 100 + 5 + 5 * len(TAGS)


# ---------------------------------------------------------------------------------------
# per-database DBSIZE KEYS SCAN RANDOMKEY FLUSHDB FLUSHALL INFO keyspace

def fill(pair, db, keys, value="v", ttl=None):
    assert pair.same("SELECT", db) == St("OK")
    if ttl is None:
        assert pair.same("MSET", *[x for k in keys for x in (k, value)]) == St("OK")
    else:
        for k in keys:
            assert pair.same("SET", k, value, "EX", ttl) == St("OK")


def test_dbsize_keys_scan_randomkey_are_per_database(pair):
    db0 = ["a:%d" % i for i in range(30)]
    db3 = ["k:%d" % i for i in range(N)] + ["s:%d" % i for i in range(50)]
    db7 = ["only"]
    fill(pair, 0, db0 + ["k:1", "k:10"])  # two names that database 3 has too
    fill(pair, 3, db3)
    fill(pair, 7, db7)
    expect = {0: set(db0) | {"k:1", "k:10"}, 3: set(db3), 7: set(db7), 9: set()}
    for db, want in sorted(expect.items()):
        want = {k.encode() for k in want}
        assert pair.same("SELECT", db) == St("OK")
        assert pair.same("DBSIZE") == len(want), db
        for c in (pair.k, pair.r):
            assert set(sorted_keys(c)) == want, db
            assert set(sorted_keys(c, "k:1*")) == {k for k in want if k.startswith(b"k:1")}
            assert scan_all(c) == want, db
            assert scan_all(c, "COUNT", 5) == want, db
            assert scan_all(c, "COUNT", 1000) == want, db
            assert scan_all(c, "MATCH", "k:1*", "COUNT", 7) == \
                {k for k in want if k.startswith(b"k:1")}, db
            assert scan_all(c, "TYPE", "string") == want, db
            assert scan_all(c, "MATCH", "s:*", "TYPE", "string", "COUNT", 3) == \
                {k for k in want if k.startswith(b"s:")}, db
            assert scan_all(c, "TYPE", "list") == set(), db
            for _ in range(20 if want else 1):
                r = c.cmd("RANDOMKEY")
                if want:
                    assert r in want, "RANDOMKEY in database %d gave %r" % (db, r)
                else:
                    assert r is None, "RANDOMKEY in empty database %d gave %r" % (db, r)


def test_flushdb_flushes_only_the_selected_database(pair):
    names = ["k:%d" % i for i in range(N)]
    for db in (0, 2, 4, 11):
        fill(pair, db, names, "v%d" % db)
    assert pair.same("SELECT", 2) == St("OK")
    assert pair.same("FLUSHDB") == St("OK")
    assert pair.same("DBSIZE") == 0
    assert pair.same("MGET", *names) == [None] * N
    assert pair.same("FLUSHDB", "FOO") == Err("ERR syntax error")
    assert pair.same("FLUSHDB", "ASYNC", "SYNC") == Err("ERR syntax error")
    assert pair.same("SELECT", 4) == St("OK")
    assert pair.same("FLUSHDB", "ASYNC") == St("OK")
    assert pair.same("DBSIZE") == 0
    # written right after the asynchronous flush: kept (the flush freed only the old keys)
    assert pair.same("MSET", *[x for k in names for x in (k, "new")]) == St("OK")
    assert pair.same("MGET", *names) == [b"new"] * N
    assert pair.same("FLUSHDB", "ASYNC") == St("OK")
    assert pair.same("SET", names[0], "newer") == St("OK")
    assert pair.same("DBSIZE") == 1
    assert pair.same("DEL", names[0]) == 1
    assert pair.same("SELECT", 11) == St("OK")
    assert pair.same("FLUSHDB", "SYNC") == St("OK")
    assert pair.same("DBSIZE") == 0
    assert pair.same("SELECT", 0) == St("OK")
    assert pair.same("DBSIZE") == N
    assert pair.same("MGET", *names) == [b"v0"] * N
    for c in (pair.k, pair.r):
        assert keyspace(c) == {0: (N, 0)}
    # FLUSHALL from a non-zero database empties all of them
    for db in (2, 4):
        fill(pair, db, names[:50], "again")
    assert pair.same("SELECT", 4) == St("OK")
    assert pair.same("FLUSHALL") == St("OK")
    for db in range(16):
        assert pair.same("SELECT", db) == St("OK")
        assert pair.same("DBSIZE") == 0, "database %d after FLUSHALL" % db
    for c in (pair.k, pair.r):
        assert keyspace(c) == {}
    for db in (0, 2):
        fill(pair, db, names[:10])
    assert pair.same("FLUSHALL", "ASYNC") == St("OK")
    for c in (pair.k, pair.r):
        assert keyspace(c) == {}


def test_info_keyspace_lists_the_non_empty_databases(pair):
    assert pair.same("INFO", "keyspace")  # empty: the same bytes as Redis
    fill(pair, 0, ["a", "b"])
    assert pair.same("SET", "c", "v", "EX", 1000) == St("OK")
    fill(pair, 3, ["k:%d" % i for i in range(N - 50)])
    fill(pair, 3, ["t:%d" % i for i in range(50)], ttl=2000)
    fill(pair, 15, ["z"], ttl=500)
    fill(pair, 1, ["gone"])
    assert pair.same("DEL", "gone") == 1
    fill(pair, 6, ["x", "y"])
    assert pair.same("FLUSHDB") == St("OK")
    want = {0: (3, 1), 3: (N, 50), 15: (1, 1)}
    for c in (pair.k, pair.r):
        assert keyspace(c) == want
        assert keyspace(c, "all") == want
        assert keyspace(c, "everything") == want
    text = pair.k.cmd("INFO").decode()
    assert "# Keyspace\r\n" in text and "db3:keys=%d,expires=50," % N in text, text[-500:]
    # a PERSIST and an EXPIRE move the expires count
    assert pair.same("SELECT", 3) == St("OK")
    assert pair.same("PERSIST", "t:0") == 1
    assert pair.same("EXPIRE", "k:0", 100) == 1
    assert pair.same("EXPIRE", "k:1", 100) == 1
    for c in (pair.k, pair.r):
        assert keyspace(c) == {0: (3, 1), 3: (N, 51), 15: (1, 1)}


# ---------------------------------------------------------------------------------------
# MOVE SWAPDB COPY

def test_move_between_databases(pair):
    assert pair.same("SET", "x", "1") == St("OK")
    assert pair.same("MOVE", "x", 0) == Err("ERR source and destination objects are the same")
    assert pair.same("MOVE", "nokey", 0) == Err("ERR source and destination objects are the same")
    for db in ("16", "-1", "1000"):
        assert pair.same("MOVE", "x", db) == Err("ERR DB index is out of range")
    assert pair.same("MOVE", "nokey", "16") == Err("ERR DB index is out of range")
    for db in ("abc", "1.5", "", "01", "99999999999999999999"):
        assert pair.same("MOVE", "x", db) == Err("ERR value is not an integer or out of range")
    pair.same("MOVE", "x", "2147483648")
    pair.same("MOVE", "x")
    pair.same("MOVE", "x", "1", "2")
    assert pair.same("GET", "x") == b"1"

    names = ["k:%d" % i for i in range(N)]
    fill(pair, 2, names[:150], "two")
    fill(pair, 2, names[150:], "two-ttl", ttl=1000)
    fill(pair, 6, names[100:120], "six")  # these MOVEs find the key in the target: 0
    assert pair.same("SELECT", 2) == St("OK")
    for i, k in enumerate(names):
        assert pair.same("MOVE", k, 6) == (0 if 100 <= i < 120 else 1), k
    assert pair.same("MOVE", "missing", 6) == 0
    assert pair.same("DBSIZE") == 20
    assert sorted(pair.same("MGET", *names[100:120])) == [b"two"] * 20
    assert pair.same("SELECT", 6) == St("OK")
    assert pair.same("DBSIZE") == N
    assert pair.same("MGET", *names) == ([b"two"] * 100 + [b"six"] * 20 + [b"two"] * 30 +
                                         [b"two-ttl"] * 50)
    for k in names[150:]:  # the TTL went along
        t = pair.k.cmd("PTTL", k)
        assert 900000 < t <= 1000000, "PTTL of %s after MOVE: %r" % (k, t)
    assert pair.same("TTL", names[0]) == -1
    # back to database 0 from a non-zero one
    for k in names[:10]:
        assert pair.same("MOVE", k, 0) == 1
    assert pair.same("SELECT", 0) == St("OK")
    assert pair.same("MGET", *names[:10]) == [b"two"] * 10
    assert pair.same("DBSIZE") == 11
    for c in (pair.k, pair.r):
        assert keyspace(c) == {0: (11, 0), 2: (20, 0), 6: (N - 10, 50)}


def test_swapdb_swaps_contents_for_clients_on_either_database(pair):
    for a, b in [("0", "16"), ("16", "0"), ("-1", "0"), ("0", "-1"), ("1000", "2")]:
        assert pair.same("SWAPDB", a, b) == Err("ERR DB index is out of range"), (a, b)
    for a, b in [("a", "0"), ("1.5", "0"), ("a", "b"), ("a", "99"), ("2147483648", "0"),
                 ("", "1")]:
        assert pair.same("SWAPDB", a, b) == Err("ERR invalid first DB index"), (a, b)
    for a, b in [("0", "b"), ("99", "b"), ("16", "x"), ("0", "2147483648"), ("1", "")]:
        assert pair.same("SWAPDB", a, b) == Err("ERR invalid second DB index"), (a, b)
    pair.same("SWAPDB", "0")
    pair.same("SWAPDB", "0", "1", "2")

    names = ["k:%d" % i for i in range(N)]
    fill(pair, 0, names, "zero")
    fill(pair, 1, names[:120], "one")
    fill(pair, 1, ["t:%d" % i for i in range(30)], "one-ttl", ttl=1000)
    assert pair.same("SWAPDB", 0, 0) == St("OK")
    clients = {}
    for name, server in (("k", pair.kvd), ("r", pair.redis)):
        a, b = server.client(), server.client()
        select(b, 1)
        clients[name] = (a, b)
    try:
        for name, c in (("k", pair.k), ("r", pair.r)):
            a, b = clients[name]
            assert c.cmd("SWAPDB", 0, 1) == St("OK"), name
            assert a.cmd("DBSIZE") == 150, name  # a stayed on database 0: db 1's contents
            assert a.cmd("MGET", *names) == [b"one"] * 120 + [None] * 80, name
            assert 900000 < a.cmd("PTTL", "t:0") <= 1000000, name
            assert b.cmd("DBSIZE") == N, name
            assert b.cmd("MGET", *names) == [b"zero"] * N, name
            assert b.cmd("EXISTS", "t:0") == 0, name
            assert keyspace(a) == {0: (150, 30), 1: (N, 0)}, name
            # writes after the swap land where the clients now look
            assert a.cmd("SET", "after", "a") == St("OK")
            assert b.cmd("SET", "after", "b") == St("OK")
            # swap with an empty database, from a client on neither
            assert c.cmd("SELECT", 9) == St("OK")
            assert c.cmd("SWAPDB", 1, 12) == St("OK"), name
            assert b.cmd("DBSIZE") == 0, name
            assert b.cmd("GET", "after") is None, name
            assert c.cmd("SELECT", 12) == St("OK")
            assert c.cmd("GET", "after") == b"b", name
            assert c.cmd("DBSIZE") == N + 1, name
            assert c.cmd("SWAPDB", 12, 0) == St("OK")  # in either order
            assert a.cmd("GET", "after") == b"b", name
            assert a.cmd("DBSIZE") == N + 1, name
            assert c.cmd("GET", "after") == b"a", name
            assert c.cmd("DBSIZE") == 151, name
            assert keyspace(a) == {0: (N + 1, 0), 12: (151, 30)}, name
    finally:
        for a, b in clients.values():
            a.close()
            b.close()


def test_copy_to_another_database(pair):
    for tag in TAGS:
        s, d = "{%s}src" % tag, "{%s}dst" % tag
        assert pair.same("SELECT", 0) == St("OK")
        assert pair.same("SET", s, "v-" + tag, "EX", 1000) == St("OK")
        assert pair.same("COPY", s, d, "DB", 4) == 1
        assert pair.same("EXISTS", d) == 0
        assert pair.same("COPY", s, d, "DB", 4) == 0
        assert pair.same("COPY", s, s, "DB", 4) == 1  # the same name in another database
        assert pair.same("COPY", s, s) == Err("ERR source and destination objects are the same")
        assert pair.same("COPY", s, s, "DB", 0) == Err(
            "ERR source and destination objects are the same")
        assert pair.same("COPY", "{%s}missing" % tag, d, "DB", 4) == 0
        assert pair.same("SET", s, "w-" + tag) == St("OK")  # no TTL now
        assert pair.same("COPY", s, d, "DB", 4, "REPLACE") == 1
        assert pair.same("COPY", s, "{%s}x" % tag, "DB", 3, "DB", 5) == 1  # the last DB wins
        assert pair.same("SELECT", 4) == St("OK")
        assert pair.same("GET", d) == b"w-" + tag.encode()
        assert pair.same("TTL", d) == -1
        assert pair.same("GET", s) == b"v-" + tag.encode()
        t = pair.k.cmd("PTTL", s)
        assert 900000 < t <= 1000000, "PTTL of a key COPY made in database 4: %r" % t
        assert pair.same("COPY", d, s, "DB", 0) == 0  # s exists in 0
        assert pair.same("COPY", d, "{%s}back" % tag, "DB", 0) == 1
        assert pair.same("SELECT", 5) == St("OK")
        assert pair.same("GET", "{%s}x" % tag) == b"w-" + tag.encode()
        assert pair.same("SELECT", 3) == St("OK")
        assert pair.same("EXISTS", "{%s}x" % tag) == 0
    s, d = "{e}s", "{e}d"
    assert pair.same("SELECT", 0) == St("OK")
    assert pair.same("SET", s, "v") == St("OK")
    assert pair.same("COPY", s, d, "DB", 16) == Err("ERR DB index is out of range")
    assert pair.same("COPY", s, d, "DB", -1) == Err("ERR DB index is out of range")
    assert pair.same("COPY", s, d, "DB", "abc") == Err(
        "ERR value is not an integer or out of range")
    pair.same("COPY", s, d, "DB", "2147483648")
    assert pair.same("COPY", s, d, "DB") == Err("ERR syntax error")
    for c in (pair.k, pair.r):
        assert keyspace(c) == {0: (1 + 2 * len(TAGS), 0), 4: (2 * len(TAGS), len(TAGS)),
                               5: (len(TAGS), 0)}


# ---------------------------------------------------------------------------------------
# expiry

def test_expiry_is_per_database(pair):
    """Keys with a short TTL in databases 2 and 4 next to the same names without one in
    database 0: after the expiry each database's commands see what Redis's do."""
    names = ["e:%d" % i for i in range(50)]
    fill(pair, 0, names + ["x", "{c}s"], "zero")
    for db in (2, 4):
        assert pair.same("SELECT", db) == St("OK")
        for k in names + ["x", "{c}s", "{c}d"]:
            assert pair.same("SET", k, "short", "PX", 100) == St("OK")
        assert pair.same("SET", "long", "v", "EX", 1000) == St("OK")
    time.sleep(0.3)
    assert pair.same("SELECT", 2) == St("OK")
    assert pair.same("MGET", *names) == [None] * 50
    assert pair.same("EXISTS", *names, "long") == 1
    assert pair.same("MOVE", "x", 0) == 0  # expired in the source
    assert pair.same("SELECT", 0) == St("OK")
    assert pair.same("MOVE", "x", 4) == 1  # the target's x has expired: no conflict
    assert pair.same("COPY", "{c}s", "{c}d", "DB", 4) == 1  # the target's {c}d expired
    assert pair.same("COPY", "{c}s", "{c}s", "DB", 4) == 1
    assert pair.same("MGET", *names) == [b"zero"] * 50
    assert pair.same("DBSIZE") == 51
    assert pair.same("SELECT", 4) == St("OK")
    assert pair.same("GET", "x") == b"zero"
    assert pair.same("TTL", "x") == -1
    assert pair.same("GET", "{c}d") == b"zero"
    assert pair.same("GET", "{c}s") == b"zero"
    for c in (pair.k, pair.r):
        assert sorted_keys(c) == sorted([b"long", b"x", b"{c}d", b"{c}s"])
        assert scan_all(c, "COUNT", 3) == {b"long", b"x", b"{c}d", b"{c}s"}
    assert pair.same("SELECT", 2) == St("OK")
    for c in (pair.k, pair.r):
        assert sorted_keys(c) == [b"long"]
        assert scan_all(c) == {b"long"}
        assert c.cmd("RANDOMKEY") == b"long"
    assert pair.same("DBSIZE") == 1


def test_active_expiry_in_every_database(kvd, kc):
    """Keys nobody touches expire in non-zero databases too (the expiry cycle walks every
    database of every partition); the long-lived ones and other databases stay."""
    for db in (0, 4, 11):
        select(kc, db)
        cmds = [("SET", "act:%d" % i, "v", "PX", 100) for i in range(300 if db else 0)]
        cmds += [("SET", "stay:%d" % i, "d%d" % db) for i in range(50)]
        cmds += [("SET", "ttl:%d" % i, "v", "EX", 1000) for i in range(10)]
        assert kc.pipeline(cmds) == [St("OK")] * len(cmds)
    with kvd.client() as watcher:  # DBSIZE and INFO expire nothing themselves
        def remaining():
            return {db: n for db, (n, _) in keyspace(watcher).items()}
        wait_until(lambda: remaining() == {0: 60, 4: 60, 11: 60}, 30, interval=0.1,
                   what="active expiry to remove 600 keys of databases 4 and 11")
        assert keyspace(watcher) == {0: (60, 10), 4: (60, 10), 11: (60, 10)}
    for db in (0, 4, 11):
        select(kc, db)
        assert kc.cmd("MGET", *["stay:%d" % i for i in range(50)]) == [b"d%d" % db] * 50


# ---------------------------------------------------------------------------------------
# transactions and WATCH

def test_select_inside_multi(pair):
    before = forwarded(pair.k)
    for tag in TAGS:
        a = "{%s}a" % tag
        for c in (pair.k, pair.r):
            select(c, 0)
        assert pair.same("SET", a, "zero") == St("OK")
        assert pair.same("MULTI") == St("OK")
        assert pair.same("GET", a) == St("QUEUED")
        assert pair.same("SELECT", 3) == St("QUEUED")
        assert pair.same("SET", a, "three") == St("QUEUED")
        assert pair.same("INCR", "{%s}n" % tag) == St("QUEUED")
        assert pair.same("GET", a) == St("QUEUED")
        assert pair.same("EXEC") == [b"zero", St("OK"), St("OK"), 1, b"three"]
        # the connection stayed in database 3
        assert pair.same("GET", a) == b"three"
        assert pair.same("GET", "{%s}n" % tag) == b"1"
        for c in (pair.k, pair.r):
            assert client_db(c.cmd("CLIENT", "INFO")) == 3
        # a SELECT that fails inside the transaction leaves the database as it was
        assert pair.same("MULTI") == St("OK")
        assert pair.same("SELECT", 99) == St("QUEUED")
        assert pair.same("SELECT", "x") == St("QUEUED")
        assert pair.same("GET", a) == St("QUEUED")
        assert pair.same("SELECT", 0) == St("QUEUED")
        assert pair.same("GET", a) == St("QUEUED")
        assert pair.same("SELECT", 7) == St("QUEUED")
        assert pair.same("SET", a, "seven") == St("QUEUED")
        assert pair.same("EXEC") == [Err("ERR DB index is out of range"),
                                     Err("ERR value is not an integer or out of range"),
                                     b"three", St("OK"), b"zero", St("OK"), St("OK")]
        assert pair.same("GET", a) == b"seven"
        # DISCARD: the queued SELECT never ran
        assert pair.same("MULTI") == St("OK")
        assert pair.same("SELECT", 3) == St("QUEUED")
        assert pair.same("DISCARD") == St("OK")
        assert pair.same("GET", a) == b"seven"
        for c in (pair.k, pair.r):
            assert client_db(c.cmd("CLIENT", "INFO")) == 7
        # MOVE and COPY ... DB inside a transaction, around a SELECT
        m, cp = "{%s}m" % tag, "{%s}c" % tag
        assert pair.same("MULTI") == St("OK")
        assert pair.same("SET", m, "moved", "EX", 1000) == St("QUEUED")
        assert pair.same("MOVE", m, 9) == St("QUEUED")
        assert pair.same("COPY", a, cp, "DB", 9) == St("QUEUED")
        assert pair.same("EXISTS", m, cp) == St("QUEUED")
        assert pair.same("SELECT", 9) == St("QUEUED")
        assert pair.same("MGET", m, cp, a) == St("QUEUED")
        assert pair.same("MOVE", m, 7) == St("QUEUED")
        assert pair.same("EXEC") == [St("OK"), 1, 1, 0, St("OK"), [b"moved", b"seven", None], 1]
        assert pair.same("EXISTS", m) == 0
        assert pair.same("GET", cp) == b"seven"
        assert pair.same("SELECT", 7) == St("OK")
        assert pair.same("GET", m) == b"moved"
        assert 900000 < pair.k.cmd("PTTL", m) <= 1000000
    # some of these transactions ran on the other shard thread
    assert forwarded(pair.k) - before >= 1
    for c in (pair.k, pair.r):
        assert keyspace(c) == {0: (len(TAGS), 0), 3: (2 * len(TAGS), 0),
                               7: (2 * len(TAGS), len(TAGS)), 9: (len(TAGS), 0)}


def watch_steps(setup, between):
    """w watches {t}x in database 1 (after setup); `between` runs; w's transaction
    writes {t}y; then w reads {t}y back."""
    return (setup + [("w", "SELECT", 1), ("w", "WATCH", "{t}x")] + between +
            [("w", "MULTI"), ("w", "SET", "{t}y", "done"), ("w", "EXEC"), ("w", "GET", "{t}y")])


# (name, setup, between, EXEC aborted?) -- "o" starts in database 0
WATCH_CASES = [
    ("untouched", [], [], False),
    ("set_same_name_in_db0", [], [("o", "SET", "{t}x", "0")], False),
    ("set_same_name_in_db2", [], [("o", "SELECT", 2), ("o", "SET", "{t}x", "2")], False),
    ("del_in_db0", [("o", "SET", "{t}x", "0"), ("w", "SELECT", 1), ("w", "SET", "{t}x", "1")],
     [("o", "DEL", "{t}x")], False),
    ("expire_in_db0", [("o", "SET", "{t}x", "0"), ("w", "SELECT", 1),
                       ("w", "SET", "{t}x", "1")], [("o", "EXPIRE", "{t}x", "100")], False),
    ("set_in_watched_db", [], [("o", "SELECT", 1), ("o", "SET", "{t}x", "1")], True),
    ("del_in_watched_db", [("w", "SELECT", 1), ("w", "SET", "{t}x", "1")],
     [("o", "SELECT", 1), ("o", "DEL", "{t}x")], True),
    ("incr_in_watched_db", [("w", "SELECT", 1), ("w", "SET", "{t}x", "1")],
     [("o", "SELECT", 1), ("o", "INCR", "{t}x")], True),
    ("mset_in_watched_db", [], [("o", "SELECT", 1), ("o", "MSET", "{t}x", "1", "{t}z", "2")],
     True),
    ("mset_in_db0", [], [("o", "MSET", "{t}x", "1", "{t}z", "2")], False),
    ("flushdb_watched_db", [("w", "SELECT", 1), ("w", "SET", "{t}x", "1")],
     [("o", "SELECT", 1), ("o", "FLUSHDB")], True),
    ("flushdb_async_watched_db", [("w", "SELECT", 1), ("w", "SET", "{t}x", "1")],
     [("o", "SELECT", 1), ("o", "FLUSHDB", "ASYNC")], True),
    ("flushdb_db0", [("o", "SET", "{t}x", "0"), ("w", "SELECT", 1), ("w", "SET", "{t}x", "1")],
     [("o", "FLUSHDB")], False),
    ("flushdb_db2", [("o", "SELECT", 2), ("o", "SET", "{t}x", "2"), ("w", "SELECT", 1),
                     ("w", "SET", "{t}x", "1")], [("o", "FLUSHDB")], False),
    ("flushall", [("w", "SELECT", 1), ("w", "SET", "{t}x", "1")], [("o", "FLUSHALL")], True),
    ("move_out_of_watched_db", [("w", "SELECT", 1), ("w", "SET", "{t}x", "1")],
     [("o", "SELECT", 1), ("o", "MOVE", "{t}x", 2)], True),
    ("move_into_watched_db", [("o", "SET", "{t}x", "0")], [("o", "MOVE", "{t}x", 1)], True),
    ("move_between_other_dbs", [("o", "SET", "{t}x", "0")], [("o", "MOVE", "{t}x", 2)], False),
    ("copy_into_watched_db", [("o", "SET", "{t}x", "0")],
     [("o", "COPY", "{t}x", "{t}x", "DB", 1)], True),
    ("copy_into_other_db", [("o", "SET", "{t}x", "0")],
     [("o", "COPY", "{t}x", "{t}x", "DB", 2)], False),
    ("own_write_in_db0_before_multi", [], [("w", "SELECT", 0), ("w", "SET", "{t}x", "w0"),
                                           ("w", "SELECT", 1)], False),
    ("own_write_in_watched_db", [], [("w", "SET", "{t}x", "w1")], True),
    # the same name watched in databases 0 and 1: a change in either aborts
    ("two_dbs_change_db0", [], [("w", "SELECT", 0), ("w", "WATCH", "{t}x"),
                                ("w", "SELECT", 1), ("o", "SET", "{t}x", "0")], True),
    ("two_dbs_change_db2", [], [("w", "SELECT", 0), ("w", "WATCH", "{t}x"),
                                ("w", "SELECT", 1), ("o", "SELECT", 2),
                                ("o", "SET", "{t}x", "2")], False),
]


@pytest.mark.parametrize("name,setup,between,aborted", WATCH_CASES,
                         ids=[c[0] for c in WATCH_CASES])
def test_watch_is_per_database_and_key(kvd, redis_server, name, setup, between, aborted):
    need_redis()
    for tag in TAGS:
        steps = [tuple(a.replace("{t}", "{%s}" % tag) if isinstance(a, str) else a
                       for a in s) for s in watch_steps(setup, between)]
        out = both_converse(kvd, redis_server, steps, "case %s tag %s" % (name, tag))
        exec_reply, get_reply = out[-2], out[-1]
        if aborted:
            assert exec_reply is None and get_reply is None, (name, out)
        else:
            assert exec_reply == [St("OK")] and get_reply == b"done", (name, out)


SWAPDB_WATCH_CASES = [
    ("key_in_watched_db", [("w", "SELECT", 1), ("w", "SET", "{t}x", "1")],
     [("o", "SWAPDB", 0, 1)], True),
    ("key_in_the_other_db", [("o", "SET", "{t}x", "0")], [("o", "SWAPDB", 1, 0)], True),
    ("key_in_neither", [("o", "SET", "{t}other", "0")], [("o", "SWAPDB", 0, 1)], False),
    ("other_dbs_swapped", [("w", "SELECT", 1), ("w", "SET", "{t}x", "1"),
                           ("o", "SELECT", 2), ("o", "SET", "{t}x", "2")],
     [("o", "SWAPDB", 2, 3)], False),
]


@pytest.mark.parametrize("name,setup,between,aborted", SWAPDB_WATCH_CASES,
                         ids=[c[0] for c in SWAPDB_WATCH_CASES])
def test_swapdb_touches_watched_keys_as_redis(kvd, redis_server, name, setup, between,
                                              aborted):
    """Redis 7.0 marks a watched key of a swapped database dirty when the key exists in
    either of the two databases."""
    need_redis()
    for tag in TAGS:
        steps = [tuple(a.replace("{t}", "{%s}" % tag) if isinstance(a, str) else a
                       for a in s) for s in watch_steps(setup, between)]
        out = both_converse(kvd, redis_server, steps, "case %s tag %s" % (name, tag))
        assert (out[-2] is None) == aborted, (name, out)


# ---------------------------------------------------------------------------------------
# CLIENT LIST / CLIENT INFO, RESET, HELLO

def test_client_list_info_show_the_db_reset_and_hello(pair):
    for name, c, server in (("kvd", pair.k, pair.kvd), ("redis", pair.r, pair.redis)):
        assert client_db(c.cmd("CLIENT", "INFO")) == 0, name
        with server.client() as other:
            oid = other.cmd("CLIENT", "ID")
            select(other, 13)
            my = c.cmd("CLIENT", "ID")
            select(c, 7)
            assert client_db(c.cmd("CLIENT", "INFO")) == 7, name
            dbs = client_list_dbs(c)
            assert dbs.get(oid) == 13 and dbs.get(my) == 7, (name, dbs)
            assert client_list_dbs(other).get(my) == 7, name
            assert c.cmd("SET", "where", "seven") == St("OK")
            # HELLO (either protocol) keeps the database
            assert isinstance(c.cmd("HELLO", "3"), Map), name
            assert client_db(c.cmd("CLIENT", "INFO")) == 7, name
            assert c.cmd("GET", "where") == b"seven", name
            assert isinstance(c.cmd("HELLO", "2"), list), name
            assert client_db(c.cmd("CLIENT", "INFO")) == 7, name
            # RESET goes back to database 0
            assert c.cmd("RESET") == St("RESET"), name
            assert client_db(c.cmd("CLIENT", "INFO")) == 0, name
            assert c.cmd("GET", "where") is None, name
            assert client_list_dbs(other).get(my) == 0, name
            select(other, 0)
            assert client_list_dbs(c).get(oid) == 0, name
            select(c, 7)
            assert c.cmd("GET", "where") == b"seven", name
            # a transaction's SELECT shows up once EXEC ran
            assert c.pipeline([("MULTI",), ("SELECT", 2), ("EXEC",)])[-1] == [St("OK")], name
            assert client_db(c.cmd("CLIENT", "INFO")) == 2, name
            assert client_list_dbs(other).get(my) == 2, name


# ---------------------------------------------------------------------------------------
# durability


class Model:
    """What each database should hold: {db: {key: (value, ttl_seconds or None)}}, with
    the same commands sent to kvd."""

    def __init__(self, c, databases=16):
        self.c = c
        self.dbs = {d: {} for d in range(databases)}
        self.cur = 0

    def select(self, db):
        select(self.c, db)
        self.cur = db

    def set_many(self, items, ttl=None):
        cmds = [("SET", k, v) + (("EX", ttl) if ttl else ()) for k, v in items]
        assert self.c.pipeline(cmds) == [St("OK")] * len(cmds)
        for k, v in items:
            self.dbs[self.cur][k] = (v, ttl)

    def mset(self, items):
        assert self.c.cmd("MSET", *[x for kv in items for x in kv]) == St("OK")
        for k, v in items:
            self.dbs[self.cur][k] = (v, None)

    def delete(self, keys):
        want = sum(1 for k in keys if k in self.dbs[self.cur])
        assert self.c.cmd("DEL", *keys) == want
        for k in keys:
            self.dbs[self.cur].pop(k, None)

    def expire(self, key, ttl):
        assert self.c.cmd("EXPIRE", key, ttl) == 1
        v, _ = self.dbs[self.cur][key]
        self.dbs[self.cur][key] = (v, ttl)

    def move(self, key, db):
        src, dst = self.dbs[self.cur], self.dbs[db]
        want = 1 if key in src and key not in dst else 0
        assert self.c.cmd("MOVE", key, db) == want, (key, self.cur, db)
        if want:
            dst[key] = src.pop(key)

    def flushdb(self, *mode):
        assert self.c.cmd("FLUSHDB", *mode) == St("OK")
        self.dbs[self.cur] = {}

    def flushall(self):
        assert self.c.cmd("FLUSHALL") == St("OK")
        self.dbs = {d: {} for d in self.dbs}

    def swapdb(self, a, b):
        assert self.c.cmd("SWAPDB", a, b) == St("OK")
        self.dbs[a], self.dbs[b] = self.dbs[b], self.dbs[a]

    def check(self, c, when):
        """Every database of the server behind c holds what the model says."""
        for db, want in sorted(self.dbs.items()):
            select(c, db)
            got = dump_db(c)
            enc = {k.encode(): v for k, v in want.items()}
            missing = sorted(set(enc) - set(got))
            extra = sorted(set(got) - set(enc))
            assert not missing and not extra, "%s, database %d: missing %r, unexpected %r" % (
                when, db, missing[:10], extra[:10])
            for k, (v, ttl) in enc.items():
                gv, gt = got[k]
                assert gv == v.encode(), "%s, database %d, %r: %r, expected %r" % (
                    when, db, k, gv, v)
                if ttl is None:
                    assert gt == -1, "%s, database %d, %r: PTTL %r, expected none" % (
                        when, db, k, gt)
                else:
                    assert ttl * 1000 - 120000 < gt <= ttl * 1000, \
                        "%s, database %d, %r: PTTL %r, expected about %ds" % (
                            when, db, k, gt, ttl)
            assert c.cmd("DBSIZE") == len(want), (when, db)
        ks = keyspace(c)
        assert {db: n for db, (n, _) in ks.items()} == {
            db: len(w) for db, w in self.dbs.items() if w}, (when, ks)
        assert {db: e for db, (_, e) in ks.items()} == {
            db: sum(1 for v in w.values() if v[1]) for db, w in self.dbs.items() if w}, \
            (when, ks)


def first_writes(m):
    """Keys (some with TTLs, the same names in several databases) into databases 0, 1, 2,
    5 and 9, then MOVEs out of database 1."""
    for db in (0, 1, 2, 5, 9):
        m.select(db)
        m.mset([("k:%d" % i, "d%d-%d" % (db, i)) for i in range(N)])
        m.set_many([("t:%d" % i, "ttl%d-%d" % (db, i)) for i in range(40)], ttl=1000 + db)
        m.set_many([("own:%d:%d" % (db, i), "x") for i in range(10)])
    m.select(1)
    for i in range(20):
        m.move("k:%d" % i, 3)  # into an empty database: 1
    for i in range(10):
        m.move("t:%d" % i, 3)  # with their TTL
    m.move("k:25", 2)  # present in 2: 0
    m.move("absent", 4)  # absent: 0
    m.select(3)
    m.move("k:0", 0)  # present in 0: 0


def later_writes(m):
    m.select(2)
    m.flushdb()
    m.swapdb(0, 5)
    m.select(0)  # what was database 5
    m.mset([("after:%d" % i, "a%d" % i) for i in range(50)])
    m.delete(["k:%d" % i for i in range(30, 60)])
    m.expire("k:100", 3000)
    m.select(5)
    m.set_many([("in5:%d" % i, "v") for i in range(20)], ttl=2000)
    m.swapdb(9, 12)  # with an empty database
    m.select(12)
    m.move("k:7", 2)
    m.select(1)
    m.move("k:150", 14)


def test_databases_survive_kill9(kvds):
    k = kvds()
    c = k.client()
    m = Model(c)
    first_writes(m)
    later_writes(m)
    m.check(c, "before the kill")
    c.close()
    k.kill9()
    k2 = k.restart()
    kvds.track(k2)
    with k2.client() as c2:
        m.c = c2
        m.check(c2, "after kill -9 and restart")
        # FLUSHALL, then new keys in a few databases, a SWAPDB and a MOVE
        m.flushall()
        m.select(6)
        m.mset([("new:%d" % i, "6") for i in range(N)])
        m.set_many([("nt:%d" % i, "t") for i in range(20)], ttl=900)
        m.swapdb(6, 0)
        m.select(13)
        m.set_many([("k:%d" % i, "13") for i in range(30)])
        m.move("k:3", 0)
        m.check(c2, "after more writes")
    k2.kill9()
    k3 = k2.restart()
    kvds.track(k3)
    with k3.client() as c3:
        m.check(c3, "after the second kill -9")
    k3.stop()


def test_databases_survive_kill9_with_a_snapshot_between(kvds):
    k = kvds()
    c = k.client()
    m = Model(c)
    first_writes(m)
    assert c.cmd("SAVE") == St("OK")
    later_writes(m)
    m.check(c, "before the kill")
    c.close()
    k.kill9()
    k2 = k.restart()
    kvds.track(k2)
    with k2.client() as c2:
        m.c = c2
        m.check(c2, "after kill -9 and restart")
        # a snapshot of the recovered state, more changes, another crash
        assert c2.cmd("SAVE") == St("OK")
        m.select(14)
        m.flushdb("ASYNC")
        m.swapdb(3, 0)
        m.select(3)
        m.set_many([("late:%d" % i, "l") for i in range(30)], ttl=4000)
        m.move("late:0", 15)
    k2.kill9()
    k3 = k2.restart()
    kvds.track(k3)
    with k3.client() as c3:
        m.check(c3, "after the second kill -9")
    k3.stop()


# ---------------------------------------------------------------------------------------
# redis-py, --databases

def test_redis_py_with_db_9(kvd):
    r0 = redis.Redis(host="127.0.0.1", port=kvd.port, db=0)
    r9 = redis.Redis(host="127.0.0.1", port=kvd.port, db=9)
    try:
        assert r0.flushall()
        assert r9.set("plain", "9")
        assert r9.get("plain") == b"9"
        assert r9.mset({"k:%d" % i: i for i in range(N)})
        assert r9.mget(["k:%d" % i for i in range(N)]) == [b"%d" % i for i in range(N)]
        with r9.pipeline(transaction=False) as p:
            for i in range(N):
                p.set("p:%d" % i, i)
                p.incr("p:%d" % i)
            assert p.execute() == [x for i in range(N) for x in (True, i + 1)]
        assert r9.mget(["p:%d" % i for i in range(N)]) == [b"%d" % (i + 1) for i in range(N)]
        for tag in TAGS:
            with r9.pipeline(transaction=True) as p:
                p.set("{%s}a" % tag, "x")
                p.incr("{%s}n" % tag)
                p.get("{%s}a" % tag)
                assert p.execute() == [True, 1, b"x"]

        def incr(pipe):
            v = int(pipe.get("{w}counter") or 0)
            pipe.multi()
            pipe.set("{w}counter", v + 1)

        for _ in range(20):
            r9.transaction(incr, "{w}counter")
        assert r9.get("{w}counter") == b"20"
        want = 1 + 2 * N + 2 * len(TAGS) + 1
        assert r9.dbsize() == want
        # nothing of it in database 0
        assert r0.dbsize() == 0
        assert r0.get("plain") is None and r0.get("{w}counter") is None
        assert r0.mget(["k:%d" % i for i in range(N)]) == [None] * N
        assert r0.keys("*") == []
        with Client(kvd.port) as c:
            select(c, 9)
            assert c.cmd("DBSIZE") == want
            assert c.cmd("GET", "{w}counter") == b"20"
            assert keyspace(c) == {9: (want, 0)}
        assert r9.flushdb()
        assert r9.dbsize() == 0
    finally:
        r0.close()
        r9.close()


@pytest.mark.parametrize("n", [4, 1])
def test_databases_setting(kvd_factory, redis_factory, n):
    k = kvd_factory(args=["--databases", str(n)])
    r = redis_factory(["--databases", str(n)])
    with k.client() as kc, r.client() as rc:
        def same(*args):
            kc.send(encode(*args))
            kv, kraw = kc.read_both()
            rc.send(encode(*args))
            _, rraw = rc.read_both()
            assert kraw == rraw, "reply to %r differs:\n  kvd:   %r\n  redis: %r" % (
                args, kraw, rraw)
            return kv

        assert same("CONFIG", "GET", "databases") == [b"databases", str(n).encode()]
        last = n - 1
        assert same("SELECT", last) == St("OK")
        assert same("SELECT", n) == Err("ERR DB index is out of range")
        assert same("SELECT", 16) == Err("ERR DB index is out of range")
        assert same("SET", "x", "in-last") == St("OK")
        assert same("MOVE", "x", n) == Err("ERR DB index is out of range")
        assert same("SWAPDB", 0, n) == Err("ERR DB index is out of range")
        assert same("SWAPDB", n, 0) == Err("ERR DB index is out of range")
        assert same("SET", "{c}s", "v") == St("OK")
        assert same("COPY", "{c}s", "{c}d", "DB", n) == Err("ERR DB index is out of range")
        if n > 1:
            assert same("MOVE", "x", 0) == 1
            assert same("COPY", "{c}s", "{c}s", "DB", 0) == 1
            assert same("SWAPDB", 0, last) == St("OK")
            assert same("GET", "x") == b"in-last"
            assert same("SELECT", 0) == St("OK")
        else:
            assert same("MOVE", "x", 0) == Err("ERR source and destination objects are the same")
            assert same("SWAPDB", 0, 0) == St("OK")
        assert same("DBSIZE") == (1 if n > 1 else 2)
        assert keyspace(kc) == keyspace(rc)
        assert same("FLUSHALL") == St("OK")
        assert keyspace(kc) == {}


# ---------------------------------------------------------------------------------------
# whole-keyspace commands inside MULTI, SWAPDB at one instant, reads that make no table

def test_whole_keyspace_commands_inside_multi_match_redis(pair):
    """DBSIZE, KEYS, RANDOMKEY, FLUSHDB, FLUSHALL and SWAPDB queue and run inside MULTI as
    in Redis (each on every shard thread; KEYS compared as a set), with their errors."""
    k, r = pair.k, pair.r
    for c in (k, r):
        assert c.cmd("MSET", *sum([["k%d" % i, "v%d" % i] for i in range(40)], [])) == St("OK")
        select(c, 1)
        assert c.cmd("SET", "only1", "x") == St("OK")
        select(c, 0)
    script = [("MULTI",), ("DBSIZE",), ("KEYS", "k1*"), ("SWAPDB", "0", "1"), ("DBSIZE",),
              ("RANDOMKEY",), ("GET", "only1"), ("SWAPDB", "0", "x"), ("SWAPDB", "0", "16"),
              ("FLUSHALL", "bad"), ("SELECT", "1"), ("DBSIZE",), ("FLUSHDB",), ("DBSIZE",),
              ("SELECT", "0"), ("DBSIZE",), ("EXEC",)]
    got = {}
    for name, c in (("k", k), ("r", r)):
        got[name] = [c.cmd(*cmd) for cmd in script]
    gk, gr = got["k"], got["r"]
    assert gk[:-1] == gr[:-1]  # +OK and +QUEUED
    ek, er = gk[-1], gr[-1]
    assert len(ek) == len(er) == 15
    assert sorted(ek[1]) == sorted(er[1])  # KEYS: a set
    for i in (0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14):
        assert ek[i] == er[i], (i, script[i + 1], ek[i], er[i])
    for c in (k, r):  # the connection stayed in database 0; db 1 was flushed
        assert c.cmd("DBSIZE") == 1 and c.cmd("GET", "only1") == b"x"
        select(c, 1)
        assert c.cmd("DBSIZE") == 0
        select(c, 0)
    pair.same("MULTI")
    pair.same("FLUSHALL", "ASYNC")
    pair.same("DBSIZE")
    pair.same("EXEC")


def test_swapdb_is_seen_at_one_instant(kvd):
    """Database 0 holds A in 48 keys (both shard threads), database 1 B in the same keys.
    While one client swaps them over and over, transactions reading all 48 keys see all A
    or all B, never a mix (a SWAPDB half done on one thread would show one)."""
    keys = ["k%d" % i for i in range(48)]
    with kvd.client() as c:
        assert c.cmd("MSET", *sum([[x, "A"] for x in keys], [])) == St("OK")
        select(c, 1)
        assert c.cmd("MSET", *sum([[x, "B"] for x in keys], [])) == St("OK")
    stop = []
    swaps = [0]

    def swapper():
        with kvd.client() as s:
            while not stop:
                assert s.cmd("SWAPDB", "0", "1") == St("OK")
                swaps[0] += 1

    t = threading.Thread(target=swapper)
    t.start()
    seen = set()
    try:
        with kvd.client() as rd:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and len(seen) < 2 or swaps[0] < 50:
                vals = rd.pipeline([("MULTI",), ("MGET", *keys), ("EXEC",)])[-1][0]
                assert len(set(vals)) == 1, vals
                seen.add(vals[0])
                # (the cross-shard transaction lock is not fair: a reader that never
                # pauses left a sanitized, loaded run 42 swaps in 13 s)
                time.sleep(0.001)
                if time.monotonic() > deadline + 10:
                    break
    finally:
        stop.append(1)
        t.join()
    assert seen == {b"A", b"B"} and swaps[0] >= 50, (seen, swaps)


def test_reads_in_unused_databases_make_no_tables(kvd):
    """Reads (GET, EXISTS, TTL, EXPIRE of a missing key, WATCH, DEL of a missing key) in
    databases nobody wrote to leave memory as it was: a table is made by a write only."""
    def used(c):
        info = c.cmd("INFO", "memory").decode()
        return int(re.search(r"used_memory:(\d+)", info).group(1))

    with kvd.client() as c:
        assert c.cmd("FLUSHALL") == St("OK")
        time.sleep(0.2)
        before = used(c)
        for db in range(1, 16):
            select(c, db)
            for i in range(20):
                key = "r%d" % i
                assert c.cmd("GET", key) is None
                assert c.cmd("EXISTS", key) == 0
                assert c.cmd("TTL", key) == -2
                assert c.cmd("EXPIRE", key, "10") == 0
                assert c.cmd("DEL", key) == 0
            assert c.cmd("WATCH", "r1", "r2") == St("OK")
            assert c.cmd("UNWATCH") == St("OK")
        select(c, 0)
        time.sleep(0.2)
        after = used(c)
        # one table is 8 KiB: 15 databases x 8 partitions would be ~1 MiB
        assert after - before < 32 * 1024, (before, after)
        assert c.cmd("INFO", "keyspace") == b"# Keyspace\r\n"


def test_failed_exec_with_select_keeps_the_database(pair):
    """WATCH, a change by another client, MULTI with SELECT, EXEC: the null reply, and the
    connection stays in its database, as in Redis; the commands pipelined after EXEC run
    there too. Keys of 8 partitions: the watched shard is this one or the other."""
    for tag in ["{t%d}" % i for i in range(8)]:
        got = []
        for c, o in ((pair.k, pair.kvd.client()), (pair.r, pair.redis.client())):
            try:
                assert c.cmd("WATCH", tag + "x") == St("OK")
                assert o.cmd("INCR", tag + "x") >= 1
                got.append(c.pipeline([("MULTI",), ("SELECT", "5"), ("SET", tag + "y", "1"),
                                       ("EXEC",), ("SET", tag + "after", "1"),
                                       ("CLIENT", "INFO")]))
                select(c, 0)
                assert c.cmd("EXISTS", tag + "after") == 1, tag  # ran in database 0
                assert c.cmd("DEL", tag + "after", tag + "x") == 2
            finally:
                o.close()
        k, r = got
        assert k[:5] == r[:5] == [St("OK"), St("QUEUED"), St("QUEUED"), None, St("OK")], (k, r)
        assert b" db=0 " in k[5] and b" db=0 " in r[5], (k[5], r[5])
