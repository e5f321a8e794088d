#!/usr/bin/python3
"""perf/functions.py: the cost of Lua on the server: FCALL and EVALSHA against a plain
command, kvd against redis-server.

Both servers run single-threaded on core 0 (kvd --threads 1 --appendonly no,
redis-server --save '' --appendonly no); C client processes on core 1 each send
pipelined batches of 100 requests over 10,000 keys, of one kind per cell:
  - INCR key                               (the plain command, for reference)
  - FCALL incr 1 key                       (a function calling redis.call('incr', key))
  - EVALSHA <sha> 1 key                    (the same as a script)
Every run measures each server in turn (the order alternated by run): requests per
second and the server's CPU time per request (utime + stime from /proc over the run).
Prints a markdown table of medians (min-max) and the kvd/redis ratios; --append adds it
to a file.

    perf/functions.py [--build build/release] [--runs 3] [--clients 4] [--batches 300]
                      [--append docs/PERFORMANCE.md]
"""
import argparse
import datetime
import hashlib
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
LIBRARY = ("#!lua name=bench\n"
           "redis.register_function('incr', function(keys) return redis.call('incr', keys[1]) end)")
SCRIPT = "return redis.call('incr', KEYS[1])"
SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()
KINDS = ["INCR", "FCALL", "EVALSHA"]


def request(kind, key):
    if kind == "INCR":
        return enc("INCR", key)
    if kind == "FCALL":
        return enc("FCALL", "incr", "1", key)
    return enc("EVALSHA", SHA, "1", key)


def read_replies(s, n, buf):
    """Reads n one-line replies (integers or errors); returns the rest of the buffer."""
    got = 0
    while True:
        lines = buf.count(b"\r\n")
        if lines >= n - got:
            for _ in range(n - got):
                i = buf.index(b"\r\n")
                if buf[:1] == b"-":
                    raise SystemExit("error reply: %r" % buf[:i])
                buf = buf[i + 2:]
            return buf
        chunk = s.recv(1 << 20)
        if not chunk:
            raise SystemExit("connection closed")
        buf += chunk


def client_proc(port, kind, batches, seed, q):
    os.sched_setaffinity(0, {1})
    rnd = random.Random(seed)
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    for _ in range(batches):
        s.sendall(b"".join(request(kind, "key:%d" % rnd.randrange(KEYS)) for _ in range(BATCH)))
        buf = read_replies(s, BATCH, buf)
    q.put(0)
    s.close()


def run(port, pid, kind, clients, batches, seed):
    q = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=client_proc, args=(port, kind, batches, seed + i, q))
             for i in range(clients)]
    c0, t0 = cpu_s(pid), time.monotonic()
    for p in procs:
        p.start()
    for _ in procs:
        q.get()
    for p in procs:
        p.join()
    wall, cpu = time.monotonic() - t0, cpu_s(pid) - c0
    n = clients * batches * BATCH
    return {"rps": n / wall, "cpu": cpu * 1e6 / n}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--append")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="kv-func-")
    servers = {}
    try:
        servers = start_pair(a.build, tmp)
        for name, (_, port) in servers.items():
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(enc("FUNCTION", "LOAD", "REPLACE", LIBRARY) + enc("SCRIPT", "LOAD", SCRIPT))
            reply = b""
            while reply.count(b"\r\n") < 4:  # two bulk strings
                reply += s.recv(1 << 16)
            if reply.startswith(b"-") or b"\r\n-" in reply:
                raise SystemExit("%s refused the library or script: %r" % (name, reply))
            s.close()
        rows = {}
        for i in range(a.runs):
            for kind in KINDS:
                order = list(servers.items()) if i % 2 == 0 else list(servers.items())[::-1]
                for name, (proc, port) in order:
                    res = run(port, proc.pid, kind, a.clients, a.batches, 11 + i)
                    for k, v in res.items():
                        rows.setdefault((name, kind), {}).setdefault(k, []).append(v)
        now = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")
        load = open("/proc/loadavg").read().split()[:3]
        lines = ["### perf/functions.py, %s" % now, "",
                 "`perf/functions.py --build %s --runs %d --clients %d --batches %d`: %d clients "
                 "each sending pipelined batches of %d over %d keys; servers single-threaded on "
                 "core 0, clients on core 1; load average %s at the end." % (
                     a.build, a.runs, a.clients, a.batches, a.clients, BATCH, KEYS,
                     " ".join(load)),
                 "",
                 "| request | kvd requests/s | redis requests/s | kvd CPU us/req | "
                 "redis CPU us/req | kvd/redis CPU per request |",
                 "| --- | --- | --- | --- | --- | --- |"]
        for kind in KINDS:
            k, r = rows[("kvd", kind)], rows[("redis", kind)]
            lines.append("| %s | %s | %s | %s | %s | %.2fx |" % (
                kind, med(k["rps"]), med(r["rps"]), med(k["cpu"]), med(r["cpu"]),
                statistics.median(k["cpu"]) / statistics.median(r["cpu"])))
        lines.append("")
        emit("\n".join(lines), a.append)
    finally:
        stop([proc for proc, _ in servers.values()])
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
