/*
 * kvd: the server's main(). Loads the settings, builds the partition map, opens one
 * SO_REUSEPORT listener per shard, starts the shard threads, and waits for SIGTERM or
 * SIGINT (or SHUTDOWN), then lets every shard finish what is in flight and exits 0.
 *
 * The main thread handles signals only: shard threads block them, so a signal never
 * interrupts a shard's io_uring wait.
 */
#include "aof.h"
#include "dump.h"
#include "evict.h"
#include "fdlimit.h"
#include "func.h"
#include "cmd.h"
#include "kv_clock.h"
#include "kv_config.h"
#include "kv_log.h"
#include "kvd_settings.h"
#include "obuf.h"
#include "route.h"
#include "server.h"
#include "users.h"
#include "shard.h"
#include "spsc.h"
#include "wal.h"

#include <errno.h>
#include <liburing.h>
#include <mimalloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <sys/file.h>
#include <stddef.h>
#include <sys/socket.h>
#include <syslog.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static struct server srv;

/* Explains why io_uring is unusable, with the fix, and returns the exit code. */
static int explain_uring_failure(int rc)
{
    fprintf(stderr, "kvd: cannot set up io_uring: %s\n", strerror(-rc));
    switch (-rc) {
    case ENOSYS:
        fprintf(stderr, "kvd: this kernel has no io_uring (Linux 6.1 or newer is needed).\n");
        break;
    case EPERM:
    case EACCES:
        fprintf(stderr, "kvd: io_uring is disabled here: check the sysctl "
                        "kernel.io_uring_disabled (set it to 0) or the container's seccomp "
                        "profile (allow io_uring_setup, io_uring_enter, io_uring_register).\n");
        break;
    case ENOMEM:
        fprintf(stderr, "kvd: not enough locked memory for the rings: raise the memlock limit "
                        "(ulimit -l unlimited, or LimitMEMLOCK=infinity for a service).\n");
        break;
    default:
        break;
    }
    return 1;
}

static int make_queues(void)
{
    uint32_t n = srv.nthreads;
    for (uint32_t to = 0; to < n; to++) {
        srv.shards[to].in = calloc(n, sizeof(struct spsc *));
        if (srv.shards[to].in == NULL) {
            return -ENOMEM;
        }
        for (uint32_t from = 0; from < n; from++) {
            if (from == to) {
                continue;
            }
            uint32_t cap = (uint32_t)KV_CONF_GET(kvd_settings.shard_queue_size);
            size_t bytes = spsc_size(cap, sizeof(struct xmsg));
            struct spsc *q = aligned_alloc(SPSC_CACHE_LINE, (bytes + 63) & ~(size_t)63);
            if (q == NULL) {
                return -ENOMEM;
            }
            spsc_init(q, cap, sizeof(struct xmsg));
            srv.shards[to].in[from] = q;
        }
    }
    return 0;
}

/* mkdir -p: creates `path` and any missing parent. Returns 0 or -1 with errno set. */
static int make_dirs(const char *path)
{
    char buf[KVD_DIR_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                return -1;
            }
            buf[i] = c;
        }
    }
    return 0;
}

/* One kvd per data directory: a second one would interleave its WAL with ours. The
 * lock (flock on "kvd.lock") lasts as long as the process, and ends with it. */
/* daemonize yes: into the background before any thread exists, as Redis (its parent
 * exits at once; standard input, output and error go to /dev/null; a logfile then takes
 * standard error). */
static int daemonize(void)
{
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "kvd: daemonize: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid > 0) {
        _exit(0);
    }
    setsid();
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        if (fd > STDERR_FILENO) {
            close(fd);
        }
    }
    return 0;
}

/* logfile: the log is appended to that file from now on, opened for each line (kv_log_file:
 * logrotate may move it away); standard error goes to it too (what is not a log line:
 * a failed assertion, a sanitizer's report), through the file opened now. */
