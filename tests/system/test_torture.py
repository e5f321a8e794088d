"""kill -9 torture of kvd's durability (appendfsync always), and recovery of many keys.

test_kill9_torture: WRITERS client threads write to kvd, each to keys only it owns,
with pipelines of 1-4 commands: SET of unique values (a per-writer sequence number
that only grows; some values are a few KiB, so that the WAL grows fast), MSET of 2-4
of its keys (spread over both shard threads), INCR, APPEND and DEL. Each writer keeps
an exact model: the state of every key after every acknowledged command (+OK, or the
integer reply, which is checked against the model as it arrives), and the commands
sent whose reply did not come (in flight). At a random moment kvd is SIGKILLed, then
restarted on the same --dir, and every key must hold

    the state after its last acknowledged command, or the state after a prefix of the
    commands in flight on it (commands of one connection on one key reach the same
    shard's WAL in order, and what is durable is a prefix of that WAL),

nothing else: no key that was never written, no value that was never written, no
acknowledged write lost (DBSIZE and KEYS * are checked as well, and INFO's
recovered_keys). What was recovered becomes the next cycle's acknowledged state (a
process crash loses nothing the kernel has). Some cycles also kill kvd while it starts:
kvd-fp with KVD_FAILPOINTS=recovery-mid=N (killed after the N-th replayed batch), or kvd
at a random moment (recovering, in the snapshot round a long replay starts, or ready and
idle, with nothing written since). A small --wal-segment-size and --snapshot-wal-size
make segment rotation and snapshot rounds (and kills in the middle of them) happen
throughout; the test asserts that they did. The starts alternate wal-sync-method dsync
and fdatasync (the WAL one wrote is recovered by the other). At the end kvd is stopped with SIGTERM
(exit 0) and a last restart must show exactly the acknowledged state.

test_writes_after_a_start_with_an_empty_wal_survive: SET, restart, SAVE (its round trims
every segment that held a batch), restart, SET, kill -9, restart: the last SETs are there
(the WAL of a start that found no batch must number its batches above the snapshots').

test_recovery_many_keys: kvbench loads N keys (16-byte keys, 32-byte values derived
from the key), a few hundred more are overwritten with known values, kvd is SIGKILLed
and restarted: DBSIZE must be N and a sample of values must match. The recovery time
of each shard (its "recovered ..." log line) is printed.

Environment: KV_TORTURE_CYCLES (20), KV_RECOVERY_KEYS (1000000; 200000 when kvd was built
with a sanitizer), KV_SEED (random; the
seed is printed, replay with it; thread timing still varies between runs).
"""
import collections
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from conftest import SANITIZER_MARKS, Client, ConnClosed, St, encode, kvd_path, kvd_sanitizer

WRITERS = 6
SKEYS = 48            # w<i>:s<k>: SET / MSET / DEL
CKEYS = 8             # w<i>:c<k>: INCR / DEL
AKEYS = 4             # w<i>:a<k>: APPEND / DEL
THREADS = 2
SEGMENT_SIZE = "256kb"
SNAPSHOT_WAL_SIZE = "1mb"
RUN_MIN_S = 0.05      # a cycle's writers run this long at least before the kill
RUN_MAX_S = 1.0
READY_TIMEOUT_S = 120
CYCLES = int(os.environ.get("KV_TORTURE_CYCLES") or 20)
RECOVERY_KEYS_DEFAULT = 1000000
RECOVERY_KEYS_SANITIZED = 200000  # ASan / TSan kvd loads and replays several times slower


def recovery_keys():
    if os.environ.get("KV_RECOVERY_KEYS"):
        return int(os.environ["KV_RECOVERY_KEYS"])
    return RECOVERY_KEYS_SANITIZED if kvd_sanitizer() else RECOVERY_KEYS_DEFAULT


def seed_from_env():
    seed = int(os.environ.get("KV_SEED") or random.randrange(1 << 32))
    print("random seed: KV_SEED=%d" % seed, flush=True)
    return seed


