"""client-output-buffer-limit, as Redis's (its unit/obuf-limits, which cannot run against
an external server, redone here):

- the setting's format: "<class> <hard> <soft> <seconds>" groups for normal, replica
  (slave) and pubsub, each changing only the class it names, CONFIG GET showing all
  three in bytes, every error text, against Redis 7; redis.conf's three lines at start;
- the hard limit: a reply (or pipeline of replies, or fan-out part) past it closes the
  client with nothing of it sent; a subscriber past the pubsub class's limit is closed;
- the soft limit: a subscriber over it for longer than its seconds is closed, also when
  no more traffic comes (the timer), and not before;
- a CONFIG SET applies to clients already connected.
"""
import socket
import time

import pytest

from conftest import Client, Kvd, St, encode, info_field

DEFAULT_REDIS = b"normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"


def obuf(c):
    r = c.cmd("CONFIG", "GET", "client-output-buffer-limit")
    return r[1]


def test_format_and_errors_match_redis(pair):
    for c in (pair.k, pair.r):
        assert c.cmd("CONFIG", "SET", "client-output-buffer-limit",
                     "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60") == \
            St("OK")
    assert obuf(pair.k) == obuf(pair.r) == DEFAULT_REDIS
    for value in ["normal 100000 0 0",  # one class: the others stay
                  "pubsub 1mb 512kb 30",  # units
                  "replica 1gb 64m 10 NORMAL 5k 1k 2",  # replica = slave, any case
                  "normal 1 2 3 normal 4 5 6",  # the last one wins
                  "  normal   7 8 9  ",  # spaces
                  "normal 0 0 0"]:
        pair.same("CONFIG", "SET", "client-output-buffer-limit", value)
        assert obuf(pair.k) == obuf(pair.r), value
    for bad in ["normal 1 2", "normal 1 2 3 pubsub", "master 1 2 3", "nosuch 1 2 3",
                "normal x 0 0", "normal 1 y 0", "normal 1 2 z", "normal 1 2 -3",
                "normal -1 0 0", "normal 1 2 3.5", "", "normal 1 2 3 slave 1 2"]:
        pair.same("CONFIG", "SET", "client-output-buffer-limit", bad)
        assert obuf(pair.k) == obuf(pair.r), bad
    pair.same("CONFIG", "SET", "client-output-buffer-limit", "normal 0 0 0")


def test_kvd_default_bounds_normal_clients(kvd_factory):
    """kvd's one difference: a normal client's hard limit is 256 MB by default."""
    with kvd_factory().client() as c:
        assert obuf(c) == b"normal 268435456 0 0 slave 268435456 67108864 60 " \
                          b"pubsub 33554432 8388608 60"


def test_redis_conf_lines_at_start(tmp_path):
    conf = tmp_path / "kvd.conf"
    conf.write_text("client-output-buffer-limit normal 0 0 0\n"
                    "client-output-buffer-limit replica 256mb 64mb 60\n"
                    "client-output-buffer-limit pubsub 32mb 8mb 60\n")
    k = Kvd(args=["--config", str(conf)])
    try:
        with k.client() as c:
            assert obuf(c) == DEFAULT_REDIS
    finally:
        k.stop()
    conf.write_text("client-output-buffer-limit pubsub 1mb 0 0\n")  # one class: the rest kept
    k = Kvd(args=["--config", str(conf)])
    try:
        with k.client() as c:
            assert obuf(c) == b"normal 268435456 0 0 slave 268435456 67108864 60 " \
                              b"pubsub 1048576 0 0"
    finally:
        k.stop()
    k = Kvd(args=["--client-output-buffer-limit", "normal 1 2"], ready=False)
    assert k.proc.wait(timeout=30) != 0
    assert "Wrong number of arguments in buffer limit configuration" in k.stderr()
    k.stop(check=False)


@pytest.fixture
def port(either):
    """Each test on kvd and on Redis, normal clients' limit reset after it."""
    yield either
    with Client(either) as c:
        assert c.cmd("CONFIG", "SET", "client-output-buffer-limit",
                     "normal 0 0 0 pubsub 32mb 8mb 60") == St("OK")


def closed_with_nothing(c, timeout=10):
    return c.closed_within(timeout) and c.pending_bytes() == b""


