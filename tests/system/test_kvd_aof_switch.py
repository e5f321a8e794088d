"""CONFIG SET appendonly yes|no at run time (io/aof.h): the WAL switched on over a dump
of that instant (its base), switched off with what it holds written out, and a switch
whose base was never finished set aside at the next start (all of the new WAL or none).
Every durability claim is checked by kill -9 and a restart on the same --dir.
"""
import os
import threading
import time

from conftest import Err, St, crash_restart, info_field, kvd_fp_path, threads_running, wait_until
from conftest import info_persistence as info

NO = ["--appendonly", "no", "--save", ""]
YES = ["--appendonly", "yes"]


def keys(prefix, n=40):
    """Keys of both shard threads (2 threads, 8 partitions: 40 keys cover both)."""
    return ["%s:%d" % (prefix, i) for i in range(n)]


def wait_switched(c, on):
    """Until the switch is done (and, on, its base dump written): Redis's
    waitForBgrewriteaof reads the same two fields."""
    def done():
        i = info(c)
        return (i["aof_rewrite_in_progress"] == "0" and i["aof_rewrite_scheduled"] == "0"
                and i["aof_enabled"] == ("1" if on else "0"))
    wait_until(done, 30, what="appendonly switched %s" % ("on" if on else "off"))


def write_all(c, names, value):
    assert c.pipeline([("SET", n, value) for n in names]) == [St("OK")] * len(names)


def test_switched_on_every_write_survives_kill9(kvds):
    k = kvds(args=NO)
    c = k.client()
    before, after = keys("before"), keys("after")
    write_all(c, before, "b")  # in memory only: the base dump will hold them
    c.ok("SET", "ttl", "t", "EX", "1000")
    c.ok("SET", "counter", "10")
    assert c.cmd("CONFIG", "SET", "appendonly", "yes") == St("OK")
    assert c.cmd("CONFIG", "GET", "appendonly") == [b"appendonly", b"yes"]
    assert info(c)["aof_enabled"] == "1"  # as Redis: at once, the rewrite following
    # writes right after the command: before or after the switch, never lost
    write_all(c, after, "a")
    assert c.cmd("INCRBY", "counter", "5") == 15
    c.ok("SET", "gone", "x")
    assert c.cmd("DEL", "gone") == 1
    c.ok("SET", "px", "v", "PX", "2000000")
    wait_switched(c, True)
    assert c.cmd("INCR", "counter") == 16  # logged by the WAL, acknowledged when durable
    write_all(c, after[:10], "a2")
    names = os.listdir(k.data_dir())
    assert any(n.startswith("wal-") for n in names), names
    assert any(n.endswith(".done") for n in names), names  # the base dump's marker
    c.close()
    for args in (YES, NO):  # the data dir serves both modes
        k, c = crash_restart(kvds, k, args=args)
        assert c.cmd("MGET", *before) == [b"b"] * len(before)
        assert c.cmd("MGET", *after) == [b"a2"] * 10 + [b"a"] * (len(after) - 10)
        assert c.cmd("GET", "counter") == b"16"
        assert c.cmd("EXISTS", "gone") == 0
        assert 990 <= c.cmd("TTL", "ttl") <= 1000
        assert 1990000 - 60000 <= c.cmd("PTTL", "px") <= 2000000
        c.close()
    assert k.stop() == 0


