"""WATCH / UNWATCH of kvd against Redis 7: which changes of a watched key make EXEC
fail (writes that change nothing do not, as in Redis), expiry between WATCH and EXEC,
keys already expired when watched, FLUSHALL, the commands that end the watching (EXEC,
DISCARD, UNWATCH, RESET, a refused EXEC; not EXEC without MULTI), WATCH inside MULTI;
then kvd's own: watched keys in partitions of both shard threads (each thread keeps
the watches of its keys; a transaction then runs across threads), watches
kept on the other shard thread and dropped when the client leaves (INFO's
watching_clients / total_watched_keys), ordering under pipelining, and optimistic
locking under concurrency with redis-py's transaction().
"""
import threading
import time

import redis

from conftest import Err, St, encode, wait_until

# (name, commands before WATCH, what happens between WATCH and MULTI, transaction).
# "w" is the watching client, "o" another one; "sleep" waits until x has expired (PTTL
# -2; the TTLs are long enough for WATCH to come first on a loaded machine). Keys are
# {T}x etc.
# (T: a hash tag, so that every key of a case is in one partition).
CASES = [
    ("untouched", [("SET", "x", "1")], [("w", "WATCH", "x")], [("PING",)]),
    ("other_sets", [("SET", "x", "1")], [("w", "WATCH", "x"), ("o", "SET", "x", "2")], None),
    ("self_sets", [("SET", "x", "1")], [("w", "WATCH", "x"), ("w", "SET", "x", "2")], None),
    ("same_value", [("SET", "x", "1")], [("w", "WATCH", "x"), ("o", "SET", "x", "1")], None),
    ("setnx_fails", [("SET", "x", "1")], [("w", "WATCH", "x"), ("o", "SETNX", "x", "2")], None),
    ("del_missing", [], [("w", "WATCH", "x"), ("o", "DEL", "x")], None),
    ("set_missing", [], [("w", "WATCH", "x"), ("o", "SET", "x", "1")], None),
    ("expire", [("SET", "x", "1")], [("w", "WATCH", "x"), ("o", "EXPIRE", "x", "100")], None),
    ("expire_missing", [], [("w", "WATCH", "x"), ("o", "EXPIRE", "x", "100")], None),
    ("expire_past", [("SET", "x", "1")], [("w", "WATCH", "x"), ("o", "PEXPIREAT", "x", "1")],
     None),
    ("persist_no_ttl", [("SET", "x", "1")], [("w", "WATCH", "x"), ("o", "PERSIST", "x")], None),
    ("persist_ttl", [("SET", "x", "1", "EX", "100")], [("w", "WATCH", "x"),
                                                       ("o", "PERSIST", "x")], None),
    ("incrby_0", [("SET", "x", "1")], [("w", "WATCH", "x"), ("o", "INCRBY", "x", "0")], None),
    ("incrbyfloat_0", [("SET", "x", "1")], [("w", "WATCH", "x"),
                                            ("o", "INCRBYFLOAT", "x", "0")], None),
    ("append_empty", [("SET", "x", "1")], [("w", "WATCH", "x"), ("o", "APPEND", "x", "")], None),
    ("setrange_empty", [("SET", "x", "1")], [("w", "WATCH", "x"),
                                             ("o", "SETRANGE", "x", "0", "")], None),
    ("setrange_empty_missing", [], [("w", "WATCH", "x"), ("o", "SETRANGE", "x", "0", "")],
     None),
    ("setrange", [("SET", "x", "1")], [("w", "WATCH", "x"), ("o", "SETRANGE", "x", "0", "a")],
     None),
    ("getex_plain", [("SET", "x", "1")], [("w", "WATCH", "x"), ("o", "GETEX", "x")], None),
    ("getex_persist_no_ttl", [("SET", "x", "1")], [("w", "WATCH", "x"),
                                                   ("o", "GETEX", "x", "PERSIST")], None),
    ("getex_ex", [("SET", "x", "1")], [("w", "WATCH", "x"), ("o", "GETEX", "x", "EX", "100")],
     None),
    ("getdel", [("SET", "x", "1")], [("w", "WATCH", "x"), ("o", "GETDEL", "x")], None),
    ("getdel_missing", [], [("w", "WATCH", "x"), ("o", "GETDEL", "x")], None),
    ("flushall", [("SET", "x", "1")], [("w", "WATCH", "x"), ("o", "FLUSHALL",)], None),
    ("flushdb", [("SET", "x", "1")], [("w", "WATCH", "x"), ("o", "FLUSHDB",)], None),
    ("flushall_missing", [("SET", "y", "1")], [("w", "WATCH", "x"), ("o", "FLUSHALL",)], None),
    ("expires_after_watch", [("SET", "x", "1", "PX", "150")], [("w", "WATCH", "x"), "sleep"],
     None),
    ("expires_then_read", [("SET", "x", "1", "PX", "150")], [("w", "WATCH", "x"), "sleep",
                                                              ("o", "GET", "x")], None),
    ("stale_when_watched", [("SET", "x", "1", "PX", "1")], ["sleep", ("w", "WATCH", "x")], None),
    ("stale_then_exists", [("SET", "x", "1", "PX", "1")], ["sleep", ("w", "WATCH", "x"),
                                                           ("o", "EXISTS", "x")], None),
    ("stale_then_set", [("SET", "x", "1", "PX", "1")], ["sleep", ("w", "WATCH", "x"),
                                                        ("o", "SET", "x", "2")], None),
    ("stale_then_flush", [("SET", "x", "1", "PX", "1")], ["sleep", ("w", "WATCH", "x"),
                                                          ("o", "FLUSHALL",)], None),
    ("stale_then_del", [("SET", "x", "1", "PX", "1")], ["sleep", ("w", "WATCH", "x"),
                                                        ("o", "DEL", "x")], None),
    ("rename_src", [("SET", "x", "1")], [("w", "WATCH", "x"), ("o", "RENAME", "x", "y")], None),
    ("rename_dst", [("SET", "x", "1")], [("w", "WATCH", "y"), ("o", "RENAME", "x", "y")], None),
    ("rename_same", [("SET", "x", "1")], [("w", "WATCH", "x"), ("o", "RENAME", "x", "x")], None),
    ("copy_dst", [("SET", "x", "1")], [("w", "WATCH", "y"), ("o", "COPY", "x", "y")], None),
    ("unwatched", [("SET", "x", "1")], [("w", "WATCH", "x"), ("w", "UNWATCH"),
                                        ("o", "SET", "x", "2")], None),
    ("watch_twice", [("SET", "x", "1")], [("w", "WATCH", "x"), ("w", "WATCH", "x"),
                                          ("o", "SET", "x", "2")], None),
    ("second_of_two", [("SET", "x", "1")], [("w", "WATCH", "x", "y"), ("o", "SET", "y", "2")],
     None),
    ("unrelated_key", [("SET", "x", "1")], [("w", "WATCH", "x"), ("o", "SET", "y", "2")], None),
    ("bitop_dst", [("SET", "x", "1")], [("w", "WATCH", "d"), ("o", "BITOP", "AND", "d", "x")],
     None),
    ("bitop_dst_empty", [], [("w", "WATCH", "d"), ("o", "BITOP", "AND", "d", "x")], None),
    ("mset", [], [("w", "WATCH", "b"), ("o", "MSET", "a", "1", "b", "2")], None),
    ("msetnx_fails", [("SET", "a", "1")], [("w", "WATCH", "b"),
                                           ("o", "MSETNX", "a", "1", "b", "2")], None),
    ("setbit_same", [("SET", "x", "\x00")], [("w", "WATCH", "x"),
                                             ("o", "SETBIT", "x", "0", "0")], None),
    ("setbit_changes", [("SET", "x", "\x00")], [("w", "WATCH", "x"),
                                                ("o", "SETBIT", "x", "0", "1")], None),
    ("setbit_grows", [("SET", "x", "\x00")], [("w", "WATCH", "x"),
                                              ("o", "SETBIT", "x", "15", "0")], None),
    ("other_transaction", [("SET", "x", "1")],
     [("w", "WATCH", "x"), ("o", "MULTI"), ("o", "INCR", "x"), ("o", "EXEC")], None),
    ("own_transaction_writes", [("SET", "x", "1")], [("w", "WATCH", "x")],
     [("SET", "x", "3"), ("GET", "x")]),
]


