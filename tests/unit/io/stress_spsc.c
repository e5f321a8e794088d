/*
 * A two-thread stress run of io/spsc: one producer, one consumer, every element
 * checked for order and content. A plain program (no Criterion) so that it runs under
 * ThreadSanitizer too, which then checks the queue's memory ordering. Exit 0 = pass.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "spsc.h"

#define STRESS_N 2000000ull
#define MIX      0x9E3779B97F4A7C15ull

struct msg {
    uint64_t seq;
    uint64_t check;
};

static void *producer(void *arg)
{
    struct spsc *q = arg;
    for (uint64_t i = 0; i < STRESS_N;) {
        if (spsc_push(q, &(struct msg){i, i * MIX})) {
            i++;
        }
    }
    return NULL;
}

int main(void)
{
    uint32_t cap = 64;
    struct spsc *q = aligned_alloc(SPSC_CACHE_LINE, spsc_size(cap, sizeof(struct msg)) + 64);
    if (q == NULL) {
        return 1;
    }
    spsc_init(q, cap, sizeof(struct msg));
    pthread_t t;
    if (pthread_create(&t, NULL, producer, q) != 0) {
        return 1;
    }
    struct msg m;
    for (uint64_t i = 0; i < STRESS_N;) {
        if (spsc_pop(q, &m)) {
            if (m.seq != i || m.check != i * MIX) {
                fprintf(stderr, "FAIL: got seq %llu, want %llu\n", (unsigned long long)m.seq,
                        (unsigned long long)i);
                return 1;
            }
            i++;
        }
    }
    pthread_join(t, NULL);
    if (!spsc_empty(q)) {
        fprintf(stderr, "FAIL: queue not empty at the end\n");
        return 1;
    }
    free(q);
    printf("spsc stress: %llu messages in order\n", STRESS_N);
    return 0;
}
