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
import re
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
                 ("CONFIG", "GET", "appenddirname"),
                 # replication, defrag, TLS, cluster settings: accepted, no effect
                 ("CONFIG", "GET", "slave-read-only"),
                 ("CONFIG", "SET", "slave-read-only", "no"),
                 ("CONFIG", "GET", "replica-read-only"),
                 ("CONFIG", "SET", "replica-read-only", "yes"),
                 ("CONFIG", "SET", "min-slaves-to-write", "3"),
                 ("CONFIG", "GET", "min-replicas-to-write"),
                 ("CONFIG", "SET", "min-replicas-to-write", "0"),
                 ("CONFIG", "SET", "repl-backlog-size", "2mb"),
                 ("CONFIG", "GET", "repl-backlog-size"),
                 ("CONFIG", "SET", "repl-backlog-size", "1mb"),
                 ("CONFIG", "SET", "propagation-error-behavior", "nope"),
                 ("CONFIG", "GET", "propagation-error-behavior"),
                 ("CONFIG", "SET", "io-threads", "2"),
                 ("CONFIG", "GET", "io-threads"),
                 ("CONFIG", "SET", "active-defrag-cycle-max", "100"),
                 ("CONFIG", "SET", "shutdown-on-sigterm", "save nosave"),
                 ("CONFIG", "SET", "shutdown-on-sigterm", "sometimes"),
                 ("CONFIG", "SET", "shutdown-on-sigterm", "nosave force"),
                 ("CONFIG", "GET", "shutdown-on-sigterm"),
                 ("CONFIG", "SET", "shutdown-on-sigterm", "default"),
                 ("CONFIG", "GET", "masterauth"),
                 ("CONFIG", "SET", "maxmemory-clients", "200%"),
                 ("CONFIG", "SET", "maxmemory-clients", "10%"),
                 ("CONFIG", "GET", "maxmemory-clients"),
                 ("CONFIG", "SET", "maxmemory-clients", "2mb"),
                 ("CONFIG", "GET", "maxmemory-clients"),
                 ("CONFIG", "SET", "maxmemory-clients", "x%"),
                 ("CONFIG", "SET", "maxmemory-clients", "0"),
                 # several at once, one bad: none is set (Redis's rollback)
                 ("CONFIG", "SET", "maxmemory", "10000001", "maxmemory-clients", "200%",
                  "client-query-buffer-limit", "invalid"),
                 ("CONFIG", "GET", "maxmemory"),
                 ("CONFIG", "SET", "maxmemory", "10000001", "repl-backlog-size", "10000002",
                  "save", "3000 5"),
                 ("CONFIG", "GET", "repl-backlog-size"),
                 ("CONFIG", "SET", "maxmemory", "0", "repl-backlog-size", "1mb", "save", "")]:
        pair.same(*args)
    lazy = [dict(zip(*[iter(c.cmd("CONFIG", "GET", "lazyfree-lazy-*"))] * 2))
            for c in (pair.k, pair.r)]
    assert lazy[0] == lazy[1] and len(lazy[0]) == 5
    for pattern in ["active-defrag-*", "tls-*", "cluster-*", "shutdown-*", "*slave*"]:
        got = [dict(zip(*[iter(c.cmd("CONFIG", "GET", pattern))] * 2)) for c in (pair.k, pair.r)]
        assert got[0] == got[1], pattern
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


def test_daemonize_without_pidfile_writes_the_default_one(tmp_path):
    """As Redis (/var/run/redis.pid): a daemon writes /var/run/kvd.pid when no pidfile is
    set, CONFIG GET shows it, and a clean exit removes it."""
    default = "/var/run/kvd.pid"
    if os.path.exists(default) or not os.access(os.path.dirname(default), os.W_OK):
        pytest.skip("%s exists already or its directory is not writable here" % default)
    log, data = tmp_path / "kvd.log", tmp_path / "data"
    port = free_port()
    p = subprocess.run([kvd_path(), "--daemonize", "yes", "--logfile", str(log), "--port",
                        str(port), "--dir", str(data), "--threads", "1"],
                       timeout=30, capture_output=True)
    assert p.returncode == 0, p.stderr
    wait_until(lambda: os.path.exists(default) and open(default).read().endswith("\n"), 10,
               what="the default pidfile")
    daemon = int(open(default).read())
    try:
        wait_until(lambda: "kvd ready" in log.read_text(), 30, what="ready in the logfile")
        with Client(port) as c:
            assert c.cmd("CONFIG", "GET", "pidfile") == [b"pidfile", default.encode()]
    finally:
        os.kill(daemon, signal.SIGTERM)
    wait_until(lambda: not os.path.exists(default), 30, what="pidfile removed at exit")


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
                assert b"process_supervised:systemd\r\n" in c.cmd("INFO", "server")
            k.stop()
            assert sock.recv(4096) == b"STOPPING=1\n"
        k = Kvd(args=["--supervised", "no"], env={"NOTIFY_SOCKET": path})
        with k.client() as c:
            assert b"process_supervised:no\r\n" in c.cmd("INFO", "server")
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


