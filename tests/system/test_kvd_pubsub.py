"""Pub/sub of kvd against Redis 7.0: SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE,
PUBLISH, Redis 7's shard channels (SSUBSCRIBE, SUNSUBSCRIBE, SPUBLISH) and PUBSUB CHANNELS /
NUMSUB / NUMPAT / SHARDCHANNELS / SHARDNUMSUB / HELP.

Most tests run one scenario on kvd and on Redis (fresh connections on each) and compare
the transcripts byte for byte: subscribe/unsubscribe confirmations and their counts, the
message and pmessage frames (RESP2 arrays, RESP3 push frames), the subscribed-mode
restriction of RESP2, RESET, arity errors. Where Redis's own order is its hash tables'
(UNSUBSCRIBE without arguments, PUBSUB CHANNELS, several patterns matching one message)
the frames are compared as sets, the counts in order.

kvd runs 2 shard threads and a connection lives on the thread that accepted it
(SO_REUSEPORT), so the tests that need subscribers on both threads open many connections
(20: the chance that all land on one thread is 2^-19). PUBLISH must reach every one of them
and count every matching subscription (a connection matching by channel and by pattern
counts twice, as in Redis).

Shard channels: the confirmations and their own count, smessage frames (not matched by
patterns), the subscribed context they keep, SSUBSCRIBE refused in MULTI and in scripts,
SPUBLISH from a script, PUBSUB SHARDCHANNELS / SHARDNUMSUB, COMMAND INFO / GETKEYS of the
three, INFO pubsubshard_channels and CLIENT LIST ssub=, compared with Redis; SPUBLISH
reaching subscribers on both threads.
"""
import fnmatch
import socket
import struct
import subprocess
import threading
import time

import pytest
import redis

from conftest import Client, Err, Push, St, encode, kvd_path, wait_until

RESTRICTED = ("Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / "
              "RESET are allowed in this context")


# ---- helpers -----------------------------------------------------------------------------

def frames(c, n):
    """The exact bytes of the next n replies/frames of client c (a missing one fails the
    test after the client's timeout, showing what did arrive)."""
    out = []
    try:
        for _ in range(n):
            out.append(c.read_raw())
    except socket.timeout:
        raise AssertionError("timed out waiting for frame %d of %d; got %r, pending %r"
                             % (len(out) + 1, n, [_short(x) for x in out],
                                _short(c.pending_bytes()))) from None
    return out


def send(c, *args):
    c.send(encode(*args))


def exchange(c, n, *args):
    """Sends one command, returns the bytes of the n frames it is answered with."""
    send(c, *args)
    return frames(c, n)


def assert_same_transcript(k, r, what="transcript"):
    """k and r: lists of (label, value) from kvd and Redis; reports the first difference."""
    for i, (ke, re_) in enumerate(zip(k, r)):
        assert ke == re_, "%s differs at step %d:\n  kvd:   %r\n  redis: %r" % (
            what, i, _short(ke), _short(re_))
    assert len(k) == len(r), "%s lengths differ: kvd %d, redis %d" % (what, len(k), len(r))


def _short(v):
    s = repr(v)
    return s if len(s) < 3000 else s[:3000] + "...(%d chars)" % len(s)


def on_both(pair, scenario):
    """Runs scenario(server) on kvd and on Redis; asserts identical transcripts."""
    k = scenario(pair.kvd)
    r = scenario(pair.redis)
    assert_same_transcript(k, r)
    return k


def unsub_frames_normalized(raws):
    """UNSUBSCRIBE / PUNSUBSCRIBE without arguments: Redis answers in its dict's order. The
    kinds and counts must follow in order; the channels, as a set."""
    parsed = [_parse_frame(x) for x in raws]
    if not all(isinstance(p, list) and len(p) == 3 for p in parsed):
        return raws  # not confirmations at all: compared as they are
    return ([(x[:1], p[0], p[2]) for x, p in zip(raws, parsed)],
            sorted((p[1] for p in parsed), key=repr))


def _parse_frame(raw):
    c = Client.__new__(Client)  # the parser on bytes, without a socket
    c.buf = bytearray(raw)
    c.pos = 0
    c.sock = None
    v = c._parse()
    assert c.pos == len(raw), raw
    if isinstance(v, Push):
        v = list(v.items)
    return v


def clients(server, n, timeout=5.0):
    return [server.client(timeout=timeout) for _ in range(n)]


def close_all(cs):
    for c in cs:
        c.close()


def numsub(c, *channels):
    r = c.cmd("PUBSUB", "NUMSUB", *channels)
    return dict(zip(r[0::2], r[1::2]))


# ---- per-command replies -----------------------------------------------------------------

def test_subscribe_unsubscribe_replies_match_redis(pair):
    """SUBSCRIBE of several channels, duplicates, binary and empty names, case; UNSUBSCRIBE
    of some, of unknown ones, of all (a pattern keeps the count up), of none (the nil
    channel), and after leaving subscribed mode; counts are channels + patterns."""
    def scenario(server):
        t = []
        with server.client(timeout=5) as c:
            for args, n in [
                (("SUBSCRIBE", "a", "b", "c"), 3),
                (("SUBSCRIBE", "a", "d"), 2),  # a again: the count stays
                (("SUBSCRIBE", "e", "e", "e"), 3),
                (("subscribe", "A", b"\x00\r\n", ""), 3),
                (("UNSUBSCRIBE", "a", "zz"), 2),  # zz never subscribed: count unchanged
                (("UNSUBSCRIBE", "b", "b"), 2),
                (("UNSUBSCRIBE", "A", b"\x00\r\n", ""), 3),
                (("PSUBSCRIBE", "p*"), 1),
                (("SUBSCRIBE", "p1"), 1),
            ]:
                t.append((args, exchange(c, n, *args)))
            # without arguments: c, d, e and p1 go, the pattern keeps one subscription
            t.append(("unsubscribe all", unsub_frames_normalized(exchange(c, 4, "UNSUBSCRIBE"))))
            t.append(("unsubscribe none", exchange(c, 1, "UNSUBSCRIBE")))
            t.append(("ping while subscribed", exchange(c, 1, "PING")))
            t.append(("punsubscribe all", exchange(c, 1, "PUNSUBSCRIBE")))
            t.append(("punsubscribe none", exchange(c, 1, "PUNSUBSCRIBE")))
            # no longer subscribed: normal commands, and UNSUBSCRIBE still answers
            for args, n in [(("GET", "k"), 1), (("PING",), 1), (("UNSUBSCRIBE",), 1),
                            (("UNSUBSCRIBE", "x", "y"), 2), (("PUNSUBSCRIBE", "x*"), 1),
                            (("PUNSUBSCRIBE",), 1), (("GET", "k"), 1)]:
                t.append((args, exchange(c, n, *args)))
        return t
    on_both(pair, scenario)


