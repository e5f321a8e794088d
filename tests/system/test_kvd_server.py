"""Server commands of kvd: INFO (sections and the sanity of their values), CONFIG GET/SET
(against Redis 7 where the setting exists in both, kvd-only for kvd's own rules), SLOWLOG
GET/LEN/RESET, TIME, and CONFIG SET changing behaviour at runtime.
"""
import random
import re
import threading
import time

import pytest

from conftest import (ConnClosed, Err, RedisServer, St, encode, info_field, need_redis,
                      rss_kib, wait_until)


def info(c, *sections):
    """INFO parsed into {section: {field: value}} (values as str)."""
    text = c.cmd("INFO", *sections)
    if not isinstance(text, bytes):
        text = text.data
    out = {}
    cur = None
    for line in text.decode().split("\r\n"):
        if line.startswith("# "):
            cur = out.setdefault(line[2:].lower(), {})
        elif line:
            assert cur is not None, text
            k, v = line.split(":", 1)
            cur[k] = v
    return out


def test_info_sections_exist_with_sane_values(kvd, kc):
    i = info(kc)
    for s in ("server", "clients", "memory", "stats", "keyspace"):
        assert s in i, (s, list(i))
    assert "commandstats" not in i  # not a default section, as in Redis
    srv = i["server"]
    assert srv["redis_version"].startswith("7.")
    assert int(srv["tcp_port"]) == kvd.port
    assert int(srv["process_id"]) == kvd.pid
    assert 0 <= int(srv["uptime_in_seconds"]) < 3600
    assert int(i["clients"]["connected_clients"]) >= 1
    assert int(i["clients"]["maxclients"]) == 10000
    mem = wait_until(lambda: (lambda m: int(m["used_memory"]) > 0 and m)(info(kc)["memory"]),
                     5, what="used_memory > 0")
    rss = int(mem["used_memory_rss"])
    assert rss >= rss_kib(kvd.pid) * 1024 * 0.5, (rss, rss_kib(kvd.pid))
    assert int(i["stats"]["total_commands_processed"]) > 0
    everything = info(kc, "everything")
    for s in ("server", "clients", "memory", "stats", "keyspace", "commandstats"):
        assert s in everything, s
    assert set(info(kc, "all")) >= {"server", "commandstats"}
    assert list(info(kc, "server", "clients")) == ["server", "clients"]


def test_info_unknown_section_matches_redis(pair):
    pair.same("INFO", "nosuchsection")
    pair.same("INFO", "keyspace")  # both empty: no keys


def test_info_memory_right_after_start(kvd_factory):
    k = kvd_factory(args=["--hz", "1"])
    with k.client() as c:
        assert c.cmd("SET", "a", "1") == St("OK")
        i = info(c)
        assert int(i["memory"]["used_memory"]) > 0
        assert i["keyspace"]["db0"].startswith("keys=1,")


def test_info_used_memory_rss_is_current(kvd, kc):
    rss = int(info(kc, "memory")["memory"]["used_memory_rss"])
    cur = rss_kib(kvd.pid) * 1024
    assert 0.5 < rss / cur < 2, (rss, cur)


def test_info_clients_counts_connections_on_every_thread(kvd, kc):
    base = int(info(kc)["clients"]["connected_clients"])
    extra = [kvd.client() for _ in range(10)]
    try:
        for c in extra:
            assert c.cmd("PING") == St("PONG")
        wait_until(lambda: int(info(kc)["clients"]["connected_clients"]) == base + 10, 10,
                   what="connected_clients to grow by 10")
    finally:
        for c in extra:
            c.close()
    wait_until(lambda: int(info(kc)["clients"]["connected_clients"]) == base, 10,
               what="connected_clients to drop back")


def test_info_stats_and_commandstats_count_every_thread(kvd, kc):
    before = info(kc, "everything")
    conns = int(before["stats"]["total_connections_received"])
    hits = int(before["stats"]["keyspace_hits"])
    misses = int(before["stats"]["keyspace_misses"])
    calls = int(before.get("commandstats", {}).get("cmdstat_set", "calls=0,").split(",")[0][6:])
    for i in range(100):
        assert kc.cmd("SET", "counter:%d" % i, "1") == St("OK")
    for i in range(100):
        assert kc.cmd("GET", "counter:%d" % i) == b"1"
        assert kc.cmd("GET", "nokey:%d" % i) is None
    with kvd.client() as other:
        other.cmd("PING")
    after = info(kc, "everything")
    assert int(after["stats"]["total_connections_received"]) == conns + 1
    assert int(after["stats"]["keyspace_hits"]) - hits == 100
    assert int(after["stats"]["keyspace_misses"]) - misses == 100
    st = dict(f.split("=") for f in after["commandstats"]["cmdstat_set"].split(","))
    assert int(st["calls"]) - calls == 100
    assert float(st["usec_per_call"]) >= 0


def test_info_keyspace_eventually_matches_dbsize(kc):
    for i in range(300):
        kc.cmd("SET", "ks:%d" % i, "v")
    want = "keys=300,"
    wait_until(lambda: info(kc, "keyspace").get("keyspace", {}).get("db0", "").startswith(want),
               5, what="INFO keyspace db0 to show keys=300")
    assert kc.cmd("DBSIZE") == 300


def test_info_keyspace_is_exact_immediately(kvd_factory):
    k = kvd_factory(args=["--hz", "1"])
    with k.client() as c:
        for i in range(10):
            c.cmd("SET", "key%d" % i, "v")
        time.sleep(1.5)
        for i in range(10, 20):
            c.cmd("SET", "key%d" % i, "v")
        assert info(c, "keyspace")["keyspace"]["db0"].startswith("keys=20,")


def test_keyspace_hits_misses_count_reads_only(pair):
    for c in (pair.k, pair.r):
        i0 = info(c, "stats")["stats"]
        for n in range(10):
            c.cmd("INCR", "c%d" % n)
            c.cmd("APPEND", "a%d" % n, "x")
        i1 = info(c, "stats")["stats"]
        assert (int(i1["keyspace_hits"]) - int(i0["keyspace_hits"]),
                int(i1["keyspace_misses"]) - int(i0["keyspace_misses"])) == (0, 0)


