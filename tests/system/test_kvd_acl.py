"""ACL of kvd (its one user, "default") against Redis 7's default user:

- WHOAMI, USERS, LIST, GETUSER (with and without requirepass: the password's SHA-256),
  CAT (the categories; a category's commands are kvd's commands in it, so compared as a
  subset), DRYRUN, GENPASS (lengths, randomness, errors), LOG, DELUSER, LOAD/SAVE, HELP
  and the arity / unknown-subcommand errors, byte for byte where Redis's answer is the
  same for the same user;
- SETUSER is refused with a reason; AUTH default <password> works, other users do not.
"""
import re

import pytest

from conftest import Err, St, need_redis

SAME = [
    ("ACL", "WHOAMI"), ("ACL", "USERS"), ("ACL", "LIST"), ("ACL", "GETUSER", "default"),
    ("ACL", "GETUSER", "nobody"), ("ACL", "CAT"), ("ACL", "CAT", "nosuch"),
    ("ACL", "CAT", "a", "b"), ("ACL", "DRYRUN", "default", "get", "k"),
    ("ACL", "DRYRUN", "default", "get"), ("ACL", "DRYRUN", "default", "nosuchcmd"),
    ("ACL", "DRYRUN", "nobody", "get", "k"), ("ACL", "LOG"), ("ACL", "LOG", "10"),
    ("ACL", "LOG", "RESET"), ("ACL", "LOG", "x"), ("ACL", "GENPASS", "0"),
    ("ACL", "GENPASS", "4097"), ("ACL", "GENPASS", "x"), ("ACL", "DELUSER", "default"),
    ("ACL", "DELUSER", "nobody"), ("ACL", "LOAD"), ("ACL", "SAVE"), ("ACL", "HELP"),
    ("ACL",), ("ACL", "FOO"), ("ACL", "WHOAMI", "x"), ("ACL", "USERS", "x"),
    ("ACL", "GETUSER"), ("ACL", "DELUSER"), ("ACL", "HELP", "x"),
]


@pytest.mark.parametrize("proto", [2, 3])
def test_acl_matches_redis(pair, proto):
    need_redis()
    if proto == 3:
        pair.k.cmd("HELLO", "3")  # (HELLO's reply names versions and ids)
        pair.r.cmd("HELLO", "3")
    for args in SAME:
        pair.same(*args)


def test_acl_with_a_password_matches_redis(kvd_factory, redis_factory):
    need_redis()
    k = kvd_factory(args=["--requirepass", "secret"])
    r = redis_factory(("--requirepass", "secret"))
    for c in (k.client(), r.client()):
        assert isinstance(c.cmd("ACL", "WHOAMI"), Err)  # NOAUTH first
    kc, rc = k.client(), r.client()
    for c in (kc, rc):
        assert c.cmd("AUTH", "default", "secret") == St("OK")
    for args in [("ACL", "LIST"), ("ACL", "GETUSER", "default"), ("ACL", "WHOAMI")]:
        assert kc.raw(*args) == rc.raw(*args), args
    assert kc.cmd("ACL", "LIST") == [
        b"user default on #2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b "
        b"~* &* +@all"]
    for c in (kc, rc):
        assert c.cmd("AUTH", "nobody", "secret") == Err(
            "WRONGPASS invalid username-password pair or user is disabled.")


def test_acl_cat_lists_kvds_commands_of_a_category(pair):
    need_redis()
    for category in ["string", "keyspace", "read", "write", "fast", "pubsub", "scripting",
                     "connection", "admin", "bitmap", "transaction", "list"]:
        k = set(pair.k.cmd("ACL", "CAT", category))
        r = set(pair.r.cmd("ACL", "CAT", category))
        assert k <= r, (category, k - r)
    strings = set(pair.k.cmd("ACL", "CAT", "string"))
    assert {b"get", b"set", b"incr", b"append", b"lcs"} <= strings
    assert pair.k.cmd("ACL", "CAT", "list") == []  # kvd has no list type
    assert b"config|get" in set(pair.k.cmd("ACL", "CAT", "admin"))


def test_acl_genpass(kc):
    a, b = kc.cmd("ACL", "GENPASS"), kc.cmd("ACL", "GENPASS")
    assert re.fullmatch(rb"[0-9a-f]{64}", a) and a != b
    for bits, chars in [(1, 1), (4, 1), (5, 2), (32, 8), (33, 9), (4096, 1024)]:
        assert len(kc.cmd("ACL", "GENPASS", str(bits))) == chars, bits


def test_acl_setuser_refused(kc):
    r = kc.cmd("ACL", "SETUSER", "alice", "on", ">pw", "~*", "+@all")
    assert isinstance(r, Err) and "SETUSER is not supported" in r.s
    assert kc.cmd("ACL", "USERS") == [b"default"]
