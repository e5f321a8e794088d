/*
 * latency.c: the latency monitor and LATENCY (see latency.h).
 */
#include "latency.h"

#include "cmd.h"
#include "kv_assert.h"
#include "kv_config.h"
#include "kv_text.h"
#include "kvd_settings.h"
#include "reply.h"
#include "resp_parse.h"
#include "server.h"

#include <mimalloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct sample {
    int64_t time; /* seconds; 0 = unused */
    uint64_t ms;
};

struct event {
    const char *name; /* a string literal; NULL = unused */
    struct sample s[LATENCY_SAMPLES];
    size_t idx; /* the next slot to write */
    uint64_t max;
};

static pthread_mutex_t lat_mu = PTHREAD_MUTEX_INITIALIZER;

/* the percentiles of latency-tracking-info-percentiles, in thousandths (the setting
 * holds their count; a reader during CONFIG SET may see a mix of old and new values) */
static _Atomic int64_t pct_milli[LATENCY_PERCENTILES_MAX];

int64_t latency_percentiles_parse(const char *value, char *err, size_t errlen)
{
    int64_t v[LATENCY_PERCENTILES_MAX];
    int64_t n = 0;
    for (const char *p = value;;) {
        while (*p == ' ') {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        char *end;
        double d = strtod(p, &end);
        if (end == p || (*end != ' ' && *end != '\0') || n == LATENCY_PERCENTILES_MAX) {
            snprintf(err, errlen, "Invalid latency-tracking-info-percentiles parameters");
            return -1;
        }
        if (!(d >= 0.0 && d <= 100.0)) {
            snprintf(err, errlen,
                     "latency-tracking-info-percentiles parameters should sit between "
                     "[0.0,100.0]");
            return -1;
        }
        v[n++] = (int64_t)(d * 1000.0 + 0.5);
        p = end;
    }
    for (int64_t i = 0; i < n; i++) {
        atomic_store_explicit(&pct_milli[i], v[i], memory_order_relaxed);
    }
    return n;
}

/* A percentile as Redis prints it: "%f" without trailing zeros ("99.9", "50"). */
static size_t pct_text(int64_t milli, char *buf, size_t cap)
{
    int k = snprintf(buf, cap, "%f", (double)milli / 1000.0);
    size_t n = k > 0 && (size_t)k < cap ? (size_t)k : 0;
    while (n > 0 && buf[n - 1] == '0') {
        n--;
    }
    if (n > 0 && buf[n - 1] == '.') {
        n--;
    }
    buf[n] = '\0';
    return n;
}

size_t latency_percentiles_format(int64_t n, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int64_t i = 0; i < n && len + 24 < cap; i++) {
        if (i > 0) {
            buf[len++] = ' ';
        }
        len += pct_text(atomic_load_explicit(&pct_milli[i], memory_order_relaxed), buf + len,
                        cap - len);
    }
    return len;
}

void latency_info_line(struct kv_text *t, const char *name, uint64_t total,
                       const uint64_t h[LATENCY_BUCKETS])
{
    kv_text_add(t, "latency_percentiles_usec_%s:", name);
    int64_t n = KV_CONF_GET(kvd_settings.latency_tracking_info_percentiles);
    for (int64_t i = 0; i < n; i++) {
        int64_t milli = atomic_load_explicit(&pct_milli[i], memory_order_relaxed);
        /* HdrHistogram's value at percentile: the bucket holding the count'th value */
        uint64_t want = (uint64_t)((double)milli / 100000.0 * (double)total + 0.5);
        want = want < 1 ? 1 : want;
        uint64_t cum = 0;
        size_t b = 0;
        for (; b + 1 < LATENCY_BUCKETS; b++) {
            cum += h[b];
            if (cum >= want) {
                break;
            }
        }
        uint64_t bound_ns = (UINT64_C(1) << (10 + b)) + (UINT64_C(1) << (3 + b)) - 1;
        char p[32];
        pct_text(milli, p, sizeof p);
        kv_text_add(t, "%sp%s=%.3f", i ? "," : "", p, total ? (double)bound_ns / 1000.0 : 0.0);
    }
    kv_text_add(t, "\r\n");
}
static struct event events[LATENCY_EVENTS_MAX];

