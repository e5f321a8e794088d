"""kvd durability: every claim is checked by a crash (SIGKILL, never SHUTDOWN) and a
restart on the same --dir.

- every write command's resulting state (values and TTLs) survives kill -9, binary-safe
  keys and values, an empty and a 1 MiB value, keys of both shard threads;
- snapshots (SAVE, BGSAVE, automatic rounds of --snapshot-wal-size): data written before
  and after a round comes back, rounds delete the WAL segments they cover, LASTSAVE and
  INFO persistence report them;
- appendfsync everysec / no, CONFIG GET/SET appendfsync, --appendonly no (without a SAVE);
- a torn WAL tail (truncated or scribbled last batch) is cut and kept aside, a corrupt
  batch in the middle, a damaged snapshot or a missing segment refuses the start unless
  --repair;
- failpoints of kvd-fp (SIGKILL inside the WAL writer, the snapshot writer, recovery):
  what was acknowledged is back, what was never written is not, and a write in flight at
  the kill was not acknowledged; a crash during recovery, then a clean recovery;
- kill -9 at a random moment under concurrent writers and automatic snapshot rounds;
- a second kvd on the same --dir and a layout change are refused;
- a full disk (a small tmpfs in a private mount namespace) refuses writes with -MISCONF,
  reads go on, writes resume once space is back, nothing acknowledged is lost.

WAL files are read here with the layout of io/walfmt.h. Random data is seeded: the seed
is printed, $KV_SEED (or $KV_TEST_SEED) replays it.
"""
import errno
import glob
import os
import random
import re
import signal
import struct
import subprocess
import threading
import time

import pytest

from conftest import (Client, ConnClosed, Err, Kvd, St, encode, kvd_fp_path, kvd_path,
                      wait_until)

SEG = ["--wal-segment-size", "256kb"]  # small segments: rotation in every test
BLOCK = 4096
BATCH_MAGIC = 0x4257564B
# the batch header starts magic version size count reserved len seq; its own `size`
# field says where the records begin
BATCH_HDR = struct.Struct("<IHHIIQQ")
REC_HDR = struct.Struct("<QQQQqIIQB7x")  # len crc lsn epoch expire part klen vlen type
PUT, DEL, EXPIRE, FLUSH, RANGE = 1, 2, 3, 4, 5
CONN_ERRORS = (ConnClosed, ConnectionError, OSError)


# ---------------------------------------------------------------------------------------
# helpers

@pytest.fixture
def rng():
    seed = int(os.environ.get("KV_SEED") or os.environ.get("KV_TEST_SEED")
               or random.randrange(1 << 32))
    print("random seed: KV_SEED=%d" % seed)
    return random.Random(seed)


def restart(k, kvds, env=None, **kw):
    """k.restart(...) tracked by the fixture; env (default: none, so no failpoint) is not
    inherited. ThreadSanitizer reports are turned off for a start that is expected to
    refuse (ready=False): the refusing shard thread ends while the others set up, kvd
    exits without joining them (a thread-leak report), and the memory the ended thread's
    mimalloc heap leaves is reused by another thread through an allocator TSan does not
    see (a data-race report between recovery and connection setup)."""
    env = dict(env or {})
    if kw.get("ready") is False:
        opts = os.environ.get("TSAN_OPTIONS", "")
        env["TSAN_OPTIONS"] = (opts + " " if opts else "") + "report_bugs=0"
    k2 = k.restart(env=env, **kw)
    kvds.track(k2)
    return k2


def fp_bin():
    b = kvd_fp_path()
    if not os.access(b, os.X_OK):
        pytest.fail("kvd-fp is not built at %s (cmake --build <dir> --target kvd-fp, or set "
                    "KVD_FP_BIN)" % b)
    return b


def dump(c):
    """The whole keyspace: {key: (value, pttl)}."""
    keys = c.cmd("KEYS", "*")
    assert isinstance(keys, list), keys
    if not keys:
        return {}
    replies = c.pipeline([("GET", k) for k in keys] + [("PTTL", k) for k in keys])
    n = len(keys)
    out = {}
    for i, k in enumerate(keys):
        v, t = replies[i], replies[n + i]
        if v is None or t == -2:  # expired between KEYS and GET
            continue
        out[k] = (v, t)
    return out


def short(b):
    return b if len(b) <= 60 else b[:40] + b"...(%d bytes)" % len(b)


def assert_same_keyspace(before, after, elapsed_ms):
    """Same keys and values; a TTL may only have gone down by the time that passed."""
    missing = sorted(set(before) - set(after))
    extra = sorted(set(after) - set(before))
    assert not missing and not extra, "keys lost: %r\nkeys appeared: %r" % (
        [short(k) for k in missing[:20]], [short(k) for k in extra[:20]])
    for k, (v, t) in before.items():
        v2, t2 = after[k]
        assert v2 == v, "value of %r: %r before the crash, %r after" % (short(k), short(v),
                                                                        short(v2))
        if t < 0:
            assert t2 == t, "TTL of %r: %d before, %d after" % (short(k), t, t2)
        else:
            assert t - elapsed_ms - 50 <= t2 <= t + 50, \
                "TTL of %r: %d ms before, %d ms after %d ms" % (short(k), t, t2, elapsed_ms)


def crash_and_compare(k, kvds, c, **restart_kw):
    """Dumps, kills -9, restarts on the same dir, asserts the same keyspace. Returns the
    new kvd and its dump."""
    t0 = time.monotonic()  # before the TTLs are read: the time between both reads is less
    before = dump(c)
    c.close()
    k.kill9()
    k2 = restart(k, kvds, **restart_kw)
    c2 = k2.client()
    after = dump(c2)
    c2.close()
    assert_same_keyspace(before, after, int((time.monotonic() - t0) * 1000) + 1)
    return k2, after


class Batch:
    def __init__(self, off, seq, span, recs, hsize):
        self.off, self.seq, self.span, self.recs, self.hsize = off, seq, span, recs, hsize

    def keys(self):
        return [r[1] for r in self.recs]


def wal_segments(datadir, shard):
    return sorted(glob.glob(os.path.join(datadir, "wal-%03d-%s.log" % (shard, "[0-9a-f]" * 16))))


def read_batches(path):
    """The batches of a segment file, in order: found by their magic at 4 KiB boundaries
    (block 0 is the segment header). Each record is (type, key, value, expire_ms)."""
    with open(path, "rb") as f:
        data = f.read()
    out = []
    off = BLOCK
    while off + BATCH_HDR.size <= len(data):
        magic, _ver, hsize, count, _res, blen, seq = BATCH_HDR.unpack_from(data, off)
        if magic != BATCH_MAGIC:
            off += BLOCK
            continue
        recs = []
        p = off + hsize
        for _ in range(count):
            rlen, _c, _lsn, _ep, exp, _part, klen, vlen, typ = REC_HDR.unpack_from(data, p)
            k = data[p + REC_HDR.size:p + REC_HDR.size + klen]
            v = data[p + REC_HDR.size + klen:p + REC_HDR.size + klen + vlen]
            recs.append((typ, k, v, exp))
            p += rlen
        span = (hsize + blen + BLOCK - 1) // BLOCK * BLOCK
        out.append(Batch(off, seq, span, recs, hsize))
        off += span
    return out


def info(c, section="persistence"):
    raw = c.cmd("INFO", section)
    assert isinstance(raw, bytes), raw
    out = {}
    for line in raw.decode().split("\r\n"):
        if ":" in line and not line.startswith("#"):
            a, b = line.split(":", 1)
            out[a] = b
    return out


def set_seq(c, items):
    """SETs one at a time (each its own group commit); all must be +OK."""
    for k, v in items:
        assert c.cmd("SET", k, v) == St("OK"), k


def run_exit(k, timeout=30):
    """Waits for a kvd that must exit by itself; returns (status, its stderr)."""
    rc = k.wait_exit(timeout)
    return rc, k.stderr()


# ---------------------------------------------------------------------------------------
# 1. every write command

