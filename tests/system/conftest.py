"""Shared fixtures of the kvd system tests (tests/system/test_kvd_*.py).

- Kvd: one kvd process on a free port (--port 0, the port read from its "kvd ready"
  line), in its own temporary --dir, --threads 2 unless told otherwise (so commands
  are forwarded between shard threads). stop() sends SIGTERM and fails the test unless
  kvd exits 0 and its stderr holds no sanitizer report.
- RedisServer: Debian's redis-server 7 beside it, the reference for replies and error
  texts (`--save '' --appendonly no`).
- Client: a raw-socket RESP2/RESP3 client. cmd() returns the parsed reply (errors are
  returned as Err values, not raised), raw() the exact bytes of the reply, so both
  servers' replies can be compared byte for byte.
- pair: a kvd client and a Redis client on freshly flushed servers; pair.same(...)
  sends one command to both and asserts identical reply bytes.

The kvd binary: $KVD_BIN if set, else $KV_BUILD_DIR/io/kvd (set by ctest), else
<repo>/build/release/io/kvd. kvd-fp (kvd with failpoints, for crash tests): $KVD_FP_BIN
if set, else kvd-fp next to that kvd. Randomized tests take their seed from $KV_TEST_SEED
(printed on failure).

Crash tests: Kvd(bin=..., env=...) picks the binary and environment, kill9() ends a kvd
with SIGKILL and keeps its --dir, restart() starts a new kvd on the same --dir.
"""
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass

import pytest

REDIS_BIN = "/usr/bin/redis-server"
SRC_DIR = os.environ.get("KV_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer")


def kvd_path():
    if os.environ.get("KVD_BIN"):
        return os.environ["KVD_BIN"]
    build = os.environ.get("KV_BUILD_DIR") or os.path.join(SRC_DIR, "build", "release")
    return os.path.join(build, "io", "kvd")


def kvd_fp_path():
    if os.environ.get("KVD_FP_BIN"):
        return os.environ["KVD_FP_BIN"]
    return os.path.join(os.path.dirname(kvd_path()), "kvd-fp")


def kvd_sanitizer():
    """The sanitizer kvd was built with ("address", "thread"), from KV_SANITIZE in its
    build's CMake cache; None for a plain build (or a kvd without a build dir)."""
    cache = os.path.join(os.path.dirname(os.path.dirname(kvd_path())), "CMakeCache.txt")
    try:
        with open(cache) as f:
            m = re.search(r"^KV_SANITIZE:\w+=(\S+)", f.read(), re.M)
    except OSError:
        return None
    return m.group(1) if m else None


def have_redis():
    return os.access(REDIS_BIN, os.X_OK)


def need_redis():
    """Skips the calling test, with the reason printed, when redis-server is missing."""
    if not have_redis():
        print("SKIP: %s is missing, the Redis comparison cannot run "
              "(apt-get install redis-server)" % REDIS_BIN)
        pytest.skip("%s is missing" % REDIS_BIN)


@contextlib.contextmanager
def threads_running(threads, stop):
    """Starts the threads; on leaving (also by an exception) sets the event `stop` they
    watch and joins them."""
    for t in threads:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join()


def wait_until(pred, timeout, interval=0.02, what="condition"):
    """Polls pred() until it returns a true value (returned) or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def rss_kib(pid):
    """VmRSS of a process in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


# ---------------------------------------------------------------------------------------
# RESP values. Simple strings, errors and the RESP3 types get their own classes (equal
# only to values of the same class); bulk strings are bytes, integers int, arrays list,
# nulls None.

@dataclass(frozen=True)
class St:
    """+simple string"""
    s: str


@dataclass(frozen=True)
class Err:
    """-error"""
    s: str


@dataclass(frozen=True)
class Dbl:
    """,double (RESP3), kept as its text"""
    s: str


@dataclass(frozen=True)
class Bool:
    """#boolean (RESP3)"""
    v: bool


@dataclass(frozen=True)
class Map:
    """%map (RESP3): key/value pairs in order"""
    items: tuple

    def dict(self):
        return dict(self.items)


@dataclass(frozen=True)
class RSet:
    """~set (RESP3)"""
    items: tuple