RENAMES = [("CONFIG", "cfg-secret"), ("FLUSHALL", ""), ("get", "fetch")]


def test_rename_command(tmp_path, redis_factory):
    """rename-command as Redis's: lines of the config file and --rename-command flags;
    the new name works (also in MULTI and in scripts), the old one is an unknown command,
    "" disables; COMMAND LIST and INFO commandstats keep the commands' own names; ACL
    rules name commands by their own names. Replies compared with Redis 7 renaming the
    same commands; CONFIG REWRITE keeps the lines."""
    conf = tmp_path / "kvd.conf"
    conf.write_text("".join('rename-command %s "%s"\n' % r for r in RENAMES))
    k = Kvd(args=["--config", str(conf), "--rename-command", "SET", "put"])
    rargs = []
    for old, new in RENAMES + [("SET", "put")]:
        rargs += ["--rename-command", old, new]
    r = redis_factory(rargs)
    try:
        with k.client() as kc, r.client() as rc:
            def same(*args):
                kc.send(encode(*args))
                rc.send(encode(*args))
                kv, kraw = kc.read_both()
                _, rraw = rc.read_both()
                assert kraw == rraw, (args, kraw, rraw)
                return kv
            assert same("CONFIG", "GET", "maxclients") == \
                Err("ERR unknown command 'CONFIG', with args beginning with: 'GET' 'maxclients' ")
            same("cfg-secret", "GET", "maxclients")
            same("CFG-SECRET", "SET", "maxclients", "10000")
            assert isinstance(same("FLUSHALL"), Err)
            assert isinstance(same("SET", "a", "1"), Err)
            same("PUT", "a", "1")
            assert same("fetch", "a") == b"1"
            assert isinstance(same("GET", "a"), Err)
            same("MULTI")
            same("put", "b", "2")
            same("get", "b")  # unknown: the transaction is discarded at EXEC
            same("EXEC")
            same("MULTI")
            same("put", "b", "2")
            same("fetch", "b")
            same("EXEC")
            same("EVAL", "return redis.call('fetch', KEYS[1])", "1", "a")
            same("EVAL", "return redis.pcall('get', KEYS[1])", "1", "a")
            same("COMMAND", "INFO", "get")
            assert same("COMMAND", "DOCS", "fetch")[0] == b"get"
            for c in (kc, rc):
                names = c.cmd("COMMAND", "LIST")
                assert b"get" in names and b"config" in names and b"set" in names
                assert b"fetch" not in names and b"flushall" not in names
                stats = c.cmd("INFO", "commandstats").decode()
                assert "cmdstat_get:calls=" in stats and "cmdstat_set:calls=" in stats
                assert "fetch" not in stats and "put" not in stats
            assert kc.cmd("COMMAND", "COUNT") == \
                len([n for n in kc.cmd("COMMAND", "LIST") if b"|" not in n])
            # ACL rules: the commands' own names (Redis's orig_commands)
            same("ACL", "SETUSER", "u1", "on", "nopass", "+@all", "-get")
            same("ACL", "SETUSER", "u2", "on", "nopass", "+fetch")
            same("AUTH", "u1", "x")
            same("fetch", "a")
            same("PUT", "a", "2")
        with k.client() as kc:  # CONFIG REWRITE keeps the directive's lines
            assert kc.cmd("cfg-secret", "REWRITE") == St("OK")
    finally:
        k.stop()
        r.stop()
    text = conf.read_text()
    assert 'rename-command get "fetch"' in text and 'rename-command FLUSHALL ""' in text
    k = Kvd(args=["--config", str(conf)])
    try:
        with k.client() as kc:
            assert kc.cmd("fetch", "nosuch") is None
            assert isinstance(kc.cmd("GET", "nosuch"), Err)
            assert kc.cmd("SET", "a", "1") == St("OK")  # (not renamed in the file)
    finally:
        k.stop()