void latency_add(const char *event, uint64_t ms)
{
    int64_t threshold = KV_CONF_GET(kvd_settings.latency_monitor_threshold);
    if (threshold <= 0 || ms < (uint64_t)threshold) {
        return;
    }
    int64_t now = (int64_t)time(NULL);
    pthread_mutex_lock(&lat_mu);
    struct event *e = NULL;
    for (size_t i = 0; i < LATENCY_EVENTS_MAX && e == NULL; i++) {
        if (events[i].name != NULL && strcmp(events[i].name, event) == 0) {
            e = &events[i];
        }
    }
    for (size_t i = 0; i < LATENCY_EVENTS_MAX && e == NULL; i++) {
        if (events[i].name == NULL) {
            e = &events[i];
            memset(e, 0, sizeof *e);
            e->name = event;
        }
    }
    if (e != NULL) {
        e->max = ms > e->max ? ms : e->max;
        struct sample *prev = &e->s[(e->idx + LATENCY_SAMPLES - 1) % LATENCY_SAMPLES];
        if (prev->time == now) { /* one sample per second: the largest */
            prev->ms = ms > prev->ms ? ms : prev->ms;
        } else {
            e->s[e->idx] = (struct sample){now, ms};
            e->idx = (e->idx + 1) % LATENCY_SAMPLES;
        }
    }
    pthread_mutex_unlock(&lat_mu);
}

/* A copy of the events, taken under the lock (replies are built without it). */
static size_t snapshot(struct event *out)
{
    pthread_mutex_lock(&lat_mu);
    size_t n = 0;
    for (size_t i = 0; i < LATENCY_EVENTS_MAX; i++) {
        if (events[i].name != NULL) {
            out[n++] = events[i];
        }
    }
    pthread_mutex_unlock(&lat_mu);
    return n;
}

static const struct event *find(const struct event *v, size_t n, const struct resp_arg *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strlen(v[i].name) == name->len && memcmp(v[i].name, name->ptr, name->len) == 0) {
            return &v[i];
        }
    }
    return NULL;
}

/* The samples of e, oldest first; returns how many. */
static size_t samples(const struct event *e, struct sample *out)
{
    size_t n = 0;
    for (size_t k = 0; k < LATENCY_SAMPLES; k++) {
        const struct sample *s = &e->s[(e->idx + k) % LATENCY_SAMPLES];
        if (s->time != 0) {
            out[n++] = *s;
        }
    }
    return n;
}

struct stats {
    size_t n;
    uint64_t avg, min, max, mad;
    int64_t period;
};

/* Redis's analyzeLatencyForEvent. */
static void analyze(const struct event *e, struct stats *st)
{
    struct sample s[LATENCY_SAMPLES];
    size_t n = samples(e, s);
    *st = (struct stats){.n = n};
    uint64_t sum = 0;
    int64_t oldest = 0;
    for (size_t i = 0; i < n; i++) {
        st->min = i == 0 || s[i].ms < st->min ? s[i].ms : st->min;
        st->max = s[i].ms > st->max ? s[i].ms : st->max;
        sum += s[i].ms;
        oldest = oldest == 0 || s[i].time < oldest ? s[i].time : oldest;
    }
    if (n == 0) {
        return;
    }
    st->avg = sum / n;
    st->period = (int64_t)time(NULL) - oldest;
    st->period = st->period == 0 ? 1 : st->period;
    uint64_t dev = 0;
    for (size_t i = 0; i < n; i++) {
        dev += st->avg > s[i].ms ? st->avg - s[i].ms : s[i].ms - st->avg;
    }
    st->mad = dev / n;
}

static void latest(struct cmd_ctx *x)
{
    struct event v[LATENCY_EVENTS_MAX];
    size_t n = snapshot(v);
    reply_array(x->out, n);
    for (size_t i = 0; i < n; i++) {
        const struct sample *last = &v[i].s[(v[i].idx + LATENCY_SAMPLES - 1) % LATENCY_SAMPLES];
        reply_array(x->out, 4);
        reply_bulk_str(x->out, v[i].name);
        reply_int(x->out, last->time);
        reply_int(x->out, (int64_t)last->ms);
        reply_int(x->out, (int64_t)v[i].max);
    }
}

