"""Scripts past busy-reply-threshold (lua-time-limit), as Redis 7.0's busy mode.

While a script or function has run longer than busy-reply-threshold, every other client,
on every kvd thread, gets -BUSY for all commands but those Redis allows then (SCRIPT KILL,
FUNCTION KILL, FUNCTION STATS, SHUTDOWN NOSAVE, AUTH, HELLO, MULTI, DISCARD, WATCH,
UNWATCH, QUIT, RESET, ...); the script's own client waits. Compared byte for byte with
Debian's redis-server 7.0 where both behave alike (reply texts, EXEC's EXECABORT, SHUTDOWN
without NOSAVE, UNKILLABLE, the killed script's error, a pipelined command behind the
script).

kvd only: clients of both threads are refused, the script's thread serving them from the
script's hook and a thread parked by a script across shards from its wait; a client whose
script runs on another thread is not refused; input sent by the script's own client while
it runs is kept and served after it; a client that hangs up meanwhile is closed after.
"""
import contextlib
import socket
import time

import pytest

from conftest import Client, Err, St, classify, encode, wait_until

BUSY_EVAL = Err("BUSY Redis is busy running a script. You can only call SCRIPT KILL or "
                "SHUTDOWN NOSAVE.")
BUSY_FN = Err("BUSY Redis is busy running a script. You can only call FUNCTION KILL or "
              "SHUTDOWN NOSAVE.")
LOOP = "while true do end"


def stats_field(c, section, name):
    text = c.cmd("INFO", section).decode()
    for line in text.split("\r\n"):
        if line.startswith(name + ":"):
            return line.split(":", 1)[1]
    return None


def forwarded(c):
    return int(stats_field(c, "stats", "commands_forwarded"))


def clients_by_thread(port, key, per_thread=2):
    """Fresh connections, per_thread on the thread owning `key` and per_thread on the
    other: (local, remote). The kernel spreads connections over the threads' listeners."""
    sides = ([], [])
    for _ in range(200):
        if min(len(sides[0]), len(sides[1])) >= per_thread:
            break
        c = Client(port)
        before = forwarded(c)
        c.cmd("GET", key)
        side = sides[forwarded(c) - before]
        (side.append if len(side) < per_thread else lambda _: c.close())(c)
    assert min(len(sides[0]), len(sides[1])) >= per_thread, "connections on one thread only"
    return sides


def start_busy(port, *cmd, probe=None):
    """Sends cmd from a fresh client, then waits until another client gets -BUSY."""
    runner = Client(port)
    runner.send(encode(*cmd))
    own = probe is None
    probe = probe or Client(port)
    wait_until(lambda: isinstance(probe.cmd("PING"), Err), 10, what="the script to be busy")
    if own:
        probe.close()
    return runner


def set_threshold(port, ms):
    with Client(port) as a:
        assert a.cmd("CONFIG", "SET", "busy-reply-threshold", str(ms)) == St("OK")


@contextlib.contextmanager
def busy_threshold(port, ms):
    """busy-reply-threshold at ms for the block, the default (5000) after it; yields a
    client of the server for the test's own commands."""
    admin = Client(port)
    assert admin.cmd("CONFIG", "SET", "busy-reply-threshold", str(ms)) == St("OK")
    try:
        yield admin
    finally:
        admin.cmd("CONFIG", "SET", "busy-reply-threshold", "5000")
        admin.close()


