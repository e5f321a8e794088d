#!/usr/bin/python3
"""perf/eviction.py: SET throughput while evicting, kvd against redis-server.

Both servers run single-threaded on core 0 (kvd --threads 1 --appendonly no,
redis-server --save '' --appendonly no), with the same maxmemory and policy; the client,
redis-benchmark, on core 1 with 50 connections, 100-byte values and keys drawn from 10M
(so that nearly every SET adds a key and, once the limit is reached, evicts one). Each
server is first filled past its limit (not measured), then every run measures
`-t set -n N -P P` on each server in turn (the order alternated by run) and records ops/s,
the server's CPU time per request (utime + stime from /proc over the run), used_memory
against maxmemory, and the keys evicted during the run. Prints a markdown table of
medians (min-max) and the kvd/redis ratios; --append adds it to a file.

    perf/eviction.py [--build build/release] [--runs 3] [--maxmemory 64mb]
                     [--policy allkeys-lru] [--pipelines 16,1] [--append docs/PERFORMANCE.md]
"""
import argparse
import datetime
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

from perf_util import cpu_s, emit, med, start_pair, stop









def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        kb = int(re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M).group(1))
    return kb / 1024.0


def info(port, field):
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO"], capture_output=True,
                         text=True, check=True).stdout
    m = re.search(r"^%s:(\S+)" % field, out, re.M)
    return int(m.group(1))





def bench(port, n, p):
    cmd = ["taskset", "-c", "1", "redis-benchmark", "-p", str(port), "-c", "50", "-t", "set",
           "-d", "100", "-r", "10000000", "-n", str(n), "-P", str(p), "-q"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    m = re.findall(r"SET: ([\d.]+) requests per second", out.replace("\r", "\n"))
    return float(m[-1]), " ".join(cmd)








def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--maxmemory", default="64mb")
    ap.add_argument("--policy", default="allkeys-lru")
    ap.add_argument("--pipelines", default="16,1")
    ap.add_argument("--append")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="kv-evict-")
    procs = {}
    try:
        procs = start_pair(a.build, tmp,
                           ["--maxmemory", a.maxmemory, "--maxmemory-policy", a.policy])
        maxmem = info(procs["kvd"][1], "maxmemory")
        for name, (proc, port) in procs.items():  # fill past the limit (not measured)
            bench(port, 1000000, 16)
        rows = {}
        cmds = set()
        for p in [int(x) for x in a.pipelines.split(",")]:
            n = 2000000 if p > 1 else 300000
            for run in range(a.runs):
                order = list(procs.items()) if run % 2 == 0 else list(procs.items())[::-1]
                for name, (proc, port) in order:
                    ev0, c0 = info(port, "evicted_keys"), cpu_s(proc.pid)
                    ops, cmd = bench(port, n, p)
                    cpu = (cpu_s(proc.pid) - c0) * 1e6 / n
                    ev = info(port, "evicted_keys") - ev0
                    used = info(port, "used_memory")
                    keys = int(subprocess.run(["redis-cli", "-p", str(port), "DBSIZE"],
                                              capture_output=True, text=True).stdout)
                    cmds.add(cmd.replace(str(port), "PORT"))
                    r = rows.setdefault((p, name),
                                        {"ops": [], "cpu": [], "used": [], "ev": [], "keys": [],
                                         "rss": []})
                    r["keys"].append(keys)
                    r["rss"].append(rss_mb(proc.pid))
                    r["ops"].append(ops)
                    r["cpu"].append(cpu)
                    r["used"].append(used / maxmem)
                    r["ev"].append(ev / n)
        now = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")
        load = open("/proc/loadavg").read().split()[:3]
        lines = ["### perf/eviction.py, %s" % now, "",
                 "`perf/eviction.py --build %s --runs %d --maxmemory %s --policy %s "
                 "--pipelines %s`; load average %s at the end." % (
                     a.build, a.runs, a.maxmemory, a.policy, a.pipelines, " ".join(load)),
                 "",
                 "| P | server | SET ops/s | server CPU us/req | used_memory / maxmemory "
                 "| evictions per SET | keys held | RSS MB |",
                 "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for (p, name), r in sorted(rows.items()):
            lines.append("| %d | %s | %s | %s | %s | %s | %s | %s |" % (
                p, name, med(r["ops"]), med(r["cpu"]), med(r["used"]), med(r["ev"]),
                med(r["keys"]), med(r["rss"])))
        lines += ["", "| P | kvd / redis ops/s | kvd / redis CPU per request |",
                  "| --- | --- | --- |"]
        for p in sorted({p for p, _ in rows}):
            k, r = rows[(p, "kvd")], rows[(p, "redis")]
            lines.append("| %d | %.2fx | %.2fx |" % (
                p, statistics.median(k["ops"]) / statistics.median(r["ops"]),
                statistics.median(k["cpu"]) / statistics.median(r["cpu"])))
        ports = [str(port) for _, port in procs.values()]
        lines += ["", "Servers and client:", "", "```sh"] + [
            " ".join(  # (proc.args: the taskset line start_pair ran)
                x.replace(ports[0], "PORT").replace(ports[1], "PORT").replace(tmp, "$TMP") or "''"
                for x in proc.args)
            for proc, _ in procs.values()] + sorted(cmds) + ["```", ""]
        emit("\n".join(lines), a.append)
    finally:
        stop([proc for proc, _ in procs.values()])
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
