#!/usr/bin/python3
"""perf/tracking.py: client-side caching traffic (CLIENT TRACKING), kvd against redis-server.

Both servers run single-threaded on core 0 (kvd --threads 1 --appendonly no,
redis-server --save '' --appendonly no) with 10,000 keys of 32 bytes. The client runs on
core 1: R reader processes, each a RESP3 connection with CLIENT TRACKING on (default mode)
reading random keys in pipelined batches of 100 GETs (every read is remembered), and one
writer process SETting random keys in pipelined batches of 100 (each SET of a key some
reader read invalidates it there). Every run measures each server in turn (the order
alternated by run): requests per second, the server's CPU time per request (utime +
stime from /proc over the run) and the invalidations the readers received per SET.
Prints a markdown table of medians (min-max) and the kvd/redis ratios; --append adds it
to a file.

    perf/tracking.py [--build build/release] [--runs 3] [--readers 4] [--batches 300]
                     [--append docs/PERFORMANCE.md]
"""
import argparse
import datetime
import multiprocessing
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time

from perf_util import cpu_s, emit, enc, med, start_pair, stop

KEYS = 10000
BATCH = 100











class Reader:
    """Just enough RESP to count replies and pushes."""

    def __init__(self, sock):
        self.s = sock
        self.buf = b""
        self.pos = 0

    def line(self):
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                ln = self.buf[self.pos:i]
                self.pos = i + 2
                return ln
            self.buf = self.buf[self.pos:] + self.s.recv(1 << 20)
            self.pos = 0

    def take(self, n):
        while len(self.buf) - self.pos < n:
            self.buf = self.buf[self.pos:] + self.s.recv(1 << 20)
            self.pos = 0
        self.pos += n

    def value(self):
        """Returns True for a push frame, False for anything else (skipped whole)."""
        ln = self.line()
        t = ln[:1]
        if t in (b"$", b"=") and int(ln[1:]) >= 0:
            self.take(int(ln[1:]) + 2)
        elif t in (b"*", b">", b"~") and int(ln[1:]) > 0:
            for _ in range(int(ln[1:])):
                self.value()
        elif t == b"%":
            for _ in range(2 * int(ln[1:])):
                self.value()
        return t == b">"


def reader_proc(port, batches, seed, q):
    os.sched_setaffinity(0, {1})
    rnd = random.Random(seed)
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    r = Reader(s)
    s.sendall(enc("HELLO", "3") + enc("CLIENT", "TRACKING", "on"))
    r.value()
    r.value()
    pushes = 0
    for _ in range(batches):
        s.sendall(b"".join(enc("GET", "key:%d" % rnd.randrange(KEYS)) for _ in range(BATCH)))
        got = 0
        while got < BATCH:
            if r.value():
                pushes += 1
            else:
                got += 1
    q.put(pushes)
    s.close()


def writer_proc(port, batches, seed, q):
    os.sched_setaffinity(0, {1})
    rnd = random.Random(seed)
    s = socket.create_connection(("127.0.0.1", port))
    r = Reader(s)
    for _ in range(batches):
        s.sendall(b"".join(enc("SET", "key:%d" % rnd.randrange(KEYS), "v" * 32)
                           for _ in range(BATCH)))
        for _ in range(BATCH):
            r.value()
    q.put(0)
    s.close()


def run(port, pid, readers, batches, seed):
    q = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=reader_proc, args=(port, batches, seed + i, q))
             for i in range(readers)]
    procs.append(multiprocessing.Process(target=writer_proc,
                                         args=(port, batches, seed + 1000, q)))
    c0, t0 = cpu_s(pid), time.monotonic()
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    wall, cpu = time.monotonic() - t0, cpu_s(pid) - c0
    n = (readers + 1) * batches * BATCH
    return {"rps": n / wall, "cpu": cpu * 1e6 / n,
            "inval": sum(results) / (batches * BATCH)}








def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--append")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="kv-track-")
    servers = {}
    try:
        servers = start_pair(a.build, tmp)
        for name, (_, port) in servers.items():
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"".join(enc("SET", "key:%d" % i, "v" * 32) for i in range(KEYS)))
            r = Reader(s)
            for _ in range(KEYS):
                r.value()
            s.close()
        rows = {}
        for i in range(a.runs):
            order = list(servers.items()) if i % 2 == 0 else list(servers.items())[::-1]
            for name, (proc, port) in order:
                res = run(port, proc.pid, a.readers, a.batches, 7 + i)
                for k, v in res.items():
                    rows.setdefault(name, {}).setdefault(k, []).append(v)
        now = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")
        load = open("/proc/loadavg").read().split()[:3]
        lines = ["### perf/tracking.py, %s" % now, "",
                 "`perf/tracking.py --build %s --runs %d --readers %d --batches %d`: %d "
                 "tracking readers (RESP3, GET batches of %d) and one writer (SET batches of "
                 "%d) over %d keys; load average %s at the end." % (
                     a.build, a.runs, a.readers, a.batches, a.readers, BATCH, BATCH, KEYS,
                     " ".join(load)),
                 "",
                 "| server | requests/s | server CPU us/req | invalidations received per SET |",
                 "| --- | --- | --- | --- |"]
        for name in ("kvd", "redis"):
            r = rows[name]
            lines.append("| %s | %s | %s | %s |" % (name, med(r["rps"]), med(r["cpu"]),
                                                   med(r["inval"])))
        k, r = rows["kvd"], rows["redis"]
        lines += ["", "kvd / redis: requests/s %.2fx, CPU per request %.2fx." % (
            statistics.median(k["rps"]) / statistics.median(r["rps"]),
            statistics.median(k["cpu"]) / statistics.median(r["cpu"])), ""]
        emit("\n".join(lines), a.append)
    finally:
        stop([proc for proc, _ in servers.values()])
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