def test_switched_off_the_wal_is_written_out_and_dumps_take_over(kvds):
    k = kvds(args=YES + ["--save", ""])
    c = k.client()
    first, second, third = keys("first"), keys("second"), keys("third")
    write_all(c, first, "1")
    assert c.cmd("CONFIG", "SET", "appendonly", "no") == St("OK")
    wait_switched(c, False)
    assert info_field(c, "persistence", "wal_refusing_writes") == "0"
    write_all(c, second, "2")  # memory only now, until a dump
    c.close()
    k, c = crash_restart(kvds, k, args=NO)
    assert c.cmd("MGET", *first) == [b"1"] * len(first)  # the WAL held them
    assert c.cmd("EXISTS", *second) == 0                 # as Redis without a save
    write_all(c, second, "2")
    assert c.cmd("CONFIG", "SET", "appendonly", "yes") == St("OK")
    wait_switched(c, True)
    assert c.cmd("CONFIG", "SET", "appendonly", "no") == St("OK")
    wait_switched(c, False)
    write_all(c, third, "3")
    assert c.cmd("SAVE") == St("OK")  # a dump: covers the WAL's files too
    c.close()
    names = os.listdir(k.data_dir())
    assert not [n for n in names if n.startswith("wal-")], names
    k, c = crash_restart(kvds, k, args=NO)
    assert c.cmd("MGET", *first) == [b"1"] * len(first)
    assert c.cmd("MGET", *second) == [b"2"] * len(second)
    assert c.cmd("MGET", *third) == [b"3"] * len(third)
    c.close()
    assert k.stop() == 0


def test_a_base_never_finished_sets_the_new_wal_aside(kvds):
    """The base dump's child dies before its marker (a failpoint, each try): the WAL
    switched on has nothing to stand on. SHUTDOWN is refused meanwhile (as Redis's
    "Writing initial AOF, can't exit."); after kill -9 the start sets its segments
    aside and the data is that of the last finished dump; the WAL opened then keeps
    what is written after it."""
    k = kvds(args=NO)
    c = k.client()
    saved, unsaved, logged = keys("saved"), keys("unsaved"), keys("logged")
    write_all(c, saved, "s")
    assert c.cmd("SAVE") == St("OK")
    c.close()
    k, c = crash_restart(kvds, k, bin=kvd_fp_path(), env={"KVD_FAILPOINTS": "dump-before-marker"})
    write_all(c, unsaved, "u")
    assert c.cmd("CONFIG", "SET", "appendonly", "yes") == St("OK")
    wait_until(lambda: "background save failed" in k.stderr(), 30, what="the base dump fails")
    write_all(c, logged, "l")  # acknowledged, but the WAL has no base
    i = info(c)
    assert i["aof_enabled"] == "1" and i["aof_rewrite_in_progress"] in ("0", "1")
    assert c.cmd("SHUTDOWN") == Err("ERR Errors trying to SHUTDOWN. Check logs.")
    assert "Writing initial AOF, can't exit." in k.stderr()
    c.close()
    k, c = crash_restart(kvds, k, args=NO, bin=kvd_fp_path(), env={})
    assert "set aside (*.unbased)" in k.stderr()
    names = os.listdir(k.data_dir())
    assert [n for n in names if n.endswith(".unbased")], names
    assert c.cmd("MGET", *saved) == [b"s"] * len(saved)
    assert c.cmd("EXISTS", *unsaved) == 0 and c.cmd("EXISTS", *logged) == 0
    # switched on again (no failpoint now): what follows survives, restart after restart
    assert c.cmd("CONFIG", "SET", "appendonly", "yes") == St("OK")
    wait_switched(c, True)
    write_all(c, logged, "l2")
    c.close()
    for _ in range(2):
        k, c = crash_restart(kvds, k, args=YES)
        assert c.cmd("MGET", *saved) == [b"s"] * len(saved)
        assert c.cmd("MGET", *logged) == [b"l2"] * len(logged)
        c.close()
    assert k.stop() == 0


