"""HyperLogLog: PFADD, PFCOUNT, PFMERGE against redis-server, reply for reply and byte for
byte (GET of the value), with keys on one thread and across both."""
import pytest

from conftest import Err, St, crash_restart, keymap


def elements(prefix, n):
    return ["%s-%d" % (prefix, i) for i in range(n)]


def test_pfadd_pfcount_same_bytes_as_redis_sparse_then_dense(pair, rng):
    assert pair.same("PFADD", "h") == 1  # no elements: made, 1
    assert pair.same("PFADD", "h") == 0
    pair.same("GET", "h")
    total = 0
    for step in (1, 5, 50, 300, 1000, 5000):
        batch = elements("e%d" % step, step)
        rng.shuffle(batch)
        for i in range(0, len(batch), 97):
            pair.same("PFADD", "h", *batch[i:i + 97])
        total += step
        pair.same("PFCOUNT", "h")
        pair.same("GET", "h")  # sparse, its cache, then dense: the same bytes
        pair.same("PFCOUNT", "h")  # from the cache
        pair.same("GET", "h")
    assert pair.same("PFADD", "h", "e1-0") == 0  # already counted
    count = pair.k.cmd("PFCOUNT", "h")
    assert abs(count - total) < total * 0.02, (count, total)


def test_pfcount_of_the_same_elements_one_by_one(pair):
    for i in range(2000):
        assert pair.same("PFADD", "one", "x%d" % (i * 7919)) in (0, 1)
        if i % 250 == 0:
            pair.same("PFCOUNT", "one")
            pair.same("GET", "one")
    pair.same("GET", "one")


@pytest.mark.parametrize("spread", ["one-thread", "across"])
def test_pfmerge_and_pfcount_of_several_keys(pair, groups, spread):
    m = keymap(groups)
    if spread == "one-thread":
        a, b, c, d = m["A0"], m["A1"], m["A2"], m["A3"]
    else:
        a, b, c, d = m["A0"], m["B0"], m["A1"], m["B1"]
    pair.same("PFADD", a, *elements("a", 100))
    pair.same("PFADD", b, *elements("b", 3000))  # dense
    pair.same("PFADD", c, *elements("a", 50) + elements("c", 20))
    pair.same("PFCOUNT", a, b, c)
    pair.same("PFCOUNT", a, c, "nokey")
    assert pair.same("PFMERGE", d, a, c) == St("OK")  # sparse sources: sparse result
    pair.same("GET", d)
    pair.same("PFCOUNT", d)
    pair.same("PFMERGE", d, b)  # a dense source: dense result
    pair.same("GET", d)
    pair.same("PFCOUNT", d)
    pair.same("PFMERGE", "fresh")  # no source: an empty HLL
    pair.same("GET", "fresh")
    pair.same("PFMERGE", a, a)  # itself
    pair.same("GET", a)


def test_pfmerge_keeps_the_destination_ttl(pair, groups):
    m = keymap(groups)
    for dest, src in ((m["A0"], m["A1"]), (m["A2"], m["B0"])):
        pair.same("PFADD", src, "x", "y")
        pair.same("PFADD", dest, "z")
        pair.same("EXPIRE", dest, 1000)
        pair.same("PFMERGE", dest, src)
        k_ttl, r_ttl = pair.both("TTL", dest)
        assert 990 <= k_ttl <= 1000 and 990 <= r_ttl <= 1000
        pair.same("PFADD", dest, "w")
        assert 990 <= pair.k.cmd("TTL", dest) <= 1000
        pair.same("PFDEBUG", "TODENSE", dest)  # a dense value changes in place
        pair.same("PFADD", dest, "v", "w")
        pair.same("GET", dest)
        assert 990 <= pair.k.cmd("TTL", dest) <= 1000


def test_errors_match_redis(pair, groups):
    m = keymap(groups)
    pair.same("SET", "str", "hello")
    pair.same("PFADD", "str", "x")
    pair.same("PFCOUNT", "str")
    pair.same("PFMERGE", "dst", "str")
    pair.same("PFADD")
    pair.same("PFCOUNT")
    pair.same("PFMERGE")
    # a header that says dense, of the wrong length
    pair.same("SET", "bad", b"HYLL\x00\x00\x00\x00" + b"\x00" * 8 + b"\x00" * 10)
    pair.same("PFCOUNT", "bad")
    # a sparse list that does not cover the registers: corrupt
    pair.same("SET", "corrupt", b"HYLL\x01\x00\x00\x00" + b"\x00" * 7 + b"\x80" + b"\x7f\xff\x05")
    pair.same("PFCOUNT", "corrupt")
    pair.same("PFADD", "corrupt", "a", "b", "c")
    pair.same("PFCOUNT", "corrupt", "nokey")
    pair.same("PFMERGE", "dst2", "corrupt")
    # the same across threads
    pair.same("SET", m["B2"], "hello")
    pair.same("PFADD", m["A4"], "x")
    pair.same("PFCOUNT", m["A4"], m["B2"])
    pair.same("PFMERGE", m["A4"], m["B2"])