@dataclass(frozen=True)
class Verb:
    """=verbatim string (RESP3)"""
    fmt: bytes
    data: bytes


@dataclass(frozen=True)
class Push:
    """>push (RESP3)"""
    items: tuple


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, int):
            a = str(a)
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class ConnClosed(Exception):
    pass


class Client:
    """A raw-socket RESP client (RESP2, or RESP3 after HELLO 3)."""

    def __init__(self, port, timeout=20.0, host="127.0.0.1"):
        self.port = port
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def settimeout(self, t):
        self.sock.settimeout(t)

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(1 << 20)
        if not d:
            raise ConnClosed("connection closed by the server")
        self.buf += d

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                line = bytes(self.buf[self.pos:i])
                self.pos = i + 2
                return line
            self._fill()

    def _take(self, n):
        while len(self.buf) - self.pos < n:
            self._fill()
        d = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return d

    def _parse(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return St(rest.decode("latin-1"))
        if t == b"-":
            return Err(rest.decode("latin-1"))
        if t == b":":
            return int(rest)
        if t in (b"$", b"=", b"!"):
            n = int(rest)
            if n < 0:
                return None
            d = self._take(n + 2)[:-2]
            if t == b"=":
                return Verb(d[:3], d[4:])
            if t == b"!":
                return Err(d.decode("latin-1"))
            return d
        if t in (b"*", b"~", b">"):
            n = int(rest)
            if n < 0:
                return None
            items = [self._parse() for _ in range(n)]
            if t == b"~":
                return RSet(tuple(items))
            if t == b">":
                return Push(tuple(items))
            return items
        if t in (b"%", b"|"):
            n = int(rest)
            pairs = tuple((self._parse(), self._parse()) for _ in range(n))
            if t == b"|":  # an attribute: the reply follows it
                return self._parse()
            return Map(pairs)
        if t == b"_":
            return None
        if t == b",":
            return Dbl(rest.decode())
        if t == b"#":
            return Bool(rest == b"t")
        if t == b"(":
            return int(rest)
        raise AssertionError("bad RESP type byte in %r" % line[:100])

    def read_both(self):
        """Reads one reply: (parsed value, its exact bytes)."""
        start = self.pos
        v = self._parse()
        raw = bytes(self.buf[start:self.pos])
        if self.pos > (1 << 20) or self.pos == len(self.buf):
            del self.buf[:self.pos]
            self.pos = 0
        return v, raw

    def read(self):
        return self.read_both()[0]

    def read_raw(self):
        return self.read_both()[1]

    def cmd(self, *args):
        self.send(encode(*args))
        return self.read()

    def raw(self, *args):
        self.send(encode(*args))
        return self.read_raw()

    def ok(self, *args):
        r = self.cmd(*args)
        assert r == St("OK"), (args, r)
        return r

    def pipeline(self, cmds):
        """Sends every command (in a thread, so large pipelines cannot deadlock on full
        socket buffers) and returns the replies in order."""
        data = b"".join(encode(*c) for c in cmds)
        err = []

        def sender():
            try:
                self.sock.sendall(data)
            except OSError as e:
                err.append(e)

        t = threading.Thread(target=sender)
        t.start()
        try:
            return [self.read() for _ in cmds]
        finally:
            t.join()
            assert not err, err

    def closed_within(self, timeout):
        """True if the server closes the connection within timeout seconds (bytes it
        sends before closing are kept in self.buf)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.sock.settimeout(left)
                try:
                    d = self.sock.recv(1 << 16)
                except socket.timeout:
                    return False
                if not d:
                    return True
                self.buf += d
        except (ConnectionResetError, BrokenPipeError):
            return True

    def next_within(self, wait):
        """The next reply or message if one arrives within `wait` seconds, else None."""
        self.settimeout(wait)
        try:
            return self.read()
        except OSError:
            return None
        finally:
            self.settimeout(20)

    def pending_bytes(self):
        return bytes(self.buf[self.pos:])


# ---------------------------------------------------------------------------------------
# Servers

class Kvd:
    """One kvd process. Use Kvd.start(...) and stop() (or the kvd/kvd_factory fixtures)."""

    def __init__(self, args=(), threads=2, ready_timeout=60, bin=None, env=None, base=None,
                 ready=True, preexec_fn=None):
        """bin: the binary (default kvd_path()); env: extra environment variables; base: the
        .dir of an earlier Kvd whose data dir to reuse (a restart); ready=False returns
        at once without waiting for the "kvd ready" line (for a start meant to fail);
        preexec_fn: run in the child before kvd (e.g. to lower a resource limit)."""
        self.bin = bin or kvd_path()
        if not os.access(self.bin, os.X_OK):
            pytest.fail("kvd is not built at %s (cmake --build <dir> --target kvd kvd-fp; "
                        "set KV_BUILD_DIR or KVD_BIN)" % self.bin)
        self.owns_dir = base is None
        self.dir = base or tempfile.mkdtemp(prefix="kv-systest-")
        self.errpath = os.path.join(self.dir, "kvd.stderr")
        n = 0
        while os.path.exists(self.errpath):  # a restart keeps the earlier logs
            n += 1
            self.errpath = os.path.join(self.dir, "kvd.stderr.%d" % n)
        self.user_args = list(args)
        self.threads = threads
        self.env = env
        self.args = [self.bin, "--port", "0", "--threads", str(threads),
                     "--dir", os.path.join(self.dir, "data")] + [str(a) for a in args]
        self.errf = open(self.errpath, "wb")
        penv = None
        if env:
            penv = dict(os.environ)
            penv.update(env)
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=self.errf,
                                     env=penv, preexec_fn=preexec_fn)
        self.pid = self.proc.pid
        self.port = None
        self.stopped = False
        if not ready:
            return
        deadline = time.monotonic() + ready_timeout
        while self.port is None:
            m = re.search(r"kvd ready .*port=(\d+)", self.stderr())
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                raise AssertionError("kvd exited with %s before it was ready: %s\nstderr:\n%s"
                                     % (self.proc.returncode, self.args, self.stderr()))
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError("kvd was not ready in %ds: %s" % (ready_timeout, self.args))
            time.sleep(0.02)
        self.pid = self.proc.pid

    def stderr(self):
        with open(self.errpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def client(self, **kw):
        return Client(self.port, **kw)

    def alive(self):
        return self.proc.poll() is None

    def check_alive(self):
        assert self.alive(), "kvd died (exit %s); stderr:\n%s" % (self.proc.returncode,
                                                                  self.stderr()[-5000:])
        self.check_sanitizers()

    def check_sanitizers(self):
        err = self.stderr()
        for mark in SANITIZER_MARKS:
            assert mark not in err, "kvd stderr has a sanitizer report:\n%s" % err[-8000:]

    def wait_exit(self, timeout=60):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("kvd did not exit within %ds; stderr:\n%s"
                                 % (timeout, self.stderr()[-5000:]))
        self.stopped = True
        self.errf.close()
        return rc

    def stop(self, check=True):
        """SIGTERM, then asserts (if check) exit status 0 and no sanitizer report."""
        if not self.stopped:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            rc = self.wait_exit()
        else:
            rc = self.proc.returncode
        try:
            if check:
                self.check_sanitizers()
                assert rc == 0, "kvd exited with %s; stderr:\n%s" % (rc, self.stderr()[-5000:])
        finally:
            if self.owns_dir:
                shutil.rmtree(self.dir, ignore_errors=True)
        return rc

    def data_dir(self):
        return os.path.join(self.dir, "data")

    def kill9(self):
        """A crash: SIGKILL, waits for the exit; the data dir stays for restart()."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        rc = self.wait_exit()
        assert rc == -signal.SIGKILL, "kvd exited with %s before the kill" % rc
        return rc

    def restart(self, args=None, threads=None, bin=None, env=None, ready=True):
        """A new kvd on this one's data dir (this one must have exited), with the same
        settings unless given; the new one owns (and stop() removes) the dir."""
        assert self.proc.poll() is not None, "restart() of a kvd that is still running"
        if not self.stopped:
            self.wait_exit()
        k = Kvd(args=self.user_args if args is None else args,
                threads=self.threads if threads is None else threads,
                bin=bin or self.bin, env=self.env if env is None else env, base=self.dir,
                ready=ready)
        k.owns_dir, self.owns_dir = self.owns_dir, False
        return k


class RedisServer:
    def __init__(self, args=()):
        self.dir = tempfile.mkdtemp(prefix="kv-systest-redis-")
        for _ in range(5):
            self.port = free_port()
            self.proc = subprocess.Popen(
                [REDIS_BIN, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.dir, "--daemonize", "no"]
                + [str(a) for a in args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                    return
                except OSError:
                    time.sleep(0.02)
            self.proc.kill()
            self.proc.wait()
        raise AssertionError("redis-server did not start")

    def client(self, **kw):
        return Client(self.port, **kw)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def kvd():
    """A kvd shared by the tests of one module (--threads 2, default settings)."""
    k = Kvd()
    yield k
    k.stop()


@pytest.fixture
def kvd_factory():
    """Starts kvds with custom settings: kvd_factory(args=[...], threads=N); each is
    stopped (and its exit checked) when the test ends."""
    started = []

    def start(args=(), threads=2):
        k = Kvd(args=args, threads=threads)
        started.append(k)
        return k

    yield start
    errors = []
    for k in started:
        try:
            k.stop()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)


@pytest.fixture(scope="module")
def redis_server():
    if not have_redis():
        yield None
        return
    r = RedisServer()
    yield r
    r.stop()


@pytest.fixture
def redis_factory():
    need_redis()
    started = []

    def start(args=()):
        r = RedisServer(args)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


class Pair:
    """A kvd client (k) and a Redis client (r) side by side."""

    def __init__(self, kvd, redis):
        self.kvd = kvd
        self.redis = redis
        self.k = kvd.client()
        self.r = redis.client()

    def same(self, *args):
        """Sends args to both servers, asserts identical reply bytes, returns the reply."""
        self.k.send(encode(*args))
        kv, kraw = self.k.read_both()
        self.r.send(encode(*args))
        _, rraw = self.r.read_both()
        assert kraw == rraw, "reply to %r differs:\n  kvd:   %r\n  redis: %r" % (
            args, kraw[:2000], rraw[:2000])
        return kv

    def both(self, *args):
        """Sends args to both; returns (kvd reply, redis reply), parsed."""
        return self.k.cmd(*args), self.r.cmd(*args)

    def close(self):
        self.k.close()
        self.r.close()


@pytest.fixture
def pair(kvd, redis_server):
    """Both servers flushed, one fresh client on each; kvd must still be alive after."""
    need_redis()
    p = Pair(kvd, redis_server)
    assert p.k.cmd("FLUSHALL") == St("OK")
    assert p.r.cmd("FLUSHALL") == St("OK")
    yield p
    p.close()
    kvd.check_alive()


@pytest.fixture(params=["kvd", "redis"])
def either(request, kvd):
    """A test run twice, on the module's kvd and on the module's Redis: yields the port
    (the server flushed); kvd must still be alive after."""
    if request.param == "redis":
        need_redis()
        port = request.getfixturevalue("redis_server").port
    else:
        port = kvd.port
    with Client(port) as c:
        assert c.cmd("FLUSHALL") == St("OK")
    yield port
    if request.param == "kvd":
        kvd.check_alive()


@pytest.fixture
def kc(kvd):
    """A fresh client on the module's kvd, flushed; kvd must still be alive after."""
    c = kvd.client()
    assert c.cmd("FLUSHALL") == St("OK")
    yield c
    c.close()
    kvd.check_alive()


@pytest.fixture
def rng():
    seed = int(os.environ.get("KV_TEST_SEED") or random.randrange(1 << 32))
    print("random seed: KV_TEST_SEED=%d" % seed)
    return random.Random(seed)


@pytest.fixture
def kvds():
    """Starts kvds (Kvd(...) arguments) for crash tests; at the end any still running is
    killed, every data dir removed, and each one's stderr checked for sanitizer
    reports. Clean exits are checked by the tests themselves."""
    made = []

    def start(**kw):
        k = Kvd(**kw)
        made.append(k)
        return k

    start.track = made.append
    yield start
    errors = []
    for k in made:
        if k.proc.poll() is None:
            k.proc.kill()
            k.proc.wait()
        if not k.errf.closed:
            k.errf.close()
        if os.path.exists(k.errpath):
            try:
                k.check_sanitizers()
            except AssertionError as e:
                errors.append(str(e))
    for k in made:
        shutil.rmtree(k.dir, ignore_errors=True)
    assert not errors, "\n".join(errors)


def restart(kvds, k, **kw):
    """A new kvd on the data dir of k (which has exited), tracked by the kvds fixture, and
    a client of it."""
    k2 = k.restart(**kw)
    kvds.track(k2)
    return k2, k2.client()


def crash_restart(kvds, k, **kw):
    """kill -9 of k, then restart()."""
    k.kill9()
    return restart(kvds, k, **kw)


def info_persistence(c):
    """INFO persistence as a dict."""
    text = c.cmd("INFO", "persistence").decode()
    return dict(line.split(":", 1) for line in text.split("\r\n") if ":" in line)


# ---- keys by shard thread (tests of cross-shard transactions and scripts) -------------

def info_field(c, section, name):
    text = c.cmd("INFO", section).decode()
    for line in text.split("\r\n"):
        if line.startswith(name + ":"):
            return line.split(":", 1)[1]
    raise AssertionError("no %s in INFO %s:\n%s" % (name, section, text))


def kill_from_free_shard(port, cmd=("SCRIPT", "KILL"), deadline_s=10):
    """SCRIPT KILL (or cmd: FUNCTION KILL, ...) from whichever of several new connections is
    on a shard not busy with the script, returning its reply. Each connection is tried
    with a PING first: one on the busy shard waits (under busy-reply-threshold) holding a
    PING, not a kill that would run later and stop the next script."""
    conns = []
    end = time.monotonic() + deadline_s
    try:
        while time.monotonic() < end:
            c = Client(port)
            c.sock.settimeout(0.3)
            conns.append(c)
            try:
                if c.cmd("PING") != St("PONG"):
                    continue
            except (socket.timeout, TimeoutError):
                continue
            c.sock.settimeout(10)
            return c.cmd(*cmd)
        raise AssertionError("no connection answered %r" % (cmd,))
    finally:
        for o in conns:
            o.close()


def classify(c, names):
    """Sorts key names by owning thread: (the names on names[0]'s thread, the others).
    A transaction reading names[0] and a name runs across shards iff they differ."""
    ref = names[0]
    groups = ([ref], [])
    for n in names[1:]:
        before = int(info_field(c, "stats", "cross_shard_transactions"))
        r = c.pipeline([("MULTI",), ("EXISTS", ref), ("EXISTS", n), ("EXEC",)])
        assert isinstance(r[-1], list), r
        d = int(info_field(c, "stats", "cross_shard_transactions")) - before
        assert d in (0, 1), (n, d)
        groups[d].append(n)
    return groups


_GROUPS = {}


@pytest.fixture
def groups(kvd):
    """("k0".."k49" on one thread, those on the other) for the module's kvd."""
    if kvd.port not in _GROUPS:
        with kvd.client() as c:
            a, b = classify(c, ["k%d" % i for i in range(50)])
        assert len(a) >= 15 and len(b) >= 15, (a, b)  # 50 keys, 8 partitions, 2 threads
        _GROUPS[kvd.port] = (a, b)
    return _GROUPS[kvd.port]


def keymap(groups):
    """A0.. -> keys of the first thread, B0.. -> keys of the second."""
    a, b = groups
    m = {}
    for i, k in enumerate(a):
        m["A%d" % i] = k
    for i, k in enumerate(b):
        m["B%d" % i] = k
    return m


def raw_pipeline(c, cmds):
    """Sends every command in one write (from a thread) and returns each reply's bytes."""
    data = b"".join(encode(*x) for x in cmds)
    err = []

    def sender():
        try:
            c.sock.sendall(data)
        except OSError as e:
            err.append(e)

    t = threading.Thread(target=sender)
    t.start()
    try:
        return [c.read_raw() for _ in cmds]
    finally:
        t.join()
        assert not err, err