def test_unsubscribe_all_of_many_matches_redis(pair):
    """UNSUBSCRIBE / PUNSUBSCRIBE without arguments with many subscriptions: one frame each,
    the count falling by one per frame (channels before or after patterns as the command
    says)."""
    def scenario(server):
        t = []
        with server.client(timeout=5) as c:
            chans = ["ua:%d" % i for i in range(40)]
            pats = ["up:%d*" % i for i in range(15)]
            t.append(exchange(c, 40, "SUBSCRIBE", *chans))
            t.append(exchange(c, 15, "PSUBSCRIBE", *pats))
            t.append(unsub_frames_normalized(exchange(c, 15, "PUNSUBSCRIBE")))
            t.append(exchange(c, 1, "PING"))  # still subscribed (channels)
            t.append(unsub_frames_normalized(exchange(c, 40, "UNSUBSCRIBE")))
            t.append(exchange(c, 1, "PING"))  # +PONG: left subscribed mode
            t.append(exchange(c, 1, "PUNSUBSCRIBE"))
        return t
    on_both(pair, scenario)


def test_psubscribe_punsubscribe_replies_match_redis(pair):
    def scenario(server):
        t = []
        with server.client(timeout=5) as c:
            for args, n in [
                (("PSUBSCRIBE", "h?llo", "h*llo", "h[ae]llo"), 3),
                (("PSUBSCRIBE", "h?llo"), 1),  # duplicate: count unchanged
                (("PSUBSCRIBE", "h\\*llo", "[", "*", "", b"b\x00n*"), 5),
                (("SUBSCRIBE", "h?llo"), 1),  # the same name as a channel: a new subscription
                (("PUNSUBSCRIBE", "h*llo", "nosuch", "h*llo"), 3),
                (("UNSUBSCRIBE", "h?llo"), 1),
                (("punsubscribe", "H?LLO"), 1),  # case matters
                (("PUNSUBSCRIBE", "h?llo", "h[ae]llo", "h\\*llo", "[", "*", "", b"b\x00n*"), 7),
                (("PUNSUBSCRIBE",), 1),
                (("GET", "k"), 1),
            ]:
                t.append((args, exchange(c, n, *args)))
        return t
    on_both(pair, scenario)


def test_pubsub_command_errors_match_redis(pair):
    """Arity errors and unknown subcommands of the pub/sub commands; PUBLISH to nobody."""
    for args in [("SUBSCRIBE",), ("subscribe",), ("PSUBSCRIBE",), ("PUBLISH",),
                 ("PUBLISH", "a"), ("PUBLISH", "a", "b", "c"), ("publish", "nobody", "x"),
                 ("PUBSUB",), ("PUBSUB", "FOO"), ("pubsub", "foo", "bar"),
                 ("PUBSUB", "NUMPAT", "x"), ("PUBSUB", "CHANNELS", "a", "b"),
                 ("PUBSUB", "HELP", "x"), ("PUBSUB", "NUMSUB"),
                 ("PUBSUB", "CHANNELS", "no-such-channel-anywhere*"),
                 ("PUBSUB", "NUMSUB", "no-such-channel-anywhere", "x-none"),
                 ("PING",)]:
        pair.same(*args)


def test_pubsub_help_matches_redis(pair):
    """PUBSUB HELP: Redis 7.0's lines, shard channels' included."""
    for sub in ("HELP", "help"):
        pair.same("PUBSUB", sub)


# ---- delivery ----------------------------------------------------------------------------

PATTERNS = ["h?llo", "h*llo", "h[ae]llo", "h[^e]llo", "h[a-b]llo", "h[b-a]llo", "h\\*llo",
            "h\\?llo", "x[\\]]y", "[a-c]x", "*z", "z*", "\\[*", "a\\", "[", "[abc", "e[^]]",
            "??", "k*e*y", b"b\x00*", "*\r\n*"]
CHANNELS = ["hello", "hallo", "hillo", "hbllo", "heello", "hllo", "h*llo", "h?llo", "x]y",
            "xay", "ax", "bx", "dx", "x", "", "z", "zz", "az", "[abc", "[", "a\\", "a",
            "e]", "ex", "ab", "kXeYy", "key", b"b\x00\xff", b"b", "p\r\nq", "\r\n", "HELLO"]


def test_pattern_matching_matches_redis(pair):
    """A subscriber of many glob patterns (?, *, classes, negation, ranges either way,
    escapes, unterminated classes, binary): for each channel published to, the PUBLISH
    count and the set of pmessage frames received are Redis's."""
    def scenario(server):
        t = []
        with server.client(timeout=5) as sub, server.client(timeout=5) as pub:
            t.append(exchange(sub, len(PATTERNS), "PSUBSCRIBE", *PATTERNS))
            for ch in CHANNELS:
                n = pub.cmd("PUBLISH", ch, b"m:" + (ch.encode() if isinstance(ch, str) else ch))
                got = sorted(frames(sub, n)) if isinstance(n, int) else []
                t.append((ch, n, got))
            t.append(exchange(sub, 1, "PING"))  # nothing else was delivered
        return t
    on_both(pair, scenario)


def test_channel_message_precedes_pattern_message(pair):
    """A connection subscribed to a channel and to a pattern matching it gets the message
    frame, then the pmessage frame; PUBLISH counts it twice."""
    def scenario(server):
        t = []
        with server.client(timeout=5) as sub, server.client(timeout=5) as pub:
            t.append(exchange(sub, 1, "SUBSCRIBE", "news.art"))
            t.append(exchange(sub, 1, "PSUBSCRIBE", "news.*"))
            for i in range(5):
                t.append(pub.raw("PUBLISH", "news.art", "m%d" % i))
                t.append(frames(sub, 2))
            t.append(pub.raw("PUBLISH", "news.sport", "only the pattern"))
            t.append(frames(sub, 1))
            t.append(pub.raw("PUBLISH", "other", "nobody"))
            t.append(exchange(sub, 1, "PING", "end"))
        return t
    on_both(pair, scenario)


PAYLOADS = [b"", b"\x00", b"a\r\nb", b"\r\n", bytes(range(256)), b"$5\r\nfake\r\n",
            b"*3\r\n$7\r\nmessage\r\n", b"\xff" * 1000,
            bytes((i * 7 + 3) % 256 for i in range(1 << 20))]  # 1 MiB


@pytest.mark.parametrize("proto", ["2", "3"])
def test_message_bytes_binary_and_large(pair, proto):
    """message and pmessage frames carry binary channel names and payloads (\\0, \\r\\n,
    every byte value, RESP look-alikes, 1 MiB) byte for byte, in RESP2 and RESP3."""
    def scenario(server):
        t = []
        with server.client(timeout=10) as sub, server.client(timeout=10) as pub:
            if proto == "3":
                sub.cmd("HELLO", "3")
            ch = b"bin\x00\r\nch"
            t.append(exchange(sub, 1, "SUBSCRIBE", ch))
            t.append(exchange(sub, 1, "PSUBSCRIBE", b"bin\x00*"))
            for p in PAYLOADS:
                t.append(pub.raw("PUBLISH", ch, p))
                t.append(frames(sub, 2))
            # the same 1 MiB to a channel only the pattern matches
            t.append(pub.raw("PUBLISH", b"bin\x00other", PAYLOADS[-1]))
            t.append(frames(sub, 1))
        return t
    on_both(pair, scenario)


