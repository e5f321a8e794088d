"""System test of tools/kvbench against a real redis-server.

Starts redis-server on a free port, runs kvbench briefly in closed loop and open loop
with --json, and checks what it reports: the request count, zero errors, ordered
percentiles, --verify over a loaded key space, AUTH, a server stall under open and
closed loop, SIGINT. It also drives perf/limit's limit_server, whose replies must come
one per command, in order, however the requests are split. Binaries are found in
$KV_BUILD_DIR (set by ctest) or build/release.
"""
import json
import os
import shutil
import socket
import subprocess
import time

import pytest

REDIS = "/usr/bin/redis-server"
SOURCE_DIR = os.environ.get(
    "KV_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)
BUILD_DIR = os.environ.get("KV_BUILD_DIR", os.path.join(SOURCE_DIR, "build", "release"))
KVBENCH = os.path.join(BUILD_DIR, "tools", "kvbench")

if not os.path.exists(REDIS):
    print("skipping kvbench system tests: %s is not installed" % REDIS)
    pytest.skip("%s is not installed" % REDIS, allow_module_level=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(extra=()):
    port = free_port()
    proc = subprocess.Popen(
        [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + list(extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start on port %d" % port)


@pytest.fixture
def redis():
    proc, port = start_redis()
    yield port
    proc.kill()
    proc.wait()


@pytest.fixture
def redis_auth():
    proc, port = start_redis(["--requirepass", "s3cret"])
    yield port
    proc.kill()
    proc.wait()


def kvbench(port, *args, check=True):
    assert os.path.exists(KVBENCH), "kvbench is not built: %s" % KVBENCH
    res = subprocess.run(
        [KVBENCH, "-p", str(port), "--json", *args], capture_output=True, text=True, timeout=120
    )
    if check:
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)
    return res


def assert_clean(r):
    for k in ("errors", "unexpected", "verify_failures", "conn_failures"):
        assert r[k] == 0, (k, r)
    lat = r["latency_us"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99_9"] <= lat["max"], lat
    assert r["gets"] + r["sets"] == r["requests"]


def redis_cmd(port, *words):
    """One command over a raw socket (keeps the test free of client libraries)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        req = "*%d\r\n" % len(words) + "".join("$%d\r\n%s\r\n" % (len(w), w) for w in words)
        s.sendall(req.encode())
        return s.recv(4096).decode()


def test_closed_loop_counts_and_verifies(redis):
    r = kvbench(redis, "-n", "20000", "-c", "10", "-P", "8", "-r", "1000", "--load",
                "--verify", "--ratio", "1:1", "-d", "1-300")
    assert r["mode"] == "closed"
    assert r["requests"] == 20000
    assert_clean(r)
    assert r["misses"] == 0  # every key was loaded first
    assert r["hits"] == r["gets"] > 5000
    assert r["sets"] > 5000
    assert redis_cmd(redis, "DBSIZE") == ":1000\r\n"


def test_open_loop_holds_the_rate(redis):
    r = kvbench(redis, "--rate", "2000", "--duration", "1.5", "-c", "4", "-T", "2", "-t", "get")
    assert r["mode"] == "open"
    assert_clean(r)
    # 3000 intended requests; the last interval may be cut by the end of the run
    assert 2900 <= r["requests"] <= 3000, r["requests"]
    assert r["elapsed_s"] >= 1.5


def test_distributions_and_pipelines(redis):
    for dist in ("uniform", "zipf", "seq"):
        r = kvbench(redis, "-n", "5000", "-c", "3", "-P", "16", "--dist", dist, "-t", "set")
        assert r["requests"] == 5000 and r["sets"] == 5000, dist
        assert_clean(r)
    # sequential over a key space smaller than the request count touches every key
    redis_cmd(redis, "FLUSHALL")
    kvbench(redis, "-n", "2000", "-c", "1", "--dist", "seq", "-r", "500", "-t", "set")
    assert redis_cmd(redis, "DBSIZE") == ":500\r\n"


def test_get_misses_are_counted(redis):
    r = kvbench(redis, "-n", "1000", "-c", "2", "-t", "get", "-r", "1000000")
    assert r["misses"] == 1000 and r["hits"] == 0
    assert_clean(r)


def test_auth(redis_auth):
    r = kvbench(redis_auth, "-a", "s3cret", "-n", "1000", "-c", "2", "--ratio", "1:1")
    assert r["requests"] == 1000
    assert_clean(r)
    bad = kvbench(redis_auth, "-a", "wrong", "-n", "10", check=False)
    assert bad.returncode != 0
    assert "AUTH" in bad.stderr
    # without AUTH every request is answered with an error, and counted
    r = kvbench(redis_auth, "-n", "100", "-c", "1")
    assert r["errors"] == 100


def test_refused_connection_fails_cleanly():
    res = kvbench(free_port(), "-n", "10", check=False)
    assert res.returncode != 0
    assert "connect" in res.stderr


def test_self_test_histogram_and_distributions():
    for seed in ("1", "20261125"):
        res = subprocess.run([KVBENCH, "--self-test", "--seed", seed], capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        assert "ok" in res.stdout


def test_open_loop_counts_a_stall_closed_loop_hides():
    """A 0.5 s server stall: open loop measures from each request's intended send time,
    so every request scheduled during the stall waits; closed loop stops sending and
    shows the stall only in the few requests that were in flight."""
    proc, port = start_redis()
    try:
        def stalled(*args):
            run = subprocess.Popen([KVBENCH, "-p", str(port), "--json", "--duration", "2",
                                    "-c", "4", "-t", "get", *args],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(0.7)
            proc.send_signal(19)  # SIGSTOP
            time.sleep(0.5)
            proc.send_signal(18)  # SIGCONT
            out, err = run.communicate(timeout=60)
            assert run.returncode == 0, err
            return json.loads(out)

        op = stalled("--rate", "2000")
        assert_clean(op)
        assert op["latency_us"]["max"] >= 400000
        # ~20% of the schedule fell in the first 400 ms of the stall
        assert op["latency_us"]["p90"] >= 100000, op["latency_us"]
        assert op["late"] > 0
        cl = stalled()
        assert_clean(cl)
        assert cl["latency_us"]["max"] >= 400000
    finally:
        proc.kill()
        proc.wait()


def test_sigint_stops_early_and_still_reports(redis):
    run = subprocess.Popen([KVBENCH, "-p", str(redis), "--json", "--duration", "60", "-c", "4",
                            "-T", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    t0 = time.time()
    run.send_signal(2)  # SIGINT
    out, err = run.communicate(timeout=30)
    assert run.returncode == 0, err
    assert time.time() - t0 < 10
    r = json.loads(out)
    assert r["requests"] > 0 and r["elapsed_s"] < 30
    assert_clean(r)


LIMIT = os.path.join(BUILD_DIR, "perf", "limit_server")


@pytest.fixture
def limit_server():
    assert os.path.exists(LIMIT), "limit_server is not built: %s" % LIMIT
    port = free_port()
    proc = subprocess.Popen([LIMIT, "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port, proc
    proc.kill()
    proc.wait()


def test_limit_server_answers_every_command(limit_server):
    port, proc = limit_server
    r = kvbench(port, "-n", "30000", "-c", "6", "-P", "11", "--ratio", "1:1", "-d", "0-5000")
    assert r["requests"] == 30000
    assert_clean(r)
    assert r["misses"] == r["gets"]  # GET is always answered $-1
    # inline and multibulk commands, split at every byte, get one reply each in order
    stream = (b"GET x\r\nset a b\r\n\r\nget\n*2\r\n$3\r\nGeT\r\n$3\r\na\r\n\r\n"
              b"*1\r\n$4\r\nPING\r\n*0\r\n*3\r\n$3\r\nSET\r\n$0\r\n\r\n$5\r\nhello\r\n"
              b"*1\r\n$4\r\ngets\r\n")
    want = b"$-1\r\n+OK\r\n$-1\r\n$-1\r\n+OK\r\n+OK\r\n+OK\r\n"
    for step in (1, 2, 5, len(stream)):
        with socket.create_connection(("127.0.0.1", port)) as s:
            for i in range(0, len(stream), step):
                s.sendall(stream[i:i + step])
                time.sleep(0.0005)
            got = b""
            s.settimeout(5)
            while len(got) < len(want):
                chunk = s.recv(4096)
                assert chunk, "connection closed after %r" % got
                got += chunk
            assert got == want, (step, got)
