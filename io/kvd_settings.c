/*
 * kvd_settings: the table of kvd's settings. Each row is the whole truth about a
 * setting: name, kind, default, bounds, whether CONFIG SET may change it, and the help
 * line that `kvd --help` prints. Docs are generated from the same rows (--help).
 */
#include "kvd_settings.h"

#include "cmd.h"
#include "evict.h"
#include "kv_assert.h"
#include "kv_error.h"
#include "latency.h"
#include "notify.h"
#include "obuf.h"
#include "resp_parse.h"
#include "users.h"
#include "kv_log.h"
#include "kv_splitargs.h"

#include <stdint.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

struct kvd_settings kvd_settings;

static const char *const pubsub_defaults[] = {"allchannels", "resetchannels", NULL};
static const char *const loglevels[] = {"debug", "verbose", "notice", "warning", NULL};
static const char *const fsync_modes[] = {"always", "everysec", "no", NULL}; /* enum wal_fsync */
static const char *const sync_methods[] = {"dsync", "fdatasync", NULL};      /* enum wal_sync */

#define S  (&kvd_settings)
#define RT KV_CONF_RUNTIME

#define COMPAT      KV_CONF_COMPAT
#define COMPAT_HELP "accepted as Redis's; no effect in kvd"

static const char *const diskless_loads[] = {"disabled", "on-empty-db", "swapdb", NULL};
static const char *const protected_actions[] = {"no", "yes", "local", NULL};
static const char *const propagation_errors[] = {"ignore", "panic", "panic-on-replicas", NULL};
static const char *const dump_sanitizing[] = {"no", "yes", "clients", NULL};
static const char *const tls_auth_modes[] = {"no", "yes", "optional", NULL};
static const char *const endpoint_types[] = {"ip", "hostname", "unknown-endpoint", NULL};

/* unixsocketperm: octal digits, as Redis's OCTAL_CONFIG (0 to 0777). */
static int64_t octal_parse(const char *value, char *err, size_t errlen)
{
    char *end;
    errno = 0;
    long v = strtol(value, &end, 8);
    if (value[0] == '\0' || *end != '\0' || errno != 0 || v < 0 || v > 0777) {
        snprintf(err, errlen, "argument must be an octal number between 0 and 777");
        return -1;
    }
    return v;
}