def test_messages_arrive_in_publish_order(pair):
    """Subscribers (several, so both threads have some) receive one publisher's pipelined
    messages in publish order; with two publishers, each one's messages in its order."""
    n = 1500

    def scenario(server):
        subs = clients(server, 6, timeout=10)
        pubs = clients(server, 2, timeout=10)
        try:
            for s in subs:
                send(s, "SUBSCRIBE", "ord")
                assert s.read()[0] == b"subscribe"
            counts = pubs[0].pipeline([("PUBLISH", "ord", "%d" % i) for i in range(n)])
            assert counts == [len(subs)] * n, set(counts)
            for s in subs:
                got = [s.read() for _ in range(n)]
                assert got == [[b"message", b"ord", b"%d" % i] for i in range(n)]

            results = []

            def publish(p, tag):
                results.append(p.pipeline([("PUBLISH", "ord", "%s%d" % (tag, i))
                                           for i in range(n)]))
            th = [threading.Thread(target=publish, args=(p, tag))
                  for p, tag in zip(pubs, "ab")]
            for x in th:
                x.start()
            for x in th:
                x.join()
            assert all(r == [len(subs)] * n for r in results)
            for s in subs:
                got = [s.read() for _ in range(2 * n)]
                assert all(g[:2] == [b"message", b"ord"] for g in got)
                for tag in (b"a", b"b"):
                    seq = [g[2] for g in got if g[2][:1] == tag]
                    assert seq == [tag + b"%d" % i for i in range(n)], tag
                assert s.cmd("PING") == [b"pong", b""]
        finally:
            close_all(subs + pubs)
        return ["ok"]
    on_both(pair, scenario)


def test_resp3_own_replies_interleave_with_pushes_like_redis(pair):
    """RESP3: a subscriber may run any command; a message it publishes to itself arrives
    before the PUBLISH reply, and pushes and replies interleave exactly as in Redis."""
    cmds = [("PUBLISH", "c", "m1"), ("SUBSCRIBE", "d"), ("PUBLISH", "d", "m2"), ("PING",),
            ("SET", "k", "v"), ("GET", "k"), ("UNSUBSCRIBE", "c"), ("PUBLISH", "c", "m3"),
            ("PSUBSCRIBE", "d*"), ("PUBLISH", "d", "m4"), ("PUBSUB", "NUMSUB", "c", "d"),
            ("ECHO", "e"), ("MULTI",), ("INCR", "n"), ("INCR", "n"), ("EXEC",),
            ("UNSUBSCRIBE",), ("PUNSUBSCRIBE",), ("UNSUBSCRIBE",), ("PING",), ("PING", "x"),
            ("PUBLISH", "d", "m6")]
    # frames per command: PUBLISH c m1 -> push + reply; ... (no PUBLISH to itself inside
    # MULTI: Redis 7.0 writes those pushes inside the EXEC array, fixed in later Redis)
    nframes = [2, 1, 2, 1, 1, 1, 1, 1, 1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]

    def scenario(server):
        t = []
        with server.client(timeout=5) as c:
            c.cmd("HELLO", "3")
            c.cmd("DEL", "k", "n")
            t.append(exchange(c, 1, "SUBSCRIBE", "c"))
            c.send(b"".join(encode(*x) for x in cmds))  # one pipeline
            t.append(frames(c, sum(nframes)))
        return t
    on_both(pair, scenario)


def test_resp3_subscriber_runs_commands_and_gets_pushes(pair):
    """RESP3: push frames for subscribe/psubscribe/message/pmessage/unsubscribe; ordinary
    commands (including PUBSUB and CLIENT) work while subscribed; a RESP2 client of the
    same channel gets arrays."""
    def scenario(server):
        t = []
        with server.client(timeout=5) as s3, server.client(timeout=5) as s2, \
                server.client(timeout=5) as pub:
            s3.cmd("HELLO", "3")
            t.append(exchange(s3, 2, "SUBSCRIBE", "r3a", "r3b"))
            t.append(exchange(s3, 1, "PSUBSCRIBE", "r3*"))
            t.append(exchange(s2, 1, "SUBSCRIBE", "r3a"))
            for args in [("SET", "r3k", "1"), ("INCR", "r3k"), ("GET", "r3k"), ("DEL", "r3k"),
                         ("PUBSUB", "NUMSUB", "r3a", "r3b", "r3c"),
                         ("PUBSUB", "CHANNELS", "r3[a]"), ("CLIENT", "GETNAME"), ("ECHO", "x"),
                         ("PING",), ("PING", "hi"), ("DBSIZE",)]:
                t.append((args, exchange(s3, 1, *args)))
            t.append(pub.raw("PUBLISH", "r3a", "v1"))
            t.append(frames(s3, 2))
            t.append(frames(s2, 1))
            t.append(pub.raw("PUBLISH", "r3zz", "v2"))
            t.append(frames(s3, 1))
            t.append(exchange(s3, 1, "UNSUBSCRIBE", "r3a"))
            t.append(pub.raw("PUBLISH", "r3a", "v3"))
            t.append(frames(s3, 1))
            t.append(frames(s2, 1))
            t.append(unsub_frames_normalized(exchange(s3, 1, "UNSUBSCRIBE")))
            t.append(exchange(s3, 1, "PUNSUBSCRIBE"))
            t.append(exchange(s3, 1, "UNSUBSCRIBE"))
            t.append(exchange(s3, 1, "PUNSUBSCRIBE"))
        return t
    on_both(pair, scenario)


def test_hello_2_while_subscribed_in_resp3_enters_subscribed_mode(pair):
    """RESP3 allows HELLO while subscribed; after HELLO 2 the connection is a RESP2
    subscriber: frames are arrays, other commands (HELLO 3 too) are refused, PING answers
    ["pong", ""], until the last unsubscribe."""
    def scenario(server):
        t = []
        with server.client(timeout=5) as c, server.client(timeout=5) as pub:
            c.cmd("HELLO", "3")
            t.append(exchange(c, 1, "SUBSCRIBE", "hs"))
            hello = c.cmd("HELLO", "2")  # the server's own fields: not compared
            assert isinstance(hello, list) and hello[0] == b"server", hello
            for args in [("GET", "k"), ("PING",), ("HELLO", "3")]:
                t.append((args, exchange(c, 1, *args)))
            t.append(pub.raw("PUBLISH", "hs", "m"))
            t.append(frames(c, 1))
            t.append(exchange(c, 1, "UNSUBSCRIBE"))
            t.append(exchange(c, 1, "GET", "k"))
        return t
    on_both(pair, scenario)


