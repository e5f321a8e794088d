"""Snapshots with --appendonly no (io/dump.h), as Redis's RDB: SAVE, BGSAVE, the `save`
points, SHUTDOWN and SIGTERM saving first, FLUSHALL saving the emptied data set, DEBUG
RELOAD / LOADAOF, BGREWRITEAOF, LASTSAVE and INFO persistence, and switching between appendonly no and yes on one
data directory. Every durability claim is checked by kill -9 and a restart on the same
--dir. A dump is one instant of every shard: writes pipelined after SAVE or BGSAVE (on
either shard thread) are not in it, those before it are.
"""
import os
import signal
import threading
import time

from conftest import Err, St, crash_restart, info_field, kvd_fp_path, restart, wait_until
from conftest import info_persistence as info

NO = ["--appendonly", "no"]


def keys_on_both_threads(c, prefix, n=40):
    """Keys of both shard threads (2 threads, 8 partitions: 40 keys cover both)."""
    return ["%s:%d" % (prefix, i) for i in range(n)]


def wait_dump_done(c, saves):
    """Until `saves` dumps are done and none is running (FLUSHALL asks once per shard:
    one dump or two, depending on whether the second asked before the first forked)."""
    wait_until(lambda: int(info(c)["rdb_saves"]) >= saves and
               info(c)["rdb_bgsave_in_progress"] == "0", 30, what="rdb_saves %d" % saves)


def test_save_survives_kill9_with_ttls_databases_and_binary_values(kvds):
    k = kvds(args=NO)
    c = k.client()
    keys = keys_on_both_threads(c, "s")
    assert c.pipeline([("SET", key, "v-" + key) for key in keys]) == [St("OK")] * len(keys)
    c.ok("SET", "ttl", "t", "EX", "1000")
    c.ok("SET", b"bin\x00\r\n", b"\x00\xff\r\n" * 1000)
    c.ok("SELECT", "3")
    c.ok("SET", "in3", "three")
    c.ok("SELECT", "0")
    i = info(c)
    assert i["rdb_changes_since_last_save"] == str(len(keys) + 3)
    assert i["rdb_saves"] == "0" and i["rdb_last_bgsave_time_sec"] == "-1"
    before = c.cmd("LASTSAVE")
    time.sleep(1.05)  # LASTSAVE counts seconds
    assert c.cmd("SAVE") == St("OK")
    i = info(c)
    assert i["rdb_changes_since_last_save"] == "0"
    assert i["rdb_saves"] == "1" and i["rdb_last_bgsave_status"] == "ok"
    assert i["rdb_bgsave_in_progress"] == "0" and i["rdb_last_bgsave_time_sec"] != "-1"
    assert c.cmd("LASTSAVE") > before
    c.ok("SET", "after", "lost")  # not saved
    c.close()
    k.kill9()
    names = os.listdir(k.data_dir())
    assert len([f for f in names if f.startswith("dump-") and f.endswith(".kvs")]) == 8, names
    assert len([f for f in names if f.endswith(".done")]) == 1, names  # the dump's marker
    k2, c = restart(kvds, k)
    assert c.cmd("DBSIZE") == len(keys) + 2
    assert c.cmd("MGET", *keys) == [("v-" + key).encode() for key in keys]
    assert 990 <= c.cmd("TTL", "ttl") <= 1000
    assert c.cmd("GET", b"bin\x00\r\n") == b"\x00\xff\r\n" * 1000
    assert c.cmd("GET", "after") is None
    c.ok("SELECT", "3")
    assert c.cmd("GET", "in3") == b"three"
    assert info_field(c, "persistence", "rdb_last_load_keys_loaded") == str(len(keys) + 3)
    c.close()
    assert k2.stop() == 0