def write_commands(c, rng):
    """Runs every write command once or more over keys of both shards; asserts the
    replies that say the command did what it should."""
    now = int(time.time())
    big = rng.randbytes(1 << 20)
    binkey = b"bin\x00\r\n\xff\xfekey"
    binval = bytes(range(256)) * 3

    def ok(*a):
        r = c.cmd(*a)
        assert r == St("OK"), (a, r)

    def eq(want, *a):
        r = c.cmd(*a)
        assert r == want, (a, r, want)

    # keys that FLUSHALL removes; none may come back
    for i in range(30):
        ok("SET", "gone:%d" % i, "x" * i)
    ok("SET", "gone:ttl", "x", "EX", 1000)
    ok("FLUSHALL")
    eq(0, "DBSIZE")

    ok("SET", binkey, binval)
    ok("SET", "empty", "")
    ok("SET", "big", big)
    for i in range(40):  # plain keys over every partition of both shards
        ok("SET", "plain:%d" % i, rng.randbytes(rng.randrange(0, 300)))
    ok("SET", "ex", "v", "EX", 500)
    ok("SET", "px", "v", "PX", 600000)
    ok("SET", "exat", "v", "EXAT", now + 700)
    ok("SET", "pxat", "v", "PXAT", (now + 800) * 1000 + 123)
    ok("SET", "nx", "first", "NX")
    eq(None, "SET", "nx", "second", "NX")
    eq(None, "SET", "xx-missing", "v", "XX")
    ok("SET", "ex", "v2", "XX", "KEEPTTL")
    ok("SET", "keepttl", "a", "EX", 900)
    ok("SET", "keepttl", "b", "KEEPTTL")
    eq(b"b", "SET", "keepttl", "c", "GET", "KEEPTTL")
    ok("SET", "ttl-dropped", "a", "EX", 900)
    eq(b"a", "SET", "ttl-dropped", "b", "GET")  # a SET without KEEPTTL clears the TTL
    eq(1, "SETNX", "setnx", "v")
    eq(0, "SETNX", "setnx", "w")
    ok("SETEX", "setex", 1000, "v")
    ok("PSETEX", "psetex", 1100000, "v")
    ok("SET", "getset", "old", "EX", 100)
    eq(b"old", "GETSET", "getset", "new")  # and the TTL is gone
    eq(None, "GETSET", "getset-new", "v")
    ok("SET", "getdel", "v")
    eq(b"v", "GETDEL", "getdel")
    eq(b"v", "GETEX", "setnx", "EX", 1200)
    ok("SET", "getex-persist", "v", "EX", 100)
    eq(b"v", "GETEX", "getex-persist", "PERSIST")
    ok("MSET", "m:a", "1", "m:b", "2", "m:c", "", "m:d", binval, "m:e", "5", "m:f", "6")
    eq(1, "MSETNX", "{mn}a", "1", "{mn}b", "2", "{mn}c", "3", "{mn}d", "4")
    eq(0, "MSETNX", "{mn}e", "1", "{mn}a", "x")
    eq(1, "INCR", "incr")
    eq(11, "INCRBY", "incr", 10)
    eq(-1, "DECR", "decr")
    eq(-101, "DECRBY", "decr", 100)
    ok("SET", "incr-ttl", "5", "EX", 1300)
    eq(6, "INCR", "incr-ttl")  # keeps the TTL
    eq(b"3.5", "INCRBYFLOAT", "float", "3.5")
    eq(b"3.75", "INCRBYFLOAT", "float", "0.25")
    eq(3, "APPEND", "append", "abc")
    eq(6, "APPEND", "append", binval[:3])
    eq(13, "SETRANGE", "setrange", 10, "xyz")  # zero-padded
    ok("SET", "setrange2", "Hello World")
    eq(11, "SETRANGE", "setrange2", 6, "Redis")
    eq(0, "SETBIT", "setbit", 20, 1)  # grows to 3 bytes
    eq([0, 3, -1], "BITFIELD", "bitfield", "SET", "u8", "#1", "200", "INCRBY", "i4", "0", "3",
       "OVERFLOW", "SAT", "INCRBY", "i16", "40", "-1")
    ok("RESTORE", "restored", 1950000, c.cmd("DUMP", "setrange2"))
    ok("SET", "bitfield-long", "x" * 3000, "EX", 1900)
    eq([120, 88], "BITFIELD", "bitfield-long", "SET", "u8", "#2000", "0", "INCRBY", "u8",
       "#2999", "-32")  # a RANGE record (the value is long), the TTL kept
    for i in range(6):
        ok("SET", "del:%d" % i, "v")
    eq(3, "DEL", "del:0", "del:1", "del:2", "del:missing")
    eq(2, "UNLINK", "del:3", "del:4")
    ok("SET", "exp", "v")
    eq(1, "EXPIRE", "exp", 1400)
    ok("SET", "pexp", "v")
    eq(1, "PEXPIRE", "pexp", 1500000)
    ok("SET", "expat", "v")
    eq(1, "EXPIREAT", "expat", now + 1600)
    ok("SET", "pexpat", "v")
    eq(1, "PEXPIREAT", "pexpat", (now + 1700) * 1000 + 7)
    ok("SET", "expat-past", "v")
    eq(1, "EXPIREAT", "expat-past", now - 10)  # deletes
    ok("SET", "pexpat-past", "v", "EX", 100)
    eq(1, "PEXPIREAT", "pexpat-past", 1000)  # deletes
    ok("SET", "expire-neg", "v")
    eq(1, "EXPIRE", "expire-neg", -5)  # deletes
    ok("SET", "persist", "v", "EX", 100)
    eq(1, "PERSIST", "persist")
    for i in range(4):  # RENAME within a partition (hash tags), over several
        ok("SET", "{ren%d}src" % i, "value%d" % i, "EX", 1800 + i)
        ok("RENAME", "{ren%d}src" % i, "{ren%d}dst" % i)
    ok("SET", "{ren}over", "old")
    ok("SET", "{ren}src", "new")
    ok("RENAME", "{ren}src", "{ren}over")
    ok("SET", "{rnx}src", "v")
    ok("SET", "{rnx}taken", "t")
    eq(0, "RENAMENX", "{rnx}src", "{rnx}taken")
    eq(1, "RENAMENX", "{rnx}src", "{rnx}free")
    ok("SET", "soon", "v", "PX", 150)  # expires before the crash: must stay gone
    ok("SET", "overwritten", "1")
    ok("SET", "overwritten", "2")
    time.sleep(0.2)
    return {"big": big, "binkey": binkey, "binval": binval}


def test_every_write_command_survives_kill9(kvds, rng):
    k = kvds(args=SEG)
    c = k.client()
    w = write_commands(c, rng)
    # spot checks of the state the comparison below carries across the crash
    assert c.cmd("GET", "big") == w["big"]
    assert c.cmd("GET", w["binkey"]) == w["binval"]
    assert c.cmd("GET", "setrange") == b"\0" * 10 + b"xyz"
    k2, after = crash_and_compare(k, kvds, c)
    assert after[b"big"][0] == w["big"] and after[w["binkey"]][0] == w["binval"]
    assert after[b"empty"] == (b"", -1)
    assert after[b"setrange2"][0] == b"Hello Redis"
    assert after[b"restored"][0] == b"Hello Redis" and 0 < after[b"restored"][1] <= 1950000
    assert after[b"setbit"][0] == b"\0\0\x08"
    assert after[b"bitfield"][0] == b"\x30\xc8\0\0\0\xff\xff"
    long = after[b"bitfield-long"]
    assert long[0] == b"x" * 2000 + b"\0" + b"x" * 998 + b"X" and 0 < long[1] <= 1900000
    assert after[b"{ren}over"] == (b"new", -1)
    assert after[b"{rnx}taken"][0] == b"t" and after[b"{rnx}free"][0] == b"v"
    assert 0 < after[b"{ren2}dst"][1] <= 1802000
    assert after[b"incr-ttl"][0] == b"6" and after[b"incr-ttl"][1] > 1000000
    assert after[b"getset"] == (b"new", -1) and after[b"getex-persist"][1] == -1
    for gone in (b"getdel", b"expat-past", b"pexpat-past", b"expire-neg", b"soon",
                 b"del:0", b"del:3", b"{ren0}src", b"{rnx}src", b"{mn}e", b"xx-missing"):
        assert gone not in after, gone
    assert not [x for x in after if x.startswith(b"gone:")]
    # both shard threads logged records
    data = k2.data_dir()
    for shard in (0, 1):
        puts = [r for seg in wal_segments(data, shard) for b in read_batches(seg)
                for r in b.recs if r[0] == PUT]
        assert puts, "shard %d wrote no PUT record" % shard
    # a second life on the same dir: more writes (sequence numbers go on), crash again
    c = k2.client()
    assert c.cmd("DEL", "big", "plain:1") == 2
    assert c.cmd("SET", "second", "life", "PX", 900000) == St("OK")
    assert c.cmd("APPEND", "append", "more") == 10
    assert c.cmd("FLUSHALL", "ASYNC") == St("OK")  # the old entries freed lazily
    assert c.cmd("SET", "after-flush", "1") == St("OK")
    k3, after = crash_and_compare(k2, kvds, c, args=["--wal-segment-size", "64kb"])
    assert set(after) == {b"after-flush"}
    # a third life with another segment size: the old segments are read as they are
    c = k3.client()
    assert c.cmd("SET", "third", rng.randbytes(100000)) == St("OK")
    k4, after = crash_and_compare(k3, kvds, c, args=SEG)
    assert set(after) == {b"after-flush", b"third"}
    assert k4.stop() == 0


def test_append_and_setrange_log_only_what_they_write(kvds, rng):
    """APPEND / SETRANGE on long values write RANGE records (the bytes written, not the
    whole value), and recovery rebuilds the values from them, over a snapshot taken
    while they ran and across a second crash."""
    k = kvds(args=SEG)
    c = k.client()
    base = rng.randbytes(200000)
    assert c.cmd("SET", "log", base) == St("OK")
    assert c.cmd("SET", "ttl", base, "EX", 100000) == St("OK")
    expect = {b"log": bytearray(base), b"ttl": bytearray(base)}
    before = int(info(c)["wal_bytes_written"])
    for i in range(300):
        piece = rng.randbytes(rng.randrange(1, 40))
        key = b"log" if i % 2 else b"ttl"
        assert c.cmd("APPEND", key, piece) == len(expect[key]) + len(piece)
        expect[key] += piece
        off = rng.randrange(0, len(expect[key]) + 50)
        piece = rng.randbytes(rng.randrange(1, 20))
        c.cmd("SETRANGE", key, off, piece)
        end = off + len(piece)
        if end > len(expect[key]):
            expect[key] += bytes(end - len(expect[key]))
        expect[key][off:end] = piece
        if i == 150:
            assert c.cmd("BGSAVE") == St("Background saving started")
    # a short value is logged whole; a SETRANGE far out on a new key is a RANGE
    assert c.cmd("APPEND", "short", "abc") == 3 and c.cmd("APPEND", "short", "de") == 5
    assert c.cmd("SETRANGE", "sparse", 100000, "end") == 100003
    written = int(info(c)["wal_bytes_written"]) - before
    # 600 one-block batches at most (4 KiB each) plus the snapshot round's nothing:
    # whole values would have been 600 x 200 KB = 120 MB
    assert written < 8 * 1024 * 1024, written
    recs = [r for shard in (0, 1) for seg in wal_segments(k.data_dir(), shard)
            for b in read_batches(seg) for r in b.recs]
    ranges = [r for r in recs if r[0] == RANGE]
    assert len({r[1] for r in ranges} & {b"log", b"ttl", b"sparse"}) == 3
    assert [r[0] for r in recs if r[1] == b"short"][-2:] == [PUT, PUT]
    for key, v in expect.items():
        assert c.cmd("GET", key) == bytes(v)
    k2, after = crash_and_compare(k, kvds, c)
    assert after[b"log"][0] == bytes(expect[b"log"]) and after[b"log"][1] == -1
    assert after[b"ttl"][0] == bytes(expect[b"ttl"]) and after[b"ttl"][1] > 90000000
    assert after[b"sparse"][0] == bytes(100000) + b"end"
    assert after[b"short"][0] == b"abcde"
    # a second life: more appends over the recovered values, then crash again
    c = k2.client()
    assert c.cmd("APPEND", "log", "!") == len(expect[b"log"]) + 1
    assert c.cmd("SET", "ttl", "now short") == St("OK")
    assert c.cmd("APPEND", "ttl", "er") == 11
    k3, after = crash_and_compare(k2, kvds, c)
    assert after[b"log"][0] == bytes(expect[b"log"]) + b"!"
    assert after[b"ttl"] == (b"now shorter", -1)
    assert k3.stop() == 0