def test_switching_back_and_forth_under_writes_loses_nothing_acknowledged(kvds):
    """A writer INCRs keys of both threads while appendonly goes yes, no, yes, ... and
    BGSAVEs run into the switches (snapshot rounds cancelled by a switch off, dumps forked
    while a WAL is written out); once it is on (its base written) and the writer stopped,
    kill -9: every key has the value of its last acknowledged INCR, in both modes."""
    k = kvds(args=NO)
    c = k.client()
    names = keys("n", 20)
    last = {}
    stop = threading.Event()
    errors = []

    def writer():
        w = k.client()
        try:
            i = 0
            while not stop.is_set():
                name = names[i % len(names)]
                last[name] = w.cmd("INCR", name)
                i += 1
        except Exception as e:  # reported below
            errors.append(e)
        finally:
            w.close()

    def saver():  # snapshot rounds and dumps running into the switches
        s = k.client()
        try:
            while not stop.is_set():
                r = s.cmd("BGSAVE")
                assert r in (St("Background saving started"),
                             Err("ERR Background save already in progress")), r
                time.sleep(0.01)
        except Exception as e:  # reported below
            errors.append(e)
        finally:
            s.close()

    threads = [threading.Thread(target=writer), threading.Thread(target=saver)]
    with threads_running(threads, stop):
        for on in (True, False, True, False, True, False, True):
            assert c.cmd("CONFIG", "SET", "appendonly", "yes" if on else "no") == St("OK")
            wait_switched(c, on)
            time.sleep(0.15)
    assert not errors, errors
    assert len(last) == len(names)
    c.close()
    want = [str(last[n]).encode() for n in names]
    k, c = crash_restart(kvds, k, args=YES)
    assert c.cmd("MGET", *names) == want
    c.close()
    k, c = crash_restart(kvds, k, args=NO)  # the same files, read without the WAL on
    assert c.cmd("MGET", *names) == want
    c.close()
    assert k.stop() == 0


def test_functions_loaded_while_the_base_is_written_stay(kvds):
    """A FUNCTION LOAD while the base dump's child writes (the data of the switch's
    instant): with the WAL on, the function file is written at once, and the child must
    not put its older copy over it."""
    # kvd-fp: the dump's child sleeps 100 ms after each partition (dump-child-slow)
    k = kvds(args=NO, bin=kvd_fp_path(), env={"KVD_FAILPOINTS": "dump-child-slow"})
    c = k.client()
    value = "v" * 200
    for start in range(0, 20000, 10000):
        assert c.pipeline([("SET", "big:%d" % i, value) for i in range(start, start + 10000)]) \
            == [St("OK")] * 10000
    assert c.cmd("CONFIG", "SET", "appendonly", "yes") == St("OK")
    wait_until(lambda: info(c)["aof_rewrite_in_progress"] == "1", 30, interval=0.005,
               what="the base dump running")
    code = "#!lua name=late\nredis.register_function('late', function() return 7 end)"
    assert c.cmd("FUNCTION", "LOAD", code) == b"late"
    wait_switched(c, True)
    c.close()
    k, c = crash_restart(kvds, k, args=YES, env={})
    assert c.cmd("FCALL", "late", "0") == 7
    assert c.cmd("DBSIZE") == 20000
    c.close()
    assert k.stop() == 0


def test_config_set_appendonly_replies_and_rewrite(kvds, tmp_path):
    conf = tmp_path / "kvd.conf"
    conf.write_text("appendonly no\nsave \"\"\n")
    k = kvds(args=["--config", str(conf)])
    c = k.client()
    assert c.cmd("CONFIG", "SET", "appendonly", "maybe") == Err(
        "ERR CONFIG SET failed (possibly related to argument 'appendonly') - argument must be "
        "'yes' or 'no'")
    assert c.cmd("CONFIG", "SET", "appendonly", "yes") == St("OK")
    assert c.cmd("CONFIG", "SET", "appendonly", "yes") == St("OK")  # nothing to do
    wait_switched(c, True)
    assert c.cmd("CONFIG", "SET", "aof-use-rdb-preamble", "no") == St("OK")
    assert c.cmd("CONFIG", "REWRITE") == St("OK")
    assert "appendonly yes" in conf.read_text()
    c.close()
    k, c = crash_restart(kvds, k)  # started by the rewritten file: the WAL is on
    assert info(c)["aof_enabled"] == "1"
    c.close()
    assert k.stop() == 0