def test_info_keyspace_counts_expires(kc):
    for i in range(10):
        kc.cmd("SET", "key%d" % i, "v", "EX", "1000")
    time.sleep(0.5)
    db0 = dict(f.split("=") for f in info(kc, "keyspace")["keyspace"]["db0"].split(","))
    assert db0["keys"] == "10" and db0["expires"] == "10"
    assert 900000 < int(db0["avg_ttl"]) <= 1000000
    for i in range(5):
        kc.cmd("PERSIST", "key%d" % i)
    kc.cmd("SET", "key5", "v", "PX", "100")  # expires: counted until removed
    kc.cmd("DEL", "key6")
    kc.cmd("SET", "plain", "v")
    time.sleep(0.5)
    assert kc.cmd("GET", "key5") is None
    time.sleep(0.3)
    db0 = dict(f.split("=") for f in info(kc, "keyspace")["keyspace"]["db0"].split(","))
    assert (db0["keys"], db0["expires"]) == ("9", "3")
    assert 900000 < int(db0["avg_ttl"]) <= 1000000


def test_config_resetstat_resets_counters(pair):
    for c in (pair.k, pair.r):
        for i in range(20):
            c.cmd("SET", "k%d" % i, "v")
        assert c.cmd("CONFIG", "RESETSTAT") == St("OK")
        i = info(c, "stats", "commandstats")
        assert int(i["stats"]["total_commands_processed"]) <= 2, i["stats"]
        assert "cmdstat_set" not in i.get("commandstats", {}), i


CONFIG_SCENARIOS = {
    "replicaof_and_hidden_configs_as_redis": [
        ("CONFIG", "GET", "replicaof"), ("CONFIG", "GET", "slaveof"),
        ("CONFIG", "GET", "maxmemory-clients"), ("CONFIG", "GET", "key-load-delay"),
        ("CONFIG", "GET", "*load-delay"), ("CONFIG", "GET", "rdb-key-save-delay")],
    "encodings_of_other_types_read_as_redis_s": [
        ("CONFIG", "GET", "hash-max-listpack-entries"), ("CONFIG", "GET", "zset-max-ziplist-value"),
        ("CONFIG", "GET", "list-max-listpack-size"), ("CONFIG", "GET", "stream-node-max-bytes")],
    "save_off_as_clients_set_it": [
        ("CONFIG", "SET", "save", ""), ("CONFIG", "SET", "SAVE", "", "timeout", "0"),
        ("CONFIG", "SET", "save", "", "save", ""), ("CONFIG", "GET", "save")],
    "get_set_runtime_settings": [
        ("CONFIG", "GET", "maxclients"), ("CONFIG", "GET", "timeout"),
        ("CONFIG", "GET", "slowlog-max-len"),
        ("CONFIG", "GET", "slowlog-log-slower-than"), ("CONFIG", "GET", "loglevel"),
        ("CONFIG", "GET", "proto-max-bulk-len"), ("CONFIG", "GET", "client-query-buffer-limit"),
        ("CONFIG", "GET", "nosuchsetting"), ("CONFIG", "GET", "maxclient?"),
        ("CONFIG", "SET", "maxclients", "100"), ("CONFIG", "GET", "maxclients"),
        ("CONFIG", "SET", "timeout", "5"), ("CONFIG", "GET", "timeout"),
        ("CONFIG", "SET", "timeout", "0"), ("CONFIG", "SET", "slowlog-max-len", "10"),
        ("CONFIG", "SET", "slowlog-log-slower-than", "-1"), ("CONFIG", "SET", "loglevel", "warning"),
        ("CONFIG", "GET", "loglevel"), ("CONFIG", "SET", "loglevel", "notice"),
        ("CONFIG", "SET", "proto-max-bulk-len", "2mb"), ("CONFIG", "GET", "proto-max-bulk-len"),
        ("CONFIG", "SET", "proto-max-bulk-len", "512mb"),
        ("CONFIG", "SET", "client-query-buffer-limit", "2mb"),
        ("CONFIG", "GET", "client-query-buffer-limit"),
        ("CONFIG", "SET", "client-query-buffer-limit", "1gb"),
        ("CONFIG", "SET", "maxclients", "10", "timeout", "0"), ("CONFIG", "GET", "maxclients"),
        ("CONFIG", "SET", "maxclients", "10000"), ("CONFIG", "SET", "slowlog-max-len", "128"),
        ("CONFIG", "SET", "slowlog-log-slower-than", "10000"),
    ],
    "config_errors": [
        ("CONFIG", "SET", "nosuch", "1"), ("CONFIG", "SET", "maxclients", "x"),
        ("CONFIG", "SET", "maxclients", "10", "nosuch", "1"), ("CONFIG", "GET", "maxclients"),
        ("CONFIG", "SET", "loglevel", "foo"), ("CONFIG", "SET", "timeout", "-1"),
        ("CONFIG", "SET", "timeout", "1.5"), ("CONFIG", "SET", "maxclients"),
        ("CONFIG", "GET"), ("CONFIG",),
        ("CONFIG", "SET", "proto-max-bulk-len", "abc"),
    ],
    "config_set_odd_arguments": [
        ("CONFIG", "SET", "maxclients", "1", "timeout"), ("CONFIG", "GET", "maxclients"),
    ],
    "config_get_echoes_the_name_asked": [
        ("CONFIG", "GET", "MAXCLIENTS"), ("CONFIG", "GET", "MaxClients"),
    ],
    "config_set_duplicate_parameter": [
        ("CONFIG", "SET", "maxclients", "10", "maxclients", "20"), ("CONFIG", "GET", "maxclients"),
        ("CONFIG", "SET", "maxclients", "10000"),
    ],
}

CONFIG_XFAIL = {
}


def config_cases():
    for name, cmds in CONFIG_SCENARIOS.items():
        marks = []
        if name in CONFIG_XFAIL:
            marks.append(pytest.mark.xfail(strict=True, reason=CONFIG_XFAIL[name]))
        yield pytest.param(cmds, id=name, marks=marks)


@pytest.mark.parametrize("cmds", config_cases())
def test_config_scenario_matches_redis(pair, cmds):
    try:
        for c in cmds:
            pair.same(*c)
    finally:
        for c in (pair.k, pair.r):
            c.cmd("CONFIG", "SET", "maxclients", "10000")
            c.cmd("CONFIG", "SET", "timeout", "0")
            c.cmd("CONFIG", "SET", "slowlog-log-slower-than", "10000")
            c.cmd("CONFIG", "SET", "slowlog-max-len", "128")