@pytest.mark.parametrize("line,why", [
    ("rename-command nosuch x", "No such command in rename-command"),
    ("rename-command get set", "Target command name already exists"),
    ("rename-command get", "bad directive or wrong number of arguments"),
    ("rename-command get a b", "bad directive or wrong number of arguments"),
    ("rename-command config|get x", "No such command in rename-command"),
    # found by the name it has now: renamed again from it, no longer by its own
    ("rename-command get x\nrename-command x y\nrename-command get z",
     "No such command in rename-command"),
])
def test_rename_command_refused(tmp_path, line, why):
    conf = tmp_path / "kvd.conf"
    conf.write_text(line + "\n")
    k = Kvd(args=["--config", str(conf)], ready=False)
    assert k.proc.wait(timeout=30) != 0
    assert why in k.stderr(), k.stderr()
    k.stop(check=False)


def test_flags_take_several_words():
    """As redis-server: a flag's value runs up to the next --flag ("--save 900 1"), and a
    --save with no value means save ""."""
    for args, save, maxclients in [
            (["--save", "900", "1", "300", "10", "--maxclients", "77"], b"900 1 300 10", b"77"),
            (["--save", "--maxclients", "78"], b"", b"78")]:
        k = Kvd(args=args)
        try:
            with k.client() as c:
                assert c.cmd("CONFIG", "GET", "save") == [b"save", save]
                assert c.cmd("CONFIG", "GET", "maxclients") == [b"maxclients", maxclients]
        finally:
            k.stop()


def test_renamed_commands_keep_secrets_out_of_the_slowlog():
    k = Kvd(args=["--rename-command", "ACL", "myacl", "--rename-command", "CONFIG", "zz",
                  "--slowlog-log-slower-than", "0"])
    try:
        with k.client() as c:
            assert c.cmd("myacl", "SETUSER", "u", "on", ">secretpw") == St("OK")
            assert c.cmd("zz", "SET", "requirepass", "sekrit2") == St("OK")
            assert c.cmd("AUTH", "sekrit2") == St("OK")
            logged = [e[3] for e in c.cmd("SLOWLOG", "GET", "10")]
            assert [b"zz", b"SET", b"requirepass", b"(redacted)"] in logged
            assert [b"myacl", b"SETUSER", b"(redacted)", b"(redacted)", b"(redacted)"] in logged
            assert b"secretpw" not in repr(logged).encode()
    finally:
        k.stop()


def test_info_paths_are_absolute(tmp_path, monkeypatch):
    """INFO server's executable and config_file are absolute paths, as Redis's."""
    (tmp_path / "k.conf").write_text("maxclients 99\n")
    monkeypatch.chdir(tmp_path)
    k = Kvd(args=["--config", "k.conf"])
    try:
        with k.client() as c:
            info = dict(line.split(":", 1) for line in
                        c.cmd("INFO", "server").decode().splitlines() if ":" in line)
            assert info["config_file"] == str((tmp_path / "k.conf").resolve())
            assert info["executable"] == os.path.realpath(k.bin)
    finally:
        k.stop()


def test_syslog(tmp_path):
    """syslog-enabled / -ident / -facility: the log's lines also go to syslog, without the
    time stamp, with the facility and priority as Redis's (notice: LOG_NOTICE). Read from
    a socket the test puts at /dev/log when the machine has none."""
    if os.path.exists("/dev/log"):
        pytest.skip("/dev/log belongs to this machine's syslog daemon: not captured")
    if os.geteuid() != 0:
        pytest.skip("creating /dev/log needs root")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("/dev/log")
    sock.settimeout(30)
    try:
        k = Kvd(args=["--syslog-enabled", "yes", "--syslog-ident", "kvtest",
                      "--syslog-facility", "local3"])
        try:
            with k.client() as c:
                assert c.cmd("CONFIG", "GET", "syslog-*") == [
                    b"syslog-enabled", b"yes", b"syslog-ident", b"kvtest",
                    b"syslog-facility", b"local3"]
                r = c.cmd("CONFIG", "SET", "syslog-ident", "x")
                assert isinstance(r, Err) and "immutable" in r.s
            msgs = []
            while not any(b"kvd ready" in m for m in msgs):
                msgs.append(sock.recv(65536))
            ready = [m for m in msgs if b"kvd ready" in m][0]
            # <local3 * 8 + notice>, then the time syslog(3) adds, "kvtest[pid]: ", the line
            assert ready.startswith(b"<%d>" % (19 * 8 + 5)), ready
            assert (b"kvtest[%d]: notice main kvd ready " % k.pid) in ready, ready
        finally:
            k.stop()
    finally:
        sock.close()
        os.unlink("/dev/log")


