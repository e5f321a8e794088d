"""COMMAND (INFO, DOCS, GETKEYS, GETKEYSANDFLAGS, COUNT, LIST, HELP) of kvd against
Redis 7, in RESP2 and RESP3.

Every command kvd lists must have Redis's COMMAND INFO row and COMMAND DOCS map, byte for
byte. The known, deliberate differences are spelled out here and nowhere else:
  - containers (CLIENT, CLUSTER, COMMAND, CONFIG, SLOWLOG) list only the subcommands kvd
    implements (KVD_SUBCOMMANDS), in name order; Redis lists all of its own in its hash
    table's order, which changes from one redis-server process to the next, so
    subcommand lists are compared as sets (they are sets in RESP3);
  - where kvd's behaviour differs, the DOCS summary says so: Redis's summary followed by
    kvd's note in parentheses (DOCS_NOTES; none at present);
  - COMMAND, COMMAND LIST and COMMAND DOCS without names cover only kvd's commands, and
    their order is kvd's (name order), not Redis's hash order; COMMAND LIST names the
    subcommands too ("client|list"), as Redis 7.0 does.
"""
import pytest

from conftest import Err, Map, RSet, St

KVD_SUBCOMMANDS = {
    "acl": {"cat", "deluser", "dryrun", "genpass", "getuser", "help", "list", "load", "log",
            "save", "setuser", "users", "whoami"},
    "client": {"caching", "getname", "getredir", "help", "id", "info", "kill", "list", "no-evict",
               "pause", "reply", "setname", "tracking", "trackinginfo", "unblock", "unpause"},
    "cluster": {"addslots", "addslotsrange", "bumpepoch", "count-failure-reports",
                "countkeysinslot", "delslots", "delslotsrange", "failover", "flushslots",
                "forget", "getkeysinslot", "help", "info", "keyslot", "links", "meet", "myid",
                "nodes", "replicas", "replicate", "reset", "saveconfig", "set-config-epoch",
                "setslot", "shards", "slaves", "slots"},
    "command": {"count", "docs", "getkeys", "getkeysandflags", "help", "info", "list"},
    "config": {"get", "help", "resetstat", "rewrite", "set"},
    "function": {"delete", "dump", "flush", "help", "kill", "list", "load", "restore", "stats"},
    "latency": {"doctor", "graph", "help", "histogram", "history", "latest", "reset"},
    "memory": {"doctor", "help", "malloc-stats", "purge", "stats", "usage"},
    "object": {"encoding", "freq", "help", "idletime", "refcount"},
    "pubsub": {"channels", "help", "numpat", "numsub", "shardchannels", "shardnumsub"},
    "script": {"debug", "exists", "flush", "help", "kill", "load"},
    "slowlog": {"get", "help", "len", "reset"},
}

DOCS_NOTES = {}

PROTOCOLS = ["2", "3"]


def hello(pair, proto):
    for c in (pair.k, pair.r):
        r = c.cmd("HELLO", proto)
        assert not isinstance(r, Err), r


def kvd_names(pair):
    """kvd's commands, without the subcommands COMMAND LIST also names."""
    listed = [n.decode() for n in pair.k.cmd("COMMAND", "LIST")]
    names = [n for n in listed if "|" not in n]
    assert len(names) >= 55 and len(set(listed)) == len(listed), listed
    return names


def pairs_of(v):
    """A map's (key, value) pairs, whether it came as a RESP3 map or a RESP2 array."""
    if isinstance(v, Map):
        return list(v.items)
    assert isinstance(v, list) and len(v) % 2 == 0, v
    return list(zip(v[0::2], v[1::2]))


def rebuild_map(like, items):
    if isinstance(like, Map):
        return Map(tuple(items))
    return [x for kv in items for x in kv]


def items_of(v):
    """The elements of a RESP3 set or an array."""
    return list(v.items) if isinstance(v, RSet) else list(v)


def subname(full):
    return full.decode().split("|", 1)[1]


def normalize_info_row(row, container, keep_all):
    """An INFO row with its subcommand rows sorted by name and, for Redis's (keep_all
    False), cut to the ones kvd implements."""
    if container is None or not items_of(row[9]):
        return row
    subs = [s for s in items_of(row[9]) if keep_all or subname(s[0]) in KVD_SUBCOMMANDS[container]]
    return row[:9] + [sorted(subs, key=lambda s: s[0])]