def test_save_and_bgsave_are_the_instant_of_the_command_in_a_pipeline(kvds):
    """What a pipeline wrote before SAVE / BGSAVE is in the dump (also on the other shard
    thread), what it wrote after is not."""
    k = kvds(args=NO)
    c = k.client()
    keys = keys_on_both_threads(c, "p")
    cmds = [("SET", key, "1") for key in keys] + [("SAVE",)] + [("SET", key, "2") for key in keys]
    cmds += [("SET", "only-after", "x")]
    replies = c.pipeline(cmds)
    assert replies == [St("OK")] * len(cmds)
    c.close()
    k2, c = crash_restart(kvds, k)
    assert c.cmd("MGET", *keys) == [b"1"] * len(keys)
    assert c.cmd("EXISTS", "only-after") == 0
    # BGSAVE: the same, once its child is done
    cmds = [("SET", key, "3") for key in keys] + [("BGSAVE",)]
    cmds += [("SET", key, "4") for key in keys] + [("DEL", "bg-after")]
    replies = c.pipeline(cmds)
    assert St("Background saving started") in replies
    wait_dump_done(c, 1)
    c.close()
    k3, c = crash_restart(kvds, k2)
    assert c.cmd("MGET", *keys) == [b"3"] * len(keys)
    c.close()
    assert k3.stop() == 0


def test_bgsave_replies_and_errors(kvds):
    k = kvds(args=NO)
    c = k.client()
    assert c.cmd("BGSAVE", "NOW") == Err("ERR syntax error")
    assert c.cmd("BGSAVE", "SCHEDULE", "x") == Err("ERR syntax error")
    c.ok("SET", "a", "1")
    assert c.cmd("BGSAVE", "SCHEDULE") in (St("Background saving started"),
                                           St("Background saving scheduled"))
    # while one runs or is asked for: another BGSAVE is refused; SAVE (Redis's is in the
    # foreground) waits for a dump after it
    r = c.pipeline([("BGSAVE",), ("BGSAVE",), ("SAVE",)])
    assert r[0] in (St("Background saving started"), Err("ERR Background save already in progress"))
    if r[0] == St("Background saving started"):
        assert r[1] == Err("ERR Background save already in progress")
    assert r[2] == St("OK")
    assert info(c)["rdb_last_bgsave_status"] == "ok"
    # FLUSHALL's save (Redis's is in the foreground) does not refuse a BGSAVE after it
    c.ok("CONFIG", "SET", "save", "3600 1")
    c.ok("SET", "a", "1")
    r = c.pipeline([("FLUSHALL",), ("BGSAVE",), ("SAVE",)])
    assert r == [St("OK"), St("Background saving started"), St("OK")], r
    wait_until(lambda: info(c)["rdb_bgsave_in_progress"] == "0", 30)
    assert info(c)["rdb_last_bgsave_status"] == "ok"
    c.close()
    assert k.stop() == 0


def test_save_points_and_config_set_save(kvds):
    k = kvds(args=NO + ["--save", "1 1"])
    c = k.client()
    assert c.cmd("CONFIG", "GET", "save") == [b"save", b"1 1"]
    c.ok("SET", "a", "1")
    wait_dump_done(c, 1)  # a second and a change after the start
    for bad in ["1", "a b", "1 -1", "1 2 3"]:
        r = c.cmd("CONFIG", "SET", "save", bad)
        assert r == Err("ERR CONFIG SET failed (possibly related to argument 'save') - "
                        "Invalid save parameters"), (bad, r)
    assert c.cmd("CONFIG", "GET", "save") == [b"save", b"1 1"]
    c.ok("CONFIG", "SET", "save", "")
    assert c.cmd("CONFIG", "GET", "save") == [b"save", b""]
    c.ok("SET", "b", "1")
    time.sleep(1.5)
    assert info(c)["rdb_saves"] == "1"  # no save point any more
    assert info(c)["rdb_changes_since_last_save"] == "1"
    c.ok("CONFIG", "SET", "save", "3600 1000 1 1")
    assert c.cmd("CONFIG", "GET", "save") == [b"save", b"3600 1000 1 1"]
    wait_dump_done(c, 2)
    c.close()
    k2, c = crash_restart(kvds, k)
    assert c.cmd("MGET", "a", "b") == [b"1", b"1"]
    c.close()
    assert k2.stop() == 0


def test_a_bad_save_setting_refuses_the_start(kvds):
    k = kvds(args=NO + ["--save", "60"], ready=False)
    assert k.proc.wait(30) != 0
    assert "Invalid save parameters" in k.stderr()