static void history(struct cmd_ctx *x)
{
    struct event v[LATENCY_EVENTS_MAX];
    size_t n = snapshot(v);
    const struct event *e = find(v, n, &x->argv[2]);
    struct sample s[LATENCY_SAMPLES];
    size_t k = e != NULL ? samples(e, s) : 0;
    reply_array(x->out, k);
    for (size_t i = 0; i < k; i++) {
        reply_array(x->out, 2);
        reply_int(x->out, s[i].time);
        reply_int(x->out, (int64_t)s[i].ms);
    }
}

static void reset(struct cmd_ctx *x)
{
    int64_t n = 0;
    pthread_mutex_lock(&lat_mu);
    for (size_t i = 0; i < LATENCY_EVENTS_MAX; i++) {
        if (events[i].name == NULL) {
            continue;
        }
        bool hit = x->argc == 2;
        for (size_t a = 2; a < x->argc && !hit; a++) {
            hit = strlen(events[i].name) == x->argv[a].len &&
                  memcmp(events[i].name, x->argv[a].ptr, x->argv[a].len) == 0;
        }
        if (hit) {
            events[i].name = NULL;
            n++;
        }
    }
    pthread_mutex_unlock(&lat_mu);
    reply_int(x->out, n);
}

/*
 * Redis's sparkline (latencyCommandGenSparkeline with SPARKLINE_FILL, 4 rows of 3 steps,
 * 80 columns): a column per sample, the height scaled between the lowest and highest,
 * then each sample's age ("12s", "3m", "2h", "1d") written downwards under it.
 */
static void sparkline(struct kv_text *t, const struct sample *s, const char (*label)[24],
                      size_t off, size_t len, uint64_t min, uint64_t max)
{
    static const char fill[] = "_o#";
    enum { ROWS = 4, STEPS = 3 * ROWS, LABEL_TOP = 1 };
    double relmax = max > min ? (double)(max - min) : 1.0;
    for (int row = 0;; row++) {
        char line[80];
        bool more = false;
        memset(line, ' ', len);
        for (size_t j = 0; j < len; j++) {
            int step = (int)((double)(s[off + j].ms - min) * STEPS / relmax);
            step = step < 0 ? 0 : step >= STEPS ? STEPS - 1 : step;
            if (row < ROWS) {
                int c = step - (ROWS - row - 1) * 3;
                more = true;
                if (c >= 0 && c < 3) {
                    line[j] = fill[c];
                } else if (c >= 3) {
                    line[j] = '|';
                }
            } else if (row - ROWS < LABEL_TOP) {
                more = true; /* the blank line above the labels */
                break;
            } else if ((int)strlen(label[off + j]) > row - ROWS - LABEL_TOP) {
                more = true;
                line[j] = label[off + j][row - ROWS - LABEL_TOP];
            }
        }
        if (!more) {
            return;
        }
        kv_text_add(t, "%.*s\n", (int)len, line);
    }
}

static void graph(struct cmd_ctx *x)
{
    struct event v[LATENCY_EVENTS_MAX];
    size_t n = snapshot(v);
    const struct event *e = find(v, n, &x->argv[2]);
    if (e == NULL) {
        reply_error(x->out, "ERR No samples available for event '%.*s'",
                    (int)(x->argv[2].len > 64 ? 64 : x->argv[2].len), x->argv[2].ptr);
        return;
    }
    struct sample s[LATENCY_SAMPLES];
    char label[LATENCY_SAMPLES][24];
    size_t k = samples(e, s);
    uint64_t min = 0, max = 0;
    int64_t now = (int64_t)time(NULL);
    for (size_t i = 0; i < k; i++) {
        min = i == 0 || s[i].ms < min ? s[i].ms : min;
        max = s[i].ms > max ? s[i].ms : max;
        long long ago = now - s[i].time;
        if (ago < 60) {
            snprintf(label[i], sizeof label[i], "%llds", ago);
        } else if (ago < 3600) {
            snprintf(label[i], sizeof label[i], "%lldm", ago / 60);
        } else if (ago < 86400) {
            snprintf(label[i], sizeof label[i], "%lldh", ago / 3600);
        } else {
            snprintf(label[i], sizeof label[i], "%lldd", ago / 86400);
        }
    }
    char buf[16384];
    struct kv_text t = {buf, 0, sizeof buf};
    kv_text_add(&t, "%s - high %llu ms, low %llu ms (all time high %llu ms)\n", e->name,
                (unsigned long long)max, (unsigned long long)min, (unsigned long long)e->max);
    for (int i = 0; i < 80; i++) {
        kv_text_add(&t, "-");
    }
    kv_text_add(&t, "\n");
    for (size_t j = 0; j < k; j += 80) {
        if (j != 0) {
            kv_text_add(&t, "\n");
        }
        sparkline(&t, s, label, j, k - j < 80 ? k - j : 80, min, max);
    }
    reply_verbatim(x->out, buf, t.len);
}