def normalize_docs(doc, container, keep_all):
    """A DOCS map with its subcommands map sorted by name and, for Redis's, cut to the
    ones kvd implements."""
    items = pairs_of(doc)
    out = []
    for k, v in items:
        if k == b"subcommands":
            subs = [(n, d) for n, d in pairs_of(v)
                    if keep_all or subname(n) in KVD_SUBCOMMANDS[container]]
            v = rebuild_map(v, sorted(subs, key=lambda s: s[0]))
        out.append((k, v))
    return rebuild_map(doc, out)


# ---- COMMAND INFO ----------------------------------------------------------------------

@pytest.mark.parametrize("proto", PROTOCOLS)
def test_info_of_every_command_matches_redis(pair, proto):
    hello(pair, proto)
    for n in kvd_names(pair):
        if n in KVD_SUBCOMMANDS:
            k, r = pair.both("COMMAND", "INFO", n)
            assert len(k) == 1 and len(r) == 1
            kr = normalize_info_row(k[0], n, True)
            rr = normalize_info_row(r[0], n, False)
            assert [subname(s[0]) for s in kr[9]] == sorted(KVD_SUBCOMMANDS[n]), kr
            assert kr == rr, (n, kr, rr)
            # the RESP3 type of the subcommand list: an array, as Redis's
            assert isinstance(k[0][9], list)
        else:
            pair.same("COMMAND", "INFO", n)
        # names are found in any case
        assert pair.k.cmd("COMMAND", "INFO", n.upper()) == pair.k.cmd("COMMAND", "INFO", n)


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_info_of_every_subcommand_matches_redis(pair, proto):
    hello(pair, proto)
    for container, subs in sorted(KVD_SUBCOMMANDS.items()):
        for s in sorted(subs):
            pair.same("COMMAND", "INFO", "%s|%s" % (container, s))
            pair.same("COMMAND", "INFO", "%s|%s" % (container.upper(), s.upper()))


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_info_unknown_names(pair, proto):
    hello(pair, proto)
    for args in [("nosuch",), ("get", "nosuch", "set"), ("client|nosuch",), ("get|x",),
                 ("client|list|x",), ("client|",), ("|list",), ("|",), ("",),
                 ("x" * 100,), ("client|" + "x" * 100,), ("get", "GET", "Get")]:
        pair.same("COMMAND", "INFO", *args)
    # in kvd but not in Redis 7.0 (7.2's): no row in kvd either
    k = pair.k.cmd("COMMAND", "INFO", "client|setinfo", "client|no-touch")
    assert k == [None, None]


def test_every_row_has_redis_metadata(pair):
    """Catches a command added to cmd.c without running tools/gen_cmd_docs.py: every
    Redis command has at least one ACL category and a documentation group."""
    rows = pair.k.cmd("COMMAND")
    for row in rows:
        assert items_of(row[6]), row
    docs = pairs_of(pair.k.cmd("COMMAND", "DOCS"))
    assert len(docs) == len(rows)
    for name, d in docs:
        assert b"group" in dict(pairs_of(d)) and b"summary" in dict(pairs_of(d)), name


# ---- COMMAND DOCS ----------------------------------------------------------------------

@pytest.mark.parametrize("proto", PROTOCOLS)
def test_docs_of_every_command_matches_redis(pair, proto):
    hello(pair, proto)
    for n in kvd_names(pair):
        if n not in KVD_SUBCOMMANDS and n not in DOCS_NOTES:
            pair.same("COMMAND", "DOCS", n)
            continue
        k, r = pair.both("COMMAND", "DOCS", n)
        [(kn, kd)] = pairs_of(k)
        [(rn, rd)] = pairs_of(r)
        assert kn == rn == n.encode()
        if n in KVD_SUBCOMMANDS:
            kd = normalize_docs(kd, n, True)
            rd = normalize_docs(rd, n, False)
            subs = dict(pairs_of(dict(pairs_of(kd))[b"subcommands"]))
            assert sorted(subname(s) for s in subs) == sorted(KVD_SUBCOMMANDS[n])
        else:
            # kvd's summary is Redis's plus a note on how kvd differs
            fixed = []
            for key, v in pairs_of(kd):
                if key == b"summary":
                    assert v.endswith(DOCS_NOTES[n]), v
                    v = v[:-len(DOCS_NOTES[n])]
                fixed.append((key, v))
            kd = rebuild_map(kd, fixed)
        assert kd == rd, (n, kd, rd)


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_docs_of_every_subcommand_and_unknown_names(pair, proto):
    hello(pair, proto)
    for container, subs in sorted(KVD_SUBCOMMANDS.items()):
        for s in sorted(subs):
            pair.same("COMMAND", "DOCS", "%s|%s" % (container, s))
    for args in [("nosuch",), ("nosuch", "get"), ("get", "nosuch", "GET"), ("client|nosuch",),
                 ("get|x",), ("", "|"), ("getset", "set", "expire", "client|kill"),
                 ("SET", "scan", "getex")]:
        pair.same("COMMAND", "DOCS", *args)


