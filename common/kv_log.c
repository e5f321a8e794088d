/*
 * kv_log: formats a line into a stack buffer and writes it with one write(2), so that
 * lines from different threads never interleave mid-line. Long lines are cut at
 * KV_LOG_LINE_MAX bytes and end with "...".
 */
#include "kv_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define KV_LOG_LINE_MAX 1024

static _Atomic int log_level = KV_LOG_NOTICE;
static _Thread_local char log_thread[16] = "main";
static int log_syslog; /* set once before other threads start (kv_log_syslog) */
static char log_ident[64];
static char log_path[4096]; /* set once before other threads start (kv_log_file) */

void kv_log_syslog(const char *ident, int facility)
{
    snprintf(log_ident, sizeof log_ident, "%s", ident); /* (openlog keeps the pointer) */
    openlog(log_ident, LOG_PID | LOG_NDELAY | LOG_NOWAIT, facility);
    log_syslog = 1;
}

int kv_log_file(const char *path)
{
    char abs[sizeof log_path];
    int n;
    if (path[0] == '/') {
        n = snprintf(abs, sizeof abs, "%s", path);
    } else {
        char cwd[sizeof log_path];
        if (getcwd(cwd, sizeof cwd) == NULL) {
            return -errno;
        }
        n = snprintf(abs, sizeof abs, "%s/%s", cwd, path);
    }
    if (n < 0 || (size_t)n >= sizeof abs) {
        return -ENAMETOOLONG;
    }
    memcpy(log_path, abs, (size_t)n + 1);
    return 0;
}

void kv_log_level_set(enum kv_log_level level)
{
    atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

enum kv_log_level kv_log_level_get(void)
{
    return (enum kv_log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

void kv_log_thread_name(const char *name)
{
    snprintf(log_thread, sizeof log_thread, "%s", name);
}

void kv_log(enum kv_log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"debug", "verbose", "notice", "warning"};
    if ((int)level < atomic_load_explicit(&log_level, memory_order_relaxed)) {
        return;
    }
    char line[KV_LOG_LINE_MAX];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int t =
        snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    int n = t + snprintf(line + t, sizeof line - (size_t)t, "%s %s ", names[level & 3], log_thread);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2) {
        len = sizeof line - 2;
        memcpy(line + len - 3, "...", 3);
    }
    line[len++] = '\n';
    int fd = log_path[0] != '\0' ? open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)
                                 : STDERR_FILENO; /* (a file that cannot be opened: stderr) */
    ssize_t w = write(fd >= 0 ? fd : STDERR_FILENO, line, len);
    (void)w;
    if (fd >= 0 && fd != STDERR_FILENO) {
        close(fd);
    }
    if (log_syslog) {
        static const int prios[] = {LOG_DEBUG, LOG_INFO, LOG_NOTICE, LOG_WARNING};
        syslog(prios[level & 3], "%.*s", (int)(len - 1 - (size_t)t), line + t);
    }
}