def test_sparse_max_bytes_setting(pair):
    for c in (pair.k, pair.r):
        assert c.cmd("CONFIG", "SET", "hll-sparse-max-bytes", "100") == St("OK")
    try:
        for i in range(0, 200, 10):
            pair.same("PFADD", "small", *elements("s%d" % i, 10))
            pair.same("GET", "small")
        pair.same("CONFIG", "GET", "hll-sparse-max-bytes")
    finally:
        for c in (pair.k, pair.r):
            c.cmd("CONFIG", "SET", "hll-sparse-max-bytes", "3000")


def test_values_restored_from_redis_bytes(pair):
    pair.r.cmd("PFADD", "src", *elements("v", 500))
    raw = pair.r.cmd("GET", "src")
    pair.k.cmd("SET", "src", raw)
    pair.same("PFCOUNT", "src")
    pair.same("PFADD", "src", *elements("w", 50))
    pair.same("GET", "src")


def test_pfadd_pfmerge_and_the_estimate_survive_kill9(kvds, groups):
    m = keymap(groups)
    k = kvds(args=["--appendfsync", "always"])
    with k.client() as c:
        c.cmd("PFADD", m["A0"], *elements("r", 400))
        c.cmd("PFADD", m["B0"], *elements("q", 3000))
        c.cmd("PFMERGE", m["A1"], m["A0"], m["B0"])
        n = c.cmd("PFCOUNT", m["A0"])  # the estimate stored in the value
        values = [c.cmd("GET", m[x]) for x in ("A0", "B0", "A1")]
    k2, c = crash_restart(kvds, k)
    with c:
        assert [c.cmd("GET", m[x]) for x in ("A0", "B0", "A1")] == values
        assert c.cmd("PFCOUNT", m["A0"]) == n
    k2.stop()


def test_pfcount_in_a_read_only_script_is_refused_as_in_redis(pair):
    pair.same("PFADD", "h", "a")
    pair.same("EVAL_RO", "return redis.call('PFCOUNT', KEYS[1])", 1, "h")
    pair.same("EVAL", "return redis.call('PFCOUNT', KEYS[1])", 1, "h")


def test_pfdebug_and_pfselftest_match_redis(pair):
    pair.same("PFADD", "h", *elements("d", 40))
    pair.same("PFDEBUG", "ENCODING", "h")
    pair.same("PFDEBUG", "DECODE", "h")
    pair.same("PFDEBUG", "GETREG", "h")  # turns it dense
    pair.same("PFDEBUG", "ENCODING", "h")
    pair.same("GET", "h")
    pair.same("PFDEBUG", "DECODE", "h")
    pair.same("PFADD", "h2", "x")
    pair.same("PFDEBUG", "TODENSE", "h2")
    pair.same("PFDEBUG", "TODENSE", "h2")
    pair.same("GET", "h2")
    pair.same("PFDEBUG", "GETREG", "nokey")
    pair.same("PFDEBUG", "NOSUCH", "h")
    pair.same("SET", "s", "x")
    pair.same("PFDEBUG", "ENCODING", "s")
    pair.same("PFDEBUG", "ENCODING")
    pair.same("PFSELFTEST")
    pair.same("PFSELFTEST", "x")


def test_corrupted_values_as_redis_detects_them(pair):
    # Redis's unit/hyperloglog cases: a tail appended, a broken magic, an unknown encoding,
    # a sparse value that says dense
    cases = [("STRLEN", b"hello"), (0, b"0123"), (4, b"x"), (4, b"\x00")]
    for at, data in cases:
        pair.same("DEL", "c")
        pair.same("PFADD", "c", "a", "b", "c")
        if at == "STRLEN":
            at = pair.k.cmd("STRLEN", "c")
        pair.same("SETRANGE", "c", at, data)
        pair.same("PFCOUNT", "c")
        pair.same("PFADD", "c", "zz")
        pair.same("PFCOUNT", "c", "other")


def test_fuzzed_values_only_give_errors(kvd, kc, rng):
    for round in range(200):
        kc.cmd("DEL", "f")
        kc.cmd("PFADD", "f", *elements("f%d" % round, rng.choice([5, 100, 3000])))
        n = kc.cmd("STRLEN", "f")
        for _ in range(rng.randrange(1, 8)):
            kc.cmd("SETRANGE", "f", rng.randrange(16, n), bytes([rng.randrange(256)]))
        for cmd in (("PFCOUNT", "f"), ("PFADD", "f", "x", "y"), ("PFCOUNT", "f", "none"),
                    ("PFMERGE", "g", "f"), ("PFDEBUG", "GETREG", "f")):
            r = kc.cmd(*cmd)
            if isinstance(r, Err):
                assert r.s.startswith(("INVALIDOBJ", "WRONGTYPE")), r
    kvd.check_alive()