# ---- COMMAND, COMMAND INFO without names, COMMAND DOCS without names ------------------

@pytest.mark.parametrize("proto", PROTOCOLS)
def test_command_rows_equal_info_rows(pair, proto):
    hello(pair, proto)
    rows = pair.k.cmd("COMMAND")
    names = kvd_names(pair)
    assert [r[0].decode() for r in rows] == names
    assert pair.k.cmd("COMMAND", "INFO") == rows
    assert pair.k.cmd("COMMAND", "INFO", *names) == rows
    for row in rows:
        assert pair.k.cmd("COMMAND", "INFO", row[0]) == [row]
    docs = pair.k.cmd("COMMAND", "DOCS")
    assert type(docs) is (Map if proto == "3" else list)
    assert pairs_of(docs) == pairs_of(pair.k.cmd("COMMAND", "DOCS", *names))
    assert [n.decode() for n, _ in pairs_of(docs)] == names


# ---- COMMAND GETKEYS / GETKEYSANDFLAGS --------------------------------------------------

GETKEYS_CASES = [
    # one key
    ("get", "a"), ("GET", "A"), ("strlen", "k"), ("incrbyfloat", "k", "1.5"),
    ("getex", "k", "EX", "10"), ("getex", "k"), ("getdel", "k"), ("expire", "k", "1"),
    ("expire", "k", "1", "NX"), ("ttl", "k"), ("persist", "k"), ("type", "k"),
    ("setrange", "k", "0", "v"), ("append", "k", "v"), ("substr", "k", "0", "1"),
    # SET: the flags depend on GET
    ("set", "k", "v"), ("set", "k", "v", "GET"), ("set", "k", "v", "get", "EX", "1"),
    ("set", "k", "v", "EX", "1", "gEt"), ("set", "k", "v", "NX"), ("set", "k", "v", "getx"),
    ("set", "get", "get"), ("SET", "k", "v", "KEEPTTL", "GET"),
    # several keys
    ("mget", "a", "b", "c"), ("mset", "a", "1", "b", "2"), ("mset", "a", "1", "b"),
    ("msetnx", "a", "1", "b", "2"), ("del", "a"), ("del", "a", "b", "c"),
    ("unlink", "a", "b"), ("exists", "a", "a"), ("touch", "a", "b"), ("rename", "a", "b"),
    ("renamenx", "a", "b"), ("lcs", "a", "b"), ("lcs", "a", "b", "LEN"),
    # no key arguments
    ("ping", "x"), ("echo", "x"), ("dbsize", "x"), ("keys", "*"), ("scan", "0"),
    ("flushall", "x"), ("client", "list"), ("client", "id"), ("config", "get", "x"),
    ("command", "info"), ("slowlog", "get"), ("client", "x"), ("select", "0"),
    # unknown commands and subcommands
    ("nosuch", "a"), ("client", "nosuch"), ("config", "nosuch", "x"), ("", "x"),
    ("get|x", "a"), ("x" * 100, "a"),
    # wrong number of arguments for the command
    ("get", "a", "b"), ("set", "k"), ("mset", "a"), ("rename", "a"), ("rename", "a", "b", "c"),
    ("mget",), ("ttl", "a", "b"), ("lcs", "a"),
]


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("sub", ["GETKEYS", "GETKEYSANDFLAGS", "getkeys"])
def test_getkeys_matches_redis(pair, proto, sub):
    hello(pair, proto)
    for args in GETKEYS_CASES:
        pair.same("COMMAND", sub, *args)
    # COMMAND GETKEYS itself needs a command and one argument
    pair.same("COMMAND", sub)
    pair.same("COMMAND", sub, "get")
    pair.same("COMMAND", sub, "ping")


