"""Backpressure and buffer exhaustion in kvd's data path.

With tiny shard-to-shard queues (--shard-queue-size 2) and few receive buffers
(--recv-buffers 8), deep pipelines from many clients over keys owned by both shards
must still get every reply, in order, with the right values: a full queue pauses the
sending client (it never drops or blocks the shard), and an empty buffer ring re-arms
the receive once buffers come back.
"""
import random
import threading

from conftest import Client, Kvd, St


def pipelined_round(port, client_id, n, errors):
    try:
        with Client(port, timeout=60) as c:
            cmds = []
            for i in range(n):
                cmds.append(("SET", "c%d:k%d" % (client_id, i), "v%d-%d" % (client_id, i)))
            for i in range(n):
                cmds.append(("GET", "c%d:k%d" % (client_id, i)))
            keys = ["c%d:k%d" % (client_id, i) for i in range(0, n, 7)]
            cmds.append(("MGET",) + tuple(keys))
            cmds.append(("DEL",) + tuple(keys))
            replies = c.pipeline(cmds)
            for i in range(n):
                assert replies[i] == St("OK"), (i, replies[i])
            for i in range(n):
                assert replies[n + i] == ("v%d-%d" % (client_id, i)).encode(), \
                    (i, replies[n + i])
            assert replies[2 * n] == [("v%d-%d" % (client_id, i)).encode()
                                      for i in range(0, n, 7)]
            assert replies[2 * n + 1] == len(keys)
    except Exception as e:  # reported by the main thread
        errors.append("client %d: %r" % (client_id, e))


CLIENTS = 16
N = 1500


def test_tiny_queues_and_buffers_keep_order():
    kvd = Kvd(args=["--shard-queue-size", "2", "--recv-buffers", "8",
                    "--recv-buffer-size", "4096"], threads=2)
    try:
        errors = []
        threads = [threading.Thread(target=pipelined_round, args=(kvd.port, cid, N, errors))
                   for cid in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not errors, errors[:5]
        with kvd.client() as c:
            assert c.cmd("DBSIZE") == CLIENTS * (N - len(range(0, N, 7)))
            info = c.cmd("INFO", "stats")
            stats = dict(line.split(":", 1) for line in info.decode().split("\r\n")
                         if ":" in line)
            # The paths under test were taken, not just the easy ones.
            assert int(stats["shard_queue_full_pauses"]) > 0, stats
            assert int(stats["recv_buffer_exhaustions"]) > 0, stats
        kvd.check_alive()
    finally:
        kvd.stop()
