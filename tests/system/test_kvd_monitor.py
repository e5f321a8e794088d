"""MONITOR of kvd (--threads 2), against Redis 7 where the behaviour is the same:

- each command's line (time, database, client address, quoted arguments with C escapes),
  normalized for time and address, byte-compared with Redis for a sequence with binary
  arguments, AUTH and HELLO AUTH (redacted), a transaction, a script and its commands
  ([db lua]), SELECT (the new database), admin commands and unknown ones (not shown);
- the monitor's own commands show after their reply; RESET ends monitoring;
- commands of clients on both threads reach monitors on either thread;
- CLIENT LIST flag O; a closed monitor is forgotten; MONITOR refused by EXEC inside MULTI.
"""
import re
import time

from conftest import Client, Err, St, encode

LINE = re.compile(rb"^(\d+)\.(\d{6}) \[(\d+) ([^\]]+)\] (.*)$")


def lines(m, wait=0.4):
    out = []
    while True:
        v = m.next_within(wait)
        if v is None:
            return out
        out.append(v)


def normal(v):
    """A monitor line without its time and the client's port."""
    if not isinstance(v, St):
        return v
    g = LINE.match(v.s.encode("latin-1"))
    assert g, v
    who = g.group(4) if g.group(4) == b"lua" else b"client"
    return (int(g.group(3)), who, g.group(5))


def session(port):
    m, c = Client(port), Client(port)
    assert m.cmd("MONITOR") == St("OK")
    c.cmd("SET", "foo", b"bar\n\x01\xc3\xa9\"\\")
    c.cmd("GET", "foo")
    c.cmd("AUTH", "x")
    c.cmd("HELLO", "2", "AUTH", "default", "pw")
    c.cmd("MULTI")
    c.cmd("SET", "a{t}", "1")
    c.cmd("INCR", "b{t}")
    c.cmd("EXEC")
    c.cmd("MULTI")
    c.cmd("NOSUCHCOMMAND")
    c.cmd("EXEC")
    c.cmd("EVAL", "redis.call('set', KEYS[1], 'y'); return redis.call('get', KEYS[1])", "1",
          "x")
    c.cmd("SELECT", "3")
    c.cmd("PING")
    c.cmd("SELECT", "0")
    c.cmd("CONFIG", "SET", "maxmemory", "0")
    c.cmd("CLIENT", "LIST")
    c.cmd("SET", "k")  # an arity error: never ran
    out = [normal(v) for v in lines(m)]
    assert m.cmd("PING") == St("PONG")  # its own: the reply first
    own = [normal(v) for v in lines(m)]
    assert m.cmd("RESET") == St("RESET")
    c.cmd("SET", "after", "reset")
    rest = lines(m)
    m.close()
    c.close()
    return out, own, rest


def test_lines_match_redis(pair):
    k = session(pair.kvd.port)
    r = session(pair.redis.port)
    assert k == r
    out, own, rest = k
    assert (0, b"client", b'"AUTH" "(redacted)"') in out
    assert (0, b"lua", b'"set" "x" "y"') in out
    assert (3, b"client", b'"PING"') in out
    assert own == [(0, b"client", b'"PING"')] and rest == []


def test_commands_of_every_thread_reach_every_monitor(kvd, groups):
    a, b = groups
    mons = [Client(kvd.port) for _ in range(4)]
    for m in mons:
        assert m.cmd("MONITOR") == St("OK")
    cs = [Client(kvd.port) for _ in range(4)]
    for i, c in enumerate(cs):
        c.cmd("SET", a[i], "v")
        c.cmd("GET", b[i])
    want = sorted([b'"SET" "%s" "v"' % a[i].encode() for i in range(4)] +
                  [b'"GET" "%s"' % b[i].encode() for i in range(4)])
    for m in mons:
        got = sorted(normal(v)[2] for v in lines(m))
        assert got == want
    # a client's own commands stay in its order for a monitor
    cs[0].send(b"".join(encode("INCR", "ctr") for _ in range(50)))
    assert [cs[0].read() for _ in range(50)] == list(range(1, 51))
    for m in mons:
        assert [normal(v)[2] for v in lines(m)] == [b'"INCR" "ctr"'] * 50
    line = [x for x in cs[0].cmd("CLIENT", "LIST").decode().splitlines()
            if "cmd=monitor" in x]
    assert len(line) == 4 and all(" flags=O " in x for x in line), line
    for m in mons:
        m.close()
    time.sleep(0.2)
    cs[0].cmd("SET", "x", "y")  # no monitor left: nothing to deliver, nothing breaks
    assert cs[0].cmd("PING") == St("PONG")
    for c in cs:
        c.close()
    kvd.check_alive()


def test_monitor_refused_in_multi(kvd):
    """Queued, then refused by EXEC as Redis does; the connection is no monitor after."""
    c = Client(kvd.port)
    assert c.cmd("MULTI") == St("OK")
    assert c.cmd("MONITOR") == St("QUEUED")
    assert c.cmd("EXEC") == [Err("ERR MONITOR isn't allowed for DENY BLOCKING client")]
    flags = c.cmd("CLIENT", "INFO").split(b"flags=")[1].split(b" ")[0]
    assert b"O" not in flags, flags
    assert c.cmd("PING") == St("PONG")
    c.close()


def test_monitor_that_resets_and_leaves(kvd):
    """A monitor's RESET (shown to the others, not to itself) then its departure, while
    another monitor keeps going: nothing of the first is kept."""
    m1, m2, c = Client(kvd.port), Client(kvd.port), Client(kvd.port)
    assert m1.cmd("MONITOR") == St("OK") and m2.cmd("MONITOR") == St("OK")
    assert m1.cmd("RESET") == St("RESET")
    m1.close()
    assert [normal(v)[2] for v in lines(m2)] == [b'"RESET"']
    assert m2.cmd("PING") == St("PONG")
    c.cmd("SET", "k", "v")
    got = [normal(v)[2] for v in lines(m2)]
    assert got == [b'"PING"', b'"SET" "k" "v"'], got
    m2.close()
    c.close()
    kvd.check_alive()