def test_getkeys_of_every_command_and_argument_count(pair):
    """Every kvd command (and every subcommand kvd implements) with 0 to 7 arguments:
    keys, flags and errors equal Redis's."""
    for row in pair.k.cmd("COMMAND"):
        name = row[0].decode()
        heads = [[]] + [[s] for s in sorted(KVD_SUBCOMMANDS.get(name, ()))]
        for head in heads:
            for n in range(8):
                args = head + ["k%d" % i for i in range(n)]
                pair.same("COMMAND", "GETKEYS", name, *args)
                pair.same("COMMAND", "GETKEYSANDFLAGS", name, *args)
        movable = any(getattr(f, "s", f) == "movablekeys" for f in row[2])
        if row[3] == 0 and not movable:  # EVAL's keys come from its key count
            assert isinstance(pair.k.cmd("COMMAND", "GETKEYS", name, "a", "b", "c"), Err)
    # subcommands that are not Redis 7.0's are unknown to GETKEYS, as to INFO and DOCS
    for args in [("client", "setinfo", "lib-name", "x"), ("client", "no-touch", "on")]:
        assert pair.k.cmd("COMMAND", "GETKEYS", *args) == Err("ERR Invalid command specified")


def test_getkeys_big_argument_list(pair):
    keys = ["key:%d" % i for i in range(3000)]
    assert pair.same("COMMAND", "GETKEYS", "del", *keys) == [k.encode() for k in keys]
    pair.same("COMMAND", "GETKEYSANDFLAGS", "mset", *keys)


# ---- COMMAND COUNT, LIST, HELP, errors ---------------------------------------------------

def test_count_and_list(pair):
    count = pair.k.cmd("COMMAND", "COUNT")
    names = kvd_names(pair)
    assert count == len(names) == len(pair.k.cmd("COMMAND"))
    assert names == sorted(names)
    redis_names = {n.decode() for n in pair.r.cmd("COMMAND", "LIST")}
    assert set(names) <= redis_names, set(names) - redis_names
    # the subcommands too, as "container|sub", as Redis 7.0 lists them
    listed = {n.decode() for n in pair.k.cmd("COMMAND", "LIST")}
    assert listed == kvd_full_names(pair), listed ^ kvd_full_names(pair)
    assert listed <= redis_names, listed - redis_names
    assert any("|" in n for n in redis_names)


def kvd_full_names(pair):
    names = set(kvd_names(pair))
    for c, subs in KVD_SUBCOMMANDS.items():
        names |= {"%s|%s" % (c, s) for s in subs}
    return names


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_list_filterby_matches_redis_on_kvd_commands(pair, proto):
    hello(pair, proto)
    mine = kvd_full_names(pair)
    for ftype, arg in [("PATTERN", "get*"), ("pattern", "*"), ("PATTERN", "client|*"),
                       ("PATTERN", "*|*"), ("PATTERN", "C?IENT*"), ("PATTERN", "[sg]et"),
                       ("PATTERN", "nomatch"), ("ACLCAT", "string"), ("aclcat", "KEYSPACE"),
                       ("ACLCAT", "admin"), ("ACLCAT", "connection"), ("ACLCAT", "slow"),
                       ("ACLCAT", "fast"), ("ACLCAT", "dangerous"), ("ACLCAT", "nosuchcat"),
                       ("ACLCAT", "@string"), ("MODULE", "x"), ("module", "")]:
        k, r = pair.both("COMMAND", "LIST", "FILTERBY", ftype, arg)
        kn = sorted(n.decode() for n in k)
        rn = sorted(n.decode() for n in r if n.decode() in mine)
        assert kn == rn, (ftype, arg, kn, rn)
        if ftype.upper() != "MODULE" and arg not in ("nomatch", "nosuchcat", "@string"):
            assert kn, (ftype, arg)


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_command_errors_and_help_match_redis(pair, proto):
    hello(pair, proto)
    for args in [("FOO",), ("COUNT", "x"), ("HELP",), ("help", "x"), ("LIST", "x"),
                 ("LIST", "FILTERBY"), ("LIST", "FILTERBY", "PATTERN"),
                 ("LIST", "FILTERBY", "x", "y"), ("LIST", "FILTERBY", "PATTERN", "a", "b"),
                 ("LIST", "x", "PATTERN", "a"), ("GETKEYS",), ("GETKEYSANDFLAGS",),
                 ("DOCS", "nosuch"), ("INFO", "nosuch"), ("", ""), ("x" * 100,)]:
        pair.same("COMMAND", *args)


def test_command_count_in_resp3(pair):
    hello(pair, "3")
    assert pair.k.cmd("COMMAND", "COUNT") == len(kvd_names(pair))
    # element 3 (flags) is a set of status strings in RESP3
    row = pair.k.cmd("COMMAND", "INFO", "get")[0]
    assert row[2] == RSet((St("readonly"), St("fast")))