def test_hard_limit_closes_with_nothing_sent(port):
    """One reply, a pipeline of them and an EXEC's: past the limit the client is closed
    and gets no byte of them (Redis's obuf-limits tests with strings); a transaction
    still runs whole."""
    with Client(port) as r:
        r.cmd("FLUSHALL")
        assert r.cmd("CONFIG", "SET", "client-output-buffer-limit", "normal 100000 0 0") == \
            St("OK")
        r.cmd("SET", "bigkey", "x" * 10000)
        r.cmd("SET", "huge", "y" * 200000)
        r.pipeline([("SET", "long-key-name-%0100d" % i, "1") for i in range(1000)])
        for cmd in [encode("GET", "huge"), encode("KEYS", "*"),
                    encode("MGET", *["bigkey"] * 15),
                    b"".join(encode("SET", str(i), str(i)) + encode("GET", str(i)) +
                             encode("DEL", str(i)) + encode("GET", "bigkey") for i in range(15))]:
            c = Client(port)
            c.send(cmd)
            assert closed_with_nothing(c), cmd[:40]
            c.close()
        r.cmd("SET", "k1", "v1")
        c = Client(port)
        c.send(encode("MULTI") + encode("SET", "k2", "v2") + encode("GET", "huge") +
               encode("SET", "k3", "v3") + encode("DEL", "k1") + encode("EXEC"))
        assert c.closed_within(10)
        c.close()
        assert r.cmd("GET", "k1") is None
        assert r.cmd("GET", "k2") == b"v2"
        assert r.cmd("GET", "k3") == b"v3"
        assert r.cmd("GET", "bigkey") == b"x" * 10000  # the server goes on


def test_config_set_applies_to_connected_clients(port):
    with Client(port) as r, Client(port) as c:
        r.cmd("SET", "huge", "y" * 200000)
        assert c.cmd("GET", "huge") == b"y" * 200000
        assert r.cmd("CONFIG", "SET", "client-output-buffer-limit", "normal 100000 0 0") == \
            St("OK")
        c.send(encode("GET", "huge"))
        assert closed_with_nothing(c)


def fill_subscriber(publisher, channel, until):
    """Publishes 1000-byte messages to channel until `until(omem)` holds for the
    subscriber (named on CLIENT LIST), or the subscriber is gone: its last omem, or None
    when gone."""
    msg = "x" * 1000
    for _ in range(20000):
        publisher.cmd("PUBLISH", channel, msg)
        line = [x for x in publisher.cmd("CLIENT", "LIST").decode().split("\n")
                if "name=slowsub" in x]
        if not line:
            return None
        omem = int(line[0].split("omem=")[1].split(" ")[0])
        if until(omem):
            return omem
    raise AssertionError("the subscriber's output never grew")


def slow_subscriber(port, channel):
    """A subscriber (named slowsub) that never reads, with a small receive buffer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(encode("CLIENT", "SETNAME", "slowsub") + encode("SUBSCRIBE", channel))
    time.sleep(0.1)
    return s


def test_pubsub_hard_limit(port):
    with Client(port) as r:
        assert r.cmd("CONFIG", "SET", "client-output-buffer-limit", "pubsub 100000 0 0") == \
            St("OK")
        s = slow_subscriber(port, "foo")
        try:
            seen = []
            assert fill_subscriber(r, "foo", lambda m: seen.append(m) or False) is None
            assert max(seen) < 100000 + 2000  # closed at the limit, never far past it
        finally:
            s.close()


@pytest.mark.parametrize("keep_publishing", [True, False])
def test_pubsub_soft_limit(port, keep_publishing):
    """Over the soft limit for longer than its 2 seconds: closed, whether messages keep
    coming or not (the timer); not within the first second."""
    with Client(port) as r:
        assert r.cmd("CONFIG", "SET", "client-output-buffer-limit",
                     "pubsub 0 100000 2") == St("OK")
        s = slow_subscriber(port, "foo")
        try:
            assert fill_subscriber(r, "foo", lambda m: m > 100000) is not None
            t0 = time.monotonic()
            gone_at = None
            while time.monotonic() - t0 < 6:
                if keep_publishing:
                    r.cmd("PUBLISH", "foo", "x" * 1000)
                if b"name=slowsub" not in r.cmd("CLIENT", "LIST"):
                    gone_at = time.monotonic() - t0
                    break
                time.sleep(0.02)
            assert gone_at is not None, "still connected 6 s over the soft limit"
            assert gone_at > 1.0, gone_at
        finally:
            s.close()


def test_info_counts_disconnections(kvd_factory):
    k = kvd_factory(args=["--client-output-buffer-limit", "normal 1mb 0 0"])
    with k.client() as c:
        c.cmd("SET", "big", "x" * (2 << 20))
        for _ in range(3):
            v = k.client()
            v.send(encode("GET", "big"))
            assert closed_with_nothing(v)
            v.close()
        assert info_field(c, "stats", "client_output_buffer_limit_disconnections") == "3"
        assert c.cmd("CONFIG", "RESETSTAT") == St("OK")
        assert info_field(c, "stats", "client_output_buffer_limit_disconnections") == "0"
