"""kvcli, the command-line client, against real kvd processes (and Redis 7 for reference).

kvcli must behave like redis-cli: the same output byte for byte (terminal style with
--no-raw or FAKETTY, raw style in a pipe or with --raw), the same splitting of typed
lines, the same exit status. So most checks run a command sequence through both kvcli
and Debian's redis-cli against the same server and compare. Servers: a kvd on a free
port (one plain, one started with --requirepass), and for the RESP3 types kvd never
sends (sets, pushes, big numbers, nested maps) a redis-server with DEBUG PROTOCOL and
Lua. Comparisons with Redis are skipped, with the reason printed, when
/usr/bin/redis-server or redis-cli is missing.

Binaries come from $KV_BUILD_DIR (set by ctest), else build/release. The randomized
quoting test is seeded: KVCLI_TEST_SEED=<n> replays a failure (the seed is printed).
"""
import os
import pty
import random
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest

SRC = os.environ.get("KV_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
BUILD = os.environ.get("KV_BUILD_DIR", os.path.join(SRC, "build", "release"))
KVCLI = os.path.join(BUILD, "tools", "kvcli", "kvcli")
KVD = os.path.join(BUILD, "io", "kvd")
REDIS_SERVER = "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
TIMEOUT = 30


def need_binaries():
    for b in (KVCLI, KVD):
        if not os.access(b, os.X_OK):
            pytest.fail(f"{b} is not built (KV_BUILD_DIR={BUILD})")


def need_redis_cli():
    if not os.access(REDIS_CLI, os.X_OK):
        print(f"skipping: {REDIS_CLI} is missing, no reference to compare with")
        pytest.skip("redis-cli is missing")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    deadline = time.time() + 10
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start on port {port}")


class Server:
    """A kvd or redis-server process on a free port, stopped by stop()."""

    def __init__(self, kind, password=None):
        self.kind = kind
        self.dir = tempfile.mkdtemp(prefix=f"kvcli-{kind}-")
        self.port = free_port()
        if kind == "kvd":
            args = [KVD, "--port", str(self.port), "--threads", "2", "--dir", self.dir]
        else:
            args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", self.dir, "--enable-debug-command", "yes"]
        if password:
            args += ["--requirepass", password]
        self.log = open(os.path.join(self.dir, "log"), "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_port(self.port, self.proc, kind)
        except Exception:
            self.stop()
            raise

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def kvd():
    need_binaries()
    s = Server("kvd")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def kvd_auth():
    need_binaries()
    s = Server("kvd", password="s3cret")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def redis():
    need_binaries()
    need_redis_cli()
    if not os.access(REDIS_SERVER, os.X_OK):
        print(f"skipping: {REDIS_SERVER} is missing, no reference server")
        pytest.skip("redis-server is missing")
    s = Server("redis")
    yield s
    s.stop()


def run(tool, port, *args, stdin=b"", env=None, fake_tty=False):
    """Runs kvcli or redis-cli with -p port; returns (exit status, stdout, stderr)."""
    e = dict(os.environ)
    e.pop("FAKETTY", None)
    e.pop("KVCLI_AUTH", None)
    e.pop("REDISCLI_AUTH", None)
    if fake_tty:
        e["FAKETTY"] = "1"
    if env:
        e.update(env)
    exe = KVCLI if tool == "kvcli" else REDIS_CLI
    argv = [exe] + (["-p", str(port)] if port is not None else []) + list(args)
    p = subprocess.run(argv, input=stdin, capture_output=True, env=e, timeout=TIMEOUT)
    return p.returncode, p.stdout, p.stderr


def kv(port, *args, **kw):
    return run("kvcli", port, *args, **kw)


def send(port, *args):
    """One command over a raw socket (no client library): returns the raw reply."""
    req = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        req += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(req)
        out = s.recv(1 << 16)  # waits for the first byte (the server may be busy)
        s.settimeout(0.3)
        try:
            while True:
                d = s.recv(1 << 16)
                if not d:
                    break
                out += d
        except socket.timeout:
            pass
        return out


def flush(port):
    assert send(port, "FLUSHALL") == b"+OK\r\n"


# ---- one-shot mode ------------------------------------------------------------------


def test_one_shot_commands(kvd):
    flush(kvd.port)
    assert kv(kvd.port, "SET", "k", "v") == (0, b"OK\n", b"")
    assert send(kvd.port, "GET", "k") == b"$1\r\nv\r\n"
    assert kv(kvd.port, "GET", "k") == (0, b"v\n", b"")
    assert kv(kvd.port, "--no-raw", "GET", "k") == (0, b'"v"\n', b"")
    assert kv(kvd.port, "GET", "nokey") == (0, b"\n", b"")
    assert kv(kvd.port, "--no-raw", "GET", "nokey") == (0, b"(nil)\n", b"")
    assert kv(kvd.port, "--no-raw", "INCR", "n") == (0, b"(integer) 1\n", b"")
    assert kv(kvd.port, "INCR", "n") == (0, b"2\n", b"")
    assert kv(kvd.port, "MGET", "k", "nokey", "n") == (0, b"v\n\n2\n", b"")
    assert kv(kvd.port, "--no-raw", "MGET", "k", "nokey", "n") == (
        0, b'1) "v"\n2) (nil)\n3) "2"\n', b"")
    # Arguments from the command line are taken as they are: no quote processing.
    assert kv(kvd.port, "SET", "q", 'a "b" \\n')[0] == 0
    assert send(kvd.port, "GET", "q") == b'$8\r\na "b" \\n\r\n'


def test_one_shot_error_reply_exits_zero(kvd):
    flush(kvd.port)
    send(kvd.port, "SET", "s", "abc")
    code, out, err = kv(kvd.port, "INCR", "s")
    assert (code, out, err) == (0, b"ERR value is not an integer or out of range\n\n", b"")
    code, out, _ = kv(kvd.port, "--no-raw", "INCR", "s")
    assert (code, out) == (0, b"(error) ERR value is not an integer or out of range\n")
    code, out, _ = kv(kvd.port, "--no-raw", "NOSUCHCOMMAND", "x")
    assert code == 0 and out.startswith(b"(error) ERR unknown command 'NOSUCHCOMMAND'")


def test_terminal_style_escapes_binary_values(kvd):
    flush(kvd.port)
    value = bytes(range(0, 256))
    send(kvd.port, "SET", "bin", value)
    code, out, _ = kv(kvd.port, "GET", "bin", fake_tty=True)
    assert code == 0
    expect = b'"'
    for c in value:
        expect += {0x5c: b"\\\\", 0x22: b'\\"', 0x0a: b"\\n", 0x0d: b"\\r", 0x09: b"\\t",
                   0x07: b"\\a", 0x08: b"\\b"}.get(
            c, bytes([c]) if 0x20 <= c <= 0x7e else b"\\x%02x" % c)
    assert out == expect + b'"\n'
    # Raw output is the bytes themselves.
    assert kv(kvd.port, "GET", "bin") == (0, value + b"\n", b"")
    assert kv(kvd.port, "--raw", "GET", "bin", fake_tty=True) == (0, value + b"\n", b"")


def test_repeat_and_interval(kvd):
    flush(kvd.port)
    assert kv(kvd.port, "-r", "3", "INCR", "c") == (0, b"1\n2\n3\n", b"")
    t0 = time.time()
    assert kv(kvd.port, "-r", "3", "-i", "0.2", "INCR", "c") == (0, b"4\n5\n6\n", b"")
    assert time.time() - t0 >= 0.55


def test_stdin_last_argument_and_error_exit_code(kvd):
    flush(kvd.port)
    value = bytes(range(256)) * 3 + b"\n"
    assert kv(kvd.port, "-x", "SET", "x", stdin=value) == (0, b"OK\n", b"")
    assert send(kvd.port, "GET", "x") == b"$%d\r\n%s\r\n" % (len(value), value)
    assert kv(kvd.port, "-x", "SET", "empty", stdin=b"") == (0, b"OK\n", b"")
    assert send(kvd.port, "STRLEN", "empty") == b":0\r\n"
    # -e: an error reply goes to stderr, alone, and one-shot mode exits 1 at once.
    send(kvd.port, "SET", "s", "abc")
    assert kv(kvd.port, "-e", "-r", "3", "INCR", "s") == (
        1, b"", b"ERR value is not an integer or out of range\n")
    assert kv(kvd.port, "-e", "--no-raw", "GET", "s") == (0, b'"abc"\n', b"")
    # Stdin mode ignores -e (as redis-cli does).
    assert kv(kvd.port, "-e", stdin=b"INCR s\nPING\n") == (
        0, b"ERR value is not an integer or out of range\n\nPONG\n", b"")


def test_x_and_e_same_as_redis_cli(kvd):
    need_redis_cli()
    reset = lambda: (flush(kvd.port), send(kvd.port, "SET", "s", "abc"))
    compare(kvd, ["-x", "SET", "k"], stdin=b'a "quoted"\x00\xff\n', before=reset)
    compare(kvd, ["-e", "INCR", "s"], before=reset)
    compare(kvd, ["-e", "-r", "2", "INCR", "s"], before=reset)
    for tool in ("redis-cli", "kvcli"):
        reset()
        assert run(tool, kvd.port, "-e", "INCR", "s")[2] == \
            b"ERR value is not an integer or out of range\n"


def test_options_and_version():
    need_binaries()
    code, out, _ = kv(None, "--version")
    assert code == 0 and out.startswith(b"kvcli ")
    code, out, _ = kv(None, "--help")
    assert code == 0 and b"Usage: kvcli" in out
    code, _, err = kv(None, "--bogus")
    assert code == 1 and err == b"Unrecognized option or bad number of args for: '--bogus'\n"
    code, _, err = kv(None, "-p")
    assert code == 1 and b"'-p'" in err


# ---- connection failures, AUTH, SELECT ------------------------------------------------


def test_connection_refused():
    need_binaries()
    port = free_port()  # nothing listens there
    code, out, err = kv(port, "PING")
    assert code == 1 and out == b""
    assert err == b"Could not connect to kvd at 127.0.0.1:%d: Connection refused\n" % port
    code, out, err = kv(port, stdin=b"PING\nPING\n")
    assert code == 1 and out == b""
    assert err.count(b"Connection refused") == 3  # at start, then once per command
    code, _, err = kv(None, "-h", "no-such-host.invalid", "PING")
    assert code == 1 and err.startswith(b"Could not connect to kvd at no-such-host.invalid:")


def test_auth(kvd_auth):
    port = kvd_auth.port
    code, out, err = kv(port, "-a", "s3cret", "SET", "a", "1")
    assert (code, out) == (0, b"OK\n")
    assert b"Warning: Using a password" in err
    assert kv(port, "-a", "s3cret", "--no-auth-warning", "GET", "a") == (0, b"1\n", b"")
    assert kv(port, "GET", "a", env={"KVCLI_AUTH": "s3cret"}) == (0, b"1\n", b"")
    code, out, err = kv(port, "--no-raw", "GET", "a")
    assert (code, out, err) == (0, b"(error) NOAUTH Authentication required.\n", b"")
    # A refused AUTH is reported and the command still runs (and fails), exit 0.
    code, out, err = kv(port, "--no-auth-warning", "-a", "wrong", "--no-raw", "GET", "a")
    assert code == 0 and out == b"(error) NOAUTH Authentication required.\n"
    assert err.startswith(b"AUTH failed: WRONGPASS")
    # Stdin mode authenticates its connection once, before the first command.
    code, out, _ = kv(port, "--no-auth-warning", "-a", "s3cret", stdin=b"GET a\nINCR a\n")
    assert (code, out) == (0, b"1\n2\n")
    # AUTH typed as a command.
    code, out, _ = kv(port, "--no-raw", stdin=b"GET a\nAUTH s3cret\nGET a\n")
    assert (code, out) == (0, b'(error) NOAUTH Authentication required.\nOK\n"2"\n')
    # --user: AUTH user password (an ACL user)
    assert kv(port, "--no-auth-warning", "-a", "s3cret", "ACL", "SETUSER", "cli", "on",
              ">pw2", "~*", "+@all") == (0, b"OK\n", b"")
    assert kv(port, "--no-auth-warning", "--user", "cli", "-a", "pw2", "ACL", "WHOAMI") == (
        0, b"cli\n", b"")
    code, out, err = kv(port, "--no-auth-warning", "--user", "cli", "-a", "s3cret", "--no-raw",
                        "GET", "a")
    assert code == 0 and err.startswith(b"AUTH failed: WRONGPASS")


def test_select_db(kvd):
    flush(kvd.port)
    send(kvd.port, "SET", "k", "v")
    assert kv(kvd.port, "-n", "0", "GET", "k") == (0, b"v\n", b"")
    assert kv(kvd.port, "-n", "1", "SET", "k", "one") == (0, b"OK\n", b"")
    assert kv(kvd.port, "-n", "1", "GET", "k") == (0, b"one\n", b"")
    assert kv(kvd.port, "GET", "k") == (0, b"v\n", b"")
    # A database beyond `databases` (16): SELECT fails as Redis reports it, the command
    # still runs (in database 0), as with redis-cli.
    code, out, err = kv(kvd.port, "-n", "16", "GET", "k")
    assert (code, out) == (0, b"v\n")
    assert err == b"SELECT 16 failed: ERR DB index is out of range\n"
    code, out, _ = kv(kvd.port, "--no-raw", stdin=b"SELECT 16\nSELECT 1\nGET k\n")
    assert out == b"(error) ERR DB index is out of range\nOK\n\"one\"\n"


# ---- stdin mode -----------------------------------------------------------------------

STDIN_LINES = (
    b'SET "a b" "x\\ty\\x00z\\xff\\n"\n'
    b'GET "a b"\n'
    b"SET q 'it\"s'\n"
    b"GET q\n"
    b"SET q2 'it\\'s'\n"
    b"GET q2\n"
    b'SET bad "unterminated\n'
    b'SET bad "close"x\n'
    b"SET bad 'close'x\n"
    b"   PING   \n"
    b"\n"
    b"2 PING\n"
    b"0 PING\n"
    b'ECHO a"b c"\n'
    b'ECHO "\\x4" "\\q\\"\\\\" \'\' ""\n'
    b"ECHO \"\\x41\\x42\" '\\x41'\r\n"
    b"GET nokey\n"
    b"INCR q\n"
    b"MGET q nokey \"a b\"\n"
    b"DEL \"a b\" q q2\n"
    b'ECHO "no newline at the end"'
)


def test_stdin_mode_quoting_and_binary(kvd):
    flush(kvd.port)
    code, out, err = kv(kvd.port, "--no-raw", stdin=STDIN_LINES)
    assert (code, err) == (0, b"")
    assert out.split(b"\n") == [
        b"OK", b'"x\\ty\\x00z\\xff\\n"', b"OK", b'"it\\"s"', b"OK", b'"it\'s"',
        b"Invalid argument(s)", b"Invalid argument(s)", b"Invalid argument(s)",
        b"PONG", b"PONG", b"PONG",
        b"Invalid redis-cli repeat command option value.",
        b'"ab c"',
        b"(error) ERR wrong number of arguments for 'echo' command",
        b"(error) ERR wrong number of arguments for 'echo' command",
        b"(nil)", b"(error) ERR value is not an integer or out of range",
        b'1) "it\\"s"', b"2) (nil)", b'3) "x\\ty\\x00z\\xff\\n"',
        b"(integer) 3", b'"no newline at the end"', b""]


def test_stdin_mode_stores_exact_bytes(kvd):
    flush(kvd.port)
    lines = b'SET k1 "\\x00\\x01\\xfe\\xff\\r\\n\\t\\a\\b\\\\\\"q"\n' \
            b"SET k2 'single \"double\" \\' end'\n" \
            b'SET "key with spaces" v"x y"\n'
    assert kv(kvd.port, stdin=lines) == (0, b"OK\nOK\nOK\n", b"")
    assert send(kvd.port, "GET", "k1") == b'$12\r\n\x00\x01\xfe\xff\r\n\t\x07\x08\\"q\r\n'
    assert send(kvd.port, "GET", "k2") == b"$21\r\nsingle \"double\" ' end\r\n"
    assert send(kvd.port, "GET", "key with spaces") == b"$4\r\nvx y\r\n"
    # Raw output prints the value's bytes as they are.
    assert kv(kvd.port, "GET", "k1") == (0, b'\x00\x01\xfe\xff\r\n\t\x07\x08\\"q\n', b"")


def test_large_value_and_large_reply(kvd):
    flush(kvd.port)
    big = random.Random(7).randbytes(3 * 1024 * 1024)
    send(kvd.port, "SET", "big", big)
    assert kv(kvd.port, "GET", "big") == (0, big + b"\n", b"")
    # More elements than the client's first node array holds (it must grow).
    for base in range(0, 5000, 500):
        args = ["MSET"]
        for i in range(base, base + 500):
            args += [f"key:{i:05d}", str(i)]
        send(kvd.port, *args)
    code, out, _ = kv(kvd.port, "KEYS", "key:*")
    assert code == 0
    assert sorted(out.split(b"\n")[:-1]) == [b"key:%05d" % i for i in range(5000)]
    code, out, _ = kv(kvd.port, "--no-raw", "KEYS", "key:*")
    lines = out.split(b"\n")[:-1]
    assert len(lines) == 5000 and lines[0].startswith(b'   1) "key:')
    assert lines[-1].startswith(b'5000) "key:')


# ---- RESP3 -----------------------------------------------------------------------------


def test_resp3_on_kvd(kvd):
    flush(kvd.port)
    code, out, _ = kv(kvd.port, "-3", "--no-raw", "HELLO", "3")
    assert code == 0
    lines = out.split(b"\n")
    assert lines[0] == b'1# "server" => "redis"'
    assert b'3# "proto" => (integer) 3' in lines
    code, out, _ = kv(kvd.port, "-3", "--no-raw", stdin=b"SET f 1.5\nINCRBYFLOAT f 1\nGET nokey\n")
    assert out == b'OK\n"2.5"\n(nil)\n'
    code, out, _ = kv(kvd.port, "--resp3", "HELLO", "3")
    assert out.startswith(b"server redis\nversion ")


def compare(server, cmds_or_args, modes=("", "--no-raw", "fake"), stdin=None, extra=(),
            before=None, check_err=True):
    """Runs the same thing through redis-cli and kvcli; asserts equal output and status."""
    for mode in modes:
        args = list(extra) + ([mode] if mode not in ("", "fake") else []) + list(cmds_or_args)
        results = []
        for tool in ("redis-cli", "kvcli"):
            if before:
                before()
            results.append(run(tool, server.port, *args, stdin=stdin or b"",
                               fake_tty=mode == "fake"))
        (rc1, out1, err1), (rc2, out2, err2) = results
        assert out2 == out1, f"stdout differs for {args} (mode {mode or 'pipe'})"
        assert rc2 == rc1, f"exit status differs for {args}"
        if check_err and err1.startswith(b"Error: "):
            assert err2 == err1


@pytest.mark.parametrize("kind", ["string", "integer", "double", "null", "array", "set", "map",
                                  "push", "verbatim", "true", "false"])
def test_resp3_types_same_as_redis_cli(redis, kind):
    compare(redis, ["DEBUG", "PROTOCOL", kind], extra=["-3"])
    compare(redis, ["DEBUG", "PROTOCOL", kind])


def test_big_number_and_attribute(redis):
    # redis-cli 7.0 cannot print these ("Unknown reply type", protocol error); kvcli prints
    # big numbers as redis-cli 7.2 does and an attribute's annotated value.
    code, out, _ = kv(redis.port, "-3", "--no-raw", "DEBUG", "PROTOCOL", "bignum")
    assert (code, out) == (0, b"(big number) 1234567999999999999999999999999999999\n")
    code, out, _ = kv(redis.port, "-3", "DEBUG", "PROTOCOL", "bignum")
    assert (code, out) == (0, b"1234567999999999999999999999999999999\n")
    code, out, _ = kv(redis.port, "-3", "--no-raw", "DEBUG", "PROTOCOL", "attrib")
    assert (code, out) == (0, b'"Some real reply following the attribute"\n')


LUA_REPLIES = [
    "return {1,{2,{3,'a'}},'x',{}}",
    "return {1,2,3,4,5,6,7,8,9,10,{11,{12,{}}},'twelve'}",
    "redis.setresp(3); return {map={a={1,{map={b='c',d=2}}}, z={set={'q'}}}}",
    "redis.setresp(3); return {map={k={map={x={1,2}}}, j={map={y={1}}}, l={{{1,2}}}, e={}}}",
    "redis.setresp(3); return {1,{map={}},{set={}},{double=3.5},{map={only={set={1}}}}}",
    "redis.setresp(3); return {set={'a','b\\n',1}}",
    "return redis.error_reply('MY error text')",
    "return {err='inner'}",
    "return {1, redis.error_reply('ERR in array'), 'ok'}",
    "return redis.status_reply('FINE')",
    "return 'bulk\\0with nul'",
    "return false",
    "return {false, true}",
]


@pytest.mark.parametrize("script", LUA_REPLIES)
def test_nested_replies_same_as_redis_cli(redis, script):
    compare(redis, ["EVAL", script, "0"], extra=["-3"])
    compare(redis, ["EVAL", script, "0"])


def test_stdin_sequence_same_as_redis_cli_on_kvd(kvd):
    need_redis_cli()
    seq = (STDIN_LINES.replace(b"2 PING\n", b"") + b"\n" +
           b"SET n 10\nINCRBY n 5\nINCRBYFLOAT n 0.25\nAPPEND n xyz\nSTRLEN n\n"
           b"MSET a 1 b 2 c 3\nMGET a b c d\nEXISTS a b zz\nTTL a\nEXPIRE a 100\nTTL a\n"
           b"TYPE a\nGETRANGE n 0 3\nSETRANGE n 1 QQ\nGETDEL n\nDBSIZE\nSCAN 0 COUNT 100\n"
           b"SET e \"\"\nGET e\nINCR e\nSELECT 5\nNOSUCH cmd\nECHO \"\\xe2\\x82\\xac\"\n"
           b"CONFIG GET maxclients\nPING hello\n")
    compare(kvd, [], stdin=seq, before=lambda: flush(kvd.port))
    compare(kvd, [], stdin=seq, extra=["-3"], before=lambda: flush(kvd.port))


def test_server_closing_connection_same_as_redis_cli(redis):
    # The server closes the connection: the next command reports it (and is lost), the
    # one after reconnects. In one-shot mode a lost connection ends kvcli with status 1.
    # Whether the next read sees the close or a reset depends on timing, in both clients.
    lost = (b"Error: Server closed the connection\n", b"Error: Connection reset by peer\n")
    seq = b"PING\nCLIENT KILL TYPE normal SKIPME no\nPING\nPING\n"
    compare(redis, [], stdin=seq, modes=("", "--no-raw"), check_err=False)
    code, out, err = kv(redis.port, stdin=seq)
    assert (code, out) == (0, b"PONG\n1\nPONG\n") and err in lost
    kill = ["-r", "2", "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no"]
    compare(redis, kill, modes=("",), check_err=False)
    code, out, err = kv(redis.port, *kill)
    assert (code, out) == (1, b"1\n") and err in lost


def test_random_quoting_same_as_redis_cli(kvd):
    need_redis_cli()
    seed = int(os.environ.get("KVCLI_TEST_SEED", random.randrange(1 << 30)))
    print(f"KVCLI_TEST_SEED={seed}")
    rnd = random.Random(seed)
    pieces = ["a", "b", " ", "  ", "\t", '"', "'", "\\", "\\x", "\\x4", "\\x4f", "\\xzz",
              "\\n", "\\t", "\\'", '\\"', "x y", "\x01", "\xff", "é", "\\\\"]
    lines = []
    for _ in range(400):
        body = "".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 8)))
        lines.append("ECHO " + body)
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
    try:
        compare(kvd, [], stdin=data, modes=("--no-raw",))
    except AssertionError:
        print(f"replay with KVCLI_TEST_SEED={seed}")
        raise