def test_publish_is_visible_before_the_subscriber_s_next_reply(pair):
    """Once PUBLISH has answered, the message is ahead of any reply to a later command of
    each subscriber (the subscribers sit on both threads); once UNSUBSCRIBE has answered,
    PUBLISH no longer counts the connection."""
    def scenario(server):
        t = []
        subs = clients(server, 8)
        try:
            with server.client(timeout=5) as pub:
                for s in subs:
                    t.append(exchange(s, 1, "SUBSCRIBE", "cause"))
                for i in range(100):
                    if i % 2:
                        time.sleep(0.005)  # let the threads go idle now and then
                    t.append(pub.raw("PUBLISH", "cause", "m%d" % i))
                    for s in subs:  # every PING sent as soon as PUBLISH has answered
                        send(s, "PING", "p%d" % i)
                    for s in subs:
                        t.append(frames(s, 2))
                for k, s in enumerate(subs):
                    # the messages published after the earlier ones left, then the reply
                    t.append(exchange(s, k + 1, "UNSUBSCRIBE", "cause"))
                    t.append(pub.raw("PUBLISH", "cause", "after%d" % k))
                for s in subs:
                    t.append(exchange(s, 1, "PING"))
        finally:
            close_all(subs)
        return t
    on_both(pair, scenario)


def test_every_counted_subscriber_gets_the_message_even_if_it_unsubscribes_at_once(pair):
    """A subscriber counted by a PUBLISH that has answered gets the message, even if it
    unsubscribes (or runs any command) right after that answer: the message comes before
    the confirmation. 8 subscribers (on both threads), 60 rounds."""
    def scenario(server):
        t = []
        subs = clients(server, 8)
        try:
            with server.client(timeout=5) as pub:
                for r in range(60):
                    if r % 2:
                        time.sleep(0.005)  # let the threads go idle now and then
                    for s in subs:
                        send(s, "SUBSCRIBE", "race")
                    for s in subs:
                        t.append(frames(s, 1))
                    t.append(pub.raw("PUBLISH", "race", "r%d" % r))
                    for s in subs:
                        send(s, "UNSUBSCRIBE", "race")
                    for s in subs:
                        t.append(frames(s, 2))
                t.append(pub.raw("PUBLISH", "race", "nobody"))
        finally:
            close_all(subs)
        return t
    on_both(pair, scenario)


# ---- many subscribers, counts and introspection -----------------------------------------

def layout(prefix):
    """Subscriptions of 20 connections: channels and patterns overlapping so that some
    connections match a channel twice (by channel and by one or two patterns)."""
    subs = []
    for i in range(20):
        chans, pats = [], []
        if i % 2 == 0:
            chans.append(prefix + "news")
        if i % 3 == 0:
            chans.append(prefix + "sport")
        if i % 5 == 1:
            chans.append(prefix + "c%d" % i)
        if i % 4 == 0:
            pats.append(prefix + "n*")
        if i % 5 == 0:
            pats.append(prefix + "ne?s")
        if i == 7:
            pats.append(prefix + "*")
        if i % 7 == 3:
            pats.append(prefix + "[sn]*t")
        subs.append((chans, pats))
    return subs


def expected_count(subs, channel):
    n = 0
    for chans, pats in subs:
        n += channel in chans
        n += sum(fnmatch.fnmatchcase(channel, p) for p in pats)
    return n


def subscribe_layout(server, subs):
    cs = clients(server, len(subs))
    for c, (chans, pats) in zip(cs, subs):
        if chans:
            got = exchange(c, len(chans), "SUBSCRIBE", *chans)
            assert len(got) == len(chans)
        if pats:
            got = exchange(c, len(pats), "PSUBSCRIBE", *pats)
            assert len(got) == len(pats)
    return cs


def test_publish_counts_every_matching_subscription_across_threads(pair):
    """20 subscriber connections (on both threads): PUBLISH returns the number of matching
    subscriptions (a connection matching by channel and pattern counted twice), equal to
    Redis's, and each connection receives exactly its frames."""
    prefix = "cnt:"
    subs = layout(prefix)
    targets = [prefix + x for x in ("news", "sport", "nets", "next", "nest", "c1", "c6",
                                    "sport2", "s", "none", "")] + ["elsewhere"]

    def scenario(server):
        t = []
        cs = subscribe_layout(server, subs)
        try:
            with server.client(timeout=5) as pub:
                for ch in targets:
                    n = pub.cmd("PUBLISH", ch, "payload-" + ch)
                    assert n == expected_count(subs, ch), (ch, n)
                    t.append((ch, n))
                for c, (chans, pats) in zip(cs, subs):
                    want = []
                    for ch in targets:
                        e, body = ch.encode(), b"payload-" + ch.encode()
                        want += [[b"message", e, body]] * (ch in chans)
                        want += [[b"pmessage", p.encode(), e, body]
                                 for p in pats if fnmatch.fnmatchcase(ch, p)]
                    got = sorted(c.read() for _ in range(len(want)))
                    assert got == sorted(want), (chans, pats)
                    end = [b"pong", b"end"] if chans or pats else b"end"
                    assert c.cmd("PING", "end") == end, "an extra frame"
                    t.append(got)
        finally:
            close_all(cs)
        return t
    on_both(pair, scenario)


def clean(c):
    """True when no channel or pattern is subscribed on the server (earlier tests' closed
    connections are gone)."""
    return c.cmd("PUBSUB", "NUMPAT") == 0 and c.cmd("PUBSUB", "CHANNELS") == []


def test_pubsub_introspection_across_threads_matches_redis(pair):
    """PUBSUB CHANNELS [pattern] (as sets), NUMSUB (in argument order) and NUMPAT (distinct
    patterns) with the subscribers of 20 connections spread over both threads, as Redis
    answers for the same layout; then after some unsubscribe, and after all close."""
    prefix = "intro:"
    subs = layout(prefix)
    names = [prefix + x for x in ("news", "sport", "c1", "c6", "c11", "c16", "nope")]
    queries = [None, prefix + "*", prefix + "c*", prefix + "[ns]*", prefix + "c1?",
               prefix + "n?ws", "nomatch*"]

    def snapshot(c):
        s = []
        for q in queries:
            r = c.cmd("PUBSUB", "CHANNELS", *([q] if q else []))
            assert len(r) == len(set(r)), r
            s.append(("channels", q, sorted(r)))
        s.append(("numsub", c.raw("PUBSUB", "NUMSUB", *(names + [names[0]]))))
        s.append(("numpat", c.raw("PUBSUB", "NUMPAT")))
        return s

    def scenario(server):
        t = []
        with server.client(timeout=5) as q:
            wait_until(lambda: clean(q), 5, what="no subscriptions left by earlier tests")
            cs = subscribe_layout(server, subs)
            try:
                t.append(snapshot(q))
                # the numbers themselves, independently of Redis
                ns = numsub(q, prefix + "news", prefix + "sport")
                assert ns == {(prefix + "news").encode(): 10, (prefix + "sport").encode(): 7}
                assert q.cmd("PUBSUB", "NUMPAT") == len({p for _, ps in subs for p in ps}) == 4
                # some leave: the even connections drop news, connection 0 its patterns
                for i in range(0, 20, 2):
                    exchange(cs[i], 1, "UNSUBSCRIBE", prefix + "news")
                exchange(cs[0], 2, "PUNSUBSCRIBE", prefix + "n*", prefix + "ne?s")
                t.append(snapshot(q))
                assert numsub(q, prefix + "news") == {(prefix + "news").encode(): 0}
                # a second subscriber of an existing pattern does not add to NUMPAT
                exchange(cs[1], 1, "PSUBSCRIBE", prefix + "*")
                t.append(("numpat", q.cmd("PUBSUB", "NUMPAT")))
            finally:
                close_all(cs)
            wait_until(lambda: clean(q), 5, what="subscriptions dropped after close")
            t.append(snapshot(q))
        return t
    on_both(pair, scenario)


