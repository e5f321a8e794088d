#!/usr/bin/python3
"""Compare clients and servers on this machine, pinned: the server on core 0, the client
on core 1.

For each server (redis-server, perf/limit's limit_server; also kvd --threads 1 with
--servers redis,limit,kvd), pipeline depth (1, 16) and command (SET, then GET so that
GETs hit), it runs kvbench and redis-benchmark in alternating order, --runs times each, with -c 50 and the same request count, and
records per run: the client's ops/s, the server's CPU time per request (utime + stime
from /proc/PID/stat over the run) and the client's own CPU time per request. It prints
one markdown table of medians (and min-max), and the exact commands used.

    /usr/bin/python3 perf/limit/bench.py --build build/release [--runs 5]
"""
import argparse
import json
import os
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wait_port(port, proc):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("server exited")
            time.sleep(0.05)
    raise RuntimeError("server did not listen on %d" % port)


def start_server(kind, build, port):
    if kind == "redis":
        cmd = ["taskset", "-c", "0", "redis-server", "--save", "", "--appendonly", "no",
               "--port", str(port)]
    elif kind == "kvd":
        # one shard thread, like redis-server's one; kvd creates --dir at start
        cmd = ["taskset", "-c", "0", os.path.join(build, "io", "kvd"), "--threads", "1",
               "--port", str(port), "--dir",
               os.path.join(tempfile.gettempdir(), "kv-bench-kvd-%d" % port)]
    else:
        cmd = ["taskset", "-c", "0", os.path.join(build, "perf", "limit_server"),
               "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    return proc, cmd


def client_cmd(client, build, port, op, pipeline, n):
    if client == "kvbench":
        return ["taskset", "-c", "1", os.path.join(build, "tools", "kvbench"), "-p", str(port),
                "-c", "50", "-P", str(pipeline), "-t", op, "-n", str(n), "-r", "100000",
                "--json", "--no-progress"]
    return ["taskset", "-c", "1", "redis-benchmark", "-p", str(port), "-c", "50", "-P",
            str(pipeline), "-t", op, "-n", str(n), "-r", "100000", "-q"]


def run_client(cmd, client, server_pid):
    s0 = cpu_s(server_pid)
    r0 = os.times()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    r1 = os.times()
    s1 = cpu_s(server_pid)
    if out.returncode != 0:
        raise RuntimeError("%s failed: %s" % (cmd, out.stderr))
    if client == "kvbench":
        res = json.loads(out.stdout)
        ops = res["ops_per_sec"]
        reqs = res["requests"]
        assert res["errors"] == 0 and res["unexpected"] == 0, res
    else:
        m = re.findall(r"([\d.]+) requests per second", out.stdout.replace("\r", "\n"))
        ops = float(m[-1])
        reqs = int(cmd[cmd.index("-n") + 1])
    client_cpu = (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)
    return {
        "ops": ops,
        "server_us": (s1 - s0) * 1e6 / reqs,
        "client_us": client_cpu * 1e6 / reqs,
    }


def fmt(vals, digits):
    med = statistics.median(vals)
    return "%s (%s-%s)" % (
        "%.*f" % (digits, med), "%.*f" % (digits, min(vals)), "%.*f" % (digits, max(vals)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--servers", default="redis,limit")
    ap.add_argument("--pipelines", default="1,16")
    ap.add_argument("--n1", type=int, default=200000, help="requests per run at P1")
    ap.add_argument("--n16", type=int, default=2000000, help="requests per run at P16")
    args = ap.parse_args()

    rows = []
    commands = []
    for server in args.servers.split(","):
        port = free_port()
        proc, scmd = start_server(server, args.build, port)
        commands.append(" ".join(shlex.quote(c) for c in scmd))
        try:
            for p in [int(x) for x in args.pipelines.split(",")]:
                n = args.n1 if p == 1 else args.n16
                for op in ("set", "get"):
                    res = {"kvbench": [], "redis-benchmark": []}
                    for i in range(args.runs):
                        order = ["kvbench", "redis-benchmark"]
                        if i % 2:
                            order.reverse()
                        for client in order:
                            cmd = client_cmd(client, args.build, port, op, p, n)
                            if i == 0:
                                commands.append(" ".join(shlex.quote(c) for c in cmd))
                            res[client].append(run_client(cmd, client, proc.pid))
                            print("%s P%d %s %s: %.0f ops/s" % (server, p, op, client,
                                  res[client][-1]["ops"]), file=sys.stderr)
                    for client in ("kvbench", "redis-benchmark"):
                        r = res[client]
                        rows.append((server, p, op.upper(), client,
                                     fmt([x["ops"] for x in r], 0),
                                     fmt([x["server_us"] for x in r], 2),
                                     fmt([x["client_us"] for x in r], 2)))
                    kb = statistics.median(x["ops"] for x in res["kvbench"])
                    rb = statistics.median(x["ops"] for x in res["redis-benchmark"])
                    # the two runs of one round ran back to back: their ratio cancels
                    # most of the drift of a shared machine's background load
                    pairs = [k["ops"] / r["ops"]
                             for k, r in zip(res["kvbench"], res["redis-benchmark"])]
                    rows.append((server, p, op.upper(), "kvbench / redis-benchmark",
                                 "%.2fx of medians; per round %s" % (kb / rb, fmt(pairs, 2)),
                                 "", ""))
        finally:
            proc.terminate()
            proc.wait()
            shutil.rmtree(os.path.join(tempfile.gettempdir(), "kv-bench-kvd-%d" % port),
                          ignore_errors=True)

    print("| server | P | cmd | client | ops/s median (min-max) | server CPU us/req | "
          "client CPU us/req |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print("| %s | %d | %s | %s | %s | %s | %s |" % r)
    print()
    print("Commands (first run of each; %d alternating runs per client):" % args.runs)
    for c in dict.fromkeys(commands):
        print("    " + c)


if __name__ == "__main__":
    main()