# ---------------------------------------------------------------------------------------
# 2. snapshots

def fill(c, prefix, n, size, rng, pipeline=50):
    """Writes n keys of `size` random bytes, pipelined; returns {key: value}."""
    out = {}
    for start in range(0, n, pipeline):
        cmds = []
        for i in range(start, min(n, start + pipeline)):
            key = ("%s:%d" % (prefix, i)).encode()
            out[key] = rng.randbytes(size)
            cmds.append(("SET", key, out[key]))
        assert c.pipeline(cmds) == [St("OK")] * len(cmds)
    return out


def count_wal(datadir):
    return len(glob.glob(os.path.join(datadir, "wal-*.log")))


def test_save_bgsave_trim_and_info(kvds, rng):
    k = kvds(args=SEG + ["--snapshot-wal-size", "0"])
    c = k.client()
    i0 = info(c)
    assert i0["aof_enabled"] == "1" and i0["appendfsync"] == "always"
    assert i0["rdb_bgsave_in_progress"] == "0" and i0["rdb_saves"] == "0"
    lastsave0 = c.cmd("LASTSAVE")
    a = fill(c, "a", 400, 3000, rng)  # about 1.2 MB: several 256 KiB segments per shard
    c.cmd("SET", "a:ttl", "v", "EX", 5000)
    segs_before = count_wal(k.data_dir())
    assert segs_before >= 6, segs_before
    assert int(info(c)["rdb_changes_since_last_save"]) == 401
    wait_until(lambda: int(time.time()) > lastsave0, 2, what="the next second")
    assert c.cmd("SET", "a:soon", "v", "PX", 1000) == St("OK")  # in snapshots, then expires
    assert c.cmd("SAVE") == St("OK")
    i1 = info(c)
    assert i1["rdb_changes_since_last_save"] == "0"
    assert i1["rdb_saves"] == "2", i1  # one round per shard thread
    assert i1["rdb_last_bgsave_status"] == "ok" and i1["rdb_bgsave_in_progress"] == "0"
    assert c.cmd("LASTSAVE") > lastsave0
    segs_after = count_wal(k.data_dir())
    # each shard keeps its current segment and at most a prepared spare
    assert segs_after <= 4 and segs_after < segs_before, (segs_before, segs_after)
    assert int(i1["wal_segments"]) <= 2
    snaps = glob.glob(os.path.join(k.data_dir(), "snap-*.kvs"))
    assert len(snaps) == 8, snaps  # one per partition (2 threads x 4)
    # after the snapshot: overwrites, deletes, TTL changes, new keys
    b = fill(c, "b", 100, 500, rng)
    for i in range(0, 400, 7):
        assert c.cmd("DEL", "a:%d" % i) == 1
    for i in range(1, 400, 11):
        assert c.cmd("SET", "a:%d" % i, "over") == St("OK")
    assert c.cmd("PERSIST", "a:ttl") == 1
    assert c.cmd("EXPIRE", "a:5", 3000) == 1
    assert c.cmd("BGSAVE") == St("Background saving started")
    wait_until(lambda: info(c)["rdb_saves"] == "4", 20, what="BGSAVE")
    i2 = info(c)
    assert i2["rdb_last_bgsave_status"] == "ok" and i2["rdb_bgsave_in_progress"] == "0"
    # BGREWRITEAOF is a snapshot round too (it compacts the WAL)
    assert c.cmd("BGREWRITEAOF") == St("Background append only file rewriting started")
    wait_until(lambda: info(c)["rdb_saves"] == "6", 20, what="BGREWRITEAOF")
    # after the BGSAVE: more changes that only the WAL has
    for i in range(0, 100, 3):
        assert c.cmd("DEL", "b:%d" % i) == 1
    assert c.cmd("SET", "c:1", "wal only") == St("OK")
    assert int(info(c)["rdb_changes_since_last_save"]) == 35
    wait_until(lambda: c.cmd("EXISTS", "a:soon") == 0, 5, what="a:soon to expire")
    k2, after = crash_and_compare(k, kvds, c)
    assert after[b"a:1"][0] == b"over" and b"a:0" not in after and b"b:0" not in after
    assert b"a:soon" not in after
    assert after[b"a:2"][0] == a[b"a:2"] and after[b"b:1"][0] == b[b"b:1"]
    assert after[b"a:ttl"][1] == -1 and 0 < after[b"a:5"][1] <= 3000000
    c = k2.client()
    assert int(info(c)["recovered_keys"]) == len(after)
    # FLUSHALL after a snapshot: the flush in the WAL must win over the snapshot
    assert c.cmd("SAVE") == St("OK")
    assert c.cmd("FLUSHALL") == St("OK")
    assert c.cmd("SET", "after", "flush") == St("OK")
    k3, after = crash_and_compare(k2, kvds, c)
    assert set(after) == {b"after"}
    assert k3.stop() == 0


def test_automatic_snapshot_rounds(kvds, rng):
    k = kvds(args=SEG + ["--snapshot-wal-size", "512kb"])
    c = k.client()
    expect = {}
    for rnd in range(12):  # about 3.6 MB over both shards, overwriting as it goes
        for key, v in fill(c, "auto:%d" % (rnd % 4), 300, 1000, rng).items():
            expect[key] = v
        for i in range(rnd, 300, 13):
            key = b"auto:%d:%d" % (rnd % 4, i)
            assert c.cmd("DEL", key) == 1
            del expect[key]
    wait_until(lambda: info(c)["rdb_bgsave_in_progress"] == "0", 20, what="the last round")
    i = info(c)
    assert int(i["rdb_saves"]) >= 4, i  # rounds started by themselves
    assert i["snapshot_rounds_failed"] == "0"
    written = int(i["wal_bytes_written"])
    assert written > 3_000_000
    # segments are numbered in order: the rounds deleted those below the files left
    for shard in (0, 1):
        segs = wal_segments(k.data_dir(), shard)
        newest = int(os.path.basename(segs[-1])[8:24], 16)
        print("shard %d: %d segment files left of %d" % (shard, len(segs), newest))
        assert newest >= 5 and len(segs) <= newest - 3, segs
    k2, after = crash_and_compare(k, kvds, c)
    assert {x: after[x][0] for x in after} == expect
    assert k2.stop() == 0


# ---------------------------------------------------------------------------------------
# 3. appendfsync, appendonly

def test_appendfsync_everysec_and_no(kvds, rng):
    k = kvds(args=SEG + ["--appendfsync", "no"])
    c = k.client()
    assert c.cmd("CONFIG", "GET", "appendfsync") == [b"appendfsync", b"no"]
    a = fill(c, "no", 200, 700, rng)
    assert isinstance(c.cmd("CONFIG", "SET", "appendfsync", "sometimes"), Err)
    assert c.cmd("CONFIG", "SET", "appendfsync", "everysec") == St("OK")
    assert c.cmd("CONFIG", "GET", "appendfsync") == [b"appendfsync", b"everysec"]
    assert info(c)["appendfsync"] == "everysec"
    syncs0 = int(info(c)["wal_syncs"])
    b = fill(c, "es", 200, 700, rng)
    a.update(b)
    time.sleep(2.1)  # what was written more than 2 s before the crash is on disk
    assert int(info(c)["wal_syncs"]) > syncs0  # everysec synced
    k2, after = crash_and_compare(k, kvds, c)
    assert {x: after[x][0] for x in after} == a
    c = k2.client()
    assert c.cmd("CONFIG", "GET", "appendfsync") == [b"appendfsync", b"no"]  # the flag again
    assert c.cmd("CONFIG", "SET", "appendfsync", "always") == St("OK")
    assert info(c)["appendfsync"] == "always"
    c.close()
    assert k2.stop() == 0


def test_appendonly_no_keeps_nothing_without_a_save(kvds, rng):
    """(SAVE, BGSAVE and the save points with appendonly no: test_kvd_dump.py)"""
    k = kvds(args=SEG + ["--appendonly", "no"])
    c = k.client()
    fill(c, "mem", 50, 100, rng)
    i = info(c)
    assert i["aof_enabled"] == "0"
    c.close()
    k.kill9()
    files = os.listdir(k.data_dir()) if os.path.isdir(k.data_dir()) else []
    assert not [f for f in files if f.startswith(("wal-", "snap-"))], files
    k2 = restart(k, kvds)
    c = k2.client()
    assert c.cmd("DBSIZE") == 0
    c.close()
    assert k2.stop() == 0


# ---------------------------------------------------------------------------------------
# 4. torn tail

def keyspace_without(c, items, missing):
    """Checks that the keyspace is exactly `items` (key, value; no TTL) minus the keys in
    `missing`; returns it."""
    after = dump(c)
    for key, v in items:
        if key in missing:
            assert key not in after, key
        else:
            assert after.get(key) == (v, -1), key
    assert len(after) == len(items) - len(missing)
    return after