# ---- subscribed mode (RESP2), RESET, QUIT ------------------------------------------------

def test_resp2_subscribed_mode_restrictions_match_redis(pair):
    """RESP2 with a subscription (channel or pattern only): everything but the (P)SUBSCRIBE
    family, PING, QUIT and RESET is refused with Redis's error (the command's full name,
    lowercase, subcommands as 'cmd|sub'); unknown commands and arity errors come first;
    PING answers ["pong", arg]. After the last unsubscribe, commands work again."""
    refused = [("GET", "k"), ("get", "k"), ("SET", "k", "v"), ("PUBLISH", "c", "m"),
               ("PUBSUB", "CHANNELS"), ("PUBSUB", "NUMSUB", "x"), ("PUBSUB", "HELP"),
               ("CLIENT", "ID"), ("client", "list"), ("CONFIG", "GET", "maxclients"),
               ("MULTI",), ("EXEC",), ("DISCARD",), ("ECHO", "x"), ("SELECT", "0"),
               ("HELLO", "2"), ("HELLO", "3"), ("DBSIZE",), ("INFO",), ("COMMAND", "COUNT"),
               ("FLUSHALL",), ("NOSUCH",), ("GET",), ("PING", "a", "b"), ("SUBSCRIBE",),
               ("PSUBSCRIBE",), ("PING",), ("PING", "x"), ("ping", ""), ("GET", "k")]

    def scenario(server):
        t = []
        with server.client(timeout=5) as c:
            for first in (("SUBSCRIBE", "rm"), ("PSUBSCRIBE", "rm*")):
                t.append(exchange(c, 1, *first))
                for args in refused:
                    t.append((first, args, exchange(c, 1, *args)))
                t.append(exchange(c, 1, "UNSUBSCRIBE" if first[0] == "SUBSCRIBE"
                                  else "PUNSUBSCRIBE"))
                t.append(exchange(c, 1, "GET", "k"))
                t.append(exchange(c, 1, "PING"))
            # both kinds: leaving needs both gone
            t.append(exchange(c, 1, "SUBSCRIBE", "rm"))
            t.append(exchange(c, 1, "PSUBSCRIBE", "rm*"))
            t.append(exchange(c, 1, "UNSUBSCRIBE"))
            t.append(exchange(c, 1, "GET", "k"))
            t.append(exchange(c, 1, "PUNSUBSCRIBE", "rm*"))
            t.append(exchange(c, 1, "GET", "k"))
            # QUIT while subscribed: +OK, then the connection ends
            t.append(exchange(c, 1, "SUBSCRIBE", "rm"))
            t.append(exchange(c, 1, "QUIT"))
            t.append(c.closed_within(5))
        return t
    on_both(pair, scenario)
    k = pair.k.cmd("GET", "k")
    assert k is None


def test_restriction_error_text(kc):
    """The exact text of the refusal, independently of Redis."""
    assert kc.cmd("SUBSCRIBE", "txt")[0] == b"subscribe"
    assert kc.cmd("GET", "x") == Err("ERR " + RESTRICTED % "get")
    assert kc.cmd("CLIENT", "LIST") == Err("ERR " + RESTRICTED % "client|list")
    assert kc.cmd("PING") == [b"pong", b""]


def test_reset_leaves_subscribed_mode(pair):
    """RESET drops every subscription at once (PUBLISH from another connection then counts
    0, NUMSUB 0) and leaves subscribed mode; after HELLO 3 it also returns to RESP2."""
    def scenario(server):
        t = []
        with server.client(timeout=5) as c, server.client(timeout=5) as pub:
            t.append(exchange(c, 2, "SUBSCRIBE", "rs1", "rs2"))
            t.append(exchange(c, 1, "PSUBSCRIBE", "rs*"))
            t.append(pub.raw("PUBLISH", "rs1", "x"))
            t.append(frames(c, 2))
            t.append(exchange(c, 1, "RESET"))
            t.append(pub.raw("PUBLISH", "rs1", "y"))
            t.append(pub.raw("PUBSUB", "NUMSUB", "rs1", "rs2"))
            t.append(sorted(pub.cmd("PUBSUB", "CHANNELS", "rs*")))
            t.append(exchange(c, 1, "GET", "k"))
            t.append(exchange(c, 1, "PING"))
            t.append(exchange(c, 1, "UNSUBSCRIBE"))
            # RESP3 subscriber: RESET also returns to RESP2 framing
            c.cmd("HELLO", "3")
            t.append(exchange(c, 1, "SUBSCRIBE", "rs3"))
            t.append(exchange(c, 1, "RESET"))
            t.append(exchange(c, 1, "SUBSCRIBE", "rs4"))
            t.append(pub.raw("PUBLISH", "rs3", "z"))
            t.append(pub.raw("PUBLISH", "rs4", "w"))
            t.append(frames(c, 1))
            t.append(exchange(c, 1, "GET", "k"))
            t.append(exchange(c, 1, "RESET"))
            t.append(pub.raw("PUBLISH", "rs4", "v"))
        return t
    on_both(pair, scenario)


# ---- connection end ------------------------------------------------------------------

def test_closing_a_connection_drops_its_subscriptions(pair):
    """Subscribers that close (plainly, with unread messages queued, with RST, by QUIT)
    leave no channel, pattern or count behind: NUMSUB and NUMPAT drop to 0 (polled),
    PUBLISH counts 0."""
    def scenario(server):
        with server.client(timeout=5) as q:
            wait_until(lambda: clean(q), 5, what="no subscriptions left by earlier tests")
            subs = clients(server, 20)
            for i, c in enumerate(subs):
                exchange(c, 2, "SUBSCRIBE", "dc:all", "dc:%d" % i)
                exchange(c, 1, "PSUBSCRIBE", "dc:p%d*" % (i % 4))
            assert numsub(q, "dc:all") == {b"dc:all": 20}
            assert q.cmd("PUBSUB", "NUMPAT") == 4
            assert q.cmd("PUBLISH", "dc:all", "queued, never read") == 20
            assert q.cmd("PUBLISH", "dc:p1x", "p") == 5
            for i, c in enumerate(subs):
                if i % 4 == 1:  # RST instead of FIN
                    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                      struct.pack("ii", 1, 0))
                if i % 4 == 2:
                    c.send(encode("QUIT"))
                c.close()

            def gone():
                n = numsub(q, "dc:all", *["dc:%d" % i for i in range(20)])
                return (all(v == 0 for v in n.values()) and q.cmd("PUBSUB", "NUMPAT") == 0
                        and q.cmd("PUBSUB", "CHANNELS", "dc:*") == [])
            wait_until(gone, 5, what="subscriptions of closed connections to go")
            assert q.cmd("PUBLISH", "dc:all", "x") == 0
            assert q.cmd("PUBLISH", "dc:p1x", "x") == 0
        return ["ok"]
    on_both(pair, scenario)