def busy_replies(port, threshold_ms=50):
    """What fresh clients get while an EVAL loops past the threshold, then how it ends."""
    with busy_threshold(port, threshold_ms) as admin:
        admin.cmd("SET", "xx", "1")
        runner = start_busy(port, "EVAL", LOOP, "0")
        out = []
        m = Client(port)  # Redis's "MULTI and script timeout": never half a transaction
        out += [(("MULTI",), m.raw("MULTI")), (("INCR", "xx"), m.raw("INCR", "xx"))]
        c = Client(port)
        for cmd in [("PING",), ("GET", "x"), ("SET", "x", "1"), ("SELECT", "0"), ("CLIENT", "LIST"),
                    ("EVAL", "return 1", "0"), ("FCALL", "f", "0"), ("FUNCTION", "STATS"),
                    ("FUNCTION", "KILL"), ("CONFIG", "GET", "port"), ("SHUTDOWN",),
                    ("SHUTDOWN", "SAVE"), ("AUTH", "pw"), ("UNWATCH",),
                    ("MULTI",), ("GET", "x"), ("SCRIPT", "FLUSH"), ("EXEC",), ("MULTI",),
                    ("DISCARD",), ("EXEC",), ("RESET",), ("PING",)]:
            c.send(encode(*cmd))
            out.append((cmd, c.read_raw()))
        c.send(encode("QUIT"))
        out.append((("QUIT",), c.read_raw()))
        assert c.closed_within(5)
        out.append((("SCRIPT", "KILL"), admin.raw("SCRIPT", "KILL")))
        out.append((("EVAL",), runner.read_raw()))
        out.append((("PING",), runner.raw("PING")))
        wait_until(lambda: admin.cmd("PING") == St("PONG"), 10, what="the busy mode to end")
        for cmd in [("INCR", "xx"), ("EXEC",), ("PING", "asdf"), ("GET", "xx")]:
            out.append((cmd, m.raw(*cmd)))
        m.close()
        runner.close()
    return out


def test_busy_replies_match_redis(kvd, redis_server):
    if redis_server is None:
        pytest.skip("redis-server not installed")
    k = busy_replies(kvd.port)
    r = busy_replies(redis_server.port)
    for (cmd, kb), (_, rb) in zip(k, r):
        assert kb == rb, "%r: kvd %r, redis %r" % (cmd, kb, rb)
    kvd.check_alive()


def test_config_names_match_redis(kvd, redis_server):
    if redis_server is None:
        pytest.skip("redis-server not installed")
    for port in (kvd.port, redis_server.port):
        with Client(port) as c:
            assert c.cmd("CONFIG", "GET", "busy-reply-threshold") == \
                [b"busy-reply-threshold", b"5000"]
            assert c.cmd("CONFIG", "SET", "lua-time-limit", "1234") == St("OK")
            assert c.cmd("CONFIG", "GET", "busy-reply-threshold") == \
                [b"busy-reply-threshold", b"1234"]
            assert c.cmd("CONFIG", "GET", "lua-time-limit") == [b"lua-time-limit", b"1234"]
            assert c.cmd("CONFIG", "SET", "busy-reply-threshold", "5000") == St("OK")


def pipelined_ping_behind_script(port):
    """Redis's "Timedout script does not cause a false dead client": EVAL and PING in one
    write; the PING is answered after the killed script's error."""
    with busy_threshold(port, 20) as admin:
        runner = Client(port)
        runner.send(encode("EVAL", "while 1 do redis.call('ping') end", "0") + encode("PING"))
        wait_until(lambda: isinstance(admin.cmd("PING"), Err), 10, what="the script to be busy")
        assert admin.cmd("PING") == BUSY_EVAL
        assert admin.cmd("SCRIPT", "KILL") == St("OK")
        killed = runner.read_raw()
        pong = runner.read_raw()
        wait_until(lambda: admin.cmd("PING") == St("PONG"), 10, what="the busy mode to end")
        runner.close()
    return killed, pong


def test_pipelined_command_behind_script_is_served_after_it(kvd, redis_server):
    k = pipelined_ping_behind_script(kvd.port)
    assert k[1] == b"+PONG\r\n"
    assert b"Script killed by user with SCRIPT KILL" in k[0]
    if redis_server is not None:
        assert k == pipelined_ping_behind_script(redis_server.port)