def test_shutdown_and_sigterm_save_first_with_save_points(kvds):
    k = kvds(args=NO + ["--save", "3600 1"])
    c = k.client()
    c.ok("SET", "a", "1")
    c.send(b"*1\r\n$8\r\nSHUTDOWN\r\n")
    assert c.closed_within(30)
    assert k.wait_exit() == 0
    k2, c = restart(kvds, k)
    assert c.cmd("GET", "a") == b"1"
    c.ok("SET", "b", "1")
    c.close()
    k2.proc.send_signal(signal.SIGTERM)
    assert k2.wait_exit() == 0
    assert "DB saved on disk" in k2.stderr()
    k3, c = restart(kvds, k2)
    assert c.cmd("GET", "b") == b"1"
    c.ok("SET", "c", "1")
    c.send(b"*2\r\n$8\r\nSHUTDOWN\r\n$6\r\nNOSAVE\r\n")
    assert c.closed_within(30)
    assert k3.wait_exit() == 0
    k4, c = restart(kvds, k3, args=NO + ["--save", ""])
    assert c.cmd("MGET", "b", "c") == [b"1", None]
    c.ok("SET", "d", "1")
    c.close()
    k4.proc.send_signal(signal.SIGTERM)  # no save points: no save
    assert k4.wait_exit() == 0
    k5, c = restart(kvds, k4, args=NO + ["--save", ""])
    assert c.cmd("EXISTS", "d") == 0
    c.ok("SET", "e", "1")
    c.send(b"*2\r\n$8\r\nSHUTDOWN\r\n$4\r\nSAVE\r\n")  # SAVE without save points
    assert c.closed_within(30)
    assert k5.wait_exit() == 0
    k6, c = restart(kvds, k5)
    assert c.cmd("GET", "e") == b"1"
    c.close()
    assert k6.stop() == 0


def test_a_failed_dump_is_reported_and_keeps_the_server_up(kvds):
    k = kvds(args=NO + ["--save", "3600 1"])
    c = k.client()
    c.ok("SET", "a", "1")
    assert c.cmd("SAVE") == St("OK")
    c.ok("SET", "a", "2")
    keys = keys_on_both_threads(c, "m")
    c.pipeline([("SET", key, "old") for key in keys])
    assert c.cmd("SAVE") == St("OK")
    c.pipeline([("SET", key, "new") for key in keys])
    # directories where a late partition's temporary file must go (each dump's files
    # have the next LSN): that write fails, and the partitions written before it are not
    # renamed into place (no mix of two dumps)
    data = k.data_dir()
    blockers = [os.path.join(data, "dump-00005-%016x.kvs.tmp" % lsn) for lsn in range(3, 12)]
    for b in blockers:
        os.mkdir(b)
    r = c.cmd("SAVE")
    assert isinstance(r, Err) and r.s.startswith("ERR"), r
    assert "cannot create dump-00005" in k.stderr()
    i = info(c)
    assert i["rdb_last_bgsave_status"] == "err" and i["rdb_saves"] == "2"
    assert i["rdb_changes_since_last_save"] == str(len(keys))
    c.close()
    k.kill9()  # what the failed dump left: the previous one, whole
    for b in blockers:
        os.rmdir(b)
    k, c = restart(kvds, k)
    assert c.cmd("MGET", *keys) == [b"old"] * len(keys)
    assert c.cmd("GET", "a") == b"2"
    c.ok("SET", "a", "3")
    for b in blockers:
        os.mkdir(b)
    assert c.cmd("SHUTDOWN") == Err("ERR Errors trying to SHUTDOWN. Check logs.")
    k.proc.send_signal(signal.SIGTERM)  # the save fails: Redis stays up too
    wait_until(lambda: "can't exit" in k.stderr(), 30, what="the failed save's log line")
    assert c.cmd("GET", "a") == b"3"
    for b in blockers:
        os.rmdir(b)
    assert c.cmd("SAVE") == St("OK")
    assert info(c)["rdb_last_bgsave_status"] == "ok"
    c.close()
    k2, c = crash_restart(kvds, k)
    assert c.cmd("GET", "a") == b"3"
    c.close()
    assert k2.stop() == 0


