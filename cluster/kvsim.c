/*
 * kvsim: runs the deterministic cluster simulator over a range of seeds.
 *
 *   kvsim [--seed S] [--seeds N] [--voters 3|5] [--ticks T] [--trace]
 *   kvsim --bench N [--voters 3|5]
 *
 * Runs seeds S .. S+N-1 (default S=1, N=1; KVSIM_SEEDS overrides N when --seeds is not
 * given). Each failing seed is printed with the invariant it broke and the command that
 * replays it with a trace. Exit status: 0 if every seed passed, 1 otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim.h"

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--seed S] [--seeds N] [--voters 3|5] [--ticks T] [--trace]\n"
            "       %s --bench N [--voters 3|5]\n",
            argv0, argv0);
    exit(2);
}

static uint64_t parse_u64(const char *s, const char *argv0)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '\0' || *end != '\0') {
        usage(argv0);
    }
    return v;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int run_bench(uint32_t voters, uint64_t entries)
{
    struct sim_bench_result r;
    double t0 = now_s();
    int rc = sim_bench(voters, entries, &r);
    double secs = now_s() - t0;
    printf("kvsim bench: %u voters, %llu entries committed in %.3f s: %.0f entries/s, "
           "%llu messages (%.0f/s, %.1f MB), %llu virtual ticks%s\n",
           voters, (unsigned long long)r.committed, secs, (double)r.committed / secs,
           (unsigned long long)r.delivered, (double)r.delivered / secs, (double)r.bytes / 1e6,
           (unsigned long long)r.ticks, rc == 0 ? "" : " (an invariant FAILED)");
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    uint64_t seed = 1, seeds = 0, bench = 0;
    uint32_t voters = 0, ticks = 0;
    int trace = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--trace") == 0) {
            trace = 1;
        } else if (i + 1 < argc && strcmp(argv[i], "--seed") == 0) {
            seed = parse_u64(argv[++i], argv[0]);
        } else if (i + 1 < argc && strcmp(argv[i], "--bench") == 0) {
            bench = parse_u64(argv[++i], argv[0]);
        } else if (i + 1 < argc && strcmp(argv[i], "--seeds") == 0) {
            seeds = parse_u64(argv[++i], argv[0]);
        } else if (i + 1 < argc && strcmp(argv[i], "--voters") == 0) {
            voters = (uint32_t)parse_u64(argv[++i], argv[0]);
        } else if (i + 1 < argc && strcmp(argv[i], "--ticks") == 0) {
            ticks = (uint32_t)parse_u64(argv[++i], argv[0]);
        } else {
            usage(argv[0]);
        }
    }
    if (voters != 0 && voters != 3 && voters != 5) {
        usage(argv[0]);
    }
    if (bench > 0) {
        return run_bench(voters != 0 ? voters : 3, bench);
    }
    if (seeds == 0) {
        const char *env = getenv("KVSIM_SEEDS");
        seeds = env != NULL ? parse_u64(env, argv[0]) : 1;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t failed = 0, elections = 0, committed = 0, snapshots = 0, reads = 0;
    for (uint64_t s = seed; s < seed + seeds; s++) {
        struct sim_options o = {
            .seed = s, .voters = voters, .fault_ticks = ticks, .trace = trace ? stdout : NULL};
        struct sim_result r;
        if (sim_run(&o, &r) != 0) {
            failed++;
            printf("kvsim: seed %llu FAILED: %s\n", (unsigned long long)s, r.why);
            char extra[64] = "";
            if (voters != 0) {
                snprintf(extra, sizeof(extra), " --voters %u", voters);
            }
            if (ticks != 0) {
                size_t l = strlen(extra);
                snprintf(extra + l, sizeof(extra) - l, " --ticks %u", ticks);
            }
            printf("kvsim: replay with: %s --seed %llu%s --trace\n", argv[0], (unsigned long long)s,
                   extra);
            fflush(stdout);
        }
        elections += r.elections;
        committed += r.committed;
        snapshots += r.snapshots;
        reads += r.reads;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("kvsim: %llu seeds from %llu: %llu failed; %llu elections, %llu entries committed, "
           "%llu snapshots installed, %llu reads checked; %.2f s\n",
           (unsigned long long)seeds, (unsigned long long)seed, (unsigned long long)failed,
           (unsigned long long)elections, (unsigned long long)committed,
           (unsigned long long)snapshots, (unsigned long long)reads, secs);
    return failed == 0 ? 0 : 1;
}