def tagged(args, tag):
    """The command with its key arguments in partition {tag} (x, y, a, b, d are keys)."""
    return tuple("{%s}%s" % (tag, a) if a in ("x", "y", "a", "b", "d") else a for a in args)


def run_case(server, tag, setup, between, txn):
    with server.client() as w, server.client() as o:
        o.cmd("FLUSHALL")
        for cmd in setup:
            o.cmd(*tagged(cmd, tag))
        who = {"w": w, "o": o}
        out = []
        for step in between:
            if step == "sleep":
                x = tagged(("x",), tag)[0]
                while o.cmd("PTTL", x) != -2:
                    time.sleep(0.005)
            else:
                out.append(who[step[0]].cmd(*tagged(step[1:], tag)))
        out.append(w.cmd("MULTI"))
        for cmd in txn or [("PING",)]:
            out.append(w.cmd(*tagged(cmd, tag)))
        out.append(w.cmd("EXEC"))
        out.append(w.cmd("GET", *tagged(("x",), tag)))
        return out


def forwarded(kvd):
    with kvd.client() as c:
        text = c.cmd("INFO", "stats").decode()
    return int(text.split("commands_forwarded:")[1].split("\r\n")[0])


def test_watch_cases_match_redis(kvd, redis_server):
    """Every case, with keys of 6 partitions (so on both shard threads: watches kept on
    the client's thread and on the other one), on kvd and Redis alike."""
    before = forwarded(kvd)
    for name, setup, between, txn in CASES:
        for tag in range(6):
            k = run_case(kvd, tag, setup, between, txn)
            r = run_case(redis_server, tag, setup, between, txn)
            assert k == r, "case %s tag %d:\n  kvd:   %r\n  redis: %r" % (name, tag, k, r)
    assert forwarded(kvd) - before >= 20  # watches and EXECs on the other thread


