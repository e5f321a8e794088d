#!/usr/bin/python3
"""Writes io/cmd_docs.c: the COMMAND INFO / COMMAND DOCS metadata of every command kvd
has, read from a running redis-server 7.0 (RESP3), as const C tables.

    tools/gen_cmd_docs.py [--port 6379] [--out io/cmd_docs.c]

The command names are the rows of io/cmd.c's table (internal "x|y" rows excluded); the
subcommands are the ones kvd implements (SUBCOMMANDS below). Where kvd behaves
differently from Redis the metadata says so (OVERRIDES below). The output is run
through clang-format. Run it again after adding a command to io/cmd.c.
"""
import argparse
import os
import re
import socket
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The subcommands kvd implements, per container. Left out on purpose: CLIENT SETINFO and
# NO-TOUCH (kvd accepts them, but Redis 7.0 has no metadata for them: they came in 7.2),
# CONFIG REWRITE (refused by kvd: its settings come from flags and --config), and the
# HELP subcommands kvd does not answer (CONFIG, SLOWLOG).
SUBCOMMANDS = {
    "acl": ["cat", "deluser", "dryrun", "genpass", "getuser", "help", "list", "load", "log",
            "save", "setuser", "users", "whoami"],
    "client": ["caching", "getname", "getredir", "help", "id", "info", "kill", "list", "no-evict",
               "pause", "reply", "setname", "tracking", "trackinginfo", "unblock", "unpause"],
    # CLUSTER: every subcommand, each answering as Redis with cluster-enabled no
    "cluster": ["addslots", "addslotsrange", "bumpepoch", "count-failure-reports",
                "countkeysinslot", "delslots", "delslotsrange", "failover", "flushslots",
                "forget", "getkeysinslot", "help", "info", "keyslot", "links", "meet", "myid",
                "nodes", "replicas", "replicate", "reset", "saveconfig", "set-config-epoch",
                "setslot", "shards", "slaves", "slots"],
    "command": ["count", "docs", "getkeys", "getkeysandflags", "help", "info", "list"],
    "config": ["get", "help", "resetstat", "rewrite", "set"],
    "function": ["delete", "dump", "flush", "help", "kill", "list", "load", "restore", "stats"],
    "latency": ["doctor", "graph", "help", "histogram", "history", "latest", "reset"],
    "memory": ["doctor", "help", "malloc-stats", "purge", "stats", "usage"],
    "object": ["encoding", "freq", "help", "idletime", "refcount"],
    "pubsub": ["channels", "help", "numpat", "numsub", "shardchannels", "shardnumsub"],
    "script": ["debug", "exists", "flush", "help", "kill", "load"],
    "slowlog": ["get", "help", "len", "reset"],
}

# Commands kvd refuses or implements differently: their documentation says how.
OVERRIDES = {}


# ---- a small RESP3 client: values as (kind, payload) -----------------------------------

