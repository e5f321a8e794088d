"""kvd started from a redis.conf, and the process settings that come with one:

- Debian's stock /etc/redis/redis.conf loads as it is (its flags overridden only for
  the test's port, dir and foreground run): bind "127.0.0.1 -::1" listens on both,
  pidfile is written and removed, its values answer CONFIG GET;
- the settings kvd accepts without effect answer CONFIG GET / SET as Redis's do;
- bind with several addresses, IPv6, "*", and an optional ("-") address that is missing;
- daemonize, logfile, pidfile; tcp-keepalive (seen with ss);
- protected-mode: with no password, clients not on loopback get Redis's -DENIED;
- stop-writes-on-bgsave-error: after a failed dump, writes and PING get -MISCONF.
"""
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import Client, Err, Kvd, St, encode, kvd_fp_path, kvd_path, wait_until

STOCK = "/etc/redis/redis.conf"
FG = ["--daemonize", "no", "--logfile", ""]  # the stock file daemonizes and logs to /var/log


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_debian_stock_redis_conf_loads(tmp_path):
    if not os.path.exists(STOCK):
        pytest.skip("no %s (Debian's redis-server package)" % STOCK)
    pid = tmp_path / "kvd.pid"
    k = Kvd(args=["--config", STOCK, "--pidfile", str(pid)] + FG)
    try:
        with k.client() as c:
            assert c.cmd("PING") == St("PONG")
            got = dict(zip(*[iter(c.cmd("CONFIG", "GET", "*"))] * 2))
            assert got[b"bind"] == b"127.0.0.1 -::1"
            assert got[b"appendonly"] == b"no"
            assert got[b"dbfilename"] == b"dump.rdb"
            assert got[b"appendfilename"] == b"appendonly.aof"
            assert got[b"tcp-keepalive"] == b"300"
            assert got[b"protected-mode"] == b"yes"
            assert got[b"lazyfree-lazy-user-flush"] == b"no"
            assert got[b"client-output-buffer-limit"] == \
                b"normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"
        if ipv6_loopback():
            with Client(k.port, host="::1") as c:
                assert c.cmd("PING") == St("PONG")
                assert b"addr=::1:" in c.cmd("CLIENT", "INFO")
        assert pid.read_text() == "%d\n" % k.pid
    finally:
        k.stop()
    assert not pid.exists()
    # as Debian's redis-server.service starts redis-server: the file first, no --config
    port = free_port()
    p = subprocess.Popen([kvd_path(), STOCK, "--supervised", "systemd", "--daemonize", "no",
                          "--port", str(port), "--dir", str(tmp_path / "d2"), "--logfile", "",
                          "--pidfile", ""], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: ping(port), 30, what="kvd started with the file first")
        with Client(port) as c:
            assert c.cmd("CONFIG", "GET", "dbfilename") == [b"dbfilename", b"dump.rdb"]
            assert c.cmd("CONFIG", "GET", "supervised") == [b"supervised", b"systemd"]
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == 0, p.stderr.read()