# Whole conversations of two clients compared reply by reply: what ends the watching.
FLOWS = {
    "discard_unwatches": [("w", "SET", "{t}x", "1"), ("w", "WATCH", "{t}x"), ("w", "MULTI"),
                          ("w", "DISCARD"), ("o", "SET", "{t}x", "2"), ("w", "MULTI"),
                          ("w", "PING"), ("w", "EXEC")],
    "exec_unwatches": [("w", "WATCH", "{t}x"), ("w", "MULTI"), ("w", "PING"), ("w", "EXEC"),
                       ("o", "SET", "{t}x", "3"), ("w", "MULTI"), ("w", "PING"), ("w", "EXEC")],
    "failed_exec_unwatches": [("w", "WATCH", "{t}x"), ("o", "SET", "{t}x", "3"),
                              ("w", "MULTI"), ("w", "PING"), ("w", "EXEC"), ("w", "MULTI"),
                              ("w", "PING"), ("w", "EXEC")],
    "execabort_unwatches": [("w", "WATCH", "{t}x"), ("w", "MULTI"), ("w", "NOSUCH"),
                            ("w", "EXEC"), ("o", "SET", "{t}x", "4"), ("w", "MULTI"),
                            ("w", "PING"), ("w", "EXEC")],
    "execabort_wins_over_dirty": [("w", "WATCH", "{t}x"), ("o", "SET", "{t}x", "5"),
                                  ("w", "MULTI"), ("w", "NOSUCH"), ("w", "EXEC")],
    "exec_arity_unwatches": [("w", "WATCH", "{t}x"), ("w", "MULTI"), ("w", "EXEC", "x"),
                             ("o", "SET", "{t}x", "4"), ("w", "MULTI"), ("w", "PING"),
                             ("w", "EXEC")],
    "exec_arity_without_multi_unwatches": [("w", "WATCH", "{t}x"), ("w", "EXEC", "x"),
                                           ("o", "SET", "{t}x", "4"), ("w", "MULTI"),
                                           ("w", "PING"), ("w", "EXEC")],
    "reset_unwatches": [("w", "WATCH", "{t}x"), ("w", "RESET"), ("o", "SET", "{t}x", "6"),
                        ("w", "MULTI"), ("w", "PING"), ("w", "EXEC")],
    "exec_without_multi_keeps_watching": [("w", "WATCH", "{t}x"), ("o", "SET", "{t}x", "7"),
                                          ("w", "EXEC"), ("w", "MULTI"), ("w", "PING"),
                                          ("w", "EXEC")],
    "unwatch_inside_multi": [("w", "WATCH", "{t}x"), ("w", "MULTI"), ("w", "UNWATCH"),
                             ("o", "SET", "{t}x", "8"), ("w", "EXEC")],
    "watch_inside_multi": [("w", "MULTI"), ("w", "WATCH", "{t}x"), ("w", "SET", "{t}x", "9"),
                           ("w", "EXEC"), ("w", "GET", "{t}x")],
    "watch_arity": [("w", "WATCH"), ("w", "UNWATCH"), ("w", "UNWATCH", "x")],
    "pipelined_by_other": [("w", "WATCH", "{t}x", "{t}y"), ("o", "DEL", "{t}y"),
                           ("o", "SET", "{t}y", "1"), ("w", "MULTI"), ("w", "GET", "{t}y"),
                           ("w", "EXEC")],
    "resp3_null": [("w", "HELLO", "3"), ("w", "WATCH", "{t}x"), ("o", "SET", "{t}x", "1"),
                   ("w", "MULTI"), ("w", "PING"), ("w", "EXEC")],
}