class Resp3:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.call("HELLO", "3")

    def _fill(self):
        d = self.sock.recv(1 << 20)
        if not d:
            raise IOError("connection closed")
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _take(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        d, self.buf = self.buf[:n], self.buf[n + 2:]
        return d

    def _read(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return ("status", rest.decode())
        if t == b"-":
            raise IOError(rest.decode())
        if t == b":":
            return ("int", int(rest))
        if t == b"$":
            return ("bulk", self._take(int(rest)).decode())
        if t == b"_":
            return ("null", None)
        if t in (b"*", b"~"):
            items = [self._read() for _ in range(int(rest))]
            return ("array" if t == b"*" else "set", items)
        if t == b"%":
            return ("map", [(self._read()[1], self._read()) for _ in range(int(rest))])
        raise IOError("unexpected RESP type %r" % line)

    def call(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self._read()


def words(v, kind):
    """A set of status (or bulk) strings as one space-separated string."""
    assert v[0] == "set", v
    assert all(k == kind and " " not in s for k, s in v[1]), v
    return " ".join(s for _, s in v[1])


def fields(m, order):
    """A map's fields, checked to come in Redis's fixed order (the C code emits them in
    that order)."""
    assert m[0] == "map", m
    keys = [k for k, _ in m[1]]
    assert keys == [k for k in order if k in keys], (keys, order)
    return dict(m[1])


# ---- Redis's replies to Python records --------------------------------------------------

def keyspec(m):
    f = fields(m, ["notes", "flags", "begin_search", "find_keys"])
    bs = fields(f["begin_search"], ["type", "spec"])
    fk = fields(f["find_keys"], ["type", "spec"])
    s = {"notes": f["notes"][1] if "notes" in f else None, "flags": words(f["flags"], "status")}
    # COMMAND INFO replies keyword begin_search specs too, but GETKEYS (cmd_command.c's
    # keyspec_keys) handles only index + range / keynum: extend it before allowing them.
    assert bs["type"][1] == "index" and fk["type"][1] in ("range", "keynum"), (bs, fk)
    s["keyword"], s["begin"] = None, fields(bs["spec"], ["index"])["index"][1]
    s["keynum"] = fk["type"][1] == "keynum"
    order = ["keynumidx", "firstkey", "keystep"] if s["keynum"] else ["lastkey", "keystep", "limit"]
    k = fields(fk["spec"], order)
    s["find"] = [k[o][1] for o in order]
    return s


def argument(m):
    f = fields(m, ["name", "type", "key_spec_index", "token", "summary", "since",
                   "deprecated_since", "flags", "arguments"])
    a = {"name": f["name"][1], "type": f["type"][1],
         "key_spec_index": f["key_spec_index"][1] if "key_spec_index" in f else -1}
    for k in ("token", "summary", "since", "deprecated_since"):
        a[k] = f[k][1] if k in f else None
    a["flags"] = words(f["flags"], "status") if "flags" in f else None
    a["args"] = [argument(x) for x in f["arguments"][1]] if "arguments" in f else []
    assert bool(a["args"]) == (a["type"] in ("oneof", "block")), a
    return a


def command(info, docs):
    """One command from its COMMAND INFO row and its COMMAND DOCS map."""
    kind, row = info
    assert kind == "array" and len(row) == 10, info
    c = {"name": row[0][1], "arity": row[1][1], "first_key": row[3][1], "last_key": row[4][1],
         "key_step": row[5][1], "flags": words(row[2], "status"), "acl": words(row[6], "status"),
         "tips": words(row[7], "bulk"), "specs": [keyspec(s) for s in row[8][1]]}
    d = fields(docs, ["summary", "since", "group", "complexity", "doc_flags",
                      "deprecated_since", "replaced_by", "history", "arguments", "subcommands"])
    for k in ("summary", "since", "group", "complexity", "deprecated_since", "replaced_by"):
        c[k] = d[k][1] if k in d else None
    c["doc_flags"] = words(d["doc_flags"], "status") if "doc_flags" in d else None
    c["history"] = [(h[1][0][1], h[1][1][1]) for h in d["history"][1]] if "history" in d else []
    c["args"] = [argument(x) for x in d["arguments"][1]] if "arguments" in d else []
    c.update(OVERRIDES.get(c["name"], {}))
    subs = []
    if row[9][1]:
        sub_docs = dict(d["subcommands"][1])
        base = c["name"]
        for sub_row in row[9][1]:
            name = sub_row[1][0][1]
            if name.split("|", 1)[1] in SUBCOMMANDS.get(base, []):
                subs.append(command(sub_row, sub_docs[name]))
        subs.sort(key=lambda s: s["name"])
        got = [s["name"].split("|", 1)[1] for s in subs]
        assert got == sorted(SUBCOMMANDS[base]), (base, got)
    c["subs"] = subs
    return c


def kvd_command_names():
    with open(os.path.join(REPO, "io", "cmd.c")) as f:
        src = f.read()
    names = re.findall(r'^\s*\{"([a-z0-9_-]+)", -?\d+,', src, re.M)
    assert len(names) > 40, names
    return sorted(set(names))


# ---- C output ---------------------------------------------------------------------------

def cstr(s):
    if s is None:
        return "NULL"
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ident(name):
    return re.sub(r"[^a-z0-9]", "_", name)


def fields_init(pairs, keep=()):
    """A designated initializer of the fields whose value is not the default (NULL, 0),
    and of those named in `keep`."""
    return "{" + ", ".join(".%s = %s" % (k, v) for k, v in pairs
                           if k in keep or v not in (None, "NULL", "0", 0, "false")) + "},"


class Writer:
    def __init__(self):
        self.defs = []  # static arrays, children before their parents

    def array(self, ctype, name, rows):
        self.defs.append("static const struct %s %s[] = {\n%s\n};\n" % (ctype, name,
                                                                          "\n".join(rows)))
        return name

    def args(self, prefix, args):
        """Emits the array of `args` (and their children); returns its fields."""
        if not args:
            return []
        rows = []
        for i, a in enumerate(args):
            # only key arguments point at a key spec (the C code relies on it)
            assert (a["key_spec_index"] >= 0) == (a["type"] == "key"), a
            rows.append(fields_init([
                ("name", cstr(a["name"])), ("type", cstr(a["type"])),
                ("key_spec_index", a["key_spec_index"]), ("token", cstr(a["token"])),
                ("summary", cstr(a["summary"])), ("since", cstr(a["since"])),
                ("deprecated_since", cstr(a["deprecated_since"])), ("flags", cstr(a["flags"]))]
                + self.args("%s_%d" % (prefix, i), a["args"]),
                keep=("key_spec_index",) if a["type"] == "key" else ()))
        name = self.array("cmd_docs_arg", prefix, rows)
        return [("args", name), ("nargs", "DOCS_LEN(%s)" % name)]

    def specs(self, prefix, specs):
        if not specs:
            return []
        rows = ["{%s, %s, %s, %d, %s, {%d, %d, %d}}," % (
            cstr(s["notes"]), cstr(s["flags"]), cstr(s["keyword"]), s["begin"],
            "true" if s["keynum"] else "false", *s["find"]) for s in specs]
        name = self.array("cmd_docs_keyspec", prefix, rows)
        return [("specs", name), ("nspecs", "DOCS_LEN(%s)" % name)]

    def history(self, prefix, hist):
        if not hist:
            return []
        rows = ["{%s, %s}," % (cstr(v), cstr(t)) for v, t in hist]
        name = self.array("cmd_docs_history", prefix, rows)
        return [("history", name), ("nhistory", "DOCS_LEN(%s)" % name)]

    def entry(self, c):
        p = ident(c["name"])
        subs = []
        if c["subs"]:
            name = self.array("cmd_docs", p + "_subs", [self.entry(s) for s in c["subs"]])
            subs = [("subs", name), ("nsubs", "DOCS_LEN(%s)" % name)]
        return fields_init(
            [("name", cstr(c["name"])), ("arity", c["arity"]), ("first_key", c["first_key"]),
             ("last_key", c["last_key"]), ("key_step", c["key_step"]),
             ("flags", cstr(c["flags"] or None)), ("acl", cstr(c["acl"] or None)),
             ("tips", cstr(c["tips"] or None))] + self.specs(p + "_specs", c["specs"])
            + [(k, cstr(c[k])) for k in ("summary", "since", "group", "complexity",
                                          "doc_flags", "deprecated_since", "replaced_by")]
            + self.history(p + "_history", c["history"])
            + self.args(p + "_args", c["args"]) + subs)


HEADER = """\
/*
 * cmd_docs: the COMMAND INFO / COMMAND DOCS metadata of every command kvd has, as
 * redis-server %(version)s replies it. GENERATED by tools/gen_cmd_docs.py from a running
 * redis-server: edit the script (its SUBCOMMANDS and OVERRIDES) and run it again rather
 * than editing the tables by hand.
 *
 * Where kvd differs from Redis, the metadata says so rather than copying Redis's:
 *   - Containers list only the subcommands kvd implements: CONFIG without
 *     REWRITE (refused) and HELP; SLOWLOG without HELP. CLIENT SETINFO and NO-TOUCH,
 *     which kvd accepts, have no row: Redis %(version)s does not know them.
 *
 * All const static data, sorted by name (binary search); any thread may read it.
 */
#include "cmd_docs.h"

#include <string.h>
#include <strings.h>

#define DOCS_LEN(a) ((uint8_t)(sizeof(a) / sizeof((a)[0])))

"""

FOOTER = """
const size_t cmd_docs_count = sizeof cmd_docs_table / sizeof cmd_docs_table[0];

bool cmd_docs_redis_has(const char *name, size_t len)
{
    size_t lo = 0;
    size_t hi = sizeof redis_names / sizeof redis_names[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strncasecmp(name, redis_names[mid], len);
        if (c == 0 && redis_names[mid][len] == '\\0') {
            return true;
        }
        if (c < 0 || (c == 0 && redis_names[mid][len] != '\\0')) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return false;
}

const struct cmd_docs *cmd_docs_find(const char *name)
{
    size_t lo = 0;
    size_t hi = cmd_docs_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, cmd_docs_table[mid].name);
        if (c == 0) {
            return &cmd_docs_table[mid];
        }
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return NULL;
}

const struct cmd_docs *cmd_docs_find_sub(const struct cmd_docs *parent, const char *name,
                                         size_t len)
{
    size_t skip = strlen(parent->name) + 1; /* "parent|" */
    for (size_t i = 0; i < parent->nsubs; i++) {
        const char *sub = parent->subs[i].name + skip;
        if (strlen(sub) == len && strncasecmp(sub, name, len) == 0) {
            return &parent->subs[i];
        }
    }
    return NULL;
}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=6379)
    ap.add_argument("--out", default=os.path.join(REPO, "io", "cmd_docs.c"))
    args = ap.parse_args()
    r = Resp3(args.port)
    hello = dict(r.call("HELLO", "3")[1])
    version = hello["version"][1]
    w = Writer()
    rows = []
    for name in kvd_command_names():
        info = r.call("COMMAND", "INFO", name)[1][0]
        docs = r.call("COMMAND", "DOCS", name)
        assert docs[0] == "map" and len(docs[1]) == 1, (name, docs)
        rows.append(w.entry(command(info, docs[1][0][1])))
    text = HEADER % {"version": version} + "\n".join(w.defs)
    text += "\nconst struct cmd_docs cmd_docs_table[] = {\n%s\n};\n" % "\n".join(rows)
    # every command name of that Redis (ACL rules may name the ones kvd lacks)
    names = sorted(n[1].lower() for n in r.call("COMMAND", "LIST")[1] if "|" not in n[1])
    text += ("\n/* Every command of redis-server %s, sorted (cmd_docs_redis_has). */\n"
             "static const char *const redis_names[] = {\n%s\n};\n"
             % (version, "\n".join('    "%s",' % n for n in names)))
    text += FOOTER
    with open(args.out, "w") as f:
        f.write(text)
    subprocess.run(["clang-format", "-i", args.out], check=True)
    print("wrote %s: %d commands from redis-server %s" % (args.out, len(rows), version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
