/*
 * monitor: see monitor.h.
 */
#include "monitor.h"

#include "cmd.h"
#include "cmd_docs.h"
#include "conn.h"
#include "kv_assert.h"
#include "kv_buf.h"
#include "reply.h"
#include "resp_parse.h"
#include "server.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

_Atomic uint32_t monitor_count;

/* A monitor's line for its own command, written once the command has replied (this
 * thread's). */
_Thread_local struct conn *monitor_self;
static _Thread_local char *self_line;
static _Thread_local size_t self_len;

struct mon {
    uint64_t id;
    uint32_t shard;
};

static struct {
    pthread_mutex_t mu;
    struct mon *v;
    size_t n, cap;
} registry = {.mu = PTHREAD_MUTEX_INITIALIZER};

void cmd_monitor_conn(struct cmd_ctx *x)
{
    if (conn_in_multi(x->conn)) { /* queued in MULTI: Redis's reply when EXEC runs it */
        reply_error(x->out, "ERR MONITOR isn't allowed for DENY BLOCKING client");
        return;
    }
    if (conn_monitor(x->conn)) {
        return; /* already one: no reply, as Redis */
    }
    pthread_mutex_lock(&registry.mu);
    if (registry.n == registry.cap) {
        registry.cap = registry.cap ? registry.cap * 2 : 8;
        registry.v = realloc(registry.v, registry.cap * sizeof *registry.v);
        KV_ASSERT(registry.v != NULL);
    }
    registry.v[registry.n++] = (struct mon){.id = conn_id(x->conn), .shard = x->sh->id};
    atomic_store_explicit(&monitor_count, (uint32_t)registry.n, memory_order_relaxed);
    pthread_mutex_unlock(&registry.mu);
    conn_set_monitor(x->conn, true);
    reply_ok(x->out);
}

void monitor_drop(struct shard *sh, struct conn *c)
{
    (void)sh;
    if (!conn_monitor(c)) {
        return;
    }
    conn_set_monitor(c, false);
    uint64_t id = conn_id(c);
    pthread_mutex_lock(&registry.mu);
    for (size_t i = 0; i < registry.n; i++) {
        if (registry.v[i].id == id) {
            registry.v[i] = registry.v[--registry.n];
            break;
        }
    }
    atomic_store_explicit(&monitor_count, (uint32_t)registry.n, memory_order_relaxed);
    pthread_mutex_unlock(&registry.mu);
}

/* Admin commands and subcommands are not shown (Redis's rule), nor QUIT. */
static bool shown(const struct cmd_desc *d, size_t argc, const struct resp_arg *argv)
{
    if (strcmp(d->name, "quit") == 0) {
        return false;
    }
    const struct cmd_docs *doc = cmd_docs_find(d->name);
    if (doc == NULL) {
        return true;
    }
    if (argc >= 2) {
        const struct cmd_docs *sub = cmd_docs_find_sub(doc, argv[1].ptr, argv[1].len);
        doc = sub != NULL ? sub : doc;
    }
    const char *f = doc->flags;
    for (const char *p = f; p != NULL && (p = strstr(p, "admin")) != NULL; p += 5) {
        if ((p == f || p[-1] == ' ') && (p[5] == '\0' || p[5] == ' ')) {
            return false;
        }
    }
    return true;
}

void monitor_flush_self(void)
{
    if (monitor_self != NULL && conn_monitor(monitor_self)) { /* RESET, a kill: none */
        conn_push(monitor_self, self_line, self_len);
    }
    free(self_line);
    self_line = NULL;
    monitor_self = NULL;
}

void monitor_feed(struct shard *sh, struct conn *self, uint32_t db, const char *addr,
                  const struct cmd_desc *d, size_t argc, const struct resp_arg *argv)
{
    if (!shown(d, argc, argv)) {
        return;
    }
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct kv_buf l = {0};
    uint64_t zero = 0;
    kv_buf_put(&l, &zero, sizeof zero); /* room for the monitor's id (XM_MONITOR payload) */
    char head[128];
    int n = snprintf(head, sizeof head, "+%ld.%06ld [%u %s]", (long)tv.tv_sec, (long)tv.tv_usec, db,
                     addr);
    kv_buf_put(&l, head, (size_t)n);
    for (size_t i = 0; i < argc; i++) {
        kv_buf_put(&l, " ", 1);
        if (cmd_arg_secret(d, argc, argv, i)) {
            kv_buf_put(&l, "\"(redacted)\"", 12);
        } else {
            kv_buf_put_repr(&l, argv[i].ptr, argv[i].len);
        }
    }
    kv_buf_put(&l, "\r\n", 2);
    pthread_mutex_lock(&registry.mu);
    for (size_t i = 0; i < registry.n; i++) {
        const struct mon *m = &registry.v[i];
        if (m->shard == sh->id) {
            struct conn *c = conn_by_id(sh, m->id);
            if (c != NULL && c == self) {
                monitor_flush_self(); /* (a script's line before this one: out now) */
                self_len = l.len - sizeof zero;
                self_line = malloc(self_len);
                KV_ASSERT(self_line != NULL);
                memcpy(self_line, l.p + sizeof zero, self_len);
                monitor_self = c;
            } else if (c != NULL) {
                if (c == monitor_self) {
                    monitor_flush_self(); /* its EVAL's line, then the script's commands */
                }
                conn_push(c, l.p + sizeof zero, l.len - sizeof zero);
            }
            continue;
        }
        char *blob = conn_blob_alloc(sh, l.len);
        memcpy(blob, l.p, l.len);
        memcpy(blob, &m->id, sizeof m->id);
        struct xmsg x = {
            .kind = XM_MONITOR, .src = (uint16_t)sh->id, .payload = blob, .payload_len = l.len};
        conn_send_xmsg(sh, NULL, m->shard, &x);
    }
    pthread_mutex_unlock(&registry.mu);
    kv_buf_free(&l);
}

void monitor_on_message(struct shard *sh, const struct xmsg *m)
{
    uint64_t id;
    KV_ASSERT(m->payload_len > sizeof id);
    memcpy(&id, m->payload, sizeof id);
    struct conn *c = conn_by_id(sh, id);
    if (c != NULL && conn_monitor(c)) {
        conn_push(c, (const char *)m->payload + sizeof id, m->payload_len - sizeof id);
    }
    conn_blob_free(m->payload);
}