def unkillable_then_shutdown_nosave(server, port):
    admin = Client(port)
    admin.cmd("CONFIG", "SET", "busy-reply-threshold", "20")
    runner = start_busy(port, "EVAL", "redis.call('set', KEYS[1], 'y') " + LOOP, "1", "x")
    out = [admin.raw("SCRIPT", "KILL"), admin.raw("PING"), admin.raw("SHUTDOWN")]
    admin.send(encode("SHUTDOWN", "NOSAVE"))
    assert admin.closed_within(10)
    assert runner.closed_within(10)
    return out


def test_unkillable_script_and_shutdown_nosave_match_redis(kvd_factory, redis_factory):
    k = kvd_factory(args=["--appendonly", "no"])
    r = redis_factory()
    kout = unkillable_then_shutdown_nosave(k, k.port)
    assert k.wait_exit(30) == 0
    rout = unkillable_then_shutdown_nosave(r, r.port)
    assert kout == rout
    assert kout[0].startswith(b"-UNKILLABLE Sorry the script already executed write commands")


def function_busy(port):
    with busy_threshold(port, 20) as admin:
        admin.cmd("FUNCTION", "FLUSH")
        assert admin.cmd("FUNCTION", "LOAD", "#!lua name=busy\nredis.register_function('spin', "
                         "function() local a = 1 while true do a = a + 1 end end)") == b"busy"
        runner = start_busy(port, "FCALL", "spin", "0")
        stats = admin.cmd("FUNCTION", "STATS")
        out = [admin.raw("PING"), admin.raw("SCRIPT", "KILL"), admin.raw("EVAL", "return 1", "0")]
        out.append(admin.raw("FUNCTION", "KILL"))
        out.append(runner.read_raw())
        wait_until(lambda: admin.cmd("PING") == St("PONG"), 10, what="the busy mode to end")
        admin.cmd("FUNCTION", "FLUSH")
        runner.close()
    return stats, out


def test_function_busy_matches_redis(kvd, redis_server):
    stats, out = function_busy(kvd.port)
    running = dict(zip(stats[1][::2], stats[1][1::2]))
    assert running[b"name"] == b"spin" and running[b"command"] == [b"FCALL", b"spin", b"0"]
    assert out[0] == b"-" + BUSY_FN.s.encode() + b"\r\n"
    if redis_server is not None:
        rstats, rout = function_busy(redis_server.port)
        assert out == rout


# ---- kvd's threads --------------------------------------------------------------------

def kill_and_settle(killer, runner, clients):
    """SCRIPT KILL from killer; the runner gets the killed script's error and every client
    of clients PONG again."""
    assert killer.cmd("SCRIPT", "KILL") == St("OK")
    assert b"Script killed by user" in runner.read_raw()
    for c in clients:
        wait_until(lambda: c.cmd("PING") == St("PONG"), 10, what="PONG")


def test_clients_of_both_threads_are_refused_and_kill_works_from_either(kvd, groups):
    a, _ = groups
    with busy_threshold(kvd.port, 20):
        for side in (0, 1):
            local, remote = clients_by_thread(kvd.port, a[0])
            runner = start_busy(kvd.port, "EVAL", LOOP, "1", a[0], probe=local[0])
            for c in local + remote:
                assert c.cmd("GET", a[0]) == BUSY_EVAL
                assert c.cmd("PING") == BUSY_EVAL
            # SCRIPT KILL from the script's own thread (served by its hook), then the other
            killer = (local, remote)[side][1]
            kill_and_settle(killer, runner, local + remote)
            for c in local + remote + [runner]:
                c.close()
    kvd.check_alive()