# ---- CLIENT LIST ---------------------------------------------------------------------

def client_line(c, name):
    lines = [x for x in c.cmd("CLIENT", "LIST").decode().split("\n") if " name=%s " % name in x]
    assert len(lines) == 1, lines
    return dict(f.split("=", 1) for f in lines[0].split(" ") if "=" in f)


def test_client_list_shows_subscription_counts(pair):
    """CLIENT LIST (seen from other connections) shows sub= and psub= counts and flag P
    while subscribed, flag N and zeros after; as Redis does."""
    def scenario(server):
        t = []
        with server.client(timeout=5) as s, server.client(timeout=5) as q:
            s.ok("CLIENT", "SETNAME", "pubsub-lister")
            seen = lambda: (lambda d: (d["flags"], d["sub"], d["psub"]))(  # noqa: E731
                client_line(q, "pubsub-lister"))
            t.append(seen())
            exchange(s, 3, "SUBSCRIBE", "cl1", "cl2", "cl3")
            t.append(seen())
            exchange(s, 2, "PSUBSCRIBE", "cl*", "x*")
            t.append(seen())
            exchange(s, 3, "UNSUBSCRIBE")
            t.append(seen())
            exchange(s, 1, "PUNSUBSCRIBE", "x*")
            t.append(seen())
            exchange(s, 1, "PUNSUBSCRIBE")
            t.append(seen())
            exchange(s, 1, "SUBSCRIBE", "cl1")
            t.append(seen())
            s.cmd("RESET")
            s.ok("CLIENT", "SETNAME", "pubsub-lister")
            t.append(seen())
        return t
    got = on_both(pair, scenario)
    assert got == [("N", "0", "0"), ("P", "3", "0"), ("P", "3", "2"), ("P", "0", "2"),
                   ("P", "0", "1"), ("N", "0", "0"), ("P", "1", "0"), ("N", "0", "0")]


# ---- redis-py ------------------------------------------------------------------------

def test_redis_py_pubsub_object(pair):
    """redis-py's PubSub on kvd as on Redis: subscribe, psubscribe, get_message (with and
    without ignore_subscribe_messages), ping, listen (bounded by a socket timeout),
    unsubscribe, punsubscribe; the same messages in the same order."""
    def scenario(server):
        t = []
        r = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5)
        p = r.pubsub()
        try:
            p.subscribe("rp-a", "rp-b")
            p.psubscribe("rp-*")
            t.append([p.get_message(timeout=2) for _ in range(3)])
            t.append(p.get_message(timeout=0.1))  # nothing more
            t.append(r.publish("rp-a", "hello"))
            t.append(r.publish("rp-c", b"bin\x00\r\n"))
            t.append([p.get_message(timeout=2) for _ in range(3)])
            p.ping()
            t.append(p.get_message(timeout=2))
            t.append(r.pubsub_numsub("rp-a", "rp-b", "rp-c"))
            t.append(r.pubsub_numpat())
            t.append(sorted(r.pubsub_channels("rp-*")))
            for i in range(50):
                r.publish("rp-b", "n%d" % i)
            got = []
            for m in p.listen():  # ends by the socket timeout if messages are missing
                got.append(m)
                if len(got) == 100:
                    break
            t.append(got)
            p.unsubscribe("rp-a")
            t.append(p.get_message(timeout=2))
            t.append(r.publish("rp-a", "x"))
            t.append(p.get_message(ignore_subscribe_messages=True, timeout=2))
            p.unsubscribe()
            p.punsubscribe()
            t.append(sorted([p.get_message(timeout=2) for _ in range(2)],
                            key=lambda m: m["type"]))
            t.append(p.get_message(timeout=0.1))
            t.append(p.subscribed)
            t.append(r.publish("rp-a", "y"))
        finally:
            p.close()
            r.close()
        return t
    got = on_both(pair, scenario)
    assert got[0][0] == {"type": "subscribe", "pattern": None, "channel": b"rp-a", "data": 1}


# ---- output buffer limit -------------------------------------------------------------

def kvd_has_option(opt):
    try:
        out = subprocess.run([kvd_path(), "--help"], capture_output=True, timeout=10)
    except OSError:
        return False
    return opt in (out.stdout + out.stderr).decode("utf-8", "replace")


def test_slow_subscriber_is_disconnected_at_output_limit(kvd_factory):
    """Two subscribers (one by channel, one by pattern) that never read while 40 MiB of
    messages are published are closed at the pubsub class's client-output-buffer-limit (2 MiB here);
    the publisher is not held up; six other subscribers of the same messages (channel and
    pattern, subscribed after the slow ones, so some share a thread with them and come
    after them in its lists), reading as they go, get every message PUBLISH counted, in
    order, also the one during which a slow one is cut off; the slow ones' subscriptions
    are gone and kvd keeps serving."""
    if not kvd_has_option("--client-output-buffer-limit"):
        pytest.skip("kvd --help lists no --client-output-buffer-limit")
    k = kvd_factory(args=["--client-output-buffer-limit", "pubsub 2mb 0 0"])
    big = b"x" * (256 * 1024)
    batches, per = 40, 4  # 40 MiB in batches of 1 MiB
    slows = []
    good = []
    pub = k.client(timeout=10)
    try:
        for args in (("SUBSCRIBE", "flood"), ("PSUBSCRIBE", "flo*")):
            s = socket.socket()
            slows.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            s.settimeout(10)
            s.connect(("127.0.0.1", k.port))
            s.sendall(encode(*args))
            kind, name = args[0].lower().encode(), args[1].encode()
            want = b"*3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n:1\r\n" % (len(kind), kind, len(name), name)
            got = b""
            while len(got) < len(want):
                got += s.recv(len(want) - len(got))
            assert got == want
        for i in range(6):
            c = k.client(timeout=5)
            good.append(c)
            if i % 2:
                assert c.cmd("PSUBSCRIBE", "fl*") == [b"psubscribe", b"fl*", 1]
            else:
                assert c.cmd("SUBSCRIBE", "flood") == [b"subscribe", b"flood", 1]
        counts = []
        t0 = time.monotonic()
        for b in range(batches):
            msgs = [big + b"%d" % (b * per + i) for i in range(per)]
            counts += pub.pipeline([("PUBLISH", "flood", m) for m in msgs])
            for i, c in enumerate(good):  # they keep up: at most 1 MiB outstanding each
                for j, m in enumerate(msgs):
                    want = ([b"pmessage", b"fl*", b"flood", m] if i % 2
                            else [b"message", b"flood", m])
                    try:
                        r = c.read()
                    except socket.timeout:
                        raise AssertionError(
                            "subscriber %d never got message %d (PUBLISH counted %d; "
                            "counts so far %r)" % (i, b * per + j, counts[b * per + j],
                                                   sorted(set(counts)))) from None
                    assert r == want, (i, b * per + j, r[:-1], r[-1][-8:])
        took = time.monotonic() - t0
        assert all(c in (6, 7, 8) for c in counts), sorted(set(counts))
        assert counts[-1] == 6, "a slow subscriber was still counted at the end"
        assert took < 20, "publishing took %.1fs" % took
        wait_until(lambda: numsub(pub, "flood") == {b"flood": 3}, 5,
                   what="the slow subscriber's subscription to go")
        assert pub.cmd("PUBSUB", "NUMPAT") == 1
        assert pub.cmd("PUBLISH", "flood", "small") == 6
        for i, c in enumerate(good):
            assert c.read()[-1] == b"small"
        assert pub.cmd("PING") == St("PONG")
        # the slow ones were closed: reading ends in EOF/RST well before 40 MiB
        for s in slows:
            total = 0
            try:
                while True:
                    d = s.recv(1 << 20)
                    if not d:
                        break
                    total += len(d)
            except ConnectionResetError:
                pass
            except socket.timeout:
                raise AssertionError("a slow subscriber was not disconnected (read %d bytes)"
                                     % total)
            assert total < 20 * (1 << 20), total
    finally:
        for s in slows:
            s.close()
        close_all(good + [pub])
    with k.client() as c:
        assert c.cmd("SET", "after", "1") == St("OK")
        assert c.cmd("PUBSUB", "NUMSUB", "flood") == [b"flood", 0]
        assert c.cmd("PUBSUB", "NUMPAT") == 0
    k.check_alive()


