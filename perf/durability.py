#!/usr/bin/python3
"""perf/durability.py: what durability costs kvd, beside Redis.

(a) fsync: SET throughput and latency (p50, p99, p99.9) at --conns (50) connections,
    for each pipeline depth of --pipelines (1,16), of three servers, each single-threaded
    on core 0 (taskset -c 0) with the client (tools/kvbench, which reports p99.9;
    redis-benchmark does not) on core 1, as perf/compare does:

        kvd-always  kvd --threads 1 --appendfsync always
        kvd-no      kvd --threads 1 --appendfsync no
        redis-always  redis-server --appendonly yes --appendfsync always --save ''

    All three stay up; every run visits them in turn, the order rotated by one per run,
    so that the drift of a shared machine's load falls on each alike. Per run: the
    client's ops/s and percentiles and the server's CPU per request (utime + stime from
    /proc). Medians (min-max) over --runs, and the ratios kvd-always/kvd-no (target
    >= 0.8x) and kvd-always/redis-always (target >= 2x) of the medians, with the range of
    the per-run ratios.

(b) restart: --keys (10M) keys of 16 bytes with 32-byte values (kvbench --load), then
    SAVE, then --tail (100,000) SETs of random keys of the same key space (kvbench -n),
    then SIGKILL, restart on the same directory, and the time from the exec to the
    first PONG (kvd: its "recovered" log lines give each shard's own time too; Redis
    answers -LOADING until its RDB is loaded). Redis does SAVE after the tail too, so its
    RDB holds the same data. Each server is restarted --restarts (3) times from the same
    files; DBSIZE is checked after each. Servers: kvd --threads 1 pinned to core 0, kvd
    with its default threads (one per core, unpinned), redis-server --appendonly no
    pinned to core 0. Target: kvd <= 0.5x Redis's time. The page cache is warm for both
    (the files were just written).

    perf/durability.py [--build build/release] [--part a,b] [--runs 5] [--n1 100000]
        [--n16 1000000] [--pipelines 1,16] [--keys 10000000] [--tail 100000]
        [--restarts 3] [--always-args FLAGS] [--append docs/PERFORMANCE.md] [--quick]

Every server it started is stopped on exit, also on an error, Ctrl-C or SIGTERM. Exit
status 0 also when a target is missed (this measures, it does not judge); 1 on an error.
"""
import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER_CORE = "0"
CLIENT_CORE = "1"
READY_TIMEOUT_S = 600
RUN_TIMEOUT_S = 1800
KEYSPACE_A = 100000
VALUE_SIZE = 32
TARGET_ALWAYS_VS_NO = 0.8
TARGET_ALWAYS_VS_REDIS = 2.0
TARGET_RESTART_VS_REDIS = 0.5


def log(msg):
    print("durability: " + msg, file=sys.stderr, flush=True)