def test_config_get_several_names(pair):
    for c in (pair.k, pair.r):
        flat = c.cmd("CONFIG", "GET", "timeout", "maxclients", "nosuch", "slowlog-max-len")
        assert dict(zip(flat[0::2], flat[1::2])) == {
            b"timeout": b"0", b"maxclients": b"10000", b"slowlog-max-len": b"128"}


def test_config_get_glob_lists_kvd_settings(kc):
    flat = kc.cmd("CONFIG", "GET", "*")
    names = flat[0::2]
    assert len(names) == len(set(names)), [n for n in names if names.count(n) > 1]  # once each
    got = dict(zip(flat[0::2], flat[1::2]))
    assert kc.cmd("CONFIG", "GET", "appendonly") == [b"appendonly", b"yes"]
    for name in (b"maxclients", b"timeout", b"port", b"threads", b"dir", b"bind",
                 b"slowlog-log-slower-than", b"client-output-buffer-limit", b"proto-max-bulk-len"):
        assert name in got, name
    assert got[b"threads"] == b"2"
    assert got[b"maxclients"] == b"10000"
    assert got[b"bind"] == b"127.0.0.1"


# (port and bind change at run time, as Redis's: test_kvd_redisconf)
@pytest.mark.parametrize("name,value", [("threads", "4"), ("dir", "/tmp"), ("recv-buffers", "64"),
                                        ("databases", "8"), ("unixsocket", "/tmp/x.sock")])
def test_config_set_immutable_setting_is_refused(kc, name, value):
    before = kc.cmd("CONFIG", "GET", name)
    assert kc.cmd("CONFIG", "SET", name, value) == Err(
        "ERR CONFIG SET failed (possibly related to argument '%s') - can't set immutable "
        "config" % name)
    assert kc.cmd("CONFIG", "GET", name) == before


def test_config_set_of_a_kvd_setting_to_its_value_does_nothing(kc):
    """kvd's own start-time settings (and the TLS ones Redis changes at run time) take a
    CONFIG SET to the value CONFIG GET shows, so that a tool writing back every setting
    does not fail on them; another value, or a Redis start-time setting, is refused."""
    flat = kc.cmd("CONFIG", "GET", "*")
    got = dict(zip(flat[0::2], flat[1::2]))
    same = ["threads", "partitions-per-thread", "recv-buffer-size", "recv-buffers",
            "shard-queue-size", "wal-segment-size", "wal-sync-method", "wal-writes-in-flight",
            "repair", "large-pages", "tls-replication", "tls-cluster"]
    for name in same:
        assert kc.cmd("CONFIG", "SET", name, got[name.encode()]) == St("OK"), name
        assert kc.cmd("CONFIG", "GET", name) == [name.encode(), got[name.encode()]]
    assert kc.cmd("CONFIG", "SET", "threads", got[b"threads"], "maxmemory-policy",
                  "allkeys-lru") == St("OK")
    assert kc.cmd("CONFIG", "GET", "maxmemory-policy") == [b"maxmemory-policy", b"allkeys-lru"]
    assert kc.cmd("CONFIG", "SET", "maxmemory-policy", "noeviction") == St("OK")
    assert kc.cmd("CONFIG", "SET", "threads", b"0" + got[b"threads"]) == Err(
        "ERR CONFIG SET failed (possibly related to argument 'threads') - can't set immutable "
        "config")  # (the same number, another text: refused)
    assert kc.cmd("CONFIG", "SET", "daemonize", got[b"daemonize"]) == Err(
        "ERR CONFIG SET failed (possibly related to argument 'daemonize') - can't set "
        "immutable config")  # Redis's own start-time setting: as Redis
    assert kc.cmd("CONFIG", "SET", "tls-replication", "yes") == Err(
        "ERR CONFIG SET failed (possibly related to argument 'tls-replication') - can't set "
        "immutable config")


def test_config_set_range_errors(kc):
    assert kc.cmd("CONFIG", "SET", "maxclients", "0") == Err(
        "ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument must be "
        "between 1 and 1000000 inclusive")
    assert kc.cmd("CONFIG", "SET", "hz", "0") == Err(
        "ERR CONFIG SET failed (possibly related to argument 'hz') - argument must be between "
        "1 and 500 inclusive")
    assert kc.cmd("CONFIG", "GET", "hz") == [b"hz", b"10"]


def test_config_set_is_all_or_nothing(pair):
    try:
        for c in (pair.k, pair.r):
            r = c.cmd("CONFIG", "SET", "maxclients", "5", "timeout", "-1")
            assert isinstance(r, Err) and "'timeout'" in r.s, r
            assert c.cmd("CONFIG", "GET", "maxclients") == [b"maxclients", b"10000"]
    finally:
        for c in (pair.k, pair.r):
            c.cmd("CONFIG", "SET", "maxclients", "10000")


def test_config_set_proto_max_bulk_len_changes_behaviour(kvd, kc):
    assert kc.cmd("CONFIG", "SET", "proto-max-bulk-len", "1mb") == St("OK")
    try:
        with kvd.client() as c:
            c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % (1024 * 1024 + 1))
            assert c.closed_within(10)
            assert c.pending_bytes() == b"-ERR Protocol error: invalid bulk length\r\n"
        with kvd.client() as c:
            assert c.cmd("SET", "k", b"x" * (1024 * 1024)) == St("OK")
            assert c.cmd("APPEND", "k", "y") == Err(
                "ERR string exceeds maximum allowed size (proto-max-bulk-len)")
            assert c.cmd("SETRANGE", "k", str(1024 * 1024), "y") == Err(
                "ERR string exceeds maximum allowed size (proto-max-bulk-len)")
    finally:
        assert kc.cmd("CONFIG", "SET", "proto-max-bulk-len", "512mb") == St("OK")


def test_config_set_maxclients_at_runtime(kvd, kc):
    n = int(info(kc)["clients"]["connected_clients"])
    assert kc.cmd("CONFIG", "SET", "maxclients", str(n + 2)) == St("OK")
    extra = []
    try:
        for _ in range(2):
            c = kvd.client()
            extra.append(c)
            assert c.cmd("PING") == St("PONG")
        c = kvd.client()
        extra.append(c)
        assert c.closed_within(10)
        assert c.pending_bytes() == b"-ERR max number of clients reached\r\n"
    finally:
        assert kc.cmd("CONFIG", "SET", "maxclients", "10000") == St("OK")
        for c in extra:
            c.close()
    with kvd.client() as c:
        assert c.cmd("PING") == St("PONG")


