"""CLIENT PAUSE / UNPAUSE / UNBLOCK of kvd (--threads 2), each scenario run on kvd and on
Redis 7 side by side:

- WRITE holds writes, PUBLISH, EVAL and EXEC of a transaction holding one; reads, PING,
  INFO, read-only transactions and EVAL_RO go on; ALL holds everything; held clients
  count in INFO blocked_clients and show flag b; UNPAUSE or the timeout releases them, in
  order, with every reply; arity errors are replied at once;
- a second pause keeps the more restrictive kind and the later end;
- the pause starts after the transaction that asked for it;
- keys neither expire nor are evicted while paused (an expired key reads as absent), and
  expire once it is over; INFO expired_keys counts lazy expiry as Redis does;
- the error texts against Redis.
"""
import time

import pytest

from conftest import Client, St, encode, info_field, wait_until


@pytest.fixture
def port(either):
    """Each test on kvd and on Redis, with no pause before or after it."""
    with Client(either) as c:
        assert c.cmd("CLIENT", "UNPAUSE") == St("OK")
    yield either
    with Client(either) as c:
        assert c.cmd("CLIENT", "UNPAUSE") == St("OK")


def blocked(c):
    return int(info_field(c, "clients", "blocked_clients"))


def wait_blocked(c, n):
    wait_until(lambda: blocked(c) == n, 5, what="%d blocked clients" % n)


def no_reply(c, wait=0.2):
    m = c.next_within(wait)
    assert m is None, "reply while paused: %r" % (m,)


def test_write_pause_holds_writes_not_reads(port):
    r = Client(port)
    r.cmd("SET", "foo", "bar")
    assert r.cmd("CLIENT", "PAUSE", "100000", "WRITE") == St("OK")
    rd = Client(port)
    assert rd.cmd("GET", "foo") == b"bar"
    assert rd.cmd("PING") == St("PONG")
    assert b"redis_version" in rd.cmd("INFO")
    assert rd.cmd("EVAL_RO", "return redis.call('get', KEYS[1])", "1", "foo") == b"bar"
    assert rd.pipeline([("MULTI",), ("PING",), ("GET", "foo"), ("EXEC",)])[-1] == [
        St("PONG"), b"bar"]
    assert blocked(r) == 0
    writers = [Client(port) for _ in range(3)]
    for i, w in enumerate(writers):
        w.send(encode("SET", "foo%d" % i, "v%d" % i))
    pub = Client(port)
    pub.send(encode("PUBLISH", "ch", "m"))
    ev = Client(port)
    ev.send(encode("EVAL", "return 1", "0"))
    wait_blocked(r, 5)
    for w in writers:
        no_reply(w, 0.05)
    assert r.cmd("GET", "foo") == b"bar"
    # an arity error is no command to hold
    assert r.cmd("SET", "foo").s.startswith("ERR wrong number of arguments")
    assert r.cmd("CLIENT", "UNPAUSE") == St("OK")
    for w in writers:
        assert w.read() == St("OK")
    assert pub.read() == 0
    assert ev.read() == 1
    assert r.cmd("MGET", "foo0", "foo1", "foo2") == [b"v0", b"v1", b"v2"]
    wait_blocked(r, 0)
    for c in writers + [r, rd, pub, ev]:
        c.close()


def test_held_client_flag_and_its_later_commands_wait(port):
    r = Client(port)
    assert r.cmd("CLIENT", "PAUSE", "100000", "WRITE") == St("OK")
    w = Client(port)
    wid = w.cmd("CLIENT", "ID")
    w.send(encode("SET", "a", "1") + encode("GET", "a") + encode("INCR", "n"))
    wait_blocked(r, 1)
    mine = [x for x in r.cmd("CLIENT", "LIST").decode().splitlines()
            if x.startswith("id=%d " % wid)]
    assert len(mine) == 1 and " flags=b " in mine[0], mine
    no_reply(w)  # GET waits behind the held SET: replies stay in order
    assert r.cmd("CLIENT", "UNBLOCK", str(r.cmd("CLIENT", "ID"))) == 0  # nothing blocks
    assert r.cmd("CLIENT", "UNPAUSE") == St("OK")
    assert [w.read() for _ in range(3)] == [St("OK"), b"1", 1]
    w.close()
    r.close()


def test_write_transactions_and_scripts(port):
    rd = Client(port)
    assert rd.cmd("MULTI") == St("OK")
    assert rd.cmd("SET", "foo", "bar") == St("QUEUED")
    r = Client(port)
    assert r.cmd("CLIENT", "PAUSE", "60000", "WRITE") == St("OK")
    rd.send(encode("EXEC"))
    rd2 = Client(port)
    assert rd2.cmd("MULTI") == St("OK")
    rd2.send(encode("SET", "x", "1"))  # queuing a write waits too, as in Redis
    wait_blocked(r, 2)
    assert r.cmd("CLIENT", "UNPAUSE") == St("OK")
    assert rd.read() == [St("OK")]
    assert rd2.read() == St("QUEUED")
    assert rd2.cmd("EXEC") == [St("OK")]
    for c in (r, rd, rd2):
        c.close()


