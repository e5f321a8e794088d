"""The RESP request parser (proto/resp_parse) against a real Redis 7.

Each malformed, limit-hitting or quirky input is sent over a raw socket to Debian's
redis-server, and its reply is compared with what resp_parse_tool (the parser driven
from stdin) reports: the exact protocol error text, or, for inputs Redis accepts, the
arguments it parsed (read back from Redis with RPUSH/LRANGE), or "still waiting".
The pre-AUTH limits are compared against a second server started with --requirepass.
Skipped, with the reason printed, only when /usr/bin/redis-server is missing.
"""
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

REDIS = "/usr/bin/redis-server"
SRC = os.environ.get("KV_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def find_tool():
    build = os.environ.get("KV_BUILD_DIR")
    cands = [os.path.join(build, "proto", "resp_parse_tool")] if build else []
    cands += sorted(glob.glob(os.path.join(SRC, "build", "*", "proto", "resp_parse_tool")),
                    key=os.path.getmtime, reverse=True)
    for c in cands:
        if os.access(c, os.X_OK):
            return c
    pytest.fail("resp_parse_tool is not built (target resp_parse_tool in proto/)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    def __init__(self, password=None):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="kv-resp-redis-")
        args = [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.dir, "--daemonize", "no"]
        if password:
            args += ["--requirepass", password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def exchange(self, data, quiet=0.4):
        """Sends data; returns (reply bytes, closed by the server?)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        try:
            s.sendall(data)
            s.settimeout(quiet)
            out = b""
            while True:
                try:
                    d = s.recv(1 << 16)
                except socket.timeout:
                    return out, False
                except ConnectionResetError:
                    return out, True
                if not d:
                    return out, True
                out += d
        finally:
            s.close()


@pytest.fixture(scope="module")
def servers():
    if not os.access(REDIS, os.X_OK):
        print("SKIP: %s is missing (apt-get install redis-server)" % REDIS)
        pytest.skip("%s is missing" % REDIS)
    plain = Redis()
    locked = Redis(password="s3cret")
    yield {"plain": plain, "auth": locked}
    plain.stop()
    locked.stop()


def ours(data, auth=False, split=None):
    args = [find_tool()] + (["--auth"] if auth else []) + (["--split", str(split)] if split else [])
    out = subprocess.run(args, input=data, stdout=subprocess.PIPE, check=True).stdout
    lines = out.decode("latin-1").splitlines()
    cmds = []
    for line in lines[:-1]:
        assert line.startswith("CMD ")
        cmds.append([b"" if h == "-" else bytes.fromhex(h) for h in line[4:].split(" ")])
    return cmds, lines[-1]


# Inputs Redis refuses with a protocol error: (name, bytes, needs the pre-AUTH server).
ERRORS = [
    ("mbulk_plus", b"*+1\r\n", False),
    ("mbulk_leading_zero", b"*01\r\n", False),
    ("mbulk_minus_zero", b"*-0\r\n", False),
    ("mbulk_empty", b"*\r\n", False),
    ("mbulk_space", b"* 1\r\n", False),
    ("mbulk_over_int_max", b"*2147483648\r\n", False),
    ("mbulk_overflow", b"*99999999999999999999\r\n", False),
    ("mbulk_lf_only", b"*1\n$4\r\nPING\r\n", False),
    ("expected_dollar_x", b"*1\r\nx4\r\nPING\r\n", False),
    ("expected_dollar_star", b"*2\r\n$1\r\na\r\n*1\r\n", False),
    ("expected_dollar_cr", b"*1\r\n\r\n", False),
    ("expected_dollar_high", b"*1\r\n\xff4\r\n", False),
    ("skip_after_cr", b"*1\r$4\r\nPING\r\n", False),
    ("bulk_negative", b"*1\r\n$-1\r\n", False),
    ("bulk_minus_zero", b"*1\r\n$-0\r\n", False),
    ("bulk_empty", b"*1\r\n$\r\n", False),
    ("bulk_letters", b"*1\r\n$1a\r\n", False),
    ("bulk_over_max", b"*1\r\n$536870913\r\n", False),
    ("mbulk_line_too_long", b"*" + b"1" * 65536, False),
    ("bulk_line_too_long", b"*1\r\n$" + b"1" * 65536, False),
    ("bulk_line_nul", b"*1\r\n$\x00" + b"x" * 65536, False),
    ("inline_too_long", b"a" * 65537, False),
    ("inline_nul", b"GET a\x00b\r\n" + b"x" * 65528, False),
    ("unbalanced_dq", b'ECHO "abc\r\n', False),
    ("unbalanced_sq", b"ECHO 'abc\r\n", False),
    ("quote_then_char", b'ECHO "a"b\r\n', False),
    ("squote_then_char", b"ECHO 'a'b\r\n", False),
    ("escaped_close", b'ECHO "abc\\"\r\n', False),
    ("unauth_mbulk", b"*11\r\n", True),
    ("unauth_bulk", b"*1\r\n$16385\r\n", True),
    ("unauth_still_invalid", b"*2147483648\r\n", True),
    ("unauth_bulk_over_max", b"*1\r\n$536870913\r\n", True),
    ("unauth_inline_too_long", b"b" * 65537, True),
]


@pytest.mark.parametrize("name,data,auth", ERRORS, ids=[e[0] for e in ERRORS])
def test_protocol_error_text_matches_redis(servers, name, data, auth):
    reply, closed = servers["auth" if auth else "plain"].exchange(data)
    assert closed, "redis kept the connection open: %r" % reply[:200]
    last = reply.rstrip(b"\r\n").split(b"\r\n")[-1]
    assert last.startswith(b"-"), reply
    for split in (None, 1, 7, 4096):
        cmds, res = ours(data, auth=auth, split=split)
        assert res == "ERR " + last[1:].decode("latin-1"), (split, res, reply)


# Inputs Redis neither runs nor refuses: it waits for more.
WAITING = [
    ("mbulk_line_max", b"*" + b"1" * 65535, False),
    ("bulk_line_max", b"*1\r\n$" + b"1" * 65535, False),
    ("inline_max", b"a" * 65536, False),
    ("inline_nul_short", b"GET a\x00b\r\nPING\r\n", False),
    ("header_nul_short", b"*1\r\n$\x004\r\nPING\r\n", False),
    ("int_max_args", b"*2147483647\r\n", False),
    ("max_bulk_declared", b"*1\r\n$536870912\r\nabc", False),
    ("unauth_ten", b"*10\r\n", True),
    ("unauth_bulk_max", b"*1\r\n$16384\r\n", True),
]


@pytest.mark.parametrize("name,data,auth", WAITING, ids=[w[0] for w in WAITING])
def test_incomplete_input_waits_like_redis(servers, name, data, auth):
    reply, closed = servers["auth" if auth else "plain"].exchange(data)
    assert reply == b"" and not closed, reply[:200]
    cmds, res = ours(data, auth=auth, split=4096)
    assert cmds == [] and res == "AGAIN"


def read_reply(buf, i=0):
    """Parses one RESP2 reply at buf[i:]; returns (value, next index)."""
    t, end = buf[i:i + 1], buf.index(b"\r\n", i)
    line = buf[i + 1:end]
    if t in (b"+", b"-", b":"):
        return (t + line), end + 2
    if t == b"$":
        n = int(line)
        if n < 0:
            return None, end + 2
        return buf[end + 2:end + 2 + n], end + 2 + n + 2
    if t == b"*":
        out, j = [], end + 2
        for _ in range(int(line)):
            v, j = read_reply(buf, j)
            out.append(v)
        return out, j
    raise AssertionError("bad reply %r" % buf[i:i + 50])


LRANGE = b"*4\r\n$6\r\nLRANGE\r\n$3\r\n__t\r\n$1\r\n0\r\n$2\r\n-1\r\n"
DEL = b"*2\r\n$3\r\nDEL\r\n$3\r\n__t\r\n"

# Inline lines: the tokens after "RPUSH __t" are compared.
INLINE = [
    b'"a b" c',
    b'""  x',
    b'"\\n\\r\\t\\b\\a\\\\\\"\\q"',
    b'"\\x41\\x7a\\xZZ\\x4"',
    b'"\\x00" "\\xff"',
    b"'a\\'b\\n'",
    b"'say \"hi\"'",
    b'ab"cd" e',
    b"ab'c d' e",
    b'"x"\x0b y',
    b"a\x0bb",
    b"a\rb",
    b"\x0b\x0ca\t b",
    b"caf\xc3\xa9 \xff",
]


@pytest.mark.parametrize("line", INLINE, ids=[repr(x) for x in INLINE])
def test_inline_tokens_match_redis(servers, line):
    for eol in (b"\r\n", b"\n"):
        data = DEL + b"RPUSH __t " + line + eol
        reply, _ = servers["plain"].exchange(data + LRANGE)
        _, j = read_reply(reply)
        n, j = read_reply(reply, j)
        assert n.startswith(b":"), n
        redis_tokens, _ = read_reply(reply, j)
        for split in (None, 1, 5):
            cmds, res = ours(data, split=split)
            assert res == "AGAIN"
            assert cmds[-1][:2] == [b"RPUSH", b"__t"]
            assert cmds[-1][2:] == redis_tokens, (split, cmds, redis_tokens)


# Multibulk quirks Redis accepts: the RPUSH arguments are compared.
MBULK = [
    b"*3\r\n$5\r\nRPUSH\r\n$3\r\n__t\r\n$3\r\nfooXY",          # trailer not checked
    b"*3\rZ$5\r\nRPUSH\r\n$3\r\n__t\r\n$1\r\na\r\n",           # byte after '\r' skipped
    b"*0\r\n*-1\r\n*3\r\n$5\r\nRPUSH\r\n$3\r\n__t\r\n$0\r\n\r\n",  # empty ones ignored
    b"\r\n\n  \r\n*3\r\n$5\r\nRPUSH\r\n$3\r\n__t\r\n$2\r\n\r\n\r\n",  # empty lines
    b"*3\r\n$5\r\nRPUSH\r\n$3\r\n__t\r\n$4\r\n\x00\x01\r\n\r\n",  # binary
]


@pytest.mark.parametrize("data", MBULK, ids=[str(i) for i in range(len(MBULK))])
def test_multibulk_quirks_match_redis(servers, data):
    reply, _ = servers["plain"].exchange(DEL + data + LRANGE)
    _, j = read_reply(reply)
    n, j = read_reply(reply, j)
    assert n == b":1", reply
    redis_tokens, _ = read_reply(reply, j)
    for split in (None, 1, 3):
        cmds, res = ours(data, split=split)
        assert res == "AGAIN"
        assert cmds[-1][2:] == redis_tokens


def test_commands_before_an_error_still_run(servers):
    data = b"*1\r\n$4\r\nPING\r\nPING\r\n*1\r\n$-1\r\n"
    reply, closed = servers["plain"].exchange(data)
    assert closed
    assert reply == b"+PONG\r\n+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"
    cmds, res = ours(data, split=2)
    assert cmds == [[b"PING"], [b"PING"]]
    assert res == "ERR ERR Protocol error: invalid bulk length"