static int open_logfile(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    int rc = fd < 0 ? -errno : kv_log_file(path);
    if (rc != 0) {
        fprintf(stderr, "kvd: can't open the log file %s: %s\n", path, strerror(-rc));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    dup2(fd, STDERR_FILENO);
    close(fd);
    return 0;
}

/* supervised: the supervisor the setting (or, with auto, the environment) names. */
enum { SUPERVISED_NO, SUPERVISED_UPSTART, SUPERVISED_SYSTEMD, SUPERVISED_AUTO };

static int supervisor(void)
{
    int mode = (int)KV_CONF_GET(kvd_settings.supervised);
    if (mode == SUPERVISED_AUTO) {
        mode = getenv("UPSTART_JOB") != NULL     ? SUPERVISED_UPSTART
               : getenv("NOTIFY_SOCKET") != NULL ? SUPERVISED_SYSTEMD
                                                 : SUPERVISED_NO;
    }
    return mode;
}

static int supervised = SUPERVISED_NO; /* supervisor(), resolved once at start */

/* systemd's notify protocol: one datagram to $NOTIFY_SOCKET ('@': the abstract
 * namespace). Nothing happens without it, or when it cannot be sent. */
static void sd_notify_send(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = path != NULL ? strlen(path) : 0;
    if (supervised != SUPERVISED_SYSTEMD || n == 0 || n >= sizeof sa.sun_path) {
        return;
    }
    memcpy(sa.sun_path, path, n);
    if (sa.sun_path[0] == '@') {
        sa.sun_path[0] = '\0';
    }
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return;
    }
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    if (sendto(fd, msg, strlen(msg), 0, (struct sockaddr *)&sa, len) < 0) {
        kv_log_warning("supervised systemd: cannot notify %s: %s", path, strerror(errno));
    }
    close(fd);
}

/* pidfile: written at start (a failure is logged, as Redis does, and kvd goes on). */
static void write_pidfile(const char *path)
{
    FILE *f = fopen(path, "w");
    bool ok = f != NULL && fprintf(f, "%d\n", (int)getpid()) > 0;
    if (f != NULL) {
        ok &= fclose(f) == 0;
    }
    if (!ok) {
        kv_log_warning("Failed to write PID file %s: %s", path, strerror(errno));
    }
}

static int lock_dir(const char *dir)
{
    char path[KVD_DIR_MAX + 16];
    snprintf(path, sizeof path, "%s/kvd.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "kvd: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        fprintf(stderr, "kvd: another kvd (pid %s) is using the data directory %s\n",
                pid[0] ? pid : "?", dir);
        close(fd);
        return -1;
    }
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
        /* the pid is only informative */
    }
    return fd; /* stays open: the lock is held until exit */
}

/* Raises the open-files limit for maxclients, or lowers maxclients to what the limit
 * allows (Redis's messages). False when not even kvd's own fds fit: it cannot start. */
static bool adjust_open_files(uint32_t threads)
{
    int64_t maxclients = KV_CONF_GET(kvd_settings.maxclients);
    struct fdlimit_result r = fdlimit_raise(maxclients, threads);
    if (r.clients <= 0) {
        kv_log_warning("Your current 'ulimit -n' of %llu is not enough for the server to start. "
                       "Please increase your open file limit to at least %llu. Exiting.",
                       (unsigned long long)r.old_limit, (unsigned long long)r.needed);
        return false;
    }
    if (r.clients < maxclients) {
        kv_log_warning("You requested maxclients of %lld requiring at least %llu max file "
                       "descriptors.",
                       (long long)maxclients, (unsigned long long)r.needed);
        kv_log_warning("Server can't set maximum open files to %llu because of OS error: %s.",
                       (unsigned long long)r.needed, strerror(r.err));
        kv_log_warning("Current maximum open files is %llu. maxclients has been reduced to %lld "
                       "to compensate for low ulimit. If you need higher maxclients increase "
                       "'ulimit -n'.",
                       (unsigned long long)r.limit, (long long)r.clients);
        atomic_store(&kvd_settings.maxclients, r.clients);
    } else if (r.limit > r.old_limit) {
        kv_log_notice("Increased maximum number of open files to %llu (it was originally set "
                      "to %llu).",
                      (unsigned long long)r.limit, (unsigned long long)r.old_limit);
    }
    return true;
}

