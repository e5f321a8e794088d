/*
 * kv_tsc: the TSC as a cheap monotonic clock (see kv_tsc.h).
 */
#include "kv_tsc.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define CLOCKSOURCE "/sys/devices/system/clocksource/clocksource0/current_clocksource"

static bool usable;
static pthread_once_t usable_once = PTHREAD_ONCE_INIT;

static void probe(void)
{
#if defined(__x86_64__)
    FILE *f = fopen(CLOCKSOURCE, "r");
    char name[32] = "";
    if (f != NULL) {
        if (fgets(name, sizeof name, f) == NULL) {
            name[0] = '\0';
        }
        fclose(f);
    }
    usable = strcmp(name, "tsc\n") == 0 || strcmp(name, "tsc") == 0;
#endif
}

bool kv_tsc_usable(void)
{
    pthread_once(&usable_once, probe);
    return usable;
}

#if defined(__x86_64__)
/* A TSC read and the CLOCK_MONOTONIC time next to it (the pair read closest together of
 * three, so that an interruption between the two reads does not skew the scale). */
static void pair(uint64_t *tsc, uint64_t *ns)
{
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < 3; i++) {
        uint64_t a = __rdtsc();
        uint64_t t = kv_clock_mono_ns();
        uint64_t b = __rdtsc();
        if (b - a < best) {
            best = b - a;
            *tsc = a + (b - a) / 2;
            *ns = t;
        }
    }
}
#endif

void kv_tsc_init(struct kv_tsc *c, bool allow)
{
    memset(c, 0, sizeof *c);
#if defined(__x86_64__)
    if (allow && kv_tsc_usable()) {
        pair(&c->t_tsc, &c->t_ns);
        return;
    }
#endif
    c->t_tsc = UINT64_MAX; /* never calibrated: CLOCK_MONOTONIC */
}

void kv_tsc_calibrate(struct kv_tsc *c)
{
#if defined(__x86_64__)
    if (c->t_tsc == UINT64_MAX) {
        return;
    }
    uint64_t tsc, ns;
    pair(&tsc, &ns);
    if (tsc <= c->t_tsc || ns - c->t_ns < KV_TSC_WINDOW_NS) {
        return; /* (too early to measure the scale) */
    }
    /* re-anchored, never behind what the previous anchor gives now (so never behind a
     * value read before); the scale measured over everything since the start */
    uint64_t was = c->on ? kv_tsc_at(c, tsc) : 0;
    c->tsc0 = tsc;
    c->ns0 = was > ns ? was : ns;
    c->mult = (uint64_t)((((unsigned __int128)(ns - c->t_ns)) << 32) / (tsc - c->t_tsc));
    c->on = c->mult != 0;
#else
    (void)c;
#endif
}
