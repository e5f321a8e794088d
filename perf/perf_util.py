"""perf/perf_util.py: what the perf/ scripts that pit kvd against redis-server share: a
free port, a process's CPU seconds, waiting for a server to listen, starting servers
pinned to a core (the pair of kvd and redis-server) and stopping them, a RESP request's
bytes, and the medians (min-max) their tables print."""
import os
import signal
import socket
import statistics
import subprocess
import time

HZ = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_s(pid):
    """utime + stime of process pid, in seconds (/proc, clock ticks)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def wait_port(port, proc):
    for _ in range(500):
        if proc.poll() is not None:
            raise SystemExit("server exited: %s" % proc.args)
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit("server did not start: %s" % proc.args)


def start_pinned(core, args, port):
    """Starts args on `core` (taskset) and waits until it listens on port."""
    proc = subprocess.Popen(["taskset", "-c", str(core)] + args, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    return proc


def enc(*args):
    """A RESP request."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def start_pair(build, tmp, extra=()):
    """kvd (one thread, no persistence) and redis-server (no persistence), each on a free
    port, pinned to core 0, with the same `extra` settings ("--name", "value", ...):
    {"kvd": (proc, port), "redis": (proc, port)}."""
    kp, rp = free_port(), free_port()
    kvd = [os.path.join(build, "io", "kvd"), "--port", str(kp), "--threads", "1",
           "--appendonly", "no", "--save", "", "--dir", os.path.join(tmp, "kvd")] + list(extra)
    red = ["redis-server", "--port", str(rp), "--save", "", "--appendonly", "no", "--dir",
           tmp] + list(extra)
    pair = {}
    try:
        for name, args, port in [("kvd", kvd, kp), ("redis", red, rp)]:
            pair[name] = (start_pinned(0, args, port), port)
    except BaseException:
        stop([proc for proc, _ in pair.values()])
        raise
    return pair


def stop(procs):
    """SIGTERM each process, SIGKILL those still there after 10 s."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def fmt(x):
    return "%.0f" % x if x >= 100 else "%.2f" % x


def med(v):
    """The median and range of v, as the tables print them: "m (lo-hi)"."""
    return "%s (%s-%s)" % (fmt(statistics.median(v)), fmt(min(v)), fmt(max(v)))


def emit(text, append):
    """Prints a result and, when `append` names a file, adds it there."""
    print(text)
    if append:
        with open(append, "a") as f:
            f.write("\n" + text)