def test_config_set_timeout_at_runtime(kvd, kc):
    assert kc.cmd("CONFIG", "SET", "timeout", "1") == St("OK")
    try:
        with kvd.client() as idle:
            assert idle.cmd("PING") == St("PONG")
            t0 = time.monotonic()
            assert idle.closed_within(10)
            assert 0.5 < time.monotonic() - t0 < 4
    finally:
        with kvd.client() as c:
            assert c.cmd("CONFIG", "SET", "timeout", "0") == St("OK")


def test_config_help_and_rewrite_without_a_file_match_redis(pair):
    pair.same("CONFIG", "HELP")
    pair.same("CONFIG", "REWRITE")  # started without a config file
    pair.same("CONFIG", "REWRITE", "x")


def test_config_rewrite_keeps_the_file_and_writes_current_values(kvd_factory, tmp_path):
    """CONFIG REWRITE as Redis's: each setting's line gets its current value in place,
    duplicates go, comments and blank lines stay, settings the file lacks that differ
    from their defaults are appended after a signature line, and the ACL users become
    the file's "user" lines; a restart from the file has the same settings and users."""
    conf = tmp_path / "kvd.conf"
    conf.write_text("# kept\nmaxmemory 1mb\n\nmaxmemory 2mb\nhz 10\n  # also kept\n")
    conf.chmod(0o600)
    k = kvd_factory(args=["--config", str(conf)])
    c = k.client()
    c.ok("CONFIG", "SET", "maxmemory", "5mb", "maxmemory-policy", "allkeys-lru")
    c.ok("ACL", "SETUSER", "bob", "on", ">p w", "~k*", "+get")
    c.ok("CONFIG", "SET", "requirepass", "s3 cret")
    c.ok("CONFIG", "REWRITE")
    text = conf.read_text()
    lines = text.splitlines()
    assert lines[:5] == ["# kept", "maxmemory 5242880", "", "hz 10", "  # also kept"], text
    assert lines[5] == "# Generated by CONFIG REWRITE", text
    assert 'requirepass "s3 cret"' in lines and "maxmemory-policy allkeys-lru" in lines, text
    users = [ln for ln in lines if ln.startswith("user ")]
    assert [u.split()[1] for u in users] == ["bob", "default"], text
    assert oct(conf.stat().st_mode & 0o777) == "0o600"  # the file's mode is kept
    c.ok("CONFIG", "REWRITE")
    assert conf.read_text() == text  # nothing changed: the same text
    with pytest.raises(ConnClosed):
        c.cmd("SHUTDOWN")
    assert k.wait_exit() == 0
    k2 = kvd_factory(args=["--config", str(conf)])
    c2 = k2.client()
    assert isinstance(c2.cmd("PING"), Err)  # the password came back
    c2.ok("AUTH", "s3 cret")
    assert c2.cmd("CONFIG", "GET", "maxmemory*")[:4] == [b"maxmemory", b"5242880",
                                                         b"maxmemory-policy", b"allkeys-lru"]
    b = k2.client()
    b.ok("AUTH", "bob", "p w")
    assert b.cmd("GET", "k1") is None
    assert isinstance(b.cmd("SET", "k1", "v"), Err)


# ---- SLOWLOG --------------------------------------------------------------------------

