/*
 * kvd_settings: every setting of the kvd server, its default and its help line.
 *
 * Sources, later wins: defaults, the file named by --config (redis.conf syntax),
 * command-line flags (`--name value`), and CONFIG SET for settings marked runtime.
 * Names follow Redis where Redis has the setting. Numeric settings are atomics read
 * with KV_CONF_GET(kvd_settings.x) from any thread; strings never change after start.
 */
#ifndef KVD_SETTINGS_H
#define KVD_SETTINGS_H

#include "kv_config.h"

#include <stddef.h>

#define KVD_BIND_MAX 256 /* capacity of the bind address text */
#define KVD_DIR_MAX  1024
/* The pid file of a daemonized kvd without `pidfile` (Redis's is /var/run/redis.pid). */
#define KVD_PIDFILE_DAEMON "/var/run/kvd.pid"
#define KVD_PASS_MAX       512  /* longest requirepass */
#define KVD_DB_MAX         4096 /* most databases (the WAL keeps a database in 16 bits) */

struct kvd_settings {
    char bind[KVD_BIND_MAX];
    _Atomic int64_t port;
    _Atomic int64_t threads;
    _Atomic int64_t partitions_per_thread;
    _Atomic int64_t databases;
    char dir[KVD_DIR_MAX];
    char requirepass[KVD_PASS_MAX];
    char aclfile[KVD_DIR_MAX];
    char client_obuf[512]; /* client-output-buffer-limit's start-up text (obuf.h keeps it) */
    char save[512]; /* appendonly no: the save points (dump.h; CONFIG SET keeps them there) */
    char pidfile[KVD_DIR_MAX];
    char logfile[KVD_DIR_MAX];
    char syslog_ident[64];
    _Atomic int64_t syslog_enabled;
    _Atomic int64_t syslog_facility; /* index in Redis's list: user, local0 ... local7 */
    char unixsocket[108];            /* (sun_path's capacity) */
    _Atomic int64_t unixsocketperm;
    _Atomic int64_t daemonize;
    _Atomic int64_t tcp_keepalive_s;
    _Atomic int64_t protected_mode;
    _Atomic int64_t stop_writes_on_bgsave_error;
    _Atomic int64_t enable_debug_command; /* 0 no, 1 yes, 2 local (Redis's order) */
    _Atomic int64_t shutdown_on_sigint;   /* KVD_SHUTDOWN_* bits, 0: default */
    _Atomic int64_t shutdown_on_sigterm;
    _Atomic int64_t supervised; /* 0 no, 1 upstart, 2 systemd, 3 auto */
    _Atomic int64_t acllog_max_len;
    _Atomic int64_t acl_pubsub_default; /* 0: allchannels, 1: resetchannels (Redis's order) */
    _Atomic int64_t maxclients;
    _Atomic int64_t timeout_s;
    _Atomic int64_t tcp_backlog;
    _Atomic int64_t query_buffer_limit;
    _Atomic int64_t proto_max_bulk_len;
    _Atomic int64_t hll_sparse_max_bytes;
    _Atomic int64_t slowlog_slower_than_us;
    _Atomic int64_t slowlog_max_len;
    _Atomic int64_t loglevel;
    _Atomic int64_t hz;
    _Atomic int64_t recv_buffer_size;
    _Atomic int64_t recv_buffers;
    _Atomic int64_t shard_queue_size;
    _Atomic int64_t appendonly;
    _Atomic int64_t aof_use_rdb_preamble; /* (no effect: Redis's name) */
    _Atomic int64_t appendfsync;          /* enum wal_fsync */
    _Atomic int64_t wal_segment_size;
    _Atomic int64_t wal_sync_method; /* enum wal_sync */
    _Atomic int64_t wal_writes_in_flight;
    _Atomic int64_t snapshot_wal_size;
    _Atomic int64_t repair;
    _Atomic int64_t large_pages;
    _Atomic int64_t maxmemory;
    _Atomic int64_t maxmemory_policy; /* enum evict_policy */
    _Atomic int64_t maxmemory_samples;
    _Atomic int64_t lfu_log_factor;
    _Atomic int64_t lfu_decay_time;
    _Atomic int64_t notify_keyspace_events; /* enum notify_class bits */
    _Atomic int64_t latency_monitor_threshold;
    _Atomic int64_t latency_tracking;
    _Atomic int64_t latency_tracking_info_percentiles; /* how many (latency.h) */
    _Atomic int64_t tracking_table_max_keys;
    _Atomic int64_t busy_reply_threshold_ms; /* also lua-time-limit */
};

extern struct kvd_settings kvd_settings;

/* The "user ..." directives of the --config file and --user flags (ACL users, as
 * redis.conf declares them), split into their arguments, for users_init. */
struct users_conf_line;
struct kvd_conf_users {
    struct users_conf_line *v;
    size_t n;
    char path[KVD_DIR_MAX];     /* the config file's path, for messages */
    char abs_path[KVD_DIR_MAX]; /* the same made absolute (INFO config_file, as Redis) */
};
extern struct kvd_conf_users kvd_conf_users;

/* The absolute path of the running binary (INFO executable), "" if unknown. */
extern char kvd_executable[KVD_DIR_MAX];

/* The supervisor kvd talks to ("no", "upstart", "systemd": supervised auto resolved),
 * set by main (INFO process_supervised). */
extern const char *kvd_supervised;
extern const struct kv_conf_item kvd_setting_items[];
extern const size_t kvd_setting_count;

/* shutdown-on-sigint / shutdown-on-sigterm, as Redis's flags: save even without save
 * points, do not save, do not wait (no effect: no replicas), stop even if the save fails. */
enum {
    KVD_SHUTDOWN_SAVE = 1,
    KVD_SHUTDOWN_NOSAVE = 2,
    KVD_SHUTDOWN_NOW = 4,
    KVD_SHUTDOWN_FORCE = 8,
};

/* The most settings the table may hold (CONFIG GET marks them in an array this long);
 * checked at compile time where the table is defined. */
#define KVD_SETTINGS_MAX 384

/*
 * Loads defaults, then --config FILE, then the other flags. Handles --help and
 * --version itself (prints and returns 1). Returns 0 to go on, 1 to exit 0, or -1
 * after printing the reason to stderr (exit non-zero).
 */
int kvd_settings_load(int argc, char **argv);

#endif