def test_all_pause_holds_everything_and_ends_by_itself(port):
    rd = Client(port)
    rd.cmd("SET", "foo", "bar")
    r = Client(port)
    start = time.monotonic()
    assert r.cmd("CLIENT", "PAUSE", "300", "ALL") == St("OK")
    rd.send(encode("GET", "foo"))
    no_reply(rd, 0.1)  # reads wait too
    r.send(encode("CLIENT", "PAUSE", "20", "WRITE"))  # so does its own next command
    assert rd.read() == b"bar"
    assert time.monotonic() - start >= 0.29, "released before the pause's end"
    assert r.read() == St("OK")
    rd.close()
    r.close()


def test_later_end_kept(port):
    r = Client(port)
    assert r.cmd("CLIENT", "PAUSE", "60000", "WRITE") == St("OK")
    assert r.cmd("CLIENT", "PAUSE", "10", "WRITE") == St("OK")
    time.sleep(0.1)
    rd = Client(port)
    rd.send(encode("SET", "foo", "bar"))
    wait_blocked(r, 1)
    assert r.cmd("CLIENT", "UNPAUSE") == St("OK")
    assert rd.read() == St("OK")
    rd.close()
    r.close()


def test_pause_starts_after_its_transaction(port):
    r = Client(port)
    r.pipeline([("MULTI",), ("SET", "foo1{t}", "bar"), ("CLIENT", "PAUSE", "60000", "WRITE"),
                ("SET", "foo2{t}", "bar")])
    assert r.cmd("EXEC") == [St("OK"), St("OK"), St("OK")]
    rd = Client(port)
    rd.send(encode("SET", "foo3{t}", "bar"))
    wait_blocked(r, 1)
    assert r.cmd("GET", "foo1{t}") == b"bar"
    assert r.cmd("GET", "foo2{t}") == b"bar"
    assert r.cmd("GET", "foo3{t}") is None
    assert r.cmd("CLIENT", "UNPAUSE") == St("OK")
    assert rd.read() == St("OK")
    rd.close()
    r.close()


def test_no_expiry_while_paused(port):
    r = Client(port)
    before = int(info_field(r, "stats", "expired_keys"))
    r.pipeline([("MULTI",), ("SET", "foo{t}", "bar", "PX", "10"),
                ("SET", "bar{t}", "foo", "PX", "10"), ("CLIENT", "PAUSE", "50000", "WRITE")])
    assert r.cmd("EXEC") == [St("OK"), St("OK"), St("OK")]
    time.sleep(0.3)  # a few active expiry cycles
    assert r.cmd("GET", "foo{t}") is None  # expired: absent
    assert r.cmd("GET", "bar{t}") is None
    assert int(info_field(r, "stats", "expired_keys")) == before  # but not deleted
    assert r.cmd("CLIENT", "UNPAUSE") == St("OK")
    r.cmd("GET", "foo{t}")
    r.cmd("GET", "bar{t}")
    assert int(info_field(r, "stats", "expired_keys")) == before + 2
    r.close()


def test_lazy_expiry_counts_in_expired_keys(port):
    r = Client(port)
    r.cmd("DEBUG", "SET-ACTIVE-EXPIRE", "0")  # refused by a Redis without debug: fine
    try:
        before = int(info_field(r, "stats", "expired_keys"))
        r.cmd("SET", "k", "v", "PX", "5")
        time.sleep(0.05)
        assert r.cmd("GET", "k") is None
        assert int(info_field(r, "stats", "expired_keys")) == before + 1
    finally:
        r.cmd("DEBUG", "SET-ACTIVE-EXPIRE", "1")
    r.close()


def test_errors_match_redis(pair):
    s = pair.same
    s("CLIENT", "PAUSE")
    s("CLIENT", "PAUSE", "abc")
    s("CLIENT", "PAUSE", "-1")
    s("CLIENT", "PAUSE", "10", "foo")
    s("CLIENT", "PAUSE", "10", "write", "extra")
    s("CLIENT", "PAUSE", "0", "WRITE")
    s("CLIENT", "PAUSE", "0")
    s("CLIENT", "UNPAUSE", "x")
    s("CLIENT", "UNPAUSE")
    s("CLIENT", "UNBLOCK")
    s("CLIENT", "UNBLOCK", "abc")
    s("CLIENT", "UNBLOCK", "5")
    s("CLIENT", "UNBLOCK", "5", "foo")
    s("CLIENT", "UNBLOCK", "5", "timeout")
    s("CLIENT", "UNBLOCK", "5", "ERROR")
    s("CLIENT", "UNBLOCK", "5", "error", "x")
    s("CLIENT", "PAUSE", "9999999999999999", "write")
    s("CLIENT", "UNPAUSE")