class FakeServer:
    """Answers every request with the bytes in self.reply: a RESP stream of our choosing,
    so that both clients print replies no real server would send in that shape."""

    def __init__(self):
        self.reply = b"+OK\r\n"
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    @staticmethod
    def request_len(buf):
        """Length of the complete multibulk request at the start of buf, or None."""
        end = buf.find(b"\r\n")
        if not buf.startswith(b"*") or end < 0:
            return None
        pos, n = end + 2, int(buf[1:end])
        for _ in range(n):
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return None
            pos = end + 2 + int(buf[pos + 1:end]) + 2
            if pos > len(buf):
                return None
        return pos

    def handle(self, conn):
        with conn:
            buf = b""
            while True:
                d = conn.recv(1 << 16)
                if not d:
                    return
                buf += d
                while (n := self.request_len(buf)) is not None:
                    buf = buf[n:]
                    conn.sendall(self.reply)

    def stop(self):
        self.sock.close()


def random_reply(rnd, depth=0):
    """A random RESP2/RESP3 reply of the types redis-cli 7.0 prints (not big numbers, blob
    errors or attributes), nested at most 4 deep, with aggregates of up to 12 elements so that
    index widths reach two digits."""
    def text(alphabet=b"abc XYZ019:=>()\"'\\", n=8):
        return bytes(rnd.choice(alphabet) for _ in range(rnd.randint(0, n)))
    scalars = [
        lambda: b"+" + text() + b"\r\n",
        lambda: b"-ERR " + text() + b"\r\n",
        lambda: b":%d\r\n" % rnd.choice([0, 1, -1, 42, 2**63 - 1, -2**63, rnd.randint(-999, 999)]),
        lambda: (lambda b: b"$%d\r\n%s\r\n" % (len(b), b))(rnd.randbytes(rnd.randint(0, 12))),
        lambda: (lambda b: b"$%d\r\n%s\r\n" % (len(b), b))(text()),
        lambda: b"$-1\r\n",
        lambda: b"_\r\n",
        lambda: b"*-1\r\n",
        lambda: b"," + rnd.choice([b"3.14", b"-0.5", b"inf", b"-inf", b"1e+300", b"0"]) + b"\r\n",
        lambda: rnd.choice([b"#t\r\n", b"#f\r\n"]),
        lambda: (lambda b: b"=%d\r\ntxt:%s\r\n" % (len(b) + 4, b))(text(b"ab \n", 10)),
    ]
    if depth >= 4 or rnd.random() < 0.45:
        return rnd.choice(scalars)()
    kind = rnd.choice([b"*", b"*", b"%", b"~"])
    n = rnd.choice([0, 1, 1, 2, 3, rnd.randint(4, 12)])
    if kind == b"%":
        n = min(n, 6)
        body = b"".join(random_reply(rnd, depth + 1) + random_reply(rnd, depth + 1)
                        for _ in range(n))
    else:
        body = b"".join(random_reply(rnd, depth + 1) for _ in range(n))
    return kind + b"%d\r\n" % n + body