def test_include(tmp_path):
    """include FILE and include PATTERN (a conf.d directory, empty or not), read in place,
    with settings and directives alike, as Redis's."""
    d = tmp_path / "conf.d"
    d.mkdir()
    (tmp_path / "empty.d").mkdir()
    (d / "10-limits.conf").write_text("maxclients 55\nrename-command get fetch\n")
    (d / "20-more.conf").write_text("maxclients 56\n")
    main = tmp_path / "kvd.conf"
    main.write_text("maxclients 10\ninclude %s/*.conf\ninclude %s/*.conf\n"
                    "timeout 7\n" % (d, tmp_path / "empty.d"))
    k = Kvd(args=["--config", str(main)])
    try:
        with k.client() as c:
            assert c.cmd("CONFIG", "GET", "maxclients") == [b"maxclients", b"56"]
            assert c.cmd("CONFIG", "GET", "timeout") == [b"timeout", b"7"]
            assert c.cmd("fetch", "x") is None
    finally:
        k.stop()
    main.write_text("include %s\n" % (tmp_path / "nosuch.conf"))
    k = Kvd(args=["--config", str(main)], ready=False)
    assert k.proc.wait(timeout=30) != 0
    assert "nosuch.conf" in k.stderr()
    k.stop(check=False)


def test_redis_conf_of_the_redis_test_suite_loads(tmp_path):
    """The lines of Redis's own tests/assets/default.conf and other common ones: 'single'
    quotes (logfile ''), the older slave-* names, settings of features kvd has not (TLS
    off, Redis Cluster off, replication, defragmentation, I/O threads) at their values."""
    conf = tmp_path / "redis.conf"
    conf.write_text("always-show-logo yes\nnotify-keyspace-events KEA\ndaemonize no\n"
                    "timeout 0\nloglevel verbose\nlogfile ''\ndatabases 16\n"
                    "latency-monitor-threshold 1\nrepl-diskless-sync-delay 0\nsave 900 1\n"
                    "rdbcompression yes\ndbfilename dump.rdb\nslave-serve-stale-data yes\n"
                    "appendonly no\nappendfsync everysec\nno-appendfsync-on-rewrite no\n"
                    "activerehashing yes\nenable-protected-configs yes\n"
                    "enable-debug-command yes\nenable-module-command yes\n"
                    "propagation-error-behavior panic\nio-threads 4\nrepl-backlog-size 64mb\n"
                    "masterauth 'se cret'\ntls-port 0\ncluster-enabled no\nactivedefrag yes\n"
                    "shutdown-on-sigterm nosave\n")
    k = Kvd(args=["--config", str(conf)])
    try:
        with k.client() as c:
            got = dict(zip(*[iter(c.cmd("CONFIG", "GET", "*"))] * 2))
            assert got[b"logfile"] == b"" and got[b"masterauth"] == b"se cret"
            assert got[b"notify-keyspace-events"] == b"AKE"
            assert got[b"io-threads"] == b"4" and got[b"repl-backlog-size"] == b"67108864"
            assert got[b"replica-serve-stale-data"] == b"yes"
            assert got[b"shutdown-on-sigterm"] == b"nosave"
            assert c.cmd("PING") == St("PONG")
        assert "kvd ready" in k.stderr()  # (logfile '': the log stays on standard error)
    finally:
        k.stop()
    for line, why in [("tls-port 6380", "kvd has no TLS"),
                      ("cluster-enabled yes", "no Redis Cluster mode")]:
        conf.write_text(line + "\n")
        k = Kvd(args=["--config", str(conf)], ready=False)
        assert k.proc.wait(timeout=30) != 0
        assert why in k.stderr(), k.stderr()
        k.stop(check=False)