def test_paused_clients_closing(kvd):
    """Held clients that disconnect are dropped cleanly; the others run once the pause
    has timed out (under ALL the UNPAUSE of a client is held too)."""
    r = Client(kvd.port)
    assert r.cmd("CLIENT", "PAUSE", "500", "ALL") == St("OK")
    start = time.monotonic()
    gone = [Client(kvd.port) for _ in range(5)]
    for c in gone:
        c.send(encode("SET", "k", "v"))
    stay = Client(kvd.port)
    stay.send(encode("INCR", "n"))
    un = Client(kvd.port)
    un.send(encode("CLIENT", "UNPAUSE"))
    time.sleep(0.1)
    for c in gone:
        c.close()
    assert stay.read() == 1
    assert un.read() == St("OK")
    assert time.monotonic() - start >= 0.45
    assert int(info_field(r, "clients", "blocked_clients")) == 0
    assert r.cmd("GET", "k") is None  # the closed clients' commands never ran
    for c in (r, stay, un):
        c.close()


def test_held_command_keeps_client_caching_and_reply_skip(port):
    """A held command has not run: CLIENT CACHING yes still applies to it, and CLIENT REPLY
    SKIP still skips its reply, once it runs after the pause."""
    t = Client(port)
    t.cmd("HELLO", "3")
    w = Client(port)
    w.cmd("SET", "kk", "1")
    assert t.cmd("CLIENT", "TRACKING", "on", "OPTIN") == St("OK")
    assert t.cmd("CLIENT", "CACHING", "yes") == St("OK")
    assert w.cmd("CLIENT", "PAUSE", "400", "ALL") == St("OK")
    t.send(encode("GET", "kk"))
    assert t.read() == b"1"  # after the pause
    w.cmd("SET", "kk", "2")
    t.settimeout(5)
    assert t.read().items == (b"invalidate", [b"kk"])
    r = Client(port)
    assert w.cmd("CLIENT", "PAUSE", "100000", "WRITE") == St("OK")
    r.send(encode("CLIENT", "REPLY", "SKIP") + encode("SET", "k", "v1") + encode("PING"))
    wait_blocked(w, 1)
    assert w.cmd("CLIENT", "UNPAUSE") == St("OK")
    assert r.read() == St("PONG")  # SET's reply skipped, as without the pause
    assert w.cmd("GET", "k") == b"v1"
    for c in (t, w, r):
        c.close()


def test_writes_after_pause_in_the_same_packet_are_held(port):
    c = Client(port)
    c.send(encode("CLIENT", "PAUSE", "100000", "WRITE") + encode("SET", "k", "v") +
           encode("GET", "k"))
    assert c.read() == St("OK")
    other = Client(port)
    wait_blocked(other, 1)
    assert other.cmd("GET", "k") is None  # the SET has not run
    no_reply(c)
    assert other.cmd("CLIENT", "UNPAUSE") == St("OK")
    assert c.read() == St("OK")
    assert c.read() == b"v"
    c.close()
    other.close()


def test_held_clients_give_back_receive_buffers(kvd_factory):
    """More held clients than receive buffers: the others are still served, and the
    thread does not spin on an empty buffer ring."""
    k = kvd_factory(args=["--recv-buffers", "8"], threads=1)
    r = Client(k.port)
    assert r.cmd("CLIENT", "PAUSE", "100000", "WRITE") == St("OK")
    held = [Client(k.port) for _ in range(12)]
    for i, c in enumerate(held):
        c.send(encode("SET", "k%d" % i, "v"))
    wait_blocked(r, 12)
    before = int(info_field(r, "stats", "recv_buffer_exhaustions"))
    rd = Client(k.port, timeout=2)
    assert rd.cmd("GET", "k0") is None
    for c in held:  # more input from held clients waits on the heap, not in buffers
        c.send(encode("SET", "x", "y"))
    time.sleep(0.3)
    assert rd.cmd("PING") == St("PONG")
    assert int(info_field(r, "stats", "recv_buffer_exhaustions")) - before < 100
    assert r.cmd("CLIENT", "UNPAUSE") == St("OK")
    for c in held:
        assert c.read() == St("OK") and c.read() == St("OK")
        c.close()
    rd.close()
    r.close()


def test_held_client_is_not_idle(kvd_factory):
    k = kvd_factory(args=["--timeout", "1"])
    r = Client(k.port)
    assert r.cmd("CLIENT", "PAUSE", "2500", "WRITE") == St("OK")
    c = Client(k.port)
    c.send(encode("SET", "k", "v"))
    c.settimeout(10)
    assert c.read() == St("OK")  # after the pause, though idle for longer than timeout
    c.close()
    r.close()