static size_t octal_format(int64_t v, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%llo", (unsigned long long)v);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}
/* maxmemory-clients, as Redis's: a memory value, or "N%" of maxmemory (kept as
 * PERCENT_BASE + N: CUSTOM values are not negative). */
#define PERCENT_BASE ((int64_t)1 << 62)
static int64_t mem_or_percent_parse(const char *value, char *err, size_t errlen)
{
    size_t n = strlen(value);
    int64_t v;
    if (n > 1 && value[n - 1] == '%') {
        char digits[24];
        char *end;
        snprintf(digits, sizeof digits, "%.*s", (int)(n - 1), value);
        errno = 0;
        long long p = strtoll(digits, &end, 10);
        if (n - 1 >= sizeof digits || *end != '\0' || errno != 0 || p < 0) {
            snprintf(err, errlen, "argument must be a memory or percent value");
            return -1;
        }
        if (p > 100) {
            snprintf(err, errlen, "percentage argument must be less or equal to 100");
            return -1;
        }
        return PERCENT_BASE + p;
    }
    if (kv_conf_parse_bytes(value, &v) != 0 || v >= PERCENT_BASE) {
        snprintf(err, errlen, "argument must be a memory or percent value");
        return -1;
    }
    return v;
}

static size_t mem_or_percent_format(int64_t v, char *buf, size_t cap)
{
    int n = v >= PERCENT_BASE ? snprintf(buf, cap, "%lld%%", (long long)(v - PERCENT_BASE))
                              : snprintf(buf, cap, "%lld", (long long)v);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* shutdown-on-sig*: "default", or some of save nosave now force (not save with nosave). */
static const char *const shutdown_flags[] = {"save", "nosave", "now", "force"};

static int64_t shutdown_flags_parse(const char *value, char *err, size_t errlen)
{
    int64_t v = 0;
    int words = 0;
    const char *p = value;
    for (;; words++) {
        while (*p == ' ') {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        size_t n = strcspn(p, " ");
        size_t k = 0;
        while (k < KV_ARRAY_LEN(shutdown_flags) &&
               (strlen(shutdown_flags[k]) != n || strncasecmp(p, shutdown_flags[k], n) != 0)) {
            k++;
        }
        if (k < KV_ARRAY_LEN(shutdown_flags)) {
            v |= (int64_t)1 << k;
        } else if (n != 7 || strncasecmp(p, "default", 7) != 0) { /* (default: no bit) */
            snprintf(err, errlen,
                     "argument(s) must be one of the following: default, save, nosave, now, force");
            return -1;
        }
        p += n;
    }
    if (words == 0) {
        snprintf(err, errlen,
                 "argument(s) must be one of the following: default, save, nosave, now, force");
        return -1;
    }
    if ((v & KVD_SHUTDOWN_SAVE) && (v & KVD_SHUTDOWN_NOSAVE)) {
        snprintf(err, errlen, "shutdown options SAVE and NOSAVE can't be used simultaneously");
        return -1;
    }
    return v;
}

static size_t shutdown_flags_format(int64_t v, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t k = 0; k < KV_ARRAY_LEN(shutdown_flags); k++) {
        if (v & ((int64_t)1 << k)) {
            int w = snprintf(buf + n, cap - n, "%s%s", n > 0 ? " " : "", shutdown_flags[k]);
            n += w > 0 && (size_t)w < cap - n ? (size_t)w : 0;
        }
    }
    if (n == 0) {
        n = (size_t)snprintf(buf, cap, "default");
    }
    return n < cap ? n : cap - 1;
}

static const char *const supervised_modes[] = {"no", "upstart", "systemd", "auto", NULL};
static const char *const syslog_facilities[] = {"user",   "local0", "local1", "local2", "local3",
                                                "local4", "local5", "local6", "local7", NULL};
static const char *const oom_adjs[] = {"no", "yes", "relative", "absolute", NULL};

/* The settings accepted for redis.conf's sake (COMPAT), one line each. Each value is a
 * file-scope compound literal (static storage, as a named variable; an array, since an
 * atomic scalar cannot be one), read by CONFIG GET only; an older name shares its
 * setting's (compat_*). */
#define COMPAT_SLOT          ((_Atomic int64_t[1]){0})
#define COMPAT_BOOL(n, d, f) COMPAT_BOOL_AT(n, d, f, COMPAT_SLOT)
#define COMPAT_BOOL_AT(n, d, f, slot)                                                              \
    {                                                                                              \
        .name = n, .type = KV_CONF_BOOL, .flags = (f) | COMPAT, .def = d, .help = COMPAT_HELP,     \
        .num = slot                                                                                \
    }
#define COMPAT_INT(n, d, lo, hi, slot)                                                             \
    {                                                                                              \
        .name = n, .type = KV_CONF_INT, .flags = RT | COMPAT, .def = d, .min = lo, .max = hi,      \
        .help = COMPAT_HELP, .num = slot                                                           \
    }
#define COMPAT_INT_FIXED(n, d, lo, hi) /* (immutable, as in Redis) */                              \
    {                                                                                              \
        .name = n, .type = KV_CONF_INT, .flags = COMPAT, .def = d, .min = lo, .max = hi,           \
        .help = COMPAT_HELP, .num = COMPAT_SLOT                                                    \
    }
#define COMPAT_BYTES(n, d)                                                                         \
    {                                                                                              \
        .name = n, .type = KV_CONF_BYTES, .flags = RT | COMPAT, .def = d, .min = 0,                \
        .max = INT64_MAX, .help = COMPAT_HELP, .num = COMPAT_SLOT                                  \
    }
#define COMPAT_ENUM(n, d, ch, f)                                                                   \
    {                                                                                              \
        .name = n, .type = KV_CONF_ENUM, .flags = (f) | COMPAT, .def = d, .choices = ch,           \
        .help = COMPAT_HELP, .num = COMPAT_SLOT                                                    \
    }
#define COMPAT_STRING(n, d) COMPAT_STRING_AT(n, d, 0, (char[128]){0})
#define COMPAT_STRING_AT(n, d, f, buf)                                                             \
    {                                                                                              \
        .name = n, .type = KV_CONF_STRING, .flags = (f) | COMPAT, .def = d, .help = COMPAT_HELP,   \
        .str = buf, .str_cap = 128                                                                 \
    }
static _Atomic int64_t compat_hash_entries, compat_hash_value, compat_zset_entries,
    compat_zset_value, compat_list_size;
/* the older names of replication and cluster settings share their setting's value */
static _Atomic int64_t compat_lazy_flush, compat_read_only, compat_stale_data, compat_ignore_maxmem,
    compat_priority, compat_min_to_write, compat_min_max_lag, compat_ping_period,
    compat_announce_port, compat_no_failover, compat_validity;
static char compat_announce_ip[128];
/* must keep their defaults: kvd has no TLS and no Redis Cluster mode (check_consistency) */
static _Atomic int64_t compat_tls_port, compat_tls_replication, compat_tls_cluster,
    compat_cluster_enabled;

const struct kv_conf_item kvd_setting_items[] = {
    {.name = "bind",
     .type = KV_CONF_STRING,
     .flags = RT,
     .def = "127.0.0.1",
     .help = "addresses to listen on, as Redis's bind: IPv4 or IPv6, * and ::* for all, "
             "-ADDR skipped where missing",
     .str = S->bind,
     .str_cap = sizeof S->bind},
    {.name = "port",
     .type = KV_CONF_INT,
     .flags = RT,
     .def = "7379",
     .min = 0,
     .max = 65535,
     .help = "TCP port (0 picks a free one and logs it)",
     .num = &S->port},
    {.name = "threads",
     .flags = KV_CONF_SAME,
     .type = KV_CONF_INT,
     .def = "0",
     .min = 0,
     .max = 256,
     .help = "shard threads, each pinned to a core (0 = one per core)",
     .num = &S->threads},
    {.name = "partitions-per-thread",
     .flags = KV_CONF_SAME,
     .type = KV_CONF_INT,
     .def = "4",
     .min = 1,
     .max = 64,
     .help = "hash-range partitions each thread owns at start",
     .num = &S->partitions_per_thread},
    {.name = "databases",
     .type = KV_CONF_INT,
     .def = "16",
     .min = 1,
     .max = KVD_DB_MAX,
     .help = "logical databases (SELECT 0 .. databases-1); a database's table in a partition "
             "is made at its first use",
     .num = &S->databases},
    {.name = "dir",
     .type = KV_CONF_STRING,
     .def = "./data",
     .help = "data directory, created at start (for the WAL and snapshots)",
     .str = S->dir,
     .str_cap = sizeof S->dir},
    {.name = "requirepass",
     .type = KV_CONF_STRING,
     .def = "",
     .help = "the default user's password (empty: nopass); CONFIG SET changes it",
     .str = S->requirepass,
     .str_cap = sizeof S->requirepass},
    {.name = "aclfile",
     .type = KV_CONF_STRING,
     .def = "",
     .help = "file of ACL users (ACL LIST lines), loaded at start and by ACL LOAD, written "
             "by ACL SAVE (empty: none)",
     .str = S->aclfile,
     .str_cap = sizeof S->aclfile},
    {.name = "acl-pubsub-default",
     .type = KV_CONF_ENUM,
     .flags = RT,
     .def = "resetchannels",
     .choices = pubsub_defaults,
     .help = "the channels of a new user (or selector, or after reset): resetchannels "
             "(none) or allchannels",
     .num = &S->acl_pubsub_default},
    {.name = "acllog-max-len",
     .type = KV_CONF_INT,
     .flags = RT,
     .def = "128",
     .min = 0,
     .max = 1000000,
     .help = "entries ACL LOG keeps (refused commands, keys, channels and AUTHs)",
     .num = &S->acllog_max_len},
    {.name = "maxclients",
     .type = KV_CONF_INT,
     .flags = RT,
     .def = "10000",
     .min = 1,
     .max = 1000000,
     .help = "connected clients at most, over all threads (the open-files limit is raised "
             "for it, or it is lowered to what the limit allows, as Redis)",
     .num = &S->maxclients},
    {.name = "timeout",
     .type = KV_CONF_INT,
     .flags = RT,
     .def = "0",
     .min = 0,
     .max = INT32_MAX,
     .help = "close a client idle this many seconds (0 = never)",
     .num = &S->timeout_s},
    {.name = "tcp-backlog",
     .type = KV_CONF_INT,
     .def = "511",
     .min = 1,
     .max = 65535,
     .help = "listen(2) backlog",
     .num = &S->tcp_backlog},
    {.name = "client-query-buffer-limit",
     .type = KV_CONF_BYTES,
     .flags = RT,
     .def = "1gb",
     .min = 1024 * 1024,
     .max = INT64_MAX,
     .help = "bytes of one client's unparsed input at most; beyond, it is closed",
     .num = &S->query_buffer_limit},
    {.name = "client-output-buffer-limit",
     .type = KV_CONF_STRING,
     .flags = RT | KV_CONF_LIST, /* (CONFIG SET hands it to obuf.c) */
     .def = OBUF_DEFAULT,
     .help = "per client class (normal, replica, pubsub): \"<class> <hard> <soft> <seconds>\" "
             "groups; past hard bytes of replies queued, or past soft for longer than seconds, "
             "the client is closed (0: no limit; Redis's normal default is 0 0 0)",
     .str = S->client_obuf,
     .str_cap = sizeof S->client_obuf},
    {.name = "proto-max-bulk-len",
     .type = KV_CONF_BYTES,
     .flags = RT,
     .def = "512mb",
     .min = 1024 * 1024,
     .max = 512 * 1024 * 1024,
     .help = "longest bulk string a client may send (new clients)",
     .num = &S->proto_max_bulk_len},
    {.name = "hll-sparse-max-bytes",
     .type = KV_CONF_BYTES,
     .flags = RT,
     .def = "3000",
     .min = 0,
     .max = INT64_MAX,
     .help = "largest sparse HyperLogLog value (header included) before it turns dense",
     .num = &S->hll_sparse_max_bytes},
    {.name = "slowlog-log-slower-than",
     .type = KV_CONF_INT,
     .flags = RT,
     .def = "10000",
     .min = -1,
     .max = INT64_MAX,
     .help = "microseconds a command must take to enter SLOWLOG (-1 = never)",
     .num = &S->slowlog_slower_than_us},
    {.name = "slowlog-max-len",
     .type = KV_CONF_INT,
     .flags = RT,
     .def = "128",
     .min = 0,
     .max = 1000000,
     .help = "SLOWLOG entries kept",
     .num = &S->slowlog_max_len},
    {.name = "loglevel",
     .type = KV_CONF_ENUM,
     .flags = RT,
     .def = "notice",
     .choices = loglevels,
     .help = "debug, verbose, notice or warning",
     .num = &S->loglevel},
    {.name = "hz",
     .type = KV_CONF_INT,
     .flags = RT,
     .def = "10",
     .min = 1,
     .max = 500,
     .help = "active expiry cycles per second",
     .num = &S->hz},
    {.name = "recv-buffer-size",
     .flags = KV_CONF_SAME,
     .type = KV_CONF_BYTES,
     .def = "16kb",
     .min = 4096,
     .max = 1024 * 1024,
     .help = "bytes of each receive buffer (io_uring provided buffers)",
     .num = &S->recv_buffer_size},
    {.name = "recv-buffers",
     .flags = KV_CONF_SAME,
     .type = KV_CONF_INT,
     .def = "512",
     .min = 8,
     .max = 32768,
     .help = "receive buffers per thread (a power of two)",
     .num = &S->recv_buffers},
    {.name = "shard-queue-size",
     .flags = KV_CONF_SAME,
     .type = KV_CONF_INT,
     .def = "4096",
     .min = 2,
     .max = 1 << 20,
     .help = "messages in each shard-to-shard queue (a power of two); a full queue pauses "
             "the client that wants to send",
     .num = &S->shard_queue_size},
    {.name = "appendonly",
     .type = KV_CONF_BOOL,
     .flags = RT, /* (switched by the shards' loops: aof.h) */
     .def = "yes",
     .help = "log every write: a WAL per thread plus snapshots in --dir (no: only the dumps "
             "of `save`, SAVE and BGSAVE persist the data); CONFIG SET switches it at run "
             "time (yes: the WAL starts at once, over a dump of that instant)",
     .num = &S->appendonly},
    {.name = "aof-use-rdb-preamble",
     .type = KV_CONF_BOOL,
     .flags = RT,
     .def = "yes",
     .help = "accepted as Redis's; the WAL has one format (its base is always a dump)",
     .num = &S->aof_use_rdb_preamble},
    {.name = "save",
     .type = KV_CONF_STRING,
     .flags = RT | KV_CONF_LIST, /* (CONFIG SET hands it to dump.c) */
     .def = "3600 1 300 100 60 10000",
     .help = "with appendonly no: save points \"<seconds> <changes> ...\" (a dump of the data "
             "after that many seconds with at least that many changes; \"\": none); SAVE, "
             "BGSAVE and SHUTDOWN save too",
     .str = S->save,
     .str_cap = sizeof S->save},
    {.name = "appendfsync",
     .type = KV_CONF_ENUM,
     .flags = RT,
     .def = "always",
     .choices = fsync_modes,
     .help = "always: a write is acknowledged once on stable storage (group commit); "
             "everysec: synced once a second (a crash may lose the last second); no: never "
             "synced by kvd (a power loss may lose what the disk caches)",
     .num = &S->appendfsync},
    {.name = "wal-segment-size",
     .flags = KV_CONF_SAME,
     .type = KV_CONF_BYTES,
     .def = "64mb",
     .min = 64 * 1024,
     .max = 1024LL * 1024 * 1024,
     .help = "bytes of each preallocated WAL segment file (a multiple of 4 KiB)",
     .num = &S->wal_segment_size},
    {.name = "wal-sync-method",
     .flags = KV_CONF_SAME,
     .type = KV_CONF_ENUM,
     .def = "dsync",
     .choices = sync_methods,
     .help = "how appendfsync always makes a WAL batch durable: dsync (the O_DIRECT write "
             "carries RWF_DSYNC) or fdatasync (an fdatasync linked after the write: faster "
             "on a device with a volatile write cache and no FUA when the CPU that takes "
             "its interrupts is busy; INFO wal_device_cache, docs/PERFORMANCE.md)",
     .num = &S->wal_sync_method},
    {.name = "wal-writes-in-flight",
     .flags = KV_CONF_SAME,
     .type = KV_CONF_INT,
     .def = "4",
     .min = 1,
     .max = 8,
     .help = "WAL batch writes a thread keeps in flight at most (synced writes overlap on "
             "the device; with appendfsync always another starts once the open batch holds as "
             "many records as those in flight; replies still follow the order of the log)",
     .num = &S->wal_writes_in_flight},
    {.name = "snapshot-wal-size",
     .type = KV_CONF_BYTES,
     .flags = RT,
     .def = "256mb",
     .min = 0,
     .max = INT64_MAX,
     .help = "WAL bytes a thread writes before it snapshots its partitions and deletes the "
             "segments the snapshot covers (0 = only on SAVE/BGSAVE)",
     .num = &S->snapshot_wal_size},
    {.name = "repair",
     .flags = KV_CONF_SAME,
     .type = KV_CONF_BOOL,
     .def = "no",
     .help = "at start, cut a corrupt WAL at the damage (the rest is kept aside) instead of "
             "refusing to start; `--repair` alone means yes",
     .num = &S->repair},
    {.name = "large-pages",
     .flags = KV_CONF_SAME,
     .type = KV_CONF_BOOL,
     .def = "yes",
     .help = "allocate the data in 2 MiB pages (transparent huge pages): restarts that load "
             "millions of keys take about half the time, for a few per cent more memory",
     .num = &S->large_pages},
    {.name = "maxmemory",
     .type = KV_CONF_BYTES,
     .flags = RT,
     .def = "0",
     .min = 0,
     .max = INT64_MAX,
     .help = "bytes of data (INFO used_memory: the tables of every thread) at most; beyond, "
             "keys are evicted by maxmemory-policy (0 = no limit)",
     .num = &S->maxmemory},
    {.name = "maxmemory-policy",
     .type = KV_CONF_ENUM,
     .flags = RT,
     .def = "noeviction",
     .choices = evict_policy_names,
     .help = "over maxmemory: noeviction (writes that add memory get -OOM), allkeys-lru, "
             "allkeys-lfu, allkeys-random, volatile-lru, volatile-lfu, volatile-random or "
             "volatile-ttl (volatile-*: only keys with an expiry time; lru: a key not used "
             "since the clock hand last passed it, from one bit per key; lfu: the sampled key "
             "with the lowest access counter, as Redis's)",
     .num = &S->maxmemory_policy},
    {.name = "maxmemory-samples",
     .type = KV_CONF_INT,
     .flags = RT,
     .def = "5",
     .min = 1,
     .max = 64,
     .help = "keys sampled to choose one to evict under volatile-ttl and the lfu policies "
             "(lru follows a clock hand, random takes one)",
     .num = &S->maxmemory_samples},
    {.name = "lfu-log-factor",
     .type = KV_CONF_INT,
     .flags = RT,
     .def = "10",
     .min = 0,
     .max = INT32_MAX,
     .help = "under an lfu policy: how slowly a key's access counter grows (its 8 bits "
             "saturate after about a million accesses at 10), as Redis's",
     .num = &S->lfu_log_factor},
    {.name = "lfu-decay-time",
     .type = KV_CONF_INT,
     .flags = RT,
     .def = "1",
     .min = 0,
     .max = INT32_MAX,
     .help = "under an lfu policy: minutes after which an unused key's access counter "
             "loses one (0: never), as Redis's",
     .num = &S->lfu_decay_time},
    {.name = "latency-monitor-threshold",
     .type = KV_CONF_INT,
     .flags = RT,
     .def = "0",
     .min = 0,
     .max = INT64_MAX,
     .help = "milliseconds from which a command is a latency event for LATENCY LATEST / "
             "HISTORY / DOCTOR (0 = the monitor is off)",
     .num = &S->latency_monitor_threshold},
    {.name = "latency-tracking",
     .type = KV_CONF_BOOL,
     .flags = RT,
     .def = "yes",
     .help = "count every command's duration in its histogram (LATENCY HISTOGRAM, INFO "
             "latencystats)",
     .num = &S->latency_tracking},
    {.name = "latency-tracking-info-percentiles",
     .type = KV_CONF_CUSTOM,
     .flags = RT,
     .def = "50 99 99.9",
     .help = "percentiles INFO latencystats reports (at most 16, each in [0, 100])",
     .num = &S->latency_tracking_info_percentiles,
     .parse = latency_percentiles_parse,
     .format = latency_percentiles_format},
    {.name = "notify-keyspace-events",
     .type = KV_CONF_CUSTOM,
     .flags = RT,
     .def = "",
     .help = "keyspace notifications, as Redis: K (__keyspace@<db>__:<key>), E "
             "(__keyevent@<db>__:<event>) and classes g $ x e n m, A for all (\"\" = none)",
     .num = &S->notify_keyspace_events,
     .parse = notify_parse,
     .format = notify_format},
    {.name = "tracking-table-max-keys",
     .type = KV_CONF_INT,
     .flags = RT,
     .def = "1000000",
     .min = 0,
     .max = INT64_MAX,
     .help = "keys CLIENT TRACKING remembers (split evenly over the threads); over it, keys "
             "are forgotten and their readers sent an invalidation (0 = no limit)",
     .num = &S->tracking_table_max_keys},
    {.name = "busy-reply-threshold",
     .type = KV_CONF_INT,
     .flags = RT,
     .def = "5000",
     .min = 0,
     .max = INT64_MAX / 1000000,
     .help = "ms a script runs before other commands get -BUSY (but SCRIPT KILL, FUNCTION "
             "KILL, SHUTDOWN NOSAVE, ...) and its shard serves them from the script",
     .num = &S->busy_reply_threshold_ms},
    {.name = "daemonize",
     .type = KV_CONF_BOOL,
     .def = "no",
     .help = "run in the background (detached; standard output and error go to /dev/null "
             "unless logfile names a file)",
     .num = &S->daemonize},
    {.name = "pidfile",
     .type = KV_CONF_STRING,
     .def = "",
     .help = "write the process id to this file at start (removed at a clean exit; \"\": none, "
             "or /var/run/kvd.pid when daemonized, as Redis)",
     .str = S->pidfile,
     .str_cap = sizeof S->pidfile},
    {.name = "logfile",
     .type = KV_CONF_STRING,
     .def = "",
     .help = "append the log to this file, opened for each line (\"\": standard error)",
     .str = S->logfile,
     .str_cap = sizeof S->logfile},
    {.name = "syslog-enabled",
     .type = KV_CONF_BOOL,
     .def = "no",
     .help = "also send the log to syslog (as Redis: without the time stamp)",
     .num = &S->syslog_enabled},
    {.name = "syslog-ident",
     .type = KV_CONF_STRING,
     .def = "kvd",
     .help = "the syslog identity of kvd's lines",
     .str = S->syslog_ident,
     .str_cap = sizeof S->syslog_ident},
    {.name = "syslog-facility",
     .type = KV_CONF_ENUM,
     .def = "local0",
     .choices = syslog_facilities,
     .help = "the syslog facility: user, local0 ... local7",
     .num = &S->syslog_facility},
    {.name = "unixsocket",
     .type = KV_CONF_STRING,
     .def = "",
     .help = "also listen on this Unix socket (\"\": none); its clients are served by the "
             "first shard thread",
     .str = S->unixsocket,
     .str_cap = sizeof S->unixsocket},
    {.name = "unixsocketperm",
     .type = KV_CONF_CUSTOM,
     .def = "0",
     .help = "the Unix socket's permissions, octal as redis.conf writes them (700; 0: as the "
             "umask leaves them)",
     .num = &S->unixsocketperm,
     .parse = octal_parse,
     .format = octal_format},
    {.name = "maxmemory-clients",
     .type = KV_CONF_CUSTOM,
     .flags = RT | COMPAT,
     .def = "0",
     .help = COMPAT_HELP,
     .num = COMPAT_SLOT,
     .parse = mem_or_percent_parse,
     .format = mem_or_percent_format},
    {.name = "shutdown-on-sigterm",
     .type = KV_CONF_CUSTOM,
     .flags = RT,
     .def = "default",
     .help = "SIGTERM's shutdown, as Redis's: default (save if save points are set), or some "
             "of save, nosave, now, force (stop even if that save fails)",
     .num = &S->shutdown_on_sigterm,
     .parse = shutdown_flags_parse,
     .format = shutdown_flags_format},
    {.name = "shutdown-on-sigint",
     .type = KV_CONF_CUSTOM,
     .flags = RT,
     .def = "default",
     .help = "SIGINT's shutdown, as shutdown-on-sigterm",
     .num = &S->shutdown_on_sigint,
     .parse = shutdown_flags_parse,
     .format = shutdown_flags_format},
    {.name = "tcp-keepalive",
     .type = KV_CONF_INT,
     .flags = RT,
     .def = "300",
     .min = 0,
     .max = INT32_MAX,
     .help = "seconds of silence before a client's connection is probed with TCP keepalives "
             "(then every third of it; 0: none), for new clients",
     .num = &S->tcp_keepalive_s},
    {.name = "protected-mode",
     .type = KV_CONF_BOOL,
     .flags = RT,
     .def = "yes",
     .help = "while the default user has no password, refuse clients that are not on the "
             "loopback interface (-DENIED), as Redis",
     .num = &S->protected_mode},
    {.name = "stop-writes-on-bgsave-error",
     .type = KV_CONF_BOOL,
     .flags = RT,
     .def = "yes",
     .help = "with appendonly no and save points, refuse writes (and PING) with -MISCONF "
             "while the last dump failed, as Redis",
     .num = &S->stop_writes_on_bgsave_error},
    {.name = "supervised",
     .type = KV_CONF_ENUM,
     .def = "no",
     .choices = supervised_modes,
     .help = "tell a supervisor when kvd is ready: systemd (the notify protocol on "
             "$NOTIFY_SOCKET: READY=1, STOPPING=1), upstart (stops itself with SIGSTOP once "
             "ready), auto (whichever the environment names), no",
     .num = &S->supervised},
    {.name = "enable-debug-command",
     .type = KV_CONF_ENUM,
     .def = "yes",
     .choices = protected_actions,
     .help = "who may run DEBUG: no, yes, local (clients on the loopback interface), as "
             "Redis's (whose default is no)",
     .num = &S->enable_debug_command},
    {.name = "lua-time-limit",
     .type = KV_CONF_INT,
     .flags = RT,
     .def = "5000",
     .min = 0,
     .max = INT64_MAX / 1000000,
     .help = "the same as busy-reply-threshold (its older name)",
     .num = &S->busy_reply_threshold_ms},

    /* Redis settings kvd accepts, so that a redis.conf loads, with no effect (data type
     * encodings, replication, AOF rewriting, the allocator, the process title, ...):
     * CONFIG GET shows and CONFIG SET changes what Redis would; --help lists them apart. */
    COMPAT_BOOL("activerehashing", "yes", RT),
    COMPAT_BOOL("aof-load-truncated", "yes", RT),
    COMPAT_BOOL("aof-rewrite-incremental-fsync", "yes", RT),
    COMPAT_BOOL("aof-timestamp-enabled", "no", RT),
    COMPAT_BOOL("dynamic-hz", "yes", RT),
    COMPAT_BOOL("jemalloc-bg-thread", "yes", RT),
    COMPAT_BOOL("lazyfree-lazy-eviction", "no", RT),
    COMPAT_BOOL("lazyfree-lazy-expire", "no", RT),
    COMPAT_BOOL("lazyfree-lazy-server-del", "no", RT),
    COMPAT_BOOL("lazyfree-lazy-user-del", "no", RT),
    COMPAT_BOOL("lazyfree-lazy-user-flush", "no", RT),
    COMPAT_BOOL("no-appendfsync-on-rewrite", "no", RT),
    COMPAT_BOOL("rdb-del-sync-files", "no", RT),
    COMPAT_BOOL("rdb-save-incremental-fsync", "yes", RT),
    COMPAT_BOOL("rdbcompression", "yes", RT),
    COMPAT_BOOL("repl-disable-tcp-nodelay", "no", RT),
    COMPAT_BOOL("repl-diskless-sync", "yes", RT),
    COMPAT_BOOL_AT("replica-lazy-flush", "no", RT, &compat_lazy_flush),
    COMPAT_BOOL_AT("slave-lazy-flush", "no", RT, &compat_lazy_flush),
    COMPAT_BOOL_AT("replica-read-only", "yes", RT, &compat_read_only),
    COMPAT_BOOL_AT("slave-read-only", "yes", RT, &compat_read_only),
    COMPAT_BOOL_AT("replica-serve-stale-data", "yes", RT, &compat_stale_data),
    COMPAT_BOOL_AT("slave-serve-stale-data", "yes", RT, &compat_stale_data),
    COMPAT_BOOL_AT("replica-ignore-maxmemory", "yes", RT, &compat_ignore_maxmem),
    COMPAT_BOOL_AT("slave-ignore-maxmemory", "yes", RT, &compat_ignore_maxmem),
    COMPAT_BOOL("replica-announced", "yes", RT),
    COMPAT_BOOL("replica-ignore-disk-write-errors", "no", RT),
    COMPAT_BOOL("activedefrag", "no", RT),
    COMPAT_BOOL("aof-disable-auto-gc", "no", RT),
    COMPAT_BOOL("io-threads-do-reads", "no", 0),
    COMPAT_BOOL_AT("cluster-enabled", "no", 0, &compat_cluster_enabled),
    COMPAT_BOOL("cluster-require-full-coverage", "yes", RT),
    COMPAT_BOOL_AT("cluster-replica-no-failover", "no", RT, &compat_no_failover),
    COMPAT_BOOL_AT("cluster-slave-no-failover", "no", RT, &compat_no_failover),
    COMPAT_BOOL("cluster-allow-reads-when-down", "no", RT),
    COMPAT_BOOL("cluster-allow-pubsubshard-when-down", "yes", RT),
    COMPAT_BOOL("cluster-allow-replica-migration", "yes", RT),
    COMPAT_BOOL_AT("tls-replication", "no", KV_CONF_SAME, &compat_tls_replication), /* (stays no) */
    COMPAT_BOOL_AT("tls-cluster", "no", KV_CONF_SAME, &compat_tls_cluster),
    COMPAT_BOOL("tls-prefer-server-ciphers", "no", RT),
    COMPAT_BOOL("tls-session-caching", "yes", RT),
    COMPAT_BOOL("crash-log-enabled", "yes", RT),
    COMPAT_BOOL("crash-memcheck-enabled", "yes", RT),
    COMPAT_BOOL("always-show-logo", "no", 0),
    COMPAT_BOOL("disable-thp", "yes", 0),
    COMPAT_BOOL("rdbchecksum", "yes", 0),
    COMPAT_BOOL("set-proc-title", "yes", 0),
    COMPAT_INT("repl-diskless-sync-delay", "5", 0, INT32_MAX, COMPAT_SLOT),
    COMPAT_INT("repl-diskless-sync-max-replicas", "0", 0, INT32_MAX, COMPAT_SLOT),
    COMPAT_INT("replica-priority", "100", 0, INT32_MAX, &compat_priority),
    COMPAT_INT("slave-priority", "100", 0, INT32_MAX, &compat_priority),
    COMPAT_INT("min-replicas-to-write", "0", 0, INT32_MAX, &compat_min_to_write),
    COMPAT_INT("min-slaves-to-write", "0", 0, INT32_MAX, &compat_min_to_write),
    COMPAT_INT("min-replicas-max-lag", "10", 0, INT32_MAX, &compat_min_max_lag),
    COMPAT_INT("min-slaves-max-lag", "10", 0, INT32_MAX, &compat_min_max_lag),
    COMPAT_INT("repl-ping-replica-period", "10", 1, INT32_MAX, &compat_ping_period),
    COMPAT_INT("repl-ping-slave-period", "10", 1, INT32_MAX, &compat_ping_period),
    COMPAT_INT("replica-announce-port", "0", 0, 65535, &compat_announce_port),
    COMPAT_INT("slave-announce-port", "0", 0, 65535, &compat_announce_port),
    COMPAT_INT_FIXED("io-threads", "1", 1, 128),
    COMPAT_INT_FIXED("cluster-port", "0", 0, 65535),
    COMPAT_INT("repl-backlog-ttl", "3600", 0, INT32_MAX, COMPAT_SLOT),
    COMPAT_INT("repl-timeout", "60", 1, INT32_MAX, COMPAT_SLOT),
    COMPAT_INT("shutdown-timeout", "10", 0, INT32_MAX, COMPAT_SLOT),
    COMPAT_INT("socket-mark-id", "0", 0, UINT32_MAX, COMPAT_SLOT),
    COMPAT_INT("active-expire-effort", "1", 1, 10, COMPAT_SLOT),
    COMPAT_INT("maxmemory-eviction-tenacity", "10", 0, 100, COMPAT_SLOT),
    COMPAT_INT("active-defrag-cycle-min", "1", 1, 99, COMPAT_SLOT),
    COMPAT_INT("active-defrag-cycle-max", "25", 1, 99, COMPAT_SLOT),
    COMPAT_INT("active-defrag-threshold-lower", "10", 0, 1000, COMPAT_SLOT),
    COMPAT_INT("active-defrag-threshold-upper", "100", 0, 1000, COMPAT_SLOT),
    COMPAT_INT("active-defrag-max-scan-fields", "1000", 1, INT64_MAX, COMPAT_SLOT),
    COMPAT_INT("cluster-node-timeout", "15000", 0, INT64_MAX, COMPAT_SLOT),
    COMPAT_INT("cluster-migration-barrier", "1", 0, INT32_MAX, COMPAT_SLOT),
    COMPAT_INT("cluster-replica-validity-factor", "10", 0, INT32_MAX, &compat_validity),
    COMPAT_INT("cluster-slave-validity-factor", "10", 0, INT32_MAX, &compat_validity),
    COMPAT_INT("cluster-announce-port", "0", 0, 65535, COMPAT_SLOT),
    COMPAT_INT("cluster-announce-bus-port", "0", 0, 65535, COMPAT_SLOT),
    COMPAT_INT("cluster-announce-tls-port", "0", 0, 65535, COMPAT_SLOT),
    {.name = "tls-port", /* (must stay 0: immutable here, runtime in Redis) */
     .type = KV_CONF_INT,
     .flags = COMPAT,
     .def = "0",
     .min = 0,
     .max = 65535,
     .help = COMPAT_HELP,
     .num = &compat_tls_port},
    COMPAT_INT("tls-session-cache-size", "20480", 0, INT32_MAX, COMPAT_SLOT),
    COMPAT_INT("tls-session-cache-timeout", "300", 0, INT32_MAX, COMPAT_SLOT),
    COMPAT_INT("auto-aof-rewrite-percentage", "100", 0, INT32_MAX, COMPAT_SLOT),
    COMPAT_INT("hash-max-listpack-entries", "512", 0, INT64_MAX, &compat_hash_entries),
    COMPAT_INT("hash-max-ziplist-entries", "512", 0, INT64_MAX, &compat_hash_entries),
    COMPAT_INT("hash-max-listpack-value", "64", 0, INT64_MAX, &compat_hash_value),
    COMPAT_INT("hash-max-ziplist-value", "64", 0, INT64_MAX, &compat_hash_value),
    COMPAT_INT("zset-max-listpack-entries", "128", 0, INT64_MAX, &compat_zset_entries),
    COMPAT_INT("zset-max-ziplist-entries", "128", 0, INT64_MAX, &compat_zset_entries),
    COMPAT_INT("zset-max-listpack-value", "64", 0, INT64_MAX, &compat_zset_value),
    COMPAT_INT("zset-max-ziplist-value", "64", 0, INT64_MAX, &compat_zset_value),
    COMPAT_INT("set-max-intset-entries", "512", 0, INT64_MAX, COMPAT_SLOT),
    COMPAT_INT("list-max-listpack-size", "-2", INT32_MIN, INT32_MAX, &compat_list_size),
    COMPAT_INT("list-max-ziplist-size", "-2", INT32_MIN, INT32_MAX, &compat_list_size),
    COMPAT_INT("list-compress-depth", "0", 0, INT32_MAX, COMPAT_SLOT),
    COMPAT_INT("stream-node-max-entries", "100", 0, INT64_MAX, COMPAT_SLOT),
    COMPAT_BYTES("auto-aof-rewrite-min-size", "64mb"),
    COMPAT_BYTES("stream-node-max-bytes", "4096"),
    COMPAT_BYTES("repl-backlog-size", "1mb"),
    COMPAT_BYTES("active-defrag-ignore-bytes", "100mb"),
    COMPAT_BYTES("cluster-link-sendbuf-limit", "0"),
    COMPAT_ENUM("enable-protected-configs", "no", protected_actions, 0),
    COMPAT_ENUM("enable-module-command", "no", protected_actions, 0),
    COMPAT_ENUM("repl-diskless-load", "disabled", diskless_loads, RT),
    COMPAT_ENUM("oom-score-adj", "no", oom_adjs, RT),
    COMPAT_ENUM("propagation-error-behavior", "ignore", propagation_errors, RT),
    COMPAT_ENUM("sanitize-dump-payload", "no", dump_sanitizing, RT),
    COMPAT_ENUM("tls-auth-clients", "yes", tls_auth_modes, RT),
    COMPAT_ENUM("cluster-preferred-endpoint-type", "ip", endpoint_types, RT),
    COMPAT_STRING("dbfilename", "dump.rdb"),
    COMPAT_STRING("appendfilename", "appendonly.aof"),
    COMPAT_STRING("appenddirname", "appendonlydir"),
    COMPAT_STRING_AT("proc-title-template", "{title} {listen-addr} {server-mode}", RT,
                     (char[128]){0}),
    COMPAT_STRING("oom-score-adj-values", "0 200 800"),
    COMPAT_STRING("server_cpulist", ""),
    COMPAT_STRING("bio_cpulist", ""),
    COMPAT_STRING("aof_rewrite_cpulist", ""),
    COMPAT_STRING("bgsave_cpulist", ""),
    COMPAT_STRING("cluster-config-file", "nodes.conf"),
    COMPAT_STRING_AT("masterauth", "", RT, (char[128]){0}),
    COMPAT_STRING_AT("masteruser", "", RT, (char[128]){0}),
    COMPAT_STRING_AT("replica-announce-ip", "", RT, compat_announce_ip),
    COMPAT_STRING_AT("slave-announce-ip", "", RT, compat_announce_ip),
    COMPAT_STRING_AT("bind-source-addr", "", RT, (char[128]){0}),
    COMPAT_STRING_AT("ignore-warnings", "", RT, (char[128]){0}),
    COMPAT_STRING_AT("cluster-announce-ip", "", RT, (char[128]){0}),
    COMPAT_STRING_AT("cluster-announce-hostname", "", RT, (char[128]){0}),
    COMPAT_STRING_AT("tls-cert-file", "", RT, (char[128]){0}),
    COMPAT_STRING_AT("tls-key-file", "", RT, (char[128]){0}),
    COMPAT_STRING_AT("tls-key-file-pass", "", RT, (char[128]){0}),
    COMPAT_STRING_AT("tls-client-cert-file", "", RT, (char[128]){0}),
    COMPAT_STRING_AT("tls-client-key-file", "", RT, (char[128]){0}),
    COMPAT_STRING_AT("tls-client-key-file-pass", "", RT, (char[128]){0}),
    COMPAT_STRING_AT("tls-dh-params-file", "", RT, (char[128]){0}),
    COMPAT_STRING_AT("tls-ca-cert-file", "", RT, (char[128]){0}),
    COMPAT_STRING_AT("tls-ca-cert-dir", "", RT, (char[128]){0}),
    COMPAT_STRING_AT("tls-protocols", "", RT, (char[128]){0}),
    COMPAT_STRING_AT("tls-ciphers", "", RT, (char[128]){0}),
    COMPAT_STRING_AT("tls-ciphersuites", "", RT, (char[128]){0}),
};

const size_t kvd_setting_count = sizeof kvd_setting_items / sizeof kvd_setting_items[0];
_Static_assert(sizeof kvd_setting_items / sizeof kvd_setting_items[0] <= KVD_SETTINGS_MAX - 16,
               "KVD_SETTINGS_MAX leaves CONFIG GET room for its 16 read-only names");

struct kvd_conf_users kvd_conf_users;
char kvd_executable[KVD_DIR_MAX];
const char *kvd_supervised = "no";

/* "rename-command FROM TO" (TO may be "" in quotes): cmd_rename, as Redis's directive. */
static int conf_rename_line(const char *line, char *err, size_t errlen)
{
    size_t n = strlen(line);
    char *buf = malloc(4 * (n + 1)); /* up to 4 arguments (a 4th is an error) */
    if (buf == NULL) {
        snprintf(err, errlen, "out of memory");
        return KV_EINVAL;
    }
    char *tok[4];
    size_t len[4];
    size_t i = 0;
    int argc = 0;
    int r = 1;
    while (argc < 4) {
        tok[argc] = buf + (size_t)argc * (n + 1);
        r = kv_splitargs_next(line, n, &i, tok[argc], &len[argc]);
        if (r != 1) {
            break;
        }
        tok[argc][len[argc]] = '\0';
        argc++;
    }
    int rc = 0;
    if (r < 0 || argc != 3) {
        snprintf(err, errlen, "bad directive or wrong number of arguments");
        rc = KV_EINVAL;
    } else if (strlen(tok[1]) != len[1] || strlen(tok[2]) != len[2]) {
        snprintf(err, errlen, "No such command in rename-command"); /* (a NUL in a name) */
        rc = KV_EINVAL;
    } else {
        rc = cmd_rename_command(tok[1], tok[2], err, errlen);
    }
    free(buf);
    return rc;
}

/* A "user" directive's arguments after the word "user" (the name, then its rules) split
 * as Redis splits a config line, kept for users_init, which makes the users. A name
 * declared twice is refused here, with Redis's text. */
static int conf_user_add(const char *rest, int lineno, char *err, size_t errlen)
{
    size_t n = strlen(rest);
    /* one allocation: the views, then every argument (with its NUL) */
    char *mem = malloc((n + 1) * (sizeof(struct resp_arg) + 1) + n + 1);
    if (mem == NULL) {
        snprintf(err, errlen, "out of memory");
        return KV_EINVAL;
    }
    struct resp_arg *argv = (struct resp_arg *)(void *)mem;
    char *out = mem + (n + 1) * sizeof(struct resp_arg);
    size_t argc = 0, i = 0, len;
    int r;
    while ((r = kv_splitargs_next(rest, n, &i, out, &len)) == 1) {
        out[len] = '\0';
        argv[argc++] = (struct resp_arg){.ptr = out, .len = len};
        out += len + 1;
    }
    struct kvd_conf_users *u = &kvd_conf_users;
    int rc = 0;
    if (r < 0) {
        snprintf(err, errlen, "Unbalanced quotes in configuration line");
        rc = KV_EINVAL;
    } else if (argc == 0) {
        snprintf(err, errlen, "bad directive or wrong number of arguments");
        rc = KV_EINVAL;
    }
    for (size_t k = 0; rc == 0 && k < u->n; k++) {
        const struct resp_arg *name = &u->v[k].argv[0];
        if (name->len == argv[0].len && memcmp(name->ptr, argv[0].ptr, name->len) == 0) {
            snprintf(err, errlen,
                     "Error in user declaration '%s': Duplicate user found. A user can only "
                     "be defined once in config files",
                     argv[0].ptr);
            rc = KV_EINVAL;
        }
    }
    if (rc == 0 && users_conf_check(argv, argc, err, errlen) != 0) {
        rc = KV_EINVAL;
    }
    struct users_conf_line *v = rc == 0 ? realloc(u->v, (u->n + 1) * sizeof *v) : NULL;
    if (rc == 0 && v == NULL) {
        snprintf(err, errlen, "out of memory");
        rc = KV_EINVAL;
    }
    if (rc != 0) {
        free(mem);
        return rc;
    }
    u->v = v;
    u->v[u->n++] = (struct users_conf_line){.argv = argv, .argc = argc, .lineno = lineno};
    return 0;
}

/* A config line that is no setting: "user name rules..." is kept for users_init;
 * "rename-command FROM TO" renames a command at once. */
static int conf_user_line(void *arg, const char *line, int lineno, char *err, size_t errlen)
{
    (void)arg;
    while (isspace((unsigned char)*line)) {
        line++;
    }
    if (strncasecmp(line, "rename-command", 14) == 0 && isspace((unsigned char)line[14])) {
        return conf_rename_line(line, err, errlen);
    }
    if (strncasecmp(line, "user", 4) != 0 || !isspace((unsigned char)line[4])) {
        snprintf(err, errlen, "bad directive or wrong number of arguments");
        return KV_EINVAL;
    }
    return conf_user_add(line + 4, lineno, err, errlen);
}

static void print_help(void)
{
    printf("Usage: kvd [FILE | --config FILE] [--name value ...]\n\n"
           "kvd, the kvstore server. Every setting below may be given as a flag, in the\n"
           "file named by --config or first (one 'name value' per line, redis.conf syntax,\n"
           "as redis-server takes it; flags override it), and, where marked 'runtime',\n"
           "changed with CONFIG SET.\n\n");
    for (size_t i = 0; i < kvd_setting_count; i++) {
        const struct kv_conf_item *it = &kvd_setting_items[i];
        if (!(it->flags & KV_CONF_COMPAT)) {
            printf("  --%-28s %s\n  %-30s default: %s%s\n", it->name, it->help, "",
                   it->def[0] ? it->def : "\"\"", (it->flags & KV_CONF_RUNTIME) ? ", runtime" : "");
        }
    }
    printf("\nAccepted as Redis's (so that a redis.conf loads; CONFIG GET shows them), with no\n"
           "effect in kvd:\n ");
    size_t col = 1;
    for (size_t i = 0; i < kvd_setting_count; i++) {
        const struct kv_conf_item *it = &kvd_setting_items[i];
        if (it->flags & KV_CONF_COMPAT) {
            size_t len = strlen(it->name) + 1;
            if (col + len > 88) {
                printf("\n ");
                col = 1;
            }
            printf(" %s", it->name);
            col += len;
        }
    }
    printf("\n");
    printf("\nDirectives (config file lines, or flags with their words):\n"
           "  --%-28s %s\n  --%-28s %s\n",
           "user NAME RULES...", "declare an ACL user, as redis.conf's user lines",
           "rename-command OLD NEW", "call command OLD by the name NEW (\"\": disable it)");
    printf("\n  --%-28s %s\n  --%-28s %s\n", "config FILE", "read settings from FILE first",
           "help, --version", "print this or the version and exit");
}

static int check_power_of_two(const char *name, int64_t n)
{
    if ((n & (n - 1)) != 0) {
        fprintf(stderr, "kvd: --%s must be a power of two (got %lld)\n", name, (long long)n);
        return -1;
    }
    return 0;
}

static int check_consistency(void)
{
    if (KV_CONF_GET(compat_tls_port) != 0 || KV_CONF_GET(compat_tls_replication) ||
        KV_CONF_GET(compat_tls_cluster)) {
        fprintf(stderr, "kvd: tls-port, tls-replication, tls-cluster: kvd has no TLS (put a TLS "
                        "terminator such as stunnel in front of it)\n");
        return -1;
    }
    if (KV_CONF_GET(compat_cluster_enabled)) {
        fprintf(stderr, "kvd: cluster-enabled yes: kvd has no Redis Cluster mode (it "
                        "partitions keys itself; see docs/CLUSTER.md)\n");
        return -1;
    }
    if (check_power_of_two("recv-buffers", KV_CONF_GET(kvd_settings.recv_buffers)) != 0 ||
        check_power_of_two("shard-queue-size", KV_CONF_GET(kvd_settings.shard_queue_size)) != 0) {
        return -1;
    }
    if (KV_CONF_GET(kvd_settings.wal_segment_size) % 4096 != 0) {
        fprintf(stderr, "kvd: --wal-segment-size must be a multiple of 4096 (got %lld)\n",
                (long long)KV_CONF_GET(kvd_settings.wal_segment_size));
        return -1;
    }
    return 0;
}

int kvd_settings_load(int argc, char **argv)
{
    char err[2048];
    const char *config = NULL;
    /* As redis-server: a first argument that is no flag names the config file. */
    int first = 1;
    if (argc > 1 && argv[1][0] != '-') {
        config = argv[1];
        first = 2;
    }
    for (int i = first; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_help();
            return 1;
        }
        if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-v") == 0) {
            printf("kvd %s\n", KV_VERSION);
            return 1;
        }
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config = argv[i + 1];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            config = argv[i] + 9;
        }
    }
    ssize_t exe = readlink("/proc/self/exe", kvd_executable, sizeof kvd_executable - 1);
    kvd_executable[exe > 0 ? exe : 0] = '\0';
    if (kv_conf_defaults(kvd_setting_items, kvd_setting_count, err, sizeof err) != 0) {
        fprintf(stderr, "kvd: %s\n", err);
        return -1;
    }
    if (config != NULL) {
        snprintf(kvd_conf_users.path, sizeof kvd_conf_users.path, "%s", config);
        char *abs = realpath(config, NULL);
        snprintf(kvd_conf_users.abs_path, sizeof kvd_conf_users.abs_path, "%s",
                 abs != NULL ? abs : config);
        free(abs);
    }
    if (config != NULL && kv_conf_load_file_ex(kvd_setting_items, kvd_setting_count, config,
                                               conf_user_line, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "kvd: config: %s\n", err);
        return -1;
    }
    /* `--repair` alone (not followed by a value) means `--repair yes`. */
    char **args = calloc((size_t)argc * 2 + 1, sizeof *args);
    if (args == NULL) {
        return -1;
    }
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if (i == 1 && first == 2) {
            continue; /* (the config file) */
        }
        args[n++] = argv[i];
        if (strcmp(argv[i], "--repair") == 0 &&
            (i + 1 == argc || strncmp(argv[i + 1], "--", 2) == 0)) {
            args[n++] = "yes";
        }
    }
    static const char *const skip[] = {"config", NULL};
    int rc = kv_conf_parse_args_ex(kvd_setting_items, kvd_setting_count, n, args, 1, skip,
                                   conf_user_line, NULL, err, sizeof err);
    free(args);
    if (rc != 0) {
        fprintf(stderr, "kvd: %s\n", err);
        return -1;
    }
    kv_log_level_set((enum kv_log_level)KV_CONF_GET(kvd_settings.loglevel));
    return check_consistency();
}