def test_script_across_threads_parks_the_other_which_still_serves(kvd, groups):
    a, b = groups
    with busy_threshold(kvd.port, 20) as admin:
        admin.cmd("MSET", a[0], "va", b[0], "vb")
        local, remote = clients_by_thread(kvd.port, a[0])
        # both keys read first: the other thread is parked while the script loops
        runner = start_busy(kvd.port, "EVAL",
                            "redis.call('get', KEYS[1]) redis.call('get', KEYS[2]) " + LOOP,
                            "2", a[0], b[0], probe=local[0])
        for c in local + remote:
            assert c.cmd("PING") == BUSY_EVAL
        stats = remote[1].cmd("FUNCTION", "STATS")
        assert stats == BUSY_EVAL  # (as Redis while an EVAL script runs)
        kill_and_settle(remote[1], runner, local + remote)
        assert admin.cmd("MGET", a[0], b[0]) == [b"va", b"vb"]
        for c in local + remote + [runner]:
            c.close()
    kvd.check_alive()


def test_client_of_a_script_on_another_thread_waits_not_refused(kvd, groups):
    a, _ = groups
    with busy_threshold(kvd.port, 20) as admin:
        admin.cmd("DEL", a[0])
        local, remote = clients_by_thread(kvd.port, a[0])
        runner = remote[0]  # the script runs on a[0]'s thread, for a client of the other
        runner.send(encode("EVAL", LOOP, "1", a[0]) + encode("PING") + encode("GET", a[0]))
        wait_until(lambda: isinstance(local[0].cmd("PING"), Err), 10, what="busy")
        assert remote[1].cmd("PING") == BUSY_EVAL  # its thread's other clients are refused
        assert local[1].cmd("SCRIPT", "KILL") == St("OK")
        assert b"Script killed by user" in runner.read_raw()
        assert runner.read_raw() == b"+PONG\r\n"
        assert runner.read_raw() == b"$-1\r\n"
        for c in local + remote:
            c.close()
    kvd.check_alive()


def test_input_sent_during_the_script_is_served_after_it(kc, kvd):
    with busy_threshold(kvd.port, 20):
        runner = start_busy(kvd.port, "EVAL", LOOP, "0")
        # sent while the script runs: kept aside, not parsed under the script's arguments
        big = b"v" * 100000
        runner.send(encode("SET", "a", big) + encode("APPEND", "a", "w") + encode("STRLEN", "a"))
        time.sleep(0.3)
        assert kc.cmd("SCRIPT", "KILL") == St("OK")
        assert b"Script killed by user" in runner.read_raw()
        assert runner.read_raw() == b"+OK\r\n"
        assert runner.read_raw() == b":100001\r\n"
        assert runner.read_raw() == b":100001\r\n"
        runner.close()
    kvd.check_alive()


def test_script_client_hanging_up_is_closed_after_the_script(kc, kvd):
    with busy_threshold(kvd.port, 20):
        before = int(stats_field(kc, "clients", "connected_clients"))
        runner = start_busy(kvd.port, "EVAL", LOOP, "0")
        runner.sock.shutdown(socket.SHUT_RDWR)
        runner.close()
        time.sleep(0.2)
        assert kc.cmd("PING") == BUSY_EVAL
        assert kc.cmd("SCRIPT", "KILL") == St("OK")
        wait_until(lambda: kc.cmd("PING") == St("PONG"), 10, what="PONG")
        wait_until(lambda: int(stats_field(kc, "clients", "connected_clients")) == before, 10,
                   what="the script's client to be closed")
    kvd.check_alive()


def test_no_busy_mode_under_the_threshold(kvd):
    """A script shorter than the threshold (5 s by default) is not noticed by the other
    thread's clients."""
    runner = Client(kvd.port)
    runner.send(encode("EVAL", "local i = 0 while i < 3000000 do i = i + 1 end return i", "0"))
    replies = []
    deadline = time.time() + 0.2
    while time.time() < deadline:
        with Client(kvd.port) as c:
            c.settimeout(2)
            try:
                replies.append(c.cmd("PING"))
            except socket.timeout:
                pass  # a client of the script's own thread waits for it
    assert replies and all(r == St("PONG") for r in replies), replies
    assert runner.read() == 3000000
    runner.close()


# ---- interleavings: busy turns never disturb what they interrupt ---------------------

