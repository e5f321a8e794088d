"""kvd under load and with awkward data: 10k pipelined commands over keys of every
thread, 500 concurrent clients, binary keys and values, 1 MiB and 64 MiB values, and
redis-benchmark runs.
"""
import os
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import Client, Err, St, encode, kvd_fp_path, rss_kib, wait_until


def test_10k_pipelined_commands_replies_in_order(kvd, kc, rng):
    n = 10000
    counters = ["ctr:%d" % i for i in range(16)]  # spread over both threads
    expect_ctr = dict.fromkeys(counters, 0)
    cmds, expect = [], []
    for i in range(n // 2):
        k = "pk:%d:%d" % (i, rng.randrange(1 << 30))
        v = "val-%d-%s" % (i, "x" * rng.randrange(0, 40))
        cmds.append(("SET", k, v))
        expect.append(St("OK"))
        if i % 3 == 0:
            c = rng.choice(counters)
            expect_ctr[c] += 1
            cmds.append(("INCR", c))
            expect.append(expect_ctr[c])
        cmds.append(("GET", k))
        expect.append(v.encode())
    replies = kc.pipeline(cmds)
    assert len(replies) == len(expect)
    for i, (got, want) in enumerate(zip(replies, expect)):
        assert got == want, "reply %d to %r: got %r, want %r" % (i, cmds[i], got, want)
    assert kc.cmd("MGET", *counters) == [str(expect_ctr[c]).encode() for c in counters]


def test_pipelined_mixed_fanout_and_single_key(kc):
    # MGET/MSET/DEL/EXISTS (fanned out to both threads) mixed with single-key commands
    cmds, expect = [], []
    for i in range(500):
        a, b, c = "fa:%d" % i, "fb:%d" % i, "fc:%d" % i
        cmds += [("MSET", a, "1", b, "2", c, "3"), ("INCR", b), ("MGET", c, b, a, "none"),
                 ("EXISTS", a, b, c, a), ("DEL", a, c), ("GET", b), ("EXISTS", a, b, c)]
        expect += [St("OK"), 3, [b"3", b"3", b"1", None], 4, 2, b"3", 1]
    replies = kc.pipeline(cmds)
    for i, (got, want) in enumerate(zip(replies, expect)):
        assert got == want, "reply %d to %r: got %r, want %r" % (i, cmds[i], got, want)


def test_500_concurrent_clients(kvd, kc):
    n = 500
    socks = []
    try:
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", kvd.port), timeout=30)
            socks.append(s)
        # every client sends its commands before any reads: the server has all 500 busy
        for i, s in enumerate(socks):
            s.sendall(encode("SET", "cc:%d" % i, "v%d" % i) + encode("INCR", "cc:shared") +
                      encode("GET", "cc:%d" % i) + encode("PING") + encode("CLIENT", "ID"))
        ids = set()
        incrs = []
        for i, s in enumerate(socks):
            c = Client.__new__(Client)
            c.sock, c.buf, c.pos, c.port = s, bytearray(), 0, kvd.port
            assert c.read() == St("OK")
            incrs.append(c.read())
            assert c.read() == b"v%d" % i
            assert c.read() == St("PONG")
            ids.add(c.read())
        assert sorted(incrs) == list(range(1, n + 1))
        assert len(ids) == n
        assert kc.cmd("GET", "cc:shared") == b"%d" % n
        line = [l for l in kc.cmd("INFO", "clients").decode().split("\r\n")
                if l.startswith("connected_clients:")][0]
        assert int(line.split(":")[1]) >= n
    finally:
        for s in socks:
            s.close()


def test_concurrent_client_threads(kvd, kc):
    errors = []
    nthreads, per = 50, 200

    def worker(t):
        try:
            with kvd.client() as c:
                for i in range(per):
                    k = "th:%d:%d" % (t, i)
                    assert c.cmd("SET", k, str(i)) == St("OK")
                    assert c.cmd("INCR", k) == i + 1
                    assert c.cmd("INCR", "th:shared") > 0
                    assert c.cmd("GET", k) == str(i + 1).encode()
        except Exception as e:  # reported below
            errors.append("thread %d: %r" % (t, e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[:5]
    assert kc.cmd("GET", "th:shared") == b"%d" % (nthreads * per)
    assert kc.cmd("DBSIZE") == nthreads * per + 1


ALL_BYTES = bytes(range(256))


def test_binary_keys_and_values_match_redis(pair):
    keys = [b"\x00", b"a\x00b", b"\r\n", b"key\r\nwith crlf", ALL_BYTES, ALL_BYTES[::-1],
            b"\xff\xfe", b" ", b"*1\r\n$4\r\nPING\r\n", b"{\x00}tag"]
    keys += [bytes([b]) for b in range(256)]
    values = [ALL_BYTES, b"\x00" * 100, b"\r\n" * 50, b"", b"$-1\r\n", ALL_BYTES * 40]
    for i, k in enumerate(keys):
        v = values[i % len(values)]
        pair.same("SET", k, v)
        pair.same("GET", k)
        pair.same("STRLEN", k)
        pair.same("GETRANGE", k, "1", "-2")
        pair.same("APPEND", k, b"\x00\r\n")
    pair.same("MGET", *keys)
    pair.same("EXISTS", *keys)
    pair.same("DBSIZE")
    assert sorted(pair.k.cmd("KEYS", "*")) == sorted(pair.r.cmd("KEYS", "*"))
    assert set(pair.k.cmd("KEYS", "*")) == set(keys)
    pair.same("DEL", *keys)
    pair.same("DBSIZE")


def test_binary_values_of_every_length_and_byte(kc, rng):
    for i in range(300):
        n = rng.choice([0, 1, 2, 15, 16, 17, 255, 256, 257, 4095, 4096, 4097, 65535, 65536,
                        rng.randrange(1, 200000)])
        v = bytes(rng.randrange(256) for _ in range(min(n, 64))) * (n // 64 + 1)
        v = v[:n]
        k = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        assert kc.cmd("SET", k, v) == St("OK")
        assert kc.cmd("GET", k) == v, (len(v), k)
        assert kc.cmd("STRLEN", k) == n


@pytest.mark.parametrize("size", [1 << 20, 64 << 20], ids=["1MiB", "64MiB"])
def test_big_value_round_trip(kvd, kc, size):
    pattern = bytes(range(256)) * 4096  # 1 MiB of all byte values
    v = (pattern * (size // len(pattern) + 1))[:size]
    with kvd.client(timeout=120) as c:
        assert c.cmd("SET", "big", v) == St("OK")
        assert c.cmd("STRLEN", "big") == size
        assert c.cmd("GET", "big") == v
        assert c.cmd("GETRANGE", "big", str(size - 300), "-1") == v[-300:]
        assert c.cmd("APPEND", "big", b"tail") == size + 4
        assert c.cmd("GETRANGE", "big", "-6", "-1") == v[-2:] + b"tail"
        if size <= 1 << 20:  # MGET's fan-out path (kept small: the machine may be slow)
            assert c.cmd("MGET", "none", "big") == [None, v + b"tail"]
        assert c.cmd("DEL", "big") == 1
    assert kc.cmd("PING") == St("PONG")


def test_big_value_sent_in_small_chunks(kvd):
    v = os.urandom(3 << 20)
    with kvd.client(timeout=60) as c:
        data = encode("SET", "chunked", v)
        for i in range(0, len(data), 7919):
            c.send(data[i:i + 7919])
        assert c.read() == St("OK")
        assert c.cmd("GET", "chunked") == v


def run_benchmark(port, *extra):
    exe = shutil.which("redis-benchmark") or "/usr/bin/redis-benchmark"
    if not os.access(exe, os.X_OK):
        print("SKIP: redis-benchmark is missing (apt-get install redis-tools)")
        pytest.skip("redis-benchmark missing")
    args = [exe, "-h", "127.0.0.1", "-p", str(port), "-t", "set,get,incr,mset", "-n", "20000",
            "-c", "20", "-q"] + list(extra)
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=240)
    out = p.stdout.decode("utf-8", "replace")
    print(out)
    return p.returncode, out


@pytest.mark.parametrize("extra", [(), ("-P", "16")], ids=["plain", "pipeline16"])
def test_redis_benchmark_runs_cleanly(kvd, kc, extra):
    rc, out = run_benchmark(kvd.port, *extra)
    assert rc == 0, out
    lines = [l.strip() for l in re.split(r"[\r\n]", out) if "requests per second" in l]
    names = {l.split(":")[0] for l in lines}
    assert {"SET", "GET", "INCR", "MSET (10 keys)"} <= names, out
    assert "ERR" not in out and "rror" not in out, out
    for l in lines:
        assert float(l.split(":")[1].split()[0]) > 0
    assert kc.cmd("PING") == St("PONG")
    assert int(kc.cmd("GET", "counter:__rand_int__") or 0) > 0
    kvd.check_alive()


def test_pipelined_errors_interleaved_with_forwarded_commands_match_redis(pair):
    # early errors (unknown command, arity, syntax) between commands forwarded to the
    # other thread must keep their place in the reply stream
    cmds = []
    for i in range(300):
        cmds += [("GET", "e%d" % i), ("NOSUCH", "x"), ("GET",), ("SET", "e%d" % i, "v"),
                 ("RENAME", "{e%d}a" % i, "{e%d}b" % i), ("MSETNX", "{q%d}a" % i, "1", "{q%d}b" % i, "2"),
                 ("INCR", "e%d" % i), ("SCAN", "x"), ("SET", "e%d" % i, "v", "XX", "NX"),
                 ("MGET", "e%d" % i, "none", "e%d" % (i + 1)), ("DEL", "e%d" % i, "none"),
                 ("GET", "e%d" % i), ("EXPIRE", "e%d" % i, "10", "NX", "XX"), ("PING",)]
    k = pair.k.pipeline(cmds)
    r = pair.r.pipeline(cmds)
    for i, (a, b) in enumerate(zip(k, r)):
        assert a == b, "reply %d to %r: kvd %r, redis %r" % (i, cmds[i], a, b)


def test_pipelined_cross_shard_commands_keep_their_place(kc):
    # {a} and {b} are on different threads: MSETNX and RENAME of them are cross-shard
    # transactions, and what was pipelined behind each waits for it
    cmds, expect = [], []
    for i in range(200):
        cmds += [("SET", "x%d" % i, "1"), ("MSETNX", "{a}%d" % i, "1", "{b}%d" % i, "2"),
                 ("GET", "x%d" % i), ("RENAME", "{a}%d" % i, "{b}%d" % i), ("INCR", "x%d" % i),
                 ("MGET", "{a}%d" % i, "{b}%d" % i)]
        expect += [St("OK"), 1, b"1", St("OK"), 2, [None, b"1"]]
    got = kc.pipeline(cmds)
    for i, (a, b) in enumerate(zip(got, expect)):
        assert a == b, "reply %d to %r: got %r, want %r" % (i, cmds[i], a, b)
    info = kc.cmd("INFO", "stats").decode()
    assert int(info.split("cross_shard_transactions:")[1].split()[0]) >= 400


@pytest.mark.parametrize("klen", [255, 256, 65535, 65536, 1 << 20])
def test_long_keys(kc, klen):
    key = bytes(range(256)) * (klen // 256) + b"k" * (klen % 256)
    assert len(key) == klen
    assert kc.cmd("SET", key, "v", "EX", "100") == St("OK")
    assert kc.cmd("GET", key) == b"v"
    assert kc.cmd("APPEND", key, "w") == 2
    assert kc.cmd("EXISTS", key, key) == 2
    assert 0 < kc.cmd("TTL", key) <= 100
    assert kc.cmd("KEYS", "*") == [key]
    cursor, seen = b"0", []
    while True:
        cursor, keys = kc.cmd("SCAN", cursor, "COUNT", "1000")
        seen += keys
        if cursor == b"0":
            break
    assert seen == [key]
    assert kc.cmd("RANDOMKEY") == key
    assert kc.cmd("DEL", key) == 1
    assert kc.cmd("DBSIZE") == 0


def test_fanout_over_20000_keys(kc):
    keys = ["m%d" % i for i in range(20000)]
    assert kc.cmd("MSET", *[x for k in keys for x in (k, "v" + k)]) == St("OK")
    assert kc.cmd("MGET", *keys) == [b"v" + k.encode() for k in keys]
    assert kc.cmd("EXISTS", *keys) == 20000
    assert kc.cmd("UNLINK", *keys[::2]) == 10000
    assert kc.cmd("DEL", *keys) == 10000
    assert kc.cmd("DBSIZE") == 0


def test_pathological_glob_does_not_stall(kvd, kc):
    kc.cmd("SET", "a" * 5000, "v")
    pat = "*a" * 40 + "*b"
    t0 = time.monotonic()
    assert kc.cmd("KEYS", pat) == []
    assert kc.cmd("SCAN", "0", "MATCH", pat, "COUNT", "100")[1] == []
    assert time.monotonic() - t0 < 5
    with kvd.client() as c:
        assert c.cmd("PING") == St("PONG")


def test_lone_requests_of_many_clients_find_their_keys(kvd, kc):
    """Requests one at a time from many clients (each alone in its receive: the turn's
    prefetch hashes its key and hands the hashes on) over keys of every length 0..40,
    binary, with and without {hash tags}, the same keys from several clients: every key
    is where every other path (MGET, EXISTS, SCAN, RENAME within a tag) finds it."""
    keys = []
    for n in range(0, 41):
        keys.append(bytes((i * 37 + n) % 256 for i in range(n)))
        if n >= 3:
            keys.append(b"{t%d}" % (n % 4) + b"k" * (n - 3))
    errors = []

    def worker(w):
        try:
            c = kvd.client()
            for i, k in enumerate(keys):
                if i % 4 == w % 4:
                    assert c.cmd("SET", k, b"v%d" % i) == St("OK")
            for _ in range(2):
                for i, k in enumerate(keys):
                    got = c.cmd("GET", k)
                    assert got is None or got == b"v%d" % i, (k, got)
            c.close()
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    def reader(w):
        """A lone GET of one key, then a receive whose first request is not a one-key
        one (nothing hashed for it) and whose second reads another key of the same
        length: found by its own bytes, never by the first key's hashes."""
        try:
            c = kvd.client()
            for i, k in enumerate(keys):
                for j, k2 in enumerate(keys):
                    if j != i and len(k2) == len(k) and (i + j) % 16 == w:
                        assert c.cmd("GET", k) == b"v%d" % i
                        assert c.pipeline([("PING",), ("GET", k2)]) == [St("PONG"), b"v%d" % j]
            c.close()
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    for fn in (worker, reader):  # the writes, then the reads
        threads = [threading.Thread(target=fn, args=(w,)) for w in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
    want = [b"v%d" % i for i in range(len(keys))]
    assert kc.cmd("MGET", *keys) == want
    assert kc.cmd("EXISTS", *keys) == len(keys)
    assert kc.cmd("DBSIZE") == len(set(keys))
    seen, cursor = set(), b"0"
    while True:
        cursor, batch = kc.cmd("SCAN", cursor, "COUNT", "100")
        seen.update(batch)
        if cursor == b"0":
            break
    assert seen == set(keys)
    assert kc.cmd("RENAME", b"{t1}" + b"k" * 2, b"{t1}moved") == St("OK")
    assert kc.cmd("GET", b"{t1}moved") == want[keys.index(b"{t1}" + b"k" * 2)]


def ring_sockets(pid):
    """The socket inodes registered in the file tables of the process's io_uring rings
    (from /proc's fdinfo of each ring: "UserFiles: N", then "%5u: socket:[inode]"). The
    kernel lists the table only when it gets the ring's lock at once: a busy ring may
    show none, so callers poll."""
    found = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)) != "anon_inode:[io_uring]":
                continue
            with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                info = f.read()
        except OSError:
            continue
        found += re.findall(r"^\s*\d+: socket:\[(\d+)\]$", info, re.M)
    return sorted(found)


def client_sockets(pid, port):
    """The inodes of the process's sockets other than its listeners: its clients'."""
    listeners = set()
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        f = line.split()
        if f[3] == "0A" and int(f[1].split(":")[1], 16) == port:  # LISTEN on the port
            listeners.add(f[9])
    inodes = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            m = re.match(r"socket:\[(\d+)\]$", os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except OSError:
            continue
        if m and m.group(1) not in listeners:
            inodes.append(m.group(1))
    return sorted(inodes)


def kernel_frees_removed_files():
    """Whether the kernel is 6.13 or later, where kvd uses the rings' file tables."""
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return m is not None and (int(m.group(1)), int(m.group(2))) >= (6, 13)


def test_clients_are_registered_with_the_rings_and_unregistered_at_close(kvds):
    """Each client socket is in its shard's ring file table (its receives and sends skip
    the fd lookup) for exactly as long as kvd has it open: after 3 rounds of 60 clients
    opened and closed, only the clients still connected are registered. Before Linux
    6.13 (a removed entry waited for every older request, and a client's receive lasts
    as long as the client) no table is used, and kvd says so."""
    k = kvds(args=["--threads", "2", "--appendonly", "no", "--save", "",
                   "--loglevel", "verbose"])
    if not kernel_frees_removed_files():
        with k.client() as c:
            assert c.cmd("PING") == St("PONG")
            assert ring_sockets(k.pid) == []
        assert "io_uring file tables not used before Linux 6.13" in k.stderr()
        assert k.stop() == 0
        return
    keep = k.client()
    assert keep.cmd("PING") == St("PONG")
    for rnd in range(3):
        clients = [k.client() for _ in range(60)]
        for i, c in enumerate(clients):
            assert c.pipeline([("SET", "fx:%d" % i, "r%d" % rnd), ("GET", "fx:%d" % i)]) == [
                St("OK"), b"r%d" % rnd]
        wait_until(lambda: len(client_sockets(k.pid, k.port)) == 61, 10, what="61 clients")
        wait_until(lambda: ring_sockets(k.pid) == client_sockets(k.pid, k.port), 10,
                   what="the rings to hold the 61 clients")
        for c in clients:
            c.close()
        wait_until(lambda: len(client_sockets(k.pid, k.port)) == 1, 10, what="the closes")
        wait_until(lambda: ring_sockets(k.pid) == client_sockets(k.pid, k.port), 10,
                   what="the rings to hold only the one client left")
    assert keep.cmd("DBSIZE") == 60
    keep.close()
    assert k.stop() == 0


def test_clients_are_served_by_plain_fds_without_ring_file_tables(kvds):
    """Where the ring has no file table (kvd-fp's no-fixed-files: as on a kernel without
    sparse tables) kvd says so once and serves every client by its fd: pipelines,
    commands forwarded between threads, clients closing."""
    k = kvds(args=["--threads", "2", "--appendonly", "no", "--save", ""], bin=kvd_fp_path(),
             env={"KVD_FAILPOINTS": "no-fixed-files"})
    clients = [k.client() for _ in range(20)]
    for i, c in enumerate(clients):
        cmds = [("SET", "pf:%d:%d" % (i, j), "v%d" % j) for j in range(50)]
        assert c.pipeline(cmds) == [St("OK")] * 50
        assert c.cmd("MGET", *["pf:%d:%d" % (i, j) for j in range(50)]) == [
            b"v%d" % j for j in range(50)]
    assert ring_sockets(k.pid) == []
    for c in clients[1:]:
        c.close()
    assert clients[0].cmd("DBSIZE") == 1000
    clients[0].close()
    if kernel_frees_removed_files():
        assert k.stderr().count("sparse file tables unavailable") == 1
    assert k.stop() == 0