def test_accepted_settings_answer_as_redis(pair):
    for args in [("CONFIG", "GET", "activerehashing"),
                 ("CONFIG", "SET", "activerehashing", "no"),
                 ("CONFIG", "GET", "activerehashing"),
                 ("CONFIG", "SET", "activerehashing", "maybe"),
                 ("CONFIG", "SET", "hash-max-ziplist-entries", "77"),
                 ("CONFIG", "GET", "hash-max-listpack-entries"),
                 ("CONFIG", "SET", "hash-max-listpack-entries", "512"),
                 ("CONFIG", "GET", "hash-max-ziplist-entries"),
                 ("CONFIG", "SET", "repl-diskless-load", "swapdb"),
                 ("CONFIG", "GET", "repl-diskless-load"),
                 ("CONFIG", "SET", "repl-diskless-load", "nope"),
                 ("CONFIG", "SET", "repl-diskless-load", "disabled"),
                 ("CONFIG", "SET", "auto-aof-rewrite-min-size", "1mb"),
                 ("CONFIG", "GET", "auto-aof-rewrite-min-size"),
                 ("CONFIG", "SET", "auto-aof-rewrite-min-size", "64mb"),
                 ("CONFIG", "SET", "activerehashing", "yes"),
                 ("CONFIG", "GET", "stop-writes-on-bgsave-error"),
                 ("CONFIG", "GET", "tcp-keepalive"),
                 ("CONFIG", "GET", "daemonize"),
                 ("CONFIG", "SET", "daemonize", "yes"),
                 ("CONFIG", "GET", "appenddirname")]:
        pair.same(*args)
    lazy = [dict(zip(*[iter(c.cmd("CONFIG", "GET", "lazyfree-lazy-*"))] * 2))
            for c in (pair.k, pair.r)]
    assert lazy[0] == lazy[1] and len(lazy[0]) == 5
    for c in (pair.k, pair.r):  # immutable in both (Redis: "protected config")
        r = c.cmd("CONFIG", "SET", "dbfilename", "x.rdb")
        assert isinstance(r, Err) and "can't set" in r.s, r


def test_bind_lists(tmp_path):
    k = Kvd(args=["--bind", "127.0.0.1 -192.0.2.77 -::1"])  # 192.0.2.0/24: not on this host
    try:
        with k.client() as c:
            assert c.cmd("PING") == St("PONG")
        assert "skipping optional address addr=192.0.2.77" in k.stderr()
        if ipv6_loopback():
            with Client(k.port, host="::1") as c:
                assert c.cmd("PING") == St("PONG")
    finally:
        k.stop()
    k = Kvd(args=["--bind", "*"])
    try:
        with k.client() as c:
            assert c.cmd("PING") == St("PONG")
    finally:
        k.stop()
    k = Kvd(args=["--bind", "127.0.0.1 192.0.2.77"], ready=False)  # not optional: refused
    assert k.proc.wait(timeout=30) != 0
    assert "cannot listen" in k.stderr()
    k.stop(check=False)


def test_daemonize_logfile_pidfile(tmp_path):
    pid, log, data = tmp_path / "kvd.pid", tmp_path / "kvd.log", tmp_path / "data"
    port = free_port()
    p = subprocess.run([kvd_path(), "--daemonize", "yes", "--pidfile", str(pid), "--logfile",
                        str(log), "--port", str(port), "--dir", str(data), "--threads", "2"],
                       timeout=30, capture_output=True)
    assert p.returncode == 0, p.stderr  # the parent returns at once
    assert p.stdout == b"" and p.stderr == b""
    wait_until(lambda: pid.exists() and pid.read_text().endswith("\n"), 10, what="pidfile")
    daemon = int(pid.read_text())
    try:
        wait_until(lambda: "kvd ready" in log.read_text(), 30, what="ready in the logfile")
        with Client(port) as c:
            assert c.cmd("PING") == St("PONG")
        assert os.getsid(daemon) == daemon  # its own session
    finally:
        os.kill(daemon, signal.SIGTERM)
    wait_until(lambda: not pid.exists(), 30, what="pidfile removed at exit")
    assert "kvd stopped" in log.read_text()


def ping(port):
    try:
        with Client(port, timeout=1) as c:
            return c.cmd("PING") == St("PONG")
    except OSError:
        return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keepalive_timer(port):
    out = subprocess.run(["ss", "-tnoH", "state", "established", "( sport = :%d )" % port],
                         capture_output=True, text=True, timeout=10).stdout
    return out