def test_a_dump_cut_short_among_its_renames_is_passed_over(kvds):
    """A crash while the child renames its files leaves some partitions at the new dump
    and the others at the one before: recovery uses the previous dump for all."""
    k = kvds(args=NO + ["--save", ""])
    c = k.client()
    keys = keys_on_both_threads(c, "r")
    c.pipeline([("SET", key, "first") for key in keys])
    assert c.cmd("SAVE") == St("OK")
    data = k.data_dir()
    first = {f: open(os.path.join(data, f), "rb").read() for f in os.listdir(data)
             if f.startswith("dump-")}  # its 8 files and its marker
    assert len([f for f in first if f.endswith(".kvs")]) == 8 and len(first) == 9
    c.pipeline([("SET", key, "second") for key in keys])
    assert c.cmd("SAVE") == St("OK")
    c.close()
    k.kill9()
    # as if the crash came after three renames: the first dump's files (and marker)
    # back, the second dump's files of the other partitions and its marker not there
    second = sorted(f for f in os.listdir(data) if f.startswith("dump-") and f.endswith(".kvs"))
    markers = [f for f in os.listdir(data) if f.endswith(".done")]
    assert len(second) == 8 and not set(second) & set(first) and len(markers) == 1
    for f, b in first.items():
        with open(os.path.join(data, f), "wb") as out:
            out.write(b)
    for f in second[3:] + markers:
        os.unlink(os.path.join(data, f))
    k2 = k.restart()
    kvds.track(k2)
    assert "was not finished" in k2.stderr()
    left = [f for f in os.listdir(data) if f.startswith("dump-")]
    assert sorted(left) == sorted(first), left  # the unfinished dump's files went
    c = k2.client()
    assert c.cmd("MGET", *keys) == [b"first"] * len(keys)
    c.pipeline([("SET", key, "third") for key in keys])
    assert c.cmd("SAVE") == St("OK")
    names = os.listdir(data)
    assert len([f for f in names if f.startswith("dump-") and f.endswith(".kvs")]) == 8, names
    assert len([f for f in names if f.endswith(".done")]) == 1, names
    c.close()
    k3, c = crash_restart(kvds, k2)
    assert c.cmd("MGET", *keys) == [b"third"] * len(keys)
    c.close()
    assert k3.stop() == 0


def test_repair_of_a_damaged_dump_file_keeps_the_other_partitions(kvds):
    """--repair sets a damaged dump file aside and starts with the other partitions; the
    starts after it load the same, and the next dump goes past the old one's LSN."""
    k = kvds(args=NO + ["--save", ""])
    c = k.client()
    keys = keys_on_both_threads(c, "d")
    c.pipeline([("SET", key, "v") for key in keys])
    assert c.cmd("SAVE") == St("OK")
    c.close()
    k.kill9()
    data = k.data_dir()
    victim = [f for f in os.listdir(data) if f.startswith("dump-00001-")][0]
    with open(os.path.join(data, victim), "r+b") as f:
        f.seek(70)
        f.write(b"\xff" * 8)
    bad = k.restart(ready=False)
    kvds.track(bad)
    assert bad.proc.wait(60) != 0 and "damaged" in bad.stderr()
    k2, c = restart(kvds, bad, args=NO + ["--save", "", "--repair", "yes"])
    n = c.cmd("DBSIZE")
    assert 0 < n < len(keys)
    c.close()
    k3, c = crash_restart(kvds, k2, args=NO + ["--save", ""])
    assert c.cmd("DBSIZE") == n
    assert c.cmd("SAVE") == St("OK")
    c.close()
    k4, c = crash_restart(kvds, k3)
    assert c.cmd("DBSIZE") == n
    c.close()
    assert k4.stop() == 0


def test_concurrent_saves_on_both_threads_each_get_a_whole_dump(kvds):
    """Clients on both shard threads asking at once: one dump at a time (no child may
    write over another's files), every SAVE answered +OK, and what each client wrote
    before its SAVE is in the last dump."""
    k = kvds(args=NO + ["--save", ""])
    clients = [k.client() for _ in range(8)]
    errors = []

    def run(n, c):
        try:
            for i in range(10):
                c.ok("SET", "c%d" % n, str(i))
                r = c.cmd("SAVE")
                if r != St("OK"):
                    errors.append(r)
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=run, args=(n, c)) for n, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert "failed" not in k.stderr()
    for c in clients:
        c.close()
    k2, c = crash_restart(kvds, k)
    assert c.cmd("MGET", *["c%d" % n for n in range(8)]) == [b"9"] * 8
    c.close()
    assert k2.stop() == 0