def get_over_unix(path, key):
    """The raw reply to GET key from a fresh connection to the Unix socket at path."""
    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    u.settimeout(10)
    try:
        u.connect(path)
        u.sendall(encode("GET", key))
        return u.recv(64)
    finally:
        u.close()


def move_to_a_free_port(c):
    """CONFIG SET port to a port free a moment ago (another test's server may take it in
    between: then the next one). Returns the port kvd listens on now."""
    for _ in range(5):
        port = free_port()
        r = c.cmd("CONFIG", "SET", "port", str(port))
        if r == St("OK"):
            return port
        assert r == Err("ERR CONFIG SET failed (possibly related to argument 'port') - "
                        "Unable to listen on this port"), r
    raise AssertionError("no free port taken in 5 tries")


def test_config_set_port_and_bind(tmp_path):
    """CONFIG SET port / bind at run time, as Redis's: every shard listens anew (clients
    already connected stay), the Unix socket stays; a port or address that cannot be had
    fails the whole CONFIG SET with Redis's texts and changes nothing."""
    sock = str(tmp_path / "kvd.sock")
    k = Kvd(args=["--unixsocket", sock])
    try:
        c = k.client()
        assert c.cmd("SET", "a", "1") == St("OK")
        new_port = move_to_a_free_port(c)
        assert c.cmd("CONFIG", "GET", "port") == [b"port", str(new_port).encode()]
        assert ("tcp_port:%d\r\n" % new_port).encode() in c.cmd("INFO", "server")
        assert c.cmd("GET", "a") == b"1"  # (this connection stays)
        wait_until(lambda: not ping(k.port), 10, what="the old port closed")
        clients = [Client(new_port) for _ in range(8)]  # (spread over the shards)
        for cl in clients:
            assert cl.cmd("GET", "a") == b"1"
            cl.close()
        assert get_over_unix(sock, "a") == b"$1\r\n1\r\n"
        # a port taken by another process: nothing changes
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        r = c.cmd("CONFIG", "SET", "maxmemory", "10000001", "port", str(taken.getsockname()[1]))
        taken.close()
        assert r == Err("ERR CONFIG SET failed (possibly related to argument 'port') - "
                        "Unable to listen on this port")
        assert c.cmd("CONFIG", "GET", "maxmemory") == [b"maxmemory", b"0"]
        assert c.cmd("CONFIG", "GET", "port") == [b"port", str(new_port).encode()]
        r = c.cmd("CONFIG", "SET", "bind", "192.0.2.77")  # (not on this host)
        assert r == Err("ERR CONFIG SET failed (possibly related to argument 'bind') - "
                        "Failed to bind to specified addresses.")
        assert c.cmd("CONFIG", "GET", "bind") == [b"bind", b"127.0.0.1"]
        assert ping(new_port)
        for _ in range(3):  # the Unix socket's accept is moved each time, never doubled
            new_port = move_to_a_free_port(c)
            wait_until(lambda: ping(new_port), 10, what="the new port")
            for _ in range(4):
                assert get_over_unix(sock, "a") == b"$1\r\n1\r\n"
        if ipv6_loopback():
            assert c.cmd("CONFIG", "SET", "bind", "::1 127.0.0.1") == St("OK")
            wait_until(lambda: ping(new_port), 10, what="IPv4 again")
            with Client(new_port, host="::1") as c6:
                assert c6.cmd("GET", "a") == b"1"
        c.close()
    finally:
        k.stop()


def test_logfile_moved_away_is_made_anew(tmp_path):
    """As Redis opens its log file for each line: after logrotate's move (no signal, no
    copytruncate) the next line goes to a new file at the configured path."""
    log = tmp_path / "kvd.log"
    k = Kvd(args=["--logfile", str(log), "--appendonly", "no"], ready=False)
    try:
        wait_until(lambda: log.exists() and "kvd ready" in log.read_text(), 30,
                   what="ready in the logfile")
        k.port = int(re.search(r"kvd ready .*port=(\d+)", log.read_text()).group(1))
        os.rename(log, tmp_path / "kvd.log.1")
        with Client(k.port) as c:
            assert c.cmd("SAVE") == St("OK")
        wait_until(lambda: log.exists() and "dump written" in log.read_text(), 10,
                   what="the next line in a new file")
        assert "dump written" not in (tmp_path / "kvd.log.1").read_text()
        assert "kvd ready" not in log.read_text()
    finally:
        k.stop(check=False)
    assert "kvd stopped" in log.read_text()
