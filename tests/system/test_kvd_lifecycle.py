"""kvd's start and stop: SIGTERM while clients are pipelining (kvd finishes in-flight
work and exits 0; every reply a client received is whole and correct), SHUTDOWN (same,
compared with Redis 7: no reply, connection closed), and a clean exit after heavy use
on 1 and 4 threads.
"""
import signal
import socket
import threading
import time

import pytest

from conftest import ConnClosed, Client, St, encode, wait_until


def pipelining_clients(kvd, nclients, stop, results):
    def worker(i):
        ok = 0
        try:
            with kvd.client(timeout=30) as c:
                n = 0
                while not stop.is_set():
                    cmds = [("SET", "sig:%d:%d" % (i, n + j), str(n + j)) for j in range(50)]
                    cmds += [("GET", "sig:%d:%d" % (i, n + j)) for j in range(50)]
                    replies = c.pipeline(cmds)
                    assert replies[:50] == [St("OK")] * 50
                    assert replies[50:] == [str(n + j).encode() for j in range(50)]
                    ok += 100
                    n += 50
        except (ConnClosed, ConnectionResetError, BrokenPipeError):
            pass  # the server went away between two replies: expected
        except Exception as e:
            results.append(("error", i, repr(e)))
            return
        results.append(("ok", i, ok))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(nclients)]
    for t in threads:
        t.start()
    return threads


def test_sigterm_while_clients_pipeline(kvd_factory):
    k = kvd_factory()
    stop = threading.Event()
    results = []
    threads = pipelining_clients(k, 8, stop, results)
    # let them run, then SIGTERM mid-stream
    with k.client() as c:
        wait_until(lambda: c.cmd("DBSIZE") > 2000, 60, what="clients to make progress")
    k.proc.send_signal(signal.SIGTERM)
    rc = k.wait_exit(60)
    stop.set()
    for t in threads:
        t.join(60)
    assert rc == 0, k.stderr()
    errors = [r for r in results if r[0] == "error"]
    assert not errors, errors  # no torn or wrong reply before the close
    assert sum(r[2] for r in results if r[0] == "ok") > 0
    assert "kvd stopped" in k.stderr()
    k.check_sanitizers()


def test_sigterm_with_idle_and_half_sent_clients(kvd_factory):
    k = kvd_factory()
    idle = [k.client() for _ in range(20)]
    half = []
    for i in range(10):
        s = socket.create_connection(("127.0.0.1", k.port))
        s.sendall(encode("SET", "h%d" % i, "v" * 100)[:20])
        half.append(s)
    for c in idle:
        assert c.cmd("PING") == St("PONG")
    k.proc.send_signal(signal.SIGTERM)
    assert k.wait_exit(30) == 0, k.stderr()
    for c in idle:
        assert c.closed_within(5)
        c.close()
    for s in half:
        s.close()


def test_shutdown_command_matches_redis(kvd_factory, redis_factory):
    k = kvd_factory()
    r = redis_factory()
    for srv in (k, r):
        with srv.client() as other, srv.client() as c:
            assert c.cmd("SET", "a", "1") == St("OK")
            assert c.cmd("SHUTDOWN", "ABORT") is not None
            assert c.cmd("SHUTDOWN", "BADARG").s == "ERR syntax error"
            c.send(encode("SHUTDOWN", "NOSAVE"))
            assert c.closed_within(30)
            srv.shutdown_reply = c.pending_bytes()
            assert other.closed_within(30)
        assert srv.proc.wait(30) == 0
    assert k.shutdown_reply == r.shutdown_reply == b""
    assert "SHUTDOWN" in k.stderr()


def test_shutdown_while_another_client_pipelines(kvd_factory):
    k = kvd_factory()
    stop = threading.Event()
    results = []
    threads = pipelining_clients(k, 4, stop, results)
    with k.client() as c:
        wait_until(lambda: c.cmd("DBSIZE") > 1000, 60, what="clients to make progress")
        c.send(encode("SHUTDOWN"))
        assert c.closed_within(30)
    rc = k.wait_exit(60)
    stop.set()
    for t in threads:
        t.join(60)
    assert rc == 0, k.stderr()
    assert not [r for r in results if r[0] == "error"], results


@pytest.mark.parametrize("threads", [1, 4])
def test_other_thread_counts(kvd_factory, threads):
    k = kvd_factory(threads=threads)
    with k.client() as c:
        cmds = [("SET", "t:%d" % i, str(i)) for i in range(2000)]
        cmds += [("INCR", "t:%d" % i) for i in range(2000)]
        cmds += [("MGET",) + tuple("t:%d" % i for i in range(0, 2000, 7))]
        replies = c.pipeline(cmds)
        assert replies[:2000] == [St("OK")] * 2000
        assert replies[2000:4000] == list(range(1, 2001))
        assert replies[4000] == [str(i + 1).encode() for i in range(0, 2000, 7)]
        assert c.cmd("DBSIZE") == 2000
        assert c.cmd("CONFIG", "GET", "threads") == [b"threads", str(threads).encode()]