def spin(ms):
    # a script that runs ~ms milliseconds, then returns
    return ("local t = redis.call('time') local s = t[1]*1000000 + t[2] "
            "while true do local n = redis.call('time') "
            "if n[1]*1000000 + n[2] - s > %d then break end end " % (ms * 1000))


def pending_behind_busy(port, a, b, w_ms, x_script):
    """Two busy scripts and a client caught between: w's script (w_ms) on b's thread, z (a
    client of a's thread) with an EVAL pending behind it, then x's script (x_script, key
    a[0]) on a's thread; returns (w, z, x, x's client id) once both may be busy."""
    la, ra = clients_by_thread(port, a[0], per_thread=3)   # la: a's thread
    la[1].cmd("SET", a[0], "orig")
    xid = la[1].cmd("CLIENT", "ID")
    w = ra[0]                          # on b's thread: a long script there
    w.send(encode("EVAL", spin(w_ms) + "return 'w'", "1", b[0]))
    time.sleep(0.05)
    z = la[0]                          # on a's thread: its EVAL waits on b's thread
    z.send(encode("EVAL", "return 'z1'", "1", b[0]))
    time.sleep(0.05)
    x = la[1]                          # a's thread runs x's script
    x.send(encode("EVAL", x_script, "1", a[0]))
    time.sleep(0.6)                    # both busy
    return w, z, x, xid


def test_cross_shard_exec_reply_intact_when_others_refused_silently(kvd, groups):
    """A cross-shard EXEC builds its reply in the shard's scratch output while its script
    is busy; a -BUSY reply to another client of that thread (CLIENT REPLY OFF: its replies
    go through a scratch output) must not take it (busy turns use their own)."""
    a, b = groups
    with busy_threshold(kvd.port, 50):
        local, remote = clients_by_thread(kvd.port, a[0])
        x, y = local[0], local[1]          # both on a[0]'s thread
        y.send(encode("CLIENT", "REPLY", "OFF"))
        x.cmd("MULTI")
        assert x.cmd("SET", b[0], "1") == St("QUEUED")
        assert x.cmd("EVAL", spin(600) + "return 'done'", "1", a[0]) == St("QUEUED")
        x.send(encode("EXEC"))
        time.sleep(0.3)                    # the script is busy now
        y.send(encode("PING"))             # -BUSY (silent) through sh->scratch
        time.sleep(0.1)
        x.settimeout(5)
        raw = x.read_raw()
        assert raw == b"*2\r\n+OK\r\n$4\r\ndone\r\n", raw
    kvd.check_alive()


def test_remote_script_reply_keeps_its_protocol(kvd, groups):
    """A RESP2 client's EVAL forwarded to the other thread is encoded in that thread's
    scratch output; a RESP3 client refused -BUSY there meanwhile (CLIENT REPLY OFF) must
    not switch its protocol: the RESP2 client gets $-1 for false."""
    a, b = groups
    with busy_threshold(kvd.port, 50):
        local, remote = clients_by_thread(kvd.port, a[0])
        x = remote[0]                      # RESP2, on the other thread: forwarded
        y = local[0]                       # on a[0]'s thread, where the script runs
        y.cmd("HELLO", "3")
        y.send(encode("CLIENT", "REPLY", "OFF"))
        x.send(encode("EVAL", spin(600) + "return false", "1", a[0]))
        time.sleep(0.3)
        y.send(encode("PING"))
        time.sleep(0.1)
        x.settimeout(5)
        raw = x.read_raw()
        assert raw == b"$-1\r\n", raw
    kvd.check_alive()