def test_getkeysandflags_of_bitfield_depend_on_its_operations(pair):
    for args in (["k"], ["k", "get", "u8", "0"], ["k", "GET", "u8", "0", "overflow", "sat"],
                 ["k", "get", "u8", "0", "set", "u8", "0", "1"], ["k", "get", "u8"],
                 ["k", "overflow", "sat", "incrby", "u8", "0", "1"], ["k", "nope", "x"]):
        pair.same("COMMAND", "GETKEYSANDFLAGS", "bitfield", *args)
        pair.same("COMMAND", "GETKEYS", "bitfield", *args)
        pair.same("COMMAND", "GETKEYSANDFLAGS", "bitfield_ro", *args)


def test_unknown_subcommands_match_redis(pair):
    """Redis's lookup finds no command for a container's unknown subcommand: the error
    comes before anything else (the arity, and, in test_kvd_acl, NOAUTH), a MULTI that
    queued one is aborted, a script gets "Unknown Redis command", and the HELP of every
    container lists the subcommands the error points to."""
    for container in KVD_SUBCOMMANDS:
        pair.same(container, "nosuch")
        pair.same(container, "NoSuch", "x", "y")
        pair.same(container, "x" * 200)  # the name is cut at 128 bytes, as Redis does
    for args in [("CONFIG", "HELP"), ("SLOWLOG", "HELP"), ("CONFIG", "HELP", "x"),
                 ("SLOWLOG", "HELP", "x"), ("SCRIPT", "DEBUG"), ("SCRIPT", "DEBUG", "x"),
                 ("SCRIPT", "DEBUG", "no"), ("SCRIPT", "DEBUG", "NO", "x")]:
        pair.same(*args)
    for c in (pair.k, pair.r):
        assert c.cmd("MULTI") == St("OK")
    pair.same("CONFIG", "FOO")
    pair.same("SCRIPT", "DEBUG", "NO")  # queued: refused inside a transaction at EXEC
    pair.same("EXEC")
    for c in (pair.k, pair.r):
        assert c.cmd("MULTI") == St("OK")
    pair.same("SCRIPT", "DEBUG", "NO")
    pair.same("EXEC")
    pair.same("EVAL", "return redis.pcall('config', 'foo')", "0")
    pair.same("EVAL", "return redis.pcall('client', 'nosuch', 'x')", "0")
    pair.same("EVAL", "return redis.pcall('config', 'get')", "0")


def test_script_debug_yes_is_refused(kvd):
    """kvd has no Lua debugger: SCRIPT DEBUG YES and SYNC are refused (Redis turns it on
    for the client's next script); NO, the default, is accepted."""
    c = kvd.client()
    for mode in ("YES", "sync"):
        r = c.cmd("SCRIPT", "DEBUG", mode)
        assert isinstance(r, Err) and "not supported" in str(r), r
    assert c.cmd("SCRIPT", "DEBUG", "NO") == St("OK")
    assert c.cmd("EVAL", "return 1", "0") == 1


def test_cluster_commands_answer_as_redis_without_cluster_support(pair):
    """kvd is not a Redis Cluster node (cluster-enabled no): CLUSTER and its subcommands,
    READONLY, READWRITE and ASKING answer as Redis's then, its generic checks (arity,
    unknown subcommand) first; COMMAND LIST names the subcommands."""
    for args in [("CLUSTER", "INFO"), ("CLUSTER", "HELP"), ("CLUSTER", "NODES"),
                 ("CLUSTER", "SLOTS"), ("CLUSTER", "SHARDS"), ("CLUSTER", "MYID"),
                 ("CLUSTER", "KEYSLOT", "a"), ("CLUSTER", "KEYSLOT"), ("CLUSTER",),
                 ("CLUSTER", "INFO", "x"), ("CLUSTER", "nosuch"), ("cluster", "info"),
                 ("READONLY",), ("READWRITE",), ("ASKING",), ("READONLY", "x"),
                 ("ASKING", "x")]:
        pair.same(*args)
    for c in (pair.k, pair.r):
        assert c.cmd("MULTI") == St("OK")
    pair.same("CLUSTER", "INFO")
    pair.same("EXEC")
    pair.same("EVAL", "return redis.pcall('cluster', 'info')", "0")
    k, r = pair.both("COMMAND", "LIST", "FILTERBY", "PATTERN", "cl*help")
    assert sorted(k) == sorted(r) == [b"client|help", b"cluster|help"]