def test_watch_flows_match_redis(kvd, redis_server):
    for name, steps in sorted(FLOWS.items()):
        for tag in ("t", "u", "v", "w1"):
            results = []
            for server in (kvd, redis_server):
                with server.client() as w, server.client() as o:
                    o.cmd("FLUSHALL")
                    who = {"w": w, "o": o}
                    out = []
                    for step in steps:
                        args = tuple(a.replace("{t}", "{%s}" % tag) for a in step[1:])
                        c = who[step[0]]
                        c.send(encode(*args))
                        _, raw = c.read_both()
                        out.append(raw if args[0] != "HELLO" else b"(server-specific)")
                    results.append(out)
            k, r = results
            assert k == r, "flow %s tag %s:\n  kvd:   %r\n  redis: %r" % (name, tag, k, r)


def test_watched_keys_in_many_partitions(kvd):
    """WATCH takes keys of any partitions, in one call or several; a change of any of
    them, on either thread, fails the EXEC; untouched, the transaction (its keys in
    other partitions still) commits."""
    tags = ["{%s}" % t for t in "abcdefgh"]  # partitions of both threads
    with kvd.client() as c, kvd.client() as o:
        for changed in [None] + tags:
            assert c.cmd("WATCH", *[t + "x" for t in tags[:4]]) == St("OK")
            assert c.cmd("WATCH", *[t + "x" for t in tags[4:]]) == St("OK")
            if changed is not None:
                assert o.cmd("INCR", changed + "x") > 0
            got = c.pipeline([("MULTI",)] + [("SET", t + "k", "v") for t in tags] + [("EXEC",)])
            if changed is None:
                assert got[-1] == [St("OK")] * len(tags), got[-1]
            else:
                assert got[-1] is None, (changed, got[-1])
            assert c.cmd("DEL", *[t + "k" for t in tags]) == (len(tags) if changed is None else 0)


def watch_counts(kvd):
    with kvd.client() as c:
        text = c.cmd("INFO", "clients").decode()
    f = dict(line.split(":", 1) for line in text.split("\r\n") if ":" in line)
    return int(f["watching_clients"]), int(f["total_watched_keys"])