def test_script_pending_client_never_runs_inside_a_busy_script(kvd, groups):
    """A client with a script pending on the other thread is not refused -BUSY, but its
    commands never run inside its own thread's busy script (they wait for the thread's
    loop): the script's SET and GET see no intruder."""
    a, b = groups
    with busy_threshold(kvd.port, 400):
        try:
            w, z, x, _ = pending_behind_busy(kvd.port, a, b, 2000,
                                             "redis.call('set', KEYS[1], 'mine') " + spin(1200) +
                                             "return redis.call('get', KEYS[1])")
            z.send(encode("SET", a[0], "intruder"))   # runs inside x's script
            time.sleep(0.2)
            x.settimeout(5)
            got = x.read_raw()
            assert got == b"$4\r\nmine\r\n", got
        finally:
            time.sleep(2)
    kvd.check_alive()


def test_script_pending_client_cannot_nest_an_eval(kvd_factory):
    k = kvd_factory()
    with Client(k.port) as c:
        a, b = classify(c, ["k%d" % i for i in range(50)])
    set_threshold(k.port, 400)
    w, z, x, _ = pending_behind_busy(k.port, a, b, 2000, spin(1200) + "return 'x'")
    z.send(encode("EVAL", "return 'z2'", "1", a[0]))   # nested in a's VM
    time.sleep(0.5)
    alive = k.alive()
    assert alive, "kvd died"


def test_exec_reply_not_given_to_another_client(kvd, groups):
    """The same, with the other client's -BUSY visible (its SAVE still pending when the
    script starts, so its replies go through a scratch output)."""
    a, b = groups
    with Client(kvd.port) as f:
        for i in range(20):
            f.send(b"".join(encode("SET", "fill:%d:%d" % (i, j), "x" * 100) for j in range(5000)))
            for j in range(5000):
                f.read_raw()
    with busy_threshold(kvd.port, 50):
        local, remote = clients_by_thread(kvd.port, a[0])
        x, y = local[0], local[1]
        x.cmd("MULTI")
        assert x.cmd("SET", b[0], "1") == St("QUEUED")
        assert x.cmd("EVAL", spin(600) + "return 'done'", "1", a[0]) == St("QUEUED")
        y.send(encode("SAVE"))
        x.send(encode("EXEC"))
        time.sleep(0.3)
        y.send(encode("PING"))
        y.settimeout(5)
        assert y.read_raw() == b"+OK\r\n"  # SAVE
        # (-BUSY, or +PONG on a machine so slow that the script was over)
        assert y.read_raw() in (b"-" + BUSY_EVAL.s.encode() + b"\r\n", b"+PONG\r\n")
        x.settimeout(5)
        raw = x.read_raw()
        assert raw == b"*2\r\n+OK\r\n$4\r\ndone\r\n", raw
    kvd.check_alive()


def info_int(c, section, name):
    for line in c.cmd("INFO", section).decode().split("\r\n"):
        if line.startswith(name + ":"):
            return int(line.split(":", 1)[1])
    return None


def test_no_eviction_inside_a_busy_script(kvd_factory):
    """No eviction while a script is busy (as Redis: `server.maxmemory &&
    !isInsideYieldingLongCommand()`): the -BUSY commands its hook serves do not evict the
    script's keys under it."""
    k = kvd_factory()
    with Client(k.port) as c:
        a, b = classify(c, ["k%d" % i for i in range(50)])
    adm = Client(k.port)
    adm.cmd("CONFIG", "SET", "maxmemory-policy", "allkeys-random")
    keys = ["{%s}:%d" % (a[0], i) for i in range(16)]
    for key in keys:
        adm.cmd("SET", key, "x" * (512 << 10))
    time.sleep(0.3)
    used = info_int(adm, "memory", "used_memory")
    assert adm.cmd("CONFIG", "SET", "maxmemory", str(used + (1 << 20))) == St("OK")
    adm.cmd("CONFIG", "SET", "busy-reply-threshold", "400")
    la, ra = clients_by_thread(k.port, a[0], per_thread=2)
    x = la[0]
    count = "local n = 0 for i, k in ipairs(KEYS) do n = n + redis.call('exists', k) end "
    x.send(encode("EVAL", count + "local n0 = n " + spin(4000) + count + "return {n0, n}",
                  str(len(keys)), *keys))
    w = ra[0]
    for i in range(1000):   # the other thread grows by ~6 MiB before the busy mode
        w.send(encode("SET", "{%s}:%d" % (b[0], i), "y" * 6000))
    for i in range(1000):
        w.read_raw()
    # served by the script's hook (it evicted the script's keys before the fix)
    wait_until(lambda: la[1].cmd("PING") == BUSY_EVAL, 10, what="the script to be busy")
    x.settimeout(5)
    got = x.read()
    assert got[0] == got[1], got