def test_bgsave_inside_multi_starts_after_exec(kvds):
    """As Redis: a BGSAVE queued in a transaction runs after it, so the commands after
    it in the transaction are in the dump."""
    k = kvds(args=NO + ["--save", ""], threads=1)
    c = k.client()
    c.ok("MULTI")
    for cmd in [("SET", "a", "1"), ("BGSAVE",), ("SET", "b", "1")]:
        assert c.cmd(*cmd) == St("QUEUED")
    assert c.cmd("EXEC") == [St("OK"), St("Background saving started"), St("OK")]
    wait_dump_done(c, 1)
    c.close()
    k2, c = crash_restart(kvds, k)
    assert c.cmd("MGET", "a", "b") == [b"1", b"1"]
    c.close()
    assert k2.stop() == 0


def test_flushall_saves_the_empty_data_set_and_debug_reload_saves(kvds):
    k = kvds(args=NO + ["--save", "3600 1"])
    c = k.client()
    keys = keys_on_both_threads(c, "f")
    c.pipeline([("SET", key, "1") for key in keys])
    assert c.cmd("DEBUG", "RELOAD") == St("OK")
    assert info(c)["rdb_saves"] == "1"
    assert c.cmd("DBSIZE") == len(keys)
    assert c.cmd("DEBUG", "LOADAOF") == St("OK")  # the same
    assert info(c)["rdb_saves"] == "2"
    # BGREWRITEAOF (Redis writes an AOF with appendonly no): a dump
    assert c.cmd("BGREWRITEAOF") == St("Background append only file rewriting started")
    wait_dump_done(c, 3)
    c.ok("FLUSHALL")
    wait_dump_done(c, 4)
    c.close()
    k2, c = crash_restart(kvds, k)
    assert c.cmd("DBSIZE") == 0
    c.close()
    assert k2.stop() == 0


def test_switching_between_appendonly_no_and_yes_loses_nothing(kvds):
    k = kvds(args=[])  # appendonly yes: the WAL
    c = k.client()
    keys = keys_on_both_threads(c, "w")
    c.pipeline([("SET", key, "wal") for key in keys])
    c.close()
    k.kill9()
    k2 = k.restart(args=NO)  # recovers from the WAL, then keeps nothing itself
    kvds.track(k2)
    c = k2.client()
    assert c.cmd("MGET", *keys) == [b"wal"] * len(keys)
    c.pipeline([("SET", key, "dump") for key in keys[:10]])
    assert c.cmd("SAVE") == St("OK")
    c.close()
    k2.kill9()
    names = os.listdir(k2.data_dir())
    assert not [f for f in names if f.startswith("wal-")], names  # the dump covers them
    k3 = k2.restart(args=[])  # the WAL again: the dump is its snapshot
    kvds.track(k3)
    c = k3.client()
    assert c.cmd("MGET", *keys) == [b"dump"] * 10 + [b"wal"] * (len(keys) - 10)
    c.ok("SET", keys[0], "wal2")
    c.close()
    k4, c = crash_restart(kvds, k3, args=[])
    assert c.cmd("MGET", *keys[:2]) == [b"wal2", b"dump"]
    c.close()
    assert k4.stop() == 0


def test_functions_are_in_the_dump(kvds):
    """As Redis's RDB holds them: FUNCTION LOAD is kept by the next dump, not before."""
    k = kvds(args=NO + ["--save", ""])
    c = k.client()
    lib = "#!lua name=dumplib\nredis.register_function('dumpfn', function() return 7 end)"
    assert c.cmd("FUNCTION", "LOAD", lib) == b"dumplib"
    c.close()
    k2, c = crash_restart(kvds, k)
    assert c.cmd("FUNCTION", "LIST") == []  # no dump yet: gone
    assert c.cmd("FUNCTION", "LOAD", lib) == b"dumplib"
    assert c.cmd("SAVE") == St("OK")
    c.close()
    k3, c = crash_restart(kvds, k2)
    assert c.cmd("FCALL", "dumpfn", "0") == 7
    c.ok("FUNCTION", "FLUSH")
    assert c.cmd("SAVE") == St("OK")
    c.close()
    k3.kill9()
    leftover = os.path.join(k3.data_dir(), "functions.kvf.tmp-99999")  # a killed writer's
    with open(leftover, "wb") as f:
        f.write(b"partial")
    k4, c = restart(kvds, k3)
    assert c.cmd("FUNCTION", "LIST") == []
    assert not os.path.exists(leftover)
    c.close()
    assert k4.stop() == 0