def quote(cmd):
    return " ".join(shlex.quote(c) for c in cmd)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def command(port, *args, timeout=3600):
    """One command on a fresh connection; the reply's first line and what follows."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(resp(*args))
        buf = b""
        while b"\r\n" not in buf:
            d = s.recv(65536)
            if not d:
                raise RuntimeError("connection closed on %r" % (args,))
            buf += d
        if buf[:1] == b"$":
            n = int(buf[1:buf.index(b"\r\n")])
            while len(buf) < buf.index(b"\r\n") + 2 + n + 2:
                d = s.recv(1 << 20)
                if not d:
                    break
                buf += d
        return buf.decode("latin-1")


def ping_ok(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(5)
            s.sendall(resp("PING"))
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class Server:
    """kvd or redis-server on a directory that outlives restarts; stop() is idempotent."""

    def __init__(self, kind, build, tmp, args, pin=True):
        self.kind = kind
        self.tmp = tmp
        self.port = free_port()
        pre = ["taskset", "-c", SERVER_CORE] if pin else []
        if kind == "redis":
            self.cmd = pre + ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
                              "--dir", tmp, "--daemonize", "no"] + args
        else:
            self.cmd = pre + [os.path.join(build, "io", "kvd"), "--port", str(self.port),
                              "--dir", os.path.join(tmp, "data")] + args
        self.proc = None
        self.starts = 0

    def start(self):
        """Starts the server; returns the seconds from the exec to the first PONG."""
        self.starts += 1
        self.errpath = os.path.join(self.tmp, "stderr-%d" % self.starts)
        self.errf = open(self.errpath, "wb")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdout=self.errf, stderr=self.errf)
        self.pid = self.proc.pid
        while not ping_ok(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s before it answered PING: %s\n%s" % (
                    self.kind, self.proc.returncode, quote(self.cmd), self.stderr()))
            if time.monotonic() - t0 > READY_TIMEOUT_S:
                raise RuntimeError("%s did not answer PING within %ds" % (self.kind,
                                                                       READY_TIMEOUT_S))
            time.sleep(0.005)
        return time.monotonic() - t0

    def stderr(self):
        try:
            with open(self.errpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def check_alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError("%s died (exit status %s); its log:\n%s"
                               % (self.kind, self.proc.returncode, self.stderr()[-4000:]))

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.errf.close()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and not self.errf.closed:
            self.errf.close()


def kvbench(build, port, extra):
    cmd = ["taskset", "-c", CLIENT_CORE, os.path.join(build, "tools", "kvbench"), "-p",
           str(port), "--json", "--no-progress"] + [str(x) for x in extra]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    if out.returncode != 0:
        raise RuntimeError("%s exited with %d:\n%s" % (quote(cmd), out.returncode,
                                                       out.stderr[-2000:]))
    r = json.loads(out.stdout)
    if r["errors"] or r["unexpected"] or r["conn_failures"]:
        raise RuntimeError("%s: errors=%d unexpected=%d conn_failures=%d" % (
            quote(cmd), r["errors"], r["unexpected"], r["conn_failures"]))
    return r, cmd


def rel(args, text):
    """A command line with the build directory relative to the repository."""
    return text.replace(args.build, os.path.relpath(args.build, ROOT))


def med(vals):
    return statistics.median(vals)


def fmt(vals, digits):
    return "%.*f (%.*f-%.*f)" % (digits, med(vals), digits, min(vals), digits, max(vals))


def ratio(a, b):
    """Ratio of the medians and the range of the per-run ratios."""
    per = [x / y for x, y in zip(a, b) if y > 0]
    return med(a) / med(b), min(per), max(per)


def verdict(value, target, higher_is_better):
    ok = value >= target if higher_is_better else value <= target
    if ok:
        return "met"
    if higher_is_better:
        return "missed by %.0f%%" % ((1 - value / target) * 100)
    return "missed by %.0f%%" % ((value / target - 1) * 100)


# ---------------------------------------------------------------------------------------
# (a)

A_SERVERS = (
    ("kvd-always", "kvd", ["--threads", "1", "--appendfsync", "always"]),
    ("kvd-no", "kvd", ["--threads", "1", "--appendfsync", "no"]),
    ("redis-always", "redis", ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]),
)


def part_a(args, out, commands, anomalies):
    servers = {}
    names = [n for n, _, _ in A_SERVERS]
    try:
        for name, kind, sargs in A_SERVERS:
            if name == "kvd-always":
                sargs = sargs + shlex.split(args.always_args)
            tmp = tempfile.mkdtemp(prefix="kv-durability-%s-" % name)
            servers[name] = Server(kind, args.build, tmp, sargs)
            servers[name].start()
            commands.append(rel(args, quote(servers[name].cmd).replace(tmp, "$TMP")))
        # every key exists before the measured runs (a SET never grows the table)
        for name in names:
            kvbench(args.build, servers[name].port,
                    ["-c", args.conns, "-P", 16, "-t", "set", "-r", args.keyspace,
                     "-d", VALUE_SIZE, "--load", "-n", 1])
        results = {}
        for p in args.pipelines:
            n = args.n1 if p == 1 else args.n16
            per = {name: [] for name in names}
            for i in range(args.runs):
                order = names[i % len(names):] + names[:i % len(names)]
                for name in order:
                    s = servers[name]
                    s.check_alive()
                    c0 = cpu_s(s.pid)
                    r, cmd = kvbench(args.build, s.port,
                                     ["-c", args.conns, "-P", p, "-t", "set", "-r",
                                      args.keyspace, "-d", VALUE_SIZE, "-n", n,
                                      "--seed", i + 1])
                    c1 = cpu_s(s.pid)
                    s.check_alive()
                    if i == 0 and name == names[0]:
                        commands.append(rel(args, quote(cmd)))
                    lat = r["latency_us"]
                    row = {"ops": r["ops_per_sec"], "p50": lat["p50"] / 1000.0,
                           "p99": lat["p99"] / 1000.0, "p999": lat["p99_9"] / 1000.0,
                           "cpu": (c1 - c0) * 1e6 / r["requests"]}
                    per[name].append(row)
                    log("SET P%d %s run %d: %.0f ops/s, p50 %.2f p99 %.2f p99.9 %.2f ms, "
                        "%.1f us CPU/req" % (p, name, i, row["ops"], row["p50"], row["p99"],
                                             row["p999"], row["cpu"]))
            results[p] = per
    finally:
        for s in servers.values():
            s.stop()
            if s.kind == "kvd" and s.proc is not None and s.proc.returncode != 0:
                anomalies.append("%s exited with status %s on SIGTERM" % (s.kind,
                                                                          s.proc.returncode))
            shutil.rmtree(s.tmp, ignore_errors=True)

    out.append("| P | server | SET ops/s | p50 ms | p99 ms | p99.9 ms | server CPU us/req |")
    out.append("| --- | --- | --- | --- | --- | --- | --- |")
    for p, per in results.items():
        for name in names:
            rs = per[name]
            out.append("| %d | %s | %s | %s | %s | %s | %s |" % (
                p, name, fmt([x["ops"] for x in rs], 0), fmt([x["p50"] for x in rs], 2),
                fmt([x["p99"] for x in rs], 2), fmt([x["p999"] for x in rs], 2),
                fmt([x["cpu"] for x in rs], 1)))
    out.append("")
    out.append("| P | ratio (ops/s) | median (per-run range) | target | verdict |")
    out.append("| --- | --- | --- | --- | --- |")
    for p, per in results.items():
        ka = [x["ops"] for x in per["kvd-always"]]
        for other, target in (("kvd-no", TARGET_ALWAYS_VS_NO),
                              ("redis-always", TARGET_ALWAYS_VS_REDIS)):
            m, lo, hi = ratio(ka, [x["ops"] for x in per[other]])
            out.append("| %d | kvd-always / %s | %.2fx (%.2f-%.2f) | >= %.1fx | %s |" % (
                p, other, m, lo, hi, target, verdict(m, target, True)))
    return results


# ---------------------------------------------------------------------------------------
# (b)

B_SERVERS = (
    ("kvd --threads 1, pinned", "kvd", ["--threads", "1"], True),
    ("kvd default threads, unpinned", "kvd", [], False),
    ("redis-server, pinned", "redis", ["--save", "", "--appendonly", "no"], True),
)


def dbsize(port):
    line = command(port, "DBSIZE")
    return int(line.split("\r\n")[0][1:])


def part_b(args, out, commands):
    rows = []
    for label, kind, sargs, pin in B_SERVERS:
        tmp = tempfile.mkdtemp(prefix="kv-durability-restart-")
        s = Server(kind, args.build, tmp, sargs, pin=pin)
        try:
            s.start()
            commands.append(rel(args, quote(s.cmd).replace(tmp, "$TMP")))
            t = time.monotonic()
            _, cmd = kvbench(args.build, s.port, ["-c", 50, "-P", 16, "-t", "set", "-r",
                                                  args.keys, "-d", VALUE_SIZE, "--load",
                                                  "-n", 1])
            load_s = time.monotonic() - t
            if kind == "kvd" and pin:
                commands.append(rel(args, quote(cmd)))
            t = time.monotonic()
            r = command(s.port, "SAVE")
            save_s = time.monotonic() - t
            if not r.startswith("+OK"):
                raise RuntimeError("%s: SAVE replied %r" % (label, r))
            _, cmd = kvbench(args.build, s.port, ["-c", 50, "-P", 1, "-t", "set", "-r",
                                                  args.keys, "-d", VALUE_SIZE, "-n",
                                                  args.tail, "--seed", 7])
            if kind == "kvd" and pin:
                commands.append(rel(args, quote(cmd)))
            if kind == "redis":
                t = time.monotonic()
                r = command(s.port, "SAVE")
                save_s += time.monotonic() - t
                if not r.startswith("+OK"):
                    raise RuntimeError("redis SAVE replied %r" % r)
            n = dbsize(s.port)
            if n != args.keys:
                raise RuntimeError("%s holds %d keys, not %d" % (label, n, args.keys))
            rss = 0
            with open("/proc/%d/status" % s.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1]) // 1024
            files_mb = sum(os.path.getsize(os.path.join(dp, f))
                           for dp, _, fs in os.walk(tmp) for f in fs
                           if not f.startswith("stderr")) / 1048576.0
            times, shard_ms, details = [], [], []
            for i in range(args.restarts):
                s.kill9()
                times.append(s.start())
                n = dbsize(s.port)
                if n != args.keys:
                    raise RuntimeError("%s restart %d: %d keys, not %d" % (label, i, n,
                                                                         args.keys))
                log_text = s.stderr()
                if kind == "kvd":
                    lines = re.findall(r"recovered shard=.*", log_text)
                    ms = [int(re.search(r" ms=(\d+)", ln).group(1)) for ln in lines]
                    shard_ms.append(max(ms))
                    details = lines
                else:
                    info = command(s.port, "INFO", "persistence")
                    if "loading:0" not in info:
                        raise RuntimeError("redis still loading after PONG")
                    m = re.search(r"DB loaded from disk: ([0-9.]+) seconds", log_text)
                    if m:
                        shard_ms.append(float(m.group(1)) * 1000)
                    details = [ln for ln in log_text.splitlines() if "loaded" in ln.lower()]
                log("%s restart %d: %.2f s to PONG; %s" % (label, i, times[-1],
                                                           "; ".join(details)))
            rows.append({"label": label, "kind": kind, "load_s": load_s, "save_s": save_s,
                         "rss_mb": rss, "files_mb": files_mb, "times": times,
                         "own_ms": shard_ms, "details": details})
        finally:
            s.stop()
            shutil.rmtree(tmp, ignore_errors=True)

    out.append("| server | load s | SAVE s | RSS MB | files MB | restart to PONG s "
               "median (min-max) | own log: recovery / load ms median |")
    out.append("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        own = "%.0f" % med(r["own_ms"]) if r["own_ms"] else "n/a"
        out.append("| %s | %.1f | %.1f | %d | %.0f | %s | %s |" % (
            r["label"], r["load_s"], r["save_s"], r["rss_mb"], r["files_mb"],
            fmt(r["times"], 2), own))
    redis = [r for r in rows if r["kind"] == "redis"][0]
    out.append("")
    out.append("| ratio (restart to PONG) | median (per-restart range) | target | verdict |")
    out.append("| --- | --- | --- | --- |")
    for r in rows:
        if r["kind"] != "kvd":
            continue
        m, lo, hi = ratio(r["times"], redis["times"])
        out.append("| %s / redis | %.2fx (%.2f-%.2f) | <= %.1fx | %s |" % (
            r["label"], m, lo, hi, TARGET_RESTART_VS_REDIS,
            verdict(m, TARGET_RESTART_VS_REDIS, False)))
    out.append("")
    out.append("Last restart's log lines:")
    out.append("")
    for r in rows:
        for d in r["details"]:
            out.append("    %s: %s" % (r["label"], d.strip()))
    return rows


def git_head():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def on_signal(signum, frame):
    raise KeyboardInterrupt


def main():
    ap = argparse.ArgumentParser(description="kvd's durability cost beside Redis")
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--part", default="a,b", help="a (fsync), b (restart) or a,b")
    ap.add_argument("--runs", type=int, default=5, help="runs per cell and server in (a)")
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--always-args", default="",
                    help="more kvd flags for kvd-always in (a), e.g. "
                         "'--wal-sync-method fdatasync --wal-writes-in-flight 1'")
    ap.add_argument("--pipelines", default="1,16")
    ap.add_argument("--keyspace", type=int, default=KEYSPACE_A, help="keys in (a)")
    ap.add_argument("--n1", type=int, default=100000, help="requests per run at P1 in (a)")
    ap.add_argument("--n16", type=int, default=1000000, help="requests per run at P>1")
    ap.add_argument("--keys", type=int, default=10000000, help="keys in (b)")
    ap.add_argument("--tail", type=int, default=100000, help="SETs after SAVE in (b)")
    ap.add_argument("--restarts", type=int, default=3, help="restarts per server in (b)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1 run of 5,000/20,000 requests; 200,000 keys, 10,000 "
                    "tail SETs, 1 restart")
    ap.add_argument("--append", metavar="FILE", help="append the tables to FILE")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.n1, args.n16, args.keyspace = 1, 5000, 20000, 10000
        args.keys, args.tail, args.restarts = 200000, 10000, 1
    args.build = os.path.abspath(args.build)
    args.pipelines = [int(x) for x in args.pipelines.split(",")]
    parts = args.part.split(",")
    for exe in ("io/kvd", "tools/kvbench"):
        if not os.access(os.path.join(args.build, exe), os.X_OK):
            sys.exit("durability: %s/%s is not built" % (args.build, exe))
    if not shutil.which("redis-server"):
        sys.exit("durability: redis-server is not installed (apt-get install redis-server)")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = datetime.datetime.now(datetime.timezone.utc)
    load0 = loadavg()
    out, commands, anomalies = [], [], []
    try:
        if "a" in parts:
            out.append("(a) SET at %d connections, %d-byte values, %d keys, %d run(s); "
                       "medians (min-max)" % (args.conns, VALUE_SIZE, args.keyspace, args.runs))
            out.append("")
            part_a(args, out, commands, anomalies)
            out.append("")
        if "b" in parts:
            out.append("(b) restart with %d keys (16 B keys, %d B values), SAVE, then %d "
                       "SETs; %d restart(s) each" % (args.keys, VALUE_SIZE, args.tail,
                                                     args.restarts))
            out.append("")
            part_b(args, out, commands)
            out.append("")
    except KeyboardInterrupt:
        log("interrupted; servers stopped")
        return 130
    except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as e:
        log("error: %s" % e)
        return 1
    text = "\n".join(out)
    print(text)
    print("Commands:")
    for c in commands:
        print("    " + c)
    if anomalies:
        print("Anomalies:\n" + "\n".join("- " + a for a in anomalies))
    if args.append:
        ended = datetime.datetime.now(datetime.timezone.utc)
        with open(args.append, "a") as f:
            f.write("\n### perf/durability.py, %s-%s UTC\n\n" % (
                started.strftime("%Y-%m-%d %H:%M"), ended.strftime("%H:%M")))
            f.write("Commit %s; `perf/durability.py %s`; load average %s at the start, %s at "
                    "the end.\n\n" % (git_head(), quote(sys.argv[1:]), load0, loadavg()))
            f.write(text + "\n")
            if anomalies:
                f.write("\nAnomalies:\n\n" + "\n".join("- " + a for a in anomalies) + "\n")
            f.write("\nCommands (a: the servers, one run; b: the servers, the load, the "
                    "tail):\n\n```sh\n" + "\n".join(commands) + "\n```\n")
        log("appended to %s" % args.append)
    return 1 if anomalies else 0


if __name__ == "__main__":
    sys.exit(main())