static void doctor(struct cmd_ctx *x)
{
    struct event v[LATENCY_EVENTS_MAX];
    size_t n = snapshot(v);
    char buf[16384];
    struct kv_text t = {buf, 0, sizeof buf};
    if (n == 0 && KV_CONF_GET(kvd_settings.latency_monitor_threshold) == 0) {
        kv_text_add(
            &t, "I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this Redis "
                "instance. You may use \"CONFIG SET latency-monitor-threshold <milliseconds>.\" "
                "in order to enable it. If we weren't in a deep space mission I'd suggest to take "
                "a look at https://redis.io/topics/latency-monitor.\n");
        reply_verbatim(x->out, buf, t.len);
        return;
    }
    if (n == 0) {
        kv_text_add(
            &t, "Dave, no latency spike was observed during the lifetime of this Redis instance, "
                "not in the slightest bit. I honestly think you ought to sit down calmly, take a "
                "stress pill, and think things over.\n");
        reply_verbatim(x->out, buf, t.len);
        return;
    }
    kv_text_add(
        &t, "Dave, I have observed latency spikes in this Redis instance. You don't mind talking "
            "about it, do you Dave?\n\n");
    bool slow = false, fast = false;
    for (size_t i = 0; i < n; i++) {
        struct stats st;
        analyze(&v[i], &st);
        kv_text_add(
            &t,
            "%zu. %s: %zu latency spikes (average %llums, mean deviation %llums, period %.2f "
            "sec). Worst all time event %llums.\n",
            i + 1, v[i].name, st.n, (unsigned long long)st.avg, (unsigned long long)st.mad,
            st.n ? (double)st.period / (double)st.n : 0.0, (unsigned long long)v[i].max);
        slow |= strcmp(v[i].name, "command") == 0;
        fast |= strcmp(v[i].name, "fast-command") == 0;
    }
    kv_text_add(&t, "\nI have a few advices for you:\n\n");
    int64_t slower = KV_CONF_GET(kvd_settings.slowlog_slower_than_us);
    int64_t threshold = KV_CONF_GET(kvd_settings.latency_monitor_threshold);
    if (slow || fast) {
        if (slower < 0) {
            kv_text_add(
                &t, "- The slowlog is disabled: enable it with CONFIG SET slowlog-log-slower-than "
                    "to see which commands are slow.\n");
        } else if (slower / 1000 > threshold) {
            kv_text_add(
                &t,
                "- Your current Slow Log configuration only logs events that are slower than "
                "your configured latency monitor threshold. Please use 'CONFIG SET "
                "slowlog-log-slower-than %lld'.\n",
                (long long)threshold * 1000);
        }
        kv_text_add(
            &t, "- Check your Slow Log to understand what are the commands you are running which "
                "are too slow to execute. Please check https://redis.io/commands/slowlog for more "
                "information.\n");
        kv_text_add(
            &t, "- Deleting, expiring or evicting (because of maxmemory policy) large objects is a "
                "blocking operation. If you have very large objects that are often deleted, "
                "expired, or evicted, try to fragment those objects into multiple smaller "
                "objects.\n");
    }
    if (fast) {
        kv_text_add(&t,
                    "- The system is slow to execute code paths not containing system calls. This "
                    "usually means the system does not give kvd CPU time to run for long periods: "
                    "lower the system load, or check for a noisy neighbour.\n");
    }
    reply_verbatim(x->out, buf, t.len);
}