class Server:
    """kvd on a fixed --dir, restartable; each start logs to its own stderr file."""

    def __init__(self, tmp, extra=()):
        self.tmp = tmp
        self.dir = os.path.join(tmp, "data")
        self.extra = [str(a) for a in extra]
        self.starts = 0
        self.proc = None
        self.port = None
        self.errpath = None

    def spawn(self, failpoints=None):
        """Starts kvd, or kvd-fp with KVD_FAILPOINTS=failpoints."""
        self.starts += 1
        self.errpath = os.path.join(self.tmp, "kvd-%04d.stderr" % self.starts)
        self.errf = open(self.errpath, "wb")
        binary = kvd_path() if failpoints is None else kvd_fp_path()
        # the two ways to sync a batch take turns, start after start: what one wrote,
        # the other recovers
        method = ("dsync", "fdatasync")[self.starts % 2]
        args = [binary, "--port", "0", "--threads", str(THREADS), "--dir", self.dir,
                "--appendfsync", "always", "--wal-sync-method", method] + self.extra
        env = dict(os.environ)
        if failpoints is not None:
            env["KVD_FAILPOINTS"] = failpoints
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.errf, env=env)
        self.port = None

    def start_or_die(self, failpoints):
        """Starts kvd-fp; True once it is ready, False if a failpoint killed it first."""
        self.spawn(failpoints)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            m = re.search(r"kvd ready .*port=(\d+)", self.stderr())
            if m:
                self.port = int(m.group(1))
                return True
            if self.proc.poll() is not None:
                self.errf.close()
                assert self.proc.returncode == -signal.SIGKILL and \
                    "failpoint recovery-mid: killing the process" in self.stderr(), \
                    "kvd-fp exited with %s; stderr:\n%s" % (self.proc.returncode,
                                                            self.stderr()[-5000:])
                return False
            assert time.monotonic() < deadline, "kvd-fp not ready in %ds" % READY_TIMEOUT_S
            time.sleep(0.005)

    def wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            m = re.search(r"kvd ready .*port=(\d+)", self.stderr())
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                raise AssertionError("kvd exited with %s before it was ready; stderr:\n%s"
                                     % (self.proc.returncode, self.stderr()[-5000:]))
            if time.monotonic() > deadline:
                raise AssertionError("kvd not ready in %ds; stderr:\n%s"
                                     % (READY_TIMEOUT_S, self.stderr()[-5000:]))
            time.sleep(0.01)

    def start(self):
        self.spawn()
        self.wait_ready()

    def stderr(self):
        with open(self.errpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def check_sanitizers(self):
        err = self.stderr()
        for mark in SANITIZER_MARKS:
            assert mark not in err, "kvd stderr has a sanitizer report:\n%s" % err[-8000:]

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.errf.close()
        self.check_sanitizers()

    def term(self):
        """SIGTERM; asserts exit status 0."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("kvd did not exit within 60s of SIGTERM")
        self.errf.close()
        self.check_sanitizers()
        assert rc == 0, "kvd exited with %s on SIGTERM; stderr:\n%s" % (rc, self.stderr()[-5000:])

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def recovered_lines(self):
        return re.findall(r"recovered shard=.*", self.stderr())

    def files(self):
        return sorted(os.listdir(self.dir)) if os.path.isdir(self.dir) else []


# ---------------------------------------------------------------------------------------
# The model. An op is (kind, args, keys); apply(op, key, state) is the key's state after
# op (None: the key does not exist). States and values are bytes.

def apply_op(op, key, state):
    kind, args = op[0], op[1]
    if kind == "SET":
        return args[2]
    if kind == "MSET":
        for i in range(1, len(args), 2):
            if args[i] == key:
                return args[i + 1]
        raise AssertionError("MSET without %r" % key)
    if kind == "DEL":
        return None
    if kind == "INCR":
        return b"%d" % (int(state or b"0") + 1)
    if kind == "APPEND":
        return (state or b"") + args[2]
    raise AssertionError("unknown op %r" % kind)


def op_keys(op):
    kind, args = op[0], op[1]
    if kind == "MSET":
        return [args[i] for i in range(1, len(args), 2)]
    return list(args[1:]) if kind == "DEL" else [args[1]]


def expected_reply(op, acked):
    """The reply op must get, given the acknowledged state before it."""
    kind = op[0]
    if kind in ("SET", "MSET"):
        return St("OK")
    if kind == "DEL":
        return sum(1 for k in op_keys(op) if acked.get(k) is not None)
    if kind == "INCR":
        return int(apply_op(op, op[1][1], acked.get(op[1][1])))
    if kind == "APPEND":
        return len(apply_op(op, op[1][1], acked.get(op[1][1])))
    raise AssertionError(kind)


class Writer:
    """One client's keys, its acknowledged state, and its commands in flight."""

    def __init__(self, i):
        self.i = i
        self.skeys = [b"w%d:s%d" % (i, k) for k in range(SKEYS)]
        self.ckeys = [b"w%d:c%d" % (i, k) for k in range(CKEYS)]
        self.akeys = [b"w%d:a%d" % (i, k) for k in range(AKEYS)]
        self.keys = self.skeys + self.ckeys + self.akeys
        self.acked = {}      # key -> bytes (a missing key: never written or deleted)
        self.pending = collections.deque()
        self.seq = 0         # SET / MSET values carry it; it only grows
        self.acks = 0
        self.error = None
        self.ended_before_kill = None

    def value(self, key, rng):
        self.seq += 1
        head = b"%s=%d:" % (key, self.seq)
        n = rng.randint(0, 40) if rng.random() < 0.8 else rng.randint(200, 4000)
        return head + bytes([97 + self.seq % 26]) * n

    def make_op(self, rng):
        r = rng.random()
        if r < 0.50:
            k = rng.choice(self.skeys)
            return ("SET", (b"SET", k, self.value(k, rng)))
        if r < 0.65:
            ks = rng.sample(self.skeys, rng.randint(2, 4))
            args = [b"MSET"]
            for k in ks:
                args += [k, self.value(k, rng)]
            return ("MSET", tuple(args))
        if r < 0.80:
            return ("INCR", (b"INCR", rng.choice(self.ckeys)))
        if r < 0.92:
            return ("APPEND", (b"APPEND", rng.choice(self.akeys),
                               b"+%d" % rng.randrange(1000)))
        ks = rng.sample(self.keys, rng.randint(1, 2))
        return ("DEL", (b"DEL",) + tuple(ks))

    def run(self, port, rng, killed):
        """Writes until the connection breaks (the kill). Errors go to self.error."""
        try:
            c = Client(port, timeout=30)
        except OSError as e:
            self.ended_before_kill = None if killed.is_set() else repr(e)
            return
        try:
            while True:
                ops = [self.make_op(rng) for _ in range(rng.randint(1, 4))]
                self.pending.extend(ops)
                c.send(b"".join(encode(*op[1]) for op in ops))
                for op in ops:
                    r = c.read()
                    want = expected_reply(op, self.acked)
                    if r != want:
                        self.error = "writer %d: %r got %r, expected %r" % (
                            self.i, op[1][:3], r, want)
                        return
                    for k in op_keys(op):
                        s = apply_op(op, k, self.acked.get(k))
                        if s is None:
                            self.acked.pop(k, None)
                        else:
                            self.acked[k] = s
                    self.pending.popleft()
                    self.acks += 1
        except (ConnClosed, OSError) as e:
            if not killed.is_set():
                self.ended_before_kill = repr(e)
        finally:
            c.close()

    def allowed(self, key):
        """States the key may have after a crash: acknowledged, or after a prefix of the
        commands in flight on it."""
        s = self.acked.get(key)
        out = [s]
        for op in self.pending:
            if key in op_keys(op):
                s = apply_op(op, key, s)
                out.append(s)
        return out


def short(v):
    if v is None:
        return None
    return v if len(v) <= 60 else v[:60] + b"...(%d bytes)" % len(v)


def verify(srv, writers, what):
    """Every key is in a state its writer allows; then that state is the acknowledged
    one and nothing is in flight. Returns the number of in-flight commands that were
    found applied."""
    applied = 0
    with Client(srv.port, timeout=60) as c:
        allkeys = [k for w in writers for k in w.keys]
        got = dict(zip(allkeys, c.cmd("MGET", *allkeys)))
        bad = []
        for w in writers:
            for k in w.keys:
                allowed = w.allowed(k)
                if got[k] not in allowed:
                    bad.append("  %s: got %r; acknowledged %r; allowed after the commands "
                               "in flight: %r" % (k.decode(), short(got[k]), short(allowed[0]),
                                                  [short(a) for a in allowed[1:]]))
                elif got[k] != allowed[0]:
                    applied += 1
        present = sorted(k for k, v in got.items() if v is not None)
        keys = sorted(c.cmd("KEYS", "*"))
        dbsize = c.cmd("DBSIZE")
        info = c.cmd("INFO", "persistence").decode()
        rec = int(re.search(r"recovered_keys:(\d+)", info).group(1))
        assert not bad, "%s: %d keys in a state never acknowledged nor in flight:\n%s\n" \
            "recovery:\n%s" % (what, len(bad), "\n".join(bad[:20]),
                               "\n".join(srv.recovered_lines()))
        assert keys == present, "%s: KEYS * differs from the written keys present: " \
            "extra %r, missing %r" % (what, sorted(set(keys) - set(present))[:10],
                                      sorted(set(present) - set(keys))[:10])
        assert dbsize == len(present), (what, dbsize, len(present))
        assert rec == dbsize, "%s: INFO recovered_keys=%d but DBSIZE=%d" % (what, rec, dbsize)
    for w in writers:
        w.acked = {k: got[k] for k in w.keys if got[k] is not None}
        w.pending.clear()
    return applied


def info_field(port, name):
    with Client(port, timeout=30) as c:
        info = c.cmd("INFO", "persistence").decode()
    return int(re.search(r"%s:(\d+)" % name, info).group(1))


def test_kill9_torture():
    seed = seed_from_env()
    rng = random.Random(seed)
    tmp = tempfile.mkdtemp(prefix="kv-torture-")
    srv = Server(tmp, ["--wal-segment-size", SEGMENT_SIZE,
                       "--snapshot-wal-size", SNAPSHOT_WAL_SIZE])
    writers = [Writer(i) for i in range(WRITERS)]
    t0 = time.monotonic()
    stats = collections.Counter()
    max_segno = 0
    snap_files_seen = False
    failed = False
    try:
        srv.start()
        for cycle in range(CYCLES):
            what = "seed %d cycle %d" % (seed, cycle)
            killed = threading.Event()
            threads = []
            for w in writers:
                wr = random.Random("%d:%d:%d" % (seed, cycle, w.i))
                t = threading.Thread(target=w.run, args=(srv.port, wr, killed), daemon=True)
                threads.append(t)
            acks0 = sum(w.acks for w in writers)
            for t in threads:
                t.start()
            time.sleep(rng.uniform(RUN_MIN_S, RUN_MAX_S))
            try:
                stats["snapshot_rounds"] += info_field(srv.port, "rdb_saves")
            except (OSError, ConnClosed):
                pass
            killed.set()
            srv.kill9()
            for t in threads:
                t.join(60)
                assert not t.is_alive(), "%s: a writer did not stop after the kill" % what
            for w in writers:
                assert w.error is None, "%s: %s" % (what, w.error)
                assert w.ended_before_kill is None, \
                    "%s: writer %d lost its connection before the kill: %s\nstderr:\n%s" % (
                        what, w.i, w.ended_before_kill, srv.stderr()[-3000:])
            stats["acks"] += sum(w.acks for w in writers) - acks0
            stats["in_flight"] += sum(len(w.pending) for w in writers)
            for f in srv.files():
                m = re.match(r"wal-\d{3}-(\d{16})\.log$", f)
                if m:
                    max_segno = max(max_segno, int(m.group(1)))
                snap_files_seen |= f.startswith("snap-") and f.endswith(".kvs")
            r = rng.random()
            if r < 0.15:
                # kvd-fp, killed after the N-th WAL batch it replays (if it has N)
                n = rng.randint(1, 300)
                if srv.start_or_die("recovery-mid=%d" % n):
                    stats["recovery_kill_missed"] += 1
                else:
                    stats["kills_in_recovery"] += 1
                    srv.start()
            elif r < 0.30:
                # killed at a random moment of its start: recovering, in the snapshot round
                # a long replay starts, or ready and idle
                srv.spawn()
                time.sleep(rng.uniform(0, 0.3))
                srv.kill9()
                stats["kills_at_start"] += 1
                srv.start()
            else:
                srv.start()
            stats["in_flight_applied"] += verify(srv, writers, what)
        # a clean stop keeps exactly what was acknowledged
        srv.term()
        srv.start()
        verify(srv, writers, "seed %d after SIGTERM" % seed)
        for w in writers:
            assert not w.pending
        srv.term()
        srv.start()
        verify(srv, writers, "seed %d second restart after SIGTERM" % seed)
        srv.term()
    except BaseException:
        print("random seed: KV_SEED=%d (replay with it)" % seed)
        print("kvd's data directory and the stderr of each start are kept in %s" % tmp)
        failed = True
        raise
    finally:
        srv.cleanup()
        torn = [f for f in srv.files() if ".torn-" in f]
        if not failed:
            shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.monotonic() - t0
    print("torture: %d cycles in %.1fs, %d kvd starts, %d acknowledged writes, %d in flight "
          "at the kills (%d of them found applied), %d kvd-fp kills in recovery (%d kvd-fp "
          "starts had fewer batches to replay), %d kills at a random moment of a start, "
          "snapshot rounds "
          "seen %d, highest WAL segment number %d, %d torn tails kept" % (
              CYCLES, elapsed, srv.starts, stats["acks"], stats["in_flight"],
              stats["in_flight_applied"], stats["kills_in_recovery"],
              stats["recovery_kill_missed"], stats["kills_at_start"], stats["snapshot_rounds"],
              max_segno, len(torn)))
    # the run exercised what it is meant to
    assert stats["acks"] >= 50 * CYCLES, stats
    assert max_segno >= 3, "no WAL segment rotation happened (highest segment %d)" % max_segno
    if CYCLES >= 5:
        assert snap_files_seen and stats["snapshot_rounds"] > 0, \
            "no snapshot round happened: %r" % stats


def test_writes_after_a_start_with_an_empty_wal_survive():
    """SETs (on both shards), restart, SAVE (the round trims the replayed segments: no
    batch is left), restart, more SETs: after kill -9 and a restart, they must be there."""
    tmp = tempfile.mkdtemp(prefix="kv-torture-empty-wal-")
    srv = Server(tmp)
    keys = ["k%d" % i for i in range(20)]
    try:
        srv.start()
        with Client(srv.port) as c:
            for k in keys:
                assert c.cmd("SET", k, "before") == St("OK")
        srv.term()
        srv.start()
        with Client(srv.port) as c:
            assert c.cmd("SAVE") == St("OK")
        srv.term()
        srv.start()
        with Client(srv.port) as c:
            for k in keys:
                assert c.cmd("SET", k, "after") == St("OK")
        srv.kill9()
        srv.start()
        with Client(srv.port) as c:
            got = c.cmd("MGET", *keys)
        lost = [k for k, v in zip(keys, got) if v != b"after"]
        assert not lost, "acknowledged SETs lost after the restart: %r (values %r); " \
            "recovery:\n%s" % (lost, got, "\n".join(srv.recovered_lines()))
        srv.term()
    finally:
        srv.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# Recovery of many keys

def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


def kvbench_value(key, size):
    """The value kvbench --verify writes for key number `key` (tools/kvbench)."""
    h = splitmix64(key)
    pat = bytes(97 + ((h >> (i * 8)) & 0xFF) % 26 for i in range(8))
    return (pat * (size // 8 + 1))[:size]


def kvd_fp_path():
    return os.path.join(os.path.dirname(kvd_path()), "kvd-fp")


def kvbench_path():
    return os.path.join(os.path.dirname(os.path.dirname(kvd_path())), "tools", "kvbench")


def test_recovery_many_keys():
    n = recovery_keys()
    seed = seed_from_env()
    rng = random.Random(seed)
    kvbench = kvbench_path()
    assert os.access(kvbench, os.X_OK), "kvbench is not built at %s" % kvbench
    tmp = tempfile.mkdtemp(prefix="kv-recovery-")
    srv = Server(tmp)
    try:
        srv.start()
        t = time.monotonic()
        out = subprocess.run([kvbench, "-p", str(srv.port), "-c", "50", "-P", "16", "-t", "set",
                              "-r", str(n), "-d", "32", "--load", "--verify", "-n", "1",
                              "--no-progress", "--json"], capture_output=True, text=True,
                             timeout=3600)
        assert out.returncode == 0, out.stderr
        assert '"errors": 0' in out.stdout and '"unexpected": 0' in out.stdout, out.stdout
        load_s = time.monotonic() - t
        # a few hundred acknowledged overwrites with known values, then the kill
        mine = {}
        with Client(srv.port, timeout=60) as c:
            cmds = []
            for j in range(500):
                k = rng.randrange(n)
                v = b"overwritten:%d:%d" % (k, j)
                mine[k] = v
                cmds.append(("SET", b"key:%012d" % k, v))
            assert c.pipeline(cmds) == [St("OK")] * len(cmds)
            assert c.cmd("DBSIZE") == n
        srv.kill9()
        t = time.monotonic()
        srv.start()
        start_s = time.monotonic() - t
        lines = srv.recovered_lines()
        ms = [int(re.search(r" ms=(\d+)", ln).group(1)) for ln in lines]
        print("recovery of %d keys (loaded in %.1fs): kvd ready %.2fs after the restart; "
              "per shard:\n  %s" % (n, load_s, start_s, "\n  ".join(lines)))
        assert len(lines) == THREADS, lines
        with Client(srv.port, timeout=60) as c:
            assert c.cmd("DBSIZE") == n
            sample = [rng.randrange(n) for _ in range(2000)] + list(mine)
            got = c.cmd("MGET", *[b"key:%012d" % k for k in sample])
            for k, v in zip(sample, got):
                want = mine.get(k) or kvbench_value(k, 32)
                assert v == want, "key:%012d: got %r, expected %r" % (k, v, want)
            assert c.cmd("GET", "key:%012d" % n) is None
            info = c.cmd("INFO", "persistence").decode()
            assert int(re.search(r"recovered_keys:(\d+)", info).group(1)) == n
            rec_ms = int(re.search(r"recovery_time_ms:(\d+)", info).group(1))
            assert rec_ms == max(ms), (rec_ms, ms)
        srv.term()
    except BaseException:
        print("random seed: KV_SEED=%d (replay with it)" % seed)
        raise
    finally:
        srv.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