def last_batch(datadir, shard):
    """(segment path, its batches) of the shard's newest segment holding a batch."""
    for seg in reversed(wal_segments(datadir, shard)):
        bs = read_batches(seg)
        if bs:
            return seg, bs
    raise AssertionError("shard %d has no batch" % shard)


def test_torn_tail_is_cut_and_kept_aside(kvds, rng):
    k = kvds(args=SEG)
    c = k.client()
    items = [(b"torn:%d" % i, rng.randbytes(rng.randrange(1, 9000))) for i in range(60)]
    set_seq(c, items)
    c.close()
    k.kill9()
    data = k.data_dir()
    modes = ["truncate", "scribble"]
    rng.shuffle(modes)
    lost = set()
    cuts = []
    for shard, mode in zip((0, 1), modes):
        seg, bs = last_batch(data, shard)
        b = bs[-1]
        lost.update(b.keys())
        used = b.hsize + sum(REC_HDR.size + len(r[1]) + len(r[2]) for r in b.recs)
        if mode == "truncate":  # cut inside the header or records, never on a boundary
            at = b.off + rng.randrange(1, used)
            if at % BLOCK == 0:
                at += 1
            os.truncate(seg, at)
        else:  # random bytes over the batch's last block
            last = b.off + (used - 1) // BLOCK * BLOCK
            with open(seg, "r+b") as f:
                f.seek(last)
                f.write(rng.randbytes(BLOCK))
        cuts.append((seg, b.off))
        print("shard %d: %s of the batch at %s offset %d (keys %r)"
              % (shard, mode, os.path.basename(seg), b.off, b.keys()))
    k2 = restart(k, kvds)
    log = k2.stderr()
    assert len(re.findall(r"torn tail", log)) == 2, log
    for seg, off in cuts:
        assert os.path.exists("%s.torn-%x" % (seg, off)), os.listdir(data)
        assert os.path.getsize(seg) == off  # cut at the batch
        assert os.path.basename(seg) in log
    c = k2.client()
    after = keyspace_without(c, items, lost)
    # the log goes on after the cut: another life, another crash
    more = [(b"torn2:%d" % i, b"v%d" % i) for i in range(20)]
    set_seq(c, more)
    k3, after2 = crash_and_compare(k2, kvds, c)
    assert len(after2) == len(after) + 20
    assert k3.stop() == 0


# ---------------------------------------------------------------------------------------
# 5. corruption in the middle

def test_recovery_reads_the_written_part_of_a_preallocated_segment(kvds):
    """A segment is preallocated (64 MB of zeros): after a crash, recovery reads its
    batches and at most WALFMT_INFLIGHT_MAX (8 MB) past their end (nothing written lies
    further), not the whole file."""
    k = kvds(args=["--wal-segment-size", "64mb"])
    c = k.client()
    items = [(b"rd:%d" % i, b"v" * 100) for i in range(2000)]
    set_seq(c, items)
    c.close()
    k.kill9()
    k2 = restart(k, kvds)
    log = k2.stderr()
    read = [float(m) for m in re.findall(r"recovered shard=\d+ .* wal_mb=([0-9.]+)", log)]
    assert len(read) == 2 and all(mb < 20 for mb in read), log  # (of 64 MB each)
    c = k2.client()
    assert c.cmd("MGET", *[key for key, _ in items]) == [v for _, v in items]
    c.close()
    assert k2.stop() == 0


def test_corruption_refuses_start_then_repair(kvds, rng):
    k = kvds(args=SEG)
    c = k.client()
    items = [(b"cor:%d" % i, b"value-%d-" % i + rng.randbytes(rng.randrange(1, 200)))
             for i in range(60)]
    set_seq(c, items)
    c.close()
    k.kill9()
    data = k.data_dir()
    shard = rng.randrange(2)
    segs = wal_segments(data, shard)
    assert len(segs) >= 1
    seg = segs[0]
    bs = read_batches(seg)
    assert len(bs) >= 10, len(bs)
    victim = len(bs) // 2
    b = bs[victim]
    typ, key, val, _ = b.recs[0]
    flip_at = b.off + b.hsize + REC_HDR.size + len(key) + rng.randrange(len(val))
    bit = rng.randrange(8)
    with open(seg, "r+b") as f:
        f.seek(flip_at)
        byte = f.read(1)[0]
        f.seek(flip_at)
        f.write(bytes([byte ^ (1 << bit)]))
    print("flipped bit %d at %s offset %d (batch at %d, key %r)"
          % (bit, os.path.basename(seg), flip_at, b.off, key))
    with open(seg, "rb") as f:
        damaged = f.read()
    # refused
    k2 = restart(k, kvds, ready=False)
    rc, log = run_exit(k2)
    assert rc not in (0, None) and rc > 0, (rc, log)
    assert "%s offset %d " % (os.path.basename(seg), b.off) in log, log
    assert "--repair" in log, log
    with open(seg, "rb") as f:  # a refusal changes nothing
        assert f.read() == damaged
    assert not glob.glob(os.path.join(data, "*.corrupt*") + "") and \
        not glob.glob(os.path.join(data, "*.torn-*"))
    # repaired
    dropped_batches = bs[victim + 1:]
    later = [bb for s in wal_segments(data, shard)[1:] for bb in read_batches(s)]
    dropped = sum(len(bb.recs) for bb in dropped_batches + later)
    gone = set(b.keys())
    for bb in dropped_batches + later:
        gone.update(bb.keys())
    k3 = restart(k2, kvds, args=SEG + ["--repair"])
    log = k3.stderr()
    assert re.search(r"repair: WAL cut at \S*%s offset %d .*; %d records" % (
        re.escape(os.path.basename(seg)), b.off, dropped), log), log
    aside = glob.glob(os.path.join(data, "*.corrupt*"))
    assert os.path.join(data, "%s.corrupt-%x" % (os.path.basename(seg), b.off)) in aside, aside
    c = k3.client()
    after = keyspace_without(c, items, gone)
    # the repaired log starts again without --repair, and goes on
    c.cmd("SET", "after-repair", "1")
    k4, _ = crash_and_compare(k3, kvds, c, args=SEG)
    assert k4.stop() == 0


def batch_acked(path, b):
    """The `acked` field of a batch header (the last batch known durable when it was
    sealed): after magic..seq, in headers of 48 bytes."""
    assert b.hsize >= 48, "batch headers of %d bytes carry no acked field" % b.hsize
    with open(path, "rb") as f:
        f.seek(b.off + 32)
        return struct.unpack("<Q", f.read(8))[0]


@pytest.mark.parametrize("mode", ["torn", "unwritten"])
def test_damaged_batch_written_with_later_ones_is_a_torn_tail(kvds, rng, mode):
    """Batch writes overlap (wal-writes-in-flight): a crash can leave batch N torn (or not
    written at all: zeros) and N+1, sealed before N was durable, whole. N+1 was never
    acknowledged (replies follow the log order), so recovery drops both instead of
    refusing to start; a torn N is cut and kept aside."""
    k = kvds(args=SEG)
    written = {}

    def client(i):
        with k.client() as c:
            for j in range(60):
                key, val = b"ov:%d:%d" % (i, j), b"%d-%d" % (i, j)
                assert c.cmd("SET", key, val) == St("OK")
                written[key] = val

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(written) == 360
    k.kill9()
    data = k.data_dir()
    shard = rng.randrange(2)
    segs = [x for x in wal_segments(data, shard) if read_batches(x)]
    pairs = []
    for si, seg in enumerate(segs):
        bs = read_batches(seg)
        for i in range(len(bs) - 1):
            if batch_acked(seg, bs[i + 1]) < bs[i].seq:
                pairs.append((si, i))
    if not pairs:
        pytest.skip("no two batches were written at the same time")
    si, i = rng.choice(pairs)
    seg = segs[si]
    bs = read_batches(seg)
    victim, later = bs[i], bs[i + 1]
    # the crash: nothing after `later` was written, `victim` is torn
    lost = set()
    for b in bs[i:]:
        lost.update(b.keys())
    for other in segs[si + 1:]:
        for b in read_batches(other):
            lost.update(b.keys())
        os.unlink(other)
    end = later.off + later.span
    size = os.path.getsize(seg)
    with open(seg, "r+b") as f:
        f.seek(end)
        f.write(b"\0" * (size - end))
        if mode == "torn":
            typ, key, val, _ = victim.recs[0]
            at = victim.off + victim.hsize + REC_HDR.size + len(key) + max(0, len(val) - 1)
            f.seek(at)
            byte = f.read(1)[0]
            f.seek(at)
            f.write(bytes([byte ^ 0x01]))
        else:
            f.seek(victim.off)
            f.write(b"\0" * victim.span)
    print("shard %d: batch seq %d at %s offset %d %s, batch seq %d (acked %d) after it"
          % (shard, victim.seq, os.path.basename(seg), victim.off, mode, later.seq,
             batch_acked(seg, later)))
    k2 = restart(k, kvds)
    log = k2.stderr()
    if mode == "torn":
        assert re.search(r"torn tail cut file=\S*%s offset=%d .*; %d records" % (
            re.escape(os.path.basename(seg)), victim.off, len(later.recs)), log), log
        assert os.path.exists("%s.torn-%x" % (seg, victim.off)), os.listdir(data)
    c = k2.client()
    after = dump(c)
    for key, val in written.items():
        if key in lost:
            assert key not in after, key
        else:
            assert after.get(key) == (val, -1), key
    # the log goes on
    set_seq(c, [(b"ov:after:%d" % j, b"x") for j in range(10)])
    k3, after2 = crash_and_compare(k2, kvds, c)
    assert len(after2) == len(after) + 10
    assert k3.stop() == 0