/* The reply of one histogram: calls, then the cumulative counts where they grow. */
static void reply_hist(struct cmd_ctx *x, const char *name, uint64_t calls,
                       const uint64_t h[LATENCY_BUCKETS])
{
    size_t grows = 0;
    uint64_t cum = 0;
    for (size_t b = 0; b < LATENCY_BUCKETS; b++) {
        grows += h[b] > 0;
    }
    reply_bulk_str(x->out, name);
    reply_map(x->out, 2);
    reply_bulk_str(x->out, "calls");
    reply_int(x->out, (int64_t)calls);
    reply_bulk_str(x->out, "histogram_usec");
    reply_map(x->out, grows);
    for (size_t b = 0; b < LATENCY_BUCKETS; b++) {
        if (h[b] == 0) {
            continue;
        }
        cum += h[b];
        uint64_t bound_ns = (UINT64_C(1) << (10 + b)) + (UINT64_C(1) << (3 + b)) - 1;
        reply_int(x->out, (int64_t)(bound_ns / 1000));
        reply_int(x->out, (int64_t)cum);
    }
}

/* Whether statistics row `name` is asked for by argument a ("config" asks for every
 * "config|..." row, as Redis lists a container's subcommands). */
static bool asked(const char *name, const struct resp_arg *a)
{
    size_t n = strlen(name);
    if (n == a->len && strncasecmp(name, a->ptr, n) == 0) {
        return true;
    }
    return n > a->len && name[a->len] == '|' && strncasecmp(name, a->ptr, a->len) == 0;
}

static void histogram(struct cmd_ctx *x)
{
    struct server *srv = x->sh->srv;
    size_t rows = cmd_stat_rows();
    bool *want = mi_heap_zalloc(x->sh->heap, rows * sizeof *want);
    uint64_t(*h)[LATENCY_BUCKETS] = mi_heap_malloc(x->sh->heap, rows * sizeof *h);
    uint64_t *calls = mi_heap_malloc(x->sh->heap, rows * sizeof *calls);
    KV_ASSERT(want != NULL && h != NULL && calls != NULL);
    size_t n = 0;
    for (size_t r = 0; r < rows; r++) {
        calls[r] = cmd_stats_hist(srv, r, h[r]); /* as Redis: the histogram's own count */
        want[r] = calls[r] > 0 && x->argc == 2;
        for (size_t a = 2; a < x->argc && !want[r] && calls[r] > 0; a++) {
            want[r] = asked(cmd_stat_name(r), &x->argv[a]);
        }
        n += want[r];
    }
    reply_map(x->out, n);
    for (size_t r = 0; r < rows; r++) {
        if (want[r]) {
            reply_hist(x, cmd_stat_name(r), calls[r], h[r]);
        }
    }
    mi_free(want);
    mi_free(h);
    mi_free(calls);
}

void cmd_latency(struct cmd_ctx *x)
{
    static const char *const help[] = {
        "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "DOCTOR",
        "    Return a human readable latency analysis report.",
        "GRAPH <event>",
        "    Return an ASCII latency graph for the <event> class.",
        "HISTORY <event>",
        "    Return time-latency samples for the <event> class.",
        "LATEST",
        "    Return the latest latency samples for all events.",
        "RESET [<event> ...]",
        "    Reset latency data of one or more <event> classes.",
        "    (default: reset all data for all event classes)",
        "HISTOGRAM [COMMAND ...]",
        ("    Return a cumulative distribution of latencies in the format of a histogram for the "
         "specified command names."),
        "    If no commands are specified then all histograms are replied.",
        "HELP",
        "    Prints this help.",
    };
    const struct resp_arg *sub = &x->argv[1];
    bool two = x->argc == 2, three = x->argc == 3;
    if (cmd_arg_is(sub, "help") && two) {
        reply_lines(x->out, help, sizeof help / sizeof help[0]);
    } else if (cmd_arg_is(sub, "latest") && two) {
        latest(x);
    } else if (cmd_arg_is(sub, "history") && three) {
        history(x);
    } else if (cmd_arg_is(sub, "graph") && three) {
        graph(x);
    } else if (cmd_arg_is(sub, "doctor") && two) {
        doctor(x);
    } else if (cmd_arg_is(sub, "reset")) {
        reset(x);
    } else if (cmd_arg_is(sub, "histogram")) {
        histogram(x);
    } else if (cmd_arg_is(sub, "help") || cmd_arg_is(sub, "latest") || cmd_arg_is(sub, "history") ||
               cmd_arg_is(sub, "graph") || cmd_arg_is(sub, "doctor")) {
        cmd_reply_sub_arity(x);
    } else {
        cmd_reply_unknown_subcommand(x);
    }
}