def test_watches_are_dropped_when_clients_leave(kvd):
    """Clients on both threads watch keys of partitions on both threads; INFO counts
    them; EXEC, UNWATCH, DISCARD and closing the connection each drop them."""
    assert watch_counts(kvd) == (0, 0)
    clients = [kvd.client() for _ in range(12)]
    for i, c in enumerate(clients):
        assert c.cmd("WATCH", "{%d}a" % i, "{%d}b" % i, "{shared}%d" % (i % 3)) in (
            St("OK"), Err("CROSSSLOT Keys in request don't hash to the same slot"))
        c.cmd("UNWATCH")
        assert c.cmd("WATCH", "{%d}a" % i, "{%d}b" % i) == St("OK")
    wait_until(lambda: watch_counts(kvd) == (12, 24), 5, what="12 clients watching 24 keys")
    ends = [("EXEC",), ("UNWATCH",), ("DISCARD",), None]
    for i, c in enumerate(clients):
        end = ends[i % 4]
        if end is None:
            c.close()
        elif end[0] == "UNWATCH":
            assert c.cmd("UNWATCH") == St("OK")
        else:
            assert c.cmd("MULTI") == St("OK")
            assert c.cmd(*end) in (St("OK"), [])
    wait_until(lambda: watch_counts(kvd) == (0, 0), 5, what="every watch dropped")
    for c in clients:
        c.close()


def test_pipelined_watch_transactions_keep_order(kvd):
    """WATCH, the read, MULTI, the write and EXEC in one write, over many partitions:
    whatever thread keeps the watches, the replies come in order and each EXEC sees
    its own WATCH (clean) or another client's change (null)."""
    with kvd.client() as c, kvd.client() as o:
        cmds = []
        for i in range(300):
            tag = i % 23
            cmds += [("WATCH", "{%d}n" % tag), ("GET", "{%d}n" % tag), ("MULTI",),
                     ("INCR", "{%d}n" % tag), ("EXEC",)]
        replies = c.pipeline(cmds)
        count = {}
        for i in range(300):
            tag = i % 23
            count[tag] = count.get(tag, 0) + 1
            wt, get, m, q, ex = replies[5 * i:5 * i + 5]
            assert (wt, m, q) == (St("OK"), St("OK"), St("QUEUED")), replies[5 * i:5 * i + 5]
            assert ex == [count[tag]], (i, ex)
        # a change by another client between WATCH and EXEC, on every partition
        for tag in range(23):
            assert c.cmd("WATCH", "{%d}n" % tag) == St("OK")
            o.cmd("INCR", "{%d}n" % tag)
            assert c.pipeline([("MULTI",), ("INCR", "{%d}n" % tag), ("EXEC",)])[-1] is None
    wait_until(lambda: watch_counts(kvd) == (0, 0), 5, what="every watch dropped")


def test_optimistic_locking_under_concurrency(kvd):
    """redis-py's transaction(): read, compute, write under WATCH, retried when another
    client changed the key; with 6 clients incrementing counters on both threads no
    increment is lost and some retries happened."""
    n_clients, rounds = 6, 150
    retries = [0]
    errors = []
    keys = ["{c%d}counter" % i for i in range(2)]

    def worker(seed):
        try:
            r = redis.Redis(host="127.0.0.1", port=kvd.port)
            for i in range(rounds):
                key = keys[(seed + i) % len(keys)]
                attempts = [0]

                def incr(pipe):
                    attempts[0] += 1
                    v = int(pipe.get(key) or 0)
                    pipe.multi()
                    pipe.set(key, v + 1)
                r.transaction(incr, key)
                retries[0] += attempts[0] - 1
            r.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    with kvd.client() as c:
        total = sum(int(c.cmd("GET", k) or 0) for k in keys)
    assert total == n_clients * rounds
    assert retries[0] > 0, "no conflict at all: the test did not exercise WATCH"
    wait_until(lambda: watch_counts(kvd) == (0, 0), 5, what="every watch dropped")
