/*
 * fdlimit: raising RLIMIT_NOFILE for maxclients (see fdlimit.h).
 *
 * Redis tries soft = hard = maxclients + 32, then smaller values 16 apart down to the
 * old soft limit. The same end is reached in at most two calls: a soft limit up to the
 * hard one is always allowed; above it, raising the hard limit needs CAP_SYS_RESOURCE
 * and the kernel's fs.nr_open bound; if that fails, the hard limit is as far as it
 * goes.
 */
#include "fdlimit.h"

#include "kv_assert.h"

#include <errno.h>
#include <pthread.h>
#include <sys/resource.h>

/* CONFIG SET maxclients may run on several shard threads at once: the read and the
 * raise of the limit are one step, so that a smaller raise never undoes a larger one. */
static pthread_mutex_t fdlimit_mu = PTHREAD_MUTEX_INITIALIZER;

uint64_t fdlimit_reserved(uint32_t threads)
{
    KV_ASSERT(threads > 0);
    return FDLIMIT_RESERVED_BASE + (uint64_t)threads * FDLIMIT_RESERVED_PER_THREAD;
}

struct fdlimit_result fdlimit_raise(int64_t maxclients, uint32_t threads)
{
    KV_ASSERT(maxclients > 0);
    uint64_t reserved = fdlimit_reserved(threads);
    struct fdlimit_result r = {.needed = (uint64_t)maxclients + reserved};
    struct rlimit l;
    pthread_mutex_lock(&fdlimit_mu);
    if (getrlimit(RLIMIT_NOFILE, &l) != 0) {
        l.rlim_cur = l.rlim_max = 1024; /* (Redis assumes 1024 too) */
        r.err = errno;
    }
    r.old_limit = r.limit = l.rlim_cur;
    if (l.rlim_cur < r.needed) {
        struct rlimit want = {.rlim_cur = r.needed,
                              .rlim_max = l.rlim_max > r.needed ? l.rlim_max : r.needed};
        if (setrlimit(RLIMIT_NOFILE, &want) == 0) {
            r.limit = r.needed;
        } else {
            r.err = errno;
            struct rlimit most = {.rlim_cur = l.rlim_max, .rlim_max = l.rlim_max};
            if (l.rlim_max > l.rlim_cur && setrlimit(RLIMIT_NOFILE, &most) == 0) {
                r.limit = l.rlim_max;
            }
        }
    }
    pthread_mutex_unlock(&fdlimit_mu);
    r.clients = r.limit >= r.needed ? maxclients : (int64_t)r.limit - (int64_t)reserved;
    return r;
}