def test_no_invalidation_pushed_inside_an_exec_reply(kvd, groups):
    """Invalidations are not delivered from a busy turn: the one the transaction's own SET
    made would land in the middle of EXEC's array in the script client's output."""
    a, b = groups
    with busy_threshold(kvd.port, 50):
        local, remote = clients_by_thread(kvd.port, a[0])
        x, y = local[0], local[1]
        x.cmd("HELLO", "3")
        assert x.cmd("CLIENT", "TRACKING", "ON") == St("OK")
        x.cmd("GET", a[0])
        x.cmd("MULTI")
        x.cmd("SET", a[0], "v2")
        x.cmd("EVAL", spin(600) + "return 'done'", "1", a[0])
        x.send(encode("EXEC"))
        time.sleep(0.3)
        # (-BUSY, or +PONG on a machine so slow that the script was over)
        assert y.cmd("PING") in (BUSY_EVAL, St("PONG"))
        x.settimeout(5)
        time.sleep(0.5)
        data = x.sock.recv(1 << 16)
        assert data.startswith(b"*2\r\n+OK\r\n$4\r\ndone\r\n"), data
    kvd.check_alive()


def test_pipelined_fcall_waiting_for_the_transaction_lock(kvd_factory):
    """`FCALL f 0` is never parsed ahead into a batch: with no keys it runs as a
    cross-shard transaction, which waits (CONN_TXN_WAIT) while another holds the lock."""
    k = kvd_factory()
    adm = Client(k.port)
    assert adm.cmd("FUNCTION", "LOAD", "#!lua name=l\nredis.register_function('f', function() return 1 end)") == b"l"
    local, remote = clients_by_thread(k.port, "k0")
    r, c = local[0], remote[0]
    r.send(encode("EVAL", spin(1000) + "return 1", "0"))   # cross-shard: holds the lock
    time.sleep(0.2)
    c.send(encode("FCALL", "f", "0") + encode("PING"))
    assert c.read() == 1 and c.read() == St("PONG")
    assert r.read() == 1
    assert k.alive()


def test_client_of_a_forwarded_exec_with_a_script_waits(kvd, groups):
    """A transaction forwarded to the other thread (exec|run) whose EVAL goes busy: the
    client's own pipelined PING waits for it and gets +PONG, as in Redis."""
    a, b = groups
    with busy_threshold(kvd.port, 50):
        local, remote = clients_by_thread(kvd.port, a[0])
        x = remote[0]
        x.cmd("MULTI")
        x.cmd("EVAL", spin(600) + "return 'done'", "1", a[0])
        x.send(encode("EXEC"))
        time.sleep(0.3)
        x.send(encode("PING"))
        x.settimeout(5)
        r1 = x.read_raw()
        r2 = x.read_raw()
        assert (r1, r2) == (b"*1\r\n$4\r\ndone\r\n", b"+PONG\r\n"), (r1, r2)
    kvd.check_alive()


