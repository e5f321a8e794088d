"""perf/compare --quick: kvd, redis-server and limit_server side by side, one short run of
every cell (SET/GET x P1/P16 x 16 B/1 KiB), with kvbench and with redis-benchmark.

It must exit 0 (which it does only if every server kept running, kvbench saw no error
reply, no unexpected reply type and, on kvd and Redis, no GET miss after the key space
was loaded), print a row for every server and both pipeline depths, the ratio table,
and leave no server running. The build: $KV_BUILD_DIR (set by ctest), else
<repo>/build/release.
"""
import os
import re
import shutil
import subprocess

import pytest

SRC_DIR = os.environ.get("KV_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
BUILD = os.environ.get("KV_BUILD_DIR") or os.path.join(SRC_DIR, "build", "release")
COMPARE = os.path.join(SRC_DIR, "perf", "compare")
SERVERS = ("redis", "kvd", "limit")


def need_tools(*names):
    for n in names:
        if not shutil.which(n):
            print("SKIP: %s is missing, perf/compare cannot run (apt-get install "
                  "redis-server)" % n)
            pytest.skip("%s is missing" % n)
    for rel in ("io/kvd", "tools/kvbench", "perf/limit_server"):
        path = os.path.join(BUILD, rel)
        if not os.access(path, os.X_OK):
            pytest.fail("%s is not built (cmake --build %s --target kvd kvbench "
                        "limit_server)" % (path, BUILD))


def pids_of_servers():
    """PIDs of the servers perf/compare started (it marks them with KV_COMPARE_SERVER in
    their environment: other tests, which ctest may run at the same time, start kvds and
    limit_servers of their own)."""
    found = set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        exe = argv[0].decode(errors="replace") if argv else ""
        if exe not in (os.path.join(BUILD, "io", "kvd"),
                       os.path.join(BUILD, "perf", "limit_server")):
            continue
        try:
            with open("/proc/%s/environ" % d, "rb") as f:
                ours = b"KV_COMPARE_SERVER=" in f.read()
        except OSError:
            continue
        if ours:
            found.add(int(d))
    return found


def table_rows(out):
    rows = []
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0] in ("SET", "GET") and cells[3] in SERVERS:
            rows.append(cells)
    return rows


@pytest.mark.parametrize("client", ["kvbench", "redis-benchmark"])
def test_quick_run_prints_every_server_and_pipeline(client, tmp_path):
    need_tools("redis-server", "redis-benchmark", "taskset")
    before = pids_of_servers()
    doc = tmp_path / "PERF.md"
    doc.write_text("# figures\n")
    out = subprocess.run(["/usr/bin/python3", COMPARE, "--build", BUILD, "--quick",
                          "--client", client, "--append", str(doc)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, "perf/compare exited %d\nstdout:\n%s\nstderr:\n%s" % (
        out.returncode, out.stdout, out.stderr[-5000:])
    rows = table_rows(out.stdout)
    seen = {(r[0], r[1], r[2], r[3]) for r in rows}
    for op in ("SET", "GET"):
        for p in ("1", "16"):
            for size in ("16 B", "1 KiB"):
                for server in SERVERS:
                    assert (op, p, size, server) in seen, (op, p, size, server, out.stdout)
    for r in rows:
        ops = float(r[4].split()[0])
        assert ops > 0, r
    # the ratio table: one row per cell with kvd/Redis and kvd/limit
    assert re.search(r"^\| cmd \| P \| value \| kvd/Redis ops/s \| kvd/Redis CPU per req \| "
                     r"kvd/limit ops/s \| kvd/limit CPU per req \|$", out.stdout, re.M), out.stdout
    ratio_rows = [line for line in out.stdout.splitlines()
                  if re.match(r"^\| (SET|GET) \| \d+ \| [^|]+ \| (\d|n/a)", line)]
    assert len(ratio_rows) == 8, out.stdout
    # --append wrote the heading, the commit, the load averages and the same table
    text = doc.read_text()
    assert text.startswith("# figures\n")
    assert "### perf/compare, %s client" % client in text
    assert re.search(r"Commit [0-9a-f]{4,}; `perf/compare .*--quick", text), text
    assert "load average" in text and "at the end" in text
    assert len(table_rows(text)) == len(rows)
    # every server it started is gone
    assert pids_of_servers() - before == set()
