/*
 * limit_server: main() of the physical-limit reference server (see lim.h).
 *
 *   limit_server [--port P] [--threads N]
 *
 * Thread i is pinned to the i-th CPU of the process's affinity mask, so
 * `taskset -c 0 limit_server` puts its one thread on core 0. SIGINT/SIGTERM stop it;
 * it then prints how many commands each thread answered. The main thread only waits
 * for the signal: it blocks SIGINT/SIGTERM in the workers and interrupts their
 * io_uring wait with SIGUSR1.
 */
#include "lim.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t stop_flag;

static void on_usr1(int sig)
{
    (void)sig; /* only interrupts io_uring_enter */
}

static int nth_cpu(int n)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0) {
        return -1;
    }
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (CPU_ISSET(cpu, &set) && n-- == 0) {
            return cpu;
        }
    }
    return -1;
}

int main(int argc, char **argv)
{
    int port = 7379, threads = 1;
    static const struct option opts[] = {
        {"port", required_argument, 0, 'p'},
        {"threads", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "p:t:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'p':
            port = atoi(optarg);
            break;
        case 't':
            threads = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: limit_server [--port P (7379)] [--threads N (1)]\n");
            return opt == 'h' ? 0 : 2;
        }
    }
    if (port <= 0 || port > 65535 || threads < 1 || threads > LIM_THREADS_MAX) {
        fprintf(stderr, "limit_server: bad --port or --threads\n");
        return 2;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1; /* no SA_RESTART: the wait returns -EINTR */
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t stop_sigs;
    sigemptyset(&stop_sigs);
    sigaddset(&stop_sigs, SIGINT);
    sigaddset(&stop_sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_sigs, NULL); /* inherited by the workers */

    struct lim_thread ts[LIM_THREADS_MAX];
    pthread_t tids[LIM_THREADS_MAX];
    memset(ts, 0, sizeof(ts));
    for (int i = 0; i < threads; i++) {
        ts[i].id = i;
        ts[i].port = port;
        ts[i].cpu = nth_cpu(i);
        ts[i].stop = &stop_flag;
        if (pthread_create(&tids[i], NULL, lim_thread_run, &ts[i]) != 0) {
            fprintf(stderr, "limit_server: cannot start a thread\n");
            return 1;
        }
    }
    fprintf(stderr, "limit_server: listening on 127.0.0.1:%d with %d thread(s)\n", port, threads);
    int sig = 0;
    sigwait(&stop_sigs, &sig);
    stop_flag = 1;
    int rc = 0;
    for (int i = 0; i < threads; i++) {
        pthread_kill(tids[i], SIGUSR1);
        pthread_join(tids[i], NULL);
        if (ts[i].rc != 0) {
            fprintf(stderr, "limit_server: thread %d: %s\n", i, strerror(-ts[i].rc));
            rc = 1;
        }
        fprintf(stderr,
                "limit_server: thread %d: %" PRIu64 " commands, %" PRIu64 " connections, %" PRIu64
                " loop turns\n",
                i, ts[i].commands, ts[i].conns_accepted, ts[i].turns);
    }
    return rc;
}