def child_fds_while_writing(pid, data_dir):
    """The fds of kvd's dump child once it has begun to write (a partition's temporary
    file is in the data directory: right after the fork it still has every fd of kvd's,
    and it closes them before it writes), or None if it could not be caught then. Each
    partition's file is closed once written, so the child is known to be past that point
    by the directory, not by its open files."""
    deadline = time.monotonic() + 10
    child = None
    while child is None and time.monotonic() < deadline:
        for task in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                    kids = f.read().split()
            except OSError:
                continue
            if kids:
                child = int(kids[0])
                break
    while child is not None and time.monotonic() < deadline:
        if any(".kvs.tmp" in name for name in os.listdir(data_dir)):
            try:
                return [os.readlink("/proc/%d/fd/%s" % (child, fd))
                        for fd in os.listdir("/proc/%d/fd" % child)]
            except OSError:
                return None  # it ended
        time.sleep(0.001)
    return None


def test_the_dump_child_holds_no_client_socket(kvds):
    """The child closes every inherited fd but stderr: a client kvd closes during a dump
    sees its connection end then, not when the child exits. Looked at in /proc while
    the child writes (kvd-fp: the child sleeps 100 ms after each partition, so that a
    fast disk does not finish the dump before it is looked at)."""
    k = kvds(args=NO + ["--save", ""], bin=kvd_fp_path(),
             env={"KVD_FAILPOINTS": "dump-child-slow"})
    c = k.client()
    value = os.urandom(1 << 12)
    for start in range(0, 1024, 128):
        c.pipeline([("SET", "big%d" % i, value) for i in range(start, start + 128)])
    other = k.client()
    assert other.cmd("PING") == St("PONG")
    assert c.cmd("BGSAVE") == St("Background saving started")
    seen = child_fds_while_writing(k.pid, k.data_dir())
    wait_dump_done(c, 1)
    assert seen is not None, "no dump child could be looked at while it wrote"
    assert not [f for f in seen if f.startswith(("socket:", "anon_inode:[io_uring]"))], seen
    other.close()
    c.close()
    assert k.stop() == 0


def test_shutdown_on_sigterm_and_sigint_flags(kvds):
    """shutdown-on-sigterm / shutdown-on-sigint, as Redis's: nosave skips the save that
    save points call for, save saves without save points, force stops even when that
    save fails; SIGINT follows its own setting."""
    k = kvds(args=NO + ["--save", "3600 1", "--shutdown-on-sigterm", "nosave"])
    c = k.client()
    assert c.cmd("CONFIG", "GET", "shutdown-on-sig*") == [
        b"shutdown-on-sigterm", b"nosave", b"shutdown-on-sigint", b"default"]
    c.ok("SET", "a", "1")
    c.close()
    k.proc.send_signal(signal.SIGTERM)
    assert k.wait_exit() == 0
    assert "DB saved on disk" not in k.stderr()
    k2, c = restart(kvds, k, args=NO + ["--save", "", "--shutdown-on-sigint", "save now"])
    assert c.cmd("EXISTS", "a") == 0
    c.ok("SET", "b", "1")
    c.close()
    k2.proc.send_signal(signal.SIGINT)  # no save points, but "save"
    assert k2.wait_exit() == 0
    assert "DB saved on disk" in k2.stderr()
    k3, c = restart(kvds, k2, args=NO + ["--save", ""])
    assert c.cmd("GET", "b") == b"1"
    c.ok("CONFIG", "SET", "shutdown-on-sigterm", "save force")
    c.ok("SET", "b", "2")
    data = k3.data_dir()
    blockers = [os.path.join(data, "dump-%05d-%016x.kvs.tmp" % (p, lsn))
                for p in range(16) for lsn in range(1, 12)]
    for b in blockers:
        os.mkdir(b)
    k3.proc.send_signal(signal.SIGTERM)  # the save fails: force stops anyway
    assert k3.wait_exit() == 0
    assert "Error trying to save the DB. Exit anyway." in k3.stderr()
    for b in blockers:
        os.rmdir(b)
    k4, c = restart(kvds, k3, args=NO + ["--save", ""])
    assert c.cmd("GET", "b") == b"1"  # the failed save wrote nothing
    c.close()
    assert k4.stop() == 0