def test_random_replies_same_as_redis_cli():
    need_binaries()
    need_redis_cli()
    seed = int(os.environ.get("KVCLI_TEST_SEED", random.randrange(1 << 30)))
    print(f"KVCLI_TEST_SEED={seed}")
    rnd = random.Random(seed)
    fake = FakeServer()
    try:
        for i in range(60):
            reply = random_reply(rnd)
            if rnd.random() < 0.2:  # an out-of-band push first (printed on a terminal)
                reply = b">2\r\n+invalidate\r\n*1\r\n$1\r\nk\r\n" + reply
            fake.reply = reply
            try:
                compare(fake, ["GET", "k"])
            except AssertionError:
                print(f"reply #{i}: {reply!r}; replay with KVCLI_TEST_SEED={seed}")
                raise
    finally:
        fake.stop()


def test_blob_error_and_verbatim():
    # Blob errors: redis-cli 7.0's parser rejects them; kvcli prints them as errors (the
    # terminal style, like redis-cli's %s, stops at a NUL). Verbatim strings lose their
    # "txt:" prefix and are not quoted.
    need_binaries()
    fake = FakeServer()
    try:
        blob = b"ERR a\x00bc xyz"
        fake.reply = b"!%d\r\n%s\r\n" % (len(blob), blob)
        assert kv(fake.port, "--no-raw", "GET", "k") == (0, b"(error) ERR a\n", b"")
        assert kv(fake.port, "GET", "k") == (0, b"ERR a\x00bc xyz\n\n", b"")
        verbatim = b"txt:two\nlines\""
        fake.reply = b"=%d\r\n%s\r\n" % (len(verbatim), verbatim)
        assert kv(fake.port, "--no-raw", "GET", "k") == (0, b'two\nlines"\n', b"")
        fake.reply = b"|1\r\n+ttl\r\n:3\r\n*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n"
        assert kv(fake.port, "--no-raw", "GET", "k") == (
            0, b"1) (integer) 1\n2) (integer) 2\n", b"")
        fake.reply = b"+partial"  # the server never finishes: kvcli waits, is killed
        with pytest.raises(subprocess.TimeoutExpired):
            subprocess.run([KVCLI, "-p", str(fake.port), "GET", "k"], timeout=1,
                           capture_output=True)
        fake.reply = b"?bad\r\n"
        code, out, err = kv(fake.port, "GET", "k")
        assert (code, out, err) == (1, b"", b"Error: Protocol error\n")
    finally:
        fake.stop()