@pytest.fixture
def slow_pair(pair):
    for c in (pair.k, pair.r):
        c.cmd("CONFIG", "SET", "slowlog-log-slower-than", "0")
        c.cmd("CONFIG", "SET", "slowlog-max-len", "128")
        c.cmd("SLOWLOG", "RESET")
    yield pair
    for c in (pair.k, pair.r):
        c.cmd("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        c.cmd("SLOWLOG", "RESET")


def test_slowlog_records_commands_like_redis(slow_pair):
    p = slow_pair
    for c in (p.k, p.r):
        c.cmd("CLIENT", "SETNAME", "slowtest")
        for i in range(10):
            c.cmd("SET", "key%d" % i, "v%d" % i)  # keys of both threads
        c.cmd("GET", "key3")
    klog = p.k.cmd("SLOWLOG", "GET", "12")
    rlog = p.r.cmd("SLOWLOG", "GET", "12")
    assert len(klog) == len(rlog) == 12
    # newest first: GET key3, SET key9 ... SET key0, CLIENT SETNAME
    assert [e[3] for e in klog] == [e[3] for e in rlog]
    addr = "127.0.0.1:%d" % p.k.sock.getsockname()[1]
    ids = [e[0] for e in klog]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
    for e in klog:
        assert len(e) == 6
        assert abs(e[1] - time.time()) < 60
        assert isinstance(e[2], int) and e[2] >= 0
    assert klog[-1][4] == addr.encode() and klog[-1][5] == b"slowtest", klog[-1]
    assert p.k.cmd("SLOWLOG", "LEN") >= 12
    assert len(p.k.cmd("SLOWLOG", "GET")) == 10  # default count
    assert len(p.k.cmd("SLOWLOG", "GET", "-1")) >= 13
    p.same("SLOWLOG", "GET", "x")
    p.same("SLOWLOG", "GET", "-2")
    p.same("SLOWLOG", "RESET")
    p.same("SLOWLOG", "LEN")  # the RESET itself is logged


def test_slowlog_records_client_of_forwarded_commands(slow_pair):
    p = slow_pair
    p.k.cmd("CLIENT", "SETNAME", "slowtest")
    for i in range(10):
        p.k.cmd("SET", "key%d" % i, "v%d" % i)  # keys of both threads
    addr = "127.0.0.1:%d" % p.k.sock.getsockname()[1]
    for e in p.k.cmd("SLOWLOG", "GET", "10"):
        assert (e[4], e[5]) == (addr.encode(), b"slowtest"), e


def test_slowlog_redacts_credentials_as_redis(slow_pair):
    p = slow_pair
    cmds = [("AUTH", "default", "pw"), ("AUTH", "pw"), ("HELLO", "2", "AUTH", "default", "x"),
            ("ACL", "SETUSER", "slowu", "on", ">secret", "~*"), ("ACL", "DELUSER", "slowu"),
            ("CONFIG", "SET", "requirepass", "", "slowlog-max-len", "128")]
    for c in (p.k, p.r):
        for args in cmds:
            c.cmd(*args)
    klog = [e[3] for e in p.k.cmd("SLOWLOG", "GET", str(len(cmds)))]
    rlog = [e[3] for e in p.r.cmd("SLOWLOG", "GET", str(len(cmds)))]
    assert klog == rlog
    assert b"secret" not in b" ".join(x for e in klog for x in e)


def test_slowlog_argument_truncation_matches_redis(slow_pair):
    p = slow_pair
    for c in (p.k, p.r):
        c.cmd("SET", "big", "x" * 200)
        c.cmd("MSETNX", *[x for i in range(20) for x in ("{t}k%d" % i, "v")])
    assert p.k.cmd("SLOWLOG", "GET", "2")[0][3] == p.r.cmd("SLOWLOG", "GET", "2")[0][3]
    assert p.k.cmd("SLOWLOG", "GET", "2")[1][3] == p.r.cmd("SLOWLOG", "GET", "2")[1][3]


def test_slowlog_fanned_out_command_is_logged_whole(slow_pair):
    p = slow_pair
    args = [x for i in range(8) for x in ("mk%d" % i, "v%d" % i)]
    for c in (p.k, p.r):
        c.cmd("CLIENT", "SETNAME", "fan")
        c.cmd("MSET", *args)
    k = [e for e in p.k.cmd("SLOWLOG", "GET", "-1") if e[3][:1] == [b"MSET"]]
    r = [e for e in p.r.cmd("SLOWLOG", "GET", "-1") if e[3][:1] == [b"MSET"]]
    assert len(r) == 1
    assert [(e[3], e[5]) for e in k] == [(r[0][3], b"fan")]


def test_slowlog_threshold_and_max_len(kvd, kc):
    kc.cmd("SLOWLOG", "RESET")
    try:
        assert kc.cmd("CONFIG", "SET", "slowlog-log-slower-than", "-1") == St("OK")
        kc.cmd("SLOWLOG", "RESET")
        for i in range(5):
            kc.cmd("SET", "k%d" % i, "v")
        assert kc.cmd("SLOWLOG", "LEN") == 0
        assert kc.cmd("CONFIG", "SET", "slowlog-log-slower-than", "100000") == St("OK")
        assert kc.cmd("DEBUG", "SLEEP", "0") == St("OK")
        assert kc.cmd("DEBUG", "SLEEP", "0.2") == St("OK")
        log = kc.cmd("SLOWLOG", "GET")
        assert len(log) == 1 and log[0][3] == [b"DEBUG", b"SLEEP", b"0.2"], log
        assert log[0][2] >= 190000
        assert kc.cmd("CONFIG", "SET", "slowlog-log-slower-than", "0") == St("OK")
        assert kc.cmd("CONFIG", "SET", "slowlog-max-len", "3") == St("OK")
        for i in range(10):
            kc.cmd("SET", "k%d" % i, "v")
        # kept per thread: at most 3 on each of the 2 threads
        assert 3 <= kc.cmd("SLOWLOG", "LEN") <= 6
        assert kc.cmd("SLOWLOG", "GET", "1")[0][3][:2] == [b"SLOWLOG", b"LEN"]
    finally:
        kc.cmd("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        kc.cmd("CONFIG", "SET", "slowlog-max-len", "128")
        kc.cmd("SLOWLOG", "RESET")


def test_time(kc):
    for _ in range(3):
        s, us = kc.cmd("TIME")
        assert s.isdigit() and us.isdigit()
        assert abs(int(s) + int(us) / 1e6 - time.time()) < 2
        assert 0 <= int(us) < 1000000
    a = kc.cmd("TIME")
    time.sleep(0.05)
    b = kc.cmd("TIME")
    assert (int(b[0]), int(b[1])) > (int(a[0]), int(a[1]))


def cmdstat(c, name):
    st = info(c, "commandstats").get("commandstats", {}).get("cmdstat_" + name)
    return dict(f.split("=") for f in st.split(",")) if st else None


def test_commandstats_count_failed_and_rejected_calls(pair):
    def counts(c):
        incr, get = cmdstat(c, "incr") or {}, cmdstat(c, "get") or {}
        err = info(c, "errorstats").get("errorstats", {}).get("errorstat_ERR", "count=0")
        return (int(incr.get("failed_calls", 0)), int(get.get("rejected_calls", 0)),
                int(err.split("=")[1]))

    for c in (pair.k, pair.r):
        c.cmd("SET", "s", "abc")
        before = counts(c)
        assert isinstance(c.cmd("INCR", "s"), Err)
        assert isinstance(c.cmd("GET"), Err)
        after = counts(c)
        assert tuple(a - b for a, b in zip(after, before)) == (1, 1, 2), (before, after)


def test_commandstats_subcommand_lines(pair):
    for c in (pair.k, pair.r):
        assert c.cmd("CONFIG", "RESETSTAT") == St("OK")
        c.cmd("CONFIG", "GET", "maxclients")
        c.cmd("CLIENT", "ID")
        assert cmdstat(c, "config|get")["calls"] == "1"
        assert cmdstat(c, "client|id")["calls"] == "1"


def stat_lines(c):
    """INFO commandstats (without timings) and errorstats as {name: fields}."""
    i = info(c, "commandstats", "errorstats")
    out = {}
    for name, v in i.get("commandstats", {}).items():
        fields = dict(f.split("=") for f in v.split(","))
        out[name] = {k: fields[k] for k in ("calls", "rejected_calls", "failed_calls")}
    out.update(i.get("errorstats", {}))
    return out


# Calls that succeed, fail while executing, or are refused before it, of every shape kvd
# dispatches: local, forwarded to the other shard, fanned out over both, whole-keyspace,
# connection commands and subcommands.
STATS_SCENARIO = [
    ("SET", "s", "abc"), ("INCR", "s"), ("GET",), ("GET", "a", "b"), ("NOSUCHCMD", "x"),
    ("MSET", "k1", "v", "k2", "v", "k3", "v", "k4", "v"), ("MSET", "k1", "v", "k2"),
    ("MGET", "k1", "k2", "k3", "k4", "k5"), ("DEL", "k1", "k2", "k3"), ("EXISTS", "k4", "k5"),
    ("SCAN", "x"), ("SCAN", "0"), ("FLUSHALL", "bad"), ("DBSIZE",), ("KEYS", "*"),
    ("CONFIG", "GET"), ("CONFIG", "GET", "maxclients"), ("CONFIG", "NOSUCH"),
    ("CLIENT", "ID"), ("CLIENT", "ID", "x"), ("CLIENT", "SETNAME", "a b"), ("CLIENT", "LIST"),
    ("SLOWLOG", "LEN"), ("SLOWLOG", "GET", "1", "2"), ("AUTH", "x"), ("AUTH", "a", "b"),
    ("SETEX", "e", "-1", "v"), ("GETRANGE", "s", "a", "b"), ("PING",), ("PING", "a", "b"),
    ("INCRBYFLOAT", "s", "1"), ("SET", "n", "1", "EX", "0"), ("SET", "n", "1", "NX", "XX"),
]


def test_commandstats_and_errorstats_match_redis(pair):
    for c in (pair.k, pair.r):
        assert c.cmd("CONFIG", "RESETSTAT") == St("OK")
    for cmd in STATS_SCENARIO:
        kr, rr = pair.k.cmd(*cmd), pair.r.cmd(*cmd)
        assert isinstance(kr, Err) == isinstance(rr, Err), (cmd, kr, rr)
    k, r = stat_lines(pair.k), stat_lines(pair.r)
    assert k == r, "\n  kvd:   %r\n  redis: %r" % (sorted(k.items()), sorted(r.items()))
    assert info(pair.k, "stats")["stats"]["total_error_replies"] == \
        info(pair.r, "stats")["stats"]["total_error_replies"]


def test_reply_over_the_output_limit_closes_the_client(kvd_factory):
    """A reply over client-output-buffer-limit closes the client with nothing of it sent,
    as Redis does, whether it was made on the client's thread or forwarded from the
    other (32 connections: each lands on either thread): the GET counts as a call, not an
    error; INFO counts the disconnections."""
    k = kvd_factory(args=["--client-output-buffer-limit", "normal 1mb 0 0"])
    with k.client() as c:
        for i in range(4):  # keys of both shard threads
            assert c.cmd("SET", "big%d" % i, b"x" * (2 << 20)) == St("OK")
        assert c.cmd("CONFIG", "RESETSTAT") == St("OK")
    with k.client() as c:
        before = int(info_field(c, "stats", "commands_forwarded"))
    for i in range(32):
        with k.client() as c:
            c.send(encode("GET", "big%d" % (i % 4)))
            assert c.closed_within(10)
            assert c.pending_bytes() == b""
    with k.client() as c:
        # some GETs were forwarded (all local has a chance of 2^-32)
        assert int(info_field(c, "stats", "commands_forwarded")) > before
        assert info_field(c, "stats", "client_output_buffer_limit_disconnections") == "32"
        assert info_field(c, "stats", "total_error_replies") == "0"
        assert cmdstat(c, "get")["calls"] == "32"
        assert cmdstat(c, "get")["failed_calls"] == "0"


def test_memory_command_matches_redis_where_comparable(pair):
    for c in (pair.k, pair.r):
        c.cmd("SET", "k", "v")
    for args in [("HELP",), ("help",), ("USAGE", "nokey"), ("USAGE", "k", "SAMPLES", "x"),
                 ("USAGE", "k", "SAMPLES", "-1"), ("USAGE", "k", "foo"),
                 ("USAGE", "k", "SAMPLES"), ("USAGE", "k", "samples", "3", "x"),
                 ("USAGE",), ("NOPE",), ("DOCTOR", "x"), ("STATS", "x"), ("PURGE", "x"),
                 ("MALLOC-STATS", "x"), ("PURGE",)]:
        pair.same("MEMORY", *args)


def test_memory_usage_and_stats(kvd):
    """MEMORY USAGE: the key's entry and slot, on whichever thread owns the key; STATS
    agrees with DBSIZE; DOCTOR and MALLOC-STATS answer."""
    with kvd.client() as c:
        c.cmd("FLUSHALL")
        for i in range(8):  # keys of both threads
            key = "mem:%d" % i
            assert c.cmd("SET", key, "x" * (10 ** (i % 4))) == St("OK")
            used = c.cmd("MEMORY", "USAGE", key)
            assert isinstance(used, int) and used >= len(key) + 10 ** (i % 4) + 8, (key, used)
            assert used < len(key) + 10 ** (i % 4) + 200, (key, used)
            assert c.cmd("MEMORY", "USAGE", key, "SAMPLES", "0") == used
        assert c.cmd("MEMORY", "USAGE", "mem:missing") is None
        stats = c.cmd("MEMORY", "STATS")
        fields = dict(zip(stats[0::2], stats[1::2]))
        assert fields[b"keys.count"] == c.cmd("DBSIZE") == 8
        assert fields[b"dataset.bytes"] >= sum(10 ** (i % 4) for i in range(8))
        assert fields[b"total.allocated"] >= fields[b"dataset.bytes"]
        assert isinstance(c.cmd("MEMORY", "DOCTOR"), bytes)
        assert isinstance(c.cmd("MEMORY", "MALLOC-STATS"), bytes)
        assert c.cmd("MEMORY", "PURGE") == St("OK")


def test_rdb_changes_since_last_save_counts_as_redis(kvd_factory, redis_server):
    """Without persistence kvd counts every data change like Redis's dirty counter
    (Redis's tests read it to check that a write that changes nothing is not one). Both
    without save points (with them, FLUSHALL saves: test_kvd_dump.py)."""
    k = kvd_factory(args=["--appendonly", "no", "--save", ""])

    def changes(c):
        text = c.cmd("INFO", "persistence").decode()
        return int(text.split("rdb_changes_since_last_save:")[1].split("\r\n")[0])

    steps = [("SET", "{d}a", "1"), ("SET", "{d}a", "2", "NX"), ("MSET", "{d}b", "1", "c", "2", "d", "3"),
             ("DEL", "{d}b", "nokey", "c"), ("INCR", "{d}a"), ("INCRBY", "{d}a", "0"),
             ("APPEND", "{d}a", "x"), ("APPEND", "{d}a", ""), ("SETBIT", "{d}bits", "3", "1"),
             ("SETBIT", "{d}bits", "3", "1"), ("SETBIT", "{d}bits", "3", "0"),
             ("BITFIELD", "{d}bf", "SET", "i5", "0", "0"), ("BITFIELD", "{d}bf", "SET", "i5", "0", "0"),
             ("BITFIELD", "{d}bf", "SET", "i5", "0", "3", "INCRBY", "u4", "8", "1"),
             ("EXPIRE", "{d}a", "100"), ("PERSIST", "{d}a"), ("PERSIST", "{d}a"),
             ("RENAME", "{d}a", "{d}r"), ("COPY", "{d}r", "{d}c"), ("GETDEL", "{d}c"),
             ("GETEX", "{d}r", "EX", "50"), ("GETEX", "{d}r"), ("SETRANGE", "{d}r", "0", ""),
             ("SETRANGE", "{d}r", "1", "zz"), ("MSETNX", "{d}n1", "1", "{d}n2", "2"),
             ("MSETNX", "{d}n1", "1", "{d}n3", "2"), ("BITOP", "OR", "{d}o", "{d}bits", "{d}bf"),
             ("SETNX", "{d}n1", "x"), ("GETSET", "{d}n1", "y"), ("INCRBYFLOAT", "{d}f", "1.5"),
             ("UNLINK", "{d}n1", "{d}n2"), ("FLUSHALL",), ("FLUSHALL",),
             ("FUNCTION", "LOAD", "#!lua name=chg\nredis.register_function('chg', "
              "function() return 1 end)"), ("FUNCTION", "DELETE", "chg"),
             ("FUNCTION", "FLUSH"), ("FUNCTION", "LOAD", "#!lua name=bad\nbad code")]
    with k.client() as kc, redis_server.client() as rc:
        rc.cmd("FLUSHALL")
        for step in steps:
            before = (changes(kc), changes(rc))
            assert kc.cmd(*step) == rc.cmd(*step), step
            delta = (changes(kc) - before[0], changes(rc) - before[1])
            assert delta[0] == delta[1], "%r: kvd +%d, redis +%d" % (step, delta[0], delta[1])


# ---- DEBUG OBJECT / RELOAD / HELP ------------------------------------------------------

DEBUG_OBJECT = re.compile(r"^Value at:(0x[0-9a-f]+) refcount:(\d+) encoding:(\w+) "
                          r"serializedlength:(\d+) lru:(\d+) lru_seconds_idle:(\d+)$")


def test_debug_object_reload_and_errors_as_redis(kvd):
    """DEBUG OBJECT's refcount, encoding and serializedlength equal Redis's (values up to 20
    bytes and incompressible longer ones: Redis LZF-compresses the others, kvd does not);
    its LRU clock is Redis's; errors, RELOAD's options and its keeping the data."""
    need_redis()
    r = RedisServer(["--enable-debug-command", "yes"])
    try:
        with kvd.client() as kc, r.client() as rc:
            for c in (kc, rc):
                assert c.cmd("FLUSHALL") == St("OK")
            rnd = random.Random(7)
            noise = bytes(rnd.randrange(256) for _ in range(300))
            values = [b"1", b"0", b"-1", b"9999", b"10000", b"127", b"128", b"32767", b"32768",
                      b"2147483647", b"2147483648", b"12345678901", b"-9223372036854775808",
                      b"007", b"+1", b" 1", b"1.5", b"", b"hello", b"x" * 20, noise[:21],
                      noise[:44], noise[:45], noise[:300]]
            for i, v in enumerate(values):
                key = "dbg:%d" % i
                for c in (kc, rc):
                    assert c.cmd("SET", key, v) == St("OK")
                got = [DEBUG_OBJECT.match(c.cmd("DEBUG", "OBJECT", key).s) for c in (kc, rc)]
                assert got[0] and got[1], (v, got)
                k, rr = got[0].groups(), got[1].groups()
                assert k[1:4] == rr[1:4], (v, k, rr)  # refcount, encoding, serializedlength
                assert abs(int(k[4]) - int(rr[4])) <= 2, (k, rr)  # the LRU clock (s)
                # idle time in whole ticks of the 1 s LRU clock (Redis's too): 1 when a tick
                # fell between the SET and DEBUG OBJECT (seen on a loaded machine)
                assert k[5] in ("0", "1"), k
            for args in (("DEBUG", "OBJECT", "nokey"), ("DEBUG", "OBJECT"),
                         ("DEBUG", "OBJECT", "a", "b"), ("DEBUG", "FOO"),
                         ("DEBUG", "SLEEP"), ("DEBUG", "RELOAD", "BAD"),
                         ("DEBUG", "RELOAD", "merge", "noflush"),
                         ("DEBUG", "ERROR", "LOADING fake message"), ("DEBUG", "ERROR", "-x y"),
                         ("DEBUG", "ERROR", "a\r\nb"), ("DEBUG", "ERROR"),
                         ("DEBUG", "ERROR", "a", "b")):
                assert kc.raw(*args) == rc.raw(*args), args
            # DEBUG ERROR's reply is no error of the command's: not counted
            for c in (kc, rc):
                assert "errorstat_LOADING" not in c.cmd("INFO", "errorstats").decode()
            # a key past its expiry that nothing removed yet: DEBUG OBJECT still sees it
            for c in (kc, rc):
                assert c.cmd("DEBUG", "SET-ACTIVE-EXPIRE", "0") == St("OK")
                assert c.cmd("SET", "dbg:gone", "v", "PX", "1") == St("OK")
            time.sleep(0.05)
            for c in (kc, rc):
                assert DEBUG_OBJECT.match(c.cmd("DEBUG", "OBJECT", "dbg:gone").s)
                assert c.cmd("EXISTS", "dbg:gone") == 0
                assert isinstance(c.cmd("DEBUG", "OBJECT", "dbg:gone"), Err)
                assert c.cmd("DEBUG", "SET-ACTIVE-EXPIRE", "1") == St("OK")
            # NOSAVE: Redis loads the RDB it has (none here: an error); kvd's memory is
            # what its files hold, so there is nothing to load
            assert kc.cmd("DEBUG", "RELOAD", "NOSAVE") == St("OK")
            assert kc.cmd("SET", "dbg:ttl", "v", "PX", "100000") == St("OK")
            assert kc.cmd("DEBUG", "RELOAD") == St("OK")
            assert kc.cmd("GET", "dbg:3") == b"9999"
            assert 99000 < kc.cmd("PTTL", "dbg:ttl") <= 100000
            assert kc.cmd("DBSIZE") == len(values) + 1
            lines = kc.cmd("DEBUG", "HELP")
            assert lines[0] == St("DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:")
            assert St("OBJECT <key>") in lines and St("HELP") in lines
    finally:
        r.stop()


def test_info_fields_tools_read(kvd, kc):
    """Fields monitoring tools read: instantaneous rates (sampled every 100 ms over 16
    samples), run_id and master_replid (40 hex digits, stable), lru_clock,
    server_time_usec, configured_hz, the memory figures' human forms and the
    fragmentation ratio, cluster_enabled."""
    stop = []

    def load():
        with kvd.client() as c:
            while not stop:
                c.pipeline([("PING",)] * 200)

    th = threading.Thread(target=load)
    th.start()
    try:
        # the mean of 16 samples fills as they come: a steady load shows within 1.6 s
        wait_until(lambda: int(info(kc, "stats")["stats"]["instantaneous_ops_per_sec"]) > 100,
                   10, what="instantaneous_ops_per_sec > 100")
        assert float(info(kc, "stats")["stats"]["instantaneous_input_kbps"]) > 0
    finally:
        stop.append(1)
        th.join()
    a, b = info(kc), info(kc)
    srv = a["server"]
    assert re.fullmatch(r"[0-9a-f]{40}", srv["run_id"]) and srv["run_id"] == b["server"]["run_id"]
    assert abs(int(srv["server_time_usec"]) / 1e6 - time.time()) < 5
    assert int(srv["configured_hz"]) == int(srv["hz"])
    assert 0 <= int(srv["lru_clock"]) < (1 << 24)
    rep = a["replication"]
    assert re.fullmatch(r"[0-9a-f]{40}", rep["master_replid"]) and rep["master_repl_offset"] == "0"
    mem = a["memory"]
    for f in ("used_memory_rss_human", "used_memory_peak_human", "total_system_memory_human"):
        assert re.fullmatch(r"\d+(\.\d\d[KMGTPE]|B)", mem[f]), (f, mem[f])
    assert float(mem["mem_fragmentation_ratio"]) > 0
    assert a["cluster"] == {"cluster_enabled": "0"}
    subs = [kvd.client() for _ in range(4)]
    for i, c in enumerate(subs):
        c.cmd("SUBSCRIBE", "ch%d" % (i % 2))
        c.cmd("PSUBSCRIBE", "p%d*" % i)
    st = wait_until(lambda: (lambda s: s["pubsub_patterns"] == "4" and s)(
        info(kc, "stats")["stats"]), 5, what="4 patterns")
    assert st["pubsub_channels"] == "2"
    for c in subs:
        c.close()
    kc.cmd("SCRIPT", "FLUSH")
    kc.cmd("SCRIPT", "LOAD", "return 1")
    assert info(kc, "memory")["memory"]["number_of_cached_scripts"] == "1"


def test_lolwut_matches_redis(pair):
    """LOLWUT answers Redis's version line (kvd draws no pictures for versions 5 and 6:
    the line only); its argument errors are Redis's."""
    for args in [("VERSION", "x"), ("VERSION", "6", "x"), ("VERSION", "5", "1", "x"),
                 ("VERSION", "6", "1", "x"), ("VERSION", "4294967301", "x")]:
        pair.same("LOLWUT", *args)
    for args in [(), ("foo", "x"), ("VERSION", "1", "x"), ("VERSION", "7", "x"),
                 ("VERSION", "5", "1", "2"), ("VERSION", "5", "1", "2", "3", "x"),
                 ("VERSION", "6", "1", "2", "x")]:
        k, r = pair.both("LOLWUT", *args)
        assert k == b"Redis ver. 7.0.0\n" and b"Redis ver. " in r, (args, k, r)
    assert pair.k.cmd("EVAL", "return redis.call('lolwut')", "0") == b"Redis ver. 7.0.0\n"


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_debug_digest_matches_redis_byte_for_byte(kvd_factory, threads):
    """DEBUG DIGEST and DIGEST-VALUE equal Redis 7.0's for the same data (Redis's SHA1
    mixing: values with and without expiry, several databases, an empty dataset), also
    inside MULTI; the shards' sums are merged."""
    need_redis()
    r = RedisServer(["--enable-debug-command", "yes"])
    try:
        k = kvd_factory(threads=threads).client()
        rc = r.client()
        for args in [("DEBUG", "DIGEST"), ("DEBUG", "DIGEST-VALUE"),
                     ("DEBUG", "DIGEST-VALUE", "nokey")]:
            assert k.raw(*args) == rc.raw(*args), args
        for c in (k, rc):
            for i in range(200):
                c.cmd("SET", "k%d" % i, "v%d" % i)
            c.cmd("SET", "e1", "x", "EX", "1000")
            c.cmd("SET", "bin", bytes(range(256)))
            c.cmd("SELECT", "3")
            c.cmd("SET", "k1", "other")
            c.cmd("SELECT", "0")
        for args in [("DEBUG", "DIGEST"), ("DEBUG", "DIGEST-VALUE", "k1", "e1", "bin", "no"),
                     ("DEBUG", "DIGEST", "x")]:
            assert k.raw(*args) == rc.raw(*args), args
        got = []
        for c in (k, rc):
            c.cmd("MULTI")
            c.cmd("DEBUG", "DIGEST")
            c.cmd("DEBUG", "DIGEST-VALUE", "k7")
            got.append(c.raw("EXEC"))
        assert got[0] == got[1], got
    finally:
        r.stop()


def test_info_has_every_field_redis_has(pair):
    """Monitoring tools read INFO fields by name: every field Redis 7.0 has in the
    server, clients, memory, persistence, stats, replication, cpu and cluster sections
    is in kvd's (kvd's own fields come on top)."""
    for section in ("server", "clients", "memory", "persistence", "stats", "replication",
                    "cpu", "cluster"):
        names = []
        for c in (pair.k, pair.r):
            text = c.cmd("INFO", section)
            text = (text.data if hasattr(text, "data") else text).decode()
            names.append({ln.split(":")[0] for ln in text.split("\r\n") if ":" in ln})
        assert names[1] - names[0] == set(), (section, sorted(names[1] - names[0]))