def test_watch_across_threads_while_busy_leaves_exec_reply_intact(kvd, groups):
    """WATCH is allowed while busy; with keys on both threads its local part goes through
    a scratch output, which must not be the one a cross-shard EXEC's reply is built in."""
    a, b = groups
    with busy_threshold(kvd.port, 50):
        local, remote = clients_by_thread(kvd.port, a[0])
        x, y = local[0], local[1]
        x.cmd("MULTI")
        assert x.cmd("SET", b[0], "1") == St("QUEUED")
        assert x.cmd("EVAL", spin(600) + "return 'done'", "1", a[0]) == St("QUEUED")
        x.send(encode("EXEC"))
        time.sleep(0.3)
        y.send(encode("WATCH", a[1], b[1]))
        y.settimeout(5)
        assert y.read_raw() == b"+OK\r\n"
        x.settimeout(5)
        raw = x.read_raw()
        assert raw == b"*2\r\n+OK\r\n$4\r\ndone\r\n", raw
    kvd.check_alive()


def test_script_client_not_killed_from_a_busy_turn(kvd_factory):
    """A script-pending client's CLIENT KILL of the busy script's own client, on that
    thread, waits for the thread's loop (it never runs from a busy turn, where it would
    free the client under its script)."""
    k = kvd_factory()
    with Client(k.port) as c:
        a, b = classify(c, ["k%d" % i for i in range(50)])
    set_threshold(k.port, 300)
    w, z, x, xid = pending_behind_busy(k.port, a, b, 2500, spin(1500) + "return 'x'")
    z.send(encode("CLIENT", "KILL", "ID", str(xid)))
    z.settimeout(10)
    assert z.read() == b"z1"
    assert z.read() == 1  # once the scripts are over
    assert x.closed_within(10)
    assert w.read() == b"w"
    assert k.alive() and "AddressSanitizer" not in k.stderr()


def test_coordinator_waiting_for_a_busy_thread_serves_its_clients(kvd, groups):
    """A cross-shard EXEC sent before the busy mode waits to park the busy script's
    thread: its coordinator serves its own thread's clients while it waits (-BUSY)."""
    a, b = groups
    with busy_threshold(kvd.port, 300):
        try:
            la, ra = clients_by_thread(kvd.port, a[0])
            x = la[0]
            x.send(encode("EVAL", spin(6000) + "return 'x'", "1", a[0]))
            time.sleep(0.05)
            t = ra[0]
            t.send(encode("MULTI") + encode("GET", a[1]) + encode("GET", b[1]) + encode("EXEC"))
            wait_until(lambda: la[1].cmd("PING") == BUSY_EVAL, 10, what="the script to be busy")
            p = ra[1]
            p.settimeout(2.0)
            try:
                got = p.cmd("PING")
            except (socket.timeout, TimeoutError):
                got = "no reply within 2 s"
            assert got == BUSY_EVAL, got
        finally:
            with Client(kvd.port) as q:  # the script and the transaction over
                wait_until(lambda: q.cmd("PING") == St("PONG"), 20, what="the script's end")
    kvd.check_alive()


def test_watch_of_a_busy_thread_s_key_answers_at_once(kvd, groups):
    """WATCH is allowed while busy: its part for a key of the busy script's thread is
    served by the script's hook (not after the script), and the watch holds afterwards."""
    a, b = groups
    with busy_threshold(kvd.port, 20) as admin:
        local, remote = clients_by_thread(kvd.port, a[0])
        runner = start_busy(kvd.port, "EVAL", LOOP, "1", a[0], probe=local[0])
        w = remote[1]  # on the other thread: its WATCH of a[0] goes to the busy thread
        w.settimeout(3)
        assert w.cmd("WATCH", a[0], b[0]) == St("OK")
        assert local[1].cmd("SCRIPT", "KILL") == St("OK")
        assert b"Script killed by user" in runner.read_raw()
        wait_until(lambda: admin.cmd("PING") == St("PONG"), 10, what="the busy mode to end")
        admin.cmd("SET", a[0], "changed")  # after the WATCH: the transaction must abort
        assert w.cmd("MULTI") == St("OK") and w.cmd("GET", b[0]) == St("QUEUED")
        assert w.cmd("EXEC") is None
        for c in local + remote:
            c.close()
    kvd.check_alive()
