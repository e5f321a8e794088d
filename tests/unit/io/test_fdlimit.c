/*
 * Unit tests of io/fdlimit: the open-files limit raised for maxclients (soft up to the
 * hard limit, the hard one only with the privilege to), never lowered, and the clients
 * a limit that could not be raised enough allows. Each test runs in its own process
 * (Criterion forks), so the limits it sets are its own, and it drops CAP_SYS_RESOURCE
 * (root's right to raise a hard limit), so that every run takes the unprivileged path.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fdlimit.h"

/* Drops CAP_SYS_RESOURCE from this process (always allowed). */
static void drop_sys_resource(void)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2];
    cr_assert_eq(syscall(SYS_capget, &h, d), 0, "capget: %d", errno);
    d[0].effective &= ~(1u << CAP_SYS_RESOURCE);
    d[0].permitted &= ~(1u << CAP_SYS_RESOURCE);
    cr_assert_eq(syscall(SYS_capset, &h, d), 0, "capset: %d", errno);
}

/* Sets the limit (lowering only: needs no privilege); skips the test where the hard
 * limit the runner has is lower than `hard`. */
static void set_limit(rlim_t soft, rlim_t hard)
{
    drop_sys_resource();
    struct rlimit now;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &now), 0);
    if (now.rlim_max < hard) {
        cr_skip_test("the hard open-files limit here is %llu, under %llu",
                     (unsigned long long)now.rlim_max, (unsigned long long)hard);
    }
    struct rlimit l = {.rlim_cur = soft, .rlim_max = hard};
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &l), 0, "setrlimit: %d", errno);
}

/* The process's limit is (soft, hard) now. */
static void assert_limit(rlim_t soft, rlim_t hard)
{
    struct rlimit l;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &l), 0);
    cr_assert_eq(l.rlim_cur, soft);
    cr_assert_eq(l.rlim_max, hard);
}

Test(fdlimit, reserved_fds_grow_with_threads)
{
    cr_assert_eq(fdlimit_reserved(1), 40);
    cr_assert_eq(fdlimit_reserved(4), 64);
}

Test(fdlimit, soft_limit_raised_up_to_the_hard_one)
{
    set_limit(100, 4096);
    struct fdlimit_result r = fdlimit_raise(500, 2);
    cr_assert_eq(r.old_limit, 100);
    cr_assert_eq(r.needed, 548);
    cr_assert_eq(r.limit, 548);
    cr_assert_eq(r.clients, 500);
    assert_limit(548, 4096);
}

Test(fdlimit, a_limit_that_is_enough_is_left_alone)
{
    set_limit(1000, 4096);
    struct fdlimit_result r = fdlimit_raise(500, 2);
    cr_assert_eq(r.limit, 1000);
    cr_assert_eq(r.clients, 500);
    cr_assert_eq(r.err, 0);
    assert_limit(1000, 4096); /* never lowered */
}

Test(fdlimit, over_the_hard_limit_without_the_privilege)
{
    set_limit(64, 64);
    struct fdlimit_result r = fdlimit_raise(500, 1);
    cr_assert_eq(r.limit, 64);
    cr_assert_eq(r.clients, 24); /* 64 - (32 + 8) */
    cr_assert_eq(r.err, EPERM);
    assert_limit(64, 64);
}

Test(fdlimit, soft_raised_to_the_hard_limit_when_that_is_short)
{
    set_limit(50, 200);
    struct fdlimit_result r = fdlimit_raise(500, 1);
    cr_assert_eq(r.limit, 200);
    cr_assert_eq(r.clients, 160);
    assert_limit(200, 200);
}

Test(fdlimit, not_even_the_reserved_fds)
{
    set_limit(40, 40);
    struct fdlimit_result r = fdlimit_raise(500, 1);
    cr_assert_eq(r.limit, 40);
    cr_assert_leq(r.clients, 0);
}