# ---- review regressions ------------------------------------------------------------------

def test_publishing_to_itself_behind_pending_replies_never_aborts(kvd):
    """A RESP3 connection subscribed to a channel and 20 matching patterns pipelines
    reads of keys of both threads, 200 PINGs and PUBLISHes to itself: each PUBLISH adds a
    message per match behind replies still awaited. kvd stays up; the connection either
    gets everything in order or is closed for holding too much, never more."""
    from conftest import ConnClosed
    c = kvd.client()
    c.cmd("HELLO", "3")
    c.send(encode("SUBSCRIBE", "ch") + b"".join(encode("PSUBSCRIBE", "c%s" % ("*" * (i + 1)))
                                              for i in range(20)))
    for _ in range(21):
        c.read()
    batch = b"".join(encode("GET", "key%d" % i) for i in range(8))
    batch += encode("PING") * 200 + encode("PUBLISH", "ch", "boom") * 3
    try:
        c.send(batch)
        for _ in range(8 + 200 + 3 + 3 * 21):
            c.read()
    except (ConnClosed, OSError):
        pass
    c.close()
    with kvd.client() as o:
        assert o.cmd("PING") == St("PONG")
    kvd.check_alive()


def test_script_publishes_arrive_in_order_through_a_full_queue():
    """A script publishing 300 messages while the queue to the subscriber's thread holds
    two: they arrive in publish order (the overflow list is first in, first out)."""
    from conftest import Kvd
    k = Kvd(args=["--shard-queue-size", "2"])
    try:
        subs = []
        for _ in range(8):  # some on each thread
            s = k.client()
            s.cmd("SUBSCRIBE", "ch")
            subs.append(s)
        with k.client() as p:
            assert p.cmd("EVAL", "for i=1,300 do redis.call('publish','ch',i) end return 1",
                         "1", "k") == 1
        for s in subs:
            got = [s.read()[2] for _ in range(300)]
            assert got == [b"%d" % i for i in range(1, 301)], got[:10]
            s.close()
    finally:
        k.stop()


def test_messages_reach_a_client_with_replies_off(pair):
    """CLIENT REPLY OFF silences replies, not messages (Redis 7.0 sends them)."""
    for c, o in ((pair.k, pair.kvd.client()), (pair.r, pair.redis.client())):
        try:
            c.cmd("HELLO", "3")
            c.send(encode("SUBSCRIBE", "ch") + encode("CLIENT", "REPLY", "OFF"))
            c.read()
            assert o.cmd("PUBLISH", "ch", "m1") == 1
            assert c.read() == Push((b"message", b"ch", b"m1"))
            c.send(encode("CLIENT", "REPLY", "ON"))
            assert c.read() == St("OK")
        finally:
            o.close()


# ---- shard channels (SSUBSCRIBE, SUNSUBSCRIBE, SPUBLISH) ---------------------------------

def test_shard_channels_match_redis(pair):
    def scenario(server):
        t = []
        c, d, e = server.client(timeout=5), server.client(timeout=5), server.client(timeout=5)
        try:
            t.append(exchange(c, 2, "SSUBSCRIBE", "s1", "s2"))
            t.append(exchange(c, 1, "SUBSCRIBE", "c1"))     # counted apart from shard ones
            t.append(exchange(c, 1, "SSUBSCRIBE", "s1"))    # again: no change
            t.append(exchange(c, 1, "PING"))
            t.append(exchange(c, 1, "GET", "x"))            # the subscribed context
            t.append(exchange(c, 1, "SUNSUBSCRIBE", "s1"))
            t.append(exchange(c, 1, "UNSUBSCRIBE"))
            t.append(exchange(c, 1, "GET", "x"))            # s2 keeps the context
            t.append(exchange(c, 1, "SUNSUBSCRIBE"))
            t.append(exchange(c, 1, "SUNSUBSCRIBE"))        # none left: nil, 0
            t.append(exchange(c, 1, "GET", "x"))
            t.append(exchange(d, 1, "SPUBLISH", "nobody", "m"))
            t.append(exchange(d, 1, "MULTI") + exchange(d, 1, "SSUBSCRIBE", "q") +
                     exchange(d, 1, "EXEC"))
            t.append(exchange(d, 1, "MULTI") + exchange(d, 1, "SUNSUBSCRIBE", "q") +
                     exchange(d, 1, "EXEC"))
            t.append(exchange(d, 1, "HELLO", "3")[0][:1])
            t.append(exchange(d, 1, "SSUBSCRIBE", "z"))
            t.append(exchange(d, 1, "PSUBSCRIBE", "z*"))
            t.append(exchange(e, 1, "SPUBLISH", "z", "hi") + frames(d, 1))   # no pmessage
            t.append(exchange(e, 1, "PUBLISH", "z", "hi2") + frames(d, 1))   # no smessage
            t.append(exchange(e, 1, "EVAL", "return redis.call('spublish', 'z', 'lua')", "0") +
                     frames(d, 1))
            t.append(exchange(e, 1, "EVAL", "return redis.call('ssubscribe', 'z')", "0"))
            for args in [("SPUBLISH",), ("SSUBSCRIBE",), ("SPUBLISH", "a"),
                         ("PUBSUB", "SHARDCHANNELS", "a", "b"), ("PUBSUB", "SHARDCHANNELS"),
                         ("PUBSUB", "SHARDCHANNELS", "z*"), ("PUBSUB", "SHARDCHANNELS", "q*"),
                         ("PUBSUB", "SHARDNUMSUB", "z", "s1"), ("PUBSUB", "SHARDNUMSUB"),
                         ("PUBSUB", "NUMSUB", "z"), ("PUBSUB", "CHANNELS"),
                         ("COMMAND", "INFO", "spublish", "ssubscribe", "sunsubscribe"),
                         ("COMMAND", "GETKEYS", "spublish", "a", "b"),
                         ("COMMAND", "GETKEYS", "ssubscribe", "a", "b"),
                         ("COMMAND", "GETKEYSANDFLAGS", "sunsubscribe", "a")]:
                t.append(exchange(e, 1, *args))
            info = e.cmd("INFO", "stats").decode()
            t.append([x for x in info.split("\r\n") if x.startswith("pubsub")])
            t.append(exchange(e, 1, "HELLO", "3")[0][:1])
            t.append(exchange(e, 2, "SSUBSCRIBE", "k1", "k2"))
            line = e.cmd("CLIENT", "INFO").data.decode()  # (RESP3: verbatim)
            t.append([w for w in line.split() if w.split("=")[0] in ("sub", "psub", "ssub")])
            t.append(exchange(d, 1, "RESET"))
            t.append(exchange(d, 1, "SPUBLISH", "z", "after reset"))
            info = d.cmd("INFO", "stats").decode()
            t.append([x for x in info.split("\r\n") if x.startswith("pubsub")])
        finally:
            close_all([c, d, e])
        return t
    on_both(pair, scenario)