@pytest.mark.skipif(shutil.which("ss") is None, reason="no ss (iproute2) on this machine")
def test_tcp_keepalive(kvd_factory):
    """A client's socket has a keepalive timer (ss shows it once no other timer runs);
    after CONFIG SET tcp-keepalive 0 new clients' sockets have none."""
    k = kvd_factory(args=["--tcp-keepalive", "100"])
    with k.client() as c:
        port_c = c.sock.getsockname()[1]
        c.cmd("PING")
        assert c.cmd("CONFIG", "SET", "tcp-keepalive", "0") == St("OK")
        with k.client() as d:
            port_d = d.sock.getsockname()[1]
            d.cmd("PING")

            def timers():
                lines = keepalive_timer(k.port).splitlines()
                mine = {p: [x for x in lines if x.split()[3].endswith(":%d" % p)]
                        for p in (port_c, port_d)}
                return mine if all(len(v) == 1 for v in mine.values()) else None

            wait_until(lambda: (timers() or {}).get(port_c, [""])[0].find("keepalive") >= 0,
                       10, what="a keepalive timer on the first client's socket")
            for _ in range(20):
                t = timers()
                assert t is not None and "keepalive" not in t[port_d][0], t
                time.sleep(0.02)


def outside_address():
    """An address of this host that is not loopback, or None."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent
            ip = s.getsockname()[0]
        return None if ip.startswith("127.") else ip
    except OSError:
        return None


def test_protected_mode(kvd_factory):
    ip = outside_address()
    if ip is None:
        pytest.skip("this host has no address besides loopback")
    k = kvd_factory(args=["--bind", "127.0.0.1 %s" % ip])
    s = socket.create_connection((ip, k.port), timeout=10)
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    assert data.startswith(b"-DENIED Redis is running in protected mode because protected mode "
                           b"is enabled and no password is set for the default user.")
    assert data.endswith(b"from the outside.\r\n")
    with k.client() as c:  # loopback: served
        assert c.cmd("CONFIG", "SET", "protected-mode", "no") == St("OK")
    with Client(k.port, host=ip) as c:
        assert c.cmd("PING") == St("PONG")
    with k.client() as c:
        assert c.cmd("CONFIG", "SET", "protected-mode", "yes") == St("OK")
        assert c.cmd("CONFIG", "SET", "requirepass", "pw") == St("OK")
    with Client(k.port, host=ip) as c:  # a password: allowed, AUTH needed
        assert c.cmd("PING") == Err("NOAUTH Authentication required.")
        assert c.cmd("AUTH", "pw") == St("OK")
    with k.client() as c:
        c.cmd("AUTH", "pw")
        assert c.cmd("CONFIG", "SET", "requirepass", "") == St("OK")


def test_stop_writes_on_bgsave_error(kvds):
    k = kvds(args=["--appendonly", "no", "--save", "3600 1"], bin=kvd_fp_path(),
             env={"KVD_FAILPOINTS": "dump-before-marker"})  # every dump's child dies
    c = k.client()
    assert c.cmd("SET", "a", "1") == St("OK")
    assert c.cmd("BGSAVE") == St("Background saving started")
    wait_until(lambda: b"rdb_last_bgsave_status:err" in c.cmd("INFO", "persistence"), 30,
               what="the dump failed")
    misconf = ("MISCONF Redis is configured to save RDB snapshots, but it's currently unable "
               "to persist to disk. Commands that may modify the data set are disabled, "
               "because this instance is configured to report errors during writes if RDB "
               "snapshotting fails (stop-writes-on-bgsave-error option). Please check the "
               "Redis logs for details about the RDB error.")
    for args in [("SET", "a", "2"), ("INCR", "n"), ("DEL", "a"), ("PING",)]:
        assert c.cmd(*args) == Err(misconf), args
    assert c.cmd("GET", "a") == b"1"  # reads go on
    assert c.cmd("MULTI") == St("OK")
    assert c.cmd("SET", "a", "3") == Err(misconf)
    assert c.cmd("EXEC") == Err("EXECABORT Transaction discarded because of previous errors.")
    assert c.cmd("CONFIG", "SET", "stop-writes-on-bgsave-error", "no") == St("OK")
    assert c.cmd("SET", "a", "4") == St("OK")
    assert c.cmd("CONFIG", "SET", "stop-writes-on-bgsave-error", "yes") == St("OK")
    assert c.cmd("SET", "a", "5") == Err(misconf)
    assert c.cmd("CONFIG", "SET", "save", "") == St("OK")  # no save points: writes go on
    assert c.cmd("SET", "a", "6") == St("OK")
    assert c.cmd("PING") == St("PONG")
    c.close()
    k.kill9()


def test_enable_debug_command(kvd_factory):
    """Redis's setting and text: no refuses DEBUG (also queued in MULTI), local allows it
    from loopback only; kvd's default is yes (Redis's: no)."""
    refused = Err("ERR DEBUG command not allowed. If the enable-debug-command option is set "
                  "to \"local\", you can run it from a local connection, otherwise you need to "
                  "set this option in the configuration file, and then restart the server.")
    with kvd_factory().client() as c:
        assert c.cmd("CONFIG", "GET", "enable-debug-command") == [b"enable-debug-command",
                                                                  b"yes"]
        assert c.cmd("DEBUG", "SLEEP", "0") == St("OK")
    with kvd_factory(args=["--enable-debug-command", "no",
                           "--enable-protected-configs", "no"]).client() as c:
        assert c.cmd("DEBUG", "SLEEP", "0") == refused
        assert c.cmd("MULTI") == St("OK")
        assert c.cmd("DEBUG", "SLEEP", "0") == refused
        assert c.cmd("EXEC") == Err("EXECABORT Transaction discarded because of previous "
                                    "errors.")
        r = c.cmd("CONFIG", "SET", "enable-debug-command", "yes")
        assert isinstance(r, Err) and "can't set immutable config" in r.s
    ip = outside_address()
    k = kvd_factory(args=["--enable-debug-command", "local", "--protected-mode", "no"] +
                    (["--bind", "127.0.0.1 %s" % ip] if ip else []))
    with k.client() as c:
        assert c.cmd("DEBUG", "SLEEP", "0") == St("OK")
    if ip is not None:
        with Client(k.port, host=ip) as c:
            assert c.cmd("DEBUG", "SLEEP", "0") == refused


def test_supervised_systemd(tmp_path):
    """supervised systemd (as Debian's redis-server.service runs it: Type=notify): the
    notify protocol on $NOTIFY_SOCKET, READY=1 once clients are served, STOPPING=1 at a
    stop; auto finds it by the variable; no sends nothing."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    try:
        for mode in ("systemd", "auto"):
            k = Kvd(args=["--supervised", mode], env={"NOTIFY_SOCKET": path})
            got = []
            while b"READY=1\n" not in got:
                got.append(sock.recv(4096))
            assert got[-2:] == [b"STATUS=Ready to accept connections\n", b"READY=1\n"]
            with k.client() as c:
                assert c.cmd("CONFIG", "GET", "supervised") == [b"supervised", mode.encode()]
            k.stop()
            assert sock.recv(4096) == b"STOPPING=1\n"
        k = Kvd(args=["--supervised", "no"], env={"NOTIFY_SOCKET": path})
        k.stop()
        sock.settimeout(0.5)
        with pytest.raises(socket.timeout):
            sock.recv(4096)
    finally:
        sock.close()


def test_unixsocket(tmp_path):
    """unixsocket and unixsocketperm (octal, as redis.conf writes it): clients connect
    through it (CLIENT LIST: addr=/unixsocket:0, flag U, as Redis), a file left at the
    path is replaced at start and the socket removed at exit."""
    import stat
    path = tmp_path / "kvd.sock"
    path.write_text("stale")
    k = Kvd(args=["--unixsocket", str(path), "--unixsocketperm", "700"])
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(encode("PING") + encode("CLIENT", "INFO") +
                  encode("CONFIG", "GET", "unixsocketperm"))
        data = b""
        while data.count(b"\r\n") < 1 + 2 + 5:
            data += s.recv(65536)
        s.close()
        assert data.startswith(b"+PONG\r\n")
        assert b"addr=/unixsocket:0 laddr=/unixsocket:0 " in data and b" flags=U " in data
        assert data.endswith(b"$14\r\nunixsocketperm\r\n$3\r\n700\r\n")
        with k.client() as c:  # TCP as well
            assert c.cmd("PING") == St("PONG")
    finally:
        k.stop()
    assert not path.exists()