def test_zeroed_batch_in_the_middle_refuses_start(kvds):
    k = kvds(args=SEG)
    c = k.client()
    set_seq(c, [(b"zero:%d" % i, b"v%d" % i) for i in range(60)])
    c.close()
    k.kill9()
    seg = wal_segments(k.data_dir(), 0)[0]
    bs = read_batches(seg)
    assert len(bs) >= 10, len(bs)
    b = bs[len(bs) // 2]
    with open(seg, "r+b") as f:
        f.seek(b.off)
        f.write(b"\0" * b.span)
    k2 = restart(k, kvds, ready=False)
    deadline = time.monotonic() + 20
    while k2.proc.poll() is None and "kvd ready" not in k2.stderr():
        assert time.monotonic() < deadline, "kvd neither started nor exited"
        time.sleep(0.02)
    started = k2.proc.poll() is None
    if started:
        port = int(re.search(r"kvd ready .*port=(\d+)", k2.stderr()).group(1))
        with Client(port) as c:
            n = c.cmd("DBSIZE")
        k2.proc.kill()
        k2.wait_exit()
        assert not started, "kvd started with %d of 60 acknowledged keys (the zeroed batch "\
            "at %s offset %d and the %d after it are gone):\n%s" % (
                n, os.path.basename(seg), b.off, len(bs) - len(bs) // 2 - 1, k2.stderr())
    log = k2.stderr()
    assert "%s offset %d " % (os.path.basename(seg), b.off) in log and "--repair" in log, log


# ---------------------------------------------------------------------------------------
# 6/7. failpoints

def killed_by_failpoint(k, name, timeout=30):
    rc = k.wait_exit(timeout)
    log = k.stderr()
    assert rc == -signal.SIGKILL, "kvd-fp exited with %s, not SIGKILL:\n%s" % (rc, log[-3000:])
    assert "failpoint %s: killing the process" % name in log, log[-3000:]


def writer(k, prefix, results, stop, tx=False):
    """One client writing prefix:N = value-N one at a time until the connection breaks:
    appends ('acked', key, value) and finally ('inflight', key, value). With tx, each SET
    is inside MULTI/EXEC (acknowledged when EXEC replies)."""
    try:
        c = k.client(timeout=20)
    except CONN_ERRORS:
        return
    i = 0
    while not stop.is_set():
        key, val = b"%s:%d" % (prefix, i), b"value-%d" % i
        try:
            if tx:
                r = c.pipeline([("MULTI",), ("SET", key, val), ("EXEC",)])
            else:
                r = c.cmd("SET", key, val)
        except CONN_ERRORS:
            results.append(("inflight", key, val))
            return
        assert r == ([St("OK"), St("QUEUED"), [St("OK")]] if tx else St("OK")), (key, r)
        results.append(("acked", key, val))
        i += 1
    c.close()


def with_writers(k, prefix_fmt, clients, wait, tx=False):
    """Runs `clients` writer() threads (thread i's keys start with prefix_fmt % i) until
    wait() returns; stops and joins them. Returns (their results, wait's value)."""
    results = [[] for _ in range(clients)]
    stop = threading.Event()
    threads = [threading.Thread(target=writer, args=(k, prefix_fmt % i, results[i], stop, tx))
               for i in range(clients)]
    for t in threads:
        t.start()
    try:
        ended = wait()
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    return results, ended


def restart_and_check_writers(k, kvds, results):
    """Restarts a dead kvd(-fp) as plain kvd and checks what writer() threads recorded:
    the last write of each was in flight (the client saw the connection break, never
    +OK), every acknowledged one is there, nothing that was never written is. Returns
    (the new kvd, a client of it, its keyspace)."""
    k2 = restart(k, kvds, bin=kvd_path(), env={})
    c = k2.client()
    after = dump(c)
    sent = {}
    for i, res in enumerate(results):
        assert res and res[-1][0] == "inflight", (i, res[-3:])
        for state, key, val in res:
            sent[key] = val
            if state == "acked":
                assert after.get(key) == (val, -1), "acknowledged %r lost" % key
    for key, (val, _) in after.items():  # nothing that was never written
        assert sent.get(key) == val, key
    return k2, c, after


@pytest.mark.parametrize("point,clients,method", [
    (p, n, m) for p in ("wal-before-write", "wal-after-write")
    for n, m in ((1, "dsync"), (3, "dsync"), (1, "fdatasync"))])
def test_failpoint_in_wal_writer(kvds, rng, point, clients, method):
    """A kill just before a batch write, or just after it was written and synced (with
    RWF_DSYNC, or the fdatasync linked after it): acknowledged writes are back, and with
    one client the write in flight is there exactly when its batch was synced."""
    hit = rng.randrange(5, 60)
    print("%s=%d with %d clients, wal-sync-method %s" % (point, hit, clients, method))
    k = kvds(args=SEG + ["--wal-sync-method", method], bin=fp_bin(),
             env={"KVD_FAILPOINTS": "%s=%d" % (point, hit)})
    results, _ = with_writers(k, b"w%d", clients, lambda: killed_by_failpoint(k, point))
    k2, c, after = restart_and_check_writers(k, kvds, results)
    if clients == 1:
        # one write at a time: the batch at the kill holds exactly the write in flight
        _, key, val = results[0][-1]
        if point == "wal-before-write":
            assert key not in after
        else:  # written and synced, its reply not yet sent
            assert after.get(key) == (val, -1)
    c.close()
    assert k2.stop() == 0


@pytest.mark.parametrize("clients,method", [(1, "dsync"), (3, "dsync"), (3, "fdatasync")])
def test_failed_wal_write_exits_without_acknowledging(kvds, rng, clients, method):
    """appendfsync always: a WAL write that fails (EIO injected by kvd-fp on the N-th
    batch write) makes kvd log it and exit with status 1, never retrying and never
    acknowledging what the batch held (with wal-sync-method fdatasync not even once its
    linked sync succeeded); a restart has every acknowledged write."""
    hit = rng.randrange(5, 40)
    print("wal-write-eio=%d with %d clients, wal-sync-method %s" % (hit, clients, method))
    k = kvds(args=SEG + ["--wal-sync-method", method], bin=fp_bin(),
             env={"KVD_FAILPOINTS": "wal-write-eio=%d" % hit})
    results, (rc, log) = with_writers(k, b"e%d", clients, lambda: run_exit(k))
    assert rc == 1, "kvd exited with %s:\n%s" % (rc, log[-3000:])
    assert "WAL write failed" in log and "Input/output error" in log, log[-3000:]
    k2, c, _ = restart_and_check_writers(k, kvds, results)
    c.close()
    assert k2.stop() == 0


def test_wal_sync_method_setting(kvds):
    """wal-sync-method: dsync by default, fdatasync on request, fixed while kvd runs;
    INFO persistence names it and the kind of the WAL device's write cache; a bad value
    stops the start with the choices."""
    k = kvds(args=SEG)
    c = k.client()
    i = info(c)
    assert i["wal_sync_method"] == "dsync", i
    assert i["wal_device_cache"] in ("unknown", "write-through", "fua", "write-back"), i
    assert c.cmd("CONFIG", "GET", "wal-sync-method") == [b"wal-sync-method", b"dsync"]
    r = c.cmd("CONFIG", "SET", "wal-sync-method", "fdatasync")
    assert isinstance(r, Err) and "can't set immutable config" in str(r), r
    assert c.cmd("CONFIG", "SET", "wal-sync-method", "dsync") == St("OK")  # (unchanged)
    c.close()
    assert k.stop() == 0
    k2 = kvds(args=SEG + ["--wal-sync-method", "fdatasync"])
    c = k2.client()
    assert info(c)["wal_sync_method"] == "fdatasync"
    assert c.cmd("CONFIG", "GET", "wal-sync-method") == [b"wal-sync-method", b"fdatasync"]
    c.close()
    assert k2.stop() == 0
    r = subprocess.run([kvd_path(), "--port", "0", "--wal-sync-method", "sometimes"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "--wal-sync-method: argument(s) must be one of the following: dsync, fdatasync" \
        in r.stderr, r.stderr


@pytest.mark.parametrize("method", ["dsync", "fdatasync"])
def test_batches_written_in_pieces_survive_kill9(kvds, rng, method):
    """Batches of several 4 KiB blocks written one block at a time (kvd-fp's
    wal-short-write: each write takes one block, as a device may return a short write),
    each piece with its own sync: a batch counts only once its last piece is on disk,
    and everything acknowledged is back after kill -9."""
    k = kvds(args=SEG + ["--wal-sync-method", method], bin=fp_bin(),
             env={"KVD_FAILPOINTS": "wal-short-write=1"})
    c = k.client()
    vals = {}
    for i in range(60):  # pipelined: batches of several values of 3-9 KiB
        cmds = []
        for j in range(rng.randrange(1, 4)):
            key = b"piece:%d:%d" % (i, j)
            vals[key] = rng.randbytes(rng.randrange(3000, 9000))
            cmds.append(("SET", key, vals[key]))
        assert c.pipeline(cmds) == [St("OK")] * len(cmds)
    data = k.data_dir()
    spans = [b.span for shard in (0, 1) for seg in wal_segments(data, shard)
             for b in read_batches(seg)]
    assert max(spans) >= 3 * BLOCK, spans  # (so that batches did go out in pieces)
    k2, after = crash_and_compare(k, kvds, c, bin=kvd_path(), env={})
    assert {key: v for key, (v, _) in after.items()} == vals
    assert k2.stop() == 0


def test_failed_wal_write_everysec_refuses_writes(kvds, rng):
    """appendfsync everysec: a failed WAL write is not retried as if it had worked: from
    then on write commands get -MISCONF, reads go on, INFO says aof_last_write_status:err."""
    k = kvds(args=SEG + ["--appendfsync", "everysec"], bin=fp_bin(),
             env={"KVD_FAILPOINTS": "wal-write-eio=3"})
    c = k.client()
    refused = None
    for i in range(2000):
        r = c.cmd("SET", "ev:%d" % i, "v")
        if isinstance(r, Err):
            refused = r
            break
        time.sleep(0.001)  # batches are written once 2 ms old
    assert refused is not None and refused.s.startswith("MISCONF"), refused
    assert "Input/output error" in refused.s, refused
    assert c.cmd("GET", "ev:0") == b"v"
    assert c.cmd("PING") == St("PONG")
    i = info(c)
    assert i["aof_last_write_status"] == "err" and i["wal_refusing_writes"] == "1", i
    assert isinstance(c.cmd("DEL", "ev:0"), Err)
    assert "WAL write failed" in k.stderr()
    c.close()
    assert k.stop() == 0


def test_failpoint_snapshot_mid(kvds, rng):
    # the first SAVE makes 8 hits (one per partition), the second dies at its hit `n`
    n = rng.randrange(1, 9)
    print("snapshot-mid=%d" % (8 + n))
    k = kvds(args=SEG + ["--snapshot-wal-size", "0"], bin=fp_bin(),
             env={"KVD_FAILPOINTS": "snapshot-mid=%d" % (8 + n)})
    c = k.client()
    a = fill(c, "s", 600, 800, rng)
    assert c.cmd("SAVE") == St("OK")
    for i in range(0, 600, 5):
        assert c.cmd("DEL", "s:%d" % i) == 1
        del a[b"s:%d" % i]
    a.update(fill(c, "t", 300, 900, rng))
    c.send(b"*1\r\n$4\r\nSAVE\r\n")
    with pytest.raises(CONN_ERRORS):
        c.read()
    killed_by_failpoint(k, "snapshot-mid")
    tmps = glob.glob(os.path.join(k.data_dir(), "snap-*.kvs.tmp"))
    assert tmps, os.listdir(k.data_dir())  # the round was cut in the middle
    k2 = restart(k, kvds, bin=kvd_path(), env={})
    assert not glob.glob(os.path.join(k2.data_dir(), "*.tmp"))
    c = k2.client()
    after = dump(c)
    assert {x: after[x][0] for x in after} == a
    c.close()
    assert k2.stop() == 0


def test_failpoint_snapshot_before_trim(kvds, rng):
    hit = rng.randrange(1, 3)  # two per round: one per shard thread
    print("snapshot-before-trim=%d" % hit)
    k = kvds(args=SEG + ["--snapshot-wal-size", "0"], bin=fp_bin(),
             env={"KVD_FAILPOINTS": "snapshot-before-trim=%d" % hit})
    c = k.client()
    a = fill(c, "u", 500, 2000, rng)  # several segments per shard
    for i in range(0, 500, 4):
        assert c.cmd("DEL", "u:%d" % i) == 1
        del a[b"u:%d" % i]
    for i in range(1, 500, 9):
        assert c.cmd("SET", "u:%d" % i, "later") == St("OK")
        a[b"u:%d" % i] = b"later"
    segs = [len(wal_segments(k.data_dir(), sh)) for sh in (0, 1)]
    assert min(segs) >= 3, segs
    c.send(b"*1\r\n$4\r\nSAVE\r\n")
    with pytest.raises(CONN_ERRORS):
        c.read()
    killed_by_failpoint(k, "snapshot-before-trim")
    # a shard's renamed snapshots and the old segments they cover are both on disk
    assert len(glob.glob(os.path.join(k.data_dir(), "snap-*.kvs"))) >= 4
    now = [len(wal_segments(k.data_dir(), sh)) for sh in (0, 1)]
    assert now[0] >= segs[0] or now[1] >= segs[1], (segs, now)
    k2 = restart(k, kvds, bin=kvd_path(), env={})
    c = k2.client()
    after = dump(c)
    assert {x: after[x][0] for x in after} == a
    # and the next round trims what the interrupted one did not
    assert c.cmd("SAVE") == St("OK")
    assert count_wal(k2.data_dir()) <= 4
    k3, _ = crash_and_compare(k2, kvds, c)
    assert k3.stop() == 0


def test_crash_during_recovery_then_recover(kvds, rng):
    """recovery-mid kills kvd-fp while it replays the WAL (over a snapshot), twice; the
    third, clean, recovery has exactly the data of before the first crash."""
    k = kvds(args=SEG + ["--snapshot-wal-size", "0"])
    c = k.client()
    fill(c, "r", 200, 1500, rng)
    assert c.cmd("SAVE") == St("OK")
    for i in range(40):  # one batch each: many batches to replay
        assert c.cmd("SET", "r:%d" % i, "after-save-%d" % i) == St("OK")
        assert c.cmd("DEL", "r:%d" % (100 + i)) == 1
        assert c.cmd("SET", "rt:%d" % i, "ttl", "EX", 5000 + i) == St("OK")
    t0 = time.monotonic()
    before = dump(c)
    c.close()
    k.kill9()
    first, second = rng.randrange(1, 40), rng.randrange(1, 40)
    print("recovery-mid=%d then %d" % (first, second))
    for hit in (first, second):
        k = restart(k, kvds, bin=fp_bin(), env={"KVD_FAILPOINTS": "recovery-mid=%d" % hit},
                    ready=False)
        killed_by_failpoint(k, "recovery-mid")
        assert "kvd ready" not in k.stderr()
    k = restart(k, kvds, bin=kvd_path(), env={})
    c = k.client()
    assert_same_keyspace(before, dump(c), int((time.monotonic() - t0) * 1000) + 1)
    c.close()
    assert k.stop() == 0


# ---------------------------------------------------------------------------------------
# 8. refusals

def test_second_kvd_and_layout_change_refused(kvds):
    k = kvds(args=SEG)
    c = k.client()
    set_seq(c, [(b"lay:%d" % i, b"%d" % i) for i in range(20)])
    other = Kvd(args=SEG, base=k.dir, ready=False)
    kvds.track(other)
    other.owns_dir = False
    rc, log = run_exit(other)
    assert rc > 0, (rc, log)
    assert "another kvd" in log and "is using the data directory" in log, log
    assert c.cmd("GET", "lay:3") == b"3"  # the first one is unharmed
    c.close()
    k.kill9()
    k2 = restart(k, kvds, threads=1, ready=False)
    rc, log = run_exit(k2)
    assert rc > 0, (rc, log)
    assert re.search(r"written with 2 threads and 8 partitions, this start has 1 threads and "
                     r"4 partitions", log), log
    k3 = restart(k2, kvds, threads=2, args=SEG + ["--partitions-per-thread", "2"], ready=False)
    rc, log = run_exit(k3)
    assert rc > 0, (rc, log)
    assert re.search(r"written with 2 threads and 8 partitions, this start has 2 threads and "
                     r"4 partitions", log), log
    k4 = restart(k3, kvds, threads=2, args=SEG)
    c = k4.client()
    assert c.cmd("DBSIZE") == 20 and c.cmd("GET", "lay:19") == b"19"
    c.close()
    assert k4.stop() == 0


# ---------------------------------------------------------------------------------------
# 9. disk full

NS_SCRIPT = r"""
mount -t tmpfs -o size=8m tmpfs "$1" || exit 97
"$2" --port 0 --threads 2 --dir "$1/data" --wal-segment-size 1mb --snapshot-wal-size 0 \
    2>"$3" &
echo $! >"$4"
wait $!
cp -a "$1/data" "$5"
"""


class FullDisk:
    """kvd on an 8 MiB tmpfs in a private mount namespace (skips the test if that cannot
    be set up). fill() takes the free space, drive() writes until -MISCONF, free() gives
    the space back, crash() kills kvd -9 and leaves a copy of its dir in base/data."""

    def __init__(self, tmp_path, rng):
        self.rng = rng
        probe = tmp_path / "probe"
        probe.mkdir()
        r = subprocess.run(["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=1m tmpfs "$1"',
                            "sh", str(probe)], capture_output=True, text=True)
        if r.returncode != 0:
            reason = "cannot mount a tmpfs in a private mount namespace: %s" % (
                r.stderr.strip() or "exit %d" % r.returncode)
            print("SKIP:", reason)
            pytest.skip(reason)
        self.mnt, self.errpath, pidfile, self.base = (
            tmp_path / "mnt", tmp_path / "kvd.stderr", tmp_path / "pid", tmp_path / "base")
        self.mnt.mkdir()
        self.base.mkdir()
        self.sh = subprocess.Popen(
            ["unshare", "-m", "sh", "-c", NS_SCRIPT, "sh", str(self.mnt), kvd_path(),
             str(self.errpath), str(pidfile), str(self.base / "data")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.pid = None

        def ready():
            if self.sh.poll() is not None:
                raise AssertionError("kvd in the namespace exited: %s %s" % (
                    self.sh.returncode, self.sh.stderr.read()))
            m = re.search(r"kvd ready .*port=(\d+)", self.log())
            return m and int(m.group(1))
        self.port = wait_until(ready, 30, what="kvd in the namespace")
        self.pid = int(pidfile.read_text())
        # the tmpfs is seen through the process's root (its mount namespace)
        self.inside = "/proc/%d/root%s" % (self.pid, self.mnt)
        assert os.path.isdir(self.inside + "/data")
        self.filler = self.inside + "/filler"
        self.acked, self.refused, self.held = {}, set(), {}
        self.pending = []  # (client, key, value) whose reply waits for the WAL
        self.writer = None

    def log(self):
        return self.errpath.read_text() if self.errpath.exists() else ""

    def fill(self):
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            while True:
                os.write(fd, b"\0" * 65536)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
        finally:
            os.close(fd)

    def free(self):
        os.unlink(self.filler)

    def probe_write(self, key, val):
        """A SET on a new connection: its reply, or None if it is held."""
        pc = Client(self.port, timeout=2)
        pc.send(encode("SET", key, val))
        try:
            rep = pc.read()
        except OSError:
            self.pending.append((pc, key, val))
            return None
        pc.close()
        if rep == St("OK"):
            self.acked[key] = val
        elif isinstance(rep, Err):
            self.refused.add(key)
        return rep

    def drive(self):
        """Pipelines of 16 SETs of 8 KB until a write is refused; returns the error. A
        reply that is late is told apart (by a probe write on another connection) from
        one held because the WAL cannot be written."""
        self.writer = Client(self.port, timeout=3)
        misconf = None
        i = 0
        probes = iter(range(1 << 30))
        deadline = time.monotonic() + 120
        while misconf is None and i < 4000:
            cmds = [("SET", b"full:%d" % j, b"%d:" % j + self.rng.randbytes(8000))
                    for j in range(i, i + 16)]
            i += 16
            self.writer.send(b"".join(encode(*x) for x in cmds))
            n = 0
            while n < len(cmds):
                _, key, val = cmds[n]
                try:
                    rep = self.writer.read()
                except OSError:  # late: held for the WAL, or a slow machine?
                    assert time.monotonic() < deadline, "no -MISCONF and no reply"
                    probe = self.probe_write(b"probe:%d" % next(probes), b"x")
                    if isinstance(probe, Err):
                        assert probe.s.startswith("MISCONF"), probe
                        misconf = probe.s
                        self.held = {kk: vv for _, kk, vv in cmds[n:]}
                        break
                    continue
                if rep == St("OK"):
                    self.acked[key] = val
                else:
                    assert isinstance(rep, Err) and rep.s.startswith("MISCONF"), rep
                    misconf = rep.s
                    self.refused.add(key)
                n += 1
        assert misconf is not None, "no -MISCONF after %d writes" % i
        print("MISCONF after %d writes (%d acknowledged, %d held)"
              % (i, len(self.acked), len(self.held)))
        return misconf

    def collect(self):
        """After free(): the held replies arrive (+OK, or -MISCONF for those sent after
        the refusal began)."""
        self.writer.settimeout(10)
        for key, val in self.held.items():
            rep = self.writer.read()
            if rep == St("OK"):
                self.acked[key] = val
            else:
                assert isinstance(rep, Err) and rep.s.startswith("MISCONF"), rep
                self.refused.add(key)
        for pc, key, val in self.pending:
            pc.settimeout(10)
            rep = pc.read()
            if rep == St("OK"):
                self.acked[key] = val
            else:
                self.refused.add(key)
            pc.close()
        self.writer.close()

    def crash(self):
        os.kill(self.pid, signal.SIGKILL)
        self.sh.wait(30)
        assert self.sh.returncode == 0, self.sh.stderr.read()

    def close(self):
        if self.sh.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.sh.wait(30)
        if self.writer:
            self.writer.close()
        for pc, _, _ in self.pending:
            pc.close()


@pytest.fixture
def full_disk(tmp_path, rng):
    fd = FullDisk(tmp_path, rng)
    yield fd
    fd.close()


def test_disk_full_refuses_writes_until_space_returns(kvds, full_disk):
    fd = full_disk
    fd.fill()
    misconf = fd.drive()
    assert misconf.startswith("MISCONF"), misconf
    assert "No space left on device" in misconf, misconf
    assert fd.held, "no write was waiting for the WAL when writes were refused"
    assert fd.acked
    fd.free()
    # within a few seconds the segment is prepared again and writes go on
    t0 = time.monotonic()
    tries = iter(range(1000))
    wait_until(lambda: fd.probe_write(b"probe:back:%d" % next(tries), b"back") == St("OK"), 5,
               interval=0.1, what="writes to be accepted again")
    print("writes accepted again after %.2fs" % (time.monotonic() - t0))
    fd.collect()
    assert fd.held.keys() & fd.acked.keys(), "no held write was acknowledged"
    with Client(fd.port, timeout=10) as c:
        for j in range(20):
            key, val = b"after:%d" % j, fd.rng.randbytes(3000)
            assert c.cmd("SET", key, val) == St("OK")
            fd.acked[key] = val
        assert c.cmd("GET", "full:0") == fd.acked[b"full:0"]
        assert info(c)["wal_refusing_writes"] == "0"
    fd.crash()
    assert "No space left on device" in fd.log()
    k = Kvd(args=["--wal-segment-size", "1mb"], base=str(fd.base))
    k.owns_dir = False
    kvds.track(k)
    c = k.client()
    after = dump(c)
    for key, val in fd.acked.items():
        assert after.get(key) == (val, -1), "acknowledged %r lost" % key
    for key in fd.refused:
        assert key not in after, key
    assert set(after) <= set(fd.acked) | set(fd.held) | fd.refused
    c.close()
    assert k.stop() == 0


def test_disk_full_reads_go_on(full_disk):
    fd = full_disk
    fd.fill()
    fd.drive()
    hung = []
    for key in list(fd.acked)[:40]:  # keys of both shards
        with Client(fd.port, timeout=1) as c:
            try:
                assert c.cmd("GET", key) == fd.acked[key]
            except OSError:
                hung.append(("GET", key))
                break
    for _ in range(4):  # connections land on both shards
        with Client(fd.port, timeout=1) as c:
            try:
                assert c.cmd("PING") == St("PONG")
                assert info(c)["wal_refusing_writes"] == "1"
            except OSError:
                hung.append(("PING/INFO", None))
                break
    assert not hung, "reads that got no reply within 1 s while writes were refused: %r" % (
        hung[:10],)


def test_disk_full_aborts_transactions_that_write(full_disk):
    """A transaction queued before the WAL started refusing: EXEC aborts it with the
    MISCONF reason if it writes (as Redis 7 does), runs it if it only reads."""
    fd = full_disk
    first = Client(fd.port, timeout=5)
    reader = Client(fd.port, timeout=5)
    assert first.cmd("SET", "{tx}k", "before") == St("OK")
    assert first.cmd("MULTI") == St("OK") and first.cmd("SET", "{tx}k", "new") == St("QUEUED")
    assert reader.cmd("MULTI") == St("OK") and reader.cmd("GET", "{tx}k") == St("QUEUED")
    fd.fill()
    fd.drive()
    r = first.cmd("EXEC")
    assert isinstance(r, Err) and r.s.startswith(
        "EXECABORT Transaction discarded because of: MISCONF"), r
    assert reader.cmd("EXEC") == [b"before"]
    first.close()
    reader.close()


def test_disk_full_log_reports_the_retry_truthfully(full_disk):
    fd = full_disk
    fd.fill()
    fd.drive()
    time.sleep(2.2)  # two retries at least, all failing
    log = fd.log()
    assert "prepared again" not in log, log
    for shard in (0, 1):
        n = len(re.findall(r"cannot prepare WAL segment shard=%d " % shard, log))
        assert n <= 1, log


# ---------------------------------------------------------------------------------------
# snapshots damaged on disk

SNAP_HDR = struct.Struct("<IHH")  # magic version size (the header's own size, read from it)
CHUNK_HDR = struct.Struct("<IIQQQQ")  # magic flags count len sum crc
ENTRY_HDR = struct.Struct("<IIQq")  # klen reserved vlen expire_ms


def snapshot_keys(path):
    """The keys of a snapshot file, and the offset of its first chunk with entries."""
    with open(path, "rb") as f:
        data = f.read()
    keys, first = [], None
    off = SNAP_HDR.unpack_from(data, 0)[2]
    while off + CHUNK_HDR.size <= len(data):
        _m, flags, count, clen, _s, _c = CHUNK_HDR.unpack_from(data, off)
        if flags & 1:
            break
        if first is None and count:
            first = off
        p = off + CHUNK_HDR.size
        for _ in range(count):
            klen, _r, vlen, _e = ENTRY_HDR.unpack_from(data, p)
            keys.append(data[p + ENTRY_HDR.size:p + ENTRY_HDR.size + klen])
            p += ENTRY_HDR.size + klen + vlen
        off += CHUNK_HDR.size + clen
    return keys, first


def test_damaged_snapshot_refuses_start_then_repair(kvds, rng):
    k = kvds(args=SEG + ["--snapshot-wal-size", "0"])
    c = k.client()
    pre = fill(c, "pre", 300, 2500, rng)  # several segments per shard
    assert c.cmd("SAVE") == St("OK")  # and the segments it covers are deleted
    post = fill(c, "post", 40, 100, rng)
    c.close()
    k.kill9()
    data = k.data_dir()
    snaps = sorted(glob.glob(os.path.join(data, "snap-*.kvs")))
    assert len(snaps) == 8, snaps
    victim = rng.choice([x for x in snaps if snapshot_keys(x)[0]])
    vkeys, chunk = snapshot_keys(victim)
    flip = chunk + CHUNK_HDR.size + rng.randrange(ENTRY_HDR.size + 10)
    with open(victim, "r+b") as f:
        f.seek(flip)
        b = f.read(1)[0]
        f.seek(flip)
        f.write(bytes([b ^ 0x10]))
    print("flipped a bit at %s offset %d (%d keys in it)"
          % (os.path.basename(victim), flip, len(vkeys)))
    k2 = restart(k, kvds, ready=False)
    rc, log = run_exit(k2)
    assert rc > 0, (rc, log)
    assert "%s is damaged at offset %d" % (os.path.basename(victim), chunk) in log, log
    assert "--repair" in log, log
    k3 = restart(k2, kvds, args=SEG + ["--repair"])
    log = k3.stderr()
    assert "repair: snapshot" in log and os.path.basename(victim) in log, log
    assert os.path.exists(victim + ".corrupt"), os.listdir(data)
    c = k3.client()
    after = dump(c)
    # what only the snapshot held of that partition may be lost; nothing else is, and
    # nothing comes back wrong
    for key, v in list(pre.items()) + list(post.items()):
        if key in vkeys:
            assert after.get(key, (v, -1)) == (v, -1), key
        else:
            assert after.get(key) == (v, -1), key
    assert set(after) <= set(pre) | set(post)
    lost = [x for x in vkeys if x not in after]
    print("%d of the partition's %d keys lost with its snapshot" % (len(lost), len(vkeys)))
    # the repaired dir starts without --repair and a new SAVE covers the partition again
    assert c.cmd("SAVE") == St("OK")
    k4, _ = crash_and_compare(k3, kvds, c, args=SEG)
    assert k4.stop() == 0


def test_layout_refusal_after_save_names_the_layout(kvds):
    k = kvds(args=SEG)
    c = k.client()
    set_seq(c, [(b"lay:%d" % i, b"%d" % i) for i in range(20)])
    assert c.cmd("SAVE") == St("OK")
    c.close()
    k.kill9()
    k2 = restart(k, kvds, threads=1, ready=False)
    rc, log = run_exit(k2)
    assert rc > 0, (rc, log)
    assert "written with 2 threads and 8 partitions" in log, log
    assert "--threads 2 --partitions-per-thread 4" in log, log


# ---------------------------------------------------------------------------------------
# a WAL segment missing

def segments_of_shard0(kvds):
    """A crashed kvd whose shard 0 wrote 5 or more 64 KiB segments (no snapshot)."""
    k = kvds(args=["--wal-segment-size", "64kb", "--snapshot-wal-size", "0"])
    c = k.client()
    set_seq(c, [(b"miss:%d" % i, b"v" * 3000) for i in range(120)])
    c.close()
    k.kill9()
    segs = [s for s in wal_segments(k.data_dir(), 0) if read_batches(s)]
    assert len(segs) >= 4, segs
    return k, segs


def test_missing_middle_segment_refuses_start(kvds):
    k, segs = segments_of_shard0(kvds)
    victim = segs[len(segs) // 2]
    os.unlink(victim)
    k2 = restart(k, kvds, ready=False)
    rc, log = run_exit(k2)
    assert rc > 0, (rc, log)
    assert "a segment is missing" in log and "--repair" in log, log


def test_missing_first_segment_refuses_start(kvds):
    k, segs = segments_of_shard0(kvds)
    os.unlink(segs[0])
    k2 = restart(k, kvds, ready=False)
    deadline = time.monotonic() + 20
    while k2.proc.poll() is None and "kvd ready" not in k2.stderr():
        assert time.monotonic() < deadline, "kvd neither started nor exited"
        time.sleep(0.02)
    started = k2.proc.poll() is None
    log = k2.stderr()
    if started:
        k2.proc.kill()
        k2.wait_exit()
    assert not started, "kvd started without the records of %s:\n%s" % (
        os.path.basename(segs[0]), log)
    assert "a segment is missing" in log, log


# ---------------------------------------------------------------------------------------
# kill -9 at a random moment under load

def test_kill9_under_load_with_snapshot_rounds(kvds, rng):
    """Four clients each rewrite their own 25 keys with increasing versions (SET, some
    with a TTL, some DEL) while snapshot rounds start by themselves; kvd is killed at a
    random moment. After the restart every key holds its last acknowledged version or
    the one in flight, never an older or unsent one."""
    k = kvds(args=SEG + ["--snapshot-wal-size", "256kb"])
    nclients, nkeys = 4, 25
    seeds = [rng.randrange(1 << 30) for _ in range(nclients)]
    logs = [[] for _ in range(nclients)]  # (state, key, version or None for DEL)
    stop = threading.Event()

    def client(i):
        r = random.Random(seeds[i])
        try:
            c = k.client(timeout=20)
        except CONN_ERRORS:
            return
        n = 0
        while not stop.is_set():
            n += 1
            key = b"load:%d:%d" % (i, r.randrange(nkeys))
            if r.random() < 0.1:
                cmd, ver = ("DEL", key), None
            elif r.random() < 0.2:
                cmd, ver = ("SET", key, b"%d:" % n + b"t" * r.randrange(2000), "EX", 1000), n
            else:
                cmd, ver = ("SET", key, b"%d:" % n + b"v" * r.randrange(2000)), n
            try:
                rep = c.cmd(*cmd)
            except CONN_ERRORS:
                logs[i].append(("inflight", key, ver))
                return
            assert rep in (St("OK"), 0, 1), rep
            logs[i].append(("acked", key, ver))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(nclients)]
    for t in threads:
        t.start()
    time.sleep(rng.uniform(0.8, 1.6))
    with k.client() as ic:
        wait_until(lambda: int(info(ic)["rdb_saves"]) >= 2, 10, what="snapshot rounds")
    k.kill9()
    stop.set()
    for t in threads:
        t.join(30)
    k2 = restart(k, kvds)
    c = k2.client()
    after = dump(c)
    writes = 0
    for i in range(nclients):
        # a client ends on the request the kill cut off, or (its reply came just before
        # the kill and it saw the stop) on an acknowledged one: both are checked below
        assert logs[i], "client %d wrote nothing" % i
        last, inflight = {}, {}
        for state, key, ver in logs[i]:
            if state == "acked":
                last[key] = ver
            else:
                inflight[key] = ver
        for key in set(last) | set(inflight):
            got = after.get(key)
            gotver = None if got is None else int(got[0].split(b":")[0])
            allowed = {last.get(key)} if key in last else {None}
            if key in inflight:
                allowed.add(inflight[key])
            assert gotver in allowed, "%r: version %r after the restart, expected one of %r" % (
                key, gotver, allowed)
        writes += len(logs[i])
    assert set(after) <= {key for lg in logs for _, key, _ in lg}
    print("%d writes, %s keys recovered" % (writes, info(c)["recovered_keys"]))
    c.close()
    assert k2.stop() == 0


def test_writes_after_a_save_that_left_no_wal_survive(kvds, rng):
    """A SAVE right after a restart (before any write) deletes every WAL segment; the
    batches of the next life must still be replayed over those snapshots."""
    k = kvds(args=SEG + ["--snapshot-wal-size", "0"])
    c = k.client()
    fill(c, "life1", 200, 2000, rng)
    c.close()
    k.kill9()
    k2 = restart(k, kvds)
    c = k2.client()
    assert c.cmd("SAVE") == St("OK")  # nothing written in this life yet
    assert not [b for sh in (0, 1) for s in wal_segments(k2.data_dir(), sh)
                for b in read_batches(s)], "SAVE left batches behind"
    c.close()
    k2.kill9()
    k3 = restart(k2, kvds)
    c = k3.client()
    set_seq(c, [(b"life3:%d" % i, b"v%d" % i) for i in range(30)])
    assert c.cmd("DEL", "life1:7") == 1
    k4, after = crash_and_compare(k3, kvds, c)
    assert len([x for x in after if x.startswith(b"life3:")]) == 30
    assert b"life1:7" not in after and len(after) == 229
    assert k4.stop() == 0


def test_transactions_survive_kill9_whole(kvds, rng):
    """MULTI/EXEC transactions each move one unit between two counters of one partition
    (every tag on its own) while kvd is killed -9: after the restart every pair sums to
    zero (a transaction's records are in one batch: all or nothing) and no pair holds
    less than what its acknowledged transactions wrote."""
    k = kvds(args=SEG)
    acked = {}
    stop = threading.Event()
    errors = []

    def mover(i):
        tag = "{tx%d}" % i
        n = 0
        try:
            c = k.client()
            while not stop.is_set():
                r = c.pipeline([("MULTI",), ("INCR", tag + "a"), ("DECR", tag + "b"),
                                ("EXEC",)])
                assert r[-1] == [n + 1, -(n + 1)], r
                n += 1
                acked[i] = n
        except (ConnClosed, OSError):
            pass
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=mover, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.0 + rng.random())
    k.kill9()
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    k2 = restart(k, kvds)
    c = k2.client()
    for i in range(6):
        tag = "{tx%d}" % i
        a, b = c.cmd("MGET", tag + "a", tag + "b")
        a, b = int(a or 0), int(b or 0)
        assert a + b == 0, (i, a, b)
        assert a >= acked.get(i, 0), (i, a, acked.get(i))
    assert k2.stop() == 0


@pytest.mark.parametrize("clients", [1, 3])
def test_exec_is_acknowledged_only_once_durable(kvds, rng, clients):
    """appendfsync always: a transaction's EXEC reply waits for its WAL batch, like a
    plain write's. Killed before a batch write, every acknowledged EXEC is there."""
    hit = rng.randrange(5, 40)
    k = kvds(args=SEG, bin=fp_bin(), env={"KVD_FAILPOINTS": "wal-before-write=%d" % hit})
    results, _ = with_writers(k, b"{x%d}", clients,
                              lambda: killed_by_failpoint(k, "wal-before-write"), tx=True)
    k2, c, after = restart_and_check_writers(k, kvds, results)
    if clients == 1:
        _, key, val = results[0][-1]
        assert key not in after  # the transaction in flight was never acknowledged
    c.close()
    assert k2.stop() == 0


def test_replay_keeps_keys_whose_expiry_was_moved(kvds):
    """A key SET with a short TTL and then PERSISTed (or given a longer one) must not be
    dropped at start-up because its first record's expiry has passed since, nor rebuilt
    from a later RANGE record alone."""
    k = kvds(args=SEG)
    c = k.client()
    assert c.cmd("SET", "k", "a" * 1000, "PX", 1500) == St("OK")
    assert c.cmd("PERSIST", "k") == 1
    assert c.cmd("APPEND", "k", "x") == 1001
    assert c.cmd("SET", "j", "b", "PX", 1500) == St("OK")
    assert c.cmd("PERSIST", "j") == 1
    assert c.cmd("SET", "m", "c", "PX", 1500) == St("OK")
    assert c.cmd("PEXPIRE", "m", 600000) == 1
    assert c.cmd("SET", "gone", "d", "PX", 1500) == St("OK")
    c.close()
    k.kill9()
    time.sleep(2.0)
    k2 = restart(k, kvds)
    c = k2.client()
    assert c.cmd("GET", "k") == b"a" * 1000 + b"x" and c.cmd("TTL", "k") == -1
    assert c.cmd("GET", "j") == b"b" and c.cmd("TTL", "j") == -1
    assert c.cmd("GET", "m") == b"c" and c.cmd("PTTL", "m") > 590000
    assert c.cmd("GET", "gone") is None  # its expiry passed: expired after start-up
    c.close()
    assert k2.stop() == 0