def test_spublish_reaches_shard_subscribers_on_both_threads(pair):
    """SPUBLISH counts and reaches every subscriber of the shard channel, wherever its
    connection lives; PUBSUB SHARDNUMSUB counts them; a script's SPUBLISH too."""
    def scenario(server):
        t = []
        subs = clients(server, 20)
        try:
            for i, c in enumerate(subs):
                names = ["sc:all"] + (["sc:even"] if i % 2 == 0 else [])
                assert len(exchange(c, len(names), "SSUBSCRIBE", *names)) == len(names)
            with server.client(timeout=5) as pub:
                t.append(pub.cmd("PUBSUB", "SHARDNUMSUB", "sc:all", "sc:even", "sc:none"))
                t.append(pub.cmd("SPUBLISH", "sc:all", "one"))
                t.append(pub.cmd("SPUBLISH", "sc:even", "two"))
                t.append(pub.cmd("EVAL", "return redis.call('spublish', KEYS[1], 'three')", "1",
                                 "sc:all"))
                for i, c in enumerate(subs):
                    got = [c.read() for _ in range(3 if i % 2 == 0 else 2)]
                    want = [[b"smessage", b"sc:all", b"one"]]
                    want += [[b"smessage", b"sc:even", b"two"]] * (i % 2 == 0)
                    want += [[b"smessage", b"sc:all", b"three"]]
                    assert got == want, (i, got)
                    assert c.cmd("PING", "end") == [b"pong", b"end"], "an extra frame"
                t.append(pub.cmd("SPUBLISH", "sc:none", "x"))
        finally:
            close_all(subs)
        return t
    assert on_both(pair, scenario)[:4] == [[b"sc:all", 20, b"sc:even", 10, b"sc:none", 0],
                                           20, 10, 20]


def test_client_types_of_subscribers_match_redis(pair):
    """A client subscribed to anything (shard channels too) is of type pubsub (flag P),
    the others normal: CLIENT LIST TYPE and CLIENT KILL TYPE select them as Redis does."""
    def scenario(server):
        t = []
        a, b, c = server.client(timeout=5), server.client(timeout=5), server.client(timeout=5)
        try:
            exchange(a, 1, "SUBSCRIBE", "ct:1")
            exchange(b, 1, "SSUBSCRIBE", "ct:2")
            with server.client(timeout=5) as q:
                for typ in ("pubsub", "normal"):
                    lines = q.cmd("CLIENT", "LIST", "TYPE", typ).decode().splitlines()
                    t.append((typ, sorted(w for x in lines for w in x.split()
                                          if w.startswith(("flags=", "sub=", "ssub=")))))
                t.append(q.cmd("CLIENT", "KILL", "TYPE", "pubsub"))
                t.append((a.closed_within(5), b.closed_within(5)))
                t.append(q.cmd("CLIENT", "KILL", "TYPE", "pubsub"))
        finally:
            close_all([a, b, c])
        return t
    assert on_both(pair, scenario)[2] == 2


def test_spublish_is_held_by_pause_write_and_refused_read_only(pair):
    """SPUBLISH (like PUBLISH) is may_replicate in Redis: CLIENT PAUSE WRITE holds it and
    an EXEC holding it, read-only scripts refuse it; PUBSUB runs inside scripts."""
    for cmd in [("EVAL_RO", "return redis.call('spublish', 'a', 'b')", "0"),
                ("EVAL_RO", "return redis.call('publish', 'a', 'b')", "0"),
                ("EVAL", "#!lua flags=no-writes\nreturn redis.call('spublish', 'a', 'b')", "0"),
                ("EVAL", "return redis.call('pubsub', 'shardnumsub', 'a')", "0"),
                ("EVAL", "return redis.call('pubsub', 'numpat')", "0")]:
        pair.same(*cmd)
    for server in (pair.kvd, pair.redis):
        with server.client(timeout=5) as a, server.client(timeout=5) as b:
            assert a.cmd("CLIENT", "PAUSE", "400", "WRITE") == St("OK")
            t0 = time.monotonic()
            assert b.cmd("SPUBLISH", "held", "m") == 0
            assert b.cmd("MULTI") == St("OK") and b.cmd("SPUBLISH", "held", "m") == St("QUEUED")
            assert a.cmd("CLIENT", "PAUSE", "400", "WRITE") == St("OK")
            t1 = time.monotonic()
            assert b.cmd("EXEC") == [0]
            assert t1 - t0 >= 0.3 and time.monotonic() - t1 >= 0.3, server


def _raw_exchange(port, data):
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.sendall(data + b"ECHO end-of-exchange\r\n")
    out = b""
    while b"end-of-exchange" not in out:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    return out


def test_subscribe_confirmations_under_client_reply_off_match_redis(pair):
    """(P/S)(UN)SUBSCRIBE confirmations are pushes: Redis sends them under CLIENT REPLY
    OFF and SKIP too (a client waiting for one would hang), in RESP2 and RESP3; the
    replies of other commands stay dropped."""
    for data in [b"CLIENT REPLY OFF\r\nPSUBSCRIBE *\r\nSUBSCRIBE ch\r\nPING\r\n"
                 b"UNSUBSCRIBE ch\r\nPUNSUBSCRIBE\r\nCLIENT REPLY ON\r\n",
                 b"HELLO 3\r\nCLIENT REPLY SKIP\r\nSUBSCRIBE channel\r\nPING\r\n",
                 b"HELLO 3\r\nCLIENT REPLY OFF\r\nSSUBSCRIBE s1\r\nSET k v\r\nSUNSUBSCRIBE\r\n"
                 b"CLIENT REPLY ON\r\n"]:
        k = _raw_exchange(pair.kvd.port, data)
        r = _raw_exchange(pair.redis.port, data)
        if data.startswith(b"HELLO"):  # (HELLO's map names each server)
            k, r = k[k.index(b">"):], r[r.index(b">"):]
        assert k == r, (data, k, r)