# ---- interactive mode through a pseudo-terminal ---------------------------------------


class Pty:
    def __init__(self, argv, env):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.buf = b""

    def expect(self, pat, timeout=10):
        deadline = time.time() + timeout
        while pat not in self.buf:
            left = deadline - time.time()
            assert left > 0, f"timed out waiting for {pat!r}; got {self.buf!r}"
            r, _, _ = select.select([self.fd], [], [], min(left, 0.2))
            if r:
                try:
                    d = os.read(self.fd, 4096)
                except OSError:
                    d = b""
                assert d, f"kvcli ended while waiting for {pat!r}; got {self.buf!r}"
                self.buf += d
        i = self.buf.index(pat) + len(pat)
        seen, self.buf = self.buf[:i], self.buf[i:]
        return seen

    def send(self, line):
        os.write(self.fd, line + b"\r")

    def until_prompt(self, timeout=10):
        """Reads until the terminal shows a prompt ("...> " and nothing after it)."""
        seen = self.expect(b"> ", timeout)
        while self.buf:
            seen += self.expect(b"> ", timeout)
        return seen

    def wait(self, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            try:
                os.read(self.fd, 4096)
            except OSError:
                pass
            time.sleep(0.05)
        os.kill(self.pid, 9)
        raise AssertionError("kvcli did not exit")


def test_interactive_prompt_round_trip_and_history(kvd, tmp_path):
    flush(kvd.port)
    hist = tmp_path / "hist"
    env = dict(os.environ, TERM="dumb", KVCLI_HISTFILE=str(hist))
    env.pop("FAKETTY", None)
    t = Pty([KVCLI, "-p", str(kvd.port)], env)
    prompt = b"127.0.0.1:%d> " % kvd.port
    t.expect(prompt)
    t.send(b'SET greeting "hello world"')
    assert b"\r\nOK\r\n" in t.expect(prompt)
    t.send(b"GET greeting")
    assert b'\r\n"hello world"\r\n' in t.expect(prompt)
    t.send(b"MGET greeting nokey")
    assert b'1) "hello world"\r\n2) (nil)\r\n' in t.expect(prompt)
    t.send(b"AUTH nopass")
    assert b"(error) ERR AUTH" in t.expect(prompt)
    t.send(b"SELECT 16")
    assert b"(error) ERR DB index is out of range" in t.expect(prompt)
    t.send(b"quit")
    assert t.wait() == 0
    assert send(kvd.port, "GET", "greeting") == b"$11\r\nhello world\r\n"
    saved = hist.read_bytes()
    assert b"GET" in saved and b"greeting" in saved
    assert hist.stat().st_mode & 0o777 == 0o600  # values may be private
    assert b"nopass" not in saved  # AUTH lines are kept out of the history

    # A second session loads the history: two up-arrows recall "SELECT 16" (the last line
    # is "quit"), run again. Line editing needs a terminal type with cursor keys.
    t = Pty([KVCLI, "-p", str(kvd.port)], dict(env, TERM="vt100"))
    t.expect(prompt)
    t.send(b"\x1b[A\x1b[A")
    seen = t.expect(prompt)
    assert b"SELECT 16" in seen and b"(error) ERR DB index is out of range" in seen
    t.send(b"exit")
    assert t.wait() == 0


def test_interactive_not_connected_prompt(tmp_path):
    need_binaries()
    port = free_port()
    env = dict(os.environ, TERM="dumb", KVCLI_HISTFILE="/dev/null")
    t = Pty([KVCLI, "-p", str(port)], env)
    t.expect(b"Connection refused")
    t.expect(b"not connected> ")
    t.send(b"PING")
    assert b"Could not connect to kvd" in t.expect(b"not connected> ")
    t.send(b"quit")
    assert t.wait() == 0


def test_interactive_ctrl_c(redis):
    # As in redis-cli: Ctrl-C at the prompt ends the session with status 0, Ctrl-C while a
    # command waits for its reply exits 1.
    env = dict(os.environ, TERM="vt100", KVCLI_HISTFILE="/dev/null")
    prompt = b"127.0.0.1:%d> " % redis.port
    t = Pty([KVCLI, "-p", str(redis.port)], env)
    t.expect(prompt)
    os.write(t.fd, b"half a comm")
    t.expect(b"comm")
    os.write(t.fd, b"\x03")
    assert t.wait() == 0
    t = Pty([KVCLI, "-p", str(redis.port)], env)
    t.expect(prompt)
    t.send(b"DEBUG SLEEP 2")
    t.expect(b"DEBUG SLEEP 2\r\n")
    time.sleep(0.3)
    os.write(t.fd, b"\x03")
    assert t.wait(timeout=3) == 1


def pty_transcript(exe, port, lines, extra=()):
    """Types lines into exe under a pseudo-terminal (TERM=dumb: no cursor movement), each
    after the prompt appears, the last one "quit"; returns what the terminal showed up to
    it and the exit status."""
    env = dict(os.environ, TERM="dumb", KVCLI_HISTFILE="/dev/null",
               REDISCLI_HISTFILE="/dev/null")
    env.pop("FAKETTY", None)
    t = Pty([exe, "-p", str(port)] + list(extra), env)
    shown = t.until_prompt()
    for line in lines:
        t.send(line)
        seen = t.until_prompt()
        # A line typed before the editor has taken the terminal from the kernel is echoed
        # by both (typeahead, as on a real terminal); that timing is not under test.
        shown += seen.replace(line + b"\r\n" + line + b"\r\n", line + b"\r\n", 1)
    t.send(b"quit")
    return shown, t.wait()


def test_interactive_session_same_as_redis_cli(redis):
    # The prompt follows SELECT (-n, then typed) and MULTI/EXEC/DISCARD exactly as in
    # redis-cli, including its quirks (a SELECT queued in MULTI changes the prompt).
    need_redis_cli()
    lines = [b"SELECT 3", b"MULTI", b"SELECT 4", b"DISCARD", b"MULTI", b"SELECT 0", b"EXEC",
             b"SET k 'a b'", b"GET k", b"MGET k nokey", b"2 INCR n", b"HSET h f v",
             b"HGETALL h", b"GET \"bad", b"INCR k"]
    assert send(redis.port, "FLUSHALL") == b"+OK\r\n"
    want = pty_transcript(REDIS_CLI, redis.port, lines, ["-n", "2"])
    assert send(redis.port, "FLUSHALL") == b"+OK\r\n"
    got = pty_transcript(KVCLI, redis.port, lines, ["-n", "2"])
    assert got == want
    assert b"127.0.0.1:%d[3](TX)> " % redis.port in got[0]