static uint32_t thread_count(void)
{
    int64_t t = KV_CONF_GET(kvd_settings.threads);
    if (t > 0) {
        return (uint32_t)t;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (uint32_t)n : 1;
}

int main(int argc, char **argv)
{
    cmd_init(); /* (before the settings: rename-command lines rename its rows) */
    int rc = kvd_settings_load(argc, argv);
    if (rc != 0) {
        return rc > 0 ? 0 : 1;
    }
    static const char *const supervisors[] = {"no", "upstart", "systemd"};
    supervised = supervisor(); /* (the setting is immutable) */
    kvd_supervised = supervisors[supervised];
    if (KV_CONF_GET(kvd_settings.daemonize) && daemonize() != 0) {
        return 1;
    }
    if (kvd_settings.logfile[0] != '\0' && open_logfile(kvd_settings.logfile) != 0) {
        return 1;
    }
    if (KV_CONF_GET(kvd_settings.syslog_enabled)) {
        static const int facilities[] = {LOG_USER,   LOG_LOCAL0, LOG_LOCAL1, LOG_LOCAL2, LOG_LOCAL3,
                                         LOG_LOCAL4, LOG_LOCAL5, LOG_LOCAL6, LOG_LOCAL7};
        kv_log_syslog(kvd_settings.syslog_ident,
                      facilities[KV_CONF_GET(kvd_settings.syslog_facility) % 9]);
    }
    if (KV_CONF_GET(kvd_settings.daemonize) && kvd_settings.pidfile[0] == '\0') {
        /* as Redis: a daemon writes a pid file even without the setting (its default) */
        snprintf(kvd_settings.pidfile, sizeof kvd_settings.pidfile, "%s", KVD_PIDFILE_DAEMON);
    }
    if (kvd_settings.pidfile[0] != '\0') {
        write_pidfile(kvd_settings.pidfile);
    }
    char uerr[4096];
    if (users_init(kvd_settings.requirepass, kvd_settings.aclfile, kvd_conf_users.v,
                   kvd_conf_users.n, kvd_conf_users.path, uerr, sizeof uerr) != 0) {
        fprintf(stderr, "kvd: %s\n", uerr);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    if (KV_CONF_GET(kvd_settings.large_pages) && getenv("MIMALLOC_LARGE_OS_PAGES") == NULL) {
        /* 2 MiB pages (transparent huge pages) for the shards' heaps: a few per cent more
         * memory, half the page faults when recovery fills memory, fewer TLB misses */
        mi_option_enable(mi_option_large_os_pages);
    }
    srv.nthreads = thread_count();
    if (!adjust_open_files(srv.nthreads)) {
        return 1;
    }
    atomic_store(&srv.txn_lock, -1);
    srv.start_ms = kv_clock_real_ms();
    srv.persist = KV_CONF_GET(kvd_settings.appendonly) != 0;
    dump_init(&srv);
    evict_access_apply();
    char perr[128];
    if (obuf_set(kvd_settings.client_obuf, perr, sizeof perr) != 0) {
        fprintf(stderr, "kvd: client-output-buffer-limit \"%s\": %s\n", kvd_settings.client_obuf,
                perr);
        return 1;
    }
    if (dump_points_set(kvd_settings.save, perr, sizeof perr) != 0) {
        fprintf(stderr, "kvd: save \"%s\": %s\n", kvd_settings.save, perr);
        return 1;
    }
    srv.route = route_create_uniform(srv.nthreads,
                                     (uint32_t)KV_CONF_GET(kvd_settings.partitions_per_thread));
    srv.shards = calloc(srv.nthreads, sizeof srv.shards[0]);
    for (uint32_t i = 0; srv.shards != NULL && i < srv.nthreads; i++) {
        shard_init(&srv.shards[i], &srv, i);
    }
    if (srv.route == NULL || srv.shards == NULL || make_queues() != 0) {
        fprintf(stderr, "kvd: out of memory at start-up\n");
        return 1;
    }
    if (make_dirs(kvd_settings.dir) != 0) {
        fprintf(stderr, "kvd: cannot create dir %s: %s\n", kvd_settings.dir, strerror(errno));
        return 1;
    }
    srv.lock_fd = lock_dir(kvd_settings.dir);
    if (srv.lock_fd < 0) {
        return 1;
    }
    if (dump_prepare_dir(&srv, kvd_settings.dir) != 0) {
        return 1;
    }
    if (func_recover(kvd_settings.dir, KV_CONF_GET(kvd_settings.repair) != 0) != 0) {
        return 1;
    }
    int port = (int)KV_CONF_GET(kvd_settings.port);
    for (uint32_t i = 0; i < srv.nthreads; i++) {
        struct shard *sh = &srv.shards[i];
        rc = shard_listen(sh, kvd_settings.bind, port, (int)KV_CONF_GET(kvd_settings.tcp_backlog));
        if (rc < 0) {
            fprintf(stderr, "kvd: cannot listen on %s:%d: %s\n", kvd_settings.bind, port,
                    strerror(-rc));
            return 1;
        }
        port = rc; /* with --port 0 the first shard picks, the others join it */
    }
    if (kvd_settings.unixsocket[0] != '\0') {
        rc = shard_listen_unix(&srv.shards[0], kvd_settings.unixsocket,
                               (int)KV_CONF_GET(kvd_settings.unixsocketperm),
                               (int)KV_CONF_GET(kvd_settings.tcp_backlog));
        if (rc < 0) {
            fprintf(stderr, "kvd: cannot listen on the Unix socket %s: %s\n",
                    kvd_settings.unixsocket, strerror(-rc));
            return 1;
        }
    }
    srv.port = port;
    pthread_mutex_init(&srv.listen_mu, NULL);

    sd_notify_send("STATUS=Loading the data\n");

    /* Shards inherit a blocked signal mask; the main thread waits for the signals. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    pthread_t *tids = calloc(srv.nthreads, sizeof *tids);
    for (uint32_t i = 0; i < srv.nthreads; i++) {
        rc = shard_start(&srv.shards[i], &tids[i]);
        if (rc != 0) {
            return explain_uring_failure(rc);
        }
    }
    /* Each shard recovers its partitions on its own thread; serve once all have. */
    while (atomic_load(&srv.shards_ready) < srv.nthreads) {
        usleep(1000);
    }
    if (atomic_load(&srv.start_failed)) {
        for (uint32_t i = 0; i < srv.nthreads; i++) {
            pthread_join(tids[i], NULL); /* each has given up already */
        }
        fprintf(stderr,
                "kvd: cannot start: the data in %s could not be recovered (see the log "
                "above)\n",
                kvd_settings.dir);
        _exit(1);
    }
    char bind[KVD_BIND_MAX]; /* (CONFIG SET may change it by now: read under its lock) */
    kv_conf_format(kv_conf_find(kvd_setting_items, kvd_setting_count, "bind"), bind, sizeof bind);
    kv_log_notice("kvd ready addr=%s port=%d threads=%u partitions=%u pid=%d appendonly=%s "
                  "appendfsync=%s",
                  bind, port, srv.nthreads, srv.route->count, (int)getpid(),
                  srv.persist ? "yes" : "no",
                  wal_fsync_name((int)KV_CONF_GET(kvd_settings.appendfsync)));
    sd_notify_send("STATUS=Ready to accept connections\n");
    sd_notify_send("READY=1\n");
    if (supervised == SUPERVISED_UPSTART && getenv("UPSTART_JOB") != NULL) {
        raise(SIGSTOP); /* upstart's "expect stop": it continues us */
        unsetenv("UPSTART_JOB");
    }

    /* Wait for a signal, or for SHUTDOWN (which sets `stopping` from a shard). */
    bool refused = false;
    while (!atomic_load(&srv.stopping)) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        refused &= aof_base_pending(&srv); /* (a later base window refuses again) */
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) {
            kv_log_notice("received %s, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            if (aof_base_pending(&srv) && !refused) {
                /* as Redis: the WAL switched on at run time has no base yet, and
                 * stopping now would lose what it holds; a second signal stops anyway */
                kv_log_warning("Writing initial AOF, can't exit.");
                refused = true;
                continue;
            }
            int64_t how = sig == SIGTERM ? KV_CONF_GET(kvd_settings.shutdown_on_sigterm)
                                         : KV_CONF_GET(kvd_settings.shutdown_on_sigint);
            if (!srv.persist && !(how & KVD_SHUTDOWN_NOSAVE) &&
                (dump_points_any() || (how & KVD_SHUTDOWN_SAVE)) &&
                atomic_load(&srv.dump.shutdown) == 0) {
                /* as Redis with save points (or shutdown-on-sig* save): a dump first
                 * (shard 0 runs it, then stops; a failed one keeps the server up unless
                 * the flags say force); a second signal stops at once */
                kv_log_notice("saving the final snapshot before exit");
                atomic_store(&srv.dump.shutdown_force, (how & KVD_SHUTDOWN_FORCE) != 0);
                atomic_store(&srv.dump.shutdown, 1);
            } else {
                atomic_store(&srv.stopping, 1);
            }
        }
    }
    sd_notify_send("STOPPING=1\n");
    for (uint32_t i = 0; i < srv.nthreads; i++) {
        pthread_join(tids[i], NULL);
    }
    for (uint32_t i = 0; i < srv.nthreads; i++) {
        for (uint32_t j = 0; j < srv.nthreads; j++) {
            free(srv.shards[i].in[j]);
        }
        free(srv.shards[i].in);
    }
    free(tids);
    free(srv.shards);
    free(srv.route);
    func_shutdown();
    if (kvd_settings.pidfile[0] != '\0') {
        unlink(kvd_settings.pidfile);
    }
    if (kvd_settings.unixsocket[0] != '\0') {
        unlink(kvd_settings.unixsocket);
    }
    kv_log_notice("kvd stopped");
    return 0;
}
