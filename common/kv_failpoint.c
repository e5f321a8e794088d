/*
 * kv_failpoint: see kv_failpoint.h. Compiled into every build; only code built with
 * KV_FAILPOINTS calls it.
 */
#include "kv_failpoint.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FP_MAX 16

struct fp {
    char name[48];
    long at; /* fire on this hit */
    _Atomic long hits;
};

static struct fp fps[FP_MAX];
static int fp_count = -1; /* -1: the environment is not parsed yet */
static atomic_flag fp_lock = ATOMIC_FLAG_INIT;

static void parse(void)
{
    fp_count = 0;
    const char *env = getenv("KVD_FAILPOINTS");
    if (env == NULL) {
        return;
    }
    char buf[512];
    snprintf(buf, sizeof buf, "%s", env);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok != NULL && fp_count < FP_MAX;
         tok = strtok_r(NULL, ",", &save)) {
        struct fp *f = &fps[fp_count++];
        char *eq = strchr(tok, '=');
        f->at = 1;
        if (eq != NULL) {
            *eq = '\0';
            f->at = strtol(eq + 1, NULL, 10);
        }
        snprintf(f->name, sizeof f->name, "%s", tok);
    }
}

static void ensure_parsed(void)
{
    while (atomic_flag_test_and_set_explicit(&fp_lock, memory_order_acquire)) {
    }
    if (fp_count < 0) {
        parse();
    }
    atomic_flag_clear_explicit(&fp_lock, memory_order_release);
}

bool kv_failpoint_error(const char *name)
{
    ensure_parsed();
    for (int i = 0; i < fp_count; i++) {
        if (strcmp(fps[i].name, name) == 0 && atomic_fetch_add(&fps[i].hits, 1) + 1 >= fps[i].at) {
            return true;
        }
    }
    return false;
}

void kv_failpoint_hit(const char *name)
{
    ensure_parsed();
    for (int i = 0; i < fp_count; i++) {
        if (strcmp(fps[i].name, name) == 0 && atomic_fetch_add(&fps[i].hits, 1) + 1 == fps[i].at) {
            char msg[96];
            int n = snprintf(msg, sizeof msg, "failpoint %s: killing the process\n", name);
            if (write(STDERR_FILENO, msg, (size_t)n) < 0) {
                /* nothing to do: the kill follows */
            }
            kill(getpid(), SIGKILL);
        }
    }
}
